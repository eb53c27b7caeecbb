//! x86-64 kernels for AVX2 + FMA + F16C, chosen at run time by [`super::Isa::detect`]. They
//! give bit for bit the results of [`super::scalar`] (see its canonical summation order).
//!
//! The integer core is `maddubs` (unsigned × signed bytes, pairs summed to i16) then `madd`
//! (to i32): 32 products in two instructions. Signed formats go through it with the sign
//! trick (`|w|` × `x·sign(w)`). A 32-value block's eight i32 lanes are converted and scaled
//! into one of two alternating sets of float lanes (two independent dependency chains per
//! row). The K-quants sum a super-block in i32 lanes with their sub-block scales applied by
//! `madd`, then reduce it to one integer.

use super::ActRow;
use super::formats::{WeightType, scales_mins_k4};
use super::scalar::{Lanes, each_row, k_lanes, two_sets};
use std::arch::x86_64::*;

/// `N` dot products of one weight row with `N` activation rows.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and every row must [cover](ActRow::covers) the
/// weight row: the kernels read whole blocks of `w` and of the rows through raw pointers.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_rows<const N: usize>(ty: WeightType, w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let cols = w.len() / ty.block_bytes() * ty.block_elems();
    debug_assert!(x.iter().all(|r| r.covers(ty, cols)));
    // SAFETY: the caller guarantees the lengths; the features are enabled on this function.
    unsafe {
        match ty {
            WeightType::F32 => floats::<N, 0>(w, x, cols),
            WeightType::F16 => floats::<N, 1>(w, x, cols),
            WeightType::BF16 => floats::<N, 2>(w, x, cols),
            WeightType::Q4_0 => q4_0(w, x),
            WeightType::Q4_1 => q4_1(w, x),
            WeightType::Q5_0 => q5_0(w, x),
            WeightType::Q5_1 => q5_1(w, x),
            WeightType::Q8_0 => q8_0(w, x),
            WeightType::Q4K => q4k(w, x),
            WeightType::Q5K => q5k(w, x),
            WeightType::Q6K => q6k(w, x),
        }
    }
}

/// `out[i]` = row `i` of `rows` (rows of `row_bytes`) times `x`: a run of single-token
/// products (a decode step's rows) with one dispatch for the run, not one per row, and the
/// format's loop inlined into the run's (SmolLM2's decode on one thread measured 20% faster
/// than calling the per-format functions row by row; profiles show a decode's products under
/// this function's name).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and `x` must [cover](ActRow::covers) each row.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_run(
    ty: WeightType,
    rows: &[u8],
    row_bytes: usize,
    x: &ActRow<'_>,
    out: &mut [f32],
) {
    let cols = row_bytes / ty.block_bytes() * ty.block_elems();
    debug_assert!(x.covers(ty, cols));
    let x = std::array::from_ref(x);
    // SAFETY: the caller's contract, for every row.
    unsafe {
        match ty {
            WeightType::F32 => each_row!(rows, row_bytes, out, |w| floats::<1, 0>(w, x, cols)),
            WeightType::F16 => each_row!(rows, row_bytes, out, |w| floats::<1, 1>(w, x, cols)),
            WeightType::BF16 => each_row!(rows, row_bytes, out, |w| floats::<1, 2>(w, x, cols)),
            WeightType::Q4_0 => each_row!(rows, row_bytes, out, |w| q32::<Q40, 1>(w, x)),
            WeightType::Q4_1 => each_row!(rows, row_bytes, out, |w| q32::<Q41, 1>(w, x)),
            WeightType::Q5_0 => each_row!(rows, row_bytes, out, |w| q32::<Q50, 1>(w, x)),
            WeightType::Q5_1 => each_row!(rows, row_bytes, out, |w| q32::<Q51, 1>(w, x)),
            WeightType::Q8_0 => each_row!(rows, row_bytes, out, |w| q32::<Q80, 1>(w, x)),
            WeightType::Q4K => each_row!(rows, row_bytes, out, |w| q45k::<1, false>(w, x)),
            WeightType::Q5K => each_row!(rows, row_bytes, out, |w| q45k::<1, true>(w, x)),
            WeightType::Q6K => each_row!(rows, row_bytes, out, |w| k6::<1>(w, x)),
        }
    }
}

