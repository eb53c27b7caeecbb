//! The wasmtime component tests (issue 5): the built `edge-fn` component, served by `edge-host`
//! from the repository's `spin.toml` (pointed at the debug build), with the real edge model
//! (Gemma-3-270M) behind wasi-nn, and a stub cloud on 127.0.0.1.
//!
//! Policies are chosen per request (`offload.policy`), so the decisions are known in advance:
//! CasServe with threshold 0 keeps every answer (a confidence is never below 0), threshold 1
//! offloads every one (a perplexity confidence is at most 1/2); RecServe shows the windows.

use anyhow::{Context, Result, bail};
use ladder_tests::build::{self, EDGE_MODEL_FILE, EDGE_MODEL_ID};
use ladder_tests::serve::Server;
use ladder_tests::stub::{self, Behaviour, StubCloud};
use offload::wire::sse::decode_chat_stream;
use offload::wire::{ChatCompletionChunk, ChatCompletionResponse, StreamItem};
use offload::{Tier, wire::HopOutcome};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    WasiNn,
    InWasm,
}

const KEEP: &str = r#"{"name": "casserve", "thresholds": 0.0}"#;
const OFFLOAD: &str = r#"{"name": "casserve", "thresholds": 1.0}"#;
const RECSERVE: &str = r#"{"name": "recserve", "beta": 0.5, "k": 100}"#;

/// A closed port on loopback (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9)
}

