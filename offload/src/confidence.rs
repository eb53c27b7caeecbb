//! Task-specific confidence (DESIGN.md §1.1).
//!
//! - Classification and multiple choice: the maximum softmax probability over the options'
//!   scores, `C = max_i softmax(z)_i` ([`max_softmax`], [`pick`]).
//! - Free generation: `C = 1 / (1 + PPL)` with `PPL = exp(mean token NLL)`, accumulated token by
//!   token while streaming ([`PerplexityAccumulator`]).
//!
//! Every input comes from a model or the network, so NaN, infinities and out-of-range values are
//! reported as typed errors, never propagated into a decision.

use crate::error::{OffloadError, Result, finite};
use serde::{Deserialize, Serialize};

/// A confidence in `[0, 1]`; never NaN.
///
/// Serialises as a bare number; deserialising checks the range, so a confidence read from the
/// wire is as trustworthy as one built with [`Confidence::new`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Confidence(f64);

impl Confidence {
    /// The lowest confidence.
    pub const ZERO: Confidence = Confidence(0.0);
    /// The highest confidence.
    pub const ONE: Confidence = Confidence(1.0);

    /// `value` if it is finite and within `[0, 1]`; a `-0.0` is stored as `0.0`.
    pub fn new(value: f64) -> Result<Self> {
        let value = finite("confidence", value)?;
        if !(0.0..=1.0).contains(&value) {
            return Err(OffloadError::OutOfRange {
                what: "confidence",
                expected: "between 0 and 1",
                value,
            });
        }
        // `-0.0 + 0.0 == +0.0`; every other value is unchanged.
        Ok(Confidence(value + 0.0))
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Confidence {
    type Error = OffloadError;

    fn try_from(value: f64) -> Result<Self> {
        Confidence::new(value)
    }
}

impl From<Confidence> for f64 {
    fn from(confidence: Confidence) -> f64 {
        confidence.0
    }
}

/// Checks option scores: at least one, all finite. Returns the largest and its (first) index.
fn check_scores(scores: &[f64]) -> Result<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (i, &z) in scores.iter().enumerate() {
        let z = finite("option score", z)?;
        // Strictly greater: ties go to the lowest index.
        if best.is_none_or(|(_, m)| z > m) {
            best = Some((i, z));
        }
    }
    best.ok_or(OffloadError::Empty("max softmax over option scores"))
}

/// `Σ_i exp(z_i − max)`: at least 1 (the maximum's own term), so its inverse is in `(0, 1]`.
/// `z_i − max` may round to `−inf` for scores of opposite huge magnitude; `exp` then gives 0.
fn shifted_exp_sum(scores: &[f64], max: f64) -> f64 {
    scores.iter().map(|&z| (z - max).exp()).sum()
}

/// `softmax(scores)`, computed stably (the maximum is subtracted before exponentiating); errors
/// on empty or non-finite input. The probabilities sum to 1 up to rounding.
pub fn softmax(scores: &[f64]) -> Result<Vec<f64>> {
    let (_, max) = check_scores(scores)?;
    let sum = shifted_exp_sum(scores, max);
    Ok(scores.iter().map(|&z| (z - max).exp() / sum).collect())
}

/// The predicted option (the index of the largest score, the lowest index on ties) and its
/// softmax probability, which is the answer's confidence. Errors on empty or non-finite input.
///
/// The confidence is bit-for-bit [`max_softmax`]`(scores)` and `softmax(scores)[index]`.
pub fn pick(scores: &[f64]) -> Result<(usize, Confidence)> {
    let (index, max) = check_scores(scores)?;
    let p = 1.0 / shifted_exp_sum(scores, max);
    Ok((index, Confidence::new(p)?))
}

/// `max_i softmax(scores)_i`, computed stably; errors on empty or non-finite input.
pub fn max_softmax(scores: &[f64]) -> Result<Confidence> {
    pick(scores).map(|(_, confidence)| confidence)
}

/// Running `1/(1+PPL)` over token log-probs, usable per token while streaming.
///
/// Pushing the tokens one at a time gives exactly the same numbers as
/// [`PerplexityAccumulator::from_logprobs`] on the whole sequence (it is the same loop).
///
/// Serialises as `{"nll_sum": …, "tokens": …}`; deserialising checks that the sum is finite and
/// non-negative, and zero when there are no tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AccumulatorRepr")]
pub struct PerplexityAccumulator {
    nll_sum: f64,
    tokens: u64,
}

/// Log-probs in `(0, LOGPROB_ROUNDING_TOLERANCE]` are taken as `0` (probability 1): engines
/// that compute a log-softmax in single precision report tiny positive values for near-certain
/// tokens. Anything larger is not a log-probability and is rejected.
pub const LOGPROB_ROUNDING_TOLERANCE: f64 = 1e-6;

impl PerplexityAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// An accumulator over a whole sequence of token log-probs (same rules as [`Self::push`]).
    pub fn from_logprobs(logprobs: impl IntoIterator<Item = f64>) -> Result<Self> {
        let mut acc = Self::new();
        for logprob in logprobs {
            acc.push(logprob)?;
        }
        Ok(acc)
    }