/// How far ahead of the block being read a single-row product prefetches its weights. (A
/// decode step streams every weight from memory once; the hardware prefetcher alone leaves a
/// single core well short of the memory's bandwidth.)
const PREFETCH: usize = 4096;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: the caller passes a pointer to 32 readable bytes.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prefetch(p: *const u8, bytes: usize) {
    let mut line = 0;
    while line < bytes {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast());
        line += 64;
    }
}

/// The canonical lane sum (see [`Lanes::total`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn total(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The exact sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The 32 nibbles of 16 bytes: low nibbles first, then high nibbles.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller passes a pointer to 16 readable bytes.
    let tmp = unsafe { _mm_loadu_si128(p.cast()) };
    let both = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(tmp), _mm_srli_epi16::<4>(tmp));
    _mm256_and_si256(both, _mm256_set1_epi8(0xF))
}

/// Byte `i` is 0xFF where bit `i` of the 32 bits at `p` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits_to_bytes(p: *const u8) -> __m256i {
    // SAFETY: the caller passes a pointer to 4 readable bytes.
    let bits = unsafe { p.cast::<u32>().read_unaligned() };
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1))
}

/// `value` in each byte of `bits` whose bit `j` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bit_as(bits: __m256i, j: usize, value: __m256i) -> __m256i {
    let mask = _mm256_set1_epi8((1u8 << j) as i8);
    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bits, mask), mask), value)
}

/// A 32-value block format, as the shared loop [`q32`] needs it.
trait Block32 {
    const BYTES: usize;
    /// Values are signed (`q − offset`), else unsigned with a min at byte 2.
    const SIGNED: bool;
    /// The 32 values of the block at `p` as bytes.
    ///
    /// # Safety
    /// `p` points to a whole block; the CPU has AVX2.
    unsafe fn values(p: *const u8) -> __m256i;
}

struct Q40;
struct Q41;
struct Q50;
struct Q51;
struct Q80;

impl Block32 for Q40 {
    const BYTES: usize = 18;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: forwarded; bytes 2..18 hold the nibbles.
        unsafe { _mm256_sub_epi8(nibbles(p.add(2)), _mm256_set1_epi8(8)) }
    }
}

impl Block32 for Q41 {
    const BYTES: usize = 20;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: forwarded; bytes 4..20 hold the nibbles.
        unsafe { nibbles(p.add(4)) }
    }
}

impl Block32 for Q50 {
    const BYTES: usize = 22;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: forwarded; bytes 2..6 hold the fifth bits, 6..22 the nibbles. Where the
        // fifth bit is clear, or-ing in 0xF0 makes the byte `q − 16`.
        unsafe {
            let high = _mm256_andnot_si256(bits_to_bytes(p.add(2)), _mm256_set1_epi8(0xF0u8 as i8));
            _mm256_or_si256(nibbles(p.add(6)), high)
        }
    }
}

impl Block32 for Q51 {
    const BYTES: usize = 24;
    const SIGNED: bool = false;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: forwarded; bytes 4..8 hold the fifth bits, 8..24 the nibbles.
        unsafe {
            let high = _mm256_and_si256(bits_to_bytes(p.add(4)), _mm256_set1_epi8(0x10));
            _mm256_or_si256(nibbles(p.add(8)), high)
        }
    }
}

impl Block32 for Q80 {
    const BYTES: usize = 34;
    const SIGNED: bool = true;
    #[inline(always)]
    unsafe fn values(p: *const u8) -> __m256i {
        // SAFETY: forwarded; bytes 2..34 hold the values.
        unsafe { load(p.add(2)) }
    }
}

