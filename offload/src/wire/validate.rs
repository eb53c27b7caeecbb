//! Turning a request body into a checked request: size, UTF-8, JSON, types, then the semantic
//! rules and [`Limits`]. Every failure is a [`WireError`] that names the field at fault.

use super::error::WireError;
use super::locate;
use super::openai::{
    ChatCompletionRequest, CompletionRequest, MessageContent, Prompt, Role, Stop, StreamOptions,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Most stop sequences (OpenAI's limit).
pub const MAX_STOP: usize = 4;
/// Most alternatives per position in `top_logprobs` (chat) or `logprobs` (legacy).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// Size limits a tier enforces on requests. The token limits that need a tokenizer (prompt
/// tokens against the context window) are the tier's own; these are checked before any model
/// work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Most bytes in a request body (413 beyond).
    pub max_body_bytes: usize,
    /// Most messages in a conversation.
    pub max_messages: usize,
    /// Most characters (Unicode scalar values) of text over all messages, or in the prompt.
    pub max_total_chars: usize,
    /// Most tokens a request may ask to generate (`max_tokens` / `max_completion_tokens`).
    pub max_tokens: u32,
}

impl Default for Limits {
    /// 2 MiB bodies, 256 messages, 262 144 characters (more than any tier's context window
    /// holds, so the tier's token check is the one that bites), 4 096 output tokens.
    fn default() -> Self {
        Limits {
            max_body_bytes: 2 * 1024 * 1024,
            max_messages: 256,
            max_total_chars: 256 * 1024,
            max_tokens: 4096,
        }
    }
}

/// Size check, UTF-8 check and typed JSON parse of a body.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, WireError> {
    if bytes.len() > limits.max_body_bytes {
        return Err(WireError::BodyTooLarge {
            size: bytes.len(),
            limit: limits.max_body_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let (line, column) = line_column(bytes, offset);
        WireError::InvalidUtf8 {
            offset,
            line,
            column,
        }
    })?;
    if text.trim().is_empty() {
        return Err(WireError::MalformedJson {
            message: "the body is empty; expected a JSON object".to_owned(),
            line: 1,
            column: 1,
        });
    }
    // serde accepts a JSON array for a struct (its fields in order), which would give confusing
    // errors for a body that is simply not an object.
    if !text.trim_start().starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| json_error(text, &e))?;
        let kind = match value {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
        };
        let (line, column) = line_column(bytes, bytes.len() - text.trim_start().len());
        return Err(WireError::InvalidField {
            param: None,
            message: format!("expected a JSON object, got {kind}"),
            line,
            column,
        });
    }
    serde_json::from_str(text).map_err(|e| json_error(text, &e))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = 1 + String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    (line, column)
}

fn json_error(text: &str, err: &serde_json::Error) -> WireError {
    use serde_json::error::Category;
    let (line, column) = (err.line(), err.column());
    let message = strip_position(err);
    match err.classify() {
        Category::Data => {
            let offset = locate::offset_of(text.as_bytes(), line, column);
            if let Some(field) = missing_field_name(&message) {
                let container = locate::path_at(text.as_bytes(), offset);
                let param = if container.is_empty() {
                    field.to_owned()
                } else {
                    format!("{container}.{field}")
                };
                WireError::MissingField {
                    param,
                    line,
                    column,
                }
            } else {
                let param = locate::path_at(text.as_bytes(), offset);
                WireError::InvalidField {
                    param: (!param.is_empty()).then_some(param),
                    message: plain_expectations(&message),
                    line,
                    column,
                }
            }
        }
        Category::Syntax | Category::Eof | Category::Io => WireError::MalformedJson {
            message,
            line,
            column,
        },
    }
}

/// serde_json's message without its " at line L column C" suffix (the variants carry those).
fn strip_position(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
}

/// `missing field `messages`` → `messages`.
fn missing_field_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .strip_suffix('`')
        .filter(|name| !name.is_empty())
}

/// Rewrites serde's Rust-flavoured expectations ("expected u32", "expected struct ChatMessage")
/// into JSON terms.
fn plain_expectations(message: &str) -> String {
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let plain = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        other if other.starts_with("struct ") || other.starts_with("internally tagged") => {
            "a JSON object"
        }
        other => other,
    };
    format!("{head}, expected {plain}")
}

