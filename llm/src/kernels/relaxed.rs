//! WebAssembly relaxed-SIMD kernels (feature `relaxed-simd`, on top of simd128): the same
//! results, bit for bit, as [`super::scalar`], with `i32x4.relaxed_dot_i8x16_i7x16_add` as the
//! byte product. Engines lower it to x86's `pmaddubsw` + `pmaddwd` (AVX2's own grouping: lane
//! `k` holds values `4k..4k+3`) or to Arm's `sdot`, so the weights stay bytes: no widening to
//! i16 per block.
//!
//! The instruction is exact only while its second operand is in 0..=127 (above that its
//! result is up to the engine), so that operand is always weights that are stored unsigned:
//! the formats with a min (Q4_1, Q5_1, Q4_K, Q5_K) as they are, and Q6_K as its stored
//! values 0..64 with the offset of 32 taken off afterwards through the activations' sums of 16.
//! The other signed formats (Q4_0, Q5_0, Q8_0) keep the simd128 kernels: moving their signs
//! onto the activations measured slower than widening them.
//!
//! A build with this feature runs only on engines with relaxed SIMD (wasmtime, Chromium ≥
//! 114, Firefox ≥ 120); a module that uses it fails to compile elsewhere, so it is a build
//! option, not a run-time choice.

use super::ActRow;
use super::formats::{WeightType, f16_at, scales_mins_k4};
use super::scalar::{Lanes, Set, each_row, each_row_pair, k_lanes, two_sets, two_sets_of_rows};
use super::simd128::{
    Halves, five_bits, half, halves, hsum_i32, k6_values, k45_mins, k45_values, load16,
};
use core::arch::wasm32::*;

/// The 16 products of the activations `x` (signed) with the weights `w` (0..=127) summed in
/// fours and added to `acc`: lane `k` gains values `4k..4k+3`.
#[inline(always)]
fn quads(w: v128, x: v128, acc: v128) -> v128 {
    i32x4_relaxed_dot_i8x16_i7x16_add(x, w, acc)
}

/// As [`quads`] with every product times `scale` (an i16 splat), without an i32 multiply:
/// the pair sums (at most 2·127·127, exact in i16) go through `i32x4.dot_i16x8` with it.
#[inline(always)]
fn scaled_quads(w: v128, x: v128, scale: v128) -> v128 {
    i32x4_dot_i16x8(i16x8_relaxed_dot_i8x16_i7x16(x, w), scale)
}

/// `out[i]` = row `i` of `rows` (rows of `row_bytes`) times `x`: a decode step's rows in one
/// call.
///
/// # Safety
/// As [`dot_rows`], for every row.
#[target_feature(enable = "relaxed-simd")]
pub unsafe fn dot_run(
    ty: WeightType,
    rows: &[u8],
    row_bytes: usize,
    x: &ActRow<'_>,
    out: &mut [f32],
) {
    let cols = row_bytes / ty.block_bytes() * ty.block_elems();
    debug_assert!(x.covers(ty, cols));
    let one = core::array::from_ref(x);
    // One loop per format, the format's kernel inlined into it (see `simd128::dot_run`).
    match ty {
        WeightType::Q4_1 => row_pairs::<Q41>(rows, row_bytes, one, out),
        WeightType::Q5_1 => row_pairs::<Q51>(rows, row_bytes, one, out),
        WeightType::Q4K => each_row!(rows, row_bytes, out, |w| k45::<1, false>(w, one)),
        WeightType::Q5K => each_row!(rows, row_bytes, out, |w| k45::<1, true>(w, one)),
        WeightType::Q6K => each_row!(rows, row_bytes, out, |w| k6::<1>(w, one)),
        // The signed formats and the floats keep the simd128 kernels (see the module's doc).
        // SAFETY: the caller's contract.
        _ => unsafe { super::simd128::dot_run(ty, rows, row_bytes, x, out) },
    }
}

/// # Safety
/// Every row must [cover](ActRow::covers) the weight row: the kernels read whole blocks of
/// the rows through raw pointers.
#[target_feature(enable = "relaxed-simd")]
pub unsafe fn dot_rows<const N: usize>(ty: WeightType, w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let cols = w.len() / ty.block_bytes() * ty.block_elems();
    debug_assert!(x.iter().all(|r| r.covers(ty, cols)));
    match ty {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => super::scalar::dot_rows(ty, w, x),
        // SAFETY: the caller's contract.
        WeightType::Q4_0 | WeightType::Q5_0 | WeightType::Q8_0 => unsafe {
            super::simd128::dot_rows(ty, w, x)
        },
        WeightType::Q4_1 => blocks::<N, Q41>(w, x),
        WeightType::Q5_1 => blocks::<N, Q51>(w, x),
        WeightType::Q4K => k45::<N, false>(w, x),
        WeightType::Q5K => k45::<N, true>(w, x),
        WeightType::Q6K => k6::<N>(w, x),
    }
}

