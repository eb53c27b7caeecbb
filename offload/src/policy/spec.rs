//! Policy configuration as it travels on the wire and sits in config files.

use super::{CasServe, ColServe, Policy, RecServe, SingleTier, SkipUnavailable};
use crate::error::{OffloadError, Result};
use crate::tier::Tier;
use serde::{Deserialize, Serialize};

/// A value for each tier that can offload (the cloud never does). On the wire either one number
/// for both tiers (`0.3`) or an object (`{"device": 0.3, "edge": 0.5}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(
    from = "PerTierRepr<T>",
    bound(deserialize = "T: Deserialize<'de> + Clone")
)]
pub struct PerTier<T> {
    pub device: T,
    pub edge: T,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PerTierRepr<T> {
    Same(T),
    Each { device: T, edge: T },
}

impl<T: Clone> From<PerTierRepr<T>> for PerTier<T> {
    fn from(repr: PerTierRepr<T>) -> Self {
        match repr {
            PerTierRepr::Same(v) => PerTier {
                device: v.clone(),
                edge: v,
            },
            PerTierRepr::Each { device, edge } => PerTier { device, edge },
        }
    }
}

impl<T: Copy> PerTier<T> {
    pub fn same(value: T) -> Self {
        PerTier {
            device: value,
            edge: value,
        }
    }

    /// The value for `tier`; `None` for the cloud, which never offloads.
    pub fn get(&self, tier: Tier) -> Option<T> {
        match tier {
            Tier::Device => Some(self.device),
            Tier::Edge => Some(self.edge),
            Tier::Cloud => None,
        }
    }

    fn each(&self) -> [(Tier, T); 2] {
        [(Tier::Device, self.device), (Tier::Edge, self.edge)]
    }
}

/// Which policy, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum PolicyKind {
    /// Recursive offloading with sliding-window quantile thresholds (the paper's method).
    RecServe {
        /// Fraction of the traffic reaching a tier that should climb further.
        #[serde(default = "default_beta")]
        beta: PerTier<f64>,
        /// Window size: the last `k` confidences per (tier, task type).
        #[serde(default = "default_k")]
        k: usize,
    },
    /// A cascade with fixed thresholds per tier: keep the answer when `confidence >= threshold`.
    CasServe { thresholds: PerTier<f64> },
    /// Offload with a fixed probability, drawn from `seed` and the request key.
    ColServe {
        probability: PerTier<f64>,
        #[serde(default)]
        seed: u64,
    },
    /// Everything on the device.
    EndServe,
    /// Everything on the edge.
    EdgeServe,
    /// Everything on the cloud.
    CloudServe,
}

pub const DEFAULT_BETA: f64 = 0.3;
pub const DEFAULT_K: usize = 10_000;

fn default_beta() -> PerTier<f64> {
    PerTier::same(DEFAULT_BETA)
}

fn default_k() -> usize {
    DEFAULT_K
}

fn default_true() -> bool {
    true
}

/// A policy as requested: the kind, and whether an offload to a tier that is down skips to the
/// next tier up (on by default; RecServe's paper does the same when a tier fails).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySpec {
    #[serde(flatten)]
    pub kind: PolicyKind,
    #[serde(default = "default_true")]
    pub skip_unavailable: bool,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            kind: PolicyKind::RecServe {
                beta: default_beta(),
                k: DEFAULT_K,
            },
            skip_unavailable: true,
        }
    }
}

impl From<PolicyKind> for PolicySpec {
    fn from(kind: PolicyKind) -> Self {
        PolicySpec {
            kind,
            skip_unavailable: true,
        }
    }
}

fn unit_interval(what: &'static str, value: f64) -> Result<f64> {
    if !value.is_finite() {
        return Err(OffloadError::NotFinite { what, value });
    }
    if !(0.0..=1.0).contains(&value) {
        return Err(OffloadError::OutOfRange {
            what,
            expected: "between 0 and 1",
            value,
        });
    }
    Ok(value)
}

impl PolicySpec {
    /// The window size this policy wants, if it uses windows.
    pub fn window_size(&self) -> Option<usize> {
        match self.kind {
            PolicyKind::RecServe { k, .. } => Some(k),
            _ => None,
        }
    }

