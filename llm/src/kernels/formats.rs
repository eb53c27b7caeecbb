//! GGUF's weight layouts (ggml's block formats) and their scalar dequantisation, which is the
//! definition every kernel is tested against; plus the 8-bit activation format of this crate.
//!
//! Block layouts, little-endian, as ggml writes them (`d`/`m`/`dmin` are f16):
//! - `Q4_0` (18 B / 32): `d, qs[16]`; value `d·(q−8)`, low nibbles are elements 0..16, high 16..32.
//! - `Q4_1` (20 B / 32): `d, m, qs[16]`; value `d·q + m`.
//! - `Q5_0` (22 B / 32): `d, qh[4], qs[16]`; the fifth bit of element `j` is bit `j` of `qh`;
//!   value `d·(q−16)`.
//! - `Q5_1` (24 B / 32): `d, m, qh[4], qs[16]`; value `d·q + m`.
//! - `Q8_0` (34 B / 32): `d, qs[32]` (signed); value `d·q`.
//! - `Q4_K` (144 B / 256): `d, dmin, scales[12], qs[128]`; eight sub-blocks of 32 with 6-bit
//!   scale and min; value `d·sc·q − dmin·m`.
//! - `Q5_K` (176 B / 256): `d, dmin, scales[12], qh[32], qs[128]`.
//! - `Q6_K` (210 B / 256): `ql[128], qh[64], scales[16] (i8), d`; sixteen sub-blocks of 16;
//!   value `d·sc·(q−32)`.

use candle_core::quantized::GgmlDType;

/// Elements per block of the 8-bit activations.
pub const Q8_BLOCK: usize = 32;
/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

/// The weight layouts the kernels multiply directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl WeightType {
    pub const ALL: [WeightType; 11] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
    ];

    /// The layout of a GGUF tensor type, if the kernels have one for it.
    pub fn from_ggml(t: GgmlDType) -> Option<Self> {
        Some(match t {
            GgmlDType::F32 => Self::F32,
            GgmlDType::F16 => Self::F16,
            GgmlDType::BF16 => Self::BF16,
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q5_1 => Self::Q5_1,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q5K => Self::Q5K,
            GgmlDType::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    pub fn ggml(self) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::BF16 => GgmlDType::BF16,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q5_0 => GgmlDType::Q5_0,
            Self::Q5_1 => GgmlDType::Q5_1,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4K => GgmlDType::Q4K,
            Self::Q5K => GgmlDType::Q5K,
            Self::Q6K => GgmlDType::Q6K,
        }
    }

    /// Values per block.
    pub fn block_elems(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes of a row of `cols` values (`cols` a multiple of the block size).
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_elems() * self.block_bytes()
    }

    /// Whether products with this type use 8-bit activations.
    pub fn is_quantised(self) -> bool {
        !matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }

    /// The activation layout products with this type read.
    pub fn activation(self) -> ActivationKind {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => ActivationKind::Float,
            Self::Q4K | Self::Q5K | Self::Q6K => ActivationKind::Q8K,
            _ => ActivationKind::Q8,
        }
    }
}

/// How activations are stored for a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationKind {
    /// As floats.
    Float,
    /// 8 bits per value, a scale per 32 (for the 32-value weight formats, whose own scales
    /// change every 32 values anyway).
    Q8,
    /// 8 bits per value, a scale per 256 and integer sums per 16 (for the K-quants: a whole
    /// super-block then sums in integers, with its sub-block scales applied as integers).
    Q8K,
}

/// An IEEE half from two little-endian bytes, as the `half` crate and F16C convert it, but
/// without their branches where there is no conversion instruction (wasm): the exponent and
/// mantissa bits moved into place and scaled by 2^112, which is exact for normal and
/// subnormal halves alike.
#[inline(always)]
pub fn f16_at(b: &[u8], at: usize) -> f32 {
    let h = u32::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let (sign, em) = ((h & 0x8000) << 16, h & 0x7FFF);
    let bits = if em < 0x7C00 {
        (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits()
    } else if em == 0x7C00 {
        0x7F80_0000
    } else {
        // NaN: quieted, payload kept.
        0x7FC0_0000 | (em << 13)
    };
    f32::from_bits(sign | bits)
}

#[inline(always)]
pub fn bf16_at(b: &[u8], at: usize) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes([b[at], b[at + 1]])) << 16)
}

#[inline(always)]
pub fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K super-block: 6 bits each, packed in
/// 12 bytes (ggml's `get_scale_min_k4`).
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// All eight (scale, min) pairs of a Q4_K/Q5_K super-block.
#[inline(always)]
pub fn scales_mins_k4(q: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0; 8];
    let mut m = [0; 8];
    for j in 0..8 {
        (sc[j], m[j]) = scale_min_k4(j, q);
    }
    (sc, m)
}

/// The 6-bit value of element `i` (0..256) of a Q6_K block, before the −32 offset, and the
/// index of its scale.
#[inline(always)]
pub fn q6k_value(block: &[u8], i: usize) -> (u8, usize) {
    let (ql, qh) = (&block[..128], &block[128..192]);
    let half = i / 128;
    let within = i % 128;
    let chunk = within / 32;
    let l = within % 32;
    let low = match chunk {
        0 => ql[64 * half + l] & 0xF,
        1 => ql[64 * half + l + 32] & 0xF,
        2 => ql[64 * half + l] >> 4,
        _ => ql[64 * half + l + 32] >> 4,
    };
    let high = (qh[32 * half + l] >> (2 * chunk)) & 3;
    (low | (high << 4), 8 * half + 2 * chunk + l / 16)
}

