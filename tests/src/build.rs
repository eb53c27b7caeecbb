//! What the tests run, built on demand: the host binaries (as `cargo test --workspace` builds
//! them) and the edge component in both flavours (`cargo xtask edge-fn`). `cargo xtask test`
//! builds them before the tests, so these calls find everything fresh; run alone
//! (`cargo test -p ladder-tests`), they build what is missing. A lock file keeps test binaries running at once from building over
//! each other.

use anyhow::{Context, Result, bail};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root: the nearest folder above the running package's manifest (which
/// `cargo run` and `cargo test` name in `CARGO_MANIFEST_DIR`) whose `Cargo.toml` declares the
/// workspace, else the folder this crate was compiled in. The run-time path comes first
/// because a build cache shared between checkouts (as CI's is) can hand one checkout a binary
/// compiled in another, whose compiled-in path may no longer exist.
pub fn workspace() -> PathBuf {
    let compiled = || {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".."))
    };
    std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|dir| {
            Path::new(&dir)
                .ancestors()
                .find(|d| declares_workspace(&d.join("Cargo.toml")))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(compiled)
}

/// Whether the manifest at `path` has a `[workspace]` table.
fn declares_workspace(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|text| text.lines().any(|l| l.trim() == "[workspace]"))
        .unwrap_or(false)
}

/// The cargo target directory: the test executable is `<target>/<profile>/deps/<name>`.
pub fn target() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace().join("target"))
}

/// The models directory (`$LADDER_MODELS`, else `~/.cache/ladder/models`).
pub fn models() -> PathBuf {
    std::env::var_os("LADDER_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ladder/models")))
        .unwrap_or_else(|| PathBuf::from(".cache/ladder/models"))
}

/// A model file from the models directory, or an error saying how to fetch it.
pub fn model(file: &str) -> Result<PathBuf> {
    let path = models().join(file);
    if !path.is_file() {
        bail!("{} is missing; run `cargo xtask models`", path.display());
    }
    Ok(path)
}

/// The edge model (Gemma-3-270M Q4_K_M) and its id, as `cargo xtask models` names them.
pub const EDGE_MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
pub const EDGE_MODEL_ID: &str = "gemma-3-270m-q4_k_m";

/// `cargo` in the workspace root, without the variables cargo set for the program calling it
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, … of a test, or of xtask under `cargo xtask`).
/// Build scripts such as ring's track some of them, so a build that sees other values than the
/// last one recompiles those crates and everything above them. xtask builds with this too.
pub fn cargo() -> Command {
    without_cargo_run_vars(Command::new(
        std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
    ))
}

/// [`cargo`] of another rustup toolchain (`rustup run TOOLCHAIN cargo`).
pub fn cargo_of(toolchain: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", toolchain, "cargo"]);
    // The toolchain running this program must not leak into the other one's build.
    for key in ["RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO"] {
        cmd.env_remove(key);
    }
    without_cargo_run_vars(cmd)
}

fn without_cargo_run_vars(mut cmd: Command) -> Command {
    cmd.current_dir(workspace());
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether cargo sets `key` for the programs it runs (`cargo run`, `cargo test`).
fn set_by_cargo_run(key: &str) -> bool {
    key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_EXE_")
        || matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// Runs `cmd` with the build lock held.
fn locked(what: &str, mut cmd: Command) -> Result<()> {
    // One build at a time within this process, and across test processes.
    static LOCAL: Mutex<()> = Mutex::new(());
    let _local = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target();
    std::fs::create_dir_all(&dir)?;
    let lock = File::create(dir.join("ladder-tests-build.lock"))?;
    lock.lock().context("locking the test build lock")?;
    let status = cmd
        .status()
        .with_context(|| format!("running cargo to build {what}"))?;
    if !status.success() {
        bail!("building {what} failed ({status})");
    }
    Ok(())
}

/// A debug binary of the workspace, as `cargo test --workspace` builds it (for the integration
/// tests of its own package), once per process. Building it the way the test command's test
/// build does, rather than with `cargo build -p PACKAGE`, keeps the features of its
/// dependencies the same, so nothing is compiled twice; under `cargo xtask test` the build is
/// already there and this only checks it. Run alone, it builds every test of the workspace.
pub fn binary(package: &str, name: &str) -> Result<PathBuf> {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let path = target().join("debug").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let mut cmd = cargo();
        cmd.args(["test", "--workspace", "--locked", "--no-run"]);
        locked("the workspace's test build", cmd)?;
        *built = true;
    }
    if !path.is_file() {
        bail!(
            "{} is missing after the test build: package `{package}` needs an integration test \
             for cargo to build its binary `{name}`",
            path.display()
        );
    }
    Ok(path)
}

/// The text of the Spin manifest at `path` with its component's `source` pointed at
/// `component` (the tests and the evaluation's live mode serve a build from the target folder).
pub fn manifest_with_source(path: &Path, component: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("source = "))
        .with_context(|| format!("{} names no component `source`", path.display()))?;
    Ok(text.replace(
        line,
        &format!("source = {:?}", component.display().to_string()),
    ))
}

