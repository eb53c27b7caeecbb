//! The model runtime every tier shares: GGUF loading on candle, tokenizers built from GGUF
//! metadata, chat templates, KV-cached decoding with per-token log-probs, and option scoring.
//!
//! Not built yet (issue 3). Up the request path: `wasm-device`, `edge-host`, `cloud-host` and `eval`
//! call it; down: candle. It never decides where a request goes; that is `offload`'s job.
