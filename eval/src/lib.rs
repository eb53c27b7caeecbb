//! The evaluation harness: datasets to traces to policy replays to tables and plots, reproducing
//! the RecServe comparison with the same `offload` policies the tiers run.
//!
//! Not built yet (issue 7). It sits beside the request path: it drives `llm` for traces and
//! replays `offload` policies over them.
