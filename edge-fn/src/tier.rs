//! The edge tier's handling of one chat completion: ask the policy whether to attempt here,
//! generate and score the answer, record the confidence in the window and decide (RecServe by
//! `offload`), then keep the answer or send the request up, with this tier's hop record
//! appended, and pass the cloud's answer back with the record completed. When the cloud is down,
//! slow or wrong, the edge answers with its own output and its record says `fallback` and why:
//! a request never ends without an answer because the tier above failed.
//!
//! Streaming: the answer's confidence is known only once it is complete, so the edge generates
//! the whole answer before it streams it (or relays the cloud's stream).

use crate::backend::Backend;
use crate::engine::{self, Answer};
use crate::error::EdgeError;
use crate::settings::Settings;
use crate::upstream::{Body, Upstream, read_all};
use crate::windows::{WindowStore, decide_and_record};
use offload::policy::{Decision, Route, RouteInput};
use offload::wire::{
    ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    ChoiceLogprobs, ChunkChoice, DONE, Delta, HopOutcome, HopRecord, Limits, LinkBytes,
    OffloadRequest, OffloadResponse, Role, SseDecoder, SseEvent, Timings, TokenCounts, Usage,
    encode_event,
};
use offload::{PolicySpec, Tier, TierSet};
use std::time::{Duration, Instant};

/// Most bytes of a cloud answer read whole (non-streamed).
const MAX_UPSTREAM_BYTES: usize = 16 * 1024 * 1024;

/// A parsed chat request and what the tier derives from it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub request: ChatCompletionRequest,
    pub policy: PolicySpec,
    pub received: Instant,
    /// A stable number for the request (seeded policies and sampling draw from it).
    pub key: u64,
    pub id: String,
    pub created: u64,
}

/// FNV-1a, for request keys.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Parses and checks a request body.
pub fn parse(
    body: &[u8],
    settings: &Settings,
    received: Instant,
    created: u64,
) -> Result<Incoming, EdgeError> {
    let request = ChatCompletionRequest::parse(body, &Limits::default())?;
    if let Some(ext) = &request.offload
        && (ext.has_visited(Tier::Edge) || ext.has_visited(Tier::Cloud))
    {
        return Err(EdgeError::Loop);
    }
    let policy = request
        .offload
        .as_ref()
        .and_then(|o| o.policy.clone())
        .unwrap_or_else(|| settings.policy.clone());
    let key = match request
        .offload
        .as_ref()
        .and_then(|o| o.request_id.as_deref())
    {
        Some(id) => fnv1a(id.as_bytes()),
        None => fnv1a(body),
    };
    Ok(Incoming {
        request,
        policy,
        received,
        key,
        id: format!("chatcmpl-edge-{key:016x}"),
        created,
    })
}

/// One stream event sink (the SSE body).
#[allow(async_fn_in_trait)]
pub trait EventSink {
    /// Sends one encoded event; `false` when the client has gone.
    async fn send(&mut self, event: String) -> bool;
}

/// What the tier works with for one request.
pub struct Edge<'a, S, U> {
    pub settings: &'a Settings,
    pub store: &'a mut S,
    pub upstream: &'a U,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The local answer and the record of what the tier did with it.
struct Local {
    answer: Answer,
    record: HopRecord,
}

/// What to do after the policy has spoken.
enum Step {
    /// Keep the local answer.
    Answer(Box<Local>),
    /// Send the request up (with the local attempt, when there was one).
    Up {
        local: Option<Box<Local>>,
        record: Box<HopRecord>,
    },
}

