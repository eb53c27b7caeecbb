//! The wire protocol: every type round-trips, real clients' and engines' JSON parses, every bad
//! request gets the right error, and the SSE decoder is indifferent to how a stream is split.

#![allow(clippy::unwrap_used)]

use offload::policy::{Decision, PolicyKind, PolicySpec, Reason};
use offload::wire::sse::{self, DONE, SseDecoder, SseError, SseEvent, StreamItem};
use offload::wire::*;
use offload::{TaskType, Tier};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::fmt::Debug;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/wire/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Value → JSON → value gives the same value, and re-serialising gives the same JSON.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(&back, value, "{json}");
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
}

/// A fixture without unknown fields reads and writes back to the same JSON.
fn same_json<T: Serialize + DeserializeOwned + Debug>(json: &str) -> T {
    let value: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    let written = serde_json::to_value(&value).unwrap();
    let original: Value = serde_json::from_str(json).unwrap();
    assert_eq!(written, original, "{value:?}");
    value
}

fn limits() -> Limits {
    Limits::default()
}

fn chat(body: &str) -> Result<ChatCompletionRequest, WireError> {
    ChatCompletionRequest::parse(body.as_bytes(), &limits())
}

fn chat_with(extra: Value) -> Result<ChatCompletionRequest, WireError> {
    let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    chat(&body.to_string())
}

fn hop(tier: Tier, outcome: HopOutcome) -> HopRecord {
    let mut record = HopRecord::new(tier, format!("{tier}-model"), outcome);
    record.confidence = Some(0.42);
    record.policy = Some("recserve".into());
    record
}

fn full_hop() -> HopRecord {
    let mut record = hop(Tier::Device, HopOutcome::Fallback).with_decision(Decision::offload(
        Tier::Edge,
        Reason::Threshold {
            confidence: 0.42,
            threshold: 0.6,
            window_len: Some(100),
        },
    ));
    record.error = Some("edge: connection refused".into());
    record.bytes = Some(LinkBytes {
        sent: 1200,
        received: 0,
    });
    record.tokens = Some(TokenCounts {
        prompt: 30,
        completion: 12,
    });
    record.timings = Some(Timings {
        queue_ms: Some(0.5),
        prefill_ms: Some(20.0),
        decode_ms: Some(300.25),
        first_token_ms: Some(21.0),
        upstream_ms: Some(5.0),
        total_ms: Some(330.0),
    });
    record.router = Some(RouterRecord {
        difficulty: Some(0.7),
        score: Some(0.2),
        threshold: Some(0.1),
        latency_here_ms: Some(300.0),
        latency_above_ms: Some(900.0),
        switch_cost_ms: Some(40.0),
    });
    record.progressive = Some(ProgressiveRecord {
        stage: ProgressiveStage::Expand,
        points: Some(5),
        expanded: Some(2),
        candidates: Some(3),
    });
    record
}

fn full_offload_request() -> OffloadRequest {
    OffloadRequest {
        task: TaskType::MultipleChoice,
        options: Some(vec!["A".into(), "B".into(), "C".into(), "D".into()]),
        policy: Some(PolicySpec::from(PolicyKind::CasServe {
            thresholds: offload::policy::PerTier::same(0.5),
        })),
        hops: vec![full_hop()],
        request_id: Some("req-1".into()),
        conversation_id: Some("conv-1".into()),
        progressive: Some(ProgressiveRequest {
            stage: ProgressiveStage::Sketch,
            point: None,
            max_points: Some(8),
            candidates: None,
        }),
    }
}

fn full_chat_request() -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: Some("gemma-3-270m".into()),
        messages: vec![
            ChatMessage::system("be brief"),
            ChatMessage {
                role: Role::User,
                content: Some(MessageContent::Parts(vec![
                    ContentPart::text("one"),
                    ContentPart::text("two"),
                ])),
                name: Some("ada".into()),
            },
            ChatMessage {
                role: Role::Assistant,
                content: None,
                name: None,
            },
            ChatMessage::new(Role::Tool, "42"),
        ],
        max_tokens: Some(16),
        max_completion_tokens: Some(8),
        temperature: Some(0.7),
        top_p: Some(0.9),
        seed: Some(-3),
        stop: Some(Stop::Many(vec!["\n".into(), "END".into()])),
        stream: true,
        stream_options: Some(StreamOptions {
            include_usage: true,
        }),
        logprobs: true,
        top_logprobs: Some(3),
        n: Some(1),
        user: Some("u".into()),
        offload: Some(full_offload_request()),
    }
}

fn token_logprobs() -> ChoiceLogprobs {
    ChoiceLogprobs {
        content: vec![
            TokenLogprob {
                token: "é".into(),
                logprob: -0.25,
                bytes: Some(vec![0xC3, 0xA9]),
                top_logprobs: vec![
                    TopLogprob {
                        token: "é".into(),
                        logprob: -0.25,
                        bytes: Some(vec![0xC3, 0xA9]),
                    },
                    TopLogprob {
                        token: "e".into(),
                        logprob: f64::NEG_INFINITY,
                        bytes: None,
                    },
                ],
            },
            TokenLogprob {
                token: "!".into(),
                logprob: f64::NEG_INFINITY,
                bytes: None,
                top_logprobs: vec![],
            },
        ],
    }
}