/// The shared loop of the 32-value formats, in the canonical order, each block unpacked once
/// for all rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q32<F: Block32, const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let ones = _mm256_set1_epi16(1);
    two_sets!(
        N,
        w.len() / F::BYTES,
        _mm256_setzero_ps(),
        |b, (acc, mins)| {
            // SAFETY: block b lies inside `w`, and the rows cover it (`dot_rows`).
            unsafe {
                let p = w.as_ptr().add(b * F::BYTES);
                if N == 1 && b & 1 == 0 {
                    prefetch(p.wrapping_add(PREFETCH), 2 * F::BYTES);
                }
                let q = F::values(p);
                let d = _mm256_set1_ps(half(p));
                let m = if F::SIGNED { 0.0 } else { half(p.add(2)) };
                for (r, row) in x.iter().enumerate() {
                    let y = load(row.qs.as_ptr().add(32 * b).cast());
                    let isum = _mm256_cvtepi32_ps(block_product::<F>(q, y, ones));
                    let scale = _mm256_mul_ps(d, _mm256_broadcast_ss(row.d.get_unchecked(b)));
                    acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(scale, isum));
                    if !F::SIGNED {
                        mins[r] += m * *row.s.get_unchecked(b);
                    }
                }
            }
        },
        |a: __m256, b: __m256| { total(_mm256_add_ps(a, b)) }
    )
}

