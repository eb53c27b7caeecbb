//! WebAssembly simd128 kernels (browser and edge component builds, which enable `+simd128`).
//! They give bit for bit the results of [`super::scalar`] (see its canonical summation
//! order).
//!
//! simd128 has no byte product that sums (that is relaxed SIMD), so every format is unpacked to
//! signed bytes (offsets applied) and widened to i16 once per block, and each row's bytes are
//! widened and multiplied with `i32x4.dot_i16x8_s`: exact integer sums per block (per
//! super-block for the K-quants, whose sub-block scales are folded into the i16 weights), then
//! scaled into the canonical lanes exactly as the scalar reference does.

use super::ActRow;
use super::formats::{WeightType, f16_at, scales_mins_k4};
use super::scalar::{Lanes, Set, each_row, each_row_pair, k_lanes, two_sets, two_sets_of_rows};
use core::arch::wasm32::*;

/// One block of 32 weights widened to i16 (`a`: elements 0..16, `b`: 16..32), with the float
/// scale and min that give their values (`scale·q + min`).
struct Sub {
    a: Wide,
    b: Wide,
    scale: f32,
    min: f32,
}

/// 16 values widened to i16 in the order [`super::WIDE_ORDER`]: the even values 0, 2, …, 14
/// in the first half, the odd ones in the second, so that lane `k` of the two halves' pair
/// products added holds values `4k..4k+3`: AVX2's grouping, which the canonical order of the
/// 32-value formats needs, with no shuffle of the sums. The even and odd bytes of a vector
/// are the low and high bytes of its i16 lanes, so widening costs three shifts.
#[derive(Clone, Copy)]
pub(super) struct Wide(v128, v128);

/// 16 signed bytes widened to i16 in the order of [`Wide`].
#[inline(always)]
pub(super) fn wide(v: v128) -> Wide {
    Wide(i16x8_shr(i16x8_shl(v, 8), 8), i16x8_shr(v, 8))
}

/// The 32 nibbles of the 16 bytes `v` as values 0..16 (low nibbles) and 16..32 (high
/// nibbles, the Q4 layout), widened in the order of [`Wide`], less `offset`.
#[inline(always)]
fn wide_nibbles(v: v128, offset: i16) -> (Wide, Wide) {
    let (m, o) = (u16x8_splat(0xF), i16x8_splat(offset));
    let at = |shift: u32| i16x8_sub(v128_and(u16x8_shr(v, shift), m), o);
    (Wide(at(0), at(8)), Wide(at(4), at(12)))
}

impl Wide {
    /// Both halves times an i16 (a K-quant sub-block scale; the products fit in i16).
    #[inline(always)]
    fn scaled(self, s: i16) -> Wide {
        let s = i16x8_splat(s);
        Wide(i16x8_mul(self.0, s), i16x8_mul(self.1, s))
    }

    /// The 16 products with `x` summed in fours: lane `k` holds values `4k..4k+3`.
    #[inline(always)]
    pub(super) fn quads(self, x: Wide) -> v128 {
        i32x4_add(i32x4_dot_i16x8(self.0, x.0), i32x4_dot_i16x8(self.1, x.1))
    }
}

/// `out[i]` = row `i` of `rows` (rows of `row_bytes`) times `x`: a decode step's rows in one
/// call.
///
/// # Safety
/// As [`dot_rows`], for every row.
pub unsafe fn dot_run(
    ty: WeightType,
    rows: &[u8],
    row_bytes: usize,
    x: &ActRow<'_>,
    out: &mut [f32],
) {
    let cols = row_bytes / ty.block_bytes() * ty.block_elems();
    debug_assert!(x.covers(ty, cols));
    let x = core::array::from_ref(x);
    // One loop per format, the format's kernel inlined into it (a `match` per row kept the
    // kernel a call).
    match ty {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => {
            each_row!(rows, row_bytes, out, |w| super::scalar::dot_rows(ty, w, x))
        }
        WeightType::Q4_0 => row_pairs::<Q40>(rows, row_bytes, x, out),
        WeightType::Q4_1 => row_pairs::<Q41>(rows, row_bytes, x, out),
        WeightType::Q5_0 => row_pairs::<Q50>(rows, row_bytes, x, out),
        WeightType::Q5_1 => row_pairs::<Q51>(rows, row_bytes, x, out),
        WeightType::Q8_0 => row_pairs::<Q80>(rows, row_bytes, x, out),
        WeightType::Q4K => each_row!(rows, row_bytes, out, |w| k45::<1, false>(w, x)),
        WeightType::Q5K => each_row!(rows, row_bytes, out, |w| k45::<1, true>(w, x)),
        WeightType::Q6K => each_row!(rows, row_bytes, out, |w| k6::<1>(w, x)),
    }
}

