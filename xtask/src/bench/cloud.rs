//! `cargo xtask bench cloud`: the cloud host against llama.cpp's `llama-server` (continuous
//! batching, `-np 16`) on the same GGUF and thread count, in one run: aggregate output tokens/s
//! and time to first token at 1, 4 and 16 concurrent streaming clients, from
//! `cloud-host/examples/loadgen.rs`. The two servers run side by side and take turns, rep by
//! rep, so both see the same machine.

use super::Row;
use crate::run::{self, cargo, step};
use crate::{llama_cpp, models};
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kernel threads for both servers (the machine's two cores).
const THREADS: usize = 2;
/// Output tokens asked for per request.
const MAX_TOKENS: usize = 64;
const CLIENTS: [usize; 3] = [1, 4, 16];

/// A server process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cloud(args: &super::Args) -> Result<Vec<Row>> {
    let reps = args.reps.max(1);
    let dir = models::run(&models::Args {
        dir: None,
        verify: false,
        keep_wheels: false,
    })?;
    let model = dir.join(models::DEVICE_FILE);
    let llama = llama_cpp::build(&["llama-server"])?;
    step("Building the cloud host and the load generator (release)");
    run::run(
        cargo()
            .args(["build", "--locked", "--release", "-p", "cloud-host"])
            .args(["--bin", "cloud-host", "--example", "loadgen"])
            .current_dir(run::workspace_root()),
    )?;
    let release = run::target_dir()?.join("release");
    let loadgen = release.join("examples/loadgen");

    step(&format!(
        "Benchmark: cloud-host against llama-server, {THREADS} threads, {MAX_TOKENS} tokens per \
         request, {reps} runs each"
    ));
    let ours = start_ours(&release.join("cloud-host"), &model)?;
    let theirs = start_llama_server(&llama.join("llama-server"), &model)?;
    for server in [&ours, &theirs] {
        measure(&loadgen, &server.url, 1, 1)?; // warm-up
    }
    let mut rows = Vec::new();
    for clients in CLIENTS {
        // Enough requests that every client sends at least two and the run lasts a few seconds.
        let per_client = (8 / clients).max(2);
        let mut runs: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
        for rep in 0..reps {
            let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let server = if side == 0 { &ours } else { &theirs };
                let report = measure(&loadgen, &server.url, clients, per_client)?;
                eprintln!(
                    "  clients={clients} {:<12} {:>7.1} tok/s  ttft p50 {:.3} s  p99 {:.3} s  errors {}",
                    if side == 0 {
                        "cloud-host"
                    } else {
                        "llama-server"
                    },
                    report["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
                    report["ttft_p50_s"].as_f64().unwrap_or(f64::NAN),
                    report["ttft_p99_s"].as_f64().unwrap_or(f64::NAN),
                    report["errors"],
                );
                if side == 0 && report["errors"].as_u64() != Some(0) {
                    bail!(
                        "cloud-host answered with errors at {clients} clients: {}",
                        report["first_error"]
                    );
                }
                runs[side].push(report);
            }
        }
        let median = |side: usize, key: &str| {
            let mut v: Vec<f64> = runs[side].iter().filter_map(|r| r[key].as_f64()).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let (ours_tps, ref_tps) = (median(0, "tokens_per_s"), median(1, "tokens_per_s"));
        rows.push(Row {
            name: format!("throughput clients={clients}"),
            ours: ours_tps,
            reference: ref_tps,
            unit: "tok/s",
            ratio: ours_tps / ref_tps,
        });
        for (key, label) in [("ttft_p50_s", "ttft-p50"), ("ttft_p99_s", "ttft-p99")] {
            let (o, r) = (median(0, key), median(1, key));
            rows.push(Row {
                name: format!("{label} clients={clients}"),
                ours: o,
                reference: r,
                unit: "s",
                // Time: less is better.
                ratio: r / o,
            });
        }
    }
    Ok(rows)
}

fn measure(loadgen: &Path, url: &str, clients: usize, per_client: usize) -> Result<Value> {
    let out = run::output(Command::new(loadgen).args([
        url,
        &clients.to_string(),
        &per_client.to_string(),
        &MAX_TOKENS.to_string(),
    ]))?;
    let line = out.lines().last().context("loadgen printed nothing")?;
    serde_json::from_str(line).with_context(|| format!("loadgen printed {line:?}"))
}

fn start_ours(binary: &Path, model: &Path) -> Result<Server> {
    let mut child = Command::new(binary)
        .arg("--model")
        .arg(model)
        .args(["--addr", "127.0.0.1:0", "--threads", &THREADS.to_string()])
        .args(["--max-batch", "16", "--max-queue", "256"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("could not start {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_owned)
        .with_context(|| format!("cloud-host printed {line:?} instead of its address"))?;
    Ok(Server { child, url })
}

fn start_llama_server(binary: &Path, model: &Path) -> Result<Server> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(binary)
        .arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-t", &THREADS.to_string(), "-np", "16", "-c", "8192"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("could not start {}", binary.display()))?;
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !healthy(port) {
        if Instant::now() > deadline {
            bail!("llama-server did not become ready in 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(server)
}

/// `GET /health` answers 200 (llama-server answers 503 while it loads the model).
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}
