//! A load generator for OpenAI-compatible servers: N concurrent streaming clients, each sending
//! requests back to back; prints one JSON line with the aggregate output tokens per second and
//! the time-to-first-token percentiles. `cargo xtask bench cloud` runs it against this host and
//! against llama.cpp's `llama-server`.
//!
//! Usage: loadgen URL CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS
//!
//! Every request's message starts with a number of its own, different in this run and from
//! earlier runs, so no two prompts share more than the chat template's prefix: a server that
//! caches prompts (llama-server does by default) can reuse that prefix, as it would for real
//! traffic, but not an earlier request's whole prompt. Each request opens its
//! own connection: llama-server closes a connection after a streamed answer, and a pooled
//! client would count its next request on that connection as an error.

use offload::wire::{SseDecoder, SseEvent};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Prompts that ask for long answers, so most requests generate all `MAX_TOKENS` tokens.
const PROMPTS: [&str; 8] = [
    "Write a long story about a lighthouse keeper and a storm.",
    "Explain in detail how a steam engine works.",
    "Describe a journey across a desert, day by day.",
    "Write a long letter to a friend about your garden.",
    "Tell the history of a small fishing village.",
    "Describe how bread is made, step by step, in detail.",
    "Write a long poem about the sea in winter.",
    "Explain how to plan a long hiking trip in the mountains.",
];

struct Outcome {
    tokens: u64,
    ttft: Option<Duration>,
}

async fn one(
    client: &reqwest::Client,
    url: &str,
    prompt: &str,
    max_tokens: u32,
) -> Result<Outcome, String> {
    let body = json!({
        "model": "bench",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let started = Instant::now();
    let mut response = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut decoder = SseDecoder::new();
    let mut ttft = None;
    let mut content_chunks = 0u64;
    let mut usage = None;
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        for event in decoder.feed(&chunk).map_err(|e| e.to_string())? {
            let SseEvent::Data(data) = event else {
                continue;
            };
            let value: Value = serde_json::from_str(&data).map_err(|e| e.to_string())?;
            if value.get("error").is_some() {
                return Err(data);
            }
            let content = value["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("");
            if !content.is_empty() {
                content_chunks += 1;
                ttft.get_or_insert_with(|| started.elapsed());
            }
            if let Some(n) = value["usage"]["completion_tokens"].as_u64() {
                usage = Some(n);
            }
        }
    }
    Ok(Outcome {
        tokens: usage.unwrap_or(content_chunks),
        ttft,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: loadgen URL CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS";
    let (Some(url), Some(clients), Some(per_client), Some(max_tokens)) = (
        args.get(1).cloned(),
        args.get(2).and_then(|v| v.parse::<usize>().ok()),
        args.get(3).and_then(|v| v.parse::<usize>().ok()),
        args.get(4).and_then(|v| v.parse::<u32>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|e| {
            eprintln!("no HTTP client: {e}");
            std::process::exit(1);
        });
    // Differs between runs, so a prompt cache holds nothing past the template from a run before.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for r in 0..per_client {
                let n = c * per_client + r;
                let prompt = format!("Request {run}-{n}. {}", PROMPTS[n % PROMPTS.len()]);
                out.push(one(&client, &url, &prompt, max_tokens).await);
            }
            out
        }));
    }
    let mut tokens = 0u64;
    let mut errors = Vec::new();
    let mut ttfts = Vec::new();
    for task in tasks {
        match task.await {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(o) => {
                            tokens += o.tokens;
                            ttfts.extend(o.ttft.map(|d| d.as_secs_f64()));
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let wall = started.elapsed().as_secs_f64();
    ttfts.sort_by(f64::total_cmp);
    let report = json!({
        "clients": clients,
        "requests": clients * per_client,
        "errors": errors.len(),
        "first_error": errors.first(),
        "completion_tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens as f64 / wall,
        "ttft_p50_s": percentile(&ttfts, 0.50),
        "ttft_p99_s": percentile(&ttfts, 0.99),
    });
    println!("{report}");
}
