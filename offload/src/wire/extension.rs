//! The offload extension (DESIGN.md §2.2): the `offload` object a request and a response may
//! carry next to the OpenAI fields. Plain OpenAI clients leave it out and get plain answers; the
//! chat page, the tiers and the evaluation harness use it to say what kind of task a request is,
//! which policy decides, and to learn which tier answered and what every tier on the way did.
//!
//! Every field is optional on the wire except where a doc comment says otherwise, and unknown
//! fields are ignored, so new fields can be added without breaking older tiers.

use super::error::WireError;
use super::openai::null_as_default;
use crate::policy::{Decision, PolicySpec, Reason};
use crate::tier::{TaskType, Tier};
use serde::{Deserialize, Serialize};

/// Most answer options a classification or multiple-choice request may list.
pub const MAX_OPTIONS: usize = 26;
/// Most characters in one answer option.
pub const MAX_OPTION_CHARS: usize = 256;
/// Most hop records a request may carry (a request passes each of the three tiers once; the
/// slack leaves room for progressive inference's extra legs).
pub const MAX_HOPS: usize = 8;
/// Most characters in `request_id` and `conversation_id`.
pub const MAX_ID_CHARS: usize = 256;

/// The `offload` object of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OffloadRequest {
    /// What kind of request this is; decides how confidence is measured and which sliding
    /// window it is compared against (DESIGN.md §1.1). Default `chat`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub task: TaskType,

    /// The label words (classification) or answer options (multiple choice) the model chooses
    /// between; confidence is the maximum softmax over their scores, and the answer is the
    /// option itself. Required for `classification` and `multiple_choice` (1 to
    /// [`MAX_OPTIONS`] distinct, non-empty strings), not allowed for other tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,

    /// The policy that decides at every tier (its `name` tag picks the kind, e.g.
    /// `{"name": "recserve", "beta": 0.3, "k": 10000}`). Absent: each tier's configured policy.
    /// Settings out of range (β outside `[0, 1]`, `k = 0`) are refused; a tier may also refuse
    /// a policy it does not allow clients to choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,

    /// Records of the tiers below that already handled this request, lowest first. A client
    /// sends none; a tier that offloads appends its own record (without `bytes`, which it can
    /// only count once the answer is back) and forwards the request.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hops: Vec<HopRecord>,

    /// An id for tracing the request across tiers; tiers pass it on and echo it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,

    /// Reserved for the cost router (DESIGN.md §1.3): the conversation this request continues,
    /// so that a tier where its KV cache is warm can be preferred. No tier acts on it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,

    /// Reserved for progressive inference (DESIGN.md §1.2): which leg of a sketch-and-expand
    /// answer this request is. No tier acts on it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressive: Option<ProgressiveRequest>,
}

impl OffloadRequest {
    /// An extension for `task` with nothing else set.
    pub fn new(task: TaskType) -> Self {
        OffloadRequest {
            task,
            ..Default::default()
        }
    }

    /// A classification or multiple-choice extension with its options.
    pub fn with_options(task: TaskType, options: Vec<String>) -> Self {
        OffloadRequest {
            task,
            options: Some(options),
            ..Default::default()
        }
    }

    /// Whether `tier` already handled this request (a forwarding loop, if it is the caller).
    pub fn has_visited(&self, tier: Tier) -> bool {
        self.hops.iter().any(|hop| hop.tier == tier)
    }

    /// The extension to forward to the tier above: this one with `record` appended.
    pub fn forwarded(&self, record: HopRecord) -> Self {
        let mut next = self.clone();
        next.hops.push(record);
        next
    }

    /// Checks the rules above (options, a policy that builds, at most [`MAX_HOPS`] hops, ids of
    /// at most [`MAX_ID_CHARS`] characters); `param`s are reported as `offload.…`.
    pub fn validate(&self) -> Result<(), WireError> {
        let needs_options = matches!(
            self.task,
            TaskType::Classification | TaskType::MultipleChoice
        );
        match (&self.options, needs_options) {
            (None, true) => {
                return Err(WireError::invalid(
                    "offload.options",
                    format!(
                        "task `{}` needs `options`: the label words or answer options to choose \
                         between",
                        self.task
                    ),
                ));
            }
            (Some(_), false) => {
                return Err(WireError::invalid(
                    "offload.options",
                    format!(
                        "`options` are only used by the `classification` and `multiple_choice` \
                         tasks, not by `{}`",
                        self.task
                    ),
                ));
            }
            (Some(options), true) => validate_options(options)?,
            (None, false) => {}
        }
        if let Some(policy) = &self.policy {
            policy
                .build()
                .map_err(|err| WireError::invalid("offload.policy", err.to_string()))?;
        }
        if self.hops.len() > MAX_HOPS {
            return Err(WireError::LimitExceeded {
                param: "offload.hops".to_owned(),
                value: self.hops.len() as u64,
                limit: MAX_HOPS as u64,
                unit: "hop records",
            });
        }
        for (name, id) in [
            ("offload.request_id", &self.request_id),
            ("offload.conversation_id", &self.conversation_id),
        ] {
            if let Some(id) = id {
                let chars = id.chars().count();
                if chars > MAX_ID_CHARS {
                    return Err(WireError::LimitExceeded {
                        param: name.to_owned(),
                        value: chars as u64,
                        limit: MAX_ID_CHARS as u64,
                        unit: "characters",
                    });
                }
            }
        }
        Ok(())
    }
}