/// The two builds of the edge component.
#[derive(Debug, Clone)]
pub struct Components {
    pub wasi_nn: PathBuf,
    pub in_wasm: PathBuf,
}

/// The edge component's debug builds, built by `cargo xtask edge-fn` unless both exist and are
/// newer than every source they come from.
pub fn edge_components() -> Result<Components> {
    static DONE: OnceLock<Components> = OnceLock::new();
    if let Some(done) = DONE.get() {
        return Ok(done.clone());
    }
    let out = target().join("edge-fn").join("debug");
    let components = Components {
        wasi_nn: out.join("wasi-nn.wasm"),
        in_wasm: out.join("in-wasm.wasm"),
    };
    if !fresh(&components)? {
        let mut cmd = cargo();
        cmd.args(["xtask", "edge-fn"]);
        locked("the edge component", cmd)?;
    }
    Ok(DONE.get_or_init(|| components).clone())
}

/// Whether both builds exist and are newer than the sources of edge-fn, offload and llm.
fn fresh(c: &Components) -> Result<bool> {
    let built = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    let (Some(a), Some(b)) = (built(&c.wasi_nn), built(&c.in_wasm)) else {
        return Ok(false);
    };
    let oldest = a.min(b);
    let root = workspace();
    let mut newest = None;
    for dir in ["edge-fn/src", "edge-fn/wit", "offload/src", "llm/src"] {
        newest_in(&root.join(dir), &mut newest)?;
    }
    for file in ["edge-fn/Cargo.toml", "Cargo.lock"] {
        if let Ok(t) = root.join(file).metadata().and_then(|m| m.modified()) {
            newest = newest.max(Some(t));
        }
    }
    Ok(newest.is_none_or(|n| n <= oldest))
}

fn newest_in(dir: &Path, newest: &mut Option<std::time::SystemTime>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            newest_in(&entry.path(), newest)?;
        } else if let Ok(t) = meta.modified() {
            *newest = (*newest).max(Some(t));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_serves_the_given_component() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("spin.toml");
        std::fs::write(
            &manifest,
            "[component.edge]\nsource = \"../target/edge-fn/release/wasi-nn.wasm\"\nkey_value_stores = [\"default\"]\n",
        )
        .unwrap();
        let text = manifest_with_source(&manifest, Path::new("/tmp/x/wasi-nn.wasm")).unwrap();
        assert!(text.contains("source = \"/tmp/x/wasi-nn.wasm\""), "{text}");
        assert!(text.contains("key_value_stores"));
        std::fs::write(&manifest, "[component.edge]\n").unwrap();
        let err = manifest_with_source(&manifest, Path::new("c.wasm")).unwrap_err();
        assert!(err.to_string().contains("no component `source`"), "{err}");
        let err = manifest_with_source(&dir.path().join("missing.toml"), Path::new("c.wasm"))
            .unwrap_err();
        assert!(err.to_string().contains("missing.toml"), "{err}");
    }

    #[test]
    fn the_workspace_is_found_from_the_running_package() {
        let root = workspace();
        assert!(
            declares_workspace(&root.join("Cargo.toml")),
            "{}",
            root.display()
        );
        assert!(root.join("tests").join("src").join("build.rs").is_file());
        // A package's own manifest does not declare the workspace.
        assert!(!declares_workspace(&root.join("tests").join("Cargo.toml")));
    }
}
