//! Offloading policies: after a tier has answered and scored its answer, keep it or send the
//! request one tier up. Before generating, a policy may also route a request past a tier
//! (single-tier baselines, and later the difficulty router of DESIGN.md §1.3).
//!
//! Every policy is a pure function of its configuration and the [`DecideInput`]; the only state
//! that outlives a request is the tier's [`Windows`], which [`decide`] updates before asking the
//! policy, so a policy sees the window with the current confidence already in it.

mod baselines;
mod recserve;
mod skip;
mod spec;

pub use baselines::{CasServe, ColServe, SingleTier};
pub use recserve::RecServe;
pub use skip::SkipUnavailable;
pub use spec::{PerTier, PolicyKind, PolicySpec};

use crate::confidence::Confidence;
use crate::error::Result;
use crate::tier::{TaskType, Tier, TierSet};
use crate::window::{SlidingWindow, Windows};
use serde::{Deserialize, Serialize};

/// What a tier does with its own answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Keep the answer and return it to the caller.
    Answer,
    /// Send the request to `to` (normally the next tier up).
    Offload { to: Tier },
}

/// Why a decision was taken; recorded in every hop record so a user can audit each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The top tier always answers.
    TopTier,
    /// RecServe with fewer than two confidences in the window: no threshold yet, keep the answer.
    NoThresholdYet { window_len: usize },
    /// The confidence was compared against a threshold (RecServe's quantile or CasServe's fixed
    /// value); the action says which side it fell on (`confidence >= threshold` keeps it).
    Threshold {
        confidence: f64,
        threshold: f64,
        /// Values in the window the threshold came from (`None` for a fixed threshold).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_len: Option<usize>,
    },
    /// ColServe: offloaded when `draw < probability`.
    CoinFlip { probability: f64, draw: f64 },
    /// A single-tier baseline: everything is served by `serving`.
    SingleTier { serving: Tier },
    /// The policy wanted `wanted`, which is down; the request skips to the next tier that is up.
    SkippedDown {
        wanted: Tier,
        /// Why the policy wanted to offload in the first place.
        because: Box<Reason>,
    },
    /// The policy wanted to offload but no tier above is up, so this tier answers after all.
    NoTierAbove {
        /// Why the policy wanted to offload in the first place.
        because: Box<Reason>,
    },
}

/// A policy's verdict on one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(flatten)]
    pub action: Action,
    pub reason: Reason,
}

impl Decision {
    pub fn answer(reason: Reason) -> Self {
        Decision {
            action: Action::Answer,
            reason,
        }
    }

    pub fn offload(to: Tier, reason: Reason) -> Self {
        Decision {
            action: Action::Offload { to },
            reason,
        }
    }

    pub fn offloads(&self) -> bool {
        matches!(self.action, Action::Offload { .. })
    }
}

/// What to do before generating at a tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "route", rename_all = "snake_case")]
pub enum Route {
    /// Generate here, then [`decide`].
    Attempt,
    /// Do not generate here; pass the request to `to` straight away.
    Forward { to: Tier, reason: Reason },
}

/// What a policy may look at before generation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteInput {
    pub tier: Tier,
    pub task: TaskType,
    /// A stable number for this request (its position in an evaluation stream, or a hash of its
    /// id); seeded policies draw from it so decisions are reproducible.
    pub request_key: u64,
    /// Tiers that are up right now.
    pub reachable: TierSet,
}

/// What a policy may look at after generation.
#[derive(Debug, Clone, Copy)]
pub struct DecideInput<'a> {
    pub tier: Tier,
    pub task: TaskType,
    pub confidence: Confidence,
    /// This tier's window for `task`, already holding `confidence`.
    pub window: &'a SlidingWindow,
    pub request_key: u64,
    pub reachable: TierSet,
}

/// One offloading policy. Implementations never see the top tier in [`Policy::decide`]: the top
/// tier always answers, and [`decide`] says so without asking.
pub trait Policy {
    /// A short name for logs and hop records (`recserve`, `casserve`, …).
    fn name(&self) -> &'static str;

    /// Before generation: attempt here, or forward without generating. Default: attempt.
    fn route(&self, input: &RouteInput) -> Route {
        let _ = input;
        Route::Attempt
    }

    /// After generation at a tier below the top: keep the answer or offload it.
    fn decide(&self, input: &DecideInput<'_>) -> Decision;
}

/// The one entry point every tier calls after scoring its answer: records `confidence` in the
/// (tier, task) window, then asks `policy` (the top tier answers without asking).
pub fn decide(
    policy: &dyn Policy,
    windows: &mut Windows,
    tier: Tier,
    task: TaskType,
    confidence: Confidence,
    request_key: u64,
    reachable: TierSet,
) -> Result<Decision> {
    let window = windows.observe(tier, task, confidence.get())?;
    if tier.is_top() {
        return Ok(Decision::answer(Reason::TopTier));
    }
    Ok(policy.decide(&DecideInput {
        tier,
        task,
        confidence,
        window,
        request_key,
        reachable,
    }))
}
