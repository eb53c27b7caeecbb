//! From a checked request to work for the local model: the prompt's tokens, the sampling
//! settings, and the checks that need the tokenizer (prompt plus output within the context).

use crate::config::Config;
use crate::engine::{Job, Work};
use crate::error::ApiError;
use llm::generate::SamplingParams;
use llm::models::Model;
use llm::{EncodeOptions, TokenId};
use offload::wire::OffloadRequest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The sampling fields both APIs share.
pub struct Sampling<'a> {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub seed: Option<i64>,
    pub stop: &'a [String],
    pub top_logprobs: usize,
}

/// OpenAI's default temperature.
const DEFAULT_TEMPERATURE: f64 = 1.0;

pub fn job(
    model: &Model,
    prompt: Vec<TokenId>,
    offload: Option<&OffloadRequest>,
    sampling: &Sampling<'_>,
    config: &Config,
    received: Instant,
) -> Result<Job, ApiError> {
    if prompt.is_empty() {
        return Err(ApiError::Invalid(
            "the prompt is empty; send some text".into(),
            Some("prompt"),
        ));
    }
    let context = model.context_length();
    let deadline = received + std::time::Duration::from_secs(config.request_timeout_secs);
    if let Some(options) = offload.and_then(|o| o.options.as_ref()) {
        let options: Vec<Vec<TokenId>> = options
            .iter()
            .map(|o| model.tokenizer().encode(o, EncodeOptions::TEXT))
            .collect();
        let longest = options.iter().map(Vec::len).max().unwrap_or(0);
        if prompt.len() + longest > context {
            return Err(ApiError::ContextLength {
                prompt: prompt.len(),
                requested: longest,
                context,
            });
        }
        return Ok(Job {
            prompt,
            work: Work::Score(options),
            received,
            deadline,
        });
    }
    let room = context.saturating_sub(prompt.len());
    let max_tokens = match sampling.max_tokens {
        Some(asked) if asked as usize > room => {
            return Err(ApiError::ContextLength {
                prompt: prompt.len(),
                requested: asked as usize,
                context,
            });
        }
        Some(asked) => asked as usize,
        None if room == 0 => {
            return Err(ApiError::ContextLength {
                prompt: prompt.len(),
                requested: 1,
                context,
            });
        }
        None => (config.default_max_tokens as usize).min(room),
    };
    let params = SamplingParams {
        temperature: sampling.temperature.unwrap_or(DEFAULT_TEMPERATURE),
        top_k: None,
        top_p: sampling.top_p.filter(|&p| p < 1.0),
        seed: sampling.seed.map_or_else(fresh_seed, |s| s as u64),
        max_tokens,
        stop: sampling.stop.to_vec(),
        top_logprobs: sampling.top_logprobs,
    };
    Ok(Job {
        prompt,
        work: Work::Generate(params),
        received,
        deadline,
    })
}

/// A seed for a request that names none: different for every request.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of the two, so consecutive requests get unrelated seeds.
    let mut z = nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
