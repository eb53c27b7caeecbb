//! `cargo xtask test`: the README's test command. It sets the machine up (targets, models) and
//! runs every check the project has, stopping at the first failure.

use crate::run::{self, cargo, step};
use crate::{models, node, setup};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

#[derive(clap::Args)]
pub struct Args {
    /// Skip the setup step (targets and models must already be there).
    #[arg(long)]
    pub no_setup: bool,
    /// Run only the browser tests (the chat page and the device tier in Chromium).
    #[arg(long)]
    pub browser_only: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if !args.no_setup {
        setup::run(&setup::Args { no_models: false })?;
    }
    if args.browser_only {
        return crate::web::browser_tests();
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

    // The simd128 kernels exist only on wasm32, so they are linted there too (with llm's
    // tests, which also run there; offload's use proptest, which does not build for wasm).
    step("Lints on wasm32 (cargo clippy --target wasm32-wasip2 -D warnings)");
    // The edge component's platform glue exists only there too, in both flavours.
    for targets in [
        &["-p", "llm", "--all-targets"][..],
        &["-p", "llm", "--all-targets", "--features", "relaxed-simd"],
        &["-p", "offload", "--lib"],
        &["-p", "edge-fn", "--lib"],
        &["-p", "edge-fn", "--lib", "--features", "in-wasm"],
    ] {
        run::run(
            cargo()
                .args(["clippy", "--locked", "--target", "wasm32-wasip2"])
                .args(targets)
                .args(["--", "-D", "warnings"])
                .current_dir(&root),
        )?;
    }

    // The device tier's browser glue exists only on wasm32-unknown-unknown.
    run::run(
        cargo()
            .args(["clippy", "--locked", "--target", "wasm32-unknown-unknown"])
            .args(["-p", "wasm-device", "--all-targets", "--", "-D", "warnings"])
            .current_dir(&root),
    )?;

    // What builds for the browser and for the edge component is built by the steps that need
    // it: the edge component (llm and offload for wasm32-wasip2) here, the page's device module
    // (for wasm32-unknown-unknown) before the browser tests.

    // The component tests (tests/tests/edge_component.rs) serve both builds in edge-host.
    let components = crate::edge::build(false)?;

    // Real clients and engines for the cloud host's tests: the official `openai` Python
    // package, and llama.cpp's `llama-server` as the engine of upstream mode.
    let python = crate::python::venv()?;
    let llama = crate::llama_cpp::build(&["llama-server"])?;

    // With llm's GPU path (ladder-tests turns feature `gpu` on): its WGSL kernels run
    // natively on Vulkan (lavapipe where there is no GPU, from the setup), against the CPU path
    // on tiny models and on the default device model. A missing adapter fails rather than
    // skipping.
    step("Tests (cargo test --workspace, llm's GPU path on Vulkan included)");
    run::run(
        cargo()
            .args(["test", "--workspace", "--locked"])
            .env("LADDER_PYTHON", &python)
            .env("LADDER_LLAMA_SERVER", llama.join("llama-server"))
            .env("LADDER_REQUIRE_GPU", "1")
            .current_dir(&root),
    )?;

    wasm_tests()?;
    same_logits_everywhere()?;
    crate::web::browser_tests()?;

    // The evaluation harness end to end on the real models and datasets (issue 7), a few
    // items per dataset, with the `eval` binary the test build made.
    let eval = test_build(&["--workspace"])?
        .into_iter()
        .find(|a| !a.harness && a.name == "eval")
        .map(|a| a.exe)
        .context("the test build made no `eval` binary")?;
    crate::eval::quick_with(&eval, TEST_EVAL_ITEMS)?;
    // The live mode: a few items through a fresh deployment of the hosts the test build made,
    // checked against the replay (any difference fails).
    crate::eval::live_with(
        &eval,
        &run::target_dir()?.join("debug"),
        &components.wasi_nn,
        &crate::eval::Args {
            live: true,
            quick: false,
            quick_items: crate::eval::QUICK_ITEMS,
            data: None,
            datasets: None,
            rest: Vec::new(),
        },
    )?;

    eprintln!("\nAll checks passed.");
    Ok(())
}

/// Items per dataset of the evaluation's quick mode here: enough for three buckets of four on
/// every dataset, and half the default quick mode's time (about 2.7 s per item on 2 cores).
const TEST_EVAL_ITEMS: usize = 12;

/// Test binaries of `llm` that also run as wasm32-wasip2 components. The comparison with
/// llama.cpp (`engine_llama_cpp`) stays native: it runs the models in exact f32 mode, which is
/// slow in Node.js, and `same_logits_everywhere` shows the WebAssembly build computes exactly
/// what the native one does.
const WASM_SKIP: [&str; 1] = ["engine_llama_cpp"];

/// `llm`'s tests built for wasm32-wasip2 and run in Node.js through jco: the kernels
/// (simd128 against the scalar reference), the tiny-model tests, the tokenizer fixtures and
/// greedy generation on the real models.
fn wasm_tests() -> Result<()> {
    step("WebAssembly tests (llm on wasm32-wasip2, in Node.js via jco)");
    let jco = node::jco()?;
    let binaries: Vec<(String, PathBuf)> = test_build(&["--target", "wasm32-wasip2", "-p", "llm"])?
        .into_iter()
        .filter(|a| a.harness && !WASM_SKIP.contains(&a.name.as_str()))
        .map(|a| (a.name, a.exe))
        .collect();
    if binaries.is_empty() {
        bail!("cargo built no wasm32-wasip2 test binaries for llm");
    }
    let models = models::cache_dir(None)?;
    for (name, exe) in binaries {
        eprintln!("-- {name}");
        run::run(node::command(&jco, &exe).env("LADDER_MODELS", &models))
            .with_context(|| format!("the wasm32-wasip2 build of test `{name}` failed"))?;
    }

    // The relaxed-SIMD kernels (the edge component's in-wasm build) against the scalar
    // reference and on the tiny models, in wasmtime: Node.js 20 predates relaxed SIMD.
    step("WebAssembly tests (llm's relaxed-SIMD build on wasm32-wasip2, in wasmtime)");
    let runner = wasi_runner()?;
    let lib = test_build(RELAXED_BUILD)?
        .into_iter()
        .find(|a| a.harness && a.name == "llm")
        .context("cargo built no relaxed-SIMD test binary for llm")?;
    run::run(Command::new(&runner).arg(&lib.exe))
        .context("the relaxed-SIMD build of llm's unit tests failed")?;
    Ok(())
}

/// `cargo test` arguments of llm's relaxed-SIMD WebAssembly build.
const RELAXED_BUILD: &[&str] = &[
    "--target",
    "wasm32-wasip2",
    "-p",
    "llm",
    "--features",
    "relaxed-simd",
];

/// edge-host's `wasi_run` example as the workspace's test build made it: runs a wasm32-wasip2
/// program in the same wasmtime as the edge host.
fn wasi_runner() -> Result<PathBuf> {
    test_build(&["--workspace"])?
        .into_iter()
        .find(|a| !a.harness && a.name == "wasi_run")
        .map(|a| a.exe)
        .context("the test build made no `wasi_run` example")
}

/// An executable of a test build: a test harness or an example.
struct Artifact {
    name: String,
    harness: bool,
    exe: PathBuf,
}

/// `cargo test --no-run ARGS`: what it built (nothing, when the test step before built it).
fn test_build(args: &[&str]) -> Result<Vec<Artifact>> {
    let json = run::output(
        cargo()
            .args(["test", "--locked", "--no-run", "--message-format", "json"])
            .args(args)
            .current_dir(run::workspace_root()),
    )?;
    let mut out = Vec::new();
    for line in json.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(exe), Some(name)) =
            (msg["executable"].as_str(), msg["target"]["name"].as_str())
        {
            out.push(Artifact {
                name: name.to_string(),
                harness: msg["profile"]["test"].as_bool() == Some(true),
                exe: PathBuf::from(exe),
            });
        }
    }
    Ok(out)
}

