//! The subset of the OpenAI API that every tier speaks: chat completions (plain and streamed, with
//! log-probs), the legacy text completions, and the model list.
//!
//! Reading is lenient the way OpenAI's own server is: unknown fields are ignored, `null` stands
//! for an absent optional field, and the alternative spellings clients use are accepted
//! (`developer` for `system`, content as a string or as a list of parts, `stop` as a string or a
//! list). Writing is terse: absent optional fields are left out. The checks that need limits
//! (`temperature` in range, `n = 1`, sizes) are in [`ChatCompletionRequest::parse`] and
//! [`ChatCompletionRequest::validate`], not in deserialisation, so that an engine's response or a
//! forwarded request is never rejected for a setting this tier would not have accepted itself.

use super::extension::{OffloadRequest, OffloadResponse};
use crate::tier::TaskType;
use serde::de::value::SeqAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

// ---------------------------------------------------------------------------------------------
// serde helpers
// ---------------------------------------------------------------------------------------------

/// Reads `null` as the type's default (for fields that are plain `bool`s or lists on our side).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

/// A log-prob: a number, or `null` for −∞ (JSON has no infinities, and `serde_json` writes a
/// non-finite number as `null`, so this is also how −∞ round-trips).
struct Logprob(f64);

impl<'de> Deserialize<'de> for Logprob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Logprob(
            Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY),
        ))
    }
}

fn logprob<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Logprob::deserialize(d).map(|l| l.0)
}

/// A string or a list of strings, with a clear "expected" message when it is neither.
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<OneOrMany, A::Error> {
                Vec::<String>::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model. OpenAI's newer name `developer` is read as `system` (and
    /// written back as `system`, which every engine understands).
    #[serde(alias = "developer")]
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call (accepted in a conversation; tiers do not call tools).
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One element of a message's content in the list form: `{"type": "text", "text": "…"}`.
///
/// Other part types (`image_url`, `input_audio`, `file`, …) parse, so that the error can say
/// what is unsupported, and are rejected by [`ChatCompletionRequest::validate`] with 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentPart {
    /// The part type; only `"text"` is served.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `"text"` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl ContentPart {
    pub const TEXT: &'static str = "text";

    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart {
            kind: Self::TEXT.to_owned(),
            text: Some(text.into()),
        }
    }

    pub fn is_text(&self) -> bool {
        self.kind == Self::TEXT
    }
}

/// A message's content: a plain string, or a list of parts (what newer clients send).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MessageContent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MessageContent, A::Error> {
                Vec::<ContentPart>::deserialize(SeqAccessDeserializer::new(seq))
                    .map(MessageContent::Parts)
            }
        }
        d.deserialize_any(V)
    }
}

impl MessageContent {
    /// The text: the string itself, or the text parts joined with `\n` (as vLLM joins them);
    /// parts of other types contribute nothing.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            MessageContent::Text(text) => Cow::Borrowed(text),
            MessageContent::Parts(parts) => {
                let mut texts = parts
                    .iter()
                    .filter(|p| p.is_text())
                    .filter_map(|p| p.text.as_deref());
                match (texts.next(), texts.next()) {
                    (None, _) => Cow::Borrowed(""),
                    (Some(one), None) => Cow::Borrowed(one),
                    (Some(first), Some(second)) => {
                        let mut joined = format!("{first}\n{second}");
                        for text in texts {
                            joined.push('\n');
                            joined.push_str(text);
                        }
                        Cow::Owned(joined)
                    }
                }
            }
        }
    }
}

impl From<String> for MessageContent {
    fn from(text: String) -> Self {
        MessageContent::Text(text)
    }
}

impl From<&str> for MessageContent {
    fn from(text: &str) -> Self {
        MessageContent::Text(text.to_owned())
    }
}

