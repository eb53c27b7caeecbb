//! Who answers (tiers) and what is being answered (task types).

use serde::{Deserialize, Serialize};
use std::fmt;

/// One level of the serving ladder, lowest first. Requests climb one tier at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The small model in the user's browser.
    Device,
    /// The mid-sized model in a WebAssembly function on an edge host.
    Edge,
    /// The largest model on a native host; it never offloads.
    Cloud,
}

impl Tier {
    /// All tiers, lowest first.
    pub const ALL: [Tier; 3] = [Tier::Device, Tier::Edge, Tier::Cloud];
    /// The tier that always answers.
    pub const TOP: Tier = Tier::Cloud;

    /// Position in the ladder: device 0, edge 1, cloud 2.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The tier one step up, or `None` at the top.
    pub fn next(self) -> Option<Tier> {
        Tier::ALL.get(self.index() + 1).copied()
    }

    /// Whether this is the top tier (which answers whatever its confidence).
    pub fn is_top(self) -> bool {
        self == Tier::TOP
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Device => "device",
            Tier::Edge => "edge",
            Tier::Cloud => "cloud",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of tiers, used to say which tiers are reachable right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<Tier>", into = "Vec<Tier>")]
pub struct TierSet(u8);

impl TierSet {
    pub const NONE: TierSet = TierSet(0);
    pub const ALL: TierSet = TierSet(0b111);

    pub fn contains(self, tier: Tier) -> bool {
        self.0 & (1 << tier.index()) != 0
    }

    pub fn with(self, tier: Tier) -> TierSet {
        TierSet(self.0 | (1 << tier.index()))
    }

    pub fn without(self, tier: Tier) -> TierSet {
        TierSet(self.0 & !(1 << tier.index()))
    }

    /// The lowest tier in the set strictly above `tier`.
    pub fn next_above(self, tier: Tier) -> Option<Tier> {
        Tier::ALL
            .into_iter()
            .find(|&t| t > tier && self.contains(t))
    }

    pub fn iter(self) -> impl Iterator<Item = Tier> {
        Tier::ALL.into_iter().filter(move |&t| self.contains(t))
    }
}

impl Default for TierSet {
    fn default() -> Self {
        TierSet::ALL
    }
}

impl From<Vec<Tier>> for TierSet {
    fn from(tiers: Vec<Tier>) -> Self {
        tiers.into_iter().fold(TierSet::NONE, TierSet::with)
    }
}

impl From<TierSet> for Vec<Tier> {
    fn from(set: TierSet) -> Self {
        set.iter().collect()
    }
}

/// The kind of request, which decides how confidence is measured (DESIGN.md §1.1) and keys the
/// sliding windows: each (tier, task type) pair has its own window.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Pick one label out of a fixed set (sentiment, topic). Confidence: max softmax.
    Classification,
    /// Pick one of the options given with the question. Confidence: max softmax.
    MultipleChoice,
    /// Translate the prompt. Confidence: `1 / (1 + PPL)` of the generated text.
    Translation,
    /// Free chat or any other generation. Confidence: `1 / (1 + PPL)`.
    #[default]
    Chat,
}

/// How a task type's confidence is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// `max_i softmax(z)_i` over the option scores.
    MaxSoftmax,
    /// `1 / (1 + exp(mean NLL))` over the generated tokens.
    Perplexity,
}

impl TaskType {
    pub const ALL: [TaskType; 4] = [
        TaskType::Classification,
        TaskType::MultipleChoice,
        TaskType::Translation,
        TaskType::Chat,
    ];

    pub fn measure(self) -> Measure {
        match self {
            TaskType::Classification | TaskType::MultipleChoice => Measure::MaxSoftmax,
            TaskType::Translation | TaskType::Chat => Measure::Perplexity,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Classification => "classification",
            TaskType::MultipleChoice => "multiple_choice",
            TaskType::Translation => "translation",
            TaskType::Chat => "chat",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_climb_one_step_at_a_time() {
        assert_eq!(Tier::Device.next(), Some(Tier::Edge));
        assert_eq!(Tier::Edge.next(), Some(Tier::Cloud));
        assert_eq!(Tier::Cloud.next(), None);
        assert!(Tier::Cloud.is_top() && !Tier::Edge.is_top());
    }

    #[test]
    fn tier_set_skips_missing_tiers() {
        let up = TierSet::ALL.without(Tier::Edge);
        assert_eq!(up.next_above(Tier::Device), Some(Tier::Cloud));
        assert_eq!(TierSet::ALL.next_above(Tier::Device), Some(Tier::Edge));
        assert_eq!(up.next_above(Tier::Cloud), None);
        assert_eq!(TierSet::NONE.next_above(Tier::Device), None);
    }

    #[test]
    fn tier_set_serialises_as_a_list() {
        let set = TierSet::NONE.with(Tier::Cloud).with(Tier::Device);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["device","cloud"]"#);
        assert_eq!(serde_json::from_str::<TierSet>(&json).unwrap(), set);
    }

    #[test]
    fn task_types_pick_their_measure() {
        assert_eq!(TaskType::MultipleChoice.measure(), Measure::MaxSoftmax);
        assert_eq!(TaskType::Chat.measure(), Measure::Perplexity);
        assert_eq!(
            serde_json::from_str::<TaskType>(r#""multiple_choice""#).unwrap(),
            TaskType::MultipleChoice
        );
    }
}
