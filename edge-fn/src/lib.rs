//! The edge tier as a WebAssembly HTTP component (Spin, spin-sdk 7, `wasm32-wasip2`): answers
//! OpenAI chat completions with the mid-sized model, keeps the answer when `offload`'s policy
//! (RecServe by default) finds it confident, and otherwise forwards the request to the cloud
//! tier with its hop record appended.
//!
//! Up the request path: `wasm-device` in the browser (or any OpenAI client); down: `cloud-host`
//! over outbound HTTP. The model runs through `wasi:nn` (in `edge-host`'s GGUF backend) or, in
//! the `in-wasm` build, in the component itself with `llm`; `offload` computes confidence,
//! thresholds and decisions and owns the wire types.
//!
//! - [`tier`]: the request's path through this tier (route, attempt, decide, forward, fall back).
//! - [`engine`]: prompt, generation or option scoring, confidence, over a [`backend::Backend`].
//! - [`windows`]: the sliding windows in the key-value store; [`upstream`]: the link up;
//!   [`settings`]: the component's variables.
//! - `component` (wasm32 only): the spin-sdk entry point and the platform glue.

pub mod backend;
pub mod engine;
pub mod error;
pub mod settings;
pub mod tier;
pub mod upstream;
pub mod windows;

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod component;
