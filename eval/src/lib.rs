//! The evaluation harness: datasets → traces → policy replays → tables and plots, reproducing
//! the RecServe comparison (DESIGN.md §1.1, issue 7) with the same `offload` policies the tiers
//! run.
//!
//! - [`datasets`]: JSONL files in the shared layouts, detected from their fields;
//! - [`metrics`]: sacreBLEU-exact BLEU and chrF, accuracy, GSM8K exact match;
//! - [`traces`]: what each tier's model did on each item (cached, resumable JSONL), the
//!   [`traces::TraceSource`] trait an engine fills, and a clearly labelled synthetic source;
//! - [`replay`]: the items streamed through the three tiers under any `offload` policy;
//! - [`report`]: `summary.json`, Markdown tables and SVG plots;
//! - [`live`]: a subset sent through a freshly started deployment, compared with the replay.

pub mod datasets;
pub mod engine;
pub mod live;
pub mod metrics;
pub mod plot;
pub mod replay;
pub mod report;
pub mod run;
pub mod traces;
