//! The kernels against their definitions: dequantisation against candle's (an independent
//! implementation of ggml's formats), the scalar products against float arithmetic on the
//! dequantised values, every SIMD version against the scalar one, and the threaded product
//! against single rows.

use super::formats::{ActivationKind, WeightType};
use super::*;
use candle_core::Device;
use candle_core::quantized::ggml_file::qtensor_from_ggml;

/// A small deterministic generator (xorshift64*), so the tests need no dependency and
/// failures reproduce.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub(crate) fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random valid blocks of `ty` for a `rows × cols` matrix: random payload bits, finite scales.
pub(crate) fn random_matrix(ty: WeightType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let blocks = rows * cols / ty.block_elems();
    let bb = ty.block_bytes();
    let mut out = Vec::with_capacity(blocks * bb);
    for _ in 0..blocks {
        let mut b: Vec<u8> = (0..bb).map(|_| rng.next() as u8).collect();
        let scale = |rng: &mut Rng| f16_bytes(rng.float() * 0.05);
        match ty {
            WeightType::F32 => b.copy_from_slice(&rng.float().to_le_bytes()),
            WeightType::F16 => b.copy_from_slice(&f16_bytes(rng.float())),
            WeightType::BF16 => {
                let bits = (rng.float().to_bits() >> 16) as u16;
                b.copy_from_slice(&bits.to_le_bytes());
            }
            WeightType::Q4_0 | WeightType::Q5_0 | WeightType::Q8_0 => {
                b[..2].copy_from_slice(&scale(rng));
            }
            WeightType::Q4_1 | WeightType::Q5_1 | WeightType::Q4K | WeightType::Q5K => {
                b[..2].copy_from_slice(&scale(rng));
                b[2..4].copy_from_slice(&scale(rng));
            }
            WeightType::Q6K => b[208..].copy_from_slice(&scale(rng)),
        }
        out.extend_from_slice(&b);
    }
    out
}

fn random_values(n: usize, rng: &mut Rng) -> Vec<f32> {
    // Mixed magnitudes, as real activations have (and a few exact zeros).
    (0..n)
        .map(|i| match i % 17 {
            0 => 0.0,
            5 => rng.float() * 20.0,
            _ => rng.float(),
        })
        .collect()
}

#[test]
fn dequantisation_matches_candle() {
    let mut rng = Rng::new(1);
    for ty in WeightType::ALL {
        let (rows, cols) = (3, 512);
        let bytes = random_matrix(ty, rows, cols, &mut rng);
        let reference = qtensor_from_ggml(ty.ggml(), &bytes, vec![rows, cols], &Device::Cpu)
            .and_then(|t| t.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("candle dequantises");
        let m = Matrix::from_bytes(ty, rows, cols, bytes).expect("matrix");
        let mut ours = vec![0.0; rows * cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut ours[r * cols..(r + 1) * cols]);
        }
        for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
            assert!(a == b, "{ty:?} value {i}: ours {a}, candle {b}");
        }
    }
}

