//! Element-wise float work of the forward pass (the MLP's gated activations, softmax) with a
//! branch-free `exp` that the compiler vectorises, compiled a second time for AVX2 + FMA and
//! picked at run time. libm's `expf`/`tanhf` would be called once per value, which costs more
//! than the matrix products around them in a prefill.

use super::Isa;

/// `e^x` to within a few ulp (Cephes' `expf` polynomial), for every finite `x`; `NaN` stays
/// `NaN`. Inputs beyond the float range are clamped, so huge negatives give about 1e-38
/// rather than 0 and huge positives about 2.4e38 rather than infinity.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.33, 88.37);
    // n = round(x / ln 2), then r = x − n·ln 2 in two steps for precision.
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n from the exponent bits; n is within −126..=127 after the clamp (a NaN gives 0 here
    // and stays NaN through `e`).
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    e * scale
}

#[inline(always)]
fn silu_mul_body(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + exp(-*g)) * u;
    }
}

#[inline(always)]
fn gelu_mul_body(gate: &mut [f32], up: &[f32]) {
    // GELU's tanh form, 0.5·x·(1 + tanh(z)), is x·sigmoid(2z): one exp.
    const TWO_SQRT_2_OVER_PI: f32 = 1.595_769;
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g;
        let z2 = TWO_SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
        *g = x / (1.0 + exp(-z2)) * u;
    }
}

#[inline(always)]
fn softmax_body(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Lanes of [`log_sum_exp_body`]: value `i` goes to lane `i % LANES`, and the lanes are combined
/// in one fixed order, so the scalar, AVX2 and WebAssembly builds (which vectorise the lanes)
/// compute the same bits.
const LANES: usize = 8;

#[inline(always)]
fn log_sum_exp_body(x: &[f32]) -> f32 {
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut m = [f32::NEG_INFINITY; LANES];
    for c in chunks.clone() {
        for (m, &v) in m.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    for (m, &v) in m.iter_mut().zip(tail) {
        *m = m.max(v);
    }
    let max = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max.is_infinite() {
        // Empty, all −∞, or a +∞ among the values: nothing finite to normalise against.
        return max;
    }
    let mut s = [0.0f32; LANES];
    for c in chunks {
        for (s, &v) in s.iter_mut().zip(c) {
            *s += exp(v - max);
        }
    }
    for (s, &v) in s.iter_mut().zip(tail) {
        *s += exp(v - max);
    }
    let sum = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    max + sum.ln()
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
        super::silu_mul_body(gate, up);
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gelu_mul(gate: &mut [f32], up: &[f32]) {
        super::gelu_mul_body(gate, up);
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax(x: &mut [f32]) {
        super::softmax_body(x);
    }
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn log_sum_exp(x: &[f32]) -> f32 {
        super::log_sum_exp_body(x)
    }
}

impl Isa {
    /// `gate[i] = silu(gate[i]) · up[i]` (SwiGLU).
    pub fn silu_mul(self, gate: &mut [f32], up: &[f32]) {
        match self {
            // SAFETY: `Avx2` is only chosen when the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::silu_mul(gate, up) },
            _ => silu_mul_body(gate, up),
        }
    }

    /// `gate[i] = gelu_tanh(gate[i]) · up[i]` (GeGLU).
    pub fn gelu_mul(self, gate: &mut [f32], up: &[f32]) {
        match self {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::gelu_mul(gate, up) },
            _ => gelu_mul_body(gate, up),
        }
    }

    /// Softmax in place (the largest value is subtracted first, so any finite input is safe).
    pub fn softmax(self, x: &mut [f32]) {
        match self {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::softmax(x) },
            _ => softmax_body(x),
        }
    }

    /// `ln Σ e^x`, computed stably (the largest value is taken out first): the normaliser of
    /// a log-softmax. Every kernel set gives the same bits. `−∞` for an empty slice.
    pub fn log_sum_exp(self, x: &[f32]) -> f32 {
        match self {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::log_sum_exp(x) },
            _ => log_sum_exp_body(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn activations_match_their_definitions() {
        let xs: Vec<f32> = (-400..400).map(|i| i as f32 * 0.05).collect();
        let up: Vec<f32> = xs.iter().map(|x| 1.0 + x * 0.1).collect();
        for isa in Isa::available() {
            let mut silu = xs.clone();
            isa.silu_mul(&mut silu, &up);
            let mut gelu = xs.clone();
            isa.gelu_mul(&mut gelu, &up);
            for i in 0..xs.len() {
                let x = f64::from(xs[i]);
                let u = f64::from(up[i]);
                let s = x / (1.0 + (-x).exp()) * u;
                let g = 0.5
                    * x
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x))
                            .tanh())
                    * u;
                assert!(
                    (f64::from(silu[i]) - s).abs() <= 1e-5 * (1.0 + s.abs()),
                    "silu({x})"
                );
                assert!(
                    (f64::from(gelu[i]) - g).abs() <= 1e-5 * (1.0 + g.abs()),
                    "gelu({x})"
                );
            }
        }
    }

    #[test]
    fn log_sum_exp_matches_f64_and_every_kernel_set() {
        // Lengths around the lane count, and a vocabulary-sized one.
        for n in [1usize, 7, 8, 9, 17, 262_147] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 * 0.03 - 12.0)
                .collect();
            let max = x
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(v)));
            let want = max
                + x.iter()
                    .map(|&v| (f64::from(v) - max).exp())
                    .sum::<f64>()
                    .ln();
            let reference = log_sum_exp_body(&x);
            assert!(
                (f64::from(reference) - want).abs() < 1e-5 * (1.0 + want.abs()),
                "n = {n}: {reference} vs {want}"
            );
            for isa in Isa::available() {
                assert_eq!(
                    isa.log_sum_exp(&x).to_bits(),
                    reference.to_bits(),
                    "{isa:?}, n = {n}"
                );
            }
        }
        let isa = Isa::detect();
        assert_eq!(isa.log_sum_exp(&[]), f32::NEG_INFINITY);
        assert_eq!(isa.log_sum_exp(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
        assert_eq!(isa.log_sum_exp(&[1.0, f32::INFINITY]), f32::INFINITY);
        assert!((isa.log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f32.ln())).abs() < 1e-3);
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_values() {
        for isa in Isa::available() {
            let mut x = vec![1000.0, 1001.0, -5.0, f32::MIN / 2.0];
            isa.softmax(&mut x);
            assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(x[1] > x[0] && x[0] > x[2] && x[3] < 1e-30);
        }
    }
}
