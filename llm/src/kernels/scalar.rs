//! The reference kernels, and the definition of how every kernel sums.
//!
//! Weights are unpacked to integers (offsets applied) and multiplied with the 8-bit
//! activations in exact integer arithmetic, then scaled and summed in floats in one fixed
//! order, the **canonical order**, which every SIMD kernel reproduces exactly, so every
//! instruction set gives bit-identical results: a model's greedy text cannot depend on the
//! machine. No step uses a fused multiply-add (simd128 has none); every `a·b + c` rounds twice.
//!
//! - 32-value formats: block `b`'s products are summed in eight exact partial sums, lane `k`
//!   holding values `4k..4k+3` (what AVX2's `maddubs` + `madd` leave). Two sets of eight float
//!   lanes take the even and the odd blocks: `lane_k = lane_k + (d_w·d_x)·p_k`; the min term
//!   goes to a scalar per set, `m = m + min·s_x`. The result is the canonical sum of the two
//!   sets' lanes added lane by lane, plus the two mins added.
//! - K-quants: one exact integer per 256-value super-block (sub-block scales applied as
//!   integers) and one for the min term; super-block `b` goes to lane `b mod 8`:
//!   `lane = (lane + (d·d_x)·isum) − (dmin·d_x)·msum`.
//! - Float weights: value `i` goes to lane `i mod 8`, `lane = lane + w·x`.
//! - The canonical sum of eight lanes is `((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))`.
//!
//! This matters more than it seems: rounding activations to 8 bits is discontinuous, so a
//! difference in the last bit of one product can flip a rounding in the next layer and move
//! the logits by as much as the quantisation noise itself.

use super::ActRow;
use super::formats::{self, WeightType, f16_at, q6k_value, scales_mins_k4};

/// Eight float accumulators summed in the canonical order.
#[derive(Clone, Copy, Default, Debug)]
pub struct Lanes(pub [f32; 8]);

impl Lanes {
    /// `lane[j] = lane[j] + v`.
    #[inline(always)]
    pub fn add(&mut self, j: usize, v: f32) {
        self.0[j] += v;
    }

    /// The canonical sum of the lanes.
    #[inline(always)]
    pub fn total(&self) -> f32 {
        let l = &self.0;
        ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
    }
}

/// One 32-value block as integers with its scale and min (`value = d·q + m`).
struct Block {
    q: [i32; 32],
    d: f32,
    m: f32,
}

pub fn dot_rows<const N: usize>(ty: WeightType, w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let mut lanes = [Lanes::default(); N];
    match ty {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => {
            let mut values = vec![0.0; x[0].values.len()];
            formats::dequantize_row(ty, w, &mut values);
            for (l, row) in lanes.iter_mut().zip(x) {
                for (i, (&a, &b)) in values.iter().zip(row.values).enumerate() {
                    l.add(i % 8, a * b);
                }
            }
        }
        WeightType::Q4K | WeightType::Q5K | WeightType::Q6K => {
            for (b, block) in w.chunks_exact(ty.block_bytes()).enumerate() {
                for (l, row) in lanes.iter_mut().zip(x) {
                    k_block(ty, block, row, b, l);
                }
            }
        }
        _ => return blocks32(ty, w, x),
    }
    lanes.map(|l| l.total())
}

/// The 32-value formats in the canonical order: the row unpacked, then multiplied.
fn blocks32<const N: usize>(ty: WeightType, w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let mut u = Unpacked::default();
    unpack_row(ty, w, &mut u);
    dot_unpacked(&u, x)
}

/// One of the two alternating lane sets of `N` rows: each row's eight float lanes (an `A`,
/// however a kernel holds them) and its min term.
pub type Set<A, const N: usize> = ([A; N], [f32; N]);

