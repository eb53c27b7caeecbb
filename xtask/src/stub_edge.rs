//! A stand-in for the edge tier in the browser tests, used while `edge-host` cannot serve the
//! page's requests yet: on loopback, it parses each chat completion with `offload`'s wire
//! parser and streams back a fixed answer that names itself, with the offload extension a real
//! edge returns (the request's hops plus its own `answered` record). It answers CORS preflight,
//! as the real edge does for the page's origin. It is a test double: it runs no model.

use anyhow::{Context, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use offload::Tier;
use offload::wire::{
    ChatCompletionChunk, ChatCompletionRequest, ChunkChoice, DONE, Delta, FinishReason, HopOutcome,
    HopRecord, Limits, ModelInfo, ModelList, OffloadResponse, Role, encode_event,
};
use std::net::SocketAddr;
use tower_http::cors::CorsLayer;

/// The model id the stub reports; the tests look for it in the hop records.
pub const MODEL: &str = "stub-edge";
/// The words the stub answers with.
pub const ANSWER: &str = "This answer comes from the stub edge.";

pub async fn serve(addr: SocketAddr) -> Result<SocketAddr> {
    let app = Router::new()
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route(
            "/v1/models",
            axum::routing::get(|| async {
                axum::Json(ModelList::new(vec![ModelInfo::new(MODEL, 0, "ladder")]))
            }),
        )
        .layer(CorsLayer::permissive());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the stub edge to {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(bound)
}

async fn chat(body: Bytes) -> Response {
    let request = match ChatCompletionRequest::parse(&body, &Limits::default()) {
        Ok(r) => r,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return (status, axum::Json(e.to_response())).into_response();
        }
    };
    let mut hops = request
        .offload
        .as_ref()
        .map(|o| o.hops.clone())
        .unwrap_or_default();
    hops.push(HopRecord::new(Tier::Edge, MODEL, HopOutcome::Answered));
    let mut record = OffloadResponse::new(Tier::Edge, hops);
    record.request_id = request.offload.as_ref().and_then(|o| o.request_id.clone());

    let chunk = |content: Option<String>, finish: Option<FinishReason>| {
        let mut c = ChatCompletionChunk::new("chatcmpl-stub-edge", 0, MODEL);
        c.choices = vec![ChunkChoice {
            index: 0,
            delta: Delta {
                role: content.is_none().then_some(Role::Assistant),
                content,
            },
            logprobs: None,
            finish_reason: finish,
        }];
        c
    };
    let mut text = encode_event(&chunk(None, None));
    for word in ANSWER.split_inclusive(' ') {
        text += &encode_event(&chunk(Some(word.to_string()), None));
    }
    let mut last = chunk(Some(String::new()), Some(FinishReason::Stop));
    last.offload = Some(record);
    text += &encode_event(&last);
    text += DONE;
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from(text),
    )
        .into_response()
}
