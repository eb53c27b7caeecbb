//! The edge benchmark (`cargo xtask bench edge` runs it): decode speed of the edge model through
//! the component, in both builds, against `llm` called natively in this same process, plus the
//! per-request overhead of a request that does not touch the model.
//!
//! ```text
//! edge_bench --wasi-nn WASM --in-wasm WASM --model GGUF [--threads N] [--tokens N] [--reps N]
//!       [--requests N]
//! ```
//! Prints one JSON object per line: `{"name", "ours", "reference", "unit", "ratio"}`.
//!
//! Decode speed through the component is what the component measured itself (its hop record's
//! generated tokens over `decode_ms`, which includes every wasi-nn call, the copy of the logits
//! into the guest and sampling there); natively it is `llm::Generation` on the same prompt with
//! the same greedy settings, timed the same way (first token sampled from the prefill's logits
//! to last token). Runs alternate between the two.

use anyhow::{Context, Result, bail};
use edge_host::manifest::FileMount;
use edge_host::nn::GraphSpec;
use edge_host::{Application, Options};
use llm::chat::Message;
use llm::generate::{Generation, SamplingParams};
use llm::models::ModelOptions;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROMPT: &str = "Write a long story about a dragon who learns to sing.";

struct Args {
    wasi_nn: PathBuf,
    in_wasm: PathBuf,
    model: PathBuf,
    threads: usize,
    tokens: u32,
    reps: usize,
    requests: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        wasi_nn: PathBuf::new(),
        in_wasm: PathBuf::new(),
        model: PathBuf::new(),
        threads: 2,
        tokens: 32,
        reps: 3,
        requests: 300,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--wasi-nn" => a.wasi_nn = value.into(),
            "--in-wasm" => a.in_wasm = value.into(),
            "--model" => a.model = value.into(),
            "--threads" => a.threads = value.parse()?,
            "--tokens" => a.tokens = value.parse()?,
            "--reps" => a.reps = value.parse()?,
            "--requests" => a.requests = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if a.model.as_os_str().is_empty() || a.wasi_nn.as_os_str().is_empty() {
        bail!(
            "usage: edge_bench --wasi-nn WASM --in-wasm WASM --model GGUF [--threads N] [--tokens N] [--reps N] [--requests N]"
        );
    }
    Ok(a)
}

/// The repository's manifest with its component source replaced.
fn manifest(dir: &Path, file: &str, component: &Path) -> Result<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../edge-fn")
        .join(file);
    let text = std::fs::read_to_string(&repo)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("source = "))
        .context("no component source")?;
    let text = text.replace(
        line,
        &format!("source = {:?}", component.display().to_string()),
    );
    let path = dir.join(file);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Serves `options` in this process; returns its URL.
async fn start(options: Options) -> Result<String> {
    let app = Application::load(&options)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = app
            .serve(
                "127.0.0.1:0".parse().unwrap_or(([127, 0, 0, 1], 0).into()),
                |addr| {
                    let _ = tx.send(addr);
                },
            )
            .await;
    });
    Ok(format!("http://{}", rx.await?))
}

/// One generation through the component: (tokens, decode tok/s from its hop record).
async fn component_decode(client: &reqwest::Client, url: &str, tokens: u32) -> Result<(u32, f64)> {
    let body = json!({
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "offload": {"policy": {"name": "casserve", "thresholds": 0.0}},
    });
    let response: Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    let hop = &response["offload"]["hops"][0];
    let generated = hop["tokens"]["completion"]
        .as_u64()
        .with_context(|| format!("no token count in {response}"))?;
    let decode_ms = hop["timings"]["decode_ms"]
        .as_f64()
        .context("no decode time")?;
    Ok((generated as u32, generated as f64 / (decode_ms / 1e3)))
}

/// One generation natively: (tokens, decode tok/s).
fn native_decode(model: &llm::Model, prompt: &[u32], tokens: u32) -> Result<(u32, f64)> {
    let params = SamplingParams {
        max_tokens: tokens as usize,
        ..SamplingParams::default()
    };
    let generation = Generation::start(model, prompt, params)?;
    let started = Instant::now();
    let mut n = 0u32;
    for token in generation {
        token?;
        n += 1;
    }
    Ok((n, f64::from(n) / started.elapsed().as_secs_f64()))
}

