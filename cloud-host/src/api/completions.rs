//! `POST /v1/completions` (the legacy prompt-in, text-out API).

use super::answer::{self, Api, Shape};
use super::chat::refuse_loops;
use super::plan::{self, Sampling};
use super::read_body;
use crate::error::ApiError;
use crate::state::{AppState, Engine, unix_now};
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use llm::EncodeOptions;
use offload::wire::CompletionRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn handle(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let received = Instant::now();
    let bytes = read_body(body, state.config.limits.max_body_bytes).await?;
    let request = CompletionRequest::parse(&bytes, &state.config.limits)?;
    refuse_loops(request.offload.as_ref())?;
    let shape = Shape {
        api: Api::Completions,
        id: state.next_id("cmpl"),
        created: unix_now(),
        model: state.model_id.clone(),
        stream: request.stream,
        include_usage: request.include_usage(),
        logprobs: request.logprobs.map(|n| n as usize),
        task: request.task(),
        options: request.offload.as_ref().and_then(|o| o.options.clone()),
        offload: request.offload.clone(),
        received,
    };
    let answering = match &state.engine {
        Engine::Local(scheduler) => {
            let model = scheduler.model();
            // As llama.cpp's server does: BOS where the model wants one, control tokens parsed.
            let prompt = model
                .tokenizer()
                .encode(request.prompt.text(), EncodeOptions::PROMPT);
            let sampling = Sampling {
                max_tokens: request.max_tokens,
                temperature: request.temperature,
                top_p: request.top_p,
                seed: request.seed,
                stop: request.stop_sequences(),
                top_logprobs: shape.logprobs.unwrap_or(0),
            };
            let job = plan::job(
                model,
                prompt,
                request.offload.as_ref(),
                &sampling,
                &state.config,
                received,
            )?;
            scheduler.submit(job)?
        }
        Engine::Upstream(upstream) => upstream.complete(
            &request,
            received + Duration::from_secs(state.config.request_timeout_secs),
        ),
    };
    if shape.stream {
        Ok(answer::streamed(state, shape, answering))
    } else {
        answer::whole(state, shape, answering).await
    }
}
