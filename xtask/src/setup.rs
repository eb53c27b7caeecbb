//! `cargo xtask setup`: everything a fresh machine needs before the tests or the demo run.

use crate::run::{self, step};
use crate::{browser, models};
use anyhow::{Context, Result};
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Do not fetch the models.
    #[arg(long)]
    pub no_models: bool,
}

/// The wasm targets every build needs (also listed in rust-toolchain.toml, which rustup reads
/// when it installs the toolchain; adding them here covers a toolchain that was already there).
const TARGETS: [&str; 2] = ["wasm32-unknown-unknown", "wasm32-wasip2"];

/// The nightly toolchain of the page's threaded build (wasm threads need the standard library
/// rebuilt with atomics, which only nightly does), pinned so that every machine builds the same.
pub const NIGHTLY: &str = "nightly-2026-05-20";

pub fn run(args: &Args) -> Result<()> {
    rust_targets()?;
    nightly_toolchain()?;
    browser::setup()?;
    if !args.no_models {
        models::run(&models::Args {
            dir: None,
            verify: false,
            keep_wheels: false,
        })?;
    }
    Ok(())
}

pub fn rust_targets() -> Result<()> {
    step("Rust targets");
    let installed = run::output(
        Command::new("rustup")
            .args(["target", "list", "--installed"])
            .current_dir(run::workspace_root()),
    )
    .context("rustup is needed to add the wasm targets")?;
    let missing: Vec<&str> = TARGETS
        .into_iter()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        eprintln!("  installed: {}", TARGETS.join(", "));
        return Ok(());
    }
    run::run(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing)
            .current_dir(run::workspace_root()),
    )
}

/// Installs [`NIGHTLY`] with the standard library's source and the browser target, if missing.
/// Once per run: both setup and the page build ask for it.
pub fn nightly_toolchain() -> Result<()> {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if CHECKED.get().is_some() {
        return Ok(());
    }
    install_nightly()?;
    let _ = CHECKED.set(());
    Ok(())
}

fn install_nightly() -> Result<()> {
    step(&format!("Rust {NIGHTLY} (the page's threaded build)"));
    // Fails (so: install) where the toolchain is not there at all.
    let installed = run::output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))
    .unwrap_or_default();
    let has = |what: &str| installed.lines().any(|l| l.trim().starts_with(what));
    if has("rust-src") && has("rust-std-wasm32-unknown-unknown") {
        eprintln!("  installed: {NIGHTLY} with rust-src and wasm32-unknown-unknown");
        return Ok(());
    }
    run::run(Command::new("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
        "--target",
        "wasm32-unknown-unknown",
    ]))
    .with_context(|| format!("installing Rust {NIGHTLY} for the page's threaded build"))
}
