//! `cargo xtask test`: the README's test command. It sets the machine up (targets, models) and
//! runs every check the project has, stopping at the first failure.

use crate::run::{self, cargo, step};
use crate::setup;
use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Skip the setup step (targets and models must already be there).
    #[arg(long)]
    pub no_setup: bool,
}

/// Crates that must build for the browser and for the edge component.
const WASM_CRATES: [&str; 2] = ["offload", "llm"];

pub fn run(args: &Args) -> Result<()> {
    if !args.no_setup {
        setup::run(&setup::Args { no_models: false })?;
    }
    let root = run::workspace_root();

    step("Formatting (cargo fmt --check)");
    run::run(cargo().args(["fmt", "--all", "--check"]).current_dir(&root))?;

    step("Lints (cargo clippy -D warnings)");
    run::run(
        cargo()
            .args(["clippy", "--workspace", "--all-targets", "--locked", "--"])
            .args(["-D", "warnings"])
            .current_dir(&root),
    )?;

    for target in ["wasm32-unknown-unknown", "wasm32-wasip2"] {
        step(&format!("WebAssembly build ({target})"));
        let mut cmd = cargo();
        cmd.args(["build", "--locked", "--target", target]);
        for krate in WASM_CRATES {
            cmd.args(["-p", krate]);
        }
        run::run(cmd.current_dir(&root))?;
    }

    step("Tests (cargo test --workspace)");
    run::run(
        cargo()
            .args(["test", "--workspace", "--locked"])
            .current_dir(&root),
    )?;

    eprintln!("\nAll checks passed.");
    Ok(())
}