/// The canonical order's two lane sets over blocks `0..nb` of `N` rows:
/// `two_sets!(N, nb, zero, |b, set| body, finish)` runs `body` for each block `b` with `set`
/// the even set or the odd one (a `&mut Set`), then gives each row `finish(even, odd)` (the
/// canonical sum of the two sets' lanes added lane by lane) plus the two mins added.
///
/// Each block gets its set as a distinct variable rather than `sets[b % 2]`: a set picked at
/// run time lives in memory, and then every block waits on a store and a reload. It is a
/// macro so that the body is inlined at each of its uses (a closure called from three places
/// is not always inlined, and then each block is a call with the sets in memory again).
macro_rules! two_sets {
    ($n:expr, $nb:expr, $zero:expr, |$b:ident, $set:pat_param| $body:expr, $finish:expr) => {{
        let nb: usize = $nb;
        let zero = $zero;
        let mut even: $crate::kernels::scalar::Set<_, { $n }> = ([zero; $n], [0.0; $n]);
        let mut odd: $crate::kernels::scalar::Set<_, { $n }> = ([zero; $n], [0.0; $n]);
        let mut next = 0;
        while next + 1 < nb {
            {
                let ($b, $set) = (next, &mut even);
                $body;
            }
            {
                let ($b, $set) = (next + 1, &mut odd);
                $body;
            }
            next += 2;
        }
        if next < nb {
            let ($b, $set) = (next, &mut even);
            $body;
        }
        let finish = $finish;
        let out: [f32; $n] =
            ::std::array::from_fn(|r| finish(even.0[r], odd.0[r]) + (even.1[r] + odd.1[r]));
        out
    }};
}
pub(crate) use two_sets;

/// [`two_sets!`] for `R` weight rows against one activation row: the rows' blocks
/// interleaved (block `b` of every row, then block `b + 1` of every row), each row summed in
/// its own pair of sets, so each row's result is bit for bit its result alone.
/// `two_sets_of_rows!(R, nb, zero, |r, b, set| body, finish)` gives `[f32; R]`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
macro_rules! two_sets_of_rows {
    ($r:expr, $nb:expr, $zero:expr, |$row:ident, $b:ident, $set:pat_param| $body:expr, $finish:expr) => {{
        let nb: usize = $nb;
        let zero = $zero;
        let mut even: [$crate::kernels::scalar::Set<_, 1>; $r] = [([zero; 1], [0.0; 1]); $r];
        let mut odd: [$crate::kernels::scalar::Set<_, 1>; $r] = [([zero; 1], [0.0; 1]); $r];
        let mut next = 0;
        while next + 1 < nb {
            for $row in 0..$r {
                {
                    let ($b, $set) = (next, &mut even[$row]);
                    $body;
                }
                {
                    let ($b, $set) = (next + 1, &mut odd[$row]);
                    $body;
                }
            }
            next += 2;
        }
        if next < nb {
            for $row in 0..$r {
                let ($b, $set) = (next, &mut even[$row]);
                $body;
            }
        }
        let finish = $finish;
        let out: [f32; $r] = ::std::array::from_fn(|r| {
            finish(even[r].0[0], odd[r].0[0]) + (even[r].1[0] + odd[r].1[0])
        });
        out
    }};
}
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use two_sets_of_rows;

/// A decode step's rows (`$rows`, rows of `$row_bytes`) two at a time: `$pair` gives
/// `[f32; 2]` for the rows `$w0`, `$w1`; a last odd row goes through `$one` (`[f32; 1]` for
/// `$w`). For kernels whose single row cannot keep the memory busy (see `simd128`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
macro_rules! each_row_pair {
    ($rows:expr, $row_bytes:expr, $out:expr, |$w0:ident, $w1:ident| $pair:expr, |$w:ident| $one:expr) => {{
        let row_bytes: usize = ($row_bytes).max(1);
        let pairs = $rows.chunks_exact(2 * row_bytes);
        let rest = pairs.remainder();
        let mut outs = $out.chunks_exact_mut(2);
        for (o, w) in (&mut outs).zip(pairs) {
            let ($w0, $w1) = w.split_at(row_bytes);
            o.copy_from_slice(&$pair);
        }
        for (o, $w) in outs
            .into_remainder()
            .iter_mut()
            .zip(rest.chunks_exact(row_bytes))
        {
            let [d] = $one;
            *o = d;
        }
    }};
}
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use each_row_pair;