fn full_chat_response() -> ChatCompletionResponse {
    let mut response = ChatCompletionResponse::new(
        "chatcmpl-1",
        1_767_225_600,
        "gemma-3-270m",
        ChatChoice {
            index: 0,
            message: ChatMessage::assistant("é!"),
            logprobs: Some(token_logprobs()),
            finish_reason: Some(FinishReason::Length),
        },
    );
    response.system_fingerprint = Some("fp".into());
    response.usage = Some(Usage::new(10, 2));
    response.offload = Some(OffloadResponse {
        answered_by: Tier::Device,
        hops: vec![full_hop()],
        request_id: Some("req-1".into()),
    });
    response
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn every_type_round_trips() {
    round_trip(&full_chat_request());
    round_trip(&ChatCompletionRequest::new(vec![ChatMessage::user("hi")]));
    round_trip(&full_chat_response());
    round_trip(&full_offload_request());
    round_trip(&OffloadRequest::default());
    round_trip(&full_hop());
    round_trip(&HopRecord::new(Tier::Cloud, "", HopOutcome::Answered));
    round_trip(&token_logprobs());
    round_trip(&Usage::new(3, 4));
    round_trip(&StreamOptions::default());
    round_trip(&Limits::default());
    round_trip(&ProgressiveRequest {
        stage: ProgressiveStage::Expand,
        point: Some(2),
        max_points: None,
        candidates: Some(3),
    });
    for outcome in [
        HopOutcome::Answered,
        HopOutcome::Offloaded,
        HopOutcome::Forwarded,
        HopOutcome::Fallback,
        HopOutcome::Failed,
    ] {
        round_trip(&outcome);
    }
    for role in [Role::System, Role::User, Role::Assistant, Role::Tool] {
        round_trip(&role);
    }
    for reason in [
        FinishReason::Stop,
        FinishReason::Length,
        FinishReason::ToolCalls,
        FinishReason::ContentFilter,
        FinishReason::FunctionCall,
        FinishReason::Other("abort".into()),
    ] {
        round_trip(&reason);
    }
    round_trip(&Stop::One("x".into()));
    round_trip(&Prompt::Many(vec!["a".into()]));
    round_trip(&MessageContent::Text("t".into()));

    let mut chunk = ChatCompletionChunk::new("c", 1, "m");
    chunk.choices.push(ChunkChoice {
        index: 0,
        delta: Delta {
            role: Some(Role::Assistant),
            content: Some("x".into()),
        },
        logprobs: Some(token_logprobs()),
        finish_reason: Some(FinishReason::Stop),
    });
    chunk.usage = Some(Usage::new(1, 1));
    chunk.offload = Some(OffloadResponse::new(Tier::Edge, vec![full_hop()]));
    round_trip(&chunk);

    let completion = CompletionRequest {
        model: Some("m".into()),
        prompt: Prompt::One("p".into()),
        max_tokens: Some(3),
        temperature: Some(0.0),
        top_p: Some(1.0),
        seed: Some(1),
        stop: Some(Stop::One(".".into())),
        stream: true,
        stream_options: Some(StreamOptions {
            include_usage: false,
        }),
        logprobs: Some(5),
        n: Some(1),
        user: Some("u".into()),
        offload: Some(OffloadRequest::new(TaskType::Translation)),
    };
    round_trip(&completion);
    round_trip(&CompletionResponse {
        id: "cmpl".into(),
        object: CompletionResponse::OBJECT.into(),
        created: 5,
        model: "m".into(),
        system_fingerprint: None,
        choices: vec![CompletionChoice {
            text: "x".into(),
            index: 0,
            logprobs: Some(CompletionLogprobs {
                tokens: vec!["x".into()],
                token_logprobs: vec![Some(-0.5)],
                top_logprobs: vec![Some(TopLogprobMap(vec![
                    ("x".into(), -0.5),
                    ("a".into(), -1.5),
                ]))],
                text_offset: vec![0],
            }),
            finish_reason: Some(FinishReason::Stop),
        }],
        usage: Some(Usage::new(1, 1)),
        offload: Some(OffloadResponse::new(Tier::Cloud, vec![])),
    });
    round_trip(&ModelList::new(vec![ModelInfo::new("m", 1, "ladder")]));
    round_trip(&ErrorResponse::rate_limit("slow down").with_code("rate_limit_exceeded"));
}

#[test]
fn negative_infinity_travels_as_null() {
    let json = serde_json::to_value(token_logprobs()).unwrap();
    assert_eq!(json["content"][1]["logprob"], Value::Null);
    assert_eq!(
        json["content"][0]["top_logprobs"][1]["logprob"],
        Value::Null
    );
}

#[test]
fn absent_fields_are_left_out() {
    let json =
        serde_json::to_value(ChatCompletionRequest::new(vec![ChatMessage::user("hi")])).unwrap();
    assert_eq!(
        json,
        json!({"messages": [{"role": "user", "content": "hi"}]})
    );
    let json =
        serde_json::to_value(HopRecord::new(Tier::Edge, "m", HopOutcome::Forwarded)).unwrap();
    assert_eq!(
        json,
        json!({"tier": "edge", "model": "m", "outcome": "forwarded"})
    );
}

#[test]
fn top_logprob_maps_keep_their_order() {
    let map: TopLogprobMap = serde_json::from_str(r#"{"z": -0.1, "a": -2, "m": null}"#).unwrap();
    let tokens: Vec<&str> = map.0.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tokens, ["z", "a", "m"]);
    assert_eq!(map.0[2].1, f64::NEG_INFINITY);
}

// ---------------------------------------------------------------------------------------------
// Real clients' and engines' JSON
// ---------------------------------------------------------------------------------------------

#[test]
fn the_openai_python_client_request_parses() {
    let body = fixture("openai_python_chat_request.json");
    let request = ChatCompletionRequest::parse(body.as_bytes(), &limits()).unwrap();
    assert_eq!(request.model.as_deref(), Some("ladder-auto"));
    assert_eq!(
        request.messages[0].role,
        Role::System,
        "developer reads as system"
    );
    assert_eq!(
        request.messages[1].text(),
        "Translate to German: The weather is nice today."
    );
    assert_eq!(request.max_output_tokens(), Some(64));
    assert!(request.stream && request.include_usage());
    assert!(request.logprobs);
    assert_eq!(request.top_logprobs, Some(5));
    assert_eq!(request.stop_sequences(), ["\n\n"]);
    assert_eq!(request.seed, Some(7));
    assert_eq!(request.top_p, Some(0.95));
    assert_eq!(request.user.as_deref(), Some("user-1234"));
    assert_eq!(request.task(), TaskType::Translation);
    assert_eq!(
        request.offload.as_ref().unwrap().request_id.as_deref(),
        Some("9d0c1b7e")
    );
    // Unknown fields are dropped, not carried.
    let written = serde_json::to_value(&request).unwrap();
    assert!(written.get("frequency_penalty").is_none());
    assert!(written["offload"].get("not_yet_defined").is_none());
}

#[test]
fn content_parts_parse_and_join() {
    let body = fixture("chat_request_content_parts.json");
    let request = chat(&body).unwrap();
    assert_eq!(request.messages[0].text(), "Answer with one word.");
    assert_eq!(
        request.messages[1].text(),
        "Review: the plot drags, but the ending lands.\nSentiment?"
    );
    assert_eq!(request.messages[1].name.as_deref(), Some("ada"));
    assert_eq!(request.messages[2].content, None);
    assert_eq!(request.messages[2].text(), "");
    assert_eq!(request.messages[3].role, Role::Tool);
    assert!(!request.logprobs && !request.stream, "null reads as false");
    let offload = request.offload.unwrap();
    assert_eq!(offload.task, TaskType::Classification);
    assert_eq!(offload.options.unwrap(), ["positive", "negative"]);
    assert!(offload.hops.is_empty());
}

#[test]
fn the_protocol_examples_parse_and_write_back_unchanged() {
    // The policy is written back in its canonical form (beta per tier, skip_unavailable
    // spelled out); everything else exactly as it came.
    let text = fixture("offload_request.json");
    let request = chat(&text).unwrap();
    let mut written = serde_json::to_value(&request).unwrap();
    let mut original: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        written["offload"]["policy"],
        json!({"name": "recserve", "beta": {"device": 0.3, "edge": 0.3}, "k": 10000,
               "skip_unavailable": true})
    );
    written["offload"]["policy"].take();
    original["offload"]["policy"].take();
    assert_eq!(written, original);
    let offload = request.offload.unwrap();
    assert_eq!(
        offload.policy.clone().unwrap(),
        PolicySpec {
            kind: PolicyKind::RecServe {
                beta: offload::policy::PerTier::same(0.3),
                k: 10_000,
            },
            skip_unavailable: true,
        }
    );
    assert!(offload.has_visited(Tier::Device) && !offload.has_visited(Tier::Edge));

    let response: ChatCompletionResponse = same_json(&fixture("offload_response.json"));
    let offload = response.offload.unwrap();
    assert_eq!(offload.answered_by, Tier::Edge);
    assert_eq!(offload.answer_hop().unwrap().outcome, HopOutcome::Answered);
    let device = offload.hop(Tier::Device).unwrap();
    assert_eq!(device.confident(), Some(false));
    assert!(device.decision.as_ref().unwrap().offloads());
    assert_eq!(
        offload.link_bytes(Tier::Device),
        Some(LinkBytes {
            sent: 1093,
            received: 1642
        })
    );
    assert_eq!(offload.link_bytes(Tier::Edge), None);
}

