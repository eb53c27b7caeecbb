//! What the browser tier needs on the machine: Debian's Chromium (the browser the tests and the
//! device benchmark drive), the npm packages of `tests/browser` (playwright-core, which drives
//! that Chromium without downloading a browser of its own, and wllama, the benchmark's
//! reference), and `wasm-bindgen-cli` at exactly the version of the `wasm-bindgen` crate in
//! `Cargo.lock` (the two must match), built once into `~/.cache/ladder` and reused.

use crate::run::{self, step};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs everything below that is missing.
pub fn setup() -> Result<()> {
    chromium()?;
    vulkan()?;
    node_packages()?;
    wasm_bindgen()?;
    Ok(())
}

/// Debian's Chromium, installed with apt-get when missing.
pub fn chromium() -> Result<PathBuf> {
    step("Chromium (Debian package `chromium`)");
    let path = PathBuf::from(CHROMIUM);
    if path.is_file() {
        eprintln!("  installed: {CHROMIUM}");
        return Ok(path);
    }
    apt_install("chromium")?;
    if !path.is_file() {
        bail!("apt-get installed chromium but {CHROMIUM} is not there");
    }
    Ok(path)
}

/// Where Debian's `mesa-vulkan-drivers` registers lavapipe, its software Vulkan driver.
const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

/// A Vulkan driver for the native tests of `llm`'s GPU path: Mesa's lavapipe (a software
/// GPU), installed with apt-get when no Vulkan driver is registered. Machines with a real
/// GPU driver keep theirs.
pub fn vulkan() -> Result<()> {
    step("Vulkan driver for the GPU path's tests (Debian package `mesa-vulkan-drivers`)");
    let registered = std::fs::read_dir("/usr/share/vulkan/icd.d")
        .map(|d| d.flatten().count() > 0)
        .unwrap_or(false);
    if registered {
        eprintln!("  installed: a Vulkan driver in /usr/share/vulkan/icd.d");
        return Ok(());
    }
    apt_install("mesa-vulkan-drivers")?;
    if !Path::new(LAVAPIPE_ICD).is_file() && cfg!(target_arch = "x86_64") {
        bail!("apt-get installed mesa-vulkan-drivers but {LAVAPIPE_ICD} is not there");
    }
    Ok(())
}

/// `apt-get install` of one Debian package (with sudo when not root).
fn apt_install(package: &str) -> Result<()> {
    let root = run::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run::run(&mut apt(&["update", "-q"])).context("apt-get update (Debian's package lists)")?;
    run::run(&mut apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        package,
    ]))
    .with_context(|| format!("installing Debian's {package} with apt-get"))
}

/// The folder of the browser tests' npm packages (`tests/browser`).
pub fn tests_dir() -> PathBuf {
    run::workspace_root().join("tests/browser")
}

/// `npm ci` in `tests/browser` (from its lock file) unless its packages are installed already.
pub fn node_packages() -> Result<PathBuf> {
    step("Browser test packages (npm ci in tests/browser: playwright-core, @wllama/wllama)");
    let dir = tests_dir();
    let stamp = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    if newer_or_same(&stamp, &lock) {
        eprintln!("  installed: {}", dir.join("node_modules").display());
        return Ok(dir);
    }
    run::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir),
    )
    .context(
        "installing the browser test packages with npm (needs Node.js and the npm registry)",
    )?;
    Ok(dir)
}

/// Whether `made` exists and is not older than `from`.
fn newer_or_same(made: &Path, from: &Path) -> bool {
    let time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (time(made), time(from)) {
        (Some(m), Some(f)) => m >= f,
        _ => false,
    }
}

/// The `wasm-bindgen` crate's version in `Cargo.lock`.
pub fn wasm_bindgen_version() -> Result<String> {
    let lock = run::workspace_root().join("Cargo.lock");
    let text =
        std::fs::read_to_string(&lock).with_context(|| format!("reading {}", lock.display()))?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            let version = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'));
            if let Some(v) = version {
                return Ok(v.to_string());
            }
        }
    }
    bail!("Cargo.lock has no wasm-bindgen package")
}

/// The `wasm-bindgen` command-line tool matching the crate, installed when missing. `cargo
/// install` runs without `--locked`: one dependency version its lock file names is no longer
/// on crates.io. About 20 minutes on 2 cores, once.
pub fn wasm_bindgen() -> Result<PathBuf> {
    let version = wasm_bindgen_version()?;
    step(&format!("wasm-bindgen-cli {version}"));
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let root = PathBuf::from(home).join(format!(".cache/ladder/wasm-bindgen-{version}"));
    let bin = root.join("bin/wasm-bindgen");
    if bin.is_file() {
        eprintln!("  installed: {}", bin.display());
        return Ok(bin);
    }
    run::run(
        run::cargo()
            .args(["install", "wasm-bindgen-cli", "--version"])
            .arg(format!("={version}"))
            .arg("--root")
            .arg(&root)
            // Its own build folder, not the workspace's (whose lock it would wait on).
            .env_remove("CARGO_TARGET_DIR")
            .current_dir(run::workspace_root()),
    )
    .context("building wasm-bindgen-cli with cargo install")?;
    if !bin.is_file() {
        bail!("cargo install finished but {} is missing", bin.display());
    }
    Ok(bin)
}
