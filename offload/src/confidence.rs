//! Task-specific confidence (DESIGN.md §1.1). CONTRACT: API fixed, bodies being filled in.

use crate::error::Result;
use serde::{Deserialize, Serialize};

/// A confidence in `[0, 1]`; never NaN.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
pub struct Confidence(f64);

impl Confidence {
    pub fn new(value: f64) -> Result<Self> {
        todo!("{value}")
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

/// `max_i softmax(scores)_i`, computed stably; errors on empty or non-finite input.
pub fn max_softmax(scores: &[f64]) -> Result<Confidence> {
    todo!("{scores:?}")
}

/// Running `1/(1+PPL)` over token log-probs, usable per token while streaming.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerplexityAccumulator {
    nll_sum: f64,
    tokens: u64,
}

impl PerplexityAccumulator {
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds one token's natural-log probability (≤ 0, finite).
    pub fn push(&mut self, logprob: f64) -> Result<()> {
        todo!("{logprob}")
    }
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
    /// `exp(mean NLL)`, or `None` before the first token.
    pub fn perplexity(&self) -> Option<f64> {
        todo!()
    }
    /// `1/(1+PPL)`; an error before the first token.
    pub fn confidence(&self) -> Result<Confidence> {
        todo!()
    }
}
