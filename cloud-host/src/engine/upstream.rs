//! Upstream mode: the host fronts an existing OpenAI-compatible engine (vLLM, llama.cpp's
//! server, TGI) instead of running a model. Every request is streamed from the engine with
//! log-probs turned on, whatever the client asked, so this tier can compute its confidence;
//! the API layer then answers in the form the client asked for.

use super::{Answering, Event, Piece};
use crate::config::UpstreamConfig;
use crate::error::ApiError;
use bytes::Bytes;
use futures_util::StreamExt;
use llm::CancelToken;
use offload::wire::{
    ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, ErrorResponse, FinishReason,
    LinkBytes, ModelList, SseDecoder, SseEvent, StreamOptions, TokenLogprob, TopLogprob,
};
use serde_json::Value;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;

/// Most bytes read of an engine's error body.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("could not build an HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("could not reach the upstream engine at {url}: {source}; is it running?")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("the upstream engine at {url} answered {status} to GET /v1/models")]
    Status { url: String, status: u16 },
    #[error("the upstream engine at {url} lists no models; name one with --upstream-model")]
    NoModel { url: String },
}

#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    model: String,
}

impl Upstream {
    /// Connects to the engine: checks it answers and picks the model to ask for.
    pub async fn connect(config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .build()
            .map_err(UpstreamError::Client)?;
        let base = config.url.trim_end_matches('/').to_owned();
        let base = base.strip_suffix("/v1").unwrap_or(&base).to_owned();
        let mut upstream = Upstream {
            client,
            base,
            api_key: config.api_key.clone(),
            model: config.model.clone().unwrap_or_default(),
        };
        let url = upstream.url("/v1/models");
        let unreachable = |source| UpstreamError::Unreachable {
            url: url.clone(),
            source,
        };
        let response = upstream
            .authorised(upstream.client.get(&url))
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(UpstreamError::Status {
                url,
                status: response.status().as_u16(),
            });
        }
        if upstream.model.is_empty() {
            let list: ModelList = response.json().await.map_err(unreachable)?;
            upstream.model = list
                .data
                .into_iter()
                .next()
                .map(|m| m.id)
                .ok_or(UpstreamError::NoModel { url: url.clone() })?;
        }
        Ok(upstream)
    }

    /// The model the engine is asked for.
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Streams a chat completion from the engine.
    pub fn chat(&self, request: &ChatCompletionRequest, deadline: Instant) -> Answering {
        let mut up = request.clone();
        up.model = Some(self.model.clone());
        up.stream = true;
        up.stream_options = Some(StreamOptions {
            include_usage: true,
        });
        up.logprobs = true;
        up.n = None;
        up.offload = None;
        self.start("/v1/chat/completions", serde_json::to_vec(&up), deadline)
    }

    /// Streams a legacy completion from the engine.
    pub fn complete(&self, request: &CompletionRequest, deadline: Instant) -> Answering {
        let mut up = request.clone();
        up.model = Some(self.model.clone());
        up.stream = true;
        up.stream_options = Some(StreamOptions {
            include_usage: true,
        });
        up.logprobs = Some(up.logprobs.unwrap_or(0));
        up.n = None;
        up.offload = None;
        self.start("/v1/completions", serde_json::to_vec(&up), deadline)
    }

    fn start(&self, path: &str, body: serde_json::Result<Vec<u8>>, deadline: Instant) -> Answering {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancelToken::default();
        let this = self.clone();
        let url = self.url(path);
        tokio::spawn(async move {
            let body = match body {
                Ok(body) => body,
                Err(e) => {
                    let _ = tx.send(Event::Failed(ApiError::Internal(e.to_string())));
                    return;
                }
            };
            let work = this.relay(&url, body, &tx);
            tokio::select! {
                result = tokio::time::timeout_at(deadline.into(), work) => match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let _ = tx.send(Event::Failed(e));
                    }
                    Err(_) => {
                        let _ = tx.send(Event::Finished {
                            reason: FinishReason::Length,
                            completion_tokens: 0,
                            link: None,
                        });
                    }
                },
                // The client left: dropping the response closes the engine connection, which
                // stops its generation.
                () = tx.closed() => {}
            }
        });
        Answering::new(rx, cancel)
    }

    async fn relay(
        &self,
        url: &str,
        body: Vec<u8>,
        tx: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), ApiError> {
        let started = Instant::now();
        let sent = body.len() as u64;
        let response = self
            .authorised(self.client.post(url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| ApiError::Upstream(format!("could not reach {url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(error_from(status.as_u16(), read_limited(response).await));
        }
        let mut received = 0u64;
        let mut decoder = SseDecoder::new();
        let mut stream = response.bytes_stream();
        let mut state = StreamState::default();
        let mut first = true;
        'read: while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::Upstream(format!("the stream broke: {e}")))?;
            received += chunk.len() as u64;
            let events = decoder
                .feed(&chunk)
                .map_err(|e| ApiError::Upstream(format!("unreadable stream: {e}")))?;
            for event in events {
                match event {
                    SseEvent::Done => break 'read,
                    SseEvent::Data(data) => {
                        let value: Value = serde_json::from_str(&data).map_err(|e| {
                            ApiError::Upstream(format!("a stream event is not JSON: {e}"))
                        })?;
                        if value.get("error").is_some() {
                            let body: ErrorResponse = serde_json::from_value(value)
                                .unwrap_or_else(|_| ErrorResponse::upstream(data.clone()));
                            return Err(ApiError::Upstream(body.error.message));
                        }
                        if let Some(piece) = state.read(&value)? {
                            if first {
                                first = false;
                                let _ = tx.send(Event::Admitted {
                                    queued: Duration::ZERO,
                                });
                            }
                            let _ = tx.send(Event::Piece(piece));
                        }
                    }
                }
            }
        }
        if let Some(prompt_tokens) = state.prompt_tokens {
            let _ = tx.send(Event::Prefilled {
                prompt_tokens,
                took: started.elapsed(),
            });
        }
        let _ = tx.send(Event::Finished {
            reason: state.finish.unwrap_or(FinishReason::Stop),
            completion_tokens: state.completion_tokens.unwrap_or(state.tokens),
            link: Some(LinkBytes { sent, received }),
        });
        Ok(())
    }
}

/// What the stream has said so far beyond the pieces.
#[derive(Default)]
struct StreamState {
    finish: Option<FinishReason>,
    prompt_tokens: Option<usize>,
    completion_tokens: Option<usize>,
    tokens: usize,
}

impl StreamState {
    /// Reads one chunk of either API (chat: `delta.content`, `logprobs.content`; legacy: `text`,
    /// `logprobs.{tokens, token_logprobs, top_logprobs}`, or the chat layout, which llama.cpp's
    /// server also uses there).
    fn read(&mut self, chunk: &Value) -> Result<Option<Piece>, ApiError> {
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            let count = |k: &str| usage.get(k).and_then(Value::as_u64).map(|v| v as usize);
            self.prompt_tokens = count("prompt_tokens").or(self.prompt_tokens);
            self.completion_tokens = count("completion_tokens").or(self.completion_tokens);
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(None);
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(FinishReason::from(reason.to_owned()));
        }
        let text = choice
            .get("delta")
            .and_then(|d| d.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let logprobs = match choice.get("logprobs").filter(|l| !l.is_null()) {
            None => Vec::new(),
            Some(lp) if lp.get("content").is_some() => {
                let chunk: ChatCompletionChunk = serde_json::from_value(chunk.clone())
                    .map_err(|e| ApiError::Upstream(format!("unexpected chunk: {e}")))?;
                chunk
                    .choices
                    .into_iter()
                    .next()
                    .and_then(|c| c.logprobs)
                    .map(|l| l.content)
                    .unwrap_or_default()
            }
            Some(lp) => legacy_logprobs(lp),
        };
        self.tokens += logprobs.len();
        if text.is_empty() && logprobs.is_empty() {
            return Ok(None);
        }
        Ok(Some(Piece { text, logprobs }))
    }
}

fn legacy_logprobs(lp: &Value) -> Vec<TokenLogprob> {
    let list = |k: &str| {
        lp.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let tokens = list("tokens");
    let logprobs = list("token_logprobs");
    let tops = list("top_logprobs");
    tokens
        .iter()
        .enumerate()
        .map(|(i, token)| TokenLogprob {
            token: token.as_str().unwrap_or_default().to_owned(),
            logprob: logprobs
                .get(i)
                .and_then(Value::as_f64)
                .unwrap_or(f64::NEG_INFINITY),
            bytes: None,
            top_logprobs: tops
                .get(i)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(token, lp)| TopLogprob {
                            token: token.clone(),
                            logprob: lp.as_f64().unwrap_or(f64::NEG_INFINITY),
                            bytes: None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

async fn read_limited(response: reqwest::Response) -> Bytes {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = MAX_ERROR_BODY.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    Bytes::from(out)
}

/// The engine refused or failed: a 4xx is the client's fault and is passed on with the
/// engine's message; anything else is a 502.
fn error_from(status: u16, body: Bytes) -> ApiError {
    let message = serde_json::from_slice::<ErrorResponse>(&body)
        .map(|e| e.error.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).chars().take(500).collect());
    if (400..500).contains(&status) && status != 401 && status != 403 && status != 404 {
        ApiError::UpstreamRefused { status, message }
    } else {
        ApiError::Upstream(format!("it answered {status}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chat_and_legacy_chunks() {
        let mut state = StreamState::default();
        let chat = serde_json::json!({
            "id": "x", "model": "m", "choices": [{
                "index": 0, "delta": {"content": "Hi"},
                "logprobs": {"content": [{"token": "Hi", "logprob": -0.25, "top_logprobs": []}]},
                "finish_reason": null
            }]
        });
        let piece = state.read(&chat).expect("chat chunk").expect("a piece");
        assert_eq!(piece.text, "Hi");
        assert_eq!(piece.logprobs[0].logprob, -0.25);

        let legacy = serde_json::json!({
            "id": "x", "model": "m", "choices": [{
                "index": 0, "text": " there",
                "logprobs": {"tokens": [" there"], "token_logprobs": [-1.5],
                             "top_logprobs": [{" there": -1.5, " you": -2.0}]},
                "finish_reason": "length"
            }],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        });
        let piece = state.read(&legacy).expect("legacy chunk").expect("a piece");
        assert_eq!(piece.text, " there");
        assert_eq!(piece.logprobs[0].top_logprobs.len(), 2);
        assert_eq!(state.finish, Some(FinishReason::Length));
        assert_eq!(state.prompt_tokens, Some(3));
        assert_eq!(state.completion_tokens, Some(2));
        assert_eq!(state.tokens, 2);
    }

    #[test]
    fn engine_errors_keep_client_faults_as_4xx() {
        let body = Bytes::from_static(
            br#"{"error":{"message":"the prompt is too long","type":"invalid_request_error"}}"#,
        );
        let err = error_from(400, body);
        assert_eq!(err.status().as_u16(), 400);
        assert!(err.to_string().contains("too long"), "{err}");
        let err = error_from(500, Bytes::from_static(b"boom"));
        assert_eq!(err.status().as_u16(), 502);
    }
}
