//! `cargo xtask eval`: the RecServe comparison on the shared datasets (issue 7). It fetches the
//! default models if they are missing and runs the `eval` harness: every tier's model once per
//! item (traces cached in `target/eval/traces`, resumable), then every policy replayed over the
//! traces, written as `summary.json`, `tables.md`, `shift.json` and SVG plots. `--live` instead
//! builds the hosts and the edge component and runs `eval live`: a few items of each dataset
//! through a freshly started deployment, checked against the replay.

use crate::models;
use crate::run::{self, cargo, step};
use anyhow::Result;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Items per dataset in quick mode, spread evenly over each file.
pub const QUICK_ITEMS: usize = 24;

/// The datasets quick mode runs: one of each kind the comparison covers (two classification
/// sets, one translation set, two multiple-choice sets, which are also the default shift).
pub const QUICK_DATASETS: &str = "sst2,yelp_polarity,wmt16,arc_easy_test,arc_challenge_test";

#[derive(clap::Args)]
pub struct Args {
    /// Quick mode (CI): a few items per dataset on a few datasets, results in target/eval/quick
    #[arg(long)]
    pub quick: bool,
    /// Items per dataset in quick mode
    #[arg(long, default_value_t = QUICK_ITEMS)]
    pub quick_items: usize,
    /// Live mode: send a few items of each dataset through a freshly started deployment
    /// (cloud-host and edge-host, built here) and check that decisions, answers and bytes equal
    /// the replay (results in target/eval/live; sst2, arc_easy_test and wmt16 unless --datasets
    /// names others)
    #[arg(long, conflicts_with = "quick")]
    pub live: bool,
    /// Folder of JSONL datasets [default: ../shared/datasets]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Only these datasets (comma-separated names as `cargo run -p eval -- datasets` lists them)
    /// [default: every classification, translation and multiple-choice file; the quick set in
    /// quick mode]
    #[arg(long)]
    pub datasets: Option<String>,
    /// More arguments for `eval run` (tier models, prompting, shots, shift streams; see
    /// `cargo run -p eval -- run --help`), or for `eval live` with --live (items, beta, k)
    #[arg(last = true)]
    pub rest: Vec<OsString>,
}

/// The datasets the live mode sends through the deployment by default: one per task kind
/// (classification, multiple choice, translation).
pub const LIVE_DATASETS: &str = "sst2,arc_easy_test,wmt16";

pub fn run(args: &Args) -> Result<()> {
    if args.live {
        return live(args);
    }
    fetch_models()?;
    step(title(args));
    let mut cmd = cargo();
    // Release: the traces are the same bit for bit in either profile (the kernels fix their
    // summation order and Rust does not reassociate floats), and the release build runs the
    // models about twice as fast as the dev profile's `opt-level = 2` with debug assertions.
    cmd.args([
        "run",
        "--release",
        "--locked",
        "--quiet",
        "-p",
        "eval",
        "--",
    ]);
    cmd.args(eval_args(args)?);
    run::run(cmd.current_dir(run::workspace_root()))
}

/// Quick mode with an `eval` binary already built (`cargo xtask test` takes the one its test
/// build made: building it on its own would resolve features differently and rebuild much of
/// the tree), on `items` items per dataset.
pub fn quick_with(binary: &Path, items: usize) -> Result<()> {
    let args = Args {
        live: false,
        quick: true,
        quick_items: items,
        data: None,
        datasets: None,
        rest: Vec::new(),
    };
    fetch_models()?;
    step(title(&args));
    run::run(
        Command::new(binary)
            .args(eval_args(&args)?)
            .current_dir(run::workspace_root()),
    )
}

/// The live mode: builds the hosts, `eval` and the edge component, then runs `eval live`.
fn live(args: &Args) -> Result<()> {
    fetch_models()?;
    step("Building the hosts and the evaluation (cloud-host, edge-host, eval)");
    let root = run::workspace_root();
    run::run(
        cargo()
            .args([
                "build",
                "--locked",
                "-p",
                "cloud-host",
                "-p",
                "edge-host",
                "-p",
                "eval",
            ])
            .current_dir(&root),
    )?;
    let components = crate::edge::build(false)?;
    let bin = run::target_dir()?.join("debug");
    live_with(&bin.join("eval"), &bin, &components.wasi_nn, args)
}

/// `eval live` with the given programs: `eval` itself, the folder holding `cloud-host` and
/// `edge-host`, and the edge component (wasi-nn build).
pub fn live_with(eval: &Path, bin: &Path, component: &Path, args: &Args) -> Result<()> {
    fetch_models()?;
    step("Evaluation, live mode (eval live: the deployment against the replay)");
    let mut cmd = Command::new(eval);
    cmd.arg("live")
        .arg("--cloud-host")
        .arg(bin.join("cloud-host"))
        .arg("--edge-host")
        .arg(bin.join("edge-host"))
        .arg("--component")
        .arg(component);
    if let Some(data) = &args.data {
        cmd.arg("--data").arg(data);
    }
    match (&args.datasets, &args.data) {
        (Some(list), _) => {
            cmd.args(["--datasets", list]);
        }
        (None, None) => {
            cmd.args(["--datasets", LIVE_DATASETS]);
        }
        (None, Some(_)) => {}
    }
    cmd.args(&args.rest);
    run::run(cmd.current_dir(run::workspace_root()))
}

fn fetch_models() -> Result<()> {
    models::run(&models::Args {
        dir: None,
        verify: false,
        keep_wheels: false,
    })
    .map(|_| ())
}

fn title(args: &Args) -> &'static str {
    if args.quick {
        "Evaluation, quick mode (eval run)"
    } else {
        "Evaluation, full mode (eval run; resumable: rerun the same command to continue)"
    }
}

/// The arguments of `eval run` for `args`.
fn eval_args(args: &Args) -> Result<Vec<OsString>> {
    let mut out: Vec<OsString> = vec!["run".into()];
    if let Some(data) = &args.data {
        out.push("--data".into());
        out.push(data.into());
    }
    if args.quick {
        out.extend(["--quick".into(), args.quick_items.to_string().into()]);
        out.extend(["--bucket".into(), "4".into()]);
        out.push("--out".into());
        out.push(run::target_dir()?.join("eval").join("quick").into());
    }
    match (&args.datasets, args.quick) {
        (Some(list), _) => out.extend(["--datasets".into(), list.into()]),
        (None, true) if args.data.is_none() => {
            out.extend(["--datasets".into(), QUICK_DATASETS.into()]);
        }
        _ => {}
    }
    out.extend(args.rest.iter().cloned());
    Ok(out)
}
