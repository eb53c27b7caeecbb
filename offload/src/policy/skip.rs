//! Skipping a tier that is down: when the wanted tier cannot be reached, the request goes to the
//! next tier above it that can; when none can, the current tier answers after all, and the
//! reason says so. RecServe's paper serves the same way when a tier fails.

use super::{Action, DecideInput, Decision, Policy, Reason, Route, RouteInput};
use crate::tier::{Tier, TierSet};

/// Wraps any policy and retargets its offloads and forwards around unreachable tiers.
pub struct SkipUnavailable<P> {
    inner: P,
}

impl<P: Policy> SkipUnavailable<P> {
    pub fn new(inner: P) -> Self {
        SkipUnavailable { inner }
    }
}

/// The lowest reachable tier at or above `wanted`.
fn first_up_from(wanted: Tier, reachable: TierSet) -> Option<Tier> {
    Tier::ALL
        .into_iter()
        .find(|&t| t >= wanted && reachable.contains(t))
}

impl<P: Policy> Policy for SkipUnavailable<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn route(&self, input: &RouteInput) -> Route {
        match self.inner.route(input) {
            Route::Forward { to, reason } if !input.reachable.contains(to) => {
                match first_up_from(to, input.reachable) {
                    Some(up) => Route::Forward {
                        to: up,
                        reason: Reason::SkippedDown {
                            wanted: to,
                            because: Box::new(reason),
                        },
                    },
                    // Nobody above is up: better an answer from here than none.
                    None => Route::Attempt,
                }
            }
            route => route,
        }
    }

    fn decide(&self, input: &DecideInput<'_>) -> Decision {
        let decision = self.inner.decide(input);
        let Action::Offload { to } = decision.action else {
            return decision;
        };
        if input.reachable.contains(to) {
            return decision;
        }
        match first_up_from(to, input.reachable) {
            Some(up) => Decision::offload(
                up,
                Reason::SkippedDown {
                    wanted: to,
                    because: Box::new(decision.reason),
                },
            ),
            None => Decision::answer(Reason::NoTierAbove {
                because: Box::new(decision.reason),
            }),
        }
    }
}

impl Policy for Box<dyn Policy + Send + Sync> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn route(&self, input: &RouteInput) -> Route {
        (**self).route(input)
    }

    fn decide(&self, input: &DecideInput<'_>) -> Decision {
        (**self).decide(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CasServe, PerTier, SingleTier, decide};
    use crate::{Confidence, TaskType, Windows};

    fn run(policy: &dyn Policy, tier: Tier, c: f64, reachable: TierSet) -> Decision {
        let mut windows = Windows::new(8).unwrap();
        decide(
            policy,
            &mut windows,
            tier,
            TaskType::Chat,
            Confidence::new(c).unwrap(),
            0,
            reachable,
        )
        .unwrap()
    }

    #[test]
    fn offload_skips_a_down_edge_to_the_cloud() {
        let p = SkipUnavailable::new(CasServe::new(PerTier::same(0.5)));
        let no_edge = TierSet::ALL.without(Tier::Edge);
        let d = run(&p, Tier::Device, 0.1, no_edge);
        assert_eq!(d.action, Action::Offload { to: Tier::Cloud });
        assert!(matches!(
            d.reason,
            Reason::SkippedDown {
                wanted: Tier::Edge,
                ..
            }
        ));
        // Confident answers are untouched.
        assert_eq!(run(&p, Tier::Device, 0.9, no_edge).action, Action::Answer);
        // With everything up nothing changes.
        assert_eq!(
            run(&p, Tier::Device, 0.1, TierSet::ALL).action,
            Action::Offload { to: Tier::Edge }
        );
    }

    #[test]
    fn answers_locally_when_nothing_above_is_up() {
        let p = SkipUnavailable::new(CasServe::new(PerTier::same(0.5)));
        let alone = TierSet::NONE.with(Tier::Device);
        let d = run(&p, Tier::Device, 0.1, alone);
        assert_eq!(d.action, Action::Answer);
        assert!(matches!(d.reason, Reason::NoTierAbove { .. }));
        let d = run(&p, Tier::Edge, 0.1, TierSet::ALL.without(Tier::Cloud));
        assert_eq!(d.action, Action::Answer);
    }

    #[test]
    fn forwards_skip_down_tiers_too() {
        let p = SkipUnavailable::new(SingleTier::new(Tier::Edge));
        let input = |reachable| RouteInput {
            tier: Tier::Device,
            task: TaskType::Chat,
            request_key: 0,
            reachable,
        };
        assert!(matches!(
            p.route(&input(TierSet::ALL.without(Tier::Edge))),
            Route::Forward {
                to: Tier::Cloud,
                ..
            }
        ));
        assert_eq!(
            p.route(&input(TierSet::NONE.with(Tier::Device))),
            Route::Attempt
        );
    }
}
