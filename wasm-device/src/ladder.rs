//! The device's part of the ladder, without any browser I/O: what the page asks, what the device
//! tells it while answering, the request it sends up, reading the edge's streamed answer with
//! `offload`'s SSE decoder, and the hop records of every outcome (answered here, offloaded,
//! fallen back because the edge failed). The browser glue (`api`) only moves bytes.

use crate::error::{DeviceError, Result};
use crate::settings::Settings;
use offload::wire::sse::{StreamItem, parse_chat_chunk};
use offload::wire::{
    ChatCompletionRequest, ChatMessage, HopOutcome, HopRecord, LinkBytes, OffloadRequest,
    OffloadResponse, Role, SseDecoder, StreamOptions, Timings, TokenCounts,
};
use offload::{Decision, TaskType, Tier};
use serde::{Deserialize, Serialize};

/// Most messages in one question (the conversation so far included).
pub const MAX_MESSAGES: usize = 256;
/// Most characters in one question's messages together.
pub const MAX_CHARS: usize = 64 * 1024;
/// Most bytes of an upstream answer read before giving up on it.
pub const MAX_UPSTREAM_BYTES: u64 = 8 << 20;

/// A question from the page: the conversation so far, ending with the user's new message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// Oldest first; roles `system`, `user`, `assistant`; the last one is the user's.
    pub messages: Vec<ChatMessage>,
    /// Passed up with the request and echoed in the hop records; one is made up when absent.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Overrides the settings' `max_tokens` for this question.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

impl AskRequest {
    /// Parses and checks a question.
    pub fn parse(value: serde_json::Value) -> Result<Self> {
        let req: AskRequest =
            serde_json::from_value(value).map_err(|e| DeviceError::Request(e.to_string()))?;
        req.validate()?;
        Ok(req)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DeviceError::Request(m));
        if self.messages.is_empty() {
            return bad("`messages` must not be empty".into());
        }
        if self.messages.len() > MAX_MESSAGES {
            return bad(format!("at most {MAX_MESSAGES} messages"));
        }
        let mut chars = 0;
        for (i, m) in self.messages.iter().enumerate() {
            if m.role == Role::Tool {
                return bad(format!("messages[{i}]: role `tool` is not served"));
            }
            chars += m.text().chars().count();
        }
        if chars > MAX_CHARS {
            return bad(format!(
                "the messages hold {chars} characters; at most {MAX_CHARS}"
            ));
        }
        if self.messages.last().map(|m| m.role) != Some(Role::User) {
            return bad("the last message must be the user's".into());
        }
        if let Some(id) = &self.request_id
            && (id.is_empty() || id.chars().count() > offload::wire::extension::MAX_ID_CHARS)
        {
            return bad("`request_id` must have 1 to 256 characters".into());
        }
        if let Some(n) = self.max_tokens
            && !(1..=crate::settings::MAX_TOKENS_LIMIT).contains(&n)
        {
            return bad(format!(
                "`max_tokens` must be between 1 and {}",
                crate::settings::MAX_TOKENS_LIMIT
            ));
        }
        Ok(())
    }

    /// The conversation in `llm`'s terms, with `system_prompt` first when the conversation
    /// has no system message and the prompt is not empty.
    pub fn llm_messages(&self, system_prompt: &str) -> Vec<llm::Message> {
        let add_system = !system_prompt.trim().is_empty()
            && self.messages.first().map(|m| m.role) != Some(Role::System);
        add_system
            .then(|| llm::Message::system(system_prompt))
            .into_iter()
            .chain(self.messages.iter().map(|m| {
                let role = match m.role {
                    Role::System => llm::Role::System,
                    Role::Assistant => llm::Role::Assistant,
                    // `validate` refuses `tool`.
                    Role::User | Role::Tool => llm::Role::User,
                };
                llm::Message::new(role, m.text().into_owned())
            }))
            .collect()
    }
}

/// Whose tokens a [`AskEvent::Token`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The model in this page.
    Device,
    /// The tier above (the edge, or the cloud through it).
    Upstream,
}

