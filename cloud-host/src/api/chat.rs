//! `POST /v1/chat/completions`.

use super::answer::{self, Api, Shape};
use super::plan::{self, Sampling};
use super::read_body;
use crate::error::ApiError;
use crate::state::{AppState, Engine, unix_now};
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use offload::Tier;
use offload::wire::{ChatCompletionRequest, OffloadRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn handle(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    let received = Instant::now();
    let bytes = read_body(body, state.config.limits.max_body_bytes).await?;
    let request = ChatCompletionRequest::parse(&bytes, &state.config.limits)?;
    refuse_loops(request.offload.as_ref())?;
    let shape = Shape {
        api: Api::Chat,
        id: state.next_id("chatcmpl"),
        created: unix_now(),
        model: state.model_id.clone(),
        stream: request.stream,
        include_usage: request.include_usage(),
        logprobs: request
            .logprobs
            .then(|| request.top_logprobs.unwrap_or(0) as usize),
        task: request.task(),
        options: request.offload.as_ref().and_then(|o| o.options.clone()),
        offload: request.offload.clone(),
        received,
    };
    let answering = match &state.engine {
        Engine::Local(scheduler) => {
            let model = scheduler.model();
            let template = model.chat_template().ok_or_else(|| {
                ApiError::Invalid(
                    "this model's GGUF has no chat template this server can render; use \
                     POST /v1/completions with a prompt you format yourself"
                        .into(),
                    Some("messages"),
                )
            })?;
            let messages = llm::wire::messages(&request.messages);
            let prompt = template.encode(model.tokenizer(), &messages, true);
            let sampling = Sampling {
                max_tokens: request.max_output_tokens(),
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
        Engine::Upstream(upstream) => upstream.chat(
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

/// A request that already passed the cloud is a forwarding loop.
pub(super) fn refuse_loops(offload: Option<&OffloadRequest>) -> Result<(), ApiError> {
    if offload.is_some_and(|o| o.has_visited(Tier::Cloud)) {
        return Err(ApiError::Invalid(
            "offload.hops already has a cloud record: this request is in a forwarding loop".into(),
            Some("offload.hops"),
        ));
    }
    Ok(())
}
