//! What can go wrong at the edge, and how each failure is answered: a request the client got
//! wrong is a 4xx with the OpenAI error JSON; a failure of this tier is a 5xx. A failure of the
//! cloud is never an error here: the edge answers with its own output instead (see `tier`).

use offload::wire::{ErrorResponse, WireError};

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The request body is not a valid request (from `offload::wire`'s parser).
    #[error(transparent)]
    Wire(#[from] WireError),

    /// The prompt and the output asked for do not fit the model's context.
    #[error(
        "the prompt is {prompt} tokens and {requested} more were asked for, but the model's \
         context holds {context}; shorten the conversation or lower max_tokens"
    )]
    ContextLength {
        prompt: usize,
        requested: usize,
        context: usize,
    },

    /// The request already passed through this tier (a forwarding loop).
    #[error("the request has already been through the edge tier (offload.hops); refusing a loop")]
    Loop,

    /// The tier's configuration (a variable) is wrong.
    #[error("edge configuration: {0}")]
    Config(String),

    /// The model could not be loaded or run.
    #[error("model: {0}")]
    Model(String),

    /// The key-value store failed.
    #[error("key-value store: {0}")]
    Store(String),

    /// The shared crate refused a value (a confidence that is not a number, say).
    #[error(transparent)]
    Offload(#[from] offload::OffloadError),
}

impl From<llm::Error> for EdgeError {
    fn from(e: llm::Error) -> Self {
        EdgeError::Model(e.to_string())
    }
}

impl EdgeError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            EdgeError::Wire(e) => e.status(),
            EdgeError::ContextLength { .. } | EdgeError::Loop => 422,
            EdgeError::Config(_)
            | EdgeError::Model(_)
            | EdgeError::Store(_)
            | EdgeError::Offload(_) => 500,
        }
    }

    /// The error body.
    pub fn to_response(&self) -> ErrorResponse {
        match self {
            EdgeError::Wire(e) => e.to_response(),
            EdgeError::ContextLength { .. } => {
                ErrorResponse::invalid_request(self.to_string(), Some("messages"))
                    .with_code("context_length_exceeded")
            }
            EdgeError::Loop => {
                ErrorResponse::invalid_request(self.to_string(), Some("offload.hops"))
                    .with_code("loop_detected")
            }
            _ => ErrorResponse::server_error(self.to_string()),
        }
    }
}
