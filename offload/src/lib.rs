//! The one place where the project decides whether an answer is good enough to keep.
//!
//! Every tier (the browser's `wasm-device`, the edge component `edge-fn`, the `cloud-host`) and the
//! `eval` harness link this crate, compiled to `wasm32-unknown-unknown`, `wasm32-wasip2` or native.
//! It holds the confidence measures, the sliding-window quantile thresholds of RecServe, the
//! offloading policies behind one [`Policy`] trait, and the wire types of the OpenAI-compatible
//! protocol with the offload extension. It does no I/O and starts no threads: callers own the
//! model (`llm`, one level down) and the transport (the tier crates, one level up).

pub mod confidence;
pub mod error;
pub mod policy;
pub mod tier;
pub mod window;
pub mod wire;

pub use confidence::{Confidence, PerplexityAccumulator, max_softmax};
pub use error::OffloadError;
pub use policy::{Action, Decision, Policy, PolicySpec, Reason, Route};
pub use tier::{TaskType, Tier, TierSet};
pub use window::{SlidingWindow, Windows};
