//! `cargo xtask bench NAME`: runs one benchmark, prints a table of ours against the reference
//! measured in the same run, and writes `target/bench/NAME.json` as
//! `{"bench": NAME, "rows": [{"name", "ours", "reference", "unit", "ratio"}]}`, where `ratio`
//! is oriented so that higher is better for us.

use crate::run::{self, cargo, step};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::fs;
use std::path::Path;

#[derive(clap::Args)]
pub struct Args {
    /// Which benchmark: offload (engine, cloud, edge and device come with their issues).
    pub name: String,
}

#[derive(Serialize)]
struct Report {
    bench: String,
    rows: Vec<Row>,
}

#[derive(Serialize)]
struct Row {
    name: String,
    ours: f64,
    reference: f64,
    unit: &'static str,
    ratio: f64,
}

pub fn run(args: &Args) -> Result<()> {
    let rows = match args.name.as_str() {
        "offload" => offload()?,
        "engine" | "cloud" | "edge" | "device" => bail!(
            "benchmark `{}` is not built yet: it comes with the {} (see README.md, Status)",
            args.name,
            match args.name.as_str() {
                "engine" => "llm engine (issue 3)",
                "cloud" => "cloud host (issue 4)",
                "edge" => "edge tier (issue 5)",
                _ => "device tier (issue 6)",
            }
        ),
        other => bail!("no benchmark named `{other}`; the benchmarks are: offload"),
    };
    let report = Report {
        bench: args.name.clone(),
        rows,
    };
    print_table(&report);
    let dir = run::target_dir()?.join("bench");
    fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", args.name));
    fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Threshold update+query of the shared crate's sliding window against a re-sort per request
/// (what the paper's reference code does), at the window sizes the paper uses.
fn offload() -> Result<Vec<Row>> {
    step("Benchmark: offload threshold update+query (criterion)");
    run::run(
        cargo()
            .args(["bench", "--locked", "-p", "offload", "--bench", "threshold"])
            .current_dir(run::workspace_root()),
    )?;
    let group = run::target_dir()?
        .join("criterion")
        .join("threshold_update_query");
    let mut rows = Vec::new();
    for k in [100, 1_000, 10_000] {
        let ours = criterion_mean_ns(&group.join("ours").join(k.to_string()))?;
        let reference = criterion_mean_ns(&group.join("naive_resort").join(k.to_string()))?;
        rows.push(Row {
            name: format!("threshold update+query k={k}"),
            ours,
            reference,
            unit: "ns",
            // Time: less is better, so the ratio is reference over ours.
            ratio: reference / ours,
        });
    }
    Ok(rows)
}

/// The mean point estimate (ns) criterion wrote for one benchmark of this run.
fn criterion_mean_ns(dir: &Path) -> Result<f64> {
    let path = dir.join("new").join("estimates.json");
    let text = fs::read_to_string(&path)
        .with_context(|| format!("criterion wrote no {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    json["mean"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("{} has no mean.point_estimate", path.display()))
}

fn print_table(report: &Report) {
    println!(
        "\n{:<36} {:>14} {:>14} {:>6} {:>8}",
        "benchmark", "ours", "reference", "unit", "ratio"
    );
    for row in &report.rows {
        println!(
            "{:<36} {:>14.1} {:>14.1} {:>6} {:>7.2}x",
            row.name, row.ours, row.reference, row.unit, row.ratio
        );
    }
    println!("(ratio: higher is better for ours; both measured in this run)");
}
