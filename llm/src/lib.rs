//! The model runtime every tier shares: GGUF loading on candle, tokenizers built from GGUF
//! metadata, chat templates, KV-cached decoding with per-token log-probs, and option scoring.
//!
//! Up the request path, `wasm-device`, `edge-host`, `cloud-host` and `eval` call it; down, it
//! calls candle. It never decides where a request goes: that is `offload`'s job. The same code
//! compiles for native hosts, `wasm32-unknown-unknown` (browser) and `wasm32-wasip2` (edge).
//!
//! Built so far (issue 3): [`gguf`] reads and checks GGUF headers; [`tokenizer`] turns text
//! into exactly llama.cpp's token ids for byte-level BPE and SentencePiece vocabularies;
//! [`chat`] renders conversations in the model's chat format; [`models`] loads a GGUF and runs
//! its forward pass (candle-transformers' quantised llama and gemma3 for now); [`generate`]
//! decodes with sampling, stop strings, cancellation and per-token log-probs, and scores
//! options for classification. The project's own kernels (`kernels`) come next.

pub mod chat;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod models;
pub mod tokenizer;

pub use chat::{ChatTemplate, Message, Role};
pub use error::{Error, Result};
pub use generate::{CancelToken, Decoder, FinishReason, Generation, SamplingParams, Token};
pub use gguf::{Architecture, Gguf};
pub use models::{Model, Session};
pub use tokenizer::{DecodeOptions, EncodeOptions, Segment, SpecialTokens, TokenId, Tokenizer};
