//! What produces the answers: the local model behind a continuous-batching [`Scheduler`], or an
//! OpenAI-compatible engine this host fronts ([`Upstream`]). Both report a request's progress as
//! the same stream of [`Event`]s, so the API layer formats answers one way for both.

pub mod prefix;
pub mod scheduler;
pub mod upstream;

use crate::error::ApiError;
use llm::CancelToken;
use offload::wire::{FinishReason, LinkBytes, TokenLogprob};
use std::time::Duration;
use tokio::sync::mpsc;

pub use scheduler::{Job, Scheduler, SchedulerConfig, Work};
pub use upstream::Upstream;

/// A piece of the answer: text, and the log-probs of the tokens it covers (every generated
/// token has one, the end-of-generation token included, so confidence covers the whole answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
}

/// Progress of one request.
#[derive(Debug)]
pub enum Event {
    /// The request left the queue after waiting this long.
    Admitted {
        queued: Duration,
    },
    /// The prompt was processed.
    Prefilled {
        prompt_tokens: usize,
        took: Duration,
    },
    Piece(Piece),
    /// Scores of the options of a classification / multiple-choice request, in their order
    /// (sums of token log-probs, what `offload::max_softmax` takes).
    Scores(Vec<f64>),
    /// The end of a successful request.
    Finished {
        reason: FinishReason,
        completion_tokens: usize,
        /// Bytes on the link to an upstream engine, when there is one.
        link: Option<LinkBytes>,
    },
    /// The request failed; nothing more follows.
    Failed(ApiError),
}

/// A request being answered: its events, in order. Dropping it (a client that went away)
/// cancels the work at once.
#[derive(Debug)]
pub struct Answering {
    pub events: mpsc::UnboundedReceiver<Event>,
    cancel: CancelToken,
}

impl Answering {
    pub fn new(events: mpsc::UnboundedReceiver<Event>, cancel: CancelToken) -> Self {
        Answering { events, cancel }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