fn validate_options(options: &[String]) -> Result<(), WireError> {
    if options.is_empty() {
        return Err(WireError::invalid(
            "offload.options",
            "must list at least one option",
        ));
    }
    if options.len() > MAX_OPTIONS {
        return Err(WireError::LimitExceeded {
            param: "offload.options".to_owned(),
            value: options.len() as u64,
            limit: MAX_OPTIONS as u64,
            unit: "options",
        });
    }
    for (i, option) in options.iter().enumerate() {
        let param = || format!("offload.options[{i}]");
        if option.trim().is_empty() {
            return Err(WireError::invalid(param(), "an option must not be empty"));
        }
        let chars = option.chars().count();
        if chars > MAX_OPTION_CHARS {
            return Err(WireError::LimitExceeded {
                param: param(),
                value: chars as u64,
                limit: MAX_OPTION_CHARS as u64,
                unit: "characters",
            });
        }
        if options[..i].contains(option) {
            return Err(WireError::invalid(
                param(),
                format!("option {option:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// The `offload` object of a response (or of the final chunk of a stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadResponse {
    /// The tier whose answer this is. Required.
    pub answered_by: Tier,

    /// One record per tier that handled the request, lowest first; the last record with outcome
    /// `answered` or `fallback` belongs to `answered_by`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hops: Vec<HopRecord>,

    /// The request's `request_id`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl OffloadResponse {
    pub fn new(answered_by: Tier, hops: Vec<HopRecord>) -> Self {
        OffloadResponse {
            answered_by,
            hops,
            request_id: None,
        }
    }

    /// The record of `tier`, if it handled the request.
    pub fn hop(&self, tier: Tier) -> Option<&HopRecord> {
        self.hops.iter().find(|hop| hop.tier == tier)
    }

    /// The record of `tier`, to fill in (a tier completes its own record on the way back).
    pub fn hop_mut(&mut self, tier: Tier) -> Option<&mut HopRecord> {
        self.hops.iter_mut().find(|hop| hop.tier == tier)
    }

    /// Replaces `record.tier`'s record with `record`, or appends it in tier order.
    pub fn upsert(&mut self, record: HopRecord) {
        if let Some(slot) = self.hop_mut(record.tier) {
            *slot = record;
        } else {
            let at = self
                .hops
                .iter()
                .position(|hop| hop.tier > record.tier)
                .unwrap_or(self.hops.len());
            self.hops.insert(at, record);
        }
    }

    /// The record of the tier that answered.
    pub fn answer_hop(&self) -> Option<&HopRecord> {
        self.hops
            .iter()
            .rev()
            .find(|hop| hop.tier == self.answered_by)
    }

    /// Bytes on the link from `tier` to the tier above it (as `tier` counted them).
    pub fn link_bytes(&self, tier: Tier) -> Option<LinkBytes> {
        self.hop(tier).and_then(|hop| hop.bytes)
    }

    /// Bytes on all links together.
    pub fn total_bytes(&self) -> LinkBytes {
        self.hops
            .iter()
            .filter_map(|hop| hop.bytes)
            .fold(LinkBytes::default(), |sum, b| LinkBytes {
                sent: sum.sent.saturating_add(b.sent),
                received: sum.received.saturating_add(b.received),
            })
    }
}

/// What happened to the request at one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HopOutcome {
    /// This tier generated the answer that was returned.
    Answered,
    /// This tier generated an answer, judged it not confident enough and sent the request up;
    /// the returned answer came from above.
    Offloaded,
    /// This tier sent the request up without generating (a routing decision: a single-tier
    /// policy, or the difficulty router).
    Forwarded,
    /// This tier offloaded, the tiers above failed (`error` says how), and this tier's own
    /// answer was returned after all.
    Fallback,
    /// This tier could not produce an answer (`error` says why); the request went on up, or the
    /// failure was reported down.
    Failed,
}

impl HopOutcome {
    /// Whether the returned answer is this tier's.
    pub fn answered_here(self) -> bool {
        matches!(self, HopOutcome::Answered | HopOutcome::Fallback)
    }
}

/// Body bytes on the link from a tier to the tier above, counted by the sender (DESIGN.md §2.2):
/// the bytes of the request body it sent and of the response body it received (the whole SSE
/// stream when streamed). Headers are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkBytes {
    #[serde(default)]
    pub sent: u64,
    #[serde(default)]
    pub received: u64,
}

impl LinkBytes {
    pub fn total(self) -> u64 {
        self.sent.saturating_add(self.received)
    }
}

/// Tokens a tier processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Prompt tokens (after the chat template).
    #[serde(default)]
    pub prompt: u32,
    /// Generated tokens (for classification: the tokens scored per option are not counted).
    #[serde(default)]
    pub completion: u32,
}

/// Where a tier's time went, in milliseconds; each field is present when the tier measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for the model (queued behind other requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ms: Option<f64>,
    /// Processing the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill_ms: Option<f64>,
    /// Generating (or scoring the options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_ms: Option<f64>,
    /// From receiving the request to the first generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<f64>,
    /// Waiting for the tier above (the whole round trip), when this tier sent the request up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// From receiving the request to sending the last byte of the response, `upstream_ms`
    /// included; `total_ms − upstream_ms` is this tier's own time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
}

/// One tier's part in answering a request.
///
/// For the chat page: `tier`, `model` and `outcome` say who did what, `confidence` against
/// `threshold` says why, `timings` and `bytes` what it cost. For the evaluation harness: `bytes`
/// per link (summed over requests gives the traffic of DESIGN.md §1.1), `tokens`, and the full
/// policy `decision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HopRecord {
    /// The tier this record is about. Required.
    pub tier: Tier,

    /// The model this tier used (its id as `/v1/models` lists it).
    #[serde(default)]
    pub model: String,

    /// What happened here. Required.
    pub outcome: HopOutcome,

    /// The confidence of this tier's answer in `[0, 1]` (absent when it did not generate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,

    /// The threshold the confidence was compared with: the answer is kept when
    /// `confidence >= threshold`. Absent when there was none (the top tier, a window with fewer
    /// than two values, a policy without thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,

    /// The policy's short name (`recserve`, `casserve`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,

    /// The policy's verdict with its reason, as the policy gave it, e.g.
    /// `{"action": "offload", "to": "edge", "reason": {"kind": "threshold", …}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,

    /// What went wrong: this tier's failure (`failed`), or the failure of the tiers above that
    /// made this tier fall back (`fallback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,

    /// Bytes on the link to the tier above, counted by this tier; absent when it sent nothing
    /// up, and in the copy of its record that travels up with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<LinkBytes>,

    /// Tokens processed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenCounts>,

    /// Time spent here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,

    /// Reserved for the cost router (DESIGN.md §1.3): its estimate and score at this tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<RouterRecord>,

    /// Reserved for progressive inference (DESIGN.md §1.2): this tier's part in a
    /// sketch-and-expand answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progressive: Option<ProgressiveRecord>,
}