/// The sampling settings both request kinds share.
struct Sampling<'a> {
    max_tokens: [(&'static str, Option<u32>); 2],
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<&'a Stop>,
    n: Option<u32>,
    stream: bool,
    stream_options: Option<&'a StreamOptions>,
}

fn check_sampling(s: &Sampling<'_>, limits: &Limits) -> Result<(), WireError> {
    if let Some(t) = s.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(WireError::invalid(
            "temperature",
            format!("must be between 0 and 2, got {t}"),
        ));
    }
    if let Some(p) = s.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(WireError::invalid(
            "top_p",
            format!("must be greater than 0 and at most 1, got {p}"),
        ));
    }
    match s.n {
        Some(0) => return Err(WireError::invalid("n", "must be 1, got 0")),
        Some(n) if n > 1 => {
            return Err(WireError::unsupported(
                "n",
                format!(
                    "n > 1 is not supported (got {n}): each tier returns one choice; send one \
                     request per choice"
                ),
            ));
        }
        _ => {}
    }
    for (param, value) in s.max_tokens {
        match value {
            Some(0) => return Err(WireError::invalid(param, "must be at least 1, got 0")),
            Some(v) if v > limits.max_tokens => {
                return Err(WireError::LimitExceeded {
                    param: param.to_owned(),
                    value: u64::from(v),
                    limit: u64::from(limits.max_tokens),
                    unit: "tokens",
                });
            }
            _ => {}
        }
    }
    if let Some(stop) = s.stop {
        let stops = stop.as_slice();
        if stops.len() > MAX_STOP {
            return Err(WireError::invalid(
                "stop",
                format!(
                    "at most {MAX_STOP} stop sequences are allowed, got {}",
                    stops.len()
                ),
            ));
        }
        if let Some(i) = stops.iter().position(String::is_empty) {
            let param = match stop {
                Stop::One(_) => "stop".to_owned(),
                Stop::Many(_) => format!("stop[{i}]"),
            };
            return Err(WireError::invalid(
                param,
                "a stop sequence must not be empty",
            ));
        }
    }
    if s.stream_options.is_some() && !s.stream {
        return Err(WireError::invalid(
            "stream_options",
            "only allowed when `stream` is true",
        ));
    }
    Ok(())
}

fn check_chars(param: &str, chars: usize, limits: &Limits) -> Result<(), WireError> {
    if chars > limits.max_total_chars {
        return Err(WireError::LimitExceeded {
            param: param.to_owned(),
            value: chars as u64,
            limit: limits.max_total_chars as u64,
            unit: "characters",
        });
    }
    Ok(())
}

impl ChatCompletionRequest {
    /// Parses and checks a request body: size (413), UTF-8, JSON syntax, field types and required
    /// fields (400), then [`Self::validate`] (422).
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self, WireError> {
        let request: Self = decode(bytes, limits)?;
        request.validate(limits)?;
        Ok(request)
    }

    /// The semantic rules: at least one message and at most `limits.max_messages`; content on
    /// every non-assistant message, only text parts; total text within `limits.max_total_chars`;
    /// `temperature` in `[0, 2]`; `top_p` in `(0, 1]`; `n` 1; output tokens in
    /// `1..=limits.max_tokens`; at most four non-empty stop sequences; `stream_options` only
    /// when streaming; `top_logprobs` in `0..=20` and only with `logprobs`; and the extension's
    /// own rules ([`OffloadRequest::validate`](super::OffloadRequest::validate)).
    pub fn validate(&self, limits: &Limits) -> Result<(), WireError> {
        if self.messages.is_empty() {
            return Err(WireError::invalid(
                "messages",
                "must contain at least one message",
            ));
        }
        if self.messages.len() > limits.max_messages {
            return Err(WireError::LimitExceeded {
                param: "messages".to_owned(),
                value: self.messages.len() as u64,
                limit: limits.max_messages as u64,
                unit: "messages",
            });
        }
        let mut chars = 0usize;
        for (i, message) in self.messages.iter().enumerate() {
            match &message.content {
                None if message.role != Role::Assistant => {
                    return Err(WireError::invalid(
                        format!("messages[{i}].content"),
                        format!("is required for a `{}` message", message.role),
                    ));
                }
                None => {}
                Some(MessageContent::Text(text)) => chars += text.chars().count(),
                Some(MessageContent::Parts(parts)) => {
                    for (j, part) in parts.iter().enumerate() {
                        if !part.is_text() {
                            return Err(WireError::unsupported(
                                format!("messages[{i}].content[{j}].type"),
                                format!(
                                    "content parts of type `{}` are not supported; only `text` \
                                     parts are",
                                    part.kind
                                ),
                            ));
                        }
                        let Some(text) = &part.text else {
                            return Err(WireError::invalid(
                                format!("messages[{i}].content[{j}].text"),
                                "a `text` part needs a `text` string",
                            ));
                        };
                        chars += text.chars().count();
                    }
                }
            }
        }
        check_chars("messages", chars, limits)?;
        check_sampling(
            &Sampling {
                max_tokens: [
                    ("max_tokens", self.max_tokens),
                    ("max_completion_tokens", self.max_completion_tokens),
                ],
                temperature: self.temperature,
                top_p: self.top_p,
                stop: self.stop.as_ref(),
                n: self.n,
                stream: self.stream,
                stream_options: self.stream_options.as_ref(),
            },
            limits,
        )?;
        if let Some(top) = self.top_logprobs {
            if top > MAX_TOP_LOGPROBS {
                return Err(WireError::invalid(
                    "top_logprobs",
                    format!("must be between 0 and {MAX_TOP_LOGPROBS}, got {top}"),
                ));
            }
            if !self.logprobs {
                return Err(WireError::invalid("top_logprobs", "needs `logprobs: true`"));
            }
        }
        if let Some(offload) = &self.offload {
            offload.validate()?;
        }
        Ok(())
    }
}