    /// The short name used in logs, hop records and evaluation tables.
    pub fn name(&self) -> &'static str {
        match self.kind {
            PolicyKind::RecServe { .. } => "recserve",
            PolicyKind::CasServe { .. } => "casserve",
            PolicyKind::ColServe { .. } => "colserve",
            PolicyKind::EndServe => "endserve",
            PolicyKind::EdgeServe => "edgeserve",
            PolicyKind::CloudServe => "cloudserve",
        }
    }

    /// Checks every setting and builds the policy.
    pub fn build(&self) -> Result<Box<dyn Policy + Send + Sync>> {
        let policy: Box<dyn Policy + Send + Sync> = match &self.kind {
            PolicyKind::RecServe { beta, k } => {
                for (_, b) in beta.each() {
                    unit_interval("beta", b)?;
                }
                if *k == 0 {
                    return Err(OffloadError::OutOfRange {
                        what: "window size k",
                        expected: "at least 1",
                        value: 0.0,
                    });
                }
                Box::new(RecServe::new(*beta)?)
            }
            PolicyKind::CasServe { thresholds } => {
                for (_, t) in thresholds.each() {
                    unit_interval("threshold", t)?;
                }
                Box::new(CasServe::new(*thresholds))
            }
            PolicyKind::ColServe { probability, seed } => {
                for (_, p) in probability.each() {
                    unit_interval("offload probability", p)?;
                }
                Box::new(ColServe::new(*probability, *seed))
            }
            PolicyKind::EndServe => Box::new(SingleTier::new(Tier::Device)),
            PolicyKind::EdgeServe => Box::new(SingleTier::new(Tier::Edge)),
            PolicyKind::CloudServe => Box::new(SingleTier::new(Tier::Cloud)),
        };
        Ok(if self.skip_unavailable {
            Box::new(SkipUnavailable::new(policy))
        } else {
            policy
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::policy::{Action, Decision, Reason, decide};
    use crate::{Confidence, TaskType, TierSet, Windows};

    fn parse(json: &str) -> PolicySpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn recserve_defaults_follow_the_paper() {
        let spec = parse(r#"{"name": "recserve"}"#);
        assert_eq!(spec, PolicySpec::default());
        assert_eq!(spec.window_size(), Some(10_000));
        assert!(spec.skip_unavailable);
    }

    #[test]
    fn beta_is_one_number_or_one_per_tier() {
        let same = parse(r#"{"name": "recserve", "beta": 0.1, "k": 50}"#);
        assert_eq!(
            same.kind,
            PolicyKind::RecServe {
                beta: PerTier::same(0.1),
                k: 50
            }
        );
        let each = parse(r#"{"name": "recserve", "beta": {"device": 0.1, "edge": 0.5}}"#);
        let PolicyKind::RecServe { beta, .. } = each.kind else {
            panic!("not recserve: {each:?}")
        };
        assert_eq!((beta.device, beta.edge), (0.1, 0.5));
    }

    #[test]
    fn every_kind_round_trips() {
        for json in [
            r#"{"name":"recserve","beta":{"device":0.3,"edge":0.5},"k":100,"skip_unavailable":false}"#,
            r#"{"name":"casserve","thresholds":{"device":0.7,"edge":0.6},"skip_unavailable":true}"#,
            r#"{"name":"colserve","probability":{"device":0.3,"edge":0.3},"seed":9,"skip_unavailable":true}"#,
            r#"{"name":"endserve","skip_unavailable":true}"#,
            r#"{"name":"edgeserve","skip_unavailable":true}"#,
            r#"{"name":"cloudserve","skip_unavailable":true}"#,
        ] {
            let spec = parse(json);
            assert_eq!(serde_json::to_string(&spec).unwrap(), json);
            assert_eq!(spec.build().unwrap().name(), spec.name());
        }
    }

    #[test]
    fn bad_specs_are_rejected_with_a_reason() {
        let err = serde_json::from_str::<PolicySpec>(r#"{"name": "fastserve"}"#).unwrap_err();
        assert!(err.to_string().contains("fastserve"), "{err}");
        let err = serde_json::from_str::<PolicySpec>(r#"{"name": "casserve"}"#).unwrap_err();
        assert!(err.to_string().contains("thresholds"), "{err}");
        for json in [
            r#"{"name": "recserve", "beta": 1.5}"#,
            r#"{"name": "recserve", "k": 0}"#,
            r#"{"name": "casserve", "thresholds": -0.1}"#,
            r#"{"name": "colserve", "probability": 2}"#,
        ] {
            let err = parse(json).build().err().unwrap();
            assert!(
                matches!(err, OffloadError::OutOfRange { .. }),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn built_policies_skip_down_tiers_unless_told_not_to() {
        let mut windows = Windows::new(4).unwrap();
        let no_edge = TierSet::ALL.without(Tier::Edge);
        let mut run = |spec: &PolicySpec| {
            decide(
                &spec.build().unwrap(),
                &mut windows,
                Tier::Device,
                TaskType::Chat,
                Confidence::new(0.1).unwrap(),
                0,
                no_edge,
            )
            .unwrap()
        };
        let cas = PolicyKind::CasServe {
            thresholds: PerTier::same(0.5),
        };
        let skipping = PolicySpec::from(cas.clone());
        assert_eq!(run(&skipping).action, Action::Offload { to: Tier::Cloud });
        let strict = PolicySpec {
            kind: cas,
            skip_unavailable: false,
        };
        assert_eq!(run(&strict).action, Action::Offload { to: Tier::Edge });
    }

    #[test]
    fn decisions_serialise_for_hop_records() {
        let d = Decision::offload(
            Tier::Cloud,
            Reason::SkippedDown {
                wanted: Tier::Edge,
                because: Box::new(Reason::Threshold {
                    confidence: 0.2,
                    threshold: 0.4,
                    window_len: Some(3),
                }),
            },
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "action": "offload", "to": "cloud",
                "reason": {"kind": "skipped_down", "wanted": "edge", "because":
                    {"kind": "threshold", "confidence": 0.2, "threshold": 0.4, "window_len": 3}}
            })
        );
        assert_eq!(serde_json::from_value::<Decision>(json).unwrap(), d);
    }
}