/// A 32-value format with a min: its block size, and a block's 32 values (0..32) as bytes
/// with its scale and min.
trait Block32 {
    const BYTES: usize;
    /// Block `b`, its halves read through `t`.
    fn unpack(b: &[u8], t: &Halves) -> (v128, v128, f32, f32);
}

struct Q41;
struct Q51;

impl Block32 for Q41 {
    const BYTES: usize = 20;
    #[inline(always)]
    fn unpack(b: &[u8], t: &Halves) -> (v128, v128, f32, f32) {
        let v = load16(b, 4);
        (
            v128_and(v, u8x16_splat(0xF)),
            u8x16_shr(v, 4),
            half(t, b, 0),
            half(t, b, 2),
        )
    }
}

impl Block32 for Q51 {
    const BYTES: usize = 24;
    #[inline(always)]
    fn unpack(b: &[u8], t: &Halves) -> (v128, v128, f32, f32) {
        let (lo, hi) = five_bits(b, 4);
        (lo, hi, half(t, b, 0), half(t, b, 2))
    }
}

/// The row's 8-bit values `16·h..16·h + 16` of `qs` (the row covers the weight row, see
/// `dot_rows`).
#[inline(always)]
fn act16(qs: &[i8], h: usize) -> v128 {
    debug_assert!(16 * h + 16 <= qs.len());
    // SAFETY: `dot_rows`' contract: the row holds every block of the weight row.
    unsafe { v128_load(qs.as_ptr().add(16 * h).cast()) }
}

/// Eight i16 values of `v` from `at`.
#[inline(always)]
fn load_i16(v: &[i16], at: usize) -> v128 {
    assert!(at + 8 <= v.len());
    // SAFETY: checked above.
    unsafe { v128_load(v.as_ptr().add(at).cast()) }
}

/// Q4_K / Q5_K against Q8_K: the super-block sums in i32 with the 6-bit scales applied.
#[target_feature(enable = "relaxed-simd")]
fn k45<const N: usize, const Q5: bool>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let bytes = if Q5 { 176 } else { 144 };
    let mut lanes = [Lanes::default(); N];
    let zero = i32x4_splat(0);
    for (blk, b) in w.chunks_exact(bytes).enumerate() {
        let (sc, m) = scales_mins_k4(&b[4..16]);
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let mut sumi = [zero; N];
        for (j, &sc_j) in sc.iter().enumerate() {
            let (lo, hi) = k45_values::<Q5>(b, j);
            let scale = i16x8_splat(i16::from(sc_j));
            for (r, row) in x.iter().enumerate() {
                let k = 16 * blk + 2 * j;
                let dot = i32x4_add(
                    scaled_quads(lo, act16(row.kqs, k), scale),
                    scaled_quads(hi, act16(row.kqs, k + 1), scale),
                );
                sumi[r] = i32x4_add(sumi[r], dot);
            }
        }
        for (r, row) in x.iter().enumerate() {
            let mins = k45_mins(&m, &row.ksums[16 * blk..16 * blk + 16]);
            k_lanes(
                &mut lanes[r],
                blk,
                (d, dmin, row.kd[blk]),
                (hsum_i32(sumi[r]), mins),
                true,
            );
        }
    }
    lanes.map(|l| l.total())
}

/// Q6_K against Q8_K: the stored values 0..64 multiplied as they are, the 16-value scales
/// applied in i32, and the offset of 32 taken off with the activations' sums of 16 (the
/// same integers as multiplying the signed values).
#[target_feature(enable = "relaxed-simd")]
fn k6<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let mut lanes = [Lanes::default(); N];
    let zero = i32x4_splat(0);
    for (blk, b) in w.chunks_exact(210).enumerate() {
        let d = f16_at(b, 208);
        let scales: [i16; 16] = std::array::from_fn(|g| i16::from(b[192 + g] as i8));
        // The scales as two i16 vectors, against the activations' 16 sums of 16.
        let (s0, s1) = (load_i16(&scales, 0), load_i16(&scales, 8));
        let mut sumi = [zero; N];
        for j in 0..8 {
            let (a, bb) = k6_values(b, j);
            // Values 32j..32j + 32 are the 16-value groups 2j and 2j + 1.
            let (sa, sb) = (i16x8_splat(scales[2 * j]), i16x8_splat(scales[2 * j + 1]));
            for (r, row) in x.iter().enumerate() {
                let k = 16 * blk + 2 * j;
                let dot = i32x4_add(
                    scaled_quads(a, act16(row.kqs, k), sa),
                    scaled_quads(bb, act16(row.kqs, k + 1), sb),
                );
                sumi[r] = i32x4_add(sumi[r], dot);
            }
        }
        for (r, row) in x.iter().enumerate() {
            // Σ scale · sum of 16 (|sum| ≤ 16·127, so each product fits i32).
            let sums = &row.ksums[16 * blk..16 * blk + 16];
            let offset = i32x4_add(
                i32x4_dot_i16x8(load_i16(sums, 0), s0),
                i32x4_dot_i16x8(load_i16(sums, 8), s1),
            );
            let total = i32x4_sub(sumi[r], i32x4_shl(offset, 5));
            k_lanes(
                &mut lanes[r],
                blk,
                (d, 0.0, row.kd[blk]),
                (hsum_i32(total), 0),
                false,
            );
        }
    }
    lanes.map(|l| l.total())
}