/// # Safety
/// Every row must [cover](ActRow::covers) the weight row: the kernels read whole blocks of
/// the rows through raw pointers.
pub unsafe fn dot_rows<const N: usize>(ty: WeightType, w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let cols = w.len() / ty.block_bytes() * ty.block_elems();
    debug_assert!(x.iter().all(|r| r.covers(ty, cols)));
    match ty {
        WeightType::F32 | WeightType::F16 | WeightType::BF16 => super::scalar::dot_rows(ty, w, x),
        WeightType::Q4_0 => blocks::<N, Q40>(w, x),
        WeightType::Q4_1 => blocks::<N, Q41>(w, x),
        WeightType::Q5_0 => blocks::<N, Q50>(w, x),
        WeightType::Q5_1 => blocks::<N, Q51>(w, x),
        WeightType::Q8_0 => blocks::<N, Q80>(w, x),
        WeightType::Q4K => k45::<N, false>(w, x),
        WeightType::Q5K => k45::<N, true>(w, x),
        WeightType::Q6K => k6::<N>(w, x),
    }
}

/// A 32-value block format: its size, whether its blocks carry a min, and how a block
/// unpacks. (A trait rather than a closure, so that the unpacking is inlined into the loop.)
trait Block32 {
    const BYTES: usize;
    const HAS_MIN: bool;
    /// Block `b`, its halves read through `t` ([`halves`]).
    fn unpack(b: &[u8], t: &Halves) -> Sub;
}

/// Every half's value as [`f16_at`] converts it, indexed by its bits.
pub(super) type Halves = [f32; 1 << 16];

/// The table of every half's value, built on first use. wasm has no conversion instruction,
/// and converting each block's scale and min was a quarter of a single-token Q4_1 product's
/// time (`llm/examples/kbench`); a lookup is one load, and a model's scales take few distinct
/// values, so the entries it reads stay in cache.
pub(super) fn halves() -> &'static Halves {
    static TABLE: std::sync::OnceLock<Box<Halves>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let table: Vec<f32> = (0..=u16::MAX)
            .map(|h| f16_at(&h.to_le_bytes(), 0))
            .collect();
        match table.into_boxed_slice().try_into() {
            Ok(t) => t,
            Err(_) => unreachable!("one value for each of the 65536 halves"),
        }
    })
}

/// The half at `b[at..at + 2]`, through the table.
#[inline(always)]
pub(super) fn half(t: &Halves, b: &[u8], at: usize) -> f32 {
    assert!(at + 2 <= b.len());
    // SAFETY: checked above. One 16-bit load: LLVM kept the two bytes as two loads and a
    // shift, the table's index a third of a Q4_1 block's scalar work.
    let bits = unsafe { b.as_ptr().add(at).cast::<u16>().read_unaligned() };
    t[usize::from(u16::from_le(bits))]
}

struct Q40;
struct Q41;
struct Q50;
struct Q51;
struct Q80;

impl Block32 for Q40 {
    const BYTES: usize = 18;
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack(b: &[u8], t: &Halves) -> Sub {
        let (a, b2) = wide_nibbles(load16(b, 2), 8);
        Sub {
            a,
            b: b2,
            scale: half(t, b, 0),
            min: 0.0,
        }
    }
}

impl Block32 for Q41 {
    const BYTES: usize = 20;
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack(b: &[u8], t: &Halves) -> Sub {
        let (a, b2) = wide_nibbles(load16(b, 4), 0);
        Sub {
            a,
            b: b2,
            scale: half(t, b, 0),
            min: half(t, b, 2),
        }
    }
}

