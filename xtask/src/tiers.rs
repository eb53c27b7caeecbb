//! The edge and cloud tiers on this machine, as the demo and the browser tests start them:
//! `cloud-host` with the largest default model, and `edge-host` serving the edge component of
//! `edge-fn/spin.toml`, its cloud URL pointing at that cloud host and CORS open to the page.

use crate::models;
use anyhow::{Context, Result};
use ladder_tests::serve::Server;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a host may take to load its model and bind.
const STARTUP: Duration = Duration::from_secs(180);

/// What the tiers run.
pub struct Hosts {
    /// The folder holding the `cloud-host` and `edge-host` binaries.
    pub bin: PathBuf,
    /// The edge application's manifest.
    pub manifest: PathBuf,
    /// Kernel threads of each host.
    pub threads: usize,
    /// Where the edge keeps its key-value store (default: beside the manifest).
    pub state_dir: Option<PathBuf>,
}

/// The running tiers; both processes stop when this drops.
pub struct Tiers {
    /// Held so the cloud host runs as long as the edge that offloads to it.
    _cloud: Server,
    pub edge: Server,
}

/// Starts the cloud host, then the edge host offloading to it, allowing `page_origin`.
pub async fn start(hosts: &Hosts, models_dir: &Path, page_origin: &str) -> Result<Tiers> {
    let threads = hosts.threads.to_string();
    let path = |p: &Path| p.display().to_string();
    let cloud = Server::start(
        &hosts.bin.join("cloud-host"),
        &[
            "--model".into(),
            path(&models_dir.join(models::EDGE_FILE)),
            "--threads".into(),
            threads.clone(),
        ],
        STARTUP,
    )
    .await
    .context("starting cloud-host")?;
    eprintln!("  cloud-host: {}", cloud.url);
    let mut args = vec![
        "--manifest".into(),
        path(&hosts.manifest),
        "--var".into(),
        format!("cloud_url={}", cloud.url),
        "--cors-origin".into(),
        page_origin.to_string(),
        "--threads".into(),
        threads,
        "--models".into(),
        path(models_dir),
    ];
    if let Some(dir) = &hosts.state_dir {
        args.extend(["--state-dir".into(), path(dir)]);
    }
    let edge = Server::start(&hosts.bin.join("edge-host"), &args, STARTUP)
        .await
        .context("starting edge-host")?;
    eprintln!("  edge-host: {}", edge.url);
    Ok(Tiers {
        _cloud: cloud,
        edge,
    })
}