/// [`scalar::unpack_row`](super::scalar::unpack_row) with each block's values unpacked by
/// the kernels' own [`Block32::values`] (the same bytes; in a prefill the scalar unpacking
/// was a twentieth of the time).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn unpack_row(ty: WeightType, row: &[u8], out: &mut super::scalar::Unpacked) {
    // SAFETY: the features are enabled on this function.
    unsafe {
        match ty {
            WeightType::Q4_0 => unpack_blocks::<Q40>(row, out),
            WeightType::Q4_1 => unpack_blocks::<Q41>(row, out),
            WeightType::Q5_0 => unpack_blocks::<Q50>(row, out),
            WeightType::Q5_1 => unpack_blocks::<Q51>(row, out),
            WeightType::Q8_0 => unpack_blocks::<Q80>(row, out),
            WeightType::Q4K => unpack_k45::<false>(row, out),
            WeightType::Q5K => unpack_k45::<true>(row, out),
            _ => super::scalar::unpack_row(ty, row, out),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack_blocks<F: Block32>(row: &[u8], out: &mut super::scalar::Unpacked) {
    let blocks = row.len() / F::BYTES;
    out.q.resize(32 * blocks, 0);
    out.d.resize(blocks, 0.0);
    out.m.resize(blocks, 0.0);
    out.has_min = !F::SIGNED;
    out.k_quant = false;
    for (b, block) in row.chunks_exact(F::BYTES).enumerate() {
        let p = block.as_ptr();
        // SAFETY: `block` is one whole block, and `out.q` holds 32 bytes for each.
        unsafe {
            _mm256_storeu_si256(out.q.as_mut_ptr().add(32 * b).cast(), F::values(p));
            out.d[b] = half(p);
            out.m[b] = if F::SIGNED { 0.0 } else { half(p.add(2)) };
        }
    }
}

/// Q4_K/Q5_K rows for [`unpacked_k45`]: the values of every group as [`k45_values`] makes
/// them, and the decoded scales and mins (in a prefill, decoding them again for every tile of
/// four tokens cost about a quarter of the K-quant products).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpack_k45<const Q5: bool>(row: &[u8], out: &mut super::scalar::Unpacked) {
    let bytes = if Q5 { 176 } else { 144 };
    let blocks = row.len() / bytes;
    out.q.resize(256 * blocks, 0);
    out.d.resize(blocks, 0.0);
    out.m.resize(blocks, 0.0);
    out.scales.resize(blocks, [0; 16]);
    out.has_min = true;
    out.k_quant = true;
    for (b, block) in row.chunks_exact(bytes).enumerate() {
        let p = block.as_ptr();
        let (sc, m) = scales_mins_k4(&block[4..16]);
        out.scales[b][..8].copy_from_slice(&sc);
        out.scales[b][8..].copy_from_slice(&m);
        // SAFETY: `block` is one whole super-block, and `out.q` holds 256 bytes for each.
        unsafe {
            out.d[b] = half(p);
            out.m[b] = half(p.add(2));
            for g in 0..4 {
                let (lo, hi) = k45_values::<Q5>(p, g);
                let at = out.q.as_mut_ptr().add(256 * b + 64 * g);
                _mm256_storeu_si256(at.cast(), lo);
                _mm256_storeu_si256(at.add(32).cast(), hi);
            }
        }
    }
}

/// An unpacked row against `N` rows: the loop of [`q32`] reading values, scales and mins from
/// the buffer instead of unpacking blocks.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; every row must cover the unpacked row.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_unpacked<const N: usize>(
    u: &super::scalar::Unpacked,
    x: &[ActRow<'_>; N],
) -> [f32; N] {
    // SAFETY: forwarded.
    unsafe {
        if u.k_quant {
            unpacked_k45(u, x)
        } else if u.has_min {
            unpacked::<N, false>(u, x)
        } else {
            unpacked::<N, true>(u, x)
        }
    }
}

#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn unpacked<const N: usize, const SIGNED: bool>(
    u: &super::scalar::Unpacked,
    x: &[ActRow<'_>; N],
) -> [f32; N] {
    let ones = _mm256_set1_epi16(1);
    two_sets!(
        N,
        u.d.len(),
        _mm256_setzero_ps(),
        |b, (acc, mins)| {
            // SAFETY: block b lies inside the buffer, and the rows cover it (the caller).
            unsafe {
                let q = load(u.q.as_ptr().add(32 * b).cast());
                let d = _mm256_broadcast_ss(u.d.get_unchecked(b));
                let m = *u.m.get_unchecked(b);
                let ax = if SIGNED { _mm256_sign_epi8(q, q) } else { q };
                for (r, row) in x.iter().enumerate() {
                    let y = load(row.qs.as_ptr().add(32 * b).cast());
                    let pairs = if SIGNED {
                        _mm256_maddubs_epi16(ax, _mm256_sign_epi8(y, q))
                    } else {
                        _mm256_maddubs_epi16(q, y)
                    };
                    let isum = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                    let scale = _mm256_mul_ps(d, _mm256_broadcast_ss(row.d.get_unchecked(b)));
                    acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(scale, isum));
                    if !SIGNED {
                        mins[r] += m * *row.s.get_unchecked(b);
                    }
                }
            }
        },
        |a: __m256, b: __m256| { total(_mm256_add_ps(a, b)) }
    )
}

/// One block's 32 products as eight exact i32 partial sums (lane `k`: values `4k..4k+3`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_product<F: Block32>(q: __m256i, y: __m256i, ones: __m256i) -> __m256i {
    let pairs = if F::SIGNED {
        _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q))
    } else {
        _mm256_maddubs_epi16(q, y)
    };
    _mm256_madd_epi16(pairs, ones)
}

// One symbol per format, so profiles show where the time goes.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded from `dot_rows`.
    unsafe { q32::<Q40, N>(w, x) }
}

#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded from `dot_rows`.
    unsafe { q32::<Q41, N>(w, x) }
}

#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded from `dot_rows`.
    unsafe { q32::<Q50, N>(w, x) }
}

#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded from `dot_rows`.
    unsafe { q32::<Q51, N>(w, x) }
}

#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded from `dot_rows`.
    unsafe { q32::<Q80, N>(w, x) }
}

