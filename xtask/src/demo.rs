//! `cargo xtask demo`: the three tiers and the chat page on this machine. It builds what is
//! missing, starts `cloud-host` (the largest default model) and `edge-host` (the edge component
//! of `edge-fn/spin.toml`, its cloud URL pointing at that cloud host, CORS open to the page),
//! serves the page with COOP/COEP headers, prints the page's URL, and stops everything on
//! Ctrl-C.

use crate::run::{self, cargo, step};
use crate::{models, web};
use anyhow::{Context, Result};
use std::net::SocketAddr;

#[derive(clap::Args)]
pub struct Args {
    /// Where the page is served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Kernel threads of each host (default: 1 each, so the browser keeps a core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Skip the setup step (targets, Chromium, wasm-bindgen and the models must be there).
    #[arg(long)]
    pub no_setup: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if !args.no_setup {
        crate::setup::run(&crate::setup::Args { no_models: false })?;
    }
    let dir = models::run(&models::Args {
        dir: None,
        verify: false,
        keep_wheels: false,
    })?;
    let root = run::workspace_root();
    step("Building the hosts (cloud-host, edge-host)");
    run::run(
        cargo()
            .args(["build", "--locked", "-p", "cloud-host", "-p", "edge-host"])
            .current_dir(&root),
    )?;
    let components = crate::edge::build(true)?;
    let pkg = web::build_page(true)?;
    let target = run::target_dir()?;
    let bin = target.join("debug");
    let manifest = crate::edge::manifest_in(&target.join("demo"), &components.wasi_nn)?;

    step("Starting the tiers");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.addr))
        .with_context(|| format!("binding the page's address {}", args.addr))?;
    let page = format!("http://{}", listener.local_addr()?);
    let hosts = crate::tiers::Hosts {
        bin,
        manifest,
        threads: args.threads,
        state_dir: None,
    };
    let tiers = runtime.block_on(crate::tiers::start(&hosts, &dir, &page))?;
    let site = web::Site::new(pkg, dir, &tiers.edge.url);
    runtime.block_on(async {
        let app = web::router(&site);
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("the page server stopped: {err}");
            }
        });
    });
    eprintln!("\nThe chat page (device tier in the browser, edge and cloud on this machine):");
    println!("{page}/");
    eprintln!("Ctrl-C stops the demo.");
    runtime.block_on(tokio::signal::ctrl_c())?;
    eprintln!("stopping");
    drop(tiers);
    runtime.shutdown_background();
    Ok(())
}
