//! The edge tier as a WebAssembly HTTP component (spin-sdk, wasm32-wasip2): runs the mid-sized
//! model through wasi-nn, keeps its answer when `offload` says so, otherwise forwards to the cloud.
//!
//! Not built yet (issue 5). Up the request path: `wasm-device` (or any OpenAI client); down:
//! `cloud-host` over outbound HTTP, and `edge-host`'s wasi-nn backend for inference.