/// Writes the values of one row (`out.len()` of them) stored as `ty` in `row`.
pub fn dequantize_row(ty: WeightType, row: &[u8], out: &mut [f32]) {
    let n = ty.block_elems();
    let bb = ty.block_bytes();
    for (b, y) in row.chunks_exact(bb).zip(out.chunks_exact_mut(n)) {
        dequantize_block(ty, b, y);
    }
}

fn dequantize_block(ty: WeightType, b: &[u8], y: &mut [f32]) {
    match ty {
        WeightType::F32 => y[0] = f32_at(b, 0),
        WeightType::F16 => y[0] = f16_at(b, 0),
        WeightType::BF16 => y[0] = bf16_at(b, 0),
        WeightType::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                y[j] = d * (f32::from(b[2 + j] & 0xF) - 8.0);
                y[j + 16] = d * (f32::from(b[2 + j] >> 4) - 8.0);
            }
        }
        WeightType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..16 {
                y[j] = d * f32::from(b[4 + j] & 0xF) + m;
                y[j + 16] = d * f32::from(b[4 + j] >> 4) + m;
            }
        }
        WeightType::Q5_0 => {
            let d = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for j in 0..16 {
                let lo = (b[6 + j] & 0xF) | (((qh >> j) & 1) << 4) as u8;
                let hi = (b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
                y[j] = d * (f32::from(lo) - 16.0);
                y[j + 16] = d * (f32::from(hi) - 16.0);
            }
        }
        WeightType::Q5_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for j in 0..16 {
                let lo = (b[8 + j] & 0xF) | (((qh >> j) & 1) << 4) as u8;
                let hi = (b[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4) as u8;
                y[j] = d * f32::from(lo) + m;
                y[j + 16] = d * f32::from(hi) + m;
            }
        }
        WeightType::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..32 {
                y[j] = d * f32::from(b[2 + j] as i8);
            }
        }
        WeightType::Q4K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (sc, m) = scales_mins_k4(&b[4..16]);
            let qs = &b[16..144];
            for g in 0..4 {
                let (d1, m1) = (d * f32::from(sc[2 * g]), dmin * f32::from(m[2 * g]));
                let (d2, m2) = (d * f32::from(sc[2 * g + 1]), dmin * f32::from(m[2 * g + 1]));
                for l in 0..32 {
                    let q = qs[32 * g + l];
                    y[64 * g + l] = d1 * f32::from(q & 0xF) - m1;
                    y[64 * g + 32 + l] = d2 * f32::from(q >> 4) - m2;
                }
            }
        }
        WeightType::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (sc, m) = scales_mins_k4(&b[4..16]);
            let (qh, qs) = (&b[16..48], &b[48..176]);
            for g in 0..4 {
                let (d1, m1) = (d * f32::from(sc[2 * g]), dmin * f32::from(m[2 * g]));
                let (d2, m2) = (d * f32::from(sc[2 * g + 1]), dmin * f32::from(m[2 * g + 1]));
                for l in 0..32 {
                    let q = qs[32 * g + l];
                    let lo = (q & 0xF) | (((qh[l] >> (2 * g)) & 1) << 4);
                    let hi = (q >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4);
                    y[64 * g + l] = d1 * f32::from(lo) - m1;
                    y[64 * g + 32 + l] = d2 * f32::from(hi) - m2;
                }
            }
        }
        WeightType::Q6K => {
            let d = f16_at(b, 208);
            for (i, v) in y.iter_mut().enumerate() {
                let (q, s) = q6k_value(b, i);
                *v = d * f32::from(b[192 + s] as i8) * (f32::from(q) - 32.0);
            }
        }
    }
}

/// Rounds to nearest, ties to even, for |v| < 2²²: adding and subtracting 1.5·2²³ leaves
/// exactly the rounded value (IEEE arithmetic, no SSE4.1 `round` or libm call needed).
#[inline(always)]
fn round_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Quantises one block to `q = round(x / scale)` with `scale = max|x| / 127`; returns the
/// scale. Values stay in −127..=127, so negating one never overflows.
#[inline(always)]
fn quantise_block(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        // |v·inv| ≤ 127 up to rounding (clamped, which also keeps a NaN or ∞ input away
        // from the magic-number rounding); the cast turns a NaN into 0.
        *q = round_even((v * inv).clamp(-127.0, 127.0)) as i8;
    }
    amax / 127.0
}

/// Quantises rows of `x` (length a multiple of 32) for the [`ActivationKind::Q8`] layout:
/// per block of 32, the values, the scale `d` and `s = d · Σ q`.
pub fn quantise_q8(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (((xb, qb), db), sb) in x
        .chunks_exact(Q8_BLOCK)
        .zip(qs.chunks_exact_mut(Q8_BLOCK))
        .zip(d.iter_mut())
        .zip(s.iter_mut())
    {
        *db = quantise_block(xb, qb);
        *sb = *db * qb.iter().map(|&q| i32::from(q)).sum::<i32>() as f32;
    }
}

/// Quantises rows of `x` (length a multiple of 256) for the [`ActivationKind::Q8K`] layout:
/// per block of 256, the values and scale `d`, and the integer sum of every 16 values.
pub fn quantise_q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i16]) {
    for (((xb, qb), db), sb) in x
        .chunks_exact(QK_K)
        .zip(qs.chunks_exact_mut(QK_K))
        .zip(d.iter_mut())
        .zip(sums.chunks_exact_mut(QK_K / 16))
    {
        *db = quantise_block(xb, qb);
        for (sum, q) in sb.iter_mut().zip(qb.chunks_exact(16)) {
            *sum = q.iter().map(|&q| i16::from(q)).sum();
        }
    }
}
