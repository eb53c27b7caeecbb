//! A stub cloud tier on loopback: answers every chat completion with a fixed text and the
//! offload extension a real top tier returns (the request's hops plus its own `answered`
//! record), streamed or whole, and remembers what it received. It can also be slow or fail.

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use offload::Tier;
use offload::wire::{
    ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    ChunkChoice, DONE, Delta, ErrorResponse, FinishReason, HopOutcome, HopRecord, OffloadResponse,
    Role, encode_event,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The text the stub answers with.
pub const ANSWER: &str = "the stub cloud's answer";
/// The model id it reports.
pub const MODEL: &str = "stub-cloud";

/// How the stub behaves.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    Answer,
    /// Answer after this long.
    Slow(Duration),
    /// Answer with this HTTP status and an error body.
    Fail(u16),
}

struct Shared {
    behaviour: Behaviour,
    received: Mutex<Vec<ChatCompletionRequest>>,
}

/// A running stub cloud.
pub struct StubCloud {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubCloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubCloud {
    pub async fn start(behaviour: Behaviour) -> Result<Self> {
        let shared = Arc::new(Shared {
            behaviour,
            received: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(StubCloud { url, shared, task })
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<ChatCompletionRequest> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn extension(request: &ChatCompletionRequest) -> OffloadResponse {
    let mut hops = request
        .offload
        .as_ref()
        .map(|o| o.hops.clone())
        .unwrap_or_default();
    let mut record = HopRecord::new(Tier::Cloud, MODEL, HopOutcome::Answered);
    record.confidence = Some(0.9);
    hops.push(record);
    let mut ext = OffloadResponse::new(Tier::Cloud, hops);
    ext.request_id = request.offload.as_ref().and_then(|o| o.request_id.clone());
    ext
}

async fn chat(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: ChatCompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let body = ErrorResponse::invalid_request(format!("stub: {e}"), None);
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    shared
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(request.clone());
    match shared.behaviour {
        Behaviour::Answer => {}
        Behaviour::Slow(d) => tokio::time::sleep(d).await,
        Behaviour::Fail(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = ErrorResponse::server_error("stub: failing on purpose");
            return (status, axum::Json(body)).into_response();
        }
    }
    if !request.stream {
        let mut response = ChatCompletionResponse::new(
            "chatcmpl-stub",
            0,
            MODEL,
            ChatChoice {
                index: 0,
                message: ChatMessage::new(Role::Assistant, ANSWER),
                logprobs: None,
                finish_reason: Some(FinishReason::Stop),
            },
        );
        response.offload = Some(extension(&request));
        return axum::Json(response).into_response();
    }
    let chunk = |delta: Delta, finish: Option<FinishReason>| {
        let mut c = ChatCompletionChunk::new("chatcmpl-stub", 0, MODEL);
        c.choices = vec![ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        }];
        c
    };
    let mut last = chunk(Delta::default(), Some(FinishReason::Stop));
    last.offload = Some(extension(&request));
    let mut text = String::new();
    for event in [
        chunk(
            Delta {
                role: Some(Role::Assistant),
                content: None,
            },
            None,
        ),
        chunk(
            Delta {
                role: None,
                content: Some(ANSWER.to_string()),
            },
            None,
        ),
        last,
    ] {
        text.push_str(&encode_event(&event));
    }
    text.push_str(DONE);
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from(text),
    )
        .into_response()
}