/// An f16 at `p` as f32, with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn half(p: *const u8) -> f32 {
    // SAFETY: the caller passes a pointer to 2 readable bytes.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// The row's Q8_K values `32·k..32·k + 32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kact(row: &ActRow<'_>, k: usize) -> __m256i {
    // SAFETY: `dot_rows`' contract: the row holds every super-block of the weight row.
    unsafe { load(row.kqs.as_ptr().add(32 * k).cast()) }
}

/// Group `g`'s two sub-blocks (values `64g..64g + 32` and `64g + 32..64g + 64`) of the
/// Q4_K/Q5_K super-block at `p`, as bytes 0..32.
///
/// # Safety
/// `p` points to a whole super-block; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k45_values<const Q5: bool>(p: *const u8, g: usize) -> (__m256i, __m256i) {
    let low4 = _mm256_set1_epi8(0xF);
    // SAFETY: the caller's contract; the nibbles start at byte 16 (48 after Q5_K's fifth bits).
    unsafe {
        let raw = load(p.add(if Q5 { 48 } else { 16 } + 32 * g));
        let mut lo = _mm256_and_si256(raw, low4);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low4);
        if Q5 {
            let qh = load(p.add(16));
            let five = _mm256_set1_epi8(0x10);
            lo = _mm256_or_si256(lo, bit_as(qh, 2 * g, five));
            hi = _mm256_or_si256(hi, bit_as(qh, 2 * g + 1, five));
        }
        (lo, hi)
    }
}

/// Adds group `g` of super-block `b` (values `lo` and `hi`, scales `sc`) to the rows' sums.
///
/// # Safety
/// The rows cover super-block `b`; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k45_group<const N: usize>(
    (b, g): (usize, usize),
    (lo, hi): (__m256i, __m256i),
    sc: &[u8],
    x: &[ActRow<'_>; N],
    sumi: &mut [__m256i; N],
) {
    let (s_lo, s_hi) = (
        _mm256_set1_epi16(i16::from(sc[2 * g])),
        _mm256_set1_epi16(i16::from(sc[2 * g + 1])),
    );
    for (r, row) in x.iter().enumerate() {
        let k = 8 * b + 2 * g;
        // SAFETY: the caller's contract.
        let (a_lo, a_hi) = unsafe { (kact(row, k), kact(row, k + 1)) };
        let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), s_lo);
        let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), s_hi);
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p_lo, p_hi));
    }
}

/// Super-block `b`'s sums of every row into its lanes, with the mins `m` through the
/// activations' integer sums.
///
/// # Safety
/// The rows cover super-block `b`; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k45_finish<const N: usize>(
    b: usize,
    (d, dmin): (f32, f32),
    m: &[u8],
    x: &[ActRow<'_>; N],
    sumi: &[__m256i; N],
    lanes: &mut [Lanes; N],
) {
    // Σ_j m_j·(Σ q_x over sub-block j), from the 16 sums with each min twice.
    assert!(m.len() >= 8);
    // SAFETY: `m` holds 8 bytes (checked); the rows hold 16 sums per super-block (the caller).
    unsafe {
        let mv = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(
            _mm_loadl_epi64(m.as_ptr().cast()),
            _mm_loadl_epi64(m.as_ptr().cast()),
        ));
        for (r, row) in x.iter().enumerate() {
            let sums = _mm256_loadu_si256(row.ksums.as_ptr().add(16 * b).cast());
            let msum = hsum_i32(_mm256_madd_epi16(sums, mv));
            let dy = *row.kd.get_unchecked(b);
            k_lanes(
                &mut lanes[r],
                b,
                (d, dmin, dy),
                (hsum_i32(sumi[r]), msum),
                true,
            );
        }
    }
}

