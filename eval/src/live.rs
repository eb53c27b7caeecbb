//! The live mode: a subset of each dataset sent through a freshly started deployment, compared
//! with the replay of the same items under the same policy.
//!
//! The deployment is the one users run: `cloud-host` serving the cloud model, a recording proxy
//! (this module) in front of it, and `edge-host` serving the edge component of
//! `edge-fn/spin.toml` with the edge model, its `cloud_url` pointing at the proxy, its key-value
//! store in a fresh folder (so the edge's windows start empty, as the replay's do). The device
//! tier is this process: its model runs natively with `llm` exactly as in the traces, it
//! decides with [`tier_step`] (the replay's own step) and, when it offloads, POSTs the body the
//! replay counts to the edge. Everything above the device is the deployment's doing: the edge
//! scores its answer through wasi-nn, keeps its windows in `wasi:keyvalue`, decides with
//! `offload`, forwards to the cloud and relays the answer.
//!
//! Checked per item (any difference is a mismatch, and the run fails): the tier that answered;
//! every tier's confidence against the trace (within [`CONFIDENCE_TOLERANCE`]); the answer's
//! text; the device→edge request, byte for byte; and the edge→cloud request and both responses
//! as JSON, equal to the replay's once the fields only a live tier fills are removed
//! ([`strip_volatile`]), which covers every hop record's outcome, decision and threshold.
//! Bytes are reported per link, live and replayed: responses differ by the fields a live server
//! fills (`id`, `created`, hop timings and bytes), and the report says by how much.

use crate::datasets::Dataset;
use crate::replay::{self, LinkBodies, StreamEntry, request_body, tier_step};
use crate::traces::{TraceRecord, TraceSource};
use anyhow::{Context, Result, anyhow, bail};
use ladder_tests::build::manifest_with_source;
use ladder_tests::serve::Server;
use offload::wire::{ChatCompletionResponse, HopOutcome, OffloadResponse};
use offload::{PolicySpec, Tier, Windows};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest difference allowed between a confidence (or threshold) the deployment reports and
/// the trace's. The tiers run the same kernels on the same model files, so the values agree to
/// far better than this; the margin covers the decimal round trip through JSON.
pub const CONFIDENCE_TOLERANCE: f64 = 1e-9;

/// How long one request through the deployment may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The programs and files of a deployment.
#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub cloud_host: PathBuf,
    pub edge_host: PathBuf,
    /// The edge component (`wasi-nn.wasm`).
    pub component: PathBuf,
    /// The application manifest whose component source is replaced by `component`.
    pub manifest: PathBuf,
    /// The edge and cloud GGUF files.
    pub edge_model: PathBuf,
    pub cloud_model: PathBuf,
    /// The model ids the tiers report (the traces' model names).
    pub edge_model_id: String,
    pub cloud_model_id: String,
    /// Kernel threads of each host.
    pub threads: usize,
    /// A folder for the manifest copy and the edge's key-value store (emptied first).
    pub work_dir: PathBuf,
}

/// How long a host may take to load its model and start listening.
const STARTUP: Duration = Duration::from_secs(300);

/// One exchange the proxy saw: the edge's request to the cloud and the cloud's answer.
#[derive(Debug, Clone)]
struct Exchange {
    request: Vec<u8>,
    status: u16,
    response: Vec<u8>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    seen: Arc<Mutex<Vec<Exchange>>>,
}

