//! x86-64 kernels for AVX-512 with VNNI, for the products on unpacked rows (a prefill's
//! many-token products; see `rows_product`). Everything else on such a CPU runs the [`avx2`]
//! kernels. The results are bit for bit those of [`super::scalar`], as on every set.
//!
//! A 512-bit register holds two 32-value blocks, and its halves are exactly the two float
//! sets of the canonical order (even blocks low, odd blocks high), so one instruction does what
//! two did on AVX2. `vpdpbusd` sums four byte products into each i32 lane — the same lanes that
//! AVX2's `maddubs` + `madd` give — and the K-quants' sub-block scales are applied by
//! `vpdpwssd`, which also does the add.
//!
//! [`avx2`]: super::avx2

use super::ActRow;
use super::avx2;
use super::scalar::Unpacked;
use std::arch::x86_64::*;

/// Whether this CPU runs these kernels (asked once: every product's activation check asks).
pub fn supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    })
}

/// `neg_sums` of one activation row's Q8 values `qs`: −128 × the sum of every four values.
/// These kernels multiply the signed weight formats as the bytes `q + 128` (`vpdpbusd` takes
/// unsigned × signed bytes), and a product started from `neg_sums` comes out as exactly `Σ q·y`.
pub fn neg_sums(qs: &[i8], out: &mut [i32]) {
    for (sum, four) in out.iter_mut().zip(qs.chunks_exact(4)) {
        *sum = -128 * four.iter().map(|&v| i32::from(v)).sum::<i32>();
    }
}

/// An unpacked row (see [`Unpacked`]) against `N` rows: [`avx2::dot_unpacked`]'s results.
///
/// # Safety
/// The CPU must pass [`supported`]; every row must cover the unpacked row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn dot_unpacked<const N: usize>(u: &Unpacked, x: &[ActRow<'_>; N]) -> [f32; N] {
    // SAFETY: forwarded.
    unsafe {
        if u.k_quant && !u.d.len().is_multiple_of(8) {
            avx2::unpacked_k45(u, x)
        } else if u.k_quant {
            unpacked_k45(u, x)
        } else if u.has_min {
            unpacked::<N, false>(u, x)
        } else {
            unpacked::<N, true>(u, x)
        }
    }
}

/// The canonical total of a register whose halves are the even and odd sets.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn total_of_sets(v: __m512) -> f32 {
    let even = _mm512_castps512_ps256(v);
    let odd = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    avx2::total(_mm256_add_ps(even, odd))
}

/// The 32-value formats, two blocks per register: values `q` (signed ones as the bytes
/// `q + 128`, the product started from the activations' `neg_sums`; unsigned ones, with a min,
/// as they are). Each sixteen blocks' scales `d·d_x` are one multiply per token, each pair taking
/// its two from them with a lane shuffle. A last odd block goes to the even set alone.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn unpacked<const N: usize, const SIGNED: bool>(
    u: &Unpacked,
    x: &[ActRow<'_>; N],
) -> [f32; N] {
    let nb = u.d.len();
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); N];
    let mut mins = [_mm_setzero_ps(); N];
    let halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let mut g = 0;
    while g < nb {
        let len = (nb - g).min(16);
        let keep = u16::MAX >> (16 - len);
        // SAFETY: blocks `g..g + len` lie inside the buffer and the rows (the caller); masked
        // loads read nothing past them.
        unsafe {
            let dw = _mm512_maskz_loadu_ps(keep, u.d.as_ptr().add(g));
            let scales: [__m512; N] = std::array::from_fn(|r| {
                _mm512_mul_ps(dw, _mm512_maskz_loadu_ps(keep, x[r].d.as_ptr().add(g)))
            });
            let mut k = 0;
            while k < len {
                let b = g + k;
                let two = k + 1 < len;
                let idx = _mm512_add_epi32(halves, _mm512_set1_epi32(k as i32));
                let q = if two {
                    _mm512_loadu_si512(u.q.as_ptr().add(32 * b).cast())
                } else {
                    _mm512_zextsi256_si512(_mm256_loadu_si256(u.q.as_ptr().add(32 * b).cast()))
                };
                let qu = if SIGNED {
                    _mm512_xor_si512(q, _mm512_set1_epi8(i8::MIN))
                } else {
                    q
                };
                let mw = if SIGNED {
                    _mm_setzero_ps()
                } else if two {
                    _mm_castpd_ps(_mm_load_sd(u.m.as_ptr().add(b).cast()))
                } else {
                    _mm_load_ss(u.m.as_ptr().add(b))
                };
                for (r, row) in x.iter().enumerate() {
                    let y = if two {
                        _mm512_loadu_si512(row.qs.as_ptr().add(32 * b).cast())
                    } else {
                        _mm512_zextsi256_si512(_mm256_loadu_si256(
                            row.qs.as_ptr().add(32 * b).cast(),
                        ))
                    };
                    let start = if !SIGNED {
                        zero
                    } else if two {
                        _mm512_loadu_si512(row.neg_sums.as_ptr().add(8 * b).cast())
                    } else {
                        _mm512_zextsi256_si512(_mm256_loadu_si256(
                            row.neg_sums.as_ptr().add(8 * b).cast(),
                        ))
                    };
                    let isum = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start, qu, y));
                    let scale = _mm512_permutexvar_ps(idx, scales[r]);
                    let product = _mm512_mul_ps(scale, isum);
                    acc[r] = if two {
                        _mm512_add_ps(acc[r], product)
                    } else {
                        _mm512_mask_add_ps(acc[r], 0x00FF, acc[r], product)
                    };
                    if !SIGNED {
                        let s = if two {
                            _mm_castpd_ps(_mm_load_sd(row.s.as_ptr().add(b).cast()))
                        } else {
                            _mm_load_ss(row.s.as_ptr().add(b))
                        };
                        mins[r] = _mm_add_ps(mins[r], _mm_mul_ps(mw, s));
                    }
                }
                k += 2;
            }
        }
        g += 16;
    }
    std::array::from_fn(|r| {
        let m = mins[r];
        total_of_sets(acc[r]) + (_mm_cvtss_f32(m) + _mm_cvtss_f32(_mm_movehdup_ps(m)))
    })
}