/// One message of a conversation (in a request), or the model's answer (in a response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    /// Required for every role but `assistant` (whose content may be `null` in OpenAI's API when
    /// it only called tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// An optional name for the author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: Some(MessageContent::Text(text.into())),
            name: None,
        }
    }

    pub fn system(text: impl Into<String>) -> Self {
        Self::new(Role::System, text)
    }

    pub fn user(text: impl Into<String>) -> Self {
        Self::new(Role::User, text)
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new(Role::Assistant, text)
    }

    /// The message's text (empty without content); see [`MessageContent::text`].
    pub fn text(&self) -> Cow<'_, str> {
        self.content
            .as_ref()
            .map_or(Cow::Borrowed(""), MessageContent::text)
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling parameters shared by both request kinds
// ---------------------------------------------------------------------------------------------

/// Stop sequences: one string or a list of up to four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Stop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => Stop::One(s),
            OneOrMany::Many(v) => Stop::Many(v),
        })
    }
}

impl Stop {
    /// The stop sequences as a slice.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Stop::One(s) => std::slice::from_ref(s),
            Stop::Many(v) => v,
        }
    }
}

/// Options of a streamed response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send one last chunk with `usage` (and empty `choices`) before `[DONE]`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub include_usage: bool,
}

// ---------------------------------------------------------------------------------------------
// Chat completions: request
// ---------------------------------------------------------------------------------------------

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model; each tier has a default and serves only its own models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation, oldest first. Required and non-empty.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate (the older name; see [`Self::max_output_tokens`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Most tokens to generate (the newer name; wins over `max_tokens` when both are sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature in `[0, 2]`; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass in `(0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Up to four stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Answer as server-sent events of [`ChatCompletionChunk`]s.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub stream: bool,
    /// Only with `stream: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Return the log-prob of each generated token.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub logprobs: bool,
    /// With `logprobs`: also return this many most likely alternatives per position (0–20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Number of choices; only 1 is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// An end-user id, passed through for abuse monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The offload extension ([`OffloadRequest`]); absent from plain OpenAI clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadRequest>,
}

impl ChatCompletionRequest {
    /// A request with these messages and nothing else set.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatCompletionRequest {
            messages,
            ..Default::default()
        }
    }

    /// The output-token limit the client asked for: `max_completion_tokens`, else `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Whether a streamed answer should end with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream && self.stream_options.is_some_and(|o| o.include_usage)
    }

    /// The task type from the extension; chat without one.
    pub fn task(&self) -> TaskType {
        self.offload.as_ref().map_or(TaskType::Chat, |o| o.task)
    }

    /// The stop sequences (empty when none).
    pub fn stop_sequences(&self) -> &[String] {
        self.stop.as_ref().map_or(&[], Stop::as_slice)
    }
}

// ---------------------------------------------------------------------------------------------
// Chat completions: response
// ---------------------------------------------------------------------------------------------

/// Why generation ended. Unknown reasons from an upstream engine are kept as [`Self::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum FinishReason {
    /// A natural end, or a stop sequence.
    Stop,
    /// The output-token limit.
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
    Other(String),
}

impl FinishReason {
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::FunctionCall => "function_call",
            FinishReason::Other(other) => other,
        }
    }
}

impl From<String> for FinishReason {
    fn from(s: String) -> Self {
        match s.as_str() {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            "function_call" => FinishReason::FunctionCall,
            _ => FinishReason::Other(s),
        }
    }
}