impl<S: WindowStore, U: Upstream> Edge<'_, S, U> {
    fn reachable(&self) -> TierSet {
        if self.settings.cloud_url.is_some() {
            TierSet::ALL
        } else {
            TierSet::ALL.without(Tier::Cloud)
        }
    }

    fn record(&self, inc: &Incoming, outcome: HopOutcome) -> HopRecord {
        let mut record = HopRecord::new(Tier::Edge, self.settings.model.clone(), outcome);
        record.policy = Some(inc.policy.name().to_string());
        record
    }

    /// Generates here, scores, records the confidence and decides.
    fn attempt<B: Backend>(
        &mut self,
        backend: &B,
        inc: &Incoming,
    ) -> Result<(Answer, Decision), EdgeError> {
        let plan = engine::plan(backend, &inc.request, self.settings.max_tokens, inc.key)?;
        let answer = engine::run(backend, &plan, inc.received)?;
        let decision = decide_and_record(
            self.store,
            &inc.policy,
            inc.request.task(),
            answer.confidence,
            inc.key,
            self.reachable(),
        )?;
        Ok((answer, decision))
    }

    fn local(
        &self,
        inc: &Incoming,
        answer: Answer,
        decision: Decision,
        outcome: HopOutcome,
    ) -> Local {
        let mut record = self.record(inc, outcome).with_decision(decision);
        record.confidence = Some(answer.confidence.get());
        record.tokens = Some(TokenCounts {
            prompt: answer.prompt_tokens as u32,
            completion: answer.completion_tokens as u32,
        });
        record.timings = Some(Timings {
            prefill_ms: Some(answer.prefill_ms),
            decode_ms: Some(answer.decode_ms),
            first_token_ms: Some(answer.first_token_ms),
            ..Timings::default()
        });
        Local { answer, record }
    }

    /// The policy's route, then the local attempt: what to do with this request.
    fn step<B: Backend>(
        &mut self,
        load: &mut impl FnMut() -> Result<B, EdgeError>,
        inc: &Incoming,
    ) -> Result<Step, EdgeError> {
        let built = inc.policy.build()?;
        let route = built.route(&RouteInput {
            tier: Tier::Edge,
            task: inc.request.task(),
            request_key: inc.key,
            reachable: self.reachable(),
        });
        if let Route::Forward { to, reason } = route
            && to > Tier::Edge
        {
            let record = self
                .record(inc, HopOutcome::Forwarded)
                .with_decision(Decision::offload(to, reason));
            return Ok(Step::Up {
                local: None,
                record: Box::new(record),
            });
        }
        let backend = load()?;
        let (answer, decision) = self.attempt(&backend, inc)?;
        if decision.offloads() {
            let local = self.local(inc, answer, decision, HopOutcome::Offloaded);
            let record = Box::new(local.record.clone());
            Ok(Step::Up {
                local: Some(Box::new(local)),
                record,
            })
        } else {
            Ok(Step::Answer(Box::new(self.local(
                inc,
                answer,
                decision,
                HopOutcome::Answered,
            ))))
        }
    }

    /// The local answer after the cloud failed with `why`: the attempt made before, or one
    /// made now (the request was forwarded without one).
    fn fallback<B: Backend>(
        &mut self,
        load: &mut impl FnMut() -> Result<B, EdgeError>,
        inc: &Incoming,
        local: Option<Box<Local>>,
        why: String,
    ) -> Result<Local, EdgeError> {
        let mut local = match local {
            Some(local) => *local,
            None => {
                let backend = load()?;
                let (answer, decision) = self.attempt(&backend, inc)?;
                self.local(inc, answer, decision, HopOutcome::Fallback)
            }
        };
        local.record.outcome = HopOutcome::Fallback;
        local.record.error = Some(why);
        Ok(local)
    }

    /// The request to send up: the client's, with this tier's record appended to the
    /// extension (which is created when the client sent none, so the cloud knows the task).
    fn upward(
        &self,
        inc: &Incoming,
        record: &HopRecord,
        stream: bool,
    ) -> (ChatCompletionRequest, OffloadRequest) {
        let mut up = inc.request.clone();
        let ext = inc
            .request
            .offload
            .clone()
            .unwrap_or_else(|| OffloadRequest::new(inc.request.task()));
        let mut travelling = record.clone();
        travelling.bytes = None;
        up.offload = Some(ext.forwarded(travelling));
        up.stream = stream;
        // The cloud's usage chunk only when the client asked for one (it is relayed as is).
        up.stream_options = if stream {
            inc.request.stream_options
        } else {
            None
        };
        (up, ext)
    }

    fn url(&self) -> Result<String, String> {
        self.settings
            .cloud_url
            .as_ref()
            .map(|u| format!("{u}/v1/chat/completions"))
            .ok_or_else(|| "no cloud_url is configured, so there is no tier above".to_string())
    }

    /// Completes this tier's record with the link's bytes and times.
    fn complete(
        &self,
        inc: &Incoming,
        record: &mut HopRecord,
        bytes: LinkBytes,
        upstream: Duration,
    ) {
        record.bytes = Some(bytes);
        let timings = record.timings.get_or_insert_with(Timings::default);
        timings.upstream_ms = Some(ms(upstream));
        timings.total_ms = Some(ms(inc.received.elapsed()));
    }

    /// The response's extension: the client's hops, this tier's record; only when the client
    /// sent an extension (plain OpenAI clients get plain answers).
    fn local_extension(&self, inc: &Incoming, record: &HopRecord) -> Option<OffloadResponse> {
        let ext = inc.request.offload.as_ref()?;
        let mut hops = ext.hops.clone();
        hops.push(record.clone());
        Some(OffloadResponse {
            answered_by: Tier::Edge,
            hops,
            request_id: ext.request_id.clone(),
        })
    }

    fn local_response(&self, inc: &Incoming, mut local: Local) -> ChatCompletionResponse {
        local
            .record
            .timings
            .get_or_insert_with(Timings::default)
            .total_ms = Some(ms(inc.received.elapsed()));
        let answer = &local.answer;
        let choice = ChatChoice {
            index: 0,
            message: ChatMessage::new(Role::Assistant, answer.text.clone()),
            logprobs: inc.request.logprobs.then(|| ChoiceLogprobs {
                content: visible_logprobs(inc, answer),
            }),
            finish_reason: Some(answer.finish.clone()),
        };
        let mut response = ChatCompletionResponse::new(
            inc.id.clone(),
            inc.created,
            self.settings.model.clone(),
            choice,
        );
        response.usage = Some(Usage::new(
            answer.prompt_tokens as u32,
            answer.completion_tokens as u32,
        ));
        response.offload = self.local_extension(inc, &local.record);
        response
    }

    /// Answers a non-streamed request.
    pub async fn respond<B: Backend>(
        &mut self,
        mut load: impl FnMut() -> Result<B, EdgeError>,
        inc: &Incoming,
    ) -> Result<ChatCompletionResponse, EdgeError> {
        let (local, record) = match self.step(&mut load, inc)? {
            Step::Answer(local) => return Ok(self.local_response(inc, *local)),
            Step::Up { local, record } => (local, record),
        };
        match self.forward(inc, *record).await {
            Ok(response) => Ok(response),
            Err(why) => {
                let local = self.fallback(&mut load, inc, local, why)?;
                Ok(self.local_response(inc, local))
            }
        }
    }

    /// Sends the request up and returns the cloud's answer with this tier's record completed.
    async fn forward(
        &self,
        inc: &Incoming,
        mut record: HopRecord,
    ) -> Result<ChatCompletionResponse, String> {
        let url = self.url()?;
        let (up, ext) = self.upward(inc, &record, false);
        let body = serde_json::to_vec(&up).map_err(|e| e.to_string())?;
        let sent = body.len() as u64;
        let started = Instant::now();
        let timeout = self.settings.cloud_timeout;
        let mut reply = self.upstream.post(&url, body, timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        let bytes = read_all(self.upstream, &mut reply.body, MAX_UPSTREAM_BYTES, left).await?;
        if reply.status != 200 {
            return Err(format!(
                "the cloud answered HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        }
        let mut response: ChatCompletionResponse = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the cloud's answer is not a chat completion: {e}"))?;
        if response.choices.is_empty() {
            return Err("the cloud's answer has no choices".into());
        }
        self.complete(
            inc,
            &mut record,
            LinkBytes {
                sent,
                received: bytes.len() as u64,
            },
            started.elapsed(),
        );
        let mut extension = response.offload.take().unwrap_or_else(|| {
            // A plain OpenAI engine above: the record of what happened is ours to write.
            OffloadResponse::new(Tier::Cloud, ext.hops.clone())
        });
        extension.upsert(record);
        extension.request_id = ext.request_id.clone();
        response.offload = inc.request.offload.is_some().then_some(extension);
        Ok(response)
    }

    /// Answers a streamed request into `sink`.
    pub async fn respond_stream<B: Backend, K: EventSink>(
        &mut self,
        mut load: impl FnMut() -> Result<B, EdgeError>,
        inc: &Incoming,
        sink: &mut K,
    ) -> Result<(), EdgeError> {
        let (local, record) = match self.step(&mut load, inc)? {
            Step::Answer(local) => {
                self.stream_local(inc, *local, sink).await;
                return Ok(());
            }
            Step::Up { local, record } => (local, record),
        };
        match self.relay(inc, *record, sink).await {
            Relay::Done => Ok(()),
            Relay::FailedBeforeAnswer(why) => {
                let local = self.fallback(&mut load, inc, local, why)?;
                self.stream_local(inc, local, sink).await;
                Ok(())
            }
        }
    }

    /// Streams the local answer: a role chunk, one chunk per token, the finish chunk, the
    /// usage chunk if asked for; the extension rides on the last of them.
    async fn stream_local<K: EventSink>(&self, inc: &Incoming, mut local: Local, sink: &mut K) {
        local
            .record
            .timings
            .get_or_insert_with(Timings::default)
            .total_ms = Some(ms(inc.received.elapsed()));
        let answer = &local.answer;
        let chunk = |choices: Vec<ChunkChoice>| {
            let mut c =
                ChatCompletionChunk::new(inc.id.clone(), inc.created, self.settings.model.clone());
            c.choices = choices;
            c
        };
        let choice = |delta: Delta, logprobs, finish| ChunkChoice {
            index: 0,
            delta,
            logprobs,
            finish_reason: finish,
        };
        let mut events = vec![chunk(vec![choice(
            Delta {
                role: Some(Role::Assistant),
                content: None,
            },
            None,
            None,
        )])];
        let visible = visible_logprobs(inc, answer);
        for (i, piece) in answer.pieces.iter().enumerate() {
            let logprobs = inc.request.logprobs.then(|| ChoiceLogprobs {
                content: visible.get(i).cloned().into_iter().collect(),
            });
            events.push(chunk(vec![choice(
                Delta {
                    role: None,
                    content: Some(piece.clone()),
                },
                logprobs,
                None,
            )]));
        }
        let mut last = chunk(vec![choice(
            Delta::default(),
            None,
            Some(answer.finish.clone()),
        )]);
        let extension = self.local_extension(inc, &local.record);
        if inc.request.include_usage() {
            events.push(last);
            last = chunk(Vec::new());
            last.usage = Some(Usage::new(
                answer.prompt_tokens as u32,
                answer.completion_tokens as u32,
            ));
        }
        last.offload = extension;
        events.push(last);
        for event in &events {
            if !sink.send(encode_event(event)).await {
                return;
            }
        }
        let _ = sink.send(DONE.to_string()).await;
    }

    /// Relays the cloud's stream, completing this tier's record on the chunk that carries the
    /// extension.
    async fn relay<K: EventSink>(
        &self,
        inc: &Incoming,
        mut record: HopRecord,
        sink: &mut K,
    ) -> Relay {
        let url = match self.url() {
            Ok(url) => url,
            Err(why) => return Relay::FailedBeforeAnswer(why),
        };
        let (up, ext) = self.upward(inc, &record, true);
        let body = match serde_json::to_vec(&up) {
            Ok(body) => body,
            Err(e) => return Relay::FailedBeforeAnswer(e.to_string()),
        };
        let sent = body.len() as u64;
        let started = Instant::now();
        let timeout = self.settings.cloud_timeout;
        let mut reply = match self.upstream.post(&url, body, timeout).await {
            Ok(reply) => reply,
            Err(why) => return Relay::FailedBeforeAnswer(why),
        };
        if reply.status != 200 {
            let left = timeout.saturating_sub(started.elapsed());
            let text = read_all(self.upstream, &mut reply.body, 64 * 1024, left)
                .await
                .unwrap_or_default();
            return Relay::FailedBeforeAnswer(format!(
                "the cloud answered HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&text[..text.len().min(300)])
            ));
        }
        let mut decoder = SseDecoder::new();
        let mut received = 0u64;
        let mut relayed = 0usize;
        loop {
            let piece = match reply.body.next().await {
                Some(Ok(piece)) => piece,
                Some(Err(why)) => {
                    return self
                        .broken(sink, relayed, format!("the cloud's stream failed: {why}"))
                        .await;
                }
                None => {
                    return self
                        .broken(
                            sink,
                            relayed,
                            "the cloud's stream ended without [DONE]".into(),
                        )
                        .await;
                }
            };
            received += piece.len() as u64;
            let events = match decoder.feed(&piece) {
                Ok(events) => events,
                Err(e) => {
                    return self
                        .broken(
                            sink,
                            relayed,
                            format!("the cloud's stream is malformed: {e}"),
                        )
                        .await;
                }
            };
            for event in events {
                let out = match &event {
                    SseEvent::Done => {
                        let _ = sink.send(DONE.to_string()).await;
                        return Relay::Done;
                    }
                    SseEvent::Data(data) => match serde_json::from_str::<ChatCompletionChunk>(data)
                    {
                        Ok(mut chunk) if chunk.offload.is_some() => {
                            let mut extension = chunk.offload.take().unwrap_or_else(|| {
                                OffloadResponse::new(Tier::Cloud, ext.hops.clone())
                            });
                            let mut completed = record.clone();
                            self.complete(
                                inc,
                                &mut completed,
                                LinkBytes { sent, received },
                                started.elapsed(),
                            );
                            extension.upsert(completed);
                            extension.request_id = ext.request_id.clone();
                            chunk.offload = inc.request.offload.is_some().then_some(extension);
                            encode_event(&chunk)
                        }
                        // Other chunks and mid-stream error bodies pass through as they are.
                        _ => format!("data: {data}\n\n"),
                    },
                };
                if !sink.send(out).await {
                    return Relay::Done;
                }
                relayed += 1;
            }
            record.bytes = Some(LinkBytes { sent, received });
        }
    }

    /// The cloud's stream broke: before anything was relayed, answer locally; after, end the
    /// client's stream with an error event (part of the cloud's answer is already out).
    async fn broken<K: EventSink>(&self, sink: &mut K, relayed: usize, why: String) -> Relay {
        if relayed == 0 {
            return Relay::FailedBeforeAnswer(why);
        }
        let _ = sink
            .send(encode_event(&offload::wire::ErrorResponse::upstream(why)))
            .await;
        Relay::Done
    }
}

enum Relay {
    Done,
    FailedBeforeAnswer(String),
}

/// The log-probs to show: as many alternatives as the client asked for.
fn visible_logprobs(inc: &Incoming, answer: &Answer) -> Vec<offload::wire::TokenLogprob> {
    let top = inc.request.top_logprobs.unwrap_or(0) as usize;
    answer
        .logprobs
        .iter()
        .map(|lp| {
            let mut lp = lp.clone();
            lp.top_logprobs.truncate(top);
            lp
        })
        .collect()
}

/// The error an SSE stream ends with when the edge itself fails after the head was sent.
pub fn error_event(error: &EdgeError) -> String {
    encode_event(&error.to_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_keys_follow_the_request_id() {
        let s = Settings::from_lookup(|_| None).unwrap();
        let now = Instant::now();
        let a = parse(
            br#"{"messages":[{"role":"user","content":"hi"}],"offload":{"request_id":"r1"}}"#,
            &s,
            now,
            0,
        )
        .unwrap();
        let b = parse(
            br#"{"messages":[{"role":"user","content":"other"}],"offload":{"request_id":"r1"}}"#,
            &s,
            now,
            0,
        )
        .unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(a.policy.name(), "recserve");
    }

    #[test]
    fn loops_and_bad_bodies_are_refused() {
        let s = Settings::from_lookup(|_| None).unwrap();
        let now = Instant::now();
        let looped = br#"{"messages":[{"role":"user","content":"hi"}],"offload":{"hops":[{"tier":"edge","outcome":"offloaded"}]}}"#;
        let err = parse(looped, &s, now, 0).unwrap_err();
        assert_eq!(err.status(), 422);
        let err = parse(b"{not json", &s, now, 0).unwrap_err();
        assert_eq!(err.status(), 400);
        let err = parse(br#"{"messages":[]}"#, &s, now, 0).unwrap_err();
        assert!(matches!(err.status(), 400 | 422), "{err}");
    }
}
