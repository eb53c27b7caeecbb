//! The cloud tier: the top of the ladder, which always answers. A native OpenAI-compatible
//! server (`/v1/chat/completions` with streaming and log-probs, `/v1/completions`,
//! `/v1/models`, `/health`, `/metrics`) that runs the largest model with `llm` behind a
//! continuous-batching scheduler, or fronts an existing OpenAI-compatible engine (upstream mode)
//! and computes confidence from the log-probs it returns.
//!
//! Up the request path: `edge-fn` offloads here (and any OpenAI client may call it directly);
//! down: `llm` runs the model, `offload` computes the confidence, records it in this tier's
//! windows and defines the wire types and the hop record every response carries when the
//! request had the `offload` extension.
//!
//! - [`config`]: the TOML configuration and its defaults.
//! - [`engine`]: the scheduler (local model) and the upstream client, behind one event stream.
//! - [`api`]: the routes, with authentication, CORS, metrics and tracing as layers.
//! - [`Server`]: binds, serves, and shuts down gracefully.

pub mod api;
pub mod config;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod state;

pub use config::{Config, ConfigError, UpstreamConfig};
pub use error::ApiError;

use engine::scheduler::SchedulerConfig;
use engine::upstream::UpstreamError;
use engine::{Scheduler, Upstream};
use llm::models::{Model, ModelOptions};
use offload::Windows;
use state::{AppState, Engine};
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not load the model {path}: {source}")]
    Model { path: PathBuf, source: llm::Error },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("could not start the scheduler thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Loads the model (or connects to the upstream engine) and binds the address.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        config.validate()?;
        let windows = match config.policy.window_size() {
            Some(k) => Windows::new(k).map_err(|e| StartError::Other(e.to_string()))?,
            None => Windows::default(),
        };
        let (engine, model_id) = match &config.upstream {
            Some(upstream) => {
                let upstream = Upstream::connect(upstream).await?;
                let id = config
                    .model_id
                    .clone()
                    .unwrap_or_else(|| upstream.model().to_owned());
                (Engine::Upstream(upstream), id)
            }
            None => {
                let (path, default_id) = match &config.model {
                    Some(path) => (path.clone(), None),
                    None => {
                        let (path, id) = config::default_model()?;
                        (path, Some(id))
                    }
                };
                let options = ModelOptions {
                    threads: config.threads,
                    context: config.context,
                    ..ModelOptions::default()
                };
                let load_path = path.clone();
                let model =
                    tokio::task::spawn_blocking(move || Model::load_with(&load_path, &options))
                        .await
                        .map_err(|e| StartError::Other(format!("the model loader failed: {e}")))?
                        .map_err(|source| StartError::Model {
                            path: path.clone(),
                            source,
                        })?;
                let id = config
                    .model_id
                    .clone()
                    .or(default_id)
                    .unwrap_or_else(|| model.name().to_owned());
                tracing::info!(
                    model = %path.display(),
                    threads = model.threads(),
                    context = model.context_length(),
                    kernels = model.kernels().name(),
                    "model loaded"
                );
                let scheduler = Scheduler::start(
                    model,
                    SchedulerConfig {
                        max_batch: config.max_batch,
                        max_queue: config.max_queue,
                        prefill_chunk: config.prefill_chunk,
                        prefix_cache_tokens: config.prefix_cache_tokens,
                    },
                )
                .map_err(StartError::Thread)?;
                (Engine::Local(scheduler), id)
            }
        };
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.addr,
                source,
            })?;
        let state = Arc::new(AppState::new(engine, model_id, config, windows));
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn model_id(&self) -> &str {
        &self.state.model_id
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight requests finish
    /// for `shutdown_grace_secs`, and ends those still running with a "shutting down" error
    /// (a stream gets it as its last event).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = Arc::clone(&self.state);
        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        let (signalled, mut signal_seen) = tokio::sync::watch::channel(false);
        let closing = Arc::clone(&state);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: no new requests; in-flight ones may finish");
            if let Engine::Local(scheduler) = &closing.engine {
                scheduler.close();
            }
            let _ = signalled.send(true);
        };
        let app = api::router(Arc::clone(&state));
        // Without TCP_NODELAY each streamed token after the first may wait for the client's
        // delayed ACK (up to 40 ms).
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .into_future();
        tokio::pin!(serve);
        tokio::select! {
            result = &mut serve => result,
            () = async {
                let _ = signal_seen.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("the shutdown grace period is over; ending what is still running");
                if let Engine::Local(scheduler) = &state.engine {
                    scheduler.abort();
                }
                // The streams now end; give them a moment to send their last event.
                tokio::time::timeout(Duration::from_secs(5), &mut serve)
                    .await
                    .unwrap_or(Ok(()))
            }
        }
    }
}
