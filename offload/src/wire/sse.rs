//! Server-sent events, as OpenAI streams chat completions: each chunk is one event
//! `data: {json}\n\n`, and the stream ends with `data: [DONE]\n\n`. An error after the stream
//! has started is sent as an event whose data is an [`ErrorResponse`].
//!
//! [`SseDecoder`] reads any server's stream (the full event-stream syntax: `\n`, `\r\n` or `\r`
//! line endings, comments, multi-line data, other fields), fed with byte chunks split anywhere.

use super::error::ErrorResponse;
use super::openai::ChatCompletionChunk;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// The event that ends an OpenAI stream.
pub const DONE: &str = "data: [DONE]\n\n";

/// A comment line; servers send it to keep idle connections open. Decoders ignore it.
pub const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// The data of the [`DONE`] event.
pub const DONE_DATA: &str = "[DONE]";

/// Default limit on the size of one event (its data, or one line of any kind): 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// One event as `data: {json}\n\n`. JSON never contains a raw line break, so one data line
/// suffices. Should `value` fail to serialise (a map with non-string keys), the event carries a
/// `server_error` body instead, so the stream still says what went wrong.
pub fn encode_event<T: Serialize + ?Sized>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|err| {
        let body = ErrorResponse::server_error(format!("could not encode a stream event: {err}"));
        serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"error":{"message":"could not encode a stream event","type":"server_error","param":null,"code":null}}"#
                .to_owned()
        })
    });
    format!("data: {json}\n\n")
}

/// A complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The event's data lines, joined with `\n`.
    Data(String),
    /// `data: [DONE]`.
    Done,
}

impl SseEvent {
    /// The data, `None` for [`SseEvent::Done`].
    pub fn data(&self) -> Option<&str> {
        match self {
            SseEvent::Data(data) => Some(data),
            SseEvent::Done => None,
        }
    }
}

/// What can go wrong reading a stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SseError {
    /// One event (or a single line) is larger than the decoder's limit; the stream is broken or
    /// hostile and should be dropped.
    #[error("a server-sent event is larger than the limit of {limit} bytes")]
    EventTooLarge { limit: usize },
    /// An event's data is not the JSON expected.
    #[error("a server-sent event's data is not a valid {expected}: {message}")]
    InvalidData {
        expected: &'static str,
        message: String,
    },
}

/// An incremental event-stream decoder (the WHATWG "event stream" interpretation).
///
/// Feed it byte chunks as they arrive, split anywhere (inside a UTF-8 character, between `\r`
/// and `\n`); it returns the events completed so far. Lines are decoded as UTF-8 once complete
/// (invalid sequences become U+FFFD, as the standard says); a leading byte-order mark is
/// dropped. Comment lines (`:`) and fields other than `data` (`event`, `id`, `retry`) are
/// ignored; an event with empty data is not dispatched.
///
/// Memory is bounded: a pending event larger than the limit is an error, after which the
/// decoder keeps returning that error.
#[derive(Debug, Clone)]
pub struct SseDecoder {
    /// Bytes of the line being read.
    line: Vec<u8>,
    /// Data lines of the event being read, joined with `\n`.
    data: String,
    /// Whether `data` has had a data line (so the next one is preceded by `\n`).
    has_data: bool,
    /// The previous byte was a `\r`, so a `\n` right after it ends nothing.
    after_cr: bool,
    /// No line has been completed yet (a byte-order mark may lead it).
    first_line: bool,
    max_event_bytes: usize,
    failed: Option<SseError>,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with the [`DEFAULT_MAX_EVENT_BYTES`] limit.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder refusing events (and lines) larger than `max_event_bytes`.
    pub fn with_limit(max_event_bytes: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            after_cr: false,
            first_line: true,
            max_event_bytes,
            failed: None,
        }
    }

    /// Decodes `chunk`, returning the events it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        self.feed_into(chunk, &mut events)?;
        Ok(events)
    }

    /// Decodes `chunk`, appending the events it completes to `events`.
    pub fn feed_into(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let mut rest = chunk;
        if self.after_cr && rest.first() == Some(&b'\n') {
            rest = &rest[1..];
        }
        self.after_cr = false;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.append(rest)?;
                    break;
                }
                Some(end) => {
                    self.append(&rest[..end])?;
                    let was_cr = rest[end] == b'\r';
                    rest = &rest[end + 1..];
                    if was_cr {
                        match rest.first() {
                            Some(b'\n') => rest = &rest[1..],
                            None => self.after_cr = true,
                            Some(_) => {}
                        }
                    }
                    self.end_line(events)?;
                }
            }
        }
        Ok(())
    }

    /// Ends the stream. A pending event is dispatched rather than dropped (the standard drops
    /// an event not closed by a blank line), so a server that omits the last blank line loses
    /// nothing. The decoder is then ready for a new stream.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut events = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut events)?;
        }
        self.end_line(&mut events)?;
        *self = Self::with_limit(self.max_event_bytes);
        Ok(events.pop())
    }

    fn fail(&mut self) -> SseError {
        let err = SseError::EventTooLarge {
            limit: self.max_event_bytes,
        };
        self.failed = Some(err.clone());
        self.line = Vec::new();
        self.data = String::new();
        err
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() + self.data.len() > self.max_event_bytes {
            return Err(self.fail());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut owned = std::mem::take(&mut self.line);
        let result = self.process_line(&owned, events);
        owned.clear();
        if self.failed.is_none() {
            // Keep the buffer's capacity for the next line.
            self.line = owned;
        }
        result
    }

    fn process_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut line = line;
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(events);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            let value = String::from_utf8_lossy(value);
            if self.data.len() + value.len() + 1 > self.max_event_bytes {
                return Err(self.fail());
            }
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(&value);
            self.has_data = true;
        }
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        self.has_data = false;
        let data = std::mem::take(&mut self.data);
        if data == DONE_DATA {
            events.push(SseEvent::Done);
        } else if !data.is_empty() {
            events.push(SseEvent::Data(data));
        }
    }
}

