//! The API against a running host on the device model: answers, streaming, log-probs, the
//! offload extension, classification, the legacy API, and the health and metrics routes.

mod common;

use common::{Running, client, config};
use offload::wire::sse::parse_chat_chunk;
use offload::wire::{
    ChatCompletionChunk, ChatCompletionResponse, CompletionResponse, HopOutcome, ModelList,
    SseDecoder, SseEvent, StreamItem,
};
use offload::{Reason, Tier};
use serde_json::{Value, json};

/// A question with a system message: without one, SmolLM2's template puts in its own default
/// ("You are a helpful AI assistant named SmolLM…"), after which the 135M model answers the
/// capital question with French word salad (so does llama.cpp on the same prompt).
fn question(q: &str) -> Value {
    json!({"model": "anything", "temperature": 0, "max_tokens": 24, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": q}]})
}

async fn post(url: &str, body: &Value) -> reqwest::Response {
    client().post(url).json(body).send().await.expect("request")
}

/// Reads a whole SSE body into chunks (and whether `[DONE]` came last).
fn chunks(body: &[u8]) -> (Vec<ChatCompletionChunk>, bool) {
    let mut decoder = SseDecoder::new();
    let mut events = decoder.feed(body).expect("a valid event stream");
    events.extend(decoder.finish().expect("ends cleanly"));
    let done = events.last() == Some(&SseEvent::Done);
    let chunks = events
        .iter()
        .filter_map(|e| match parse_chat_chunk(e).expect("a chunk") {
            StreamItem::Chunk(c) => Some(c),
            StreamItem::Done => None,
            StreamItem::Error(e) => panic!("error event: {e:?}"),
        })
        .collect();
    (chunks, done)
}

#[tokio::test]
async fn greedy_chat_answer_with_hop_record_and_logprobs() {
    let Some(config) = config() else { return };
    let server = Running::start(config).await;
    let mut body = question("What is the capital of France?");
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    body["offload"] = json!({"task": "chat", "request_id": "r-1", "hops": [
        {"tier": "device", "model": "d", "outcome": "offloaded", "confidence": 0.1},
        {"tier": "edge", "model": "e", "outcome": "offloaded", "confidence": 0.2}
    ]});
    let response = post(&format!("{}/v1/chat/completions", server.url), &body).await;
    assert_eq!(response.status(), 200);
    let answer: ChatCompletionResponse = response.json().await.expect("a chat completion");
    let text = answer.text().expect("a choice").into_owned();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(answer.model, "smollm2-test");
    let usage = answer.usage.expect("usage");
    assert!(usage.prompt_tokens > 5);
    let logprobs = &answer.choices[0]
        .logprobs
        .as_ref()
        .expect("logprobs")
        .content;
    assert_eq!(logprobs.len() as u32, usage.completion_tokens);
    for lp in logprobs {
        assert!(lp.logprob <= 0.0);
        assert_eq!(lp.top_logprobs.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(lp.top_logprobs[0].token, lp.token);
    }
    let offload = answer.offload.expect("the offload extension");
    assert_eq!(offload.answered_by, Tier::Cloud);
    assert_eq!(offload.request_id.as_deref(), Some("r-1"));
    assert_eq!(offload.hops.len(), 3, "the hops received plus the cloud's");
    let hop = offload.hop(Tier::Cloud).expect("the cloud's record");
    assert_eq!(hop.outcome, HopOutcome::Answered);
    // The confidence is 1/(1+PPL) over the generated tokens, as offload computes it.
    let expected =
        offload::PerplexityAccumulator::from_logprobs(logprobs.iter().map(|l| l.logprob))
            .and_then(|p| p.confidence())
            .expect("a confidence")
            .get();
    assert_eq!(hop.confidence, Some(expected));
    let decision = hop.decision.as_ref().expect("a decision");
    assert_eq!(decision.reason, Reason::TopTier);
    let timings = hop.timings.expect("timings");
    assert!(timings.total_ms.expect("total") >= timings.prefill_ms.expect("prefill"));
    assert_eq!(
        hop.tokens.expect("tokens").completion,
        usage.completion_tokens
    );
}

#[tokio::test]
async fn streaming_gives_the_same_text_and_ends_with_the_record() {
    let Some(config) = config() else { return };
    let server = Running::start(config).await;
    let url = format!("{}/v1/chat/completions", server.url);
    let mut body = question("Name three colours.");
    body["offload"] = json!({"task": "chat"});
    let whole: ChatCompletionResponse = post(&url, &body).await.json().await.expect("whole");

    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = post(&url, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("ascii"),
        "text/event-stream"
    );
    let bytes = response.bytes().await.expect("a body");
    let (chunks, done) = chunks(&bytes);
    assert!(done, "the stream ends with [DONE]");
    let text: String = chunks
        .iter()
        .flat_map(|c| c.choices.iter())
        .filter_map(|c| c.delta.content.clone())
        .collect();
    assert_eq!(text, whole.text().expect("text"));
    let last = chunks.last().expect("chunks");
    assert!(last.choices.is_empty(), "the usage chunk comes last");
    assert_eq!(last.usage, whole.usage);
    let offload = last
        .offload
        .as_ref()
        .expect("the record rides on the last chunk");
    assert_eq!(offload.answered_by, Tier::Cloud);
    assert_eq!(
        chunks[0].choices[0].delta.role,
        Some(offload::wire::Role::Assistant)
    );
}

#[tokio::test]
async fn plain_clients_get_plain_answers() {
    let Some(config) = config() else { return };
    let server = Running::start(config).await;
    let response = post(
        &format!("{}/v1/chat/completions", server.url),
        &question("Say hi."),
    )
    .await;
    let value: Value = response.json().await.expect("json");
    assert!(value.get("offload").is_none(), "{value}");
    assert_eq!(value["object"], "chat.completion");
    assert!(value["choices"][0].get("logprobs").is_none());
}

#[tokio::test]
async fn classification_picks_an_option_with_max_softmax_confidence() {
    let Some(config) = config() else { return };
    let server = Running::start(config).await;
    let body = json!({
        "messages": [{"role": "user", "content":
            "Is this review positive or negative? \"A wonderful, moving film.\" Answer with one word."}],
        "logprobs": true, "top_logprobs": 2,
        "offload": {"task": "classification", "options": ["positive", "negative"]}
    });
    let answer: ChatCompletionResponse =
        post(&format!("{}/v1/chat/completions", server.url), &body)
            .await
            .json()
            .await
            .expect("answer");
    let text = answer.text().expect("text").into_owned();
    assert!(["positive", "negative"].contains(&text.as_str()), "{text}");
    let lp = &answer.choices[0]
        .logprobs
        .as_ref()
        .expect("logprobs")
        .content[0];
    assert_eq!(lp.token, text);
    assert_eq!(lp.top_logprobs.len(), 2);
    let p: f64 = lp.top_logprobs.iter().map(|t| t.logprob.exp()).sum();
    assert!(
        (p - 1.0).abs() < 1e-9,
        "the options' probabilities sum to one: {p}"
    );
    let hop = answer
        .offload
        .as_ref()
        .and_then(|o| o.hop(Tier::Cloud))
        .expect("record");
    let confidence = hop.confidence.expect("confidence");
    assert!((confidence - lp.logprob.exp()).abs() < 1e-12);
    assert!(confidence >= 0.5);
}

#[tokio::test]
async fn legacy_completions_answer_and_stream() {
    let Some(config) = config() else { return };
    let server = Running::start(config).await;
    let url = format!("{}/v1/completions", server.url);
    let body = json!({"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0,
                      "logprobs": 2});
    let answer: CompletionResponse = post(&url, &body).await.json().await.expect("answer");
    let choice = &answer.choices[0];
    assert_eq!(answer.object, "text_completion");
    let lp = choice.logprobs.as_ref().expect("logprobs");
    assert_eq!(lp.tokens.len(), 8);
    assert_eq!(lp.tokens.concat(), choice.text);
    assert_eq!(lp.text_offset[0], 0);

    let mut body = body;
    body["stream"] = json!(true);
    let bytes = post(&url, &body).await.bytes().await.expect("body");
    let mut decoder = SseDecoder::new();
    let events = decoder.feed(&bytes).expect("events");
    assert_eq!(events.last(), Some(&SseEvent::Done));
    let streamed: String = events
        .iter()
        .filter_map(|e| e.data())
        .filter_map(|d| serde_json::from_str::<CompletionResponse>(d).ok())
        .flat_map(|c| c.choices)
        .map(|c| c.text)
        .collect();
    assert_eq!(streamed, choice.text);
}

#[tokio::test]
async fn models_health_and_metrics() {
    let Some(config) = config() else { return };
    let server = Running::start(config).await;
    let models: ModelList = client()
        .get(format!("{}/v1/models", server.url))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("a model list");
    assert_eq!(models.data[0].id, "smollm2-test");
    let health: Value = client()
        .get(format!("{}/health", server.url))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["tier"], "cloud");
    let _ = post(
        &format!("{}/v1/chat/completions", server.url),
        &question("Hi"),
    )
    .await;
    let metrics = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "ladder_cloud_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("ladder_cloud_completion_tokens_total"));
}

/// The `ladder_cloud_prefix_reused_tokens_total` counter.
async fn reused_tokens(url: &str) -> u64 {
    let metrics = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("ladder_cloud_prefix_reused_tokens_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reused-token counter in {metrics}"))
}

#[tokio::test]
async fn a_later_turn_reuses_the_cached_prefix_and_answers_the_same() {
    let Some(config) = config() else { return };
    let first = question("Name three colours of the rainbow.");
    // The second turn starts with the whole first exchange.
    let ask = |server: String, body: Value| async move {
        let response = post(&format!("{server}/v1/chat/completions"), &body).await;
        assert_eq!(response.status(), 200);
        let answer: ChatCompletionResponse = response.json().await.expect("a chat completion");
        answer.text().expect("a choice").into_owned()
    };
    let mut answers = Vec::new();
    for cache in [4096, 0] {
        let server = Running::start(cloud_host::Config {
            prefix_cache_tokens: cache,
            ..config.clone()
        })
        .await;
        let reply = ask(server.url.clone(), first.clone()).await;
        let mut second = first.clone();
        if let Some(messages) = second["messages"].as_array_mut() {
            messages.push(json!({"role": "assistant", "content": reply}));
            messages.push(json!({"role": "user", "content": "And two more?"}));
        }
        let before = reused_tokens(&server.url).await;
        let next = ask(server.url.clone(), second).await;
        let reused = reused_tokens(&server.url).await - before;
        if cache > 0 {
            // At least the system message and the first question came from the cache.
            assert!(reused >= 16, "{reused} tokens reused");
        } else {
            assert_eq!(reused, 0);
        }
        answers.push((reply, next));
    }
    assert_eq!(answers[0], answers[1], "reuse changes no output");
}
