//! `cargo xtask edge-fn [--release]`: builds the edge component (`edge-fn`, wasm32-wasip2) in
//! both flavours and puts them where the manifests and tests look for them:
//! `target/edge-fn/{debug,release}/wasi-nn.wasm` (the default build, model through wasi-nn)
//! and `…/in-wasm.wasm` (feature `in-wasm`, model inside the component). Cargo writes both
//! builds to the same `edge_fn.wasm`, so each is copied out right after it is built.

use crate::run::{self, cargo, step};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Build with the release profile (what the manifests and the demo use; the tests and
    /// `cargo xtask bench edge` take the debug builds, whose `llm` runs at opt-level 2).
    #[arg(long)]
    pub release: bool,
}

/// Where the two builds are.
pub struct Components {
    pub wasi_nn: PathBuf,
    pub in_wasm: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let built = build(args.release)?;
    println!("{}", built.wasi_nn.display());
    println!("{}", built.in_wasm.display());
    Ok(())
}

/// Builds both flavours with the dev or release profile.
pub fn build(release: bool) -> Result<Components> {
    let profile = if release { "release" } else { "debug" };
    let target = run::target_dir()?;
    let out = target.join("edge-fn").join(profile);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut paths = Vec::new();
    for (flavour, features) in [("wasi-nn", None), ("in-wasm", Some("in-wasm"))] {
        step(&format!(
            "Edge component, {flavour} build ({profile}, wasm32-wasip2)"
        ));
        let mut cmd = cargo();
        cmd.args([
            "build",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "-p",
            "edge-fn",
        ]);
        if release {
            cmd.arg("--release");
        }
        if let Some(features) = features {
            cmd.args(["--features", features]);
        }
        run::run(cmd.current_dir(run::workspace_root()))?;
        let built = target
            .join("wasm32-wasip2")
            .join(profile)
            .join("edge_fn.wasm");
        let dest = out.join(format!("{flavour}.wasm"));
        std::fs::copy(&built, &dest)
            .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
        paths.push(dest);
    }
    let in_wasm = paths.pop().context("two builds")?;
    let wasi_nn = paths.pop().context("two builds")?;
    Ok(Components { wasi_nn, in_wasm })
}

/// Writes into `dir` a copy of `edge-fn/spin.toml` whose component is `component`, and returns
/// its path: the manifest names `../target/edge-fn/…`, which is not where the build is when
/// CARGO_TARGET_DIR points elsewhere.
pub fn manifest_in(dir: &Path, component: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = dir.join("spin.toml");
    let text = ladder_tests::build::manifest_with_source(
        &run::workspace_root().join("edge-fn/spin.toml"),
        component,
    )?;
    std::fs::write(&manifest, text).with_context(|| format!("writing {}", manifest.display()))?;
    Ok(manifest)
}