/// Forwards a request to the cloud as it is and records both bodies.
async fn relay(
    axum::extract::State(state): axum::extract::State<ProxyState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let bad = |why: String| (axum::http::StatusCode::BAD_GATEWAY, why).into_response();
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return bad(format!("proxy: reading the request: {e}")),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut out = state
        .client
        .request(parts.method.clone(), format!("{}{path}", state.upstream))
        .body(bytes.to_vec());
    if let Some(ct) = parts.headers.get(axum::http::header::CONTENT_TYPE) {
        out = out.header(axum::http::header::CONTENT_TYPE, ct.clone());
    }
    let reply = match out.send().await {
        Ok(r) => r,
        Err(e) => return bad(format!("proxy: the cloud: {e}")),
    };
    let status = reply.status();
    let content_type = reply.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let answer = match reply.bytes().await {
        Ok(b) => b,
        Err(e) => return bad(format!("proxy: reading the cloud's answer: {e}")),
    };
    if let Ok(mut seen) = state.seen.lock() {
        seen.push(Exchange {
            request: bytes.to_vec(),
            status: status.as_u16(),
            response: answer.to_vec(),
        });
    }
    let mut response = (status, answer.to_vec()).into_response();
    if let Some(ct) = content_type {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, ct);
    }
    response
}

/// A running deployment: cloud-host, the recording proxy, edge-host.
pub struct Deployment {
    // Fields drop in order: the edge stops first, and the runtime last.
    edge: Server,
    _cloud: Server,
    client: reqwest::Client,
    seen: Arc<Mutex<Vec<Exchange>>>,
    runtime: tokio::runtime::Runtime,
}

