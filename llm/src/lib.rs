//! The model runtime every tier shares: GGUF loading, tokenizers built from GGUF metadata,
//! chat templates, the project's own forward passes and kernels, KV-cached decoding with
//! per-token log-probs, and option scoring.
//!
//! Up the request path, `wasm-device`, `edge-host`, `cloud-host` and `eval` call it; down, it
//! uses candle to parse GGUF headers (and to dequantise the rare types without a kernel). It
//! never decides where a request goes: that is `offload`'s job. The same code compiles for
//! native hosts, `wasm32-unknown-unknown` (browser) and `wasm32-wasip2` (edge), and computes
//! the same logits, bit for bit, on all of them and with every instruction set.
//!
//! - [`gguf`] reads and checks GGUF headers.
//! - [`tokenizer`] turns text into exactly llama.cpp's token ids (byte-level BPE and
//!   SentencePiece); [`chat`] renders conversations in the model's chat format.
//! - [`kernels`]: quantised matrix products on GGUF's block layouts (scalar reference, AVX2,
//!   simd128), the element-wise maths, and the thread pool.
//! - [`models`] loads a GGUF (llama, qwen2, gemma3) into one decoder and runs batches of
//!   sequences with their own KV caches.
//! - [`generate`] decodes with sampling, stop strings, cancellation and per-token log-probs,
//!   and scores options for classification.
//! - `gpu` (feature `gpu`): the same forward pass in WGSL kernels on WebGPU (browser) or
//!   Vulkan (native), for every family and weight type the CPU path runs.
//! - [`wire`] converts between these and `offload`'s OpenAI wire types (messages in, token
//!   log-probs out), for every tier that serves the API.

pub mod chat;
pub mod error;
pub mod generate;
pub mod gguf;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod kernels;
pub mod models;
pub mod tokenizer;
pub mod wire;

pub use chat::{ChatTemplate, Message, Role};
pub use error::{Error, Result};
pub use generate::{CancelToken, Decoder, FinishReason, Generation, SamplingParams, Token};
pub use gguf::{Architecture, Gguf};
pub use models::{Model, Session};
pub use tokenizer::{DecodeOptions, EncodeOptions, Segment, SpecialTokens, TokenId, Tokenizer};