/// The loop of each set's `dot_run`: `out[i] = $e` with `$w` row `i` of `$rows` (rows of
/// `$row_bytes` bytes) and `$e` giving `[f32; 1]`, inside the caller's target features, so
/// that the format's kernel inlines into the run instead of being called row by row.
macro_rules! each_row {
    ($rows:expr, $row_bytes:expr, $out:expr, |$w:ident| $e:expr) => {
        for (o, $w) in $out.iter_mut().zip($rows.chunks_exact(($row_bytes).max(1))) {
            let [d] = $e;
            *o = d;
        }
    };
}
pub(crate) use each_row;

/// An unpacked row of a 32-value format against `N` rows, in the canonical order.
pub fn dot_unpacked<const N: usize>(u: &Unpacked, x: &[ActRow<'_>; N]) -> [f32; N] {
    debug_assert!(!u.k_quant, "only the AVX2 set unpacks K-quant rows");
    two_sets!(
        N,
        u.d.len(),
        Lanes::default(),
        |b, (lanes, mins)| {
            let q = &u.q[32 * b..32 * b + 32];
            for r in 0..N {
                let row = &x[r];
                let qx = &row.qs[32 * b..32 * b + 32];
                let scale = u.d[b] * row.d[b];
                for k in 0..8 {
                    let p: i32 = (4 * k..4 * k + 4)
                        .map(|e| i32::from(q[e]) * i32::from(qx[e]))
                        .sum();
                    lanes[r].add(k, scale * p as f32);
                }
                if u.has_min {
                    mins[r] += u.m[b] * row.s[b];
                }
            }
        },
        |a: Lanes, b: Lanes| { Lanes(std::array::from_fn(|k| a.0[k] + b.0[k])).total() }
    )
}

/// A weight row of a 32-value format unpacked once to be multiplied with many tokens (a
/// prefill): each value as a byte (`q − offset` for the signed formats, `q` for those with a
/// min), and each block's scale and min as floats. The products on it are exactly those on
/// the packed row.
#[derive(Debug, Default, Clone)]
pub struct Unpacked {
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub m: Vec<f32>,
    /// Values are unsigned with a min (Q4_1, Q5_1), else signed.
    pub has_min: bool,
    /// A Q4_K/Q5_K row (only the AVX2 set unpacks those, see `Isa::unpacks`): `q` then holds
    /// each super-block's 256 values (0..32), `d` and `m` its d and dmin, and `scales` its
    /// eight sub-block scales then its eight mins.
    pub k_quant: bool,
    pub scales: Vec<[u8; 16]>,
}

/// Unpacks `row`, of a 32-value format `ty`, into `out` (reusing its buffers).
pub fn unpack_row(ty: WeightType, row: &[u8], out: &mut Unpacked) {
    let blocks = row.len() / ty.block_bytes();
    out.q.resize(32 * blocks, 0);
    out.d.resize(blocks, 0.0);
    out.m.resize(blocks, 0.0);
    out.has_min = matches!(ty, WeightType::Q4_1 | WeightType::Q5_1);
    out.k_quant = false;
    let mut blk = Block {
        q: [0; 32],
        d: 0.0,
        m: 0.0,
    };
    for (b, block) in row.chunks_exact(ty.block_bytes()).enumerate() {
        unpack(ty, block, &mut blk);
        for (o, &v) in out.q[32 * b..32 * b + 32].iter_mut().zip(&blk.q) {
            // Every value fits: −16..=15 signed, 0..=31 unsigned, or Q8_0's own bytes.
            *o = v as i8;
        }
        out.d[b] = blk.d;
        out.m[b] = blk.m;
    }
}

/// A block of one of the 32-value formats.
fn unpack(ty: WeightType, b: &[u8], out: &mut Block) {
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
        }
        WeightType::Q8_0 => {
            for (v, &byte) in q.iter_mut().zip(&b[2..34]) {
                *v = i32::from(byte as i8);
            }
        }
        // Float and K-quant rows never reach here (see `dot_rows`).
        _ => {}
    }
    out.d = f16_at(b, 0);
    out.m = if matches!(ty, WeightType::Q4_1 | WeightType::Q5_1) {
        f16_at(b, 2)
    } else {
        0.0
    };
}