/// What one event of an OpenAI stream is.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem<T> {
    /// A chunk of the answer.
    Chunk(T),
    /// The server failed mid-stream; no more chunks follow.
    Error(ErrorResponse),
    /// The end of the stream.
    Done,
}

/// Reads an event of an OpenAI stream: `[DONE]`, an error body (an object with an `error`
/// member), or a chunk of type `T`.
pub fn parse_event<T: DeserializeOwned>(event: &SseEvent) -> Result<StreamItem<T>, SseError> {
    let data = match event {
        SseEvent::Done => return Ok(StreamItem::Done),
        SseEvent::Data(data) => data,
    };
    let invalid = |expected: &'static str, err: serde_json::Error| SseError::InvalidData {
        expected,
        message: err.to_string(),
    };
    let value: serde_json::Value =
        serde_json::from_str(data).map_err(|e| invalid("JSON value", e))?;
    if value.get("error").is_some_and(serde_json::Value::is_object) {
        return serde_json::from_value(value)
            .map(StreamItem::Error)
            .map_err(|e| invalid("error body", e));
    }
    serde_json::from_value(value)
        .map(StreamItem::Chunk)
        .map_err(|e| {
            invalid(
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("chunk"),
                e,
            )
        })
}

/// [`parse_event`] for chat completion chunks.
pub fn parse_chat_chunk(event: &SseEvent) -> Result<StreamItem<ChatCompletionChunk>, SseError> {
    parse_event(event)
}

/// Decodes a whole chat-completion stream body (for tests, the evaluation harness and
/// non-incremental clients).
pub fn decode_chat_stream(body: &[u8]) -> Result<Vec<StreamItem<ChatCompletionChunk>>, SseError> {
    let mut decoder = SseDecoder::with_limit(body.len().max(DEFAULT_MAX_EVENT_BYTES));
    let mut events = decoder.feed(body)?;
    events.extend(decoder.finish()?);
    events.iter().map(parse_chat_chunk).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn data(s: &str) -> SseEvent {
        SseEvent::Data(s.to_owned())
    }

    #[test]
    fn decodes_the_event_stream_syntax() {
        let stream = "\u{feff}: comment\nevent: x\ndata: a\ndata:b\nid: 1\n\r\ndata\n\ndata: c\r\r\
                      data: [DONE]\n\n";
        let mut decoder = SseDecoder::new();
        let events = decoder.feed(stream.as_bytes()).unwrap();
        assert_eq!(events, [data("a\nb"), data("c"), SseEvent::Done]);
        assert_eq!(decoder.finish().unwrap(), None);
    }

    #[test]
    fn finish_dispatches_a_pending_event() {
        let mut decoder = SseDecoder::new();
        assert!(decoder.feed(b"data: x\ndata: y").unwrap().is_empty());
        assert_eq!(decoder.finish().unwrap(), Some(data("x\ny")));
    }

    #[test]
    fn carriage_return_then_line_feed_in_the_next_chunk() {
        let mut decoder = SseDecoder::new();
        let mut events = decoder.feed(b"data: a\r").unwrap();
        events.extend(decoder.feed(b"\n\r").unwrap());
        events.extend(decoder.feed(b"\ndata: b\n\n").unwrap());
        assert_eq!(events, [data("a"), data("b")]);
    }

    #[test]
    fn oversize_events_are_refused_and_stay_refused() {
        let mut decoder = SseDecoder::with_limit(16);
        assert!(decoder.feed(b"data: 0123456789\n").is_ok());
        let err = decoder.feed(b"data: 0123456789\n").unwrap_err();
        assert_eq!(err, SseError::EventTooLarge { limit: 16 });
        assert_eq!(decoder.feed(b"\n").unwrap_err(), err);
        // One long line without any line break is refused too.
        let mut decoder = SseDecoder::with_limit(16);
        assert!(decoder.feed(&[b'x'; 17]).is_err());
    }

    #[test]
    fn encodes_events() {
        assert_eq!(encode_event(&[1, 2]), "data: [1,2]\n\n");
        let mut decoder = SseDecoder::new();
        let events = decoder
            .feed(format!("{}{}", encode_event("a\nb"), DONE).as_bytes())
            .unwrap();
        assert_eq!(events, [data("\"a\\nb\""), SseEvent::Done]);
    }

    #[test]
    fn error_events_are_recognised() {
        let event = SseEvent::Data(
            encode_event(&ErrorResponse::server_error("boom"))[6..]
                .trim()
                .to_owned(),
        );
        match parse_chat_chunk(&event).unwrap() {
            StreamItem::Error(body) => assert_eq!(body.error.message, "boom"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_chat_chunk(&data("{\"id\": 1}")),
            Err(SseError::InvalidData {
                expected: "ChatCompletionChunk",
                ..
            })
        ));
    }
}