/// Q4_K and Q5_K (`Q5` true): per super-block, the eight sub-block products are summed in
/// i32 lanes with their 6-bit scales applied by `madd`, the mins through the activations'
/// integer sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q45k<const N: usize, const Q5: bool>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let bytes = if Q5 { 176 } else { 144 };
    let mut lanes = [Lanes::default(); N];
    for b in 0..w.len() / bytes {
        let at = bytes * b;
        // SAFETY: the super-block lies inside `w`; the rows cover it (`dot_rows`).
        unsafe {
            let p = w.as_ptr().add(at);
            if N == 1 {
                prefetch(p.wrapping_add(PREFETCH), bytes);
            }
            let (sc, m) = scales_mins_k4(&w[at + 4..at + 16]);
            let mut sumi = [_mm256_setzero_si256(); N];
            for g in 0..4 {
                k45_group((b, g), k45_values::<Q5>(p, g), &sc, x, &mut sumi);
            }
            k45_finish(b, (half(p), half(p.add(2))), &m, x, &sumi, &mut lanes);
        }
    }
    lanes.map(|l| l.total())
}

/// [`q45k`] on a row unpacked by [`unpack_k45`].
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn unpacked_k45<const N: usize>(
    u: &super::scalar::Unpacked,
    x: &[ActRow<'_>; N],
) -> [f32; N] {
    let mut lanes = [Lanes::default(); N];
    for b in 0..u.d.len() {
        // SAFETY: `u` holds 256 values per super-block; the rows cover the row (the caller).
        unsafe {
            let q = u.q.as_ptr().add(256 * b).cast::<u8>();
            let mut sumi = [_mm256_setzero_si256(); N];
            for g in 0..4 {
                let values = (load(q.add(64 * g)), load(q.add(64 * g + 32)));
                k45_group((b, g), values, &u.scales[b][..8], x, &mut sumi);
            }
            k45_finish(b, (u.d[b], u.m[b]), &u.scales[b][8..], x, &sumi, &mut lanes);
        }
    }
    lanes.map(|l| l.total())
}

// One symbol per format, so profiles show where the time goes.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded from `dot_rows`.
    unsafe { q45k::<N, false>(w, x) }
}

#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5k<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded from `dot_rows`.
    unsafe { q45k::<N, true>(w, x) }
}

/// Q6_K: unsigned 6-bit values through `maddubs`, the 16-value scales applied by `madd` and
/// summed over the super-block in i32; the −32 offset comes off as `32·Σ sc·Σ q_x` from the
/// activations' integer sums.
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded from `dot_rows`.
    unsafe { k6::<N>(w, x) }
}

/// The loop of [`q6k`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k6<const N: usize>(w: &[u8], x: &[ActRow<'_>; N]) -> [f32; N] {
    let low4 = _mm256_set1_epi8(0xF);
    let two = _mm256_set1_epi8(3);
    let mut lanes = [Lanes::default(); N];
    for b in 0..w.len() / 210 {
        // SAFETY: the super-block lies inside `w`; the rows cover it (`dot_rows`).
        unsafe {
            let p = w.as_ptr().add(210 * b);
            if N == 1 {
                prefetch(p.wrapping_add(PREFETCH), 210);
            }
            let d = half(p.add(208));
            let scales = &w[210 * b + 192..210 * b + 208];
            let mut sumi = [_mm256_setzero_si256(); N];
            for n in 0..2 {
                let qa = load(p.add(64 * n));
                let qb = load(p.add(64 * n + 32));
                let qh = load(p.add(128 + 32 * n));
                let chunks = [
                    (_mm256_and_si256(qa, low4), _mm256_and_si256(qh, two)),
                    (
                        _mm256_and_si256(qb, low4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), two),
                    ),
                    (
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qa), low4),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qh), two),
                    ),
                    (
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qb), low4),
                        _mm256_and_si256(_mm256_srli_epi16::<6>(qh), two),
                    ),
                ];
                for (c, (low, high)) in chunks.into_iter().enumerate() {
                    let q = _mm256_or_si256(low, _mm256_slli_epi16::<4>(high));
                    let s = 8 * n + 2 * c;
                    let sv = _mm256_set_m128i(
                        _mm_set1_epi16(i16::from(scales[s + 1] as i8)),
                        _mm_set1_epi16(i16::from(scales[s] as i8)),
                    );
                    let k = 8 * b + 4 * n + c;
                    for (r, row) in x.iter().enumerate() {
                        let pairs = _mm256_maddubs_epi16(q, kact(row, k));
                        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(pairs, sv));
                    }
                }
            }
            // The −32 offset: 32·Σ_i sc_i·(Σ q_x over the 16 values of scale i).
            let sv = _mm256_cvtepi8_epi16(_mm_loadu_si128(scales.as_ptr().cast()));
            for (r, row) in x.iter().enumerate() {
                let sums = _mm256_loadu_si256(row.ksums.as_ptr().add(16 * b).cast());
                let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(sums, sv));
                let isum = hsum_i32(_mm256_sub_epi32(sumi[r], off));
                let dy = *row.kd.get_unchecked(b);
                k_lanes(&mut lanes[r], b, (d, 0.0, dy), (isum, 0), false);
            }
        }
    }
    lanes.map(|l| l.total())
}