#[test]
fn an_engine_response_with_extra_fields_parses() {
    let response: ChatCompletionResponse =
        serde_json::from_str(&fixture("llama_server_chat_response.json")).unwrap();
    assert_eq!(response.text().unwrap(), "Das Wetter");
    let choice = &response.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::Length));
    let logprobs = &choice.logprobs.as_ref().unwrap().content;
    assert_eq!(logprobs.len(), 2);
    assert_eq!(logprobs[0].bytes.as_deref(), Some(&b"Das"[..]));
    assert_eq!(logprobs[0].top_logprobs[1].token, "Heute");
    assert_eq!(response.usage, Some(Usage::new(31, 2)));
    assert_eq!(response.offload, None);
}

#[test]
fn legacy_completions_and_models_parse() {
    let request =
        CompletionRequest::parse(fixture("completion_request.json").as_bytes(), &limits()).unwrap();
    assert_eq!(
        request.prompt.text(),
        "Question: What is the capital of France?\nAnswer:"
    );
    assert_eq!(request.logprobs, Some(5));
    assert_eq!(request.stop_sequences(), ["\n"]);

    let response: CompletionResponse = same_json(&fixture("completion_response.json"));
    let logprobs = response.choices[0].logprobs.as_ref().unwrap();
    assert_eq!(logprobs.token_logprobs, [Some(-0.051), None]);
    assert_eq!(logprobs.top_logprobs[0].as_ref().unwrap().0[1].0, " Lyon");

    let models: ModelList = same_json(&fixture("model_list.json"));
    assert_eq!(models.data[1].owned_by, "ladder-edge");
}

