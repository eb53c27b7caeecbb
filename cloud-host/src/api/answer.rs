//! Turning a request's [`Event`]s into its answer, for both APIs (chat and legacy completions),
//! whole or streamed: the text, the log-probs asked for, usage, and this tier's hop record with
//! the confidence `offload` computes.

use crate::engine::{Answering, Event, Piece};
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use offload::confidence::{PerplexityAccumulator, pick, softmax};
use offload::policy::decide;
use offload::wire::{
    ChatChoice, ChatCompletionChunk, ChatCompletionResponse, ChatMessage, ChoiceLogprobs,
    ChunkChoice, CompletionChoice, CompletionLogprobs, CompletionResponse, DONE, Delta,
    ErrorResponse, FinishReason, HopOutcome, HopRecord, LinkBytes, OffloadRequest, OffloadResponse,
    Role, Timings, TokenCounts, TokenLogprob, TopLogprobMap, Usage, encode_event,
};
use offload::{TaskType, Tier, TierSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which API the answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Completions,
}

impl Api {
    pub fn route(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Completions => "/v1/completions",
        }
    }
}

/// What the request asked for that shapes its answer.
#[derive(Debug, Clone)]
pub struct Shape {
    pub api: Api,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    /// Whether to return log-probs, and how many alternatives per token.
    pub logprobs: Option<usize>,
    pub task: TaskType,
    pub options: Option<Vec<String>>,
    /// The request's extension; the response carries one only when the request did.
    pub offload: Option<OffloadRequest>,
    pub received: Instant,
}

/// Everything the events have said so far.
#[derive(Debug, Default)]
struct Tally {
    text: String,
    logprobs: Vec<TokenLogprob>,
    perplexity: PerplexityAccumulator,
    /// A log-prob that is not a valid number (an upstream engine's `null`): no confidence.
    broken_logprob: bool,
    scores: Option<Vec<f64>>,
    queued: Option<Duration>,
    prompt_tokens: usize,
    prefill: Option<Duration>,
    first_token: Option<Duration>,
    completion_tokens: usize,
    link: Option<LinkBytes>,
    finish: Option<FinishReason>,
}

impl Tally {
    fn observe(&mut self, event: &Event, received: Instant) {
        match event {
            Event::Admitted { queued } => self.queued = Some(*queued),
            Event::Prefilled {
                prompt_tokens,
                took,
            } => {
                self.prompt_tokens = *prompt_tokens;
                self.prefill = Some(*took);
            }
            Event::Piece(piece) => {
                if self.first_token.is_none() && !piece.logprobs.is_empty() {
                    self.first_token = Some(received.elapsed());
                }
                self.text.push_str(&piece.text);
                for lp in &piece.logprobs {
                    if self.perplexity.push(lp.logprob).is_err() {
                        self.broken_logprob = true;
                    }
                }
                self.logprobs.extend(piece.logprobs.iter().cloned());
            }
            Event::Scores(scores) => self.scores = Some(scores.clone()),
            Event::Finished {
                reason,
                completion_tokens,
                link,
            } => {
                self.finish = Some(reason.clone());
                self.completion_tokens = *completion_tokens;
                self.link = *link;
            }
            Event::Failed(_) => {}
        }
    }
}

