//! The one inference interface with two implementations, chosen at build time (DESIGN.md §2.1):
//!
//! - [`wasi_nn`] (the default component build): the model runs in the host, behind wasi-nn's
//!   GGUF backend (`edge-host`); the component feeds tokens and reads logits back.
//! - [`local`] (the `in-wasm` build, and native unit tests): `llm` runs in this process, weights
//!   read from a file (mounted into the component).
//!
//! Everything above this module (prompts, sampling, confidence, decisions, forwarding) is the
//! same code for both.

#[cfg(any(not(target_arch = "wasm32"), feature = "in-wasm"))]
pub mod local;
#[cfg(all(target_arch = "wasm32", not(feature = "in-wasm")))]
pub mod wasi_nn;

use crate::error::EdgeError;
use llm::{ChatTemplate, Tokenizer};

/// Most tokens fed to a sequence in one call (a prompt is fed in pieces this long), so one
/// host call stays bounded work.
pub const FEED_CHUNK: usize = 512;

/// A loaded model: its vocabulary, chat format and limits, and fresh sequences.
pub trait Backend {
    type Sequence: Sequence;

    /// The model's id (what `/v1/models` lists and hop records name).
    fn model_id(&self) -> &str;
    fn tokenizer(&self) -> &Tokenizer;
    /// `None` when the model has no chat format this runtime renders.
    fn chat_template(&self) -> Option<&ChatTemplate>;
    /// Most tokens a sequence can hold.
    fn context_length(&self) -> usize;
    /// A new, empty sequence with its own KV cache.
    fn sequence(&self) -> Result<Self::Sequence, EdgeError>;
}

/// One sequence being decoded.
pub trait Sequence {
    /// Feeds at most [`FEED_CHUNK`] tokens after those already held and returns the next
    /// token's logits.
    fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EdgeError>;
    /// Scores each option as a continuation of what was fed (the sum of its tokens' log-probs,
    /// what `offload::max_softmax` takes). The sequence itself is unchanged.
    fn score_options(&mut self, options: &[Vec<u32>]) -> Result<Vec<f64>, EdgeError>;
    /// Tokens held.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
