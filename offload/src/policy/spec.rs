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
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
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
