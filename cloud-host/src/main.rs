//! `cloud-host`: the cloud tier's server. Flags override the TOML configuration file; see
//! `cloud-host --help` and the README.

use anyhow::{Context, Result};
use clap::Parser;
use cloud_host::{Config, Server, UpstreamConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "cloud-host",
    version,
    about = "The cloud tier: an OpenAI-compatible server with continuous batching, or a front for an existing engine"
)]
struct Cli {
    /// TOML configuration file (every key optional; flags override it)
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// GGUF model to serve [default: the largest model `cargo xtask models` fetched]
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// The model's id in responses
    #[arg(long)]
    model_id: Option<String>,
    /// Address to listen on; port 0 picks a free one [default: 127.0.0.1:8081]
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Kernel threads [default: $LADDER_THREADS, else every core]
    #[arg(long, short)]
    threads: Option<usize>,
    /// Cap on the context window in tokens [default: the model's]
    #[arg(long)]
    context: Option<usize>,
    /// Sequences decoded together [default: 16]
    #[arg(long)]
    max_batch: Option<usize>,
    /// Requests that may wait for a slot before the server answers 429 [default: 64]
    #[arg(long)]
    max_queue: Option<usize>,
    /// Forward to this OpenAI-compatible engine instead of running a model
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Model name to ask the upstream engine for [default: the first it lists]
    #[arg(long, requires = "upstream")]
    upstream_model: Option<String>,
    /// Accepted bearer token (repeatable); also $LADDER_API_KEYS, comma-separated
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// Origin allowed to call from a browser (repeatable)
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = run(Cli::parse()).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = configure(cli)?;
    let server = Server::start(config)
        .await
        .context("the cloud host could not start")?;
    let addr = server.local_addr().context("no local address")?;
    // The one line on stdout: scripts and tests wait for it to know where to connect.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{addr}")?;
    stdout.flush()?;
    tracing::info!(%addr, model = server.model_id(), "serving");
    server
        .run(shutdown_signal())
        .await
        .context("the server failed")?;
    tracing::info!("stopped");
    Ok(())
}

fn configure(cli: Cli) -> Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = cli.model {
        config.model = Some(v);
    }
    if let Some(v) = cli.model_id {
        config.model_id = Some(v);
    }
    if let Some(v) = cli.addr {
        config.addr = v;
    }
    if let Some(v) = cli.threads {
        config.threads = Some(v);
    }
    if let Some(v) = cli.context {
        config.context = Some(v);
    }
    if let Some(v) = cli.max_batch {
        config.max_batch = v;
    }
    if let Some(v) = cli.max_queue {
        config.max_queue = v;
    }
    if let Some(url) = cli.upstream {
        config.upstream = Some(UpstreamConfig {
            url,
            api_key: None,
            model: cli.upstream_model,
            connect_timeout_secs: 10,
        });
    }
    if let Some(upstream) = &mut config.upstream
        && upstream.api_key.is_none()
    {
        upstream.api_key = std::env::var("LADDER_UPSTREAM_API_KEY").ok();
    }
    config.api_keys.extend(cli.api_keys);
    if let Ok(keys) = std::env::var("LADDER_API_KEYS") {
        config.api_keys.extend(
            keys.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
        );
    }
    config.cors_origins.extend(cli.cors_origins);
    config.validate()?;
    Ok(config)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