impl Block32 for Q50 {
    const BYTES: usize = 22;
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack(b: &[u8], t: &Halves) -> Sub {
        let (a, bb) = five_bits(b, 2);
        let sixteen = i8x16_splat(16);
        Sub::plain(
            i8x16_sub(a, sixteen),
            i8x16_sub(bb, sixteen),
            half(t, b, 0),
            0.0,
        )
    }
}

impl Block32 for Q51 {
    const BYTES: usize = 24;
    const HAS_MIN: bool = true;
    #[inline(always)]
    fn unpack(b: &[u8], t: &Halves) -> Sub {
        let (a, bb) = five_bits(b, 4);
        Sub::plain(a, bb, half(t, b, 0), half(t, b, 2))
    }
}

impl Block32 for Q80 {
    const BYTES: usize = 34;
    const HAS_MIN: bool = false;
    #[inline(always)]
    fn unpack(b: &[u8], t: &Halves) -> Sub {
        Sub::plain(load16(b, 2), load16(b, 18), half(t, b, 0), 0.0)
    }
}

/// The row's Q8_K values `16·h..16·h + 16`, widened (the row covers the weight row, see
/// `dot_rows`).
#[inline(always)]
fn kact16(row: &ActRow<'_>, h: usize) -> Wide {
    debug_assert!(16 * h + 16 <= row.kqs16.len());
    // SAFETY: `dot_rows`' contract: the row holds every super-block of the weight row.
    unsafe { load_wide(row.kqs16.as_ptr().add(16 * h)) }
}

/// The row's Q8 values of block `k`, widened, as halves 0..16 and 16..32 (the row covers
/// the weight row, see `dot_rows`).
#[inline(always)]
fn act32(row: &ActRow<'_>, k: usize) -> (Wide, Wide) {
    debug_assert!(32 * k + 32 <= row.qs16.len());
    // SAFETY: `dot_rows`' contract: the row holds every block of the weight row.
    unsafe {
        let p = row.qs16.as_ptr().add(32 * k);
        (load_wide(p), load_wide(p.add(16)))
    }
}

/// 16 i16 values at `p`.
///
/// # Safety
/// `p` points to 16 readable values.
#[inline(always)]
unsafe fn load_wide(p: *const i16) -> Wide {
    // SAFETY: the caller's contract.
    unsafe { Wide(v128_load(p.cast()), v128_load(p.add(8).cast())) }
}

#[inline(always)]
pub(super) fn load16(b: &[u8], at: usize) -> v128 {
    assert!(at + 16 <= b.len());
    // SAFETY: checked above.
    unsafe { v128_load(b.as_ptr().add(at).cast()) }
}

pub(super) fn hsum_i32(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        + i32x4_extract_lane::<1>(v)
        + i32x4_extract_lane::<2>(v)
        + i32x4_extract_lane::<3>(v)
}