impl From<FinishReason> for String {
    fn from(reason: FinishReason) -> Self {
        match reason {
            FinishReason::Other(other) => other,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the most likely tokens at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    /// Natural-log probability; −∞ is written as `null`.
    #[serde(deserialize_with = "logprob")]
    pub logprob: f64,
    /// The token's UTF-8 bytes (a token may be part of a character).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
}

/// The log-prob of one generated token, with the alternatives asked for by `top_logprobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    /// Natural-log probability; −∞ is written as `null`.
    #[serde(deserialize_with = "logprob")]
    pub logprob: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// Most likely tokens at this position, most likely first (empty without `top_logprobs`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub top_logprobs: Vec<TopLogprob>,
}

impl TokenLogprob {
    /// A classification answer as one "token": the option at `chosen` with its log-prob, and
    /// the `top` most likely options (most likely first, ties in option order) as its
    /// alternatives. `probs` are the options' probabilities (the softmax of their scores).
    /// `None` when `chosen` or a probability is missing.
    pub fn for_options(
        options: &[String],
        probs: &[f64],
        chosen: usize,
        top: usize,
    ) -> Option<Self> {
        if probs.len() != options.len() {
            return None;
        }
        let text = options.get(chosen)?;
        let mut order: Vec<usize> = (0..options.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let entry = |i: usize| TopLogprob {
            token: options[i].clone(),
            logprob: probs[i].ln(),
            bytes: Some(options[i].as_bytes().to_vec()),
        };
        Some(TokenLogprob {
            token: text.clone(),
            logprob: probs[chosen].ln(),
            bytes: Some(text.as_bytes().to_vec()),
            top_logprobs: order.into_iter().take(top).map(entry).collect(),
        })
    }
}

/// The log-probs of a choice: one entry per generated token. A tier that did not get them from
/// its engine cannot compute a perplexity confidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: Vec<TokenLogprob>,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    #[serde(default)]
    pub index: u32,
    /// The answer, role `assistant`.
    pub message: ChatMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChoiceLogprobs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
}

/// Token counts of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
}

impl Usage {
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

fn chat_completion_object() -> String {
    ChatCompletionResponse::OBJECT.to_owned()
}

/// The answer to a non-streamed chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    pub id: String,
    /// Always `"chat.completion"`.
    #[serde(default = "chat_completion_object")]
    pub object: String,
    /// Unix time in seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answered (of the tier that answered).
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    pub choices: Vec<ChatChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Which tier answered and what each tier on the way did ([`OffloadResponse`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadResponse>,
}

impl ChatCompletionResponse {
    pub const OBJECT: &'static str = "chat.completion";

    /// A response with one choice.
    pub fn new(
        id: impl Into<String>,
        created: u64,
        model: impl Into<String>,
        choice: ChatChoice,
    ) -> Self {
        ChatCompletionResponse {
            id: id.into(),
            object: Self::OBJECT.to_owned(),
            created,
            model: model.into(),
            system_fingerprint: None,
            choices: vec![choice],
            usage: None,
            offload: None,
        }
    }

    /// The text of the first choice.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        self.choices.first().map(|c| c.message.text())
    }
}

// ---------------------------------------------------------------------------------------------
// Chat completions: streaming
// ---------------------------------------------------------------------------------------------

/// What a chunk adds to a choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// On the first chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice's part of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    /// The log-probs of the tokens in this chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChoiceLogprobs>,
    /// On the last chunk of the choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
}

fn chunk_object() -> String {
    ChatCompletionChunk::OBJECT.to_owned()
}

/// One server-sent event of a streamed chat completion. Every chunk of a stream has the same
/// `id`, `created` and `model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    /// Always `"chat.completion.chunk"`.
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// Empty on the usage chunk.
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<ChunkChoice>,
    /// On the last chunk when `stream_options.include_usage` was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The offload record; tiers send it on the final chunk (see the module documentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadResponse>,
}

impl ChatCompletionChunk {
    pub const OBJECT: &'static str = "chat.completion.chunk";

    /// A chunk with no choices yet.
    pub fn new(id: impl Into<String>, created: u64, model: impl Into<String>) -> Self {
        ChatCompletionChunk {
            id: id.into(),
            object: Self::OBJECT.to_owned(),
            created,
            model: model.into(),
            system_fingerprint: None,
            choices: Vec::new(),
            usage: None,
            offload: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy completions
// ---------------------------------------------------------------------------------------------

/// The prompt of a legacy completion: one string, or a list of strings (of which only one is
/// served). Token-id prompts are not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => Prompt::One(s),
            OneOrMany::Many(v) => Prompt::Many(v),
        })
    }
}