fn row(name: &str, ours: f64, reference: f64, unit: &str, ratio: f64) {
    println!(
        "{}",
        json!({"name": name, "ours": ours, "reference": reference, "unit": unit, "ratio": ratio})
    );
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn main() -> Result<()> {
    let a = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(a))
}

async fn run(a: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let id = a
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;

    // The native reference, at the host's thread count and at one thread (a component has one).
    let native = |threads: usize| -> Result<(llm::Model, Vec<u32>)> {
        let model = llm::Model::load_with(
            &a.model,
            &ModelOptions {
                threads: Some(threads),
                context: Some(1024),
                ..Default::default()
            },
        )?;
        let template = model.chat_template().context("no chat template")?;
        let prompt = template.encode(model.tokenizer(), &[Message::user(PROMPT)], true);
        Ok((model, prompt))
    };
    let (model_n, prompt) = native(a.threads)?;
    let (model_1, _) = native(1)?;

    // The wasi-nn build in edge-host, with the same model and threads.
    let mut options = Options::new(manifest(dir.path(), "spin.toml", &a.wasi_nn)?);
    options.graphs = vec![GraphSpec {
        name: id.clone(),
        path: a.model.clone(),
    }];
    options.threads = Some(a.threads);
    options.context = Some(1024);
    options.state_dir = Some(dir.path().join("state-nn"));
    options.variables = vec![("model".into(), id.clone())];
    let nn_url = start(options).await?;

    let mut options = Options::new(manifest(dir.path(), "spin-in-wasm.toml", &a.in_wasm)?);
    let models_dir = a.model.parent().context("model path has no directory")?;
    options.dirs = vec![FileMount {
        source: models_dir.to_path_buf(),
        destination: "/models".into(),
    }];
    options.state_dir = Some(dir.path().join("state-in-wasm"));
    options.variables = vec![
        ("model".into(), id.clone()),
        (
            "model_file".into(),
            format!(
                "/models/{}",
                a.model
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            ),
        ),
        ("context".into(), "1024".into()),
    ];
    let in_wasm_url = start(options).await?;

    // Warm-up: one of each (page cache, first compiles of lazily built state).
    component_decode(&client, &nn_url, 4).await?;
    native_decode(&model_n, &prompt, 4)?;

    let (mut nn, mut nat_n, mut inw, mut nat_1) = (vec![], vec![], vec![], vec![]);
    for rep in 0..a.reps.max(1) {
        eprintln!(
            "rep {}: wasi-nn, native x{}, in-wasm, native x1",
            rep + 1,
            a.threads
        );
        if rep % 2 == 0 {
            nn.push(component_decode(&client, &nn_url, a.tokens).await?.1);
            nat_n.push(native_decode(&model_n, &prompt, a.tokens)?.1);
        } else {
            nat_n.push(native_decode(&model_n, &prompt, a.tokens)?.1);
            nn.push(component_decode(&client, &nn_url, a.tokens).await?.1);
        }
        inw.push(component_decode(&client, &in_wasm_url, a.tokens).await?.1);
        nat_1.push(native_decode(&model_1, &prompt, a.tokens)?.1);
    }
    let t = a.threads;
    row(
        "decode wasi-nn",
        mean(&nn),
        mean(&nat_n),
        "tok/s",
        mean(&nn) / mean(&nat_n),
    );
    row(
        &format!("decode in-wasm (vs native threads={t})"),
        mean(&inw),
        mean(&nat_n),
        "tok/s",
        mean(&inw) / mean(&nat_n),
    );
    row(
        "decode in-wasm (vs native threads=1)",
        mean(&inw),
        mean(&nat_1),
        "tok/s",
        mean(&inw) / mean(&nat_1),
    );

    // Overhead: a request that instantiates the component and answers without the model.
    for _ in 0..20 {
        client
            .get(format!("{nn_url}/health"))
            .send()
            .await?
            .bytes()
            .await?;
    }
    let mut times = Vec::with_capacity(a.requests);
    for _ in 0..a.requests.max(1) {
        let started = Instant::now();
        let response = client.get(format!("{nn_url}/health")).send().await?;
        if !response.status().is_success() {
            bail!("GET /health answered {}", response.status());
        }
        response.bytes().await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let p50 = times[times.len() / 2];
    let budget = 2.0;
    row("overhead", p50, budget, "ms", budget / p50);
    eprintln!(
        "overhead over {} requests: p50 {p50:.3} ms, p90 {:.3} ms",
        times.len(),
        times[times.len() * 9 / 10]
    );
    Ok(())
}