/// What the device tells the page while it answers, in this order: `started`, the device's
/// `token`s, its `decision`; when it offloads, `upstream` and the upstream's `token`s (or a
/// `fallback`). The answer itself comes last, as the [`AskResult`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AskEvent {
    /// The device starts generating: the prompt's length, and how much of it the KV cache of
    /// the conversation already held.
    Started {
        prompt_tokens: u32,
        cached_tokens: u32,
    },
    /// Text to append to the answer being shown.
    Token { source: Source, text: String },
    /// The device scored its answer; `hop` says its confidence, threshold and the policy's
    /// verdict. When it offloads, the device's text is only a draft.
    Decision { hop: Box<HopRecord> },
    /// The request went up to `url`.
    Upstream { url: String },
    /// The tiers above failed; the device's own answer stands (`error` says why).
    Fallback { error: String },
    /// The model moved to another backend mid-answer (the GPU was lost; `note` says why).
    Backend { backend: String, note: String },
}

/// The answer, with the hop record of every tier that handled it.
#[derive(Debug, Clone, Serialize)]
pub struct AskResult {
    /// The answer returned to the user.
    pub text: String,
    pub answered_by: Tier,
    /// The device's own answer (a draft, when the request was offloaded).
    pub device_text: String,
    /// `stop`, `length` or `cancelled`.
    pub finish_reason: String,
    /// The offload record: `answered_by`, and the hops, lowest first.
    pub offload: OffloadResponse,
    /// Body bytes on the device→edge link (sent, received); zero when nothing went up.
    pub bytes: LinkBytes,
    /// From the question to the last byte of the answer.
    pub latency_ms: f64,
    /// A sentence for the user when something did not go as the policy wanted (the edge is
    /// unreachable, the browser is offline, the answer was cancelled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What the device's own generation produced.
#[derive(Debug, Clone, Default)]
pub struct DeviceAnswer {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub first_token_ms: Option<f64>,
    /// `stop`, `length` or `cancelled`.
    pub finish_reason: &'static str,
}

/// The device's hop record.
pub fn device_hop(
    model: &str,
    policy: &str,
    answer: &DeviceAnswer,
    confidence: Option<f64>,
    decision: Option<Decision>,
    outcome: HopOutcome,
    total_ms: f64,
) -> HopRecord {
    let mut hop = HopRecord::new(Tier::Device, model, outcome);
    if let Some(decision) = decision {
        hop = hop.with_decision(decision);
    }
    hop.confidence = confidence;
    hop.policy = Some(policy.to_string());
    hop.tokens = Some(TokenCounts {
        prompt: answer.prompt_tokens,
        completion: answer.completion_tokens,
    });
    hop.timings = Some(Timings {
        prefill_ms: Some(answer.prefill_ms),
        decode_ms: Some(answer.decode_ms),
        first_token_ms: answer.first_token_ms,
        total_ms: Some(total_ms),
        ..Timings::default()
    });
    hop
}

/// The request the device sends to the edge: the same conversation, streamed, with the policy
/// and the device's hop record in the offload extension. Log-probs are not asked for: the
/// edge scores its own answer, and they would only add bytes to the link.
pub fn upstream_request(
    ask: &AskRequest,
    settings: &Settings,
    hop: HopRecord,
    request_id: &str,
) -> ChatCompletionRequest {
    let mut offload = OffloadRequest::new(TaskType::Chat);
    offload.policy = Some(settings.policy.clone());
    offload.request_id = Some(request_id.to_string());
    let mut req = ChatCompletionRequest::new(ask.messages.clone());
    req.max_tokens = Some(ask.max_tokens.unwrap_or(settings.max_tokens));
    req.temperature = Some(settings.temperature);
    if settings.temperature > 0.0 {
        req.seed = i64::try_from(settings.seed).ok();
    }
    req.stream = true;
    req.stream_options = Some(StreamOptions {
        include_usage: true,
    });
    req.offload = Some(offload.forwarded(hop));
    req
}

/// A stable number for a request id (FNV-1a), the `request_key` seeded policies draw from.
pub fn request_key(request_id: &str) -> u64 {
    request_id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The edge's streamed answer, read as it arrives.
#[derive(Debug, Default)]
pub struct UpstreamReader {
    decoder: SseDecoder,
    text: String,
    offload: Option<OffloadResponse>,
    model: Option<String>,
    finish_reason: Option<String>,
    received: u64,
    done: bool,
}

/// The edge's whole answer.
#[derive(Debug, Clone)]
pub struct UpstreamAnswer {
    pub text: String,
    /// The `offload` object of the final chunk; `None` from a plain OpenAI server.
    pub offload: Option<OffloadResponse>,
    pub model: Option<String>,
    pub finish_reason: Option<String>,
    /// Body bytes received.
    pub received: u64,
}

impl UpstreamReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Body bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Reads the next piece of the body; returns the answer text it completes. An error is a
    /// message for the user (the stream broke, or the edge reported an error).
    pub fn feed(&mut self, bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
        self.received += bytes.len() as u64;
        if self.received > MAX_UPSTREAM_BYTES {
            return Err(format!(
                "the edge's answer is larger than {MAX_UPSTREAM_BYTES} bytes"
            ));
        }
        let events = self
            .decoder
            .feed(bytes)
            .map_err(|e| format!("the edge's stream is broken: {e}"))?;
        let mut texts = Vec::new();
        for event in events {
            self.event(&event, &mut texts)?;
        }
        Ok(texts)
    }

    fn event(
        &mut self,
        event: &offload::wire::SseEvent,
        texts: &mut Vec<String>,
    ) -> std::result::Result<(), String> {
        if self.done {
            return Ok(());
        }
        match parse_chat_chunk(event).map_err(|e| format!("the edge sent a bad chunk: {e}"))? {
            StreamItem::Done => self.done = true,
            StreamItem::Error(body) => {
                return Err(format!("the edge failed: {}", body.error.message));
            }
            StreamItem::Chunk(chunk) => {
                if self.model.is_none() && !chunk.model.is_empty() {
                    self.model = Some(chunk.model.clone());
                }
                for choice in chunk.choices.iter().filter(|c| c.index == 0) {
                    if let Some(text) = &choice.delta.content
                        && !text.is_empty()
                    {
                        self.text.push_str(text);
                        texts.push(text.clone());
                    }
                    if let Some(reason) = &choice.finish_reason {
                        self.finish_reason = Some(reason.as_str().to_string());
                    }
                }
                // The last offload object of the stream is the complete one.
                if let Some(offload) = chunk.offload {
                    self.offload = Some(offload);
                }
            }
        }
        Ok(())
    }

    /// The body has ended: the answer, or why it is not one.
    pub fn finish(mut self) -> std::result::Result<UpstreamAnswer, String> {
        let rest = self
            .decoder
            .finish()
            .map_err(|e| format!("the edge's stream is broken: {e}"))?;
        let mut texts = Vec::new();
        if let Some(event) = rest {
            self.event(&event, &mut texts)?;
        }
        if !self.done && self.finish_reason.is_none() {
            return Err("the edge's stream ended before the answer was complete".into());
        }
        Ok(UpstreamAnswer {
            text: self.text,
            offload: self.offload,
            model: self.model,
            finish_reason: self.finish_reason,
            received: self.received,
        })
    }
}

/// The offload record of an answer that came from above: the edge's record with the device's
/// own hop completed (bytes on its link, time waiting, total time).
pub fn upstream_record(
    mut hop: HopRecord,
    answer: &UpstreamAnswer,
    bytes: LinkBytes,
    upstream_ms: f64,
    total_ms: f64,
) -> OffloadResponse {
    let mut response = answer.offload.clone().unwrap_or_else(|| {
        // A plain OpenAI server above: it answered, and said nothing more.
        OffloadResponse::new(
            Tier::Edge,
            vec![HopRecord::new(
                Tier::Edge,
                answer.model.clone().unwrap_or_default(),
                HopOutcome::Answered,
            )],
        )
    });
    // The device sent it up: after trying (offloaded) or without trying, because the policy
    // routes past it (forwarded, as the edge records the same case).
    if hop.outcome != HopOutcome::Forwarded {
        hop.outcome = HopOutcome::Offloaded;
    }
    hop.bytes = Some(bytes);
    let timings = hop.timings.get_or_insert_with(Timings::default);
    timings.upstream_ms = Some(upstream_ms);
    timings.total_ms = Some(total_ms);
    response.upsert(hop);
    response
}

/// The offload record when the device's own answer is returned after the tiers above failed.
pub fn fallback_record(
    mut hop: HopRecord,
    error: &str,
    bytes: LinkBytes,
    upstream_ms: f64,
    total_ms: f64,
) -> OffloadResponse {
    hop.outcome = HopOutcome::Fallback;
    hop.error = Some(error.to_string());
    hop.bytes = (bytes.total() > 0).then_some(bytes);
    let timings = hop.timings.get_or_insert_with(Timings::default);
    timings.upstream_ms = Some(upstream_ms);
    timings.total_ms = Some(total_ms);
    OffloadResponse::new(Tier::Device, vec![hop])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use offload::Reason;
    use offload::wire::{ChatCompletionChunk, ChunkChoice, Delta, encode_event};
    use serde_json::json;

    fn ask(messages: serde_json::Value) -> Result<AskRequest> {
        AskRequest::parse(json!({ "messages": messages }))
    }

    #[test]
    fn the_system_prompt_goes_first_unless_there_is_one() {
        let a = ask(json!([{"role": "user", "content": "hi"}])).unwrap();
        let m = a.llm_messages("Be brief.");
        assert_eq!(m[0], llm::Message::system("Be brief."));
        assert_eq!(m[1], llm::Message::user("hi"));
        assert_eq!(a.llm_messages("").len(), 1);
        let own =
            ask(json!([{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]))
                .unwrap();
        assert_eq!(own.llm_messages("Be brief.")[0], llm::Message::system("S"));
    }

    #[test]
    fn questions_are_checked() {
        ask(json!([{"role": "user", "content": "hi"}])).unwrap();
        for (messages, why) in [
            (json!([]), "empty"),
            (json!([{"role": "assistant", "content": "x"}]), "user's"),
            (json!([{"role": "tool", "content": "x"}]), "tool"),
            (
                json!([{"role": "user", "content": "x".repeat(MAX_CHARS + 1)}]),
                "characters",
            ),
        ] {
            let err = ask(messages).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        assert!(AskRequest::parse(json!({"messages": [], "extra": 1})).is_err());
    }

    fn hop() -> HopRecord {
        let answer = DeviceAnswer {
            text: "draft".into(),
            prompt_tokens: 20,
            completion_tokens: 5,
            prefill_ms: 10.0,
            decode_ms: 50.0,
            first_token_ms: Some(12.0),
            finish_reason: "stop",
        };
        let decision = Decision::offload(
            Tier::Edge,
            Reason::Threshold {
                confidence: 0.2,
                threshold: 0.3,
                window_len: Some(4),
            },
        );
        device_hop(
            "smol",
            "recserve",
            &answer,
            Some(0.2),
            Some(decision),
            HopOutcome::Offloaded,
            61.0,
        )
    }

    #[test]
    fn the_request_up_carries_the_policy_and_the_device_hop() {
        let a = ask(json!([{"role": "user", "content": "hi"}])).unwrap();
        let req = upstream_request(&a, &Settings::default(), hop(), "r1");
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["stream"], true);
        assert_eq!(json["offload"]["request_id"], "r1");
        assert_eq!(json["offload"]["policy"]["name"], "recserve");
        assert_eq!(json["offload"]["hops"][0]["tier"], "device");
        assert_eq!(json["offload"]["hops"][0]["threshold"], 0.3);
        assert!(json["offload"]["hops"][0].get("bytes").is_none());
        // What the edge will parse it with.
        let bytes = serde_json::to_vec(&req).unwrap();
        ChatCompletionRequest::parse(&bytes, &offload::wire::Limits::default()).unwrap();
    }

    fn chunk(text: Option<&str>, finish: bool, offload: Option<OffloadResponse>) -> String {
        let mut c = ChatCompletionChunk::new("id", 0, "gemma");
        if text.is_some() || finish {
            c.choices.push(ChunkChoice {
                index: 0,
                delta: Delta {
                    role: None,
                    content: text.map(str::to_string),
                },
                logprobs: None,
                finish_reason: finish.then_some(offload::wire::FinishReason::Stop),
            });
        }
        c.offload = offload;
        encode_event(&c)
    }

    #[test]
    fn the_edges_stream_is_read_across_any_split() {
        let mut edge = HopRecord::new(Tier::Edge, "gemma", HopOutcome::Answered);
        edge.confidence = Some(0.4);
        let mut travelled = hop();
        travelled.bytes = None;
        let record = OffloadResponse::new(Tier::Edge, vec![travelled, edge]);
        let body = format!(
            "{}{}{}{}",
            chunk(Some("Hel"), false, None),
            chunk(Some("lo é"), false, None),
            chunk(None, true, Some(record)),
            offload::wire::DONE
        );
        let bytes = body.as_bytes();
        for split in [1, 7, 64, bytes.len()] {
            let mut r = UpstreamReader::new();
            let mut texts = String::new();
            for piece in bytes.chunks(split) {
                texts += &r.feed(piece).unwrap().concat();
            }
            let answer = r.finish().unwrap();
            assert_eq!(texts, "Hello é");
            assert_eq!(answer.text, "Hello é");
            assert_eq!(answer.received, bytes.len() as u64);
            let sent = LinkBytes {
                sent: 100,
                received: answer.received,
            };
            let full = upstream_record(hop(), &answer, sent, 30.0, 95.0);
            assert_eq!(full.answered_by, Tier::Edge);
            assert_eq!(full.hops.len(), 2);
            assert_eq!(full.hops[0].bytes, Some(sent));
            assert_eq!(full.hops[0].timings.unwrap().upstream_ms, Some(30.0));
            assert_eq!(full.hops[1].confidence, Some(0.4));
        }
    }

    #[test]
    fn a_broken_or_failing_stream_is_an_error_for_the_fallback() {
        let mut r = UpstreamReader::new();
        r.feed(chunk(Some("Hel"), false, None).as_bytes()).unwrap();
        assert!(r.finish().unwrap_err().contains("ended before"));

        let mut r = UpstreamReader::new();
        let err = encode_event(&offload::wire::ErrorResponse::server_error("cloud down"));
        assert!(r.feed(err.as_bytes()).unwrap_err().contains("cloud down"));

        let fb = fallback_record(hop(), "edge unreachable", LinkBytes::default(), 3.0, 64.0);
        assert_eq!(fb.answered_by, Tier::Device);
        assert_eq!(fb.hops[0].outcome, HopOutcome::Fallback);
        assert_eq!(fb.hops[0].bytes, None);
    }

    #[test]
    fn a_plain_openai_server_above_still_gives_a_record() {
        let mut r = UpstreamReader::new();
        r.feed(chunk(Some("x"), true, None).as_bytes()).unwrap();
        let answer = r.finish().unwrap();
        let record = upstream_record(hop(), &answer, LinkBytes::default(), 1.0, 2.0);
        assert_eq!(record.answered_by, Tier::Edge);
        assert_eq!(record.hops[1].model, "gemma");
        assert_eq!(record.hops[0].outcome, HopOutcome::Offloaded);
        // A request the policy forwarded without an attempt stays forwarded.
        let mut forwarded = hop();
        forwarded.outcome = HopOutcome::Forwarded;
        let record = upstream_record(forwarded, &answer, LinkBytes::default(), 1.0, 2.0);
        assert_eq!(record.hops[0].outcome, HopOutcome::Forwarded);
    }

    #[test]
    fn request_keys_are_stable() {
        assert_eq!(request_key("a"), request_key("a"));
        assert_ne!(request_key("a"), request_key("b"));
    }
}