impl HopRecord {
    /// A record with only the required fields.
    pub fn new(tier: Tier, model: impl Into<String>, outcome: HopOutcome) -> Self {
        HopRecord {
            tier,
            model: model.into(),
            outcome,
            confidence: None,
            threshold: None,
            policy: None,
            decision: None,
            error: None,
            bytes: None,
            tokens: None,
            timings: None,
            router: None,
            progressive: None,
        }
    }

    /// Sets `decision`, and `threshold` from its reason when the reason compared a threshold.
    pub fn with_decision(mut self, decision: Decision) -> Self {
        if let Some(threshold) = reason_threshold(&decision.reason) {
            self.threshold = Some(threshold);
        }
        self.decision = Some(decision);
        self
    }

    /// Whether the confidence reached the threshold (`None` without both).
    pub fn confident(&self) -> Option<bool> {
        Some(self.confidence? >= self.threshold?)
    }
}

fn reason_threshold(reason: &Reason) -> Option<f64> {
    match reason {
        Reason::Threshold { threshold, .. } => Some(*threshold),
        Reason::SkippedDown { because, .. } | Reason::NoTierAbove { because } => {
            reason_threshold(because)
        }
        _ => None,
    }
}

/// Reserved for the cost router (DESIGN.md §1.3). All fields optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RouterRecord {
    /// The predicted probability `p` that this tier's answer is not good enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<f64>,
    /// The routing score `S = p − α·(T_above − T_here)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The score threshold `θ`: the request goes up when `S > θ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Predicted end-to-end latency of answering here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_here_ms: Option<f64>,
    /// Predicted end-to-end latency of answering above, transfer included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_above_ms: Option<f64>,
    /// Predicted cost of recomputing the conversation's KV cache on the other tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_cost_ms: Option<f64>,
}

