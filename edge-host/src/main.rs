//! `edge-host`: serves a Spin application (`spin.toml`) with wasmtime, with wasi-nn on GGUF.
//!
//! ```text
//! edge-host --manifest edge-fn/spin.toml --addr 127.0.0.1:3000 \
//!     --var cloud_url=http://127.0.0.1:8081 --cors-origin http://127.0.0.1:8080
//! ```
//! Prints `listening on http://ADDR` on stdout once bound (with `--addr 127.0.0.1:0`, ADDR has
//! the port the system picked); logs go to stderr.

use anyhow::{Context, Result};
use clap::Parser;
use edge_host::manifest::FileMount;
use edge_host::nn::GraphSpec;
use edge_host::{Application, Options, runtime, variables};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Serve a Spin application's HTTP components with wasmtime, with wasi-nn on GGUF models"
)]
struct Cli {
    /// The application manifest.
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Set an application variable (like `spin up --variable`); repeatable. The environment's
    /// SPIN_VARIABLE_NAME is used when this is not given.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = variables::parse_assignment)]
    vars: Vec<(String, String)>,
    /// Mount a host directory at a guest path, replacing the manifest's `files` entry for that
    /// path (e.g. the models directory for the in-wasm build); repeatable.
    #[arg(long = "dir", value_name = "HOST::GUEST", value_parser = parse_dir)]
    dirs: Vec<FileMount>,
    /// A wasi-nn graph for `load-by-name`: NAME=PATH.gguf; repeatable. Default: the edge
    /// model(s) of models.json in the models directory, named by their id.
    #[arg(long = "nn-graph", value_name = "NAME=PATH")]
    graphs: Vec<GraphSpec>,
    /// Where `cargo xtask models` put the models (default: $LADDER_MODELS or
    /// ~/.cache/ladder/models).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Kernel threads per graph (default: every core, or $LADDER_THREADS).
    #[arg(long)]
    threads: Option<usize>,
    /// Cap on each graph's context, in tokens.
    #[arg(long, default_value_t = 4096)]
    context: usize,
    /// Directory for the key-value stores (default: .spin/ beside the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Allow cross-origin requests from this origin (e.g. http://127.0.0.1:8080), answering
    /// CORS preflights; `*` allows any origin; repeatable. Without it, no CORS headers are sent.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest linear memory of one component instance, in MiB.
    #[arg(long, default_value_t = 1024)]
    max_memory_mib: usize,
    /// Component instances alive at once (the pooling allocator's slots).
    #[arg(long, default_value_t = 8)]
    max_instances: u32,
    /// Time limit of one request, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

fn parse_dir(arg: &str) -> Result<FileMount, String> {
    let (host, guest) = arg
        .split_once("::")
        .ok_or_else(|| format!("expected HOST::GUEST, got {arg:?}"))?;
    if !guest.starts_with('/') {
        return Err(format!("the guest path {guest:?} must be absolute"));
    }
    Ok(FileMount {
        source: PathBuf::from(host),
        destination: guest.to_string(),
    })
}

/// The models directory: the flag, `$LADDER_MODELS`, or `~/.cache/ladder/models`.
fn models_dir(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("LADDER_MODELS").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ladder/models")))
}

/// The edge models listed in `models.json` (written by `cargo xtask models`).
fn default_graphs(dir: &std::path::Path) -> Result<Vec<GraphSpec>> {
    let path = dir.join("models.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no --nn-graph given and cannot read {}; run `cargo xtask models` or pass \
             --nn-graph NAME=PATH.gguf",
            path.display()
        )
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut graphs = Vec::new();
    for model in json["models"].as_array().into_iter().flatten() {
        if model["role"] != "edge" {
            continue;
        }
        let (Some(id), Some(file)) = (model["id"].as_str(), model["files"][0]["path"].as_str())
        else {
            continue;
        };
        graphs.push(GraphSpec {
            name: id.to_string(),
            path: PathBuf::from(file),
        });
    }
    Ok(graphs)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let graphs = if cli.graphs.is_empty() {
        match models_dir(cli.models.clone()) {
            Some(dir) => default_graphs(&dir)?,
            None => Vec::new(),
        }
    } else {
        cli.graphs.clone()
    };
    let mut options = Options::new(&cli.manifest);
    options.variables = cli.vars;
    options.dirs = cli.dirs;
    options.graphs = graphs;
    options.threads = cli.threads;
    options.context = Some(cli.context);
    options.state_dir = cli.state_dir;
    options.cors_origins = cli.cors_origins;
    options.max_body_bytes = cli.max_body_bytes;
    options.limits = runtime::Limits {
        max_memory_bytes: cli.max_memory_mib.saturating_mul(1024 * 1024),
        max_instances: cli.max_instances,
        request_timeout: Duration::from_secs(cli.timeout_secs),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let app = Application::load(&options)
            .with_context(|| format!("loading {}", cli.manifest.display()))?;
        app.serve(cli.addr, |bound| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on http://{bound}");
            let _ = out.flush();
        })
        .await
        .context("serving")
    })
}