/// Q4_K / Q5_K against Q8_K: the super-block sums in i32 with the 6-bit scales applied.
fn k45<const N: usize, const Q5: bool>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let bytes = if Q5 { 176 } else { 144 };
    let mut lanes = [Lanes::default(); N];
    for (blk, b) in w.chunks_exact(bytes).enumerate() {
        let (sc, m) = scales_mins_k4(&b[4..16]);
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let mut sumi = [i32x4_splat(0); N];
        for (j, &sc_j) in sc.iter().enumerate() {
            let (lo, hi) = k45_values::<Q5>(b, j);
            let (lo, hi) = (
                wide(lo).scaled(i16::from(sc_j)),
                wide(hi).scaled(i16::from(sc_j)),
            );
            for (r, row) in x.iter().enumerate() {
                let k = 16 * blk + 2 * j;
                let dot = i32x4_add(lo.quads(kact16(row, k)), hi.quads(kact16(row, k + 1)));
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

/// Q6_K against Q8_K: signed values, the 16-value scales applied in i32.
fn k6<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let mut lanes = [Lanes::default(); N];
    for (blk, b) in w.chunks_exact(210).enumerate() {
        let d = f16_at(b, 208);
        let mut sumi = [i32x4_splat(0); N];
        for j in 0..8 {
            let (a, bb) = k6_values(b, j);
            let (a, bb) = (
                i8x16_sub(a, i8x16_splat(32)),
                i8x16_sub(bb, i8x16_splat(32)),
            );
            let s = 2 * j;
            let (a, bb) = (
                wide(a).scaled(i16::from(b[192 + s] as i8)),
                wide(bb).scaled(i16::from(b[192 + s + 1] as i8)),
            );
            for (r, row) in x.iter().enumerate() {
                let k = 16 * blk + 2 * j;
                let dot = i32x4_add(a.quads(kact16(row, k)), bb.quads(kact16(row, k + 1)));
                sumi[r] = i32x4_add(sumi[r], dot);
            }
        }
        for (r, row) in x.iter().enumerate() {
            k_lanes(
                &mut lanes[r],
                blk,
                (d, 0.0, row.kd[blk]),
                (hsum_i32(sumi[r]), 0),
                false,
            );
        }
    }
    lanes.map(|l| l.total())
}

/// Sub-block `j` (0..8) of a Q4_K / Q5_K super-block `b`: its 32 values (0..32) as bytes,
/// values `32j..32j + 16` and `32j + 16..32j + 32`.
#[inline(always)]
pub(super) fn k45_values<const Q5: bool>(b: &[u8], j: usize) -> (v128, v128) {
    let qs = if Q5 { 48 } else { 16 };
    let g = j / 2;
    let (r0, r1) = (load16(b, qs + 32 * g), load16(b, qs + 32 * g + 16));
    let (lo, hi) = if j.is_multiple_of(2) {
        (
            v128_and(r0, u8x16_splat(0xF)),
            v128_and(r1, u8x16_splat(0xF)),
        )
    } else {
        (u8x16_shr(r0, 4), u8x16_shr(r1, 4))
    };
    if !Q5 {
        return (lo, hi);
    }
    let bit = |h: v128| i8x16_shl(v128_and(u8x16_shr(h, j as u32), u8x16_splat(1)), 4);
    (
        v128_or(lo, bit(load16(b, 16))),
        v128_or(hi, bit(load16(b, 32))),
    )
}

/// A Q4_K / Q5_K super-block's min term: its eight 6-bit mins `m` times the activations'
/// sums of the 32 values each covers (`sums`: the 16 sums of 16).
#[inline(always)]
pub(super) fn k45_mins(m: &[u8; 8], sums: &[i16]) -> i32 {
    (0..8)
        .map(|j| i32::from(m[j]) * (i32::from(sums[2 * j]) + i32::from(sums[2 * j + 1])))
        .sum()
}

/// Sub-block `j` (0..8) of a Q6_K super-block `b`: its 32 stored values (0..64, the signed
/// value plus 32) as bytes, values `32j..32j + 16` and `32j + 16..32j + 32`.
#[inline(always)]
pub(super) fn k6_values(b: &[u8], j: usize) -> (v128, v128) {
    // Half n = j / 4 of 128 values, chunk c = j % 4 of 32 within it.
    let (n, c) = (j / 4, j % 4);
    let ql = 64 * n + if c % 2 == 1 { 32 } else { 0 };
    let qh = 128 + 32 * n;
    let low = |v: v128| {
        if c < 2 {
            v128_and(v, u8x16_splat(0xF))
        } else {
            u8x16_shr(v, 4)
        }
    };
    let high = |v: v128| i8x16_shl(v128_and(u8x16_shr(v, 2 * c as u32), u8x16_splat(3)), 4);
    let value = |at: usize| v128_or(low(load16(b, ql + at)), high(load16(b, qh + at)));
    (value(0), value(16))
}

impl Sub {
    #[inline(always)]
    fn plain(a: v128, b: v128, scale: f32, min: f32) -> Sub {
        Sub {
            a: wide(a),
            b: wide(b),
            scale,
            min,
        }
    }
}

/// Low and high nibbles of the 16 bytes at `b[at..]`.
#[inline(always)]
fn nibbles(b: &[u8], at: usize) -> (v128, v128) {
    assert!(at + 16 <= b.len());
    // SAFETY: checked above.
    let v = unsafe { v128_load(b.as_ptr().add(at).cast()) };
    (v128_and(v, u8x16_splat(0xF)), u8x16_shr(v, 4))
}

/// Q5 values (0..32) from the 32 high bits at `b[at..at + 4]` and the nibbles after them.
#[inline(always)]
pub(super) fn five_bits(b: &[u8], at: usize) -> (v128, v128) {
    let (lo, hi) = nibbles(b, at + 4);
    let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let bits = |half: u32| {
        // Byte i gets bit i of `half`: spread the two bytes, pick each one's bit, test it.
        let spread = i8x16_shuffle::<0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1>(
            u16x8_splat(half as u16),
            u16x8_splat(half as u16),
        );
        let mask = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        v128_and(i8x16_eq(v128_and(spread, mask), mask), u8x16_splat(0x10))
    };
    (v128_or(lo, bits(qh & 0xFFFF)), v128_or(hi, bits(qh >> 16)))
}

/// An unpacked row against `N` rows (the loop of `blocks` on values from the buffer).
///
/// # Safety
/// Every row must cover the unpacked row.
pub unsafe fn dot_unpacked<const N: usize>(
    u: &super::scalar::Unpacked,
    x: &[ActRow<'_>; N],
) -> [f32; N] {
    let zero = f32x4_splat(0.0);
    two_sets!(
        N,
        u.d.len(),
        (zero, zero),
        |k, set| {
            // SAFETY: block k lies inside the buffer.
            let (a, b) = unsafe {
                let p = u.q.as_ptr().add(32 * k);
                (wide(v128_load(p.cast())), wide(v128_load(p.add(16).cast())))
            };
            let sub = Sub {
                a,
                b,
                scale: u.d[k],
                min: u.m[k],
            };
            add_block(&sub, k, x, u.has_min, set);
        },
        finish
    )
}

/// A decode step's rows of a 32-value format, two at a time: each row summed exactly as
/// alone, the two rows' blocks interleaved so that their weights stream from memory side by
/// side. wasm has no prefetch instruction, and a single row's stream left a decode step at a
/// third of the bandwidth the native kernels reach (SmolLM2 decode +43% in wasmtime; four
/// rows at a time were slower, their sums spilled from the registers).
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
                    let sub = F::unpack(&w[r][F::BYTES * k..F::BYTES * (k + 1)], t);
                    add_block(&sub, k, x, F::HAS_MIN, set)
                },
                finish
            )
        },
        |w| blocks::<1, F>(w, x)
    )
}

