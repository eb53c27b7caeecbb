//! The reference kernels: plain Rust, one 32-value sub-block at a time. Every weight type is
//! unpacked to integers (offsets applied), multiplied with the 8-bit activations in exact
//! integer arithmetic, then scaled. The 32-value formats: `Σ (scale·d_x·Σ q·q_x + min·s_x)`
//! per block. The K-quants sum a whole 256-value super-block in integers with their 6- or
//! 8-bit sub-block scales: `d·d_x·Σ_j sc_j·Σ q·q_x − dmin·d_x·Σ_j m_j·Σ q_x`.
//! They also serve machines without a SIMD version.

use super::ActRow;
use super::formats::{self, WeightType, f16_at, q6k_value, scales_mins_k4};

/// A sub-block of 32 weights as integers, with the float scale and min that give their values
/// (`scale·q + min`).
struct Sub {
    q: [i32; 32],
    scale: f32,
    min: f32,
}

pub fn dot_rows<const N: usize>(ty: WeightType, w: &[u8], x: [ActRow<'_>; N]) -> [f32; N] {
    let mut acc = [0.0f32; N];
    match ty {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => {
            let mut values = vec![0.0; x[0].values.len()];
            formats::dequantize_row(ty, w, &mut values);
            for (a, row) in acc.iter_mut().zip(&x) {
                *a = dot_f32(&values, row.values);
            }
        }
        WeightType::Q4K | WeightType::Q5K | WeightType::Q6K => {
            for (b, block) in w.chunks_exact(ty.block_bytes()).enumerate() {
                for (a, row) in acc.iter_mut().zip(&x) {
                    *a += k_block(ty, block, row, b);
                }
            }
        }
        _ => {
            let mut sub = Sub {
                q: [0; 32],
                scale: 0.0,
                min: 0.0,
            };
            for (k, block) in w.chunks_exact(ty.block_bytes()).enumerate() {
                unpack(ty, block, &mut sub);
                for (a, row) in acc.iter_mut().zip(&x) {
                    let qx = &row.qs[32 * k..32 * k + 32];
                    let isum: i32 = sub.q.iter().zip(qx).map(|(&q, &v)| q * i32::from(v)).sum();
                    *a += sub.scale * row.d[k] * isum as f32 + sub.min * row.s[k];
                }
            }
        }
    }
    acc
}

/// A block of one of the 32-value formats.
fn unpack(ty: WeightType, b: &[u8], out: &mut Sub) {
    let q = &mut out.q;
    match ty {
        WeightType::Q4_0 | WeightType::Q4_1 => {
            let (qs, offset) = if ty == WeightType::Q4_0 {
                (&b[2..18], 8)
            } else {
                (&b[4..20], 0)
            };
            for i in 0..16 {
                q[i] = i32::from(qs[i] & 0xF) - offset;
                q[i + 16] = i32::from(qs[i] >> 4) - offset;
            }
            out.scale = f16_at(b, 0);
            out.min = if ty == WeightType::Q4_1 {
                f16_at(b, 2)
            } else {
                0.0
            };
        }
        WeightType::Q5_0 | WeightType::Q5_1 => {
            let (at, offset) = if ty == WeightType::Q5_0 {
                (2, 16)
            } else {
                (4, 0)
            };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let qs = &b[at + 4..at + 20];
            for i in 0..16 {
                q[i] = i32::from(qs[i] & 0xF) + (((qh >> i) & 1) << 4) as i32 - offset;
                q[i + 16] = i32::from(qs[i] >> 4) + (((qh >> (i + 16)) & 1) << 4) as i32 - offset;
            }
            out.scale = f16_at(b, 0);
            out.min = if ty == WeightType::Q5_1 {
                f16_at(b, 2)
            } else {
                0.0
            };
        }
        WeightType::Q8_0 => {
            for (v, &byte) in q.iter_mut().zip(&b[2..34]) {
                *v = i32::from(byte as i8);
            }
            out.scale = f16_at(b, 0);
            out.min = 0.0;
        }
        // Float and K-quant rows never reach here (see `dot_rows`).
        _ => {}
    }
}

/// One K-quant super-block (`b`-th of the row) against the row's Q8_K block.
fn k_block(ty: WeightType, block: &[u8], row: &ActRow<'_>, b: usize) -> f32 {
    let y = &row.kqs[256 * b..256 * (b + 1)];
    let sums = &row.ksums[16 * b..16 * (b + 1)];
    let dy = row.kd[b];
    match ty {
        WeightType::Q6K => {
            let mut sumi = 0i32;
            for i in 0..16 {
                let mut sub = 0i32;
                for l in 0..16 {
                    let (raw, _) = q6k_value(block, 16 * i + l);
                    sub += (i32::from(raw) - 32) * i32::from(y[16 * i + l]);
                }
                sumi += i32::from(block[192 + i] as i8) * sub;
            }
            f16_at(block, 208) * dy * sumi as f32
        }
        _ => {
            let q5 = ty == WeightType::Q5K;
            let (sc, m) = scales_mins_k4(&block[4..16]);
            let qs = if q5 { &block[48..176] } else { &block[16..144] };
            let (mut sumi, mut mins) = (0i32, 0i32);
            for j in 0..8 {
                let (g, high) = (j / 2, j % 2 == 1);
                let mut sub = 0i32;
                for l in 0..32 {
                    let byte = qs[32 * g + l];
                    let mut v = if high { byte >> 4 } else { byte & 0xF };
                    if q5 {
                        v |= ((block[16 + l] >> j) & 1) << 4;
                    }
                    sub += i32::from(v) * i32::from(y[32 * j + l]);
                }
                sumi += i32::from(sc[j]) * sub;
                mins += i32::from(m[j]) * (i32::from(sums[2 * j]) + i32::from(sums[2 * j + 1]));
            }
            f16_at(block, 0) * dy * sumi as f32 - f16_at(block, 2) * dy * mins as f32
        }
    }
}

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums: the same association the SIMD versions use, and it lets the
    // compiler vectorise this loop where it can.
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        sum += x * y;
    }
    sum
}

pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}