impl Prompt {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Prompt::One(s) => std::slice::from_ref(s),
            Prompt::Many(v) => v,
        }
    }

    /// The one prompt (the first of a list).
    pub fn text(&self) -> &str {
        self.as_slice().first().map_or("", String::as_str)
    }
}

impl Default for Prompt {
    fn default() -> Self {
        Prompt::One(String::new())
    }
}

/// `POST /v1/completions` (the legacy, prompt-in text-out API that evaluation tools use).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Required.
    pub prompt: Prompt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Return log-probs, with this many alternatives per position (0–20); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The offload extension ([`OffloadRequest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadRequest>,
}

impl CompletionRequest {
    pub fn new(prompt: impl Into<String>) -> Self {
        CompletionRequest {
            prompt: Prompt::One(prompt.into()),
            ..Default::default()
        }
    }

    pub fn include_usage(&self) -> bool {
        self.stream && self.stream_options.is_some_and(|o| o.include_usage)
    }

    pub fn task(&self) -> TaskType {
        self.offload.as_ref().map_or(TaskType::Chat, |o| o.task)
    }

    pub fn stop_sequences(&self) -> &[String] {
        self.stop.as_ref().map_or(&[], Stop::as_slice)
    }
}

/// The alternatives at one position of a legacy completion: token → log-prob, most likely
/// first. Written as a JSON object; the order of its keys is kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopLogprobMap(pub Vec<(String, f64)>);

impl Serialize for TopLogprobMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (token, logprob) in &self.0 {
            map.serialize_entry(token, logprob)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for TopLogprobMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLogprobMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of token to log-prob")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLogprobMap, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((token, Logprob(logprob))) = map.next_entry::<String, Logprob>()? {
                    entries.push((token, logprob));
                }
                Ok(TopLogprobMap(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// Log-probs of a legacy completion, one entry per generated token in each list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionLogprobs {
    #[serde(default, deserialize_with = "null_as_default")]
    pub tokens: Vec<String>,
    /// `null` where there is none (the first token of an echoed prompt) or it is −∞.
    #[serde(default, deserialize_with = "null_as_default")]
    pub token_logprobs: Vec<Option<f64>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub top_logprobs: Vec<Option<TopLogprobMap>>,
    /// Character offset of each token in the text.
    #[serde(default, deserialize_with = "null_as_default")]
    pub text_offset: Vec<u32>,
}

/// One legacy completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    pub text: String,
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<CompletionLogprobs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
}

fn text_completion_object() -> String {
    CompletionResponse::OBJECT.to_owned()
}

/// The answer to a legacy completion (also the shape of each streamed chunk of one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    pub id: String,
    /// Always `"text_completion"`.
    #[serde(default = "text_completion_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<CompletionChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadResponse>,
}

impl CompletionResponse {
    pub const OBJECT: &'static str = "text_completion";
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

fn model_object() -> String {
    ModelInfo::OBJECT.to_owned()
}

fn list_object() -> String {
    ModelList::OBJECT.to_owned()
}

/// One model a tier serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    /// Always `"model"`.
    #[serde(default = "model_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub owned_by: String,
}

impl ModelInfo {
    pub const OBJECT: &'static str = "model";

    pub fn new(id: impl Into<String>, created: u64, owned_by: impl Into<String>) -> Self {
        ModelInfo {
            id: id.into(),
            object: Self::OBJECT.to_owned(),
            created,
            owned_by: owned_by.into(),
        }
    }
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `"list"`.
    #[serde(default = "list_object")]
    pub object: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: Vec<ModelInfo>,
}

impl ModelList {
    pub const OBJECT: &'static str = "list";

    pub fn new(data: Vec<ModelInfo>) -> Self {
        ModelList {
            object: Self::OBJECT.to_owned(),
            data,
        }
    }
}
