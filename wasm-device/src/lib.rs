//! The device tier: the browser module (wasm-bindgen, web-sys) that runs the small model with
//! `llm`, scores its own answer with `offload`, and offloads to the edge with `fetch`.
//!
//! Not built yet (issue 6). Up the request path: the chat page in `www/`; down: `llm`, `offload`.