/// Q4_K/Q5_K on a row unpacked by `avx2::unpack_row`: each sub-block's products summed by
/// `maddubs`, then scaled and accumulated by `vpdpwssd` (256-bit registers: on this kind of
/// core the 512-bit ones measured no faster for these integer steps). The float part takes
/// eight super-blocks at once: super-block `b` adds to lane `b % 8`, so eight consecutive ones
/// from a multiple of eight are the eight lanes of one register, and the canonical
/// `lane = (lane + (d·d_x)·isum) − (dmin·d_x)·msum` is one vector step. Rows of whole eights
/// only: the others take the AVX2 kernel (a partial eight measured slower than it).
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn unpacked_k45<const N: usize>(u: &Unpacked, x: &[ActRow<'_>; N]) -> [f32; N] {
    let nb = u.d.len();
    let mut lanes = [_mm256_setzero_ps(); N];
    for c in (0..nb).step_by(8) {
        // SAFETY: super-blocks `c..c + 8` exist in `u` and in the rows (the caller).
        unsafe {
            // Each super-block's eight-lane sums for every token, then reduced to one lane each.
            let isums: [[__m256i; N]; 8] = std::array::from_fn(|j| k45_sums(u, x, c + j));
            let msums: [[__m256i; N]; 8] = std::array::from_fn(|j| {
                let b = c + j;
                // Σ_j m_j·(Σ q_x over sub-block j), from the 16 sums with each min twice.
                let m = _mm_loadl_epi64(u.scales[b][8..].as_ptr().cast());
                let mv = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
                std::array::from_fn(|r| {
                    let sums = _mm256_loadu_si256(x[r].ksums.as_ptr().add(16 * b).cast());
                    _mm256_madd_epi16(sums, mv)
                })
            });
            let d = _mm256_loadu_ps(u.d.as_ptr().add(c));
            let dmin = _mm256_loadu_ps(u.m.as_ptr().add(c));
            for (r, row) in x.iter().enumerate() {
                let isum = _mm256_cvtepi32_ps(lane_sums(&std::array::from_fn(|j| isums[j][r])));
                let msum = _mm256_cvtepi32_ps(lane_sums(&std::array::from_fn(|j| msums[j][r])));
                let dy = _mm256_loadu_ps(row.kd.as_ptr().add(c));
                let t = _mm256_add_ps(lanes[r], _mm256_mul_ps(_mm256_mul_ps(d, dy), isum));
                lanes[r] = _mm256_sub_ps(t, _mm256_mul_ps(_mm256_mul_ps(dmin, dy), msum));
            }
        }
    }
    lanes.map(|l| avx2::total(l))
}

/// Super-block `b`'s products with every row, scaled by its sub-block scales, in eight i32
/// lanes per row.
///
/// # Safety
/// Super-block `b` exists in `u` and in the rows.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn k45_sums<const N: usize>(u: &Unpacked, x: &[ActRow<'_>; N], b: usize) -> [__m256i; N] {
    let sc = &u.scales[b];
    let mut sumi = [_mm256_setzero_si256(); N];
    // SAFETY: the caller's contract: `u` holds 256 values per super-block, the rows 256 values.
    unsafe {
        let q = u.q.as_ptr().add(256 * b);
        for g in 0..4 {
            let (lo, hi) = (q.add(64 * g), q.add(64 * g + 32));
            let (lo, hi) = (_mm256_loadu_si256(lo.cast()), _mm256_loadu_si256(hi.cast()));
            let s_lo = _mm256_set1_epi16(i16::from(sc[2 * g]));
            let s_hi = _mm256_set1_epi16(i16::from(sc[2 * g + 1]));
            for (r, row) in x.iter().enumerate() {
                let a = row.kqs.as_ptr().add(256 * b + 64 * g);
                let (a_lo, a_hi) = (
                    _mm256_loadu_si256(a.cast()),
                    _mm256_loadu_si256(a.add(32).cast()),
                );
                let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), s_lo);
                let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), s_hi);
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p_lo, p_hi));
            }
        }
    }
    sumi
}

/// Lane `j` = the sum of `v[j]`'s eight lanes (exact: integers).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn lane_sums(v: &[__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    // Low halves: the low-half sums of v0..v3 (v4..v7); high halves: their high-half sums.
    let lo = _mm256_hadd_epi32(h01, h23);
    let hi = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(lo, hi),
        _mm256_permute2x128_si256::<0x31>(lo, hi),
    )
}