/// The engine computes the same logits natively and as WebAssembly, and with every kernel
/// set: `llm/examples/digest` hashes the logits of a short greedy run on each default model.
fn same_logits_everywhere() -> Result<()> {
    step("Same logits everywhere (native SIMD, native scalar, wasm32 simd128 and relaxed SIMD)");
    let jco = node::jco()?;
    // The digest example as the test builds made it (cargo test builds the examples too):
    // building it on its own resolves features differently and rebuilds half the tree.
    // Cargo puts an example of every feature set at the same path, so each build's is copied
    // away before the next build replaces it.
    let copies = run::target_dir()?.join("xtask").join("digest");
    let digest_of = |label: &str, args: &[&str]| -> Result<PathBuf> {
        let exe = test_build(args)?
            .into_iter()
            .find(|a| !a.harness && a.name == "digest")
            .map(|a| a.exe)
            .context("the test build made no `digest` example")?;
        let file = exe
            .file_name()
            .context("the digest example has no file name")?;
        let copy = copies.join(label).join(file);
        std::fs::create_dir_all(copies.join(label))?;
        std::fs::copy(&exe, &copy)
            .with_context(|| format!("copying {} to {}", exe.display(), copy.display()))?;
        Ok(copy)
    };
    let native = digest_of("native", &["--workspace"])?;
    let wasm = digest_of("simd128", &["--target", "wasm32-wasip2", "-p", "llm"])?;
    let relaxed = digest_of("relaxed-simd", RELAXED_BUILD)?;
    let runner = wasi_runner()?;
    let models = models::cache_dir(None)?;
    for file in [models::DEVICE_FILE, models::EDGE_FILE] {
        let model = models.join(file);
        let digest = |cmd: &mut Command| -> Result<String> {
            let out = run::output(cmd.arg(&model))?;
            // "<name> <kernels> <hash> <ids>": everything but the kernel name must agree.
            let line = out
                .lines()
                .last()
                .context("digest printed nothing")?
                .to_string();
            let mut parts = line.splitn(3, ' ');
            let (name, kernels, rest) = (parts.next(), parts.next(), parts.next());
            eprintln!("  {line}");
            match (name, kernels, rest) {
                (Some(n), Some(_), Some(r)) => Ok(format!("{n} {r}")),
                _ => bail!("unexpected digest output {line:?}"),
            }
        };
        let simd = digest(&mut Command::new(&native))?;
        let scalar = digest(Command::new(&native).env("LADDER_KERNELS", "scalar"))?;
        let web = digest(&mut node::command(&jco, &wasm))?;
        let edge = digest(Command::new(&runner).arg(&relaxed))?;
        if [&scalar, &web, &edge].iter().any(|d| **d != simd) {
            bail!(
                "{file}: the builds disagree on the logits:\n  {simd}\n  {scalar}\n  {web}\n  {edge}"
            );
        }
    }
    Ok(())
}