/// The shared loop of the 32-value formats in the canonical order (see `super::scalar`):
/// each block unpacked once, its eight partial sums with every row scaled into the set of
/// lanes of its parity, kept as two f32x4 halves.
#[inline(always)]
fn blocks<const N: usize, F: Block32>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let t = halves();
    let zero = f32x4_splat(0.0);
    two_sets!(
        N,
        w.len() / F::BYTES,
        (zero, zero),
        |k, set| {
            let sub = F::unpack(&w[F::BYTES * k..F::BYTES * (k + 1)], t);
            add_block(&sub, k, x, F::HAS_MIN, set)
        },
        finish
    )
}

/// Block `k` (`sub`) against every row, into one lane set.
#[inline(always)]
fn add_block<const N: usize>(
    sub: &Sub,
    k: usize,
    x: &[ActRow<'_>; N],
    has_min: bool,
    (acc, mins): &mut Set<(v128, v128), N>,
) {
    for (r, row) in x.iter().enumerate() {
        let (ya, yb) = act32(row, k);
        let scale = f32x4_splat(sub.scale * row.d[k]);
        let (lo, hi) = acc[r];
        acc[r] = (
            f32x4_add(lo, f32x4_mul(scale, f32x4_convert_i32x4(sub.a.quads(ya)))),
            f32x4_add(hi, f32x4_mul(scale, f32x4_convert_i32x4(sub.b.quads(yb)))),
        );
        if has_min {
            mins[r] += sub.min * row.s[k];
        }
    }
}

/// The canonical sum of two lane sets held as f32x4 halves (lanes 0..4 and 4..8).
#[inline(always)]
fn finish((lo0, hi0): (v128, v128), (lo1, hi1): (v128, v128)) -> f32 {
    // The two sets added lane by lane, lanes j and j + 4 added; then the canonical tree.
    let t = f32x4_add(f32x4_add(lo0, lo1), f32x4_add(hi0, hi1));
    (f32x4_extract_lane::<0>(t) + f32x4_extract_lane::<2>(t))
        + (f32x4_extract_lane::<1>(t) + f32x4_extract_lane::<3>(t))
}