/// The exact integer sums of one K-quant super-block against a Q8_K block: the weighted
/// product `Σ_j sc_j · Σ q·q_x` (offsets applied) and, for Q4_K/Q5_K, the min term
/// `Σ_j m_j · Σ q_x`.
pub(crate) fn k_sums(ty: WeightType, block: &[u8], y: &[i8], sums: &[i16]) -> (i32, i32) {
    match ty {
        WeightType::Q6K => {
            let mut isum = 0i32;
            for i in 0..16 {
                let mut sub = 0i32;
                for l in 0..16 {
                    let (raw, _) = q6k_value(block, 16 * i + l);
                    sub += (i32::from(raw) - 32) * i32::from(y[16 * i + l]);
                }
                isum += i32::from(block[192 + i] as i8) * sub;
            }
            (isum, 0)
        }
        _ => {
            let q5 = ty == WeightType::Q5K;
            let (sc, m) = scales_mins_k4(&block[4..16]);
            let qs = if q5 { &block[48..176] } else { &block[16..144] };
            let (mut isum, mut msum) = (0i32, 0i32);
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
                isum += i32::from(sc[j]) * sub;
                msum += i32::from(m[j]) * (i32::from(sums[2 * j]) + i32::from(sums[2 * j + 1]));
            }
            (isum, msum)
        }
    }
}

/// The scales of a K-quant super-block: `(d, dmin)` (dmin is 0 for Q6_K).
#[inline(always)]
pub(crate) fn k_scales(ty: WeightType, block: &[u8]) -> (f32, f32) {
    match ty {
        WeightType::Q6K => (f16_at(block, 208), 0.0),
        _ => (f16_at(block, 0), f16_at(block, 2)),
    }
}

/// One K-quant super-block (the `b`-th of the row) into the row's lanes.
fn k_block(ty: WeightType, block: &[u8], row: &ActRow<'_>, b: usize, lanes: &mut Lanes) {
    let (isum, msum) = k_sums(
        ty,
        block,
        &row.kqs[256 * b..256 * (b + 1)],
        &row.ksums[16 * b..16 * (b + 1)],
    );
    let (d, dmin) = k_scales(ty, block);
    k_lanes(
        lanes,
        b,
        (d, dmin, row.kd[b]),
        (isum, msum),
        ty != WeightType::Q6K,
    );
}

/// Adds super-block `b`'s exact sums to a row's lanes in the canonical order:
/// `lane = (lane + (d·d_x)·isum) − (dmin·d_x)·msum` (the min term only where the format has
/// one). Every instruction set calls this same function.
#[inline(always)]
pub(crate) fn k_lanes(
    lanes: &mut Lanes,
    b: usize,
    (d, dmin, dy): (f32, f32, f32),
    (isum, msum): (i32, i32),
    has_min: bool,
) {
    lanes.add(b % 8, (d * dy) * isum as f32);
    if has_min {
        lanes.add(b % 8, -((dmin * dy) * msum as f32));
    }
}

/// `Σ a·b` in the canonical order.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = Lanes::default();
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        lanes.add(i % 8, x * y);
    }
    lanes.total()
}

pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}