/// The chosen option of a classification request and its log-probs as one "token".
fn option_answer(options: &[String], scores: &[f64], top: usize) -> Option<(String, TokenLogprob)> {
    let (best, _) = pick(scores).ok()?;
    let probs = softmax(scores).ok()?;
    let logprob = TokenLogprob::for_options(options, &probs, best, top)?;
    Some((logprob.token.clone(), logprob))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Builds this tier's hop record and records its confidence in the tier's windows.
fn hop_record(state: &AppState, shape: &Shape, tally: &Tally) -> HopRecord {
    let confidence = match (&tally.scores, shape.task.measure()) {
        (Some(scores), offload::tier::Measure::MaxSoftmax) => pick(scores).ok().map(|(_, c)| c),
        _ if tally.broken_logprob => None,
        _ => tally.perplexity.confidence().ok(),
    };
    let policy = shape
        .offload
        .as_ref()
        .and_then(|o| o.policy.clone())
        .unwrap_or_else(|| state.policy.clone());
    let mut record = HopRecord::new(Tier::Cloud, shape.model.clone(), HopOutcome::Answered);
    record.policy = Some(policy.name().to_owned());
    if let Some(confidence) = confidence {
        record.confidence = Some(confidence.get());
        let key = request_key(shape);
        let decision = policy.build().map_err(|e| e.to_string()).and_then(|p| {
            let mut windows = state.windows.lock().unwrap_or_else(|e| e.into_inner());
            decide(
                p.as_ref(),
                &mut windows,
                Tier::Cloud,
                shape.task,
                confidence,
                key,
                TierSet::ALL,
            )
            .map_err(|e| e.to_string())
        });
        match decision {
            Ok(decision) => record = record.with_decision(decision),
            Err(e) => tracing::warn!(error = %e, "could not record the confidence"),
        }
    }
    let total = shape.received.elapsed();
    let decode = match (tally.prefill, tally.queued) {
        (Some(prefill), Some(queued)) => total.checked_sub(prefill + queued),
        _ => None,
    };
    record.tokens = Some(TokenCounts {
        prompt: u32::try_from(tally.prompt_tokens).unwrap_or(u32::MAX),
        completion: u32::try_from(tally.completion_tokens).unwrap_or(u32::MAX),
    });
    record.bytes = tally.link;
    record.timings = Some(Timings {
        queue_ms: tally.queued.map(ms),
        prefill_ms: tally.prefill.map(ms),
        decode_ms: decode.map(ms),
        first_token_ms: tally.first_token.map(ms),
        upstream_ms: tally.link.map(|_| ms(total)),
        total_ms: Some(ms(total)),
    });
    record
}

/// A stable number for seeded policies: a hash of the request id, else of the response id.
fn request_key(shape: &Shape) -> u64 {
    let id = shape
        .offload
        .as_ref()
        .and_then(|o| o.request_id.as_deref())
        .unwrap_or(&shape.id);
    // FNV-1a: stable across runs and platforms.
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn offload_response(state: &AppState, shape: &Shape, tally: &Tally) -> Option<OffloadResponse> {
    let request = shape.offload.as_ref()?;
    let mut hops = request.hops.clone();
    hops.push(hop_record(state, shape, tally));
    let mut response = OffloadResponse::new(Tier::Cloud, hops);
    response.request_id = request.request_id.clone();
    Some(response)
}

fn usage(tally: &Tally) -> Usage {
    Usage::new(
        u32::try_from(tally.prompt_tokens).unwrap_or(u32::MAX),
        u32::try_from(tally.completion_tokens).unwrap_or(u32::MAX),
    )
}

/// Trims each token's alternatives to what the client asked for.
fn trimmed(logprobs: &[TokenLogprob], top: usize) -> Vec<TokenLogprob> {
    logprobs
        .iter()
        .map(|lp| TokenLogprob {
            top_logprobs: lp.top_logprobs.iter().take(top).cloned().collect(),
            ..lp.clone()
        })
        .collect()
}

fn legacy_logprobs(logprobs: &[TokenLogprob], top: usize, start: usize) -> CompletionLogprobs {
    let mut offset = start;
    let mut out = CompletionLogprobs::default();
    for lp in logprobs {
        out.tokens.push(lp.token.clone());
        out.token_logprobs
            .push(lp.logprob.is_finite().then_some(lp.logprob));
        out.top_logprobs.push(Some(TopLogprobMap(
            lp.top_logprobs
                .iter()
                .take(top)
                .map(|t| (t.token.clone(), t.logprob))
                .collect(),
        )));
        out.text_offset
            .push(u32::try_from(offset).unwrap_or(u32::MAX));
        offset += lp.token.chars().count();
    }
    out
}

/// Collects the whole answer (no streaming).
pub async fn whole(
    state: Arc<AppState>,
    shape: Shape,
    mut answering: Answering,
) -> Result<Response, ApiError> {
    let mut tally = Tally::default();
    while let Some(event) = answering.events.recv().await {
        tally.observe(&event, shape.received);
        match event {
            Event::Failed(e) => return Err(e),
            Event::Finished { .. } => break,
            _ => {}
        }
    }
    let Some(finish) = tally.finish.clone() else {
        return Err(ApiError::Internal(
            "the engine stopped without finishing the answer".into(),
        ));
    };
    let top = shape.logprobs.unwrap_or(0);
    let (text, logprobs) = match (&shape.options, &tally.scores) {
        (Some(options), Some(scores)) => {
            let (text, lp) = option_answer(options, scores, top).ok_or_else(|| {
                ApiError::Internal("the option scores are not valid numbers".into())
            })?;
            (text, vec![lp])
        }
        _ => (tally.text.clone(), trimmed(&tally.logprobs, top)),
    };
    state.metrics.observe_answer(
        tally.prompt_tokens,
        tally.completion_tokens,
        tally.first_token,
        shape.received.elapsed(),
    );
    let offload = offload_response(&state, &shape, &tally);
    let body = match shape.api {
        Api::Chat => {
            let choice = ChatChoice {
                index: 0,
                message: ChatMessage::new(Role::Assistant, text),
                logprobs: shape.logprobs.map(|_| ChoiceLogprobs { content: logprobs }),
                finish_reason: Some(finish),
            };
            let mut response =
                ChatCompletionResponse::new(&shape.id, shape.created, &shape.model, choice);
            response.usage = Some(usage(&tally));
            response.offload = offload;
            serde_json::to_vec(&response)
        }
        Api::Completions => {
            let response = CompletionResponse {
                id: shape.id.clone(),
                object: CompletionResponse::OBJECT.to_owned(),
                created: shape.created,
                model: shape.model.clone(),
                system_fingerprint: None,
                choices: vec![CompletionChoice {
                    text,
                    index: 0,
                    logprobs: shape.logprobs.map(|top| legacy_logprobs(&logprobs, top, 0)),
                    finish_reason: Some(finish),
                }],
                usage: Some(usage(&tally)),
                offload,
            };
            serde_json::to_vec(&response)
        }
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = Body::from(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The state of a streamed answer.
struct Streaming {
    state: Arc<AppState>,
    shape: Shape,
    answering: Answering,
    tally: Tally,
    started: bool,
    ended: bool,
    /// Characters sent so far (legacy log-prob offsets).
    sent_chars: usize,
}

impl Streaming {
    fn chat_chunk(&self, delta: Delta, logprobs: Option<Vec<TokenLogprob>>) -> String {
        let mut chunk =
            ChatCompletionChunk::new(&self.shape.id, self.shape.created, &self.shape.model);
        chunk.choices.push(ChunkChoice {
            index: 0,
            delta,
            logprobs: logprobs.map(|content| ChoiceLogprobs { content }),
            finish_reason: None,
        });
        encode_event(&chunk)
    }

    fn legacy_chunk(&self, text: String, logprobs: Option<CompletionLogprobs>) -> String {
        encode_event(&CompletionResponse {
            id: self.shape.id.clone(),
            object: CompletionResponse::OBJECT.to_owned(),
            created: self.shape.created,
            model: self.shape.model.clone(),
            system_fingerprint: None,
            choices: vec![CompletionChoice {
                text,
                index: 0,
                logprobs,
                finish_reason: None,
            }],
            usage: None,
            offload: None,
        })
    }

    /// The event for a piece of text with its log-probs.
    fn piece(&mut self, piece: &Piece) -> Option<String> {
        if piece.text.is_empty() && (self.shape.logprobs.is_none() || piece.logprobs.is_empty()) {
            return None;
        }
        let top = self.shape.logprobs;
        let out = match self.shape.api {
            Api::Chat => self.chat_chunk(
                Delta {
                    role: None,
                    content: Some(piece.text.clone()),
                },
                top.map(|n| trimmed(&piece.logprobs, n)),
            ),
            Api::Completions => self.legacy_chunk(
                piece.text.clone(),
                top.map(|n| legacy_logprobs(&piece.logprobs, n, self.sent_chars)),
            ),
        };
        self.sent_chars += piece.text.chars().count();
        Some(out)
    }

    /// The last events: the chosen option (classification), the finish reason, usage, the
    /// offload record, `[DONE]`.
    fn finish(&mut self) -> String {
        let mut out = String::new();
        if let (Some(options), Some(scores)) = (&self.shape.options, &self.tally.scores) {
            let top = self.shape.logprobs.unwrap_or(0);
            if let Some((text, lp)) = option_answer(options, scores, top) {
                let piece = Piece {
                    text,
                    logprobs: vec![lp],
                };
                if let Some(event) = self.piece(&piece) {
                    out.push_str(&event);
                }
            }
        }
        self.state.metrics.observe_answer(
            self.tally.prompt_tokens,
            self.tally.completion_tokens,
            self.tally.first_token,
            self.shape.received.elapsed(),
        );
        let finish = self.tally.finish.clone().unwrap_or(FinishReason::Stop);
        let offload = offload_response(&self.state, &self.shape, &self.tally);
        let usage = self.shape.include_usage.then(|| usage(&self.tally));
        // The offload record rides on the last chunk: the usage chunk when there is one.
        let (offload_on_finish, offload_on_usage) = if usage.is_some() {
            (None, offload)
        } else {
            (offload, None)
        };
        match self.shape.api {
            Api::Chat => {
                let mut chunk =
                    ChatCompletionChunk::new(&self.shape.id, self.shape.created, &self.shape.model);
                chunk.choices.push(ChunkChoice {
                    index: 0,
                    delta: Delta::default(),
                    logprobs: None,
                    finish_reason: Some(finish),
                });
                chunk.offload = offload_on_finish;
                out.push_str(&encode_event(&chunk));
                if let Some(usage) = usage {
                    let mut chunk = ChatCompletionChunk::new(
                        &self.shape.id,
                        self.shape.created,
                        &self.shape.model,
                    );
                    chunk.usage = Some(usage);
                    chunk.offload = offload_on_usage;
                    out.push_str(&encode_event(&chunk));
                }
            }
            Api::Completions => {
                let mut last = CompletionResponse {
                    id: self.shape.id.clone(),
                    object: CompletionResponse::OBJECT.to_owned(),
                    created: self.shape.created,
                    model: self.shape.model.clone(),
                    system_fingerprint: None,
                    choices: vec![CompletionChoice {
                        text: String::new(),
                        index: 0,
                        logprobs: None,
                        finish_reason: Some(finish),
                    }],
                    usage: None,
                    offload: offload_on_finish,
                };
                out.push_str(&encode_event(&last));
                if let Some(usage) = usage {
                    last.choices.clear();
                    last.usage = Some(usage);
                    last.offload = offload_on_usage;
                    out.push_str(&encode_event(&last));
                }
            }
        }
        out.push_str(DONE);
        out
    }

    /// The next bytes of the stream, `None` at its end.
    async fn next(&mut self) -> Option<String> {
        if self.ended {
            return None;
        }
        if !self.started {
            self.started = true;
            if self.shape.api == Api::Chat {
                return Some(self.chat_chunk(
                    Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                    },
                    None,
                ));
            }
        }
        loop {
            let Some(event) = self.answering.events.recv().await else {
                self.ended = true;
                return Some(encode_event(&ErrorResponse::server_error(
                    "the engine stopped without finishing the answer",
                )));
            };
            self.tally.observe(&event, self.shape.received);
            match event {
                Event::Piece(piece) => {
                    if self.shape.options.is_some() {
                        continue;
                    }
                    if let Some(out) = self.piece(&piece) {
                        return Some(out);
                    }
                }
                Event::Finished { .. } => {
                    self.ended = true;
                    return Some(self.finish());
                }
                Event::Failed(e) => {
                    self.ended = true;
                    tracing::warn!(error = %e, "a stream ended with an error");
                    return Some(encode_event(&e.body()));
                }
                Event::Admitted { .. } | Event::Prefilled { .. } | Event::Scores(_) => {}
            }
        }
    }
}

/// Streams the answer as server-sent events. Dropping the body (the client left) drops the
/// [`Answering`], which cancels the work.
pub fn streamed(state: Arc<AppState>, shape: Shape, answering: Answering) -> Response {
    let streaming = Streaming {
        state,
        shape,
        answering,
        tally: Tally::default(),
        started: false,
        ended: false,
        sent_chars: 0,
    };
    let body = stream::unfold(streaming, |mut s| async move {
        let bytes = s.next().await?;
        Some((Ok::<_, Infallible>(Bytes::from(bytes)), s))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
