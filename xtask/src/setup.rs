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

pub fn run(args: &Args) -> Result<()> {
    rust_targets()?;
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
