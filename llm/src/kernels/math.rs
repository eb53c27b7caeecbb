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
}

impl Isa {
    /// `gate[i] = silu(gate[i]) · up[i]` (SwiGLU).
    pub fn silu_mul(self, gate: &mut [f32], up: &[f32]) {
        match self {
            // SAFETY: `Avx2` is only chosen when the CPU has AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::silu_mul(gate, up) },
            _ => silu_mul_body(gate, up),
        }
    }

    /// `gate[i] = gelu_tanh(gate[i]) · up[i]` (GeGLU).
    pub fn gelu_mul(self, gate: &mut [f32], up: &[f32]) {
        match self {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::gelu_mul(gate, up) },
            _ => gelu_mul_body(gate, up),
        }
    }

    /// Softmax in place (the largest value is subtracted first, so any finite input is safe).
    pub fn softmax(self, x: &mut [f32]) {
        match self {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { avx2::softmax(x) },
            _ => softmax_body(x),
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
    fn softmax_sums_to_one_and_survives_large_values() {
        for isa in Isa::available() {
            let mut x = vec![1000.0, 1001.0, -5.0, f32::MIN / 2.0];
            isa.softmax(&mut x);
            assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(x[1] > x[0] && x[0] > x[2] && x[3] < 1e-30);
        }
    }
}
