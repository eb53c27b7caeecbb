//! The wire protocol every tier speaks (DESIGN.md §2.2): the OpenAI API, plus one extension
//! object for offloading. This module is the protocol's reference.
//!
//! # Endpoints
//!
//! Every tier (the device module in the browser, the edge function, the cloud host) answers the
//! same three OpenAI endpoints, so any OpenAI client can call any tier, and the cloud tier can be
//! any OpenAI-compatible engine:
//!
//! | endpoint                    | request                   | response                                                        |
//! |-----------------------------|---------------------------|-----------------------------------------------------------------|
//! | `POST /v1/chat/completions` | [`ChatCompletionRequest`] | [`ChatCompletionResponse`], or with `stream: true` [`ChatCompletionChunk`]s as server-sent events ending in `data: [DONE]` ([`sse`]) |
//! | `POST /v1/completions`      | [`CompletionRequest`]     | [`CompletionResponse`] (streamed the same way)                  |
//! | `GET /v1/models`            | –                         | [`ModelList`]                                                   |
//!
//! Errors are an [`ErrorResponse`], `{"error": {"message", "type", "param", "code"}}`, with an
//! HTTP 4xx/5xx status; mid-stream, one event whose data is that body, then the stream ends.
//!
//! # Requests
//!
//! The served subset of chat completions: `model` (optional: each tier has a default),
//! `messages` (required; `role` is `system`, `user`, `assistant` or `tool`, `developer` is read
//! as `system`; `content` is a string or a list of `{"type": "text", "text"}` parts), `max_tokens`
//! or `max_completion_tokens`, `temperature`, `top_p`, `seed`, `stop`, `stream`,
//! `stream_options.include_usage`, `logprobs`, `top_logprobs`, `n` (1 only), `user`, and
//! `offload`. Unknown fields are ignored, `null` means absent. A tier parses a body with
//! [`ChatCompletionRequest::parse`], which checks it against [`Limits`] and answers every fault
//! with a [`WireError`]: 400 for a body that is not a well-formed request, 413 for one over the
//! size limit, 422 for values out of range or unsupported, each naming the field at fault
//! (`messages[1].role`) and, where it applies, its line and column.
//!
//! Confidence needs log-probs. A tier that calls an engine above it asks for `logprobs: true`
//! (chat) or `logprobs: N` (legacy) and computes the confidence itself from
//! `choices[i].logprobs.content[j].{token, logprob, top_logprobs}`.
//!
//! # The offload extension
//!
//! Requests and responses may carry an `offload` object ([`extension`]); plain OpenAI clients
//! leave it out and get plain OpenAI answers.
//!
//! **In a request** ([`OffloadRequest`]) it says what kind of task this is (`task`: `chat`
//! by default, `translation`, or `classification` / `multiple_choice` with the `options` to
//! choose between, whose scores give the max-softmax confidence), which `policy` decides (for
//! example RecServe with its β and window size k), and an optional `request_id`. When a tier
//! offloads, it forwards the request to the tier above with its own [`HopRecord`] appended to
//! `hops`, so the tier above knows who tried before it. Here the device forwards a
//! classification request to the edge:
//!
//! ```json
#![doc = include_str!("../../tests/fixtures/wire/offload_request.json")]
//! ```
//!
//! **In a response** ([`OffloadResponse`]) it says which tier answered (`answered_by`) and
//! carries one [`HopRecord`] per tier that handled the request, lowest first. The tier that
//! answers appends its record to the `hops` it received; on the way back down every tier
//! replaces its own record with the completed one: the `bytes` it sent up and received back
//! (body bytes, counted by the sender: this is how the traffic on each link is measured), the
//! time it waited on the tier above (`timings.upstream_ms`) and its total time. A hop's
//! `outcome` is one of `answered`, `offloaded` (generated, not confident, sent up), `forwarded`
//! (sent up without generating), `fallback` (the tiers above failed, so its own answer was
//! returned; `error` says what failed) or `failed`. Its `confidence` is compared with
//! `threshold` (kept when `confidence >= threshold`), and `decision` is the policy's verdict
//! with its reason. The answer to the request above, as the device returns it to the page:
//!
//! ```json
#![doc = include_str!("../../tests/fixtures/wire/offload_response.json")]
//! ```
//!
//! In a stream, the `offload` object rides on the final chunk (the usage chunk when
//! `stream_options.include_usage` is set, otherwise the chunk with the `finish_reason`); a
//! reader keeps the last one it sees.
//!
//! Fields reserved for later work are optional and documented where they live: `progressive`
//! (sketch-and-expand legs of progressive inference, DESIGN.md §1.2) and `conversation_id` /
//! `router` (the cost router of DESIGN.md §1.3). Tiers that do not act on them ignore them.
//!
//! # Implementation notes
//!
//! Pure data and parsing: no I/O, no clocks (callers fill in `created` and timings), and only
//! `serde`, `serde_json` and `thiserror`, so the module builds for `wasm32-unknown-unknown`,
//! `wasm32-wasip2` and native alike.

pub mod error;
pub mod extension;
mod locate;
pub mod openai;
pub mod sse;
mod validate;

pub use error::{ErrorBody, ErrorResponse, WireError, error_type};
pub use extension::{
    HopOutcome, HopRecord, LinkBytes, MAX_HOPS, MAX_OPTIONS, OffloadRequest, OffloadResponse,
    ProgressiveRecord, ProgressiveRequest, ProgressiveStage, RouterRecord, Timings, TokenCounts,
};
pub use openai::{
    ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    ChoiceLogprobs, ChunkChoice, CompletionChoice, CompletionLogprobs, CompletionRequest,
    CompletionResponse, ContentPart, Delta, FinishReason, MessageContent, ModelInfo, ModelList,
    Prompt, Role, Stop, StreamOptions, TokenLogprob, TopLogprob, TopLogprobMap, Usage,
};
pub use sse::{DONE, SseDecoder, SseError, SseEvent, StreamItem, encode_event};
pub use validate::{Limits, MAX_STOP, MAX_TOP_LOGPROBS};