#[test]
fn q8_activations_are_within_half_a_step() {
    let mut rng = Rng::new(2);
    let x = random_values(32 * 6, &mut rng);
    let mut act = Activations::new(x.clone(), 2, 96);
    act.quantise(None, ActivationKind::Q8);
    let q = act.q8.as_ref().expect("quantised");
    for (k, block) in x.chunks(32).enumerate() {
        let mut sum = 0i32;
        for (i, &v) in block.iter().enumerate() {
            let back = f32::from(q.qs[32 * k + i]) * q.d[k];
            assert!((back - v).abs() <= q.d[k] * 0.5 + 1e-6, "{v} -> {back}");
            sum += i32::from(q.qs[32 * k + i]);
        }
        assert_eq!(q.s[k], q.d[k] * sum as f32);
    }
    // An all-zero block quantises to zeros with scale 0 (no division by zero).
    let mut zeros = Activations::new(vec![0.0; 32], 1, 32);
    zeros.quantise(None, ActivationKind::Q8);
    let q = zeros.q8.as_ref().expect("quantised");
    assert!(q.qs.iter().all(|&v| v == 0) && q.d[0] == 0.0);
    // The 256-wide layout: same rounding, one scale per 256, exact sums of 16.
    let x = random_values(512, &mut rng);
    let mut act = Activations::new(x.clone(), 1, 512);
    act.quantise(None, ActivationKind::Q8K);
    let q = act.q8k.as_ref().expect("quantised");
    for (i, &v) in x.iter().enumerate() {
        let back = f32::from(q.qs[i]) * q.d[i / 256];
        assert!(
            (back - v).abs() <= q.d[i / 256] * 0.5 + 1e-6,
            "{v} -> {back}"
        );
    }
    for (j, sum) in q.sums.iter().enumerate() {
        assert_eq!(
            i32::from(*sum),
            q.qs[16 * j..16 * j + 16]
                .iter()
                .map(|&v| i32::from(v))
                .sum::<i32>()
        );
    }
    // Non-finite inputs do not poison a block's neighbours or panic.
    let mut odd = vec![1.0f32; 32];
    odd[3] = f32::NAN;
    let mut act = Activations::new(odd, 1, 32);
    act.quantise(None, ActivationKind::Q8);
    assert!(
        act.q8
            .as_ref()
            .expect("q")
            .qs
            .iter()
            .all(|&v| v == 0 || v == 127)
    );
}

/// `Σ w·x` in f64 over the dequantised weights and the values the kernels actually multiply
/// (the 8-bit activations for quantised weights).
fn reference_dot(ty: WeightType, w: &[f32], act: &Activations, t: usize) -> (f64, f64) {
    let row = act.row(t);
    let mut sum = 0.0f64;
    let mut mag = 0.0f64;
    for (i, &wv) in w.iter().enumerate() {
        let xv = match ty.activation() {
            ActivationKind::Float => f64::from(row.values[i]),
            ActivationKind::Q8 => f64::from(row.qs[i]) * f64::from(row.d[i / 32]),
            ActivationKind::Q8K => f64::from(row.kqs[i]) * f64::from(row.kd[i / 256]),
        };
        sum += f64::from(wv) * xv;
        mag += (f64::from(wv) * xv).abs();
    }
    (sum, mag)
}

#[test]
fn scalar_products_equal_float_arithmetic_on_the_formats() {
    let mut rng = Rng::new(3);
    for ty in WeightType::ALL {
        let cols = 768;
        let w = Matrix::from_bytes(ty, 2, cols, random_matrix(ty, 2, cols, &mut rng)).expect("m");
        let mut act = Activations::new(random_values(5 * cols, &mut rng), 5, cols);
        prepare(&w, &mut act);
        let mut wf = vec![0.0; cols];
        for r in 0..2 {
            w.dequantize_row(r, &mut wf);
            for t in 0..5 {
                let [ours] = scalar::dot_rows::<1>(ty, w.row(r), &[act.row(t)]);
                let (want, mag) = reference_dot(ty, &wf, &act, t);
                let err = (f64::from(ours) - want).abs();
                assert!(
                    err <= 1e-5 * mag + 1e-6,
                    "{ty:?} row {r} tok {t}: {ours} vs {want} (|·| {mag})"
                );
            }
        }
    }
}