    /// Adds one token's natural-log probability (≤ 0, finite).
    ///
    /// NaN and ±inf (a probability of exactly 0 included) are [`OffloadError::NotFinite`]; a
    /// positive value above [`LOGPROB_ROUNDING_TOLERANCE`] is [`OffloadError::OutOfRange`], and
    /// one at or below it counts as `0`. A rejected value leaves the accumulator unchanged. The
    /// running sum saturates at `f64::MAX` (the confidence is then 0), so the state always stays
    /// finite and serialisable.
    pub fn push(&mut self, logprob: f64) -> Result<()> {
        let logprob = finite("token log-prob", logprob)?;
        if logprob > LOGPROB_ROUNDING_TOLERANCE {
            return Err(OffloadError::OutOfRange {
                what: "token log-prob",
                expected: "at most 0",
                value: logprob,
            });
        }
        let nll = -logprob.min(0.0);
        self.nll_sum = (self.nll_sum + nll).min(f64::MAX);
        self.tokens += 1;
        Ok(())
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The mean negative log-likelihood per token (≥ 0), or `None` before the first token.
    pub fn mean_nll(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.nll_sum / self.tokens as f64)
    }

    /// `exp(mean NLL)`, or `None` before the first token. At least 1; `+inf` when the mean NLL
    /// exceeds about 709.78 (the largest exponent an `f64` holds).
    pub fn perplexity(&self) -> Option<f64> {
        self.mean_nll().map(f64::exp)
    }

    /// `1/(1+PPL)`; an error before the first token.
    ///
    /// The result is in `(0, 0.5]` for any realistic sequence. Where `PPL` overflows, the value
    /// is computed as `exp(−mean NLL)` (equal to `1/(1+PPL)` to within rounding there), which
    /// keeps it positive and monotone down to the smallest subnormal before it reaches 0; it is
    /// never NaN.
    pub fn confidence(&self) -> Result<Confidence> {
        let mean = self.mean_nll().ok_or(OffloadError::Empty(
            "a perplexity confidence (no tokens yet)",
        ))?;
        Confidence::new(sigmoid_of_negative(mean))
    }
}

/// `1 / (1 + exp(m))` for `m ≥ 0`, without overflow.
fn sigmoid_of_negative(m: f64) -> f64 {
    let ppl = m.exp();
    if ppl.is_finite() {
        1.0 / (1.0 + ppl)
    } else {
        // 1 + e^m == e^m in f64 long before e^m overflows, so 1/(1+e^m) == e^-m here.
        (-m).exp()
    }
}

/// The serialised form of a [`PerplexityAccumulator`].
#[derive(Deserialize)]
struct AccumulatorRepr {
    nll_sum: f64,
    tokens: u64,
}

impl TryFrom<AccumulatorRepr> for PerplexityAccumulator {
    type Error = OffloadError;

    fn try_from(repr: AccumulatorRepr) -> Result<Self> {
        let nll_sum = finite("negative log-likelihood sum", repr.nll_sum)?;
        if nll_sum < 0.0 {
            return Err(OffloadError::OutOfRange {
                what: "negative log-likelihood sum",
                expected: "at least 0",
                value: nll_sum,
            });
        }
        if repr.tokens == 0 && nll_sum != 0.0 {
            return Err(OffloadError::OutOfRange {
                what: "negative log-likelihood sum with no tokens",
                expected: "0",
                value: nll_sum,
            });
        }
        Ok(PerplexityAccumulator {
            nll_sum: nll_sum + 0.0,
            tokens: repr.tokens,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn confidence_must_be_a_probability() {
        assert_eq!(Confidence::new(0.25).unwrap().get(), 0.25);
        assert_eq!(Confidence::new(0.0).unwrap(), Confidence::ZERO);
        assert_eq!(Confidence::new(1.0).unwrap(), Confidence::ONE);
        assert_eq!(Confidence::new(-0.0).unwrap().get().to_bits(), 0);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                Confidence::new(bad),
                Err(OffloadError::NotFinite { .. })
            ));
        }
        for bad in [-1e-9, 1.000_000_1, -3.0] {
            assert!(matches!(
                Confidence::new(bad),
                Err(OffloadError::OutOfRange { .. })
            ));
        }
    }

