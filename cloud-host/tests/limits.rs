//! Bad input, limits, authentication, back-pressure, disconnects and shutdown, against a
//! running host. Every refusal is checked for its status and its OpenAI error body.

mod common;

use common::{Running, client, config};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, body)
}

async fn post_raw(url: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let Some(mut config) = config() else { return };
    config.limits.max_body_bytes = 4096;
    let server = Running::start(config).await;
    let url = format!("{}/v1/chat/completions", server.url);

    let (status, body) = error_of(post_raw(&url, "{\"messages\": [").await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let (status, body) = error_of(post_raw(&url, r#"{"messages": "hi"}"#).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "messages");

    let (status, _) = error_of(post_raw(&url, b"{\"messages\": \"\xff\"}".to_vec()).await).await;
    assert_eq!(status, 400);

    let (status, body) = error_of(
        post_raw(
            &url,
            r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": 7}"#,
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["param"], "temperature");

    let big = format!(
        r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(5000)
    );
    let (status, body) = error_of(post_raw(&url, big).await).await;
    assert_eq!(status, 413, "{body}");

    // The context is 1024 tokens here.
    let (status, body) = error_of(
        post_raw(
            &url,
            r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000}"#,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded");

    let (status, body) = error_of(post_raw(&url, "").await).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = error_of(
        client()
            .get(format!("{}/v1/nothing", server.url))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = error_of(client().get(&url).send().await.expect("request")).await;
    assert_eq!(status, 405, "{body}");

    // After all that the server still answers.
    let ok = post_raw(
        &url,
        r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}"#,
    )
    .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let Some(mut config) = config() else { return };
    config.api_keys = vec!["sesame".into()];
    let server = Running::start(config).await;
    let url = format!("{}/v1/models", server.url);
    let (status, body) = error_of(client().get(&url).send().await.expect("request")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error");
    let (status, _) = error_of(
        client()
            .get(&url)
            .bearer_auth("open")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, 401);
    let ok = client()
        .get(&url)
        .bearer_auth("sesame")
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    // Health stays open for load balancers.
    let health = client()
        .get(format!("{}/health", server.url))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let Some(mut config) = config() else { return };
    config.cors_origins = vec!["http://127.0.0.1:9999".into()];
    let server = Running::start(config).await;
    let url = format!("{}/v1/chat/completions", server.url);
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("http://127.0.0.1:9999").await.expect("preflight");
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://127.0.0.1:9999"
    );
    let denied = preflight("http://evil.example").await.expect("preflight");
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A streamed request that generates until stopped, and its response.
async fn long_stream(url: &str) -> reqwest::Response {
    let body = json!({
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
        "max_tokens": 900, "stream": true, "temperature": 1.0, "seed": 7, "stop": ["\u{1}"]
    });
    let response = client()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response
}

/// Reads the stream until its first generated token arrives (the event after the role
/// event): the request is in the batch.
async fn first_bytes(response: &mut reqwest::Response) {
    let mut seen = Vec::new();
    while seen.windows(6).filter(|w| w == b"data: ").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(60), response.chunk())
            .await
            .expect("a chunk in time")
            .expect("readable")
            .expect("the stream goes on");
        seen.extend_from_slice(&chunk);
    }
}

async fn health(url: &str) -> Value {
    client()
        .get(format!("{url}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_full_queue_answers_429_and_a_client_that_leaves_frees_its_slot() {
    let Some(mut config) = config() else { return };
    config.max_batch = 1;
    config.max_queue = 1;
    let server = Running::start(config).await;
    let url = format!("{}/v1/chat/completions", server.url);

    // One request decoding, one waiting: the third is refused.
    let mut running = long_stream(&url).await;
    first_bytes(&mut running).await;
    let waiting = long_stream(&url).await;
    // The second request's headers came back; give the queue a moment to hold it.
    let mut refused = None;
    for _ in 0..50 {
        let h = health(&server.url).await;
        if h["waiting"] == 1 {
            let response = client()
                .post(&url)
                .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .expect("request");
            refused = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = refused.expect("the second request queued");
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    let (_, body) = error_of(refused).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Both clients leave: their slots free without waiting for 900 tokens each.
    drop(running);
    drop(waiting);
    let mut freed = false;
    for _ in 0..100 {
        let h = health(&server.url).await;
        if h["active"] == 0 && h["waiting"] == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "the batch emptied after the clients left");
    let ok = client()
        .post(&url)
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn shutdown_lets_a_stream_finish() {
    let Some(config) = config() else { return };
    let mut server = Running::start(config).await;
    let url = format!("{}/v1/chat/completions", server.url);
    let body = json!({"messages": [{"role": "user", "content": "Count to ten."}],
                      "max_tokens": 40, "stream": true, "temperature": 0});
    let mut response = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("request");
    first_bytes(&mut response).await;
    server.shutdown();
    let mut rest = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.expect("the stream continues"));
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let result = tokio::time::timeout(Duration::from_secs(30), &mut server.task)
        .await
        .expect("the server stops after the stream")
        .expect("joined");
    assert!(result.is_ok());
}

#[tokio::test]
async fn shutdown_past_the_grace_period_ends_streams_with_an_error_event() {
    let Some(mut config) = config() else { return };
    config.shutdown_grace_secs = 0;
    let mut server = Running::start(config).await;
    let url = format!("{}/v1/chat/completions", server.url);
    let mut response = long_stream(&url).await;
    first_bytes(&mut response).await;
    server.shutdown();
    let mut rest = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        rest.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("\"code\":\"shutting_down\""), "{text}");
    tokio::time::timeout(Duration::from_secs(30), &mut server.task)
        .await
        .expect("the server stops")
        .expect("joined")
        .expect("cleanly");
}

#[tokio::test]
async fn a_client_that_leaves_a_whole_answer_frees_its_slot_too() {
    let Some(config) = config() else { return };
    let server = Running::start(config).await;
    let url = format!("{}/v1/chat/completions", server.url);
    let body = json!({"messages": [{"role": "user", "content":
                          "Write a very long story about a lighthouse."}],
                      "max_tokens": 900, "temperature": 0});
    let request = tokio::spawn(async move { client().post(&url).json(&body).send().await });
    let mut admitted = false;
    for _ in 0..100 {
        if health(&server.url).await["active"] == 1 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the request reached the batch");
    assert!(
        !request.is_finished(),
        "still generating when the client leaves"
    );
    request.abort();
    let mut freed = false;
    for _ in 0..100 {
        let h = health(&server.url).await;
        if h["active"] == 0 && h["waiting"] == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "the sequence was dropped when its client left");
}
