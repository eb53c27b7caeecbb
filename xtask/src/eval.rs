//! `cargo xtask eval`: the RecServe comparison on the shared datasets (issue 7). It fetches the
//! default models if they are missing and runs the `eval` harness: every tier's model once per
//! item (traces cached in `target/eval/traces`, resumable), then every policy replayed over the
//! traces, written as `summary.json`, `tables.md`, `shift.json` and SVG plots.

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
    /// Folder of JSONL datasets [default: ../shared/datasets]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Only these datasets (comma-separated names as `cargo run -p eval -- datasets` lists them)
    /// [default: every classification, translation and multiple-choice file; the quick set in
    /// quick mode]
    #[arg(long)]
    pub datasets: Option<String>,
    /// More arguments for `eval run` (tier models, prompting, shots, shift streams; see
    /// `cargo run -p eval -- run --help`)
    #[arg(last = true)]
    pub rest: Vec<OsString>,
}

pub fn run(args: &Args) -> Result<()> {
    fetch_models()?;
    step(title(args));
    let mut cmd = cargo();
    cmd.args(["run", "--locked", "--quiet", "-p", "eval", "--"]);
    cmd.args(eval_args(args)?);
    run::run(cmd.current_dir(run::workspace_root()))
}

/// Quick mode with an `eval` binary already built (`cargo xtask test` takes the one its test
/// build made: building it on its own would resolve features differently and rebuild much of
/// the tree).
pub fn quick_with(binary: &Path) -> Result<()> {
    let args = Args {
        quick: true,
        quick_items: QUICK_ITEMS,
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