impl Deployment {
    /// Starts the three processes; the edge's store starts empty.
    pub fn start(config: &DeploymentConfig) -> Result<Deployment> {
        for (what, path) in [
            ("cloud-host", &config.cloud_host),
            ("edge-host", &config.edge_host),
            ("the edge component", &config.component),
        ] {
            if !path.is_file() {
                bail!(
                    "{what} is missing at {} (`cargo xtask eval --live` builds it)",
                    path.display()
                );
            }
        }
        let threads = config.threads.max(1).to_string();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let cloud_args = [
            "--model".to_string(),
            config.cloud_model.display().to_string(),
            "--model-id".into(),
            config.cloud_model_id.clone(),
            "--threads".into(),
            threads.clone(),
        ];
        let cloud = runtime.block_on(Server::start(&config.cloud_host, &cloud_args, STARTUP))?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            upstream: cloud.url.clone(),
            client: client.clone(),
            seen: seen.clone(),
        };
        let proxy_url = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let app = axum::Router::new().fallback(relay).with_state(state);
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("the recording proxy stopped: {e}");
                }
            });
            Ok::<_, std::io::Error>(format!("http://{addr}"))
        })?;

        if config.work_dir.exists() {
            std::fs::remove_dir_all(&config.work_dir)
                .with_context(|| format!("emptying {}", config.work_dir.display()))?;
        }
        std::fs::create_dir_all(&config.work_dir)?;
        let manifest = config.work_dir.join("spin.toml");
        std::fs::write(
            &manifest,
            manifest_with_source(&config.manifest, &config.component)?,
        )
        .with_context(|| format!("writing {}", manifest.display()))?;
        let edge_args = [
            "--manifest".to_string(),
            manifest.display().to_string(),
            "--state-dir".into(),
            config.work_dir.join("state").display().to_string(),
            "--nn-graph".into(),
            format!("{}={}", config.edge_model_id, config.edge_model.display()),
            "--threads".into(),
            threads,
            "--var".into(),
            format!("cloud_url={proxy_url}"),
            "--var".into(),
            format!("model={}", config.edge_model_id),
            "--var".into(),
            format!("cloud_timeout_ms={}", REQUEST_TIMEOUT.as_millis()),
        ];
        let edge = runtime.block_on(Server::start(&config.edge_host, &edge_args, STARTUP))?;
        Ok(Deployment {
            edge,
            _cloud: cloud,
            client,
            seen,
            runtime,
        })
    }

    /// POSTs `body` to the edge's chat endpoint: the status and the response body.
    fn ask_edge(&self, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}/v1/chat/completions", self.edge.url);
        self.runtime.block_on(async {
            let reply = self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = reply.status().as_u16();
            let bytes = reply.bytes().await.context("reading the edge's answer")?;
            Ok((status, bytes.to_vec()))
        })
    }

    /// The exchanges the proxy saw since the last call.
    fn take_exchanges(&self) -> Vec<Exchange> {
        self.seen
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

/// Removes what only a live tier fills in, so that a live body and a replayed one can be
/// compared: the response's `id`, `created` and `system_fingerprint`, and every hop record's
/// `timings` and `bytes` (measured times, and byte counts that include those times).
pub fn strip_volatile(body: &Value) -> Value {
    let mut body = body.clone();
    if let Value::Object(map) = &mut body {
        for key in ["id", "created", "system_fingerprint"] {
            map.remove(key);
        }
        if let Some(Value::Array(hops)) = map.get_mut("offload").and_then(|o| o.get_mut("hops")) {
            for hop in hops {
                if let Value::Object(hop) = hop {
                    hop.remove("timings");
                    hop.remove("bytes");
                }
            }
        }
    }
    body
}

/// The first few places where two JSON values differ, as JSON pointers with both values.
pub fn differences(live: &Value, replayed: &Value) -> Vec<String> {
    fn walk(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
        if out.len() >= 5 {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let next = format!("{at}/{k}");
                    match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => walk(p, q, &next, out),
                        (p, q) => out.push(format!("{next}: live {p:?}, replay {q:?}")),
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(p, q, &format!("{at}/{i}"), out);
                }
            }
            _ if a != b => out.push(format!("{at}: live {a}, replay {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(live, replayed, "", &mut out);
    out.truncate(5);
    out
}

/// Bytes on one link, live and replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LinkCount {
    pub requests: usize,
    pub live_sent: u64,
    pub replay_sent: u64,
    pub live_received: u64,
    pub replay_received: u64,
}

/// What one item did live, next to the replay.
#[derive(Debug, Clone, Serialize)]
pub struct LiveItem {
    pub position: usize,
    pub id: String,
    pub answered_by: Tier,
    pub replay_answered_by: Tier,
    pub answer: String,
    /// The deployment's confidence per tier (device, edge, cloud), where the tier generated.
    pub confidence: [Option<f64>; 3],
    pub mismatches: Vec<String>,
}

/// A dataset's live run.
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    pub dataset: String,
    pub policy: PolicySpec,
    pub items: usize,
    pub answered_by: [usize; 3],
    /// Items whose every check passed.
    pub agreeing: usize,
    /// Largest |live − trace| confidence per tier.
    pub max_confidence_diff: [f64; 3],
    pub links: [LinkCount; 2],
    pub details: Vec<LiveItem>,
}

impl LiveReport {
    pub fn mismatches(&self) -> usize {
        self.items - self.agreeing
    }
}

/// One line per dataset: items, agreement, who answered, bytes per link live and replayed.
pub fn summary_line(r: &LiveReport) -> String {
    let link = |l: &LinkCount| {
        format!(
            "{} requests, sent {} B live / {} B replay, received {} B live / {} B replay",
            l.requests, l.live_sent, l.replay_sent, l.live_received, l.replay_received
        )
    };
    format!(
        "{}: {}/{} items as replayed; answered device/edge/cloud {}/{}/{}; max |Δconfidence| \
         {:.1e}/{:.1e}/{:.1e}\n  device→edge: {}\n  edge→cloud: {}",
        r.dataset,
        r.agreeing,
        r.items,
        r.answered_by[0],
        r.answered_by[1],
        r.answered_by[2],
        r.max_confidence_diff[0],
        r.max_confidence_diff[1],
        r.max_confidence_diff[2],
        link(&r.links[0]),
        link(&r.links[1]),
    )
}

fn content(body: &Value) -> String {
    body.pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Sends `stream` (items in order, the replay's stream) through `deployment` under `spec`, the
/// device tier driven here by `source`'s device model, and compares every item with the replay.
pub fn run_dataset(
    deployment: &Deployment,
    source: &mut dyn TraceSource,
    dataset: &Dataset,
    stream: &[StreamEntry<'_>],
    name: &str,
    spec: &PolicySpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LiveReport> {
    let (replayed, bodies) = replay::replay_with_bodies(name, spec, stream)?;
    let policy = spec.build()?;
    let mut windows = match spec.window_size() {
        Some(k) => Windows::new(k)?,
        None => Windows::default(),
    };
    source.start_dataset(Tier::Device, dataset)?;
    let mut report = LiveReport {
        dataset: dataset.name.clone(),
        policy: spec.clone(),
        items: stream.len(),
        answered_by: [0; 3],
        agreeing: 0,
        max_confidence_diff: [0.0; 3],
        links: [LinkCount::default(); 2],
        details: Vec::new(),
    };
    deployment.take_exchanges();
    for (position, entry) in stream.iter().enumerate() {
        let expected = &replayed.outcomes[position];
        let mut mismatches = Vec::new();
        let mut confidence = [None; 3];
        // The device tier, here: its model on the item, then the replay's own step.
        let record: TraceRecord = source.trace(Tier::Device, entry.item)?;
        let trace = entry.records[0];
        check_confidence(
            Tier::Device,
            Some(record.confidence.get()),
            trace,
            &mut report.max_confidence_diff,
            &mut mismatches,
        );
        if record.prediction != trace.prediction {
            mismatches.push(format!(
                "device: answer {:?}, the trace has {:?}",
                record.prediction, trace.prediction
            ));
        }
        let step = tier_step(
            &*policy,
            &mut windows,
            spec.name(),
            Tier::Device,
            entry.item.task,
            &record,
            position as u64,
        )?;
        confidence[0] = step.hop.confidence;
        let (answered_by, answer) = match step.up {
            None => (Tier::Device, content(&record.response_body)),
            Some(_) => {
                let body = request_body(&entry.records[1].request_body, spec, &[step.hop])?;
                let sent = serde_json::to_vec(&body)?;
                let (status, received) = deployment.ask_edge(&sent)?;
                if status != 200 {
                    bail!(
                        "{} item {}: the edge answered HTTP {status}: {}",
                        dataset.name,
                        entry.item.id,
                        String::from_utf8_lossy(&received[..received.len().min(400)])
                    );
                }
                let response: Value =
                    serde_json::from_slice(&received).context("the edge's answer is not JSON")?;
                let replayed_link = bodies[position][0].as_ref();
                compare_device_link(
                    &mut report.links[0],
                    &sent,
                    &received,
                    replayed_link,
                    &body,
                    &mut mismatches,
                )?;
                let exchanges = deployment.take_exchanges();
                compare_cloud_link(
                    &exchanges,
                    bodies[position][1].as_ref(),
                    &mut report.links[1],
                    &mut mismatches,
                )?;
                let parsed: ChatCompletionResponse = serde_json::from_value(response.clone())
                    .context("the edge's answer is not a chat completion")?;
                let ext = parsed
                    .offload
                    .as_ref()
                    .ok_or_else(|| anyhow!("the edge's answer has no `offload` object"))?;
                compare_hops(
                    ext,
                    entry,
                    &mut confidence,
                    &mut report.max_confidence_diff,
                    &mut mismatches,
                );
                (ext.answered_by, content(&response))
            }
        };
        if answered_by != expected.answered_by {
            mismatches.push(format!(
                "answered by {answered_by}, the replay by {}",
                expected.answered_by
            ));
        }
        let replay_answer = content(&entry.records[expected.answered_by.index()].response_body);
        if answer != replay_answer {
            mismatches.push(format!("answer {answer:?}, the replay's {replay_answer:?}"));
        }
        report.answered_by[answered_by.index()] += 1;
        if mismatches.is_empty() {
            report.agreeing += 1;
        }
        report.details.push(LiveItem {
            position,
            id: entry.item.id.clone(),
            answered_by,
            replay_answered_by: expected.answered_by,
            answer,
            confidence,
            mismatches,
        });
        progress(position + 1, stream.len());
    }
    Ok(report)
}

fn check_confidence(
    tier: Tier,
    live: Option<f64>,
    trace: &TraceRecord,
    max_diff: &mut [f64; 3],
    mismatches: &mut Vec<String>,
) {
    let Some(live) = live else {
        mismatches.push(format!("{tier}: no confidence reported"));
        return;
    };
    let diff = (live - trace.confidence.get()).abs();
    let slot = &mut max_diff[tier.index()];
    *slot = slot.max(diff);
    if diff.is_nan() || diff > CONFIDENCE_TOLERANCE {
        mismatches.push(format!(
            "{tier}: confidence {live}, the trace has {}",
            trace.confidence.get()
        ));
    }
}

/// Counts the device→edge link and checks it against the replay's: the request byte for byte,
/// the response without its live-only fields.
fn compare_device_link(
    link: &mut LinkCount,
    sent: &[u8],
    received: &[u8],
    replayed: Option<&LinkBodies>,
    body: &Value,
    mismatches: &mut Vec<String>,
) -> Result<()> {
    let what = "device→edge";
    link.requests += 1;
    link.live_sent += sent.len() as u64;
    link.live_received += received.len() as u64;
    let Some(replayed) = replayed else {
        mismatches.push(format!("{what}: a request went up, the replay sent none"));
        return Ok(());
    };
    link.replay_sent += serde_json::to_vec(&replayed.request)?.len() as u64;
    link.replay_received += serde_json::to_vec(&replayed.response)?.len() as u64;
    if *body != replayed.request {
        mismatches.push(format!("{what}: the request differs from the replay's"));
    }
    let live: Value = serde_json::from_slice(received)?;
    for d in differences(&strip_volatile(&live), &strip_volatile(&replayed.response)) {
        mismatches.push(format!("{what} response {d}"));
    }
    Ok(())
}

/// Checks what the proxy saw between the edge and the cloud against the replay's link.
fn compare_cloud_link(
    exchanges: &[Exchange],
    replayed: Option<&LinkBodies>,
    link: &mut LinkCount,
    mismatches: &mut Vec<String>,
) -> Result<()> {
    match (exchanges, replayed) {
        ([], None) => Ok(()),
        ([one], Some(replayed)) => {
            link.requests += 1;
            link.live_sent += one.request.len() as u64;
            link.live_received += one.response.len() as u64;
            link.replay_sent += serde_json::to_vec(&replayed.request)?.len() as u64;
            link.replay_received += serde_json::to_vec(&replayed.response)?.len() as u64;
            if one.status != 200 {
                mismatches.push(format!(
                    "edge→cloud: the cloud answered HTTP {}: {}",
                    one.status,
                    String::from_utf8_lossy(&one.response[..one.response.len().min(300)])
                ));
                return Ok(());
            }
            let request: Value = serde_json::from_slice(&one.request)
                .context("the edge's request to the cloud is not JSON")?;
            for d in differences(
                &strip_volatile(&request),
                &strip_volatile(&replayed.request),
            ) {
                mismatches.push(format!("edge→cloud request {d}"));
            }
            let response: Value =
                serde_json::from_slice(&one.response).context("the cloud's answer is not JSON")?;
            for d in differences(
                &strip_volatile(&response),
                &strip_volatile(&replayed.response),
            ) {
                mismatches.push(format!("edge→cloud response {d}"));
            }
            Ok(())
        }
        ([], Some(_)) => {
            mismatches.push("edge→cloud: the replay sent a request up, the edge did not".into());
            Ok(())
        }
        (many, _) => {
            mismatches.push(format!(
                "edge→cloud: {} requests went up, the replay sent {}",
                many.len(),
                usize::from(replayed.is_some())
            ));
            Ok(())
        }
    }
}

/// Checks the edge's and the cloud's hop records against the traces.
fn compare_hops(
    ext: &OffloadResponse,
    entry: &StreamEntry<'_>,
    confidence: &mut [Option<f64>; 3],
    max_diff: &mut [f64; 3],
    mismatches: &mut Vec<String>,
) {
    for tier in [Tier::Edge, Tier::Cloud] {
        let Some(hop) = ext.hop(tier) else { continue };
        if matches!(hop.outcome, HopOutcome::Fallback) {
            mismatches.push(format!(
                "{tier}: fell back ({})",
                hop.error.as_deref().unwrap_or("no reason given")
            ));
        }
        if matches!(hop.outcome, HopOutcome::Forwarded) {
            continue;
        }
        confidence[tier.index()] = hop.confidence;
        check_confidence(
            tier,
            hop.confidence,
            entry.records[tier.index()],
            max_diff,
            mismatches,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_a_live_tier_fills_in_is_stripped() {
        let live = json!({
            "id": "chatcmpl-1", "created": 17, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "positive"}}],
            "offload": {"answered_by": "edge", "hops": [
                {"tier": "device", "outcome": "offloaded", "confidence": 0.5,
                 "bytes": {"sent": 10, "received": 20}, "timings": {"total_ms": 3.5}},
                {"tier": "edge", "outcome": "answered", "confidence": 0.9,
                 "timings": {"prefill_ms": 1.0}}
            ]}
        });
        let replayed = json!({
            "id": "edge-m-3", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "positive"}}],
            "offload": {"answered_by": "edge", "hops": [
                {"tier": "device", "outcome": "offloaded", "confidence": 0.5,
                 "bytes": {"sent": 10, "received": 18}},
                {"tier": "edge", "outcome": "answered", "confidence": 0.9}
            ]}
        });
        assert_eq!(strip_volatile(&live), strip_volatile(&replayed));
        assert!(!differences(&live, &replayed).is_empty());
        assert!(differences(&strip_volatile(&live), &strip_volatile(&replayed)).is_empty());
    }

    #[test]
    fn differences_name_the_place_and_both_values() {
        let a = json!({"offload": {"hops": [{"confidence": 0.5}, {"confidence": 0.7}]},
                       "choices": [{"message": {"content": "a"}}], "extra": 1});
        let b = json!({"offload": {"hops": [{"confidence": 0.5}, {"confidence": 0.8}]},
                       "choices": [{"message": {"content": "a"}}]});
        let d = differences(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d.iter().any(|x| x.starts_with("/extra: live Some")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|x| x == "/offload/hops/1/confidence: live 0.7, replay 0.8"),
            "{d:?}"
        );
        // A length change in an array is one difference, not one per element.
        let d = differences(&json!({"h": [1, 2]}), &json!({"h": [1]}));
        assert_eq!(d, vec!["/h: live [1,2], replay [1]".to_string()]);
        // At most five are listed.
        let many: serde_json::Map<String, Value> =
            (0..20).map(|i| (i.to_string(), json!(i))).collect();
        assert_eq!(differences(&Value::Object(many), &json!({})).len(), 5);
    }

    #[test]
    fn a_missing_program_is_named_with_the_command_that_builds_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing");
        let config = DeploymentConfig {
            cloud_host: missing.clone(),
            edge_host: missing.clone(),
            component: missing.clone(),
            manifest: missing.clone(),
            edge_model: missing.clone(),
            cloud_model: missing,
            edge_model_id: "e".into(),
            cloud_model_id: "c".into(),
            threads: 1,
            work_dir: dir.path().join("work"),
        };
        let err = Deployment::start(&config).err().unwrap().to_string();
        assert!(err.contains("cloud-host is missing"), "{err}");
        assert!(err.contains("cargo xtask eval --live"), "{err}");
    }
}