impl CompletionRequest {
    /// Parses and checks a legacy completion body, as [`ChatCompletionRequest::parse`] does.
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self, WireError> {
        let request: Self = decode(bytes, limits)?;
        request.validate(limits)?;
        Ok(request)
    }

    /// The semantic rules: exactly one prompt within `limits.max_total_chars`; `logprobs` in
    /// `0..=20`; and the sampling rules of [`ChatCompletionRequest::validate`].
    pub fn validate(&self, limits: &Limits) -> Result<(), WireError> {
        if let Prompt::Many(prompts) = &self.prompt {
            if prompts.is_empty() {
                return Err(WireError::invalid("prompt", "must contain a prompt"));
            }
            if prompts.len() > 1 {
                return Err(WireError::unsupported(
                    "prompt",
                    format!(
                        "a list of {} prompts is not supported; send one request per prompt",
                        prompts.len()
                    ),
                ));
            }
        }
        check_chars("prompt", self.prompt.text().chars().count(), limits)?;
        check_sampling(
            &Sampling {
                max_tokens: [("max_tokens", self.max_tokens), ("max_tokens", None)],
                temperature: self.temperature,
                top_p: self.top_p,
                stop: self.stop.as_ref(),
                n: self.n,
                stream: self.stream,
                stream_options: self.stream_options.as_ref(),
            },
            limits,
        )?;
        if let Some(top) = self.logprobs
            && top > MAX_TOP_LOGPROBS
        {
            return Err(WireError::invalid(
                "logprobs",
                format!("must be between 0 and {MAX_TOP_LOGPROBS}, got {top}"),
            ));
        }
        if let Some(offload) = &self.offload {
            offload.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<ChatCompletionRequest, WireError> {
        ChatCompletionRequest::parse(body.as_bytes(), &Limits::default())
    }

    #[test]
    fn type_errors_name_the_field() {
        let err =
            chat(r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#)
                .unwrap_err();
        assert_eq!(err.param(), Some("temperature"), "{err}");
        assert!(err.to_string().contains("expected a number"), "{err}");

        let err = chat(r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "robot"}]}"#)
            .unwrap_err();
        assert_eq!(err.param(), Some("messages[1].role"), "{err}");

        let err = chat("{\n  \"messages\": [\n    {\"content\": \"hi\"}\n  ]\n}").unwrap_err();
        assert!(
            matches!(&err, WireError::MissingField { param, line: 3, .. } if param == "messages[0].role"),
            "{err:?}"
        );

        let err = chat(r#"{"messages": [{"role": "user", "content": 5}]}"#).unwrap_err();
        assert_eq!(err.param(), Some("messages[0].content"), "{err}");
        assert!(
            err.to_string()
                .contains("a string or a list of content parts")
        );

        let err = chat(r#"{"messages": [], "max_tokens": -1}"#).unwrap_err();
        assert_eq!(err.param(), Some("max_tokens"), "{err}");
        assert!(err.to_string().contains("non-negative integer"), "{err}");

        for body in ["[]", "[1]", " \"messages\"", "null"] {
            let err = chat(body).unwrap_err();
            assert_eq!(err.param(), None, "{body}");
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains("expected a JSON object"), "{err}");
        }
        assert!(matches!(
            chat("[1,").unwrap_err(),
            WireError::MalformedJson { .. }
        ));
    }

    #[test]
    fn utf8_errors_have_positions() {
        let err =
            ChatCompletionRequest::parse(b"{\"a\":\n \"\xff\"}", &Limits::default()).unwrap_err();
        assert_eq!(
            err,
            WireError::InvalidUtf8 {
                offset: 8,
                line: 2,
                column: 3
            }
        );
    }

    #[test]
    fn expectations_read_as_json() {
        assert_eq!(
            plain_expectations("invalid type: string \"x\", expected u32"),
            "invalid type: string \"x\", expected a non-negative integer"
        );
        assert_eq!(plain_expectations("no comma here"), "no comma here");
    }
}
