//! Running WebAssembly components (wasm32-wasip2 test binaries and examples) in Node.js with
//! jco, the Bytecode Alliance's component runner. Node is part of this machine kind; jco is
//! installed from the npm registry into a cache outside the repository on first use.

use crate::run::{self, step};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const JCO: &str = "@bytecodealliance/jco@1.35.0";
const SHIM: &str = "@bytecodealliance/preview2-shim";

/// jco's folder (installed if needed).
pub fn jco() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(".cache/ladder/jco");
    let bin = dir.join("node_modules/@bytecodealliance/jco/dist/jco.js");
    if !bin.is_file() {
        step("jco (WebAssembly component runner for Node.js)");
        std::fs::create_dir_all(&dir)?;
        run::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .args([JCO, SHIM]),
        )
        .context("installing jco with npm (needs Node.js and the npm registry)")?;
    }
    // The shim gives a component no files by default; the runs here read model files.
    std::fs::write(
        dir.join("preopen.mjs"),
        "import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';\n\
         _setPreopens({ '/': '/' });\n",
    )?;
    Ok(dir)
}

/// A command that runs `component` with `args` under jco.
pub fn command(jco: &Path, component: &Path) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(jco.join("node_modules/@bytecodealliance/jco/dist/jco.js"))
        .arg("run")
        .arg("--jco-import")
        .arg(jco.join("preopen.mjs"))
        .arg(component)
        .current_dir(jco);
    cmd
}
