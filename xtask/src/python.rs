//! A Python virtual environment for the tests that use Python packages as real clients (the
//! official `openai` client against the cloud host), in a cache outside the repository. Created
//! with the machine's python3 and pip on first use; a no-op afterwards.

use crate::run::{self, step};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Pinned, so a test run does not change with a new release.
const PACKAGES: [&str; 1] = ["openai==3.57.0"];

/// The environment's interpreter (created and filled if needed).
pub fn venv() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(".cache/ladder/python");
    let python = dir.join("bin/python");
    let stamp = dir.join("installed.txt");
    let wanted = PACKAGES.join("\n");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    step(&format!("Python environment ({})", PACKAGES.join(", ")));
    if !python.is_file() {
        run::run(Command::new("python3").args(["-m", "venv"]).arg(&dir))
            .context("creating a virtual environment (needs python3 with venv)")?;
    }
    run::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
    )
    .context("installing the test clients with pip (needs the PyPI registry)")?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}
