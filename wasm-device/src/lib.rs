//! The device tier: the browser module that answers with the small model on the user's machine
//! and sends the question one tier up when its own answer is not trustworthy.
//!
//! Up the request path is the chat page (`www/`), which runs this module in a Web Worker
//! through the JavaScript API of [`api`] (`load`, `ask`, `cancel`, `settings`, typed by the
//! `.d.ts` wasm-bindgen generates). Down the path: `llm` runs the model on WebGPU (its WGSL
//! kernels, `llm::gpu`) or on the CPU with its simd128 kernels; `offload` scores the answer (`1/(1+PPL)`), keeps the sliding windows and
//! takes the policy's decision; the edge (`edge-fn`) is reached with `fetch`, speaking
//! `offload`'s wire protocol and streaming its answer back as server-sent events.
//!
//! - [`settings`]: what the page can set (edge URL, policy and β per tier, limits).
//! - [`engine`]: the model with its chat template and the conversation's KV cache, stepped.
//! - [`ladder`]: the device's part of the protocol without I/O: questions, events, the
//!   request sent up, reading the edge's stream, hop records for every outcome.
//! - [`stats`]: the live offload rates and thresholds per tier.
//! - `api`, `browser`, `store`, `download`, `threads` (wasm32 only): the wasm-bindgen API,
//!   fetch and timers, IndexedDB persistence of the windows, the model download with its
//!   cache, and the kernel threads of the threaded build (Web Workers on a shared memory).

pub mod engine;
pub mod error;
pub mod ladder;
pub mod settings;
pub mod stats;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(target_arch = "wasm32")]
mod download;
#[cfg(target_arch = "wasm32")]
mod store;
#[cfg(target_arch = "wasm32")]
mod threads;

pub use error::{DeviceError, Result};
