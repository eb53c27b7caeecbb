//! The baselines RecServe is compared with: fixed-threshold cascades (CasServe), offloading with
//! a fixed probability (ColServe), and serving everything on one tier (EndServe, EdgeServe,
//! CloudServe).

use super::{DecideInput, Decision, PerTier, Policy, Reason, Route, RouteInput};
use crate::tier::Tier;

/// A cascade with hand-set thresholds per tier: keep the answer when `confidence >= threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct CasServe {
    thresholds: PerTier<f64>,
}

impl CasServe {
    pub fn new(thresholds: PerTier<f64>) -> Self {
        CasServe { thresholds }
    }
}

impl Policy for CasServe {
    fn name(&self) -> &'static str {
        "casserve"
    }

    fn decide(&self, input: &DecideInput<'_>) -> Decision {
        let (Some(threshold), Some(up)) = (self.thresholds.get(input.tier), input.tier.next())
        else {
            return Decision::answer(Reason::TopTier);
        };
        let confidence = input.confidence.get();
        let reason = Reason::Threshold {
            confidence,
            threshold,
            window_len: None,
        };
        if confidence >= threshold {
            Decision::answer(reason)
        } else {
            Decision::offload(up, reason)
        }
    }
}

/// Offloads with a fixed probability per tier, whatever the confidence. The draw is a hash of
/// the seed, the tier and the request key, so a replay with the same seed decides the same way
/// on every target without any random-number state to persist.
#[derive(Debug, Clone, PartialEq)]
pub struct ColServe {
    probability: PerTier<f64>,
    seed: u64,
}

impl ColServe {
    pub fn new(probability: PerTier<f64>, seed: u64) -> Self {
        ColServe { probability, seed }
    }

    /// A uniform draw in `[0, 1)` for this (tier, request).
    pub fn draw(&self, tier: Tier, request_key: u64) -> f64 {
        let mixed = splitmix64(self.seed ^ splitmix64(request_key ^ ((tier.index() as u64) << 56)));
        // The top 53 bits give every representable multiple of 2^-53 in [0, 1).
        (mixed >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// SplitMix64's output function: a cheap, well-mixed 64-bit hash.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Policy for ColServe {
    fn name(&self) -> &'static str {
        "colserve"
    }

    fn decide(&self, input: &DecideInput<'_>) -> Decision {
        let (Some(probability), Some(up)) = (self.probability.get(input.tier), input.tier.next())
        else {
            return Decision::answer(Reason::TopTier);
        };
        let draw = self.draw(input.tier, input.request_key);
        let reason = Reason::CoinFlip { probability, draw };
        if draw < probability {
            Decision::offload(up, reason)
        } else {
            Decision::answer(reason)
        }
    }
}

/// Serves everything on one tier: lower tiers forward without generating, and that tier answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleTier {
    serving: Tier,
}

impl SingleTier {
    pub fn new(serving: Tier) -> Self {
        SingleTier { serving }
    }
}