    #[test]
    fn confidence_serde_is_a_validated_number() {
        let c = Confidence::new(0.75).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "0.75");
        assert_eq!(serde_json::from_str::<Confidence>("0.75").unwrap(), c);
        assert_eq!(
            serde_json::from_str::<Confidence>("1").unwrap(),
            Confidence::ONE
        );
        for bad in ["1.5", "-0.1", "null", "\"0.5\"", "1e999"] {
            assert!(serde_json::from_str::<Confidence>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn max_softmax_matches_the_definition() {
        let c = max_softmax(&[1.0, 2.0, 3.0]).unwrap().get();
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let expected = e[2] / (e[0] + e[1] + e[2]);
        assert!((c - expected).abs() < 1e-15, "{c} vs {expected}");
        assert_eq!(max_softmax(&[4.2]).unwrap(), Confidence::ONE);
        assert_eq!(max_softmax(&[0.0, 0.0]).unwrap().get(), 0.5);
        assert_eq!(max_softmax(&[-7.0, -7.0, -7.0, -7.0]).unwrap().get(), 0.25);
    }

    #[test]
    fn max_softmax_is_stable_for_huge_scores() {
        let c = max_softmax(&[1000.0, 999.0]).unwrap().get();
        assert!((c - 1.0 / (1.0 + (-1f64).exp())).abs() < 1e-15);
        assert_eq!(max_softmax(&[-1e308, 1e308]).unwrap(), Confidence::ONE);
        assert_eq!(max_softmax(&[f64::MAX, f64::MAX]).unwrap().get(), 0.5);
        let tiny = max_softmax(&[-1e300, -1e300 + 1e290]).unwrap().get();
        assert!(tiny.is_finite() && tiny > 0.0);
    }

    #[test]
    fn max_softmax_rejects_empty_and_non_finite_scores() {
        assert!(matches!(max_softmax(&[]), Err(OffloadError::Empty(_))));
        assert!(matches!(softmax(&[]), Err(OffloadError::Empty(_))));
        assert!(matches!(pick(&[]), Err(OffloadError::Empty(_))));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                max_softmax(&[0.5, bad]),
                Err(OffloadError::NotFinite { .. })
            ));
            assert!(softmax(&[bad]).is_err());
            assert!(pick(&[1.0, bad, 2.0]).is_err());
        }
    }

    #[test]
    fn softmax_sums_to_one_and_agrees_with_pick() {
        let scores = [0.3, -1.2, 2.5, 2.5, 0.0];
        let p = softmax(&scores).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p.iter().all(|&x| (0.0..=1.0).contains(&x)));
        let (index, c) = pick(&scores).unwrap();
        assert_eq!(index, 2, "ties go to the lowest index");
        assert_eq!(c.get().to_bits(), p[2].to_bits());
        assert_eq!(c, max_softmax(&scores).unwrap());
        assert_eq!(pick(&[-3.0, 5.0, 1.0]).unwrap().0, 1);
    }

    #[test]
    fn perplexity_of_a_known_sequence() {
        let lp = [0.5f64.ln(), 0.25f64.ln()];
        let acc = PerplexityAccumulator::from_logprobs(lp).unwrap();
        assert_eq!(acc.tokens(), 2);
        // PPL = exp(-(ln ½ + ln ¼)/2) = √8
        let ppl = acc.perplexity().unwrap();
        assert!((ppl - 8f64.sqrt()).abs() < 1e-12, "{ppl}");
        let c = acc.confidence().unwrap().get();
        assert!((c - 1.0 / (1.0 + 8f64.sqrt())).abs() < 1e-12, "{c}");
        // Certain tokens: PPL 1, confidence ½.
        let certain = PerplexityAccumulator::from_logprobs([0.0, 0.0]).unwrap();
        assert_eq!(certain.perplexity(), Some(1.0));
        assert_eq!(certain.confidence().unwrap().get(), 0.5);
    }

    #[test]
    fn incremental_equals_batch() {
        let lp: Vec<f64> = (1..200).map(|i| -((i * 37 % 101) as f64) / 17.0).collect();
        let mut acc = PerplexityAccumulator::new();
        for (n, &x) in lp.iter().enumerate() {
            acc.push(x).unwrap();
            let batch = PerplexityAccumulator::from_logprobs(lp[..=n].iter().copied()).unwrap();
            assert_eq!(acc, batch);
            assert_eq!(acc.confidence().unwrap(), batch.confidence().unwrap());
        }
    }

    #[test]
    fn nothing_before_the_first_token() {
        let acc = PerplexityAccumulator::new();
        assert_eq!(acc.tokens(), 0);
        assert_eq!(acc.perplexity(), None);
        assert_eq!(acc.mean_nll(), None);
        assert!(matches!(acc.confidence(), Err(OffloadError::Empty(_))));
        assert!(
            PerplexityAccumulator::from_logprobs([])
                .unwrap()
                .confidence()
                .is_err()
        );
    }

    #[test]
    fn bad_logprobs_are_rejected_without_changing_state() {
        let mut acc = PerplexityAccumulator::from_logprobs([-0.5]).unwrap();
        let before = acc.clone();
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(acc.push(bad), Err(OffloadError::NotFinite { .. })));
        }
        assert!(matches!(
            acc.push(0.01),
            Err(OffloadError::OutOfRange { .. })
        ));
        assert_eq!(acc, before);
        // Rounding noise just above zero counts as a certain token.
        acc.push(LOGPROB_ROUNDING_TOLERANCE).unwrap();
        acc.push(1e-9).unwrap();
        assert_eq!(acc.tokens(), 3);
        assert_eq!(acc.mean_nll(), Some(0.5 / 3.0));
        assert!(PerplexityAccumulator::from_logprobs([-0.1, f64::NAN]).is_err());
    }

    #[test]
    fn confidence_never_overflows_to_nan() {
        for m in [30.0, 700.0, 709.0, 710.0, 740.0, 746.0, 1e6, 1e300] {
            let acc = PerplexityAccumulator::from_logprobs([-m]).unwrap();
            let c = acc.confidence().unwrap().get();
            assert!((0.0..=0.5).contains(&c), "{m}: {c}");
        }
        // Monotone across the point where PPL overflows.
        let at = |m: f64| {
            PerplexityAccumulator::from_logprobs([-m])
                .unwrap()
                .confidence()
                .unwrap()
                .get()
        };
        assert!(at(709.0) > at(709.7) && at(709.7) > at(710.0) && at(710.0) > at(740.0));
        assert!(at(740.0) > 0.0);
        assert_eq!(at(1e6), 0.0);
        // A sum that would overflow saturates and stays serialisable.
        let huge = PerplexityAccumulator::from_logprobs([-f64::MAX, -f64::MAX]).unwrap();
        assert_eq!(huge.confidence().unwrap().get(), 0.0);
        assert_eq!(huge.perplexity(), Some(f64::INFINITY));
        let json = serde_json::to_string(&huge).unwrap();
        assert_eq!(
            serde_json::from_str::<PerplexityAccumulator>(&json).unwrap(),
            huge
        );
    }

    #[test]
    fn accumulator_serde_round_trips_and_validates() {
        let acc = PerplexityAccumulator::from_logprobs([-0.5, -1.5]).unwrap();
        let json = serde_json::to_string(&acc).unwrap();
        assert_eq!(json, r#"{"nll_sum":2.0,"tokens":2}"#);
        assert_eq!(
            serde_json::from_str::<PerplexityAccumulator>(&json).unwrap(),
            acc
        );
        for bad in [
            r#"{"nll_sum":-1.0,"tokens":2}"#,
            r#"{"nll_sum":1.0,"tokens":0}"#,
            r#"{"nll_sum":null,"tokens":1}"#,
            r#"{"nll_sum":1.0,"tokens":-1}"#,
            r#"{"nll_sum":1.0}"#,
        ] {
            assert!(
                serde_json::from_str::<PerplexityAccumulator>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
