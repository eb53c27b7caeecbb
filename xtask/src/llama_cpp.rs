//! llama.cpp, the reference engine of the benchmarks, built from the `llama-cpp-python` source
//! package on PyPI by `scripts/llama-cpp/build.sh` into a cache outside the repository (about
//! 20 minutes on 2 cores the first time; a no-op afterwards).

use crate::run::{self, step};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Builds the llama.cpp `targets` (if not built yet) and returns the folder holding them.
pub fn build(targets: &[&str]) -> Result<PathBuf> {
    step(&format!("llama.cpp reference ({})", targets.join(", ")));
    let script = run::workspace_root().join("scripts/llama-cpp/build.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).env("LLAMA_CPP_TARGETS", targets.join(" "));
    eprintln!(
        "$ {} (LLAMA_CPP_TARGETS={})",
        script.display(),
        targets.join(" ")
    );
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not run {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "building llama.cpp failed ({}); see the output above",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bin = stdout
        .lines()
        .last()
        .map(PathBuf::from)
        .context("build.sh printed no bin directory")?;
    for t in targets {
        anyhow::ensure!(
            bin.join(t).is_file(),
            "build.sh finished but {} is missing",
            bin.join(t).display()
        );
    }
    Ok(bin)
}
