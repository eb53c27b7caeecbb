//! `cargo xtask bench device`: the device model's speed in headless Chromium. wasm-device
//! (release build, CPU, one thread, in its worker; the relaxed-SIMD build the browser picks and
//! the simd128 build other browsers get) against wllama (llama.cpp compiled
//! to WebAssembly, npm `@wllama/wllama`, `n_threads: 1`, no GPU layers) on the same GGUF in the
//! same browser, runs alternating (www/bench.html); wasm-device's threaded build (up to four
//! threads, as many as the browser reports cores) against its one-thread build; and the
//! one-thread decode against llama.cpp's native `llama-bench` on one thread.

use super::{GENERATE, PROMPT, Row, llama_bench};
use crate::run::{self, step};
use crate::{browser, llama_cpp, models, web};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;

pub fn device(args: &super::Args) -> Result<Vec<Row>> {
    let reps = args.reps.max(1);
    let dir = models::run(&models::Args {
        dir: None,
        verify: false,
        keep_wheels: false,
    })?;
    let model = dir.join(models::DEVICE_FILE);
    let bin = llama_cpp::build(&["llama-bench"])?;
    let pkg = web::build_page(true)?;
    let chromium = browser::chromium()?;
    let tests = browser::node_packages()?;

    step(&format!(
        "Benchmark: device model in Chromium, wasm-device against wllama, {reps} runs each"
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut site = web::Site::new(pkg, dir.clone(), "");
    site.extra
        .push(("/wllama".into(), tests.join("node_modules/@wllama/wllama")));
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let addr = runtime.block_on(web::serve(&site, loopback))?;
    let url = format!(
        "http://{addr}/bench.html?model=models/{}&prompt={PROMPT}&decode={GENERATE}&reps={reps}",
        models::DEVICE_FILE
    );
    let out = run::output(
        std::process::Command::new("node")
            .arg(tests.join("bench.mjs"))
            .env("LADDER_BENCH_URL", &url)
            .env("CHROMIUM", &chromium)
            .current_dir(&tests)
            .stderr(std::process::Stdio::inherit()),
    );
    runtime.shutdown_background();
    let out = out?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("the benchmark page printed no result")?;
    let result: serde_json::Value = serde_json::from_str(line).context("parsing its result")?;
    if let Some(err) = result["error"].as_str() {
        bail!("the benchmark page failed: {err}");
    }
    let mean = |engine: &str, key: &str| -> Result<f64> {
        let runs = result["runs"][engine]
            .as_array()
            .with_context(|| format!("no runs of {engine}"))?;
        let values: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
        if values.is_empty() || values.len() != runs.len() {
            bail!("{engine}'s runs lack `{key}`");
        }
        Ok(values.iter().sum::<f64>() / values.len() as f64)
    };
    let ours_decode = mean("wasm-device", "decode_tok_s")?;
    let ours_prefill = mean("wasm-device", "prefill_tok_s")?;
    let simd128_decode = mean("wasm-device-simd128", "decode_tok_s")?;
    let simd128_prefill = mean("wasm-device-simd128", "prefill_tok_s")?;
    // Which build the browser picked (Chromium has relaxed SIMD since 114).
    let kernels = result["kernels"]["wasm-device"]
        .as_str()
        .context("the page did not say which kernels wasm-device ran")?
        .to_string();
    eprintln!("  wasm-device ran its {kernels} build");
    let wllama_decode = mean("wllama", "decode_tok_s")?;
    let wllama_prefill = mean("wllama", "prefill_tok_s")?;

    step(&format!(
        "Benchmark: native llama.cpp on one thread (llama-bench), {reps} runs"
    ));
    let mut native = 0.0;
    for _ in 0..reps {
        native += llama_bench(&bin, &model, 1)?.1;
    }
    native /= reps as f64;

    let row = |name: &str, ours: f64, reference: f64| Row {
        name: name.to_string(),
        ours,
        reference,
        unit: "tok/s",
        ratio: ours / reference,
    };
    let mut rows = vec![
        row("decode cpu threads=1", ours_decode, wllama_decode),
        row("prefill cpu threads=1", ours_prefill, wllama_prefill),
        row("decode cpu threads=1 vs native", ours_decode, native),
        // The build for browsers without relaxed SIMD.
        row(
            "decode cpu-simd128 threads=1",
            simd128_decode,
            wllama_decode,
        ),
        row(
            "prefill cpu-simd128 threads=1",
            simd128_prefill,
            wllama_prefill,
        ),
    ];
    // The threaded build against the one-thread build (where the page got threads).
    if result["runs"]["wasm-device-threads"].is_array() {
        let threads = result["threads"]["wasm-device-threads"]
            .as_u64()
            .unwrap_or(0);
        for (phase, one) in [("decode", ours_decode), ("prefill", ours_prefill)] {
            let many = mean("wasm-device-threads", &format!("{phase}_tok_s"))?;
            rows.push(row(
                &format!("{phase} cpu threads={threads} vs threads=1"),
                many,
                one,
            ));
        }
    }
    // The WebGPU path, against the CPU path of the same run (where the browser has an
    // adapter; on a software adapter a check that it runs, not a speed claim).
    let gpu = &result["webgpu"];
    if let Some(err) = gpu["error"].as_str() {
        bail!("the WebGPU run failed: {err}");
    }
    if let Some(decode) = gpu["decode_tok_s"].as_f64() {
        let software = gpu["fallback_adapter"].as_bool().unwrap_or(false);
        eprintln!(
            "  WebGPU: {decode:.2} tok/s decoding{}",
            if software {
                " on a software adapter"
            } else {
                ""
            }
        );
        rows.push(row("decode webgpu", decode, ours_decode));
    }
    Ok(rows)
}