/// The repository's manifest for `flavour`, written into `dir` with its component source
/// pointed at the debug build and every `(from, to)` replacement applied.
fn manifest(flavour: Flavour, dir: &Path, replace: &[(&str, &str)]) -> Result<PathBuf> {
    let components = build::edge_components()?;
    let (file, component) = match flavour {
        Flavour::WasiNn => ("spin.toml", &components.wasi_nn),
        Flavour::InWasm => ("spin-in-wasm.toml", &components.in_wasm),
    };
    let mut text =
        build::manifest_with_source(&build::workspace().join("edge-fn").join(file), component)?;
    for (from, to) in replace {
        if !text.contains(from) {
            bail!("the manifest has no {from:?} to replace");
        }
        text = text.replace(from, to);
    }
    let path = dir.join(file);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// edge-host serving `manifest`, with the edge model as its wasi-nn graph.
async fn edge_host(
    flavour: Flavour,
    manifest: &Path,
    state: &Path,
    vars: &[(&str, String)],
    extra: &[&str],
) -> Result<Server> {
    let host = build::binary("edge-host", "edge-host")?;
    let model = build::model(EDGE_MODEL_FILE)?;
    let mut args: Vec<String> = vec![
        "--manifest".into(),
        manifest.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "--nn-graph".into(),
        format!("{EDGE_MODEL_ID}={}", model.display()),
        "--threads".into(),
        "1".into(),
        "--context".into(),
        "1024".into(),
    ];
    if flavour == Flavour::InWasm {
        args.push("--dir".into());
        args.push(format!("{}::/models", build::models().display()));
        args.push("--var".into());
        args.push("context=1024".into());
    }
    for (k, v) in vars {
        args.push("--var".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start(&host, &args, Duration::from_secs(300)).await
}

fn request(prompt: &str, policy: &str, stream: bool) -> Value {
    json!({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": true,
        "stream": stream,
        "offload": {"policy": serde_json::from_str::<Value>(policy).unwrap_or(Value::Null), "request_id": prompt},
    })
}

async fn post(url: &str, body: &Value) -> Result<(u16, Vec<u8>)> {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(body)
        .timeout(Duration::from_secs(300))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.bytes().await?.to_vec()))
}

async fn chat(url: &str, body: &Value) -> Result<ChatCompletionResponse> {
    let (status, bytes) = post(url, body).await?;
    if status != 200 {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// A streamed answer: its text and the last extension seen.
async fn chat_stream(url: &str, body: &Value) -> Result<(String, offload::wire::OffloadResponse)> {
    let (status, bytes) = post(url, body).await?;
    if status != 200 {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    let mut text = String::new();
    let mut extension = None;
    let mut done = false;
    for item in decode_chat_stream(&bytes)? {
        match item {
            StreamItem::Chunk(ChatCompletionChunk {
                choices, offload, ..
            }) => {
                for c in choices {
                    text.push_str(c.delta.content.as_deref().unwrap_or(""));
                }
                extension = offload.or(extension);
            }
            StreamItem::Error(e) => bail!("error event: {e}"),
            StreamItem::Done => done = true,
        }
    }
    if !done {
        bail!("the stream did not end with [DONE]");
    }
    Ok((
        text,
        extension.context("no offload extension in the stream")?,
    ))
}

/// The `window_len` in a hop's decision reason (nested reasons included).
fn window_len(reason: &Value) -> Option<u64> {
    reason["window_len"]
        .as_u64()
        .or_else(|| window_len(&reason["because"]))
}

#[tokio::test(flavor = "multi_thread")]
async fn confident_answers_stay_and_unconfident_ones_reach_the_cloud() -> Result<()> {
    let cloud = StubCloud::start(Behaviour::Answer).await?;
    let dir = tempfile::tempdir()?;
    let m = manifest(Flavour::WasiNn, dir.path(), &[])?;
    let edge = edge_host(
        Flavour::WasiNn,
        &m,
        &dir.path().join("state"),
        &[("cloud_url", cloud.url.clone())],
        &[],
    )
    .await?;

    // Kept: the edge's own answer, one hop record.
    let kept = chat(&edge.url, &request("Name a colour.", KEEP, false)).await?;
    let ext = kept.offload.as_ref().context("no extension")?;
    assert_eq!(ext.answered_by, Tier::Edge);
    assert_eq!(ext.hops.len(), 1);
    let hop = &ext.hops[0];
    assert_eq!((hop.tier, hop.outcome), (Tier::Edge, HopOutcome::Answered));
    assert_eq!(hop.model, EDGE_MODEL_ID);
    let confidence = hop.confidence.context("no confidence")?;
    assert!(confidence > 0.0 && confidence <= 0.5, "{confidence}");
    assert_eq!(hop.threshold, Some(0.0));
    assert!(!kept.text().unwrap_or_default().is_empty());
    let logprobs = &kept.choices[0]
        .logprobs
        .as_ref()
        .context("no logprobs")?
        .content;
    assert_eq!(
        logprobs.len() as u32,
        kept.usage.context("no usage")?.completion_tokens
    );
    assert!(cloud.received().is_empty());

    // Offloaded: the cloud's answer, both records, the edge's with its link bytes.
    let up = chat(&edge.url, &request("Name a city.", OFFLOAD, false)).await?;
    assert_eq!(up.text().as_deref(), Some(stub::ANSWER));
    let ext = up.offload.as_ref().context("no extension")?;
    assert_eq!(ext.answered_by, Tier::Cloud);
    let tiers: Vec<_> = ext.hops.iter().map(|h| (h.tier, h.outcome)).collect();
    assert_eq!(
        tiers,
        [
            (Tier::Edge, HopOutcome::Offloaded),
            (Tier::Cloud, HopOutcome::Answered)
        ]
    );
    let edge_hop = &ext.hops[0];
    assert_eq!(edge_hop.threshold, Some(1.0));
    assert!(edge_hop.confident() == Some(false));
    let bytes = edge_hop.bytes.context("no link bytes")?;
    assert!(bytes.sent > 0 && bytes.received > 0, "{bytes:?}");
    // What reached the cloud: the client's request with the edge's record (without bytes).
    let received = cloud.received();
    assert_eq!(received.len(), 1);
    let sent_ext = received[0]
        .offload
        .as_ref()
        .context("forwarded without extension")?;
    assert_eq!(sent_ext.hops.len(), 1);
    assert_eq!(sent_ext.hops[0].outcome, HopOutcome::Offloaded);
    assert!(sent_ext.hops[0].bytes.is_none());
    assert_eq!(received[0].messages[0].text(), "Name a city.");

    // The same two paths streamed.
    let (text, ext) = chat_stream(&edge.url, &request("Name a fruit.", KEEP, true)).await?;
    assert!(!text.is_empty());
    assert_eq!(ext.answered_by, Tier::Edge);
    let (text, ext) = chat_stream(&edge.url, &request("Name a river.", OFFLOAD, true)).await?;
    assert_eq!(text, stub::ANSWER);
    assert_eq!(ext.answered_by, Tier::Cloud);
    assert!(
        ext.hop(Tier::Edge)
            .and_then(|h| h.bytes)
            .is_some_and(|b| b.received > 0)
    );
    assert_eq!(cloud.received().len(), 2);
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_persist_across_requests_and_a_host_restart() -> Result<()> {
    let cloud = StubCloud::start(Behaviour::Answer).await?;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    let m = manifest(Flavour::WasiNn, dir.path(), &[])?;
    let vars = [("cloud_url", cloud.url.clone())];
    let mut lens = Vec::new();
    let edge = edge_host(Flavour::WasiNn, &m, &state, &vars, &[]).await?;
    for prompt in ["Say hi.", "Count to three.", "Name a planet."] {
        let r = chat(&edge.url, &request(prompt, RECSERVE, false)).await?;
        let hop = r
            .offload
            .as_ref()
            .and_then(|o| o.hop(Tier::Edge))
            .context("no edge hop")?;
        lens.push(window_len(&serde_json::to_value(&hop.decision)?["reason"]));
    }
    edge.stop().await?;
    let edge = edge_host(Flavour::WasiNn, &m, &state, &vars, &[]).await?;
    let r = chat(&edge.url, &request("Name a metal.", RECSERVE, false)).await?;
    let hop = r
        .offload
        .as_ref()
        .and_then(|o| o.hop(Tier::Edge))
        .context("no edge hop")?;
    lens.push(window_len(&serde_json::to_value(&hop.decision)?["reason"]));
    assert_eq!(lens, [Some(1), Some(2), Some(3), Some(4)]);
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_that_is_down_slow_or_failing_gets_the_local_answer() -> Result<()> {
    let slow = StubCloud::start(Behaviour::Slow(Duration::from_secs(5))).await?;
    let failing = StubCloud::start(Behaviour::Fail(503)).await?;
    let down = format!("http://127.0.0.1:{}", closed_port());
    for (cloud, why) in [
        (down, "cannot reach"),
        (slow.url.clone(), "within"),
        (failing.url.clone(), "HTTP 503"),
    ] {
        let dir = tempfile::tempdir()?;
        let m = manifest(Flavour::WasiNn, dir.path(), &[])?;
        let vars = [
            ("cloud_url", cloud),
            ("cloud_timeout_ms", "500".to_string()),
        ];
        let edge = edge_host(Flavour::WasiNn, &m, &dir.path().join("state"), &vars, &[]).await?;
        let r = chat(&edge.url, &request("Name a tree.", OFFLOAD, false)).await?;
        let ext = r.offload.as_ref().context("no extension")?;
        assert_eq!(ext.answered_by, Tier::Edge);
        let hop = ext.hop(Tier::Edge).context("no edge hop")?;
        assert_eq!(hop.outcome, HopOutcome::Fallback);
        let error = hop.error.as_deref().unwrap_or_default();
        assert!(error.contains(why), "{error:?} should say {why:?}");
        assert!(!r.text().unwrap_or_default().is_empty());
        // Streamed, the fallback streams the local answer.
        let (text, ext) = chat_stream(&edge.url, &request("Name a bird.", OFFLOAD, true)).await?;
        assert!(!text.is_empty());
        assert_eq!(
            ext.hop(Tier::Edge).map(|h| h.outcome),
            Some(HopOutcome::Fallback)
        );
        edge.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_outbound_host_fails_closed() -> Result<()> {
    let cloud = StubCloud::start(Behaviour::Answer).await?;
    let dir = tempfile::tempdir()?;
    let elsewhere = format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
        closed_port()
    );
    let m = manifest(
        Flavour::WasiNn,
        dir.path(),
        &[(
            "allowed_outbound_hosts = [\"{{ cloud_url }}\"]",
            elsewhere.as_str(),
        )],
    )?;
    let edge = edge_host(
        Flavour::WasiNn,
        &m,
        &dir.path().join("state"),
        &[("cloud_url", cloud.url.clone())],
        &[],
    )
    .await?;
    let r = chat(&edge.url, &request("Name a stone.", OFFLOAD, false)).await?;
    let hop = r
        .offload
        .as_ref()
        .and_then(|o| o.hop(Tier::Edge))
        .context("no edge hop")?;
    assert_eq!(hop.outcome, HopOutcome::Fallback);
    let error = hop.error.as_deref().unwrap_or_default();
    assert!(error.contains("Denied"), "{error:?}");
    assert!(
        cloud.received().is_empty(),
        "a denied host must not be reached"
    );
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_4xx_with_an_error_body() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let m = manifest(Flavour::WasiNn, dir.path(), &[])?;
    let edge = edge_host(Flavour::WasiNn, &m, &dir.path().join("state"), &[], &[]).await?;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", edge.url);
    let big = "x".repeat(3 * 1024 * 1024);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (client.post(&url).body("{not json"), 400, "not valid JSON"),
        (client.post(&url).body(r#"{"model": "m"}"#), 400, "messages"),
        (client.post(&url).body(r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": 5}"#), 422, "temperature"),
        (client.post(&url).body(r#"{"messages": [{"role": "user", "content": "hi"}], "offload": {"hops": [{"tier": "edge", "outcome": "offloaded"}]}}"#), 422, "loop"),
        (client.post(&url).body(big), 413, "limit"),
        (client.get(&url), 405, "not allowed"),
        (client.get(format!("{}/nope", edge.url)), 404, "not"),
    ];
    for (builder, status, needle) in cases {
        let response = builder.send().await?;
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await?;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{status}: {message:?} should mention {needle:?}"
        );
    }
    // The models list answers without the model.
    let models: Value = client
        .get(format!("{}/v1/models", edge.url))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(models["data"][0]["id"], EDGE_MODEL_ID);
    edge.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_in_wasm_build_gives_the_same_decisions() -> Result<()> {
    let cloud = StubCloud::start(Behaviour::Answer).await?;
    let prompts = ["Say hi.", "Count to three.", "Name a planet."];
    let mut runs = Vec::new();
    for flavour in [Flavour::WasiNn, Flavour::InWasm] {
        let dir = tempfile::tempdir()?;
        let m = manifest(flavour, dir.path(), &[])?;
        let edge = edge_host(
            flavour,
            &m,
            &dir.path().join("state"),
            &[("cloud_url", cloud.url.clone())],
            &[],
        )
        .await?;
        let mut run = Vec::new();
        for prompt in prompts {
            let mut body = request(prompt, RECSERVE, false);
            body["offload"]["request_id"] = json!(prompt);
            let r = chat(&edge.url, &body).await?;
            let hop = r
                .offload
                .as_ref()
                .and_then(|o| o.hop(Tier::Edge))
                .context("no edge hop")?
                .clone();
            run.push((
                serde_json::to_value(&hop.decision)?,
                hop.confidence.context("no confidence")?,
                hop.tokens,
            ));
        }
        edge.stop().await?;
        runs.push(run);
    }
    for ((d1, c1, t1), (d2, c2, t2)) in runs[0].iter().zip(&runs[1]) {
        assert_eq!(t1, t2, "token counts differ");
        assert!(
            (c1 - c2).abs() <= 1e-6 * c1.abs().max(1e-12),
            "confidence {c1} vs {c2}"
        );
        assert_eq!(d1["action"], d2["action"], "{d1} vs {d2}");
        assert_eq!(window_len(&d1["reason"]), window_len(&d2["reason"]));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_component_gets_a_500_and_the_host_stays_up() -> Result<()> {
    // 64 MiB of memory cannot hold the 253 MB model the in-wasm build loads: the component
    // traps (out of memory) in the middle of the request.
    let dir = tempfile::tempdir()?;
    let m = manifest(Flavour::InWasm, dir.path(), &[])?;
    let edge = edge_host(
        Flavour::InWasm,
        &m,
        &dir.path().join("state"),
        &[],
        &["--max-memory-mib", "64"],
    )
    .await?;
    let (status, body) = post(&edge.url, &request("Hello?", KEEP, false)).await?;
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body)?;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("component"), "{message:?}");
    let health = reqwest::get(format!("{}/health", edge.url)).await?;
    assert_eq!(health.status().as_u16(), 200);
    edge.stop().await
}
