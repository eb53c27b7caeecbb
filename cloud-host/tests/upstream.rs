//! Upstream mode: the host fronts another OpenAI-compatible engine, asks it for log-probs, and
//! answers with its own confidence and hop record.
//!
//! Two engines are tested: a second cloud host (always), and llama.cpp's own `llama-server`
//! when `$LADDER_LLAMA_SERVER` names the binary (`cargo xtask test` builds it from the
//! `llama-cpp-python` source package and sets it).

mod common;

use cloud_host::{Config, UpstreamConfig};
use common::{Running, SMOLLM2, client, config, model_path};
use offload::Tier;
use offload::wire::{ChatCompletionResponse, CompletionResponse, SseDecoder, SseEvent};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

fn front(upstream_url: &str) -> Config {
    Config {
        addr: "127.0.0.1:0".parse().expect("address"),
        upstream: Some(UpstreamConfig {
            url: upstream_url.to_owned(),
            api_key: None,
            model: None,
            connect_timeout_secs: 10,
        }),
        model_id: Some("front".into()),
        ..Config::default()
    }
}

/// What every upstream engine must give through the front.
async fn check_front(front_url: &str) {
    let url = format!("{front_url}/v1/chat/completions");
    let body = json!({
        "model": "whatever",
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16, "temperature": 0,
        "offload": {"task": "chat", "request_id": "up-1"}
    });
    let response = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let answer: ChatCompletionResponse = response.json().await.expect("an answer");
    let text = answer.text().expect("text").into_owned();
    assert!(text.contains("Paris"), "{text:?}");
    // The client did not ask for log-probs, so it gets none, but the confidence was computed.
    assert!(answer.choices[0].logprobs.is_none());
    let offload = answer.offload.expect("the extension");
    let hop = offload.hop(Tier::Cloud).expect("the cloud's record");
    let confidence = hop
        .confidence
        .expect("a confidence from the engine's log-probs");
    assert!(confidence > 0.0 && confidence < 1.0, "{confidence}");
    let bytes = hop.bytes.expect("bytes on the link to the engine");
    assert!(bytes.sent > 50 && bytes.received > 50, "{bytes:?}");
    assert!(hop.tokens.expect("tokens").completion > 0);

    // Streaming through the front gives the same text and ends with the record.
    let mut body = body;
    body["stream"] = json!(true);
    body["logprobs"] = json!(true);
    let response = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let raw = response.bytes().await.expect("body");
    let mut decoder = SseDecoder::new();
    let events = decoder.feed(&raw).expect("events");
    assert_eq!(events.last(), Some(&SseEvent::Done));
    let chunks: Vec<Value> = events
        .iter()
        .filter_map(|e| e.data())
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let logprobs = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array())
        .map(Vec::len)
        .sum::<usize>();
    assert!(logprobs > 0);
    assert!(chunks.last().expect("chunks")["offload"]["hops"].is_array());

    // Legacy completions go through too.
    let response = client()
        .post(format!("{front_url}/v1/completions"))
        .json(
            &json!({"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0,
                      "logprobs": 1, "offload": {"task": "chat"}}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let answer: CompletionResponse = response.json().await.expect("a completion");
    assert!(!answer.choices[0].text.is_empty());
    assert!(answer.offload.is_some());

    // The engine's own refusals come back as the client's errors, not as 502s.
    let response = client()
        .post(&url)
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        422,
        "the front checks limits itself first"
    );
}

#[tokio::test]
async fn fronting_another_cloud_host() {
    let Some(config) = config() else { return };
    let engine = Running::start(config).await;
    let front = Running::start(front(&engine.url)).await;
    check_front(&front.url).await;
}

#[tokio::test]
async fn an_engine_that_is_down_is_a_clear_start_error() {
    // Nothing listens on a port we just freed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = cloud_host::Server::start(front(&format!("http://{addr}")))
        .await
        .err()
        .expect("no engine, no server");
    assert!(err.to_string().contains("could not reach"), "{err}");
}

#[tokio::test]
async fn fronting_llama_server() {
    let Some(binary) = std::env::var_os("LADDER_LLAMA_SERVER") else {
        eprintln!("SKIPPED: $LADDER_LLAMA_SERVER is not set (cargo xtask test sets it)");
        return;
    };
    let Some(model) = model_path(SMOLLM2) else {
        return;
    };
    // A port that was free a moment ago (llama-server logs the port it was given, not the one
    // it bound).
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut child = tokio::process::Command::new(&binary)
        .args(["--host", "127.0.0.1", "-t", "1", "-c", "2048", "-np", "2"])
        .arg("--port")
        .arg(port.to_string())
        .arg("-m")
        .arg(&model)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("llama-server starts");
    let url = format!("http://127.0.0.1:{port}");
    // llama-server logs that it listens once it has bound the port.
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("log") {
            if line.contains("listening") {
                return;
            }
        }
        panic!("llama-server exited before listening");
    })
    .await
    .expect("llama-server is ready in time");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // It answers 503 while loading the model.
    for _ in 0..100 {
        if let Ok(r) = client().get(format!("{url}/health")).send().await
            && r.status() == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let front = Running::start(front(&url)).await;
    check_front(&front.url).await;
    let _ = child.kill().await;
}