#[test]
fn error_bodies_of_openai_and_llama_server_parse() {
    let openai: ErrorResponse = same_json(&fixture("openai_error.json"));
    assert_eq!(openai.error.param.as_deref(), Some("temperature"));
    let llama: ErrorResponse = serde_json::from_str(&fixture("llama_server_error.json")).unwrap();
    assert_eq!(llama.error.code.as_deref(), Some("400"));
    assert_eq!(llama.error.kind, "exceed_context_size_error");
}

// ---------------------------------------------------------------------------------------------
// Bad requests
// ---------------------------------------------------------------------------------------------

fn expect_err(result: Result<ChatCompletionRequest, WireError>) -> WireError {
    match result {
        Ok(request) => panic!("accepted: {request:?}"),
        Err(err) => err,
    }
}

#[test]
fn malformed_json_is_a_400_with_a_position() {
    let err = expect_err(chat("{\"messages\": [\n  {\"role\": \"user\",}\n]}"));
    assert!(
        matches!(err, WireError::MalformedJson { line: 2, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("line 2"), "{err}");

    let err = expect_err(chat(""));
    assert!(err.to_string().contains("empty"), "{err}");
    let err = expect_err(chat(r#"{"messages": []"#));
    assert!(matches!(err, WireError::MalformedJson { .. }), "{err:?}");
    let err = expect_err(chat(
        r#"{"messages": [{"role": "user", "content": "x"}]} trailing"#,
    ));
    assert!(matches!(err, WireError::MalformedJson { .. }), "{err:?}");
}

#[test]
fn wrong_types_are_a_400_naming_the_field() {
    let cases = [
        (r#"{"messages": "hello"}"#, "messages"),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#,
            "temperature",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#,
            "stream",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "n": 1.5}"#,
            "n",
        ),
        (
            r#"{"messages": [{"role": "wizard", "content": "x"}]}"#,
            "messages[0].role",
        ),
        (
            r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]}"#,
            "messages[0].content[0].text",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "stop": [1]}"#,
            "stop[0]",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "offload": {"task": "poetry"}}"#,
            "offload.task",
        ),
        (
            r#"{"messages": [{"role": "user", "content": "x"}], "offload": {"hops": [{"tier": "moon", "outcome": "answered"}]}}"#,
            "offload.hops[0].tier",
        ),
    ];
    for (body, param) in cases {
        let err = expect_err(chat(body));
        assert!(
            matches!(err, WireError::InvalidField { .. }),
            "{body}: {err:?}"
        );
        assert_eq!(err.status(), 400, "{body}");
        assert_eq!(err.param(), Some(param), "{body}: {err}");
        assert!(err.to_string().contains(param), "{err}");
    }
}