/// The legs of a progressive (sketch-and-expand) answer, DESIGN.md §1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressiveStage {
    /// Answer in one go (the scheduler chose not to go progressive).
    Direct,
    /// Write the short numbered sketch of the answer (the cloud's leg).
    Sketch,
    /// Expand one point of a sketch (an edge's leg).
    Expand,
}

/// Reserved for progressive inference: what this request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressiveRequest {
    /// Which leg this request is. Required when the object is present.
    pub stage: ProgressiveStage,
    /// For `expand`: the 1-based number of the point to expand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<u32>,
    /// For `sketch`: the most points the sketch may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_points: Option<u32>,
    /// For `expand`: how many candidate expansions to produce for the ensemble step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<u32>,
}

/// Reserved for progressive inference: what this tier did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressiveRecord {
    pub stage: ProgressiveStage,
    /// Points in the sketch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<u32>,
    /// Points this tier expanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expanded: Option<u32>,
    /// Candidate expansions produced per point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<u32>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classification_needs_options() {
        let err = OffloadRequest::new(TaskType::Classification)
            .validate()
            .unwrap_err();
        assert_eq!(err.param(), Some("offload.options"));
        assert_eq!(err.status(), 422);
        let ok = OffloadRequest::with_options(
            TaskType::Classification,
            vec!["positive".into(), "negative".into()],
        );
        ok.validate().unwrap();
    }

    #[test]
    fn options_are_checked() {
        let many = (0..27).map(|i| format!("o{i}")).collect();
        let cases: [(Vec<String>, &str); 4] = [
            (vec![], "offload.options"),
            (many, "offload.options"),
            (vec!["a".into(), " ".into()], "offload.options[1]"),
            (
                vec!["a".into(), "b".into(), "a".into()],
                "offload.options[2]",
            ),
        ];
        for (options, param) in cases {
            let err = OffloadRequest::with_options(TaskType::MultipleChoice, options)
                .validate()
                .unwrap_err();
            assert_eq!(err.param(), Some(param), "{err}");
        }
        let chat = OffloadRequest::with_options(TaskType::Chat, vec!["a".into()]);
        assert!(chat.validate().is_err());
    }

    #[test]
    fn threshold_comes_from_the_decision() {
        let decision = Decision::offload(
            Tier::Edge,
            Reason::Threshold {
                confidence: 0.2,
                threshold: 0.5,
                window_len: Some(10),
            },
        );
        let mut hop = HopRecord::new(Tier::Device, "m", HopOutcome::Offloaded)
            .with_decision(decision.clone());
        hop.confidence = Some(0.2);
        assert_eq!(hop.threshold, Some(0.5));
        assert_eq!(hop.confident(), Some(false));
        let skipped = Decision::offload(
            Tier::Cloud,
            Reason::SkippedDown {
                wanted: Tier::Edge,
                because: Box::new(decision.reason),
            },
        );
        let hop = HopRecord::new(Tier::Device, "m", HopOutcome::Offloaded).with_decision(skipped);
        assert_eq!(hop.threshold, Some(0.5));
    }

    #[test]
    fn upsert_keeps_tier_order() {
        let mut response = OffloadResponse::new(Tier::Cloud, vec![]);
        response.upsert(HopRecord::new(Tier::Cloud, "c", HopOutcome::Answered));
        response.upsert(HopRecord::new(Tier::Device, "d", HopOutcome::Offloaded));
        let mut device = HopRecord::new(Tier::Device, "d", HopOutcome::Offloaded);
        device.bytes = Some(LinkBytes {
            sent: 10,
            received: 20,
        });
        response.upsert(device);
        let tiers: Vec<Tier> = response.hops.iter().map(|h| h.tier).collect();
        assert_eq!(tiers, [Tier::Device, Tier::Cloud]);
        assert_eq!(response.total_bytes().total(), 30);
        assert_eq!(response.answer_hop().unwrap().model, "c");
    }
}
