//! The three-tier smoke test: a test client (playing the device tier: it sends its own
//! `offloaded` hop record, as the browser does) → `edge-host` serving the edge component with
//! the edge model → `cloud-host` with a real model, all on loopback, as processes started the
//! way users start them.

use anyhow::{Context, Result};
use ladder_tests::build::{self, EDGE_MODEL_FILE, EDGE_MODEL_ID};
use ladder_tests::serve::Server;
use offload::Tier;
use offload::wire::{ChatCompletionResponse, HopOutcome};
use serde_json::json;
use std::time::Duration;

/// The cloud runs the small SmolLM2 here: the test is about the path, not the model.
const CLOUD_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

#[tokio::test(flavor = "multi_thread")]
async fn a_request_climbs_from_the_client_through_the_edge_to_the_cloud() -> Result<()> {
    let cloud_bin = build::binary("cloud-host", "cloud-host")?;
    let cloud = Server::start(
        &cloud_bin,
        &[
            "--model".into(),
            build::model(CLOUD_MODEL_FILE)?.display().to_string(),
            "--threads".into(),
            "1".into(),
            "--context".into(),
            "1024".into(),
        ],
        Duration::from_secs(300),
    )
    .await?;

    let dir = tempfile::tempdir()?;
    let components = build::edge_components()?;
    let text = build::manifest_with_source(
        &build::workspace().join("edge-fn/spin.toml"),
        &components.wasi_nn,
    )?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(&manifest, text)?;
    let edge_bin = build::binary("edge-host", "edge-host")?;
    let edge = Server::start(
        &edge_bin,
        &[
            "--manifest".into(),
            manifest.display().to_string(),
            "--state-dir".into(),
            dir.path().join("state").display().to_string(),
            "--nn-graph".into(),
            format!(
                "{EDGE_MODEL_ID}={}",
                build::model(EDGE_MODEL_FILE)?.display()
            ),
            "--threads".into(),
            "1".into(),
            "--var".into(),
            format!("cloud_url={}", cloud.url),
        ],
        Duration::from_secs(300),
    )
    .await?;

    let client = reqwest::Client::new();
    let ask = |edge_threshold: f64, question: &str| {
        json!({
            "messages": [{"role": "user", "content": question}],
            "max_tokens": 8,
            "temperature": 0,
            "offload": {
                "policy": {"name": "casserve", "thresholds": {"device": 0.0, "edge": edge_threshold}},
                "request_id": question,
                "hops": [{
                    "tier": "device",
                    "model": "smollm2-135m-instruct-q4_1",
                    "outcome": "offloaded",
                    "confidence": 0.1,
                    "threshold": 0.5
                }]
            }
        })
    };
    let send = |body: serde_json::Value| {
        let client = client.clone();
        let url = format!("{}/v1/chat/completions", edge.url);
        async move {
            let response = client
                .post(url)
                .json(&body)
                .timeout(Duration::from_secs(300))
                .send()
                .await?;
            let status = response.status();
            let bytes = response.bytes().await?;
            anyhow::ensure!(
                status.is_success(),
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            Ok::<ChatCompletionResponse, anyhow::Error>(serde_json::from_slice(&bytes)?)
        }
    };

    // Not confident at the edge (threshold 1): the cloud answers; three records.
    let up = send(ask(1.0, "What is the capital of France?")).await?;
    let ext = up.offload.as_ref().context("no extension")?;
    assert_eq!(ext.answered_by, Tier::Cloud);
    let path: Vec<_> = ext.hops.iter().map(|h| (h.tier, h.outcome)).collect();
    assert_eq!(
        path,
        [
            (Tier::Device, HopOutcome::Offloaded),
            (Tier::Edge, HopOutcome::Offloaded),
            (Tier::Cloud, HopOutcome::Answered),
        ]
    );
    let edge_hop = ext.hop(Tier::Edge).context("no edge record")?;
    assert!(edge_hop.bytes.is_some_and(|b| b.sent > 0 && b.received > 0));
    assert!(ext.hop(Tier::Cloud).and_then(|h| h.confidence).is_some());
    assert!(!up.text().unwrap_or_default().is_empty());

    // Confident at the edge (threshold 0): the edge answers; the cloud is not asked.
    let kept = send(ask(0.0, "Name a colour.")).await?;
    let ext = kept.offload.as_ref().context("no extension")?;
    assert_eq!(ext.answered_by, Tier::Edge);
    let path: Vec<_> = ext.hops.iter().map(|h| (h.tier, h.outcome)).collect();
    assert_eq!(
        path,
        [
            (Tier::Device, HopOutcome::Offloaded),
            (Tier::Edge, HopOutcome::Answered)
        ]
    );

    edge.stop().await?;
    cloud.stop().await
}
