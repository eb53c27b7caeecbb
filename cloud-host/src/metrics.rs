//! Prometheus metrics for `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub time_to_first_token: Histogram,
    pub request_duration: Histogram,
    pub queue_depth: Gauge,
    pub active_sequences: Gauge,
    pub prefix_reused_tokens: Counter,
    /// One render at a time, so the reused-token counter catches up exactly once.
    rendering: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ladder_cloud");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let prompt_tokens = Counter::default();
        registry.register(
            "prompt_tokens",
            "Prompt tokens processed",
            prompt_tokens.clone(),
        );
        let completion_tokens = Counter::default();
        registry.register(
            "completion_tokens",
            "Tokens generated",
            completion_tokens.clone(),
        );
        let time_to_first_token = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "time_to_first_token_seconds",
            "From receiving a request to its first generated token",
            time_to_first_token.clone(),
        );
        let request_duration = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        registry.register(
            "request_duration_seconds",
            "From receiving a request to its last token",
            request_duration.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Requests waiting for a batch slot",
            queue_depth.clone(),
        );
        let active_sequences = Gauge::default();
        registry.register(
            "active_sequences",
            "Sequences in the running batch",
            active_sequences.clone(),
        );
        let prefix_reused_tokens = Counter::default();
        registry.register(
            "prefix_reused_tokens",
            "Prompt tokens taken from cached sequences instead of computed",
            prefix_reused_tokens.clone(),
        );
        Metrics {
            prefix_reused_tokens,
            rendering: std::sync::Mutex::new(()),
            registry,
            requests,
            prompt_tokens,
            completion_tokens,
            time_to_first_token,
            request_duration,
            queue_depth,
            active_sequences,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    pub fn observe_answer(
        &self,
        prompt: usize,
        completion: usize,
        first_token: Option<Duration>,
        total: Duration,
    ) {
        self.prompt_tokens.inc_by(prompt as u64);
        self.completion_tokens.inc_by(completion as u64);
        if let Some(ttft) = first_token {
            self.time_to_first_token.observe(ttft.as_secs_f64());
        }
        self.request_duration.observe(total.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self, waiting: usize, active: usize, reused_tokens: u64) -> String {
        let _one = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = self.prefix_reused_tokens.get();
        if reused_tokens > seen {
            self.prefix_reused_tokens.inc_by(reused_tokens - seen);
        }
        self.queue_depth.set(waiting as i64);
        self.active_sequences.set(active as i64);
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }
}
