//! `GET /v1/models`, `GET /health` and `GET /metrics`.

use crate::state::{AppState, Engine};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use offload::wire::{ModelInfo, ModelList};
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn list(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList::new(vec![ModelInfo::new(
        &state.model_id,
        state.started,
        "ladder",
    )]))
}

pub async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let (waiting, active, _) = state.load();
    let engine = match &state.engine {
        Engine::Local(s) => json!({
            "kind": "local",
            "threads": s.model().threads(),
            "context": s.model().context_length(),
            "kernels": s.model().kernels().name(),
        }),
        Engine::Upstream(u) => json!({"kind": "upstream", "url": u.base_url(), "model": u.model()}),
    };
    Json(json!({
        "status": "ok",
        "tier": "cloud",
        "model": state.model_id,
        "engine": engine,
        "waiting": waiting,
        "active": active,
        "max_batch": state.config.max_batch,
        "max_queue": state.config.max_queue,
    }))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let (waiting, active, reused) = state.load();
    let mut response = state
        .metrics
        .render(waiting, active, reused)
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