#[test]
fn missing_fields_are_a_400_naming_the_field() {
    let err = expect_err(chat(r#"{"model": "m"}"#));
    assert!(
        matches!(&err, WireError::MissingField { param, .. } if param == "messages"),
        "{err:?}"
    );
    assert_eq!(err.status(), 400);
    assert_eq!(
        err.to_string(),
        "missing required field `messages` (line 1, column 14)"
    );
    let err = expect_err(chat(
        r#"{"messages": [{"role": "user"}, {"content": "x"}]}"#,
    ));
    assert_eq!(err.param(), Some("messages[1].role"), "{err}");
    let err = expect_err(chat(
        r#"{"messages": [{"role": "user", "content": "x"}], "offload": {"hops": [{"tier": "edge"}]}}"#,
    ));
    assert_eq!(err.param(), Some("offload.hops[0].outcome"), "{err}");
    let body = err.to_response();
    assert_eq!(
        body.error.code.as_deref(),
        Some("missing_required_parameter")
    );
}

#[test]
fn invalid_utf8_is_a_400() {
    let mut body = br#"{"messages": [{"role": "user", "content": "caf"#.to_vec();
    let bad = body.len();
    body.extend_from_slice(&[0xC3, 0x28]);
    body.extend_from_slice(br#""}]}"#);
    let err = ChatCompletionRequest::parse(&body, &limits()).unwrap_err();
    assert_eq!(
        err,
        WireError::InvalidUtf8 {
            offset: bad,
            line: 1,
            column: bad + 1
        }
    );
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn oversize_bodies_are_a_413() {
    let small = Limits {
        max_body_bytes: 64,
        ..Limits::default()
    };
    let body = json!({"messages": [{"role": "user", "content": "x".repeat(100)}]}).to_string();
    let err = ChatCompletionRequest::parse(body.as_bytes(), &small).unwrap_err();
    assert_eq!(
        err,
        WireError::BodyTooLarge {
            size: body.len(),
            limit: 64
        }
    );
    assert_eq!(err.status(), 413);
    assert_eq!(err.to_response().status(), 413);
    // Checked before anything else: an oversize body of garbage is still a 413.
    let err = ChatCompletionRequest::parse(&[0xFF; 65], &small).unwrap_err();
    assert_eq!(err.status(), 413);
}

#[test]
fn semantic_errors_are_a_422_naming_the_field() {
    let cases = [
        (
            json!({"temperature": 2.5}),
            "temperature",
            "between 0 and 2",
        ),
        (
            json!({"temperature": -0.1}),
            "temperature",
            "between 0 and 2",
        ),
        (json!({"top_p": 0}), "top_p", "greater than 0"),
        (json!({"top_p": 1.5}), "top_p", "at most 1"),
        (json!({"n": 2}), "n", "n > 1 is not supported"),
        (json!({"n": 0}), "n", "must be 1"),
        (json!({"max_tokens": 0}), "max_tokens", "at least 1"),
        (
            json!({"max_tokens": 100_000}),
            "max_tokens",
            "the limit is 4096",
        ),
        (
            json!({"max_completion_tokens": 5000}),
            "max_completion_tokens",
            "limit",
        ),
        (
            json!({"stop": ["a", "b", "c", "d", "e"]}),
            "stop",
            "at most 4",
        ),
        (json!({"stop": ["a", ""]}), "stop[1]", "empty"),
        (json!({"top_logprobs": 3}), "top_logprobs", "logprobs: true"),
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
            "between 0 and 20",
        ),
        (
            json!({"stream_options": {"include_usage": true}}),
            "stream_options",
            "stream",
        ),
        (json!({"messages": []}), "messages", "at least one message"),
        (
            json!({"messages": [{"role": "user"}]}),
            "messages[0].content",
            "required",
        ),
        (
            json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ]}]}),
            "messages[0].content[1].type",
            "`image_url` are not supported",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
            "messages[0].content[0].text",
            "needs a `text`",
        ),
        (
            json!({"offload": {"task": "classification"}}),
            "offload.options",
            "needs `options`",
        ),
        (
            json!({"offload": {"task": "multiple_choice", "options": []}}),
            "offload.options",
            "at least one",
        ),
        (
            json!({"offload": {"policy": {"name": "recserve", "beta": 1.5}}}),
            "offload.policy",
            "beta",
        ),
        (
            json!({"offload": {"policy": {"name": "recserve", "k": 0}}}),
            "offload.policy",
            "window size",
        ),
        (
            json!({"offload": {"options": ["yes", "no"]}}),
            "offload.options",
            "only used by",
        ),
    ];
    for (extra, param, needle) in cases {
        let err = expect_err(chat_with(extra.clone()));
        assert_eq!(err.status(), 422, "{extra}: {err:?}");
        assert_eq!(err.param(), Some(param), "{extra}: {err}");
        let message = err.to_string();
        assert!(message.contains(needle), "{extra}: {message}");
        assert!(message.contains(param), "{extra}: {message}");
        let body = serde_json::to_value(err.to_response()).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], param);
        assert_eq!(body["error"]["message"], message);
    }
}

#[test]
fn bad_temperature_and_n_read_well() {
    let err = expect_err(chat_with(json!({"temperature": 3})));
    assert_eq!(
        err.to_string(),
        "invalid `temperature`: must be between 0 and 2, got 3"
    );
    let err = expect_err(chat_with(json!({"n": 2})));
    assert!(matches!(err, WireError::Unsupported { .. }));
    assert_eq!(
        err.to_response().error.code.as_deref(),
        Some("unsupported_value")
    );
    assert!(err.to_string().contains("n > 1 is not supported"), "{err}");
}