/// Float weights (`KIND`: 0 f32, 1 f16, 2 bf16) against float activations, in the canonical
/// lanes (value `i` in lane `i mod 8`).
#[inline(never)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn floats<const N: usize, const KIND: u8>(
    w: &[u8],
    x: &[ActRow<'_>; N],
    cols: usize,
) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let main = cols / 8 * 8;
    let p = w.as_ptr();
    let mut i = 0;
    // SAFETY: `i + 8 <= cols` keeps every read inside `w` and the rows.
    unsafe {
        while i < main {
            let wv = match KIND {
                0 => _mm256_loadu_ps(p.add(4 * i).cast()),
                1 => _mm256_cvtph_ps(_mm_loadu_si128(p.add(2 * i).cast())),
                _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                    _mm_loadu_si128(p.add(2 * i).cast()),
                ))),
            };
            for r in 0..N {
                let xv = _mm256_loadu_ps(x[r].values.as_ptr().add(i));
                acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(wv, xv));
            }
            i += 8;
        }
    }
    let mut out = [0.0; N];
    for r in 0..N {
        if main == cols {
            out[r] = total(acc[r]);
            continue;
        }
        let mut lanes = Lanes::default();
        // SAFETY: `lanes.0` holds eight floats.
        unsafe { _mm256_storeu_ps(lanes.0.as_mut_ptr(), acc[r]) };
        for j in main..cols {
            let wj = match KIND {
                0 => super::formats::f32_at(w, 4 * j),
                1 => super::formats::f16_at(w, 2 * j),
                _ => super::formats::bf16_at(w, 2 * j),
            };
            lanes.add(j - main, wj * x[r].values[j]);
        }
        out[r] = lanes.total();
    }
    out
}

/// `Σ a·b` in the canonical lanes.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let main = n / 8 * 8;
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: `i + 8 <= n`.
    unsafe {
        while i < main {
            let prod = _mm256_mul_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            );
            acc = _mm256_add_ps(acc, prod);
            i += 8;
        }
    }
    if main == n {
        return total(acc);
    }
    let mut lanes = Lanes::default();
    // SAFETY: `lanes.0` holds eight floats.
    unsafe { _mm256_storeu_ps(lanes.0.as_mut_ptr(), acc) };
    for j in main..n {
        lanes.add(j - main, a[j] * b[j]);
    }
    lanes.total()
}

/// `y += a·x` (a multiply then an add per value, as the scalar version).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let main = n / 8 * 8;
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    // SAFETY: `i + 8 <= n`.
    unsafe {
        while i < main {
            let yp = y.as_mut_ptr().add(i);
            let prod = _mm256_mul_ps(av, _mm256_loadu_ps(x.as_ptr().add(i)));
            _mm256_storeu_ps(yp, _mm256_add_ps(_mm256_loadu_ps(yp), prod));
            i += 8;
        }
    }
    for j in main..n {
        y[j] += a * x[j];
    }
}