/// An unpacked row against `N` rows (the loop of `blocks` on values from the buffer).
///
/// # Safety
/// Every row must cover the unpacked row.
#[target_feature(enable = "relaxed-simd")]
pub unsafe fn dot_unpacked<const N: usize>(
    u: &super::scalar::Unpacked,
    x: &[ActRow<'_>; N],
) -> [f32; N] {
    if !u.has_min {
        // Signed values (see the module's doc).
        // SAFETY: the caller's contract.
        return unsafe { super::simd128::dot_unpacked(u, x) };
    }
    let zero = f32x4_splat(0.0);
    two_sets!(
        N,
        u.d.len(),
        (zero, zero),
        |k, set| {
            let q = &u.q[32 * k..32 * k + 32];
            // SAFETY: `q` holds 32 bytes.
            let (a, b) = unsafe {
                (
                    v128_load(q.as_ptr().cast()),
                    v128_load(q.as_ptr().add(16).cast()),
                )
            };
            add_block((a, b), (u.d[k], u.m[k]), k, x, set);
        },
        finish
    )
}

/// A decode step's rows two at a time, their blocks interleaved (see `simd128::row_pairs`).
#[inline(always)]
fn row_pairs<F: Block32>(rows: &[u8], row_bytes: usize, x: &[ActRow<'_>; 1], out: &mut [f32]) {
    let t = halves();
    let zero = f32x4_splat(0.0);
    each_row_pair!(
        rows,
        row_bytes,
        out,
        |w0, w1| {
            let w = [w0, w1];
            two_sets_of_rows!(
                2,
                w0.len() / F::BYTES,
                (zero, zero),
                |r, k, set| {
                    let (a, b, scale, min) = F::unpack(&w[r][F::BYTES * k..F::BYTES * (k + 1)], t);
                    add_block((a, b), (scale, min), k, x, set)
                },
                finish
            )
        },
        |w| blocks::<1, F>(w, x)
    )
}

/// The shared loop of the 32-value formats with a min in the canonical order (see
/// `super::scalar`): each block unpacked once, its eight partial sums with every row scaled
/// into the set of lanes of its parity, kept as two f32x4 halves.
#[inline(always)]
fn blocks<const N: usize, F: Block32>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let t = halves();
    let zero = f32x4_splat(0.0);
    two_sets!(
        N,
        w.len() / F::BYTES,
        (zero, zero),
        |k, set| {
            let (a, b, scale, min) = F::unpack(&w[F::BYTES * k..F::BYTES * (k + 1)], t);
            add_block((a, b), (scale, min), k, x, set)
        },
        finish
    )
}

/// Block `k` (values `a`: 0..16, `b`: 16..32, with its scale and min) against every row, into
/// one lane set.
#[inline(always)]
fn add_block<const N: usize>(
    (a, b): (v128, v128),
    (scale, min): (f32, f32),
    k: usize,
    x: &[ActRow<'_>; N],
    (acc, mins): &mut Set<(v128, v128), N>,
) {
    let zero = i32x4_splat(0);
    for (r, row) in x.iter().enumerate() {
        let qa = quads(a, act16(row.qs, 2 * k), zero);
        let qb = quads(b, act16(row.qs, 2 * k + 1), zero);
        let s = f32x4_splat(scale * row.d[k]);
        let (lo, hi) = acc[r];
        acc[r] = (
            f32x4_add(lo, f32x4_mul(s, f32x4_convert_i32x4(qa))),
            f32x4_add(hi, f32x4_mul(s, f32x4_convert_i32x4(qb))),
        );
        mins[r] += min * row.s[k];
    }
}

/// The canonical sum of two lane sets held as f32x4 halves (as in [`super::simd128`]).
#[inline(always)]
fn finish((lo0, hi0): (v128, v128), (lo1, hi1): (v128, v128)) -> f32 {
    let t = f32x4_add(f32x4_add(lo0, lo1), f32x4_add(hi0, hi1));
    (f32x4_extract_lane::<0>(t) + f32x4_extract_lane::<2>(t))
        + (f32x4_extract_lane::<1>(t) + f32x4_extract_lane::<3>(t))
}
