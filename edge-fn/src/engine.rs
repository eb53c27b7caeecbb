//! Running the edge model on a request, through whichever [`Backend`] the build has: the chat
//! prompt, then either generation (sampling and stop strings by `llm`'s [`Decoder`], one
//! backend step per token) or option scoring; and the answer's confidence by `offload`.

use crate::backend::{Backend, FEED_CHUNK, Sequence};
use crate::error::EdgeError;
use llm::generate::{Decoder, FinishReason as LlmFinish, SamplingParams};
use llm::{EncodeOptions, TokenId};
use offload::Confidence;
use offload::confidence::{PerplexityAccumulator, pick, softmax};
use offload::wire::{ChatCompletionRequest, FinishReason, TokenLogprob};
use std::time::Instant;

/// OpenAI's default temperature.
const DEFAULT_TEMPERATURE: f64 = 1.0;

/// What to generate, from the request and the tier's defaults.
#[derive(Debug, Clone)]
pub struct Plan {
    pub prompt: Vec<TokenId>,
    pub work: Work,
}

#[derive(Debug, Clone)]
pub enum Work {
    Generate(SamplingParams),
    /// Score these options (their token ids) and answer with the best.
    Score {
        options: Vec<String>,
        tokens: Vec<Vec<TokenId>>,
    },
}

/// The prompt's tokens and the work, checked against the context.
pub fn plan<B: Backend>(
    backend: &B,
    request: &ChatCompletionRequest,
    default_max_tokens: u32,
    seed: u64,
) -> Result<Plan, EdgeError> {
    let template = backend.chat_template().ok_or_else(|| {
        EdgeError::Config(format!(
            "model `{}` has no chat template this runtime renders",
            backend.model_id()
        ))
    })?;
    let messages = llm::wire::messages(&request.messages);
    let prompt = template.encode(backend.tokenizer(), &messages, true);
    let context = backend.context_length();
    if let Some(options) = request.offload.as_ref().and_then(|o| o.options.clone()) {
        let tokens: Vec<Vec<TokenId>> = options
            .iter()
            .map(|o| backend.tokenizer().encode(o, EncodeOptions::TEXT))
            .collect();
        let longest = tokens.iter().map(Vec::len).max().unwrap_or(0);
        if prompt.len() + longest > context {
            return Err(EdgeError::ContextLength {
                prompt: prompt.len(),
                requested: longest,
                context,
            });
        }
        return Ok(Plan {
            prompt,
            work: Work::Score { options, tokens },
        });
    }
    let room = context.saturating_sub(prompt.len());
    let max_tokens = match request.max_output_tokens() {
        Some(asked) if asked as usize > room => {
            return Err(EdgeError::ContextLength {
                prompt: prompt.len(),
                requested: asked as usize,
                context,
            });
        }
        Some(asked) => asked as usize,
        None if room == 0 => {
            return Err(EdgeError::ContextLength {
                prompt: prompt.len(),
                requested: 1,
                context,
            });
        }
        None => (default_max_tokens as usize).min(room),
    };
    let top_logprobs = if request.logprobs {
        request.top_logprobs.unwrap_or(0) as usize
    } else {
        0
    };
    Ok(Plan {
        prompt,
        work: Work::Generate(SamplingParams {
            temperature: request.temperature.unwrap_or(DEFAULT_TEMPERATURE),
            top_k: None,
            top_p: request.top_p.filter(|&p| p < 1.0),
            seed: request.seed.map_or(seed, |s| s as u64),
            max_tokens,
            stop: request.stop_sequences().to_vec(),
            top_logprobs,
        }),
    })
}

/// The model's answer with what it cost.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    /// The text each generated token added (what a stream sends per chunk).
    pub pieces: Vec<String>,
    /// One entry per generated token (the end-of-generation token included, so confidence
    /// covers the whole answer); for option scoring, one entry for the chosen option.
    pub logprobs: Vec<TokenLogprob>,
    pub finish: FinishReason,
    pub confidence: Confidence,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub first_token_ms: f64,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Runs `plan` on `backend`. `top_logprobs` alternatives are reported per token.
pub fn run<B: Backend>(backend: &B, plan: &Plan, received: Instant) -> Result<Answer, EdgeError> {
    let started = Instant::now();
    let mut seq = backend.sequence()?;
    let mut logits = Vec::new();
    for chunk in plan.prompt.chunks(FEED_CHUNK) {
        logits = seq.feed(chunk)?;
    }
    if plan.prompt.is_empty() {
        return Err(EdgeError::Model("the prompt is empty".into()));
    }
    let prefill_ms = ms_since(started);
    match &plan.work {
        Work::Score { options, tokens } => {
            let decode_start = Instant::now();
            let scores = seq.score_options(tokens)?;
            let (best, confidence) = pick(&scores)?;
            let probs = softmax(&scores)?;
            let logprob = TokenLogprob::for_options(options, &probs, best, options.len())
                .ok_or_else(|| EdgeError::Model("the options were not all scored".into()))?;
            let text = logprob.token.clone();
            Ok(Answer {
                pieces: vec![text.clone()],
                logprobs: vec![logprob],
                text,
                finish: FinishReason::Stop,
                confidence,
                prompt_tokens: plan.prompt.len(),
                completion_tokens: 0,
                prefill_ms,
                decode_ms: ms_since(decode_start),
                first_token_ms: ms_since(received),
            })
        }
        Work::Generate(params) => {
            let tokenizer = backend.tokenizer();
            let context = backend.context_length();
            let mut decoder = Decoder::new(params.clone());
            let decode_start = Instant::now();
            let mut text = String::new();
            let mut pieces: Vec<String> = Vec::new();
            let mut logprobs = Vec::new();
            let mut perplexity = PerplexityAccumulator::new();
            let mut first_token_ms = None;
            while let Some(token) = decoder.next_token(std::mem::take(&mut logits), tokenizer)? {
                first_token_ms.get_or_insert_with(|| ms_since(received));
                text.push_str(&token.text);
                pieces.push(token.text.clone());
                perplexity.push(f64::from(token.logprob))?;
                logprobs.push(llm::wire::token_logprob(&token, tokenizer));
                if decoder.finish_reason().is_some() {
                    break;
                }
                if seq.len() >= context {
                    let rest = decoder.end(LlmFinish::Length);
                    text.push_str(&rest);
                    if let Some(last) = pieces.last_mut() {
                        last.push_str(&rest);
                    }
                    break;
                }
                logits = seq.feed(&[token.id])?;
            }
            let finish = match decoder.finish_reason() {
                Some(LlmFinish::Length) => FinishReason::Length,
                _ => FinishReason::Stop,
            };
            Ok(Answer {
                text,
                pieces,
                completion_tokens: logprobs.len(),
                logprobs,
                finish,
                confidence: perplexity.confidence()?,
                prompt_tokens: plan.prompt.len(),
                prefill_ms,
                decode_ms: ms_since(decode_start),
                first_token_ms: first_token_ms.unwrap_or_else(|| ms_since(received)),
            })
        }
    }
}