#[test]
fn message_count_and_size_limits() {
    let tight = Limits {
        max_messages: 2,
        max_total_chars: 10,
        ..Limits::default()
    };
    let three = json!({"messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"}
    ]});
    let err = ChatCompletionRequest::parse(three.to_string().as_bytes(), &tight).unwrap_err();
    assert_eq!(
        err,
        WireError::LimitExceeded {
            param: "messages".into(),
            value: 3,
            limit: 2,
            unit: "messages"
        }
    );
    assert_eq!(err.status(), 422);
    // Characters, not bytes: ten accented letters fit, eleven do not.
    let fits = json!({"messages": [{"role": "user", "content": "é".repeat(10)}]});
    ChatCompletionRequest::parse(fits.to_string().as_bytes(), &tight).unwrap();
    let over = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "é".repeat(6)}, {"type": "text", "text": "é".repeat(5)}
    ]}]});
    let err = ChatCompletionRequest::parse(over.to_string().as_bytes(), &tight).unwrap_err();
    assert!(err.to_string().contains("11 characters"), "{err}");
}

#[test]
fn legacy_completion_errors() {
    let parse = |body: Value| CompletionRequest::parse(body.to_string().as_bytes(), &limits());
    let err = parse(json!({"model": "m"})).unwrap_err();
    assert_eq!(err.param(), Some("prompt"));
    assert_eq!(err.status(), 400);
    let err = parse(json!({"prompt": [1, 2, 3]})).unwrap_err();
    assert_eq!(err.param(), Some("prompt[0]"), "{err}");
    let err = parse(json!({"prompt": ["a", "b"]})).unwrap_err();
    assert!(matches!(err, WireError::Unsupported { .. }), "{err:?}");
    let err = parse(json!({"prompt": "a", "logprobs": 50})).unwrap_err();
    assert_eq!(err.param(), Some("logprobs"));
    let err = parse(json!({"prompt": "a", "temperature": 9})).unwrap_err();
    assert_eq!(err.param(), Some("temperature"));
    let err = parse(json!({"prompt": "a", "logprobs": true})).unwrap_err();
    assert_eq!(err.param(), Some("logprobs"), "{err}");
    parse(json!({"prompt": "a", "logprobs": 0, "n": 1})).unwrap();
}

#[test]
fn max_completion_tokens_wins() {
    let request = chat_with(json!({"max_tokens": 10, "max_completion_tokens": 20})).unwrap();
    assert_eq!(request.max_output_tokens(), Some(20));
    let request = chat_with(json!({"max_tokens": 10})).unwrap();
    assert_eq!(request.max_output_tokens(), Some(10));
}

#[test]
fn extension_validation() {
    let ok = OffloadRequest::with_options(
        TaskType::Classification,
        vec!["positive".into(), "negative".into()],
    );
    ok.validate().unwrap();
    let err = OffloadRequest::new(TaskType::Classification)
        .validate()
        .unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(err.param(), Some("offload.options"));
    assert!(err.to_string().contains("classification"), "{err}");
    let err = OffloadRequest::new(TaskType::MultipleChoice)
        .validate()
        .unwrap_err();
    assert_eq!(err.param(), Some("offload.options"));
    let options = (0..=MAX_OPTIONS).map(|i| format!("option {i}")).collect();
    let err = OffloadRequest::with_options(TaskType::MultipleChoice, options)
        .validate()
        .unwrap_err();
    assert!(
        matches!(err, WireError::LimitExceeded { value: 27, .. }),
        "{err:?}"
    );
    let mut many_hops = OffloadRequest::new(TaskType::Chat);
    many_hops.hops = vec![hop(Tier::Device, HopOutcome::Offloaded); MAX_HOPS + 1];
    assert_eq!(
        many_hops.validate().unwrap_err().param(),
        Some("offload.hops")
    );
    let mut long_id = OffloadRequest::new(TaskType::Chat);
    long_id.request_id = Some("x".repeat(300));
    assert_eq!(
        long_id.validate().unwrap_err().param(),
        Some("offload.request_id")
    );
}

#[test]
fn a_forwarded_request_carries_the_hop() {
    let request = OffloadRequest::new(TaskType::Chat);
    let forwarded = request.forwarded(hop(Tier::Device, HopOutcome::Offloaded));
    assert!(forwarded.has_visited(Tier::Device));
    let json = serde_json::to_value(&forwarded).unwrap();
    assert_eq!(json["hops"][0]["outcome"], "offloaded");
    assert_eq!(json["hops"][0].get("bytes"), None);
}

// ---------------------------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------------------------

