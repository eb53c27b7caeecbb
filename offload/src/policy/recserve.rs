//! RecServe (arXiv 2505.16502): keep an answer when its confidence reaches the β-quantile of the
//! tier's recent confidences, so about a fraction β of what reaches a tier climbs further.

use super::{DecideInput, Decision, PerTier, Policy, Reason};
use crate::error::{OffloadError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct RecServe {
    beta: PerTier<f64>,
}

impl RecServe {
    /// `beta` per offloading tier, each in `[0, 1]`.
    pub fn new(beta: PerTier<f64>) -> Result<Self> {
        for b in [beta.device, beta.edge] {
            if !(0.0..=1.0).contains(&b) {
                return Err(OffloadError::OutOfRange {
                    what: "beta",
                    expected: "between 0 and 1",
                    value: b,
                });
            }
        }
        Ok(RecServe { beta })
    }

    pub fn beta(&self) -> PerTier<f64> {
        self.beta
    }
}

impl Policy for RecServe {
    fn name(&self) -> &'static str {
        "recserve"
    }

    fn decide(&self, input: &DecideInput<'_>) -> Decision {
        let (Some(beta), Some(up)) = (self.beta.get(input.tier), input.tier.next()) else {
            return Decision::answer(Reason::TopTier);
        };
        let window_len = input.window.len();
        // β was checked in `new`, so the only `None` is a window of fewer than two values.
        let Ok(Some(threshold)) = input.window.quantile(beta) else {
            return Decision::answer(Reason::NoThresholdYet { window_len });
        };
        let confidence = input.confidence.get();
        let reason = Reason::Threshold {
            confidence,
            threshold,
            window_len: Some(window_len),
        };
        if confidence >= threshold {
            Decision::answer(reason)
        } else {
            Decision::offload(up, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, decide};
    use crate::{Confidence, TaskType, Tier, TierSet, Windows};

    fn run(policy: &RecServe, windows: &mut Windows, tier: Tier, c: f64) -> Decision {
        decide(
            policy,
            windows,
            tier,
            TaskType::Classification,
            Confidence::new(c).unwrap(),
            0,
            TierSet::ALL,
        )
        .unwrap()
    }

    #[test]
    fn keeps_answers_until_a_threshold_exists() {
        let policy = RecServe::new(PerTier::same(0.5)).unwrap();
        let mut windows = Windows::new(10).unwrap();
        let first = run(&policy, &mut windows, Tier::Device, 0.1);
        assert_eq!(first.action, Action::Answer);
        assert_eq!(first.reason, Reason::NoThresholdYet { window_len: 1 });
    }

    #[test]
    fn offloads_below_the_window_quantile_and_keeps_at_or_above_it() {
        let policy = RecServe::new(PerTier::same(0.5)).unwrap();
        let mut windows = Windows::new(10).unwrap();
        run(&policy, &mut windows, Tier::Device, 0.2);
        run(&policy, &mut windows, Tier::Device, 0.8);
        // Window [0.2, 0.8, 0.4]: median 0.4, and 0.4 >= 0.4 keeps the answer.
        let keep = run(&policy, &mut windows, Tier::Device, 0.4);
        assert_eq!(keep.action, Action::Answer);
        assert_eq!(
            keep.reason,
            Reason::Threshold {
                confidence: 0.4,
                threshold: 0.4,
                window_len: Some(3)
            }
        );
        // Window [0.2, 0.8, 0.4, 0.3]: median 0.35 > 0.3, so it climbs one tier.
        let up = run(&policy, &mut windows, Tier::Device, 0.3);
        assert_eq!(up.action, Action::Offload { to: Tier::Edge });
        let up = run(&policy, &mut windows, Tier::Edge, 0.1);
        assert_eq!(up.action, Action::Answer, "edge window has one value");
    }

    #[test]
    fn the_cloud_never_offloads() {
        let policy = RecServe::new(PerTier::same(1.0)).unwrap();
        let mut windows = Windows::new(10).unwrap();
        for c in [0.9, 0.1, 0.0] {
            let d = run(&policy, &mut windows, Tier::Cloud, c);
            assert_eq!(d, Decision::answer(Reason::TopTier));
        }
    }

    #[test]
    fn beta_one_offloads_all_but_the_maximum_and_beta_zero_keeps_everything() {
        let all = RecServe::new(PerTier::same(1.0)).unwrap();
        let none = RecServe::new(PerTier::same(0.0)).unwrap();
        let mut w1 = Windows::new(100).unwrap();
        let mut w0 = Windows::new(100).unwrap();
        let stream = [0.5, 0.4, 0.3, 0.2, 0.6, 0.1];
        let ups1: Vec<bool> = stream
            .iter()
            .map(|&c| run(&all, &mut w1, Tier::Device, c).offloads())
            .collect();
        let ups0: Vec<bool> = stream
            .iter()
            .map(|&c| run(&none, &mut w0, Tier::Device, c).offloads())
            .collect();
        // With β = 1 the threshold is the window's maximum: only a new maximum stays.
        assert_eq!(ups1, [false, true, true, true, false, true]);
        assert_eq!(ups0, [false; 6]);
    }

    #[test]
    fn rejects_beta_outside_the_unit_interval() {
        assert!(RecServe::new(PerTier::same(1.5)).is_err());
        assert!(RecServe::new(PerTier::same(f64::NAN)).is_err());
    }
}