impl Policy for SingleTier {
    fn name(&self) -> &'static str {
        match self.serving {
            Tier::Device => "endserve",
            Tier::Edge => "edgeserve",
            Tier::Cloud => "cloudserve",
        }
    }

    fn route(&self, input: &RouteInput) -> Route {
        if input.tier < self.serving {
            Route::Forward {
                to: self.serving,
                reason: Reason::SingleTier {
                    serving: self.serving,
                },
            }
        } else {
            Route::Attempt
        }
    }

    fn decide(&self, input: &DecideInput<'_>) -> Decision {
        let reason = Reason::SingleTier {
            serving: self.serving,
        };
        // A tier below the serving one only generates if a caller ignored `route`.
        if input.tier < self.serving {
            Decision::offload(self.serving, reason)
        } else {
            Decision::answer(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, decide};
    use crate::{Confidence, TaskType, TierSet, Windows};

    fn run(policy: &dyn Policy, tier: Tier, c: f64, key: u64) -> Decision {
        let mut windows = Windows::new(8).unwrap();
        decide(
            policy,
            &mut windows,
            tier,
            TaskType::Chat,
            Confidence::new(c).unwrap(),
            key,
            TierSet::ALL,
        )
        .unwrap()
    }

    fn route(policy: &dyn Policy, tier: Tier) -> Route {
        policy.route(&RouteInput {
            tier,
            task: TaskType::Chat,
            request_key: 0,
            reachable: TierSet::ALL,
        })
    }

    #[test]
    fn casserve_compares_against_each_tiers_fixed_threshold() {
        let p = CasServe::new(PerTier {
            device: 0.7,
            edge: 0.4,
        });
        assert_eq!(run(&p, Tier::Device, 0.7, 0).action, Action::Answer);
        assert_eq!(
            run(&p, Tier::Device, 0.69, 0).action,
            Action::Offload { to: Tier::Edge }
        );
        assert_eq!(run(&p, Tier::Edge, 0.5, 0).action, Action::Answer);
        assert_eq!(
            run(&p, Tier::Edge, 0.3, 0).action,
            Action::Offload { to: Tier::Cloud }
        );
        assert_eq!(run(&p, Tier::Cloud, 0.0, 0).reason, Reason::TopTier);
    }

    #[test]
    fn colserve_is_seeded_and_offloads_at_its_rate() {
        let p = ColServe::new(PerTier::same(0.3), 7);
        let ups = (0..10_000)
            .filter(|&k| run(&p, Tier::Device, 0.99, k).offloads())
            .count();
        assert!((2_800..=3_200).contains(&ups), "offloaded {ups} of 10000");
        // Same seed and key, same draw; another seed, other draws.
        let again = ColServe::new(PerTier::same(0.3), 7);
        let other = ColServe::new(PerTier::same(0.3), 8);
        assert_eq!(p.draw(Tier::Device, 42), again.draw(Tier::Device, 42));
        let differ = (0..100)
            .filter(|&k| p.draw(Tier::Device, k) != other.draw(Tier::Device, k))
            .count();
        assert!(differ > 90);
        assert_ne!(p.draw(Tier::Device, 1), p.draw(Tier::Edge, 1));
    }

    #[test]
    fn colserve_extremes() {
        let never = ColServe::new(PerTier::same(0.0), 1);
        let always = ColServe::new(PerTier::same(1.0), 1);
        for k in 0..200 {
            assert!(!run(&never, Tier::Device, 0.0, k).offloads());
            assert!(run(&always, Tier::Edge, 1.0, k).offloads());
        }
    }

    #[test]
    fn single_tier_policies_forward_below_and_answer_at_their_tier() {
        let end = SingleTier::new(Tier::Device);
        let edge = SingleTier::new(Tier::Edge);
        let cloud = SingleTier::new(Tier::Cloud);
        assert_eq!(route(&end, Tier::Device), Route::Attempt);
        assert_eq!(run(&end, Tier::Device, 0.0, 0).action, Action::Answer);
        assert!(matches!(
            route(&edge, Tier::Device),
            Route::Forward { to: Tier::Edge, .. }
        ));
        assert_eq!(route(&edge, Tier::Edge), Route::Attempt);
        assert_eq!(run(&edge, Tier::Edge, 0.0, 0).action, Action::Answer);
        assert!(matches!(
            route(&cloud, Tier::Device),
            Route::Forward {
                to: Tier::Cloud,
                ..
            }
        ));
        assert!(matches!(
            route(&cloud, Tier::Edge),
            Route::Forward {
                to: Tier::Cloud,
                ..
            }
        ));
        assert_eq!(
            run(&cloud, Tier::Edge, 1.0, 0).action,
            Action::Offload { to: Tier::Cloud }
        );
        assert_eq!(
            [end.name(), edge.name(), cloud.name()],
            ["endserve", "edgeserve", "cloudserve"]
        );
    }
}