#[test]
#[allow(clippy::needless_range_loop)] // `t` picks both a token and, for the first four, a tile slot.
fn every_instruction_set_gives_the_scalar_results_bit_for_bit() {
    let mut rng = Rng::new(4);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(Isa::available().contains(&Isa::Avx2));
    }
    for isa in Isa::available() {
        for ty in WeightType::ALL {
            // 11 blocks of 32 (a partial group of eight) or 3 super-blocks; 43 float columns
            // leave a tail after the vectors of eight.
            for cols in match ty.block_elems() {
                256 => [256, 768],
                32 => [256, 352],
                _ => [43, 64],
            } {
                let rows = 3;
                let w = Matrix::from_bytes(ty, rows, cols, random_matrix(ty, rows, cols, &mut rng))
                    .expect("matrix");
                let mut act = Activations::new(random_values(6 * cols, &mut rng), 6, cols);
                prepare(&w, &mut act);
                for r in 0..rows {
                    let row = w.row(r);
                    let four = [act.row(0), act.row(1), act.row(2), act.row(3)];
                    let got4 = isa.dot_rows::<4>(ty, row, four);
                    for t in 0..6 {
                        let [got] = isa.dot_rows::<1>(ty, row, [act.row(t)]);
                        let [want] = scalar::dot_rows::<1>(ty, row, &[act.row(t)]);
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{isa:?} {ty:?} r{r} t{t}: {got} vs {want}"
                        );
                        if t < 4 {
                            assert_eq!(
                                got4[t].to_bits(),
                                want.to_bits(),
                                "{isa:?} {ty:?} x4 r{r} t{t}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn quantising_over_threads_gives_the_same_rows() {
    let mut rng = Rng::new(7);
    let pool = Pool::new(3);
    // 13 rows: three parts of five, five and three rows; 3 rows stay on one thread.
    for rows in [3, 13] {
        let cols = 512;
        let x = random_values(rows * cols, &mut rng);
        let (mut one, mut many) = (
            Activations::new(x.clone(), rows, cols),
            Activations::new(x, rows, cols),
        );
        for kind in [ActivationKind::Q8, ActivationKind::Q8K] {
            one.quantise(None, kind);
            many.quantise(Some(&pool), kind);
        }
        let (a, b) = (one.q8.as_ref().expect("q8"), many.q8.as_ref().expect("q8"));
        assert_eq!((&a.qs, &a.d, &a.s), (&b.qs, &b.d, &b.s), "{rows} rows, Q8");
        let (a, b) = (
            one.q8k.as_ref().expect("q8k"),
            many.q8k.as_ref().expect("q8k"),
        );
        assert_eq!(
            (&a.qs, &a.d, &a.sums),
            (&b.qs, &b.d, &b.sums),
            "{rows} rows, Q8K"
        );
    }
}

#[test]
fn every_instruction_set_unpacks_rows_as_the_scalar_code_does() {
    let mut rng = Rng::new(6);
    for isa in Isa::available() {
        for ty in WeightType::ALL
            .into_iter()
            .filter(|t| t.block_elems() == 32)
        {
            let cols = 352;
            let w = random_matrix(ty, 1, cols, &mut rng);
            let (mut got, mut want) = (Unpacked::default(), Unpacked::default());
            // A reused buffer of another length must come out the same.
            got.q = vec![7; 40];
            isa.unpack_row(ty, &w, &mut got);
            scalar::unpack_row(ty, &w, &mut want);
            assert_eq!(got.q, want.q, "{isa:?} {ty:?} values");
            assert_eq!(got.has_min, want.has_min, "{isa:?} {ty:?}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.d), bits(&want.d), "{isa:?} {ty:?} scales");
            assert_eq!(bits(&got.m), bits(&want.m), "{isa:?} {ty:?} mins");
        }
    }
}

#[test]
fn threaded_products_equal_row_by_row_products() {
    let mut rng = Rng::new(5);
    for (isa, threads) in Isa::available()
        .into_iter()
        .flat_map(|isa| [1, 2, 3].map(|t| (isa, t)))
    {
        let pool = Pool::new(threads);
        for &ty in &[
            WeightType::Q4_1,
            WeightType::Q5_0,
            WeightType::Q8_0,
            WeightType::Q4K,
            WeightType::Q5K,
            WeightType::Q6K,
            WeightType::F32,
        ] {
            // 11 blocks of 32: the kernels that take blocks in pairs end on a single one.
            // 11 and 16 super-blocks: AVX-512 takes rows of whole eights its own way.
            let shapes: &[usize] = if ty.block_elems() == 32 {
                &[352]
            } else {
                &[2816, 4096]
            };
            for &cols in shapes {
                let (ra, rb) = (37, 5);
                let wa = Matrix::from_bytes(ty, ra, cols, random_matrix(ty, ra, cols, &mut rng))
                    .expect("a");
                let wb = Matrix::from_bytes(ty, rb, cols, random_matrix(ty, rb, cols, &mut rng))
                    .expect("b");
                // From 8 tokens on, the 32-value formats (and on AVX2 Q4_K and Q5_K) go through
                // unpacked rows.
                for tokens in [1, 4, 7, 9, 13] {
                    let mut x =
                        Activations::new(random_values(tokens * cols, &mut rng), tokens, cols);
                    prepare(&wa, &mut x);
                    let (mut oa, mut ob) = (vec![0.0; tokens * ra], vec![0.0; tokens * rb]);
                    matmul_many(
                        &pool,
                        isa,
                        &mut [
                            Product {
                                w: &wa,
                                x: &x,
                                out: &mut oa,
                            },
                            Product {
                                w: &wb,
                                x: &x,
                                out: &mut ob,
                            },
                        ],
                    );
                    for (w, out) in [(&wa, &oa), (&wb, &ob)] {
                        for t in 0..tokens {
                            // Tokens go through the kernel in fours, the rest one by one.
                            let tile = t / TILE * TILE;
                            for r in 0..w.rows() {
                                let want = if tile + TILE <= tokens {
                                    let four = [
                                        x.row(tile),
                                        x.row(tile + 1),
                                        x.row(tile + 2),
                                        x.row(tile + 3),
                                    ];
                                    isa.dot_rows::<4>(ty, w.row(r), four)[t - tile]
                                } else {
                                    isa.dot_rows::<1>(ty, w.row(r), [x.row(t)])[0]
                                };
                                let got = out[t * w.rows() + r];
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{isa:?} {ty:?} {threads} threads, {tokens} tokens: row {r} token {t}: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn matrices_that_do_not_fit_are_refused() {
    assert!(matches!(
        Matrix::from_bytes(WeightType::Q4_1, 2, 64, vec![0; 79]),
        Err(MatrixError::OutOfBounds { needed: 80, .. })
    ));
    assert!(matches!(
        Matrix::from_bytes(WeightType::Q4K, 1, 100, vec![0; 1000]),
        Err(MatrixError::PartialBlock { .. })
    ));
    assert!(Matrix::new(WeightType::F32, 1, 1, Storage::new(vec![0u8; 4]), 8).is_err());
    assert!(
        Matrix::new(
            WeightType::F32,
            usize::MAX,
            2,
            Storage::new(vec![0u8; 4]),
            0
        )
        .is_err()
    );
}

#[test]
fn float_helpers() {
    let mut rng = Rng::new(6);
    for n in [0, 1, 7, 8, 9, 64, 100] {
        let a = random_values(n, &mut rng);
        let b = random_values(n, &mut rng);
        let want: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        for isa in Isa::available() {
            assert!(
                (f64::from(isa.dot_f32(&a, &b)) - want).abs() < 1e-3,
                "n={n}"
            );
            let mut y = b.clone();
            isa.axpy(0.5, &a, &mut y);
            for i in 0..n {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn halves_convert_as_the_half_crate_does() {
    for h in 0..=u16::MAX {
        let ours = formats::f16_at(&h.to_le_bytes(), 0);
        let theirs = half::f16::from_bits(h).to_f32();
        assert_eq!(ours.to_bits(), theirs.to_bits(), "half {h:#06x}");
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn the_table_of_halves_converts_as_the_scalar_code_does() {
    let t = simd128::halves();
    for h in 0..=u16::MAX {
        let b = h.to_le_bytes();
        let (got, want) = (simd128::half(t, &b, 0), formats::f16_at(&b, 0));
        assert_eq!(got.to_bits(), want.to_bits(), "half {h:#06x}");
    }
}