#[test]
fn the_chat_stream_fixture_decodes() {
    let body = fixture("chat_stream.sse");
    let items = sse::decode_chat_stream(body.as_bytes()).unwrap();
    assert_eq!(items.len(), 6);
    assert_eq!(items.last(), Some(&StreamItem::Done));
    let chunks: Vec<&ChatCompletionChunk> = items
        .iter()
        .filter_map(|item| match item {
            StreamItem::Chunk(chunk) => Some(chunk),
            _ => None,
        })
        .collect();
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Bonjour à tous ✓");
    assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
    assert_eq!(chunks[3].choices[0].finish_reason, Some(FinishReason::Stop));
    let last = chunks[4];
    assert!(last.choices.is_empty());
    assert_eq!(last.usage, Some(Usage::new(12, 2)));
    let offload = last.offload.as_ref().unwrap();
    assert_eq!(offload.answered_by, Tier::Device);
    assert_eq!(offload.hops[0].threshold, None);

    // Every chunk writes back to the same event line.
    let events: Vec<&str> = body
        .split("\n\n")
        .filter(|e| e.starts_with("data: {"))
        .collect();
    for (chunk, event) in chunks.iter().zip(events) {
        let again = sse::encode_event(chunk);
        let ours: Value = serde_json::from_str(&again["data: ".len()..]).unwrap();
        let theirs: Value = serde_json::from_str(&event["data: ".len()..]).unwrap();
        assert_eq!(ours, theirs);
    }
}

#[test]
fn encoded_chunks_decode_to_the_same_chunks() {
    let mut chunk = ChatCompletionChunk::new("id", 7, "m");
    chunk.choices.push(ChunkChoice {
        index: 0,
        delta: Delta {
            role: None,
            content: Some("line one\nline two\r\n".into()),
        },
        logprobs: None,
        finish_reason: None,
    });
    let stream = format!(
        "{}{}{}",
        sse::encode_event(&chunk),
        sse::encode_event(&ErrorResponse::server_error("engine died")),
        DONE
    );
    let items = sse::decode_chat_stream(stream.as_bytes()).unwrap();
    assert_eq!(
        items,
        [
            StreamItem::Chunk(chunk),
            StreamItem::Error(ErrorResponse::server_error("engine died")),
            StreamItem::Done
        ]
    );
}

#[test]
fn an_oversize_event_is_rejected() {
    let mut decoder = SseDecoder::with_limit(1024);
    let big = format!("data: {}\n", "x".repeat(600));
    assert!(decoder.feed(big.as_bytes()).unwrap().is_empty());
    let err = decoder.feed(big.as_bytes()).unwrap_err();
    assert_eq!(err, SseError::EventTooLarge { limit: 1024 });
    assert!(err.to_string().contains("1024"));
    // Fed a byte at a time, the same.
    let mut decoder = SseDecoder::with_limit(1024);
    let doubled = big.repeat(2);
    let first_error = doubled
        .as_bytes()
        .iter()
        .position(|b| decoder.feed(std::slice::from_ref(b)).is_err());
    assert!(first_error.is_some());
    // Events up to the limit pass.
    let mut decoder = SseDecoder::with_limit(1024);
    let fits = format!("data: {}\n\n", "y".repeat(1000));
    assert_eq!(decoder.feed(fits.as_bytes()).unwrap().len(), 1);
}

/// One event of a generated stream, and how to write it.
#[derive(Debug, Clone)]
struct GenEvent {
    lines: Vec<String>,
    comment: bool,
    other_field: bool,
    eol: &'static str,
    data_space: bool,
}

fn gen_event() -> impl Strategy<Value = GenEvent> {
    (
        prop::collection::vec("[a-z é✓😀{}\":,\\[\\]]{1,12}", 1..4),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec!["\n", "\r\n", "\r"]),
        any::<bool>(),
    )
        .prop_map(|(lines, comment, other_field, eol, data_space)| GenEvent {
            lines,
            comment,
            other_field,
            eol,
            data_space,
        })
}

fn write_stream(events: &[GenEvent], done: bool) -> (String, Vec<SseEvent>) {
    let mut text = String::new();
    let mut expected = Vec::new();
    for event in events {
        let eol = event.eol;
        if event.comment {
            text.push_str(&format!(": ping é{eol}"));
        }
        if event.other_field {
            text.push_str(&format!("event: chunk{eol}id: 7{eol}"));
        }
        let mut data_lines = Vec::new();
        for line in &event.lines {
            let sep = if event.data_space { "data: " } else { "data:" };
            text.push_str(&format!("{sep}{line}{eol}"));
            // The decoder drops one space after the colon, ours or the line's own.
            let value = if event.data_space {
                line.as_str()
            } else {
                line.strip_prefix(' ').unwrap_or(line)
            };
            data_lines.push(value);
        }
        text.push_str(eol);
        let data = data_lines.join("\n");
        if data == "[DONE]" {
            expected.push(SseEvent::Done);
        } else if !data.is_empty() {
            expected.push(SseEvent::Data(data));
        }
    }
    if done {
        text.push_str(DONE);
        expected.push(SseEvent::Done);
    }
    (text, expected)
}

fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        events.extend(decoder.feed(&bytes[start..cut]).unwrap());
        start = cut;
    }
    events.extend(decoder.feed(&bytes[start..]).unwrap());
    events.extend(decoder.finish().unwrap());
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sse_decoding_ignores_chunk_boundaries(
        events in prop::collection::vec(gen_event(), 0..8),
        done in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let (text, expected) = write_stream(&events, done);
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let whole = decode_in_pieces(bytes, &[]);
        prop_assert_eq!(&whole, &expected);
        prop_assert_eq!(decode_in_pieces(bytes, &cuts), expected.clone());
        let every_byte: Vec<usize> = (1..bytes.len()).collect();
        prop_assert_eq!(decode_in_pieces(bytes, &every_byte), expected);
    }

    #[test]
    fn the_fixture_stream_decodes_the_same_however_split(
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let body = fixture("chat_stream.sse");
        let bytes = body.as_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(decode_in_pieces(bytes, &cuts), decode_in_pieces(bytes, &[]));
    }

    #[test]
    fn hop_records_round_trip(
        tier in prop::sample::select(Tier::ALL.to_vec()),
        outcome in prop::sample::select(vec![
            HopOutcome::Answered, HopOutcome::Offloaded, HopOutcome::Forwarded,
            HopOutcome::Fallback, HopOutcome::Failed,
        ]),
        model in "\\PC{0,16}",
        confidence in prop::option::of(0u32..=1000),
        threshold in prop::option::of(0u32..=1000),
        sent in any::<u64>(),
        received in any::<u64>(),
        prompt in any::<u32>(),
        total_ms in prop::option::of(0u32..10_000_000),
        error in prop::option::of("\\PC{0,16}"),
    ) {
        let mut record = HopRecord::new(tier, model, outcome);
        // Short decimals: serde_json's default float parser (without the `float_roundtrip`
        // feature) may be one unit in the last place off on long ones.
        record.confidence = confidence.map(|c| f64::from(c) / 1000.0);
        record.threshold = threshold.map(|t| f64::from(t) / 1000.0);
        record.bytes = Some(LinkBytes { sent, received });
        record.tokens = Some(TokenCounts { prompt, completion: 1 });
        record.timings = Some(Timings {
            total_ms: total_ms.map(|ms| f64::from(ms) / 100.0),
            ..Timings::default()
        });
        record.error = error;
        round_trip(&record);
        round_trip(&OffloadResponse::new(tier, vec![record]));
    }

    #[test]
    fn chat_requests_round_trip(
        texts in prop::collection::vec("\\PC{0,24}", 1..5),
        temperature in prop::option::of(0u32..=200),
        max_tokens in prop::option::of(1u32..=4096),
        seed in prop::option::of(any::<i64>()),
        stop in prop::option::of(prop::collection::vec("\\PC{1,4}", 1..=4)),
    ) {
        let request = ChatCompletionRequest {
            messages: texts.into_iter().map(ChatMessage::user).collect(),
            temperature: temperature.map(|t| f64::from(t) / 100.0),
            max_tokens,
            seed,
            stop: stop.map(Stop::Many),
            ..ChatCompletionRequest::default()
        };
        round_trip(&request);
        let body = serde_json::to_vec(&request).unwrap();
        prop_assert_eq!(ChatCompletionRequest::parse(&body, &limits()).unwrap(), request);
    }

    #[test]
    fn parsing_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = ChatCompletionRequest::parse(&body, &limits());
        let _ = CompletionRequest::parse(&body, &limits());
    }

    #[test]
    fn damaged_requests_fail_cleanly(cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let body = fixture("offload_request.json").into_bytes();
        // Any cut before the closing brace leaves an incomplete body.
        let at = cut.index(body.trim_ascii_end().len());
        let mut damaged = body.clone();
        damaged[at] = byte;
        if let Err(err) = ChatCompletionRequest::parse(&damaged, &limits()) {
            prop_assert!(matches!(err.status(), 400 | 422));
            prop_assert!(!err.to_string().is_empty());
        }
        let truncated = &body[..at];
        let err = ChatCompletionRequest::parse(truncated, &limits());
        prop_assert!(err.is_err());
    }
}

#[test]
fn an_option_answer_lists_the_options_most_likely_first() {
    use offload::wire::TokenLogprob;
    let options = vec!["negative".to_string(), "positive".into(), "neutral".into()];
    let probs = [0.2, 0.6, 0.2];
    let lp = TokenLogprob::for_options(&options, &probs, 1, 2).expect("an answer");
    assert_eq!(lp.token, "positive");
    assert!((lp.logprob - 0.6f64.ln()).abs() < 1e-12);
    let top: Vec<&str> = lp.top_logprobs.iter().map(|t| t.token.as_str()).collect();
    assert_eq!(
        top,
        ["positive", "negative"],
        "ties keep the options' order"
    );
    assert_eq!(TokenLogprob::for_options(&options, &probs, 3, 2), None);
    assert_eq!(TokenLogprob::for_options(&options, &probs[..2], 0, 2), None);
}
