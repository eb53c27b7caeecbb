//! What every request handler shares.

use crate::config::Config;
use crate::engine::{Scheduler, Upstream};
use crate::metrics::Metrics;
use offload::{PolicySpec, Windows};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where answers come from.
pub enum Engine {
    /// The model runs here, batched by the scheduler.
    Local(Scheduler),
    /// An OpenAI-compatible engine answers; this host adds confidence and the hop record.
    Upstream(Upstream),
}

pub struct AppState {
    pub engine: Engine,
    /// The model's id in responses.
    pub model_id: String,
    pub config: Config,
    /// The policy named in hop records when a request names none.
    pub policy: PolicySpec,
    /// This tier's confidence windows (the top tier records, never offloads).
    pub windows: Mutex<Windows>,
    pub metrics: Metrics,
    /// When the host started (seconds since the epoch), for `/v1/models`.
    pub started: u64,
    ids: AtomicU64,
}

impl AppState {
    pub fn new(engine: Engine, model_id: String, config: Config, windows: Windows) -> Self {
        let started = unix_now();
        AppState {
            engine,
            model_id,
            policy: config.policy.clone(),
            config,
            windows: Mutex::new(windows),
            metrics: Metrics::default(),
            started,
            ids: AtomicU64::new(0),
        }
    }

    /// A response id unique to this process run: `prefix-<start time>-<counter>`.
    pub fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:04x}", self.started)
    }

    /// Requests waiting and sequences running (0 in upstream mode).
    /// Requests waiting, sequences in the batch, and prompt tokens reused from the prefix
    /// cache so far (all 0 in upstream mode).
    pub fn load(&self) -> (usize, usize, u64) {
        match &self.engine {
            Engine::Local(s) => (s.waiting(), s.active(), s.reused_tokens()),
            Engine::Upstream(_) => (0, 0, 0),
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
