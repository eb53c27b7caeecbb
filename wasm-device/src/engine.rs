//! The device model: `llm` with the model's chat template, and one KV cache for the
//! conversation, so each new turn feeds only what the cache does not hold yet. Generation is
//! stepped one piece at a time (a slice of the prompt, then one token), so the browser glue can
//! give the event loop a turn between steps (a cancel arrives, the page repaints).
//!
//! The model runs on the CPU, or (in the browser, where WebGPU offers an adapter and the
//! model's family has kernels) on the GPU through `llm::gpu`. A GPU that fails mid-answer
//! (device lost) hands the conversation to the CPU, which refeeds it, with a note saying so.

use crate::error::{DeviceError, Result};
use llm::models::ModelOptions;
use llm::{ChatTemplate, Decoder, FinishReason, Message, Model, SamplingParams, Session, Token};

/// The context the device gives a conversation (the model is trained for more; the KV cache
/// grows with it, so this bounds the page's memory).
pub const CONTEXT: usize = 4096;
/// Prompt tokens fed per step.
pub const PREFILL_STEP: usize = 64;

pub struct DeviceModel {
    model: Model,
    template: ChatTemplate,
    /// The conversation's cache: the tokens of the last prompt and answer.
    backend: Backend,
    /// Why the model runs on the CPU when a GPU was asked for.
    note: Option<String>,
}

/// Where the conversation's cache lives and its tokens are computed.
pub enum Backend {
    Cpu(Session),
    #[cfg(target_arch = "wasm32")]
    Gpu(llm::gpu::GpuSession),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu(_) => "cpu",
            #[cfg(target_arch = "wasm32")]
            Backend::Gpu(_) => "webgpu",
        }
    }

    fn tokens(&self) -> &[u32] {
        match self {
            Backend::Cpu(s) => s.tokens(),
            #[cfg(target_arch = "wasm32")]
            Backend::Gpu(s) => s.tokens(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Backend::Cpu(s) => s.truncate(len),
            #[cfg(target_arch = "wasm32")]
            Backend::Gpu(s) => s.truncate(len),
        }
    }

    /// Feeds `tokens`; a GPU that fails (not a bad input) is replaced by the CPU, which
    /// refeeds what the GPU held, and `note` says why.
    #[cfg_attr(not(target_arch = "wasm32"), allow(unused_variables))]
    pub async fn feed(
        &mut self,
        model: &Model,
        note: &mut Option<String>,
        tokens: &[u32],
    ) -> Result<Vec<f32>> {
        match self {
            Backend::Cpu(s) => Ok(s.feed(tokens)?),
            #[cfg(target_arch = "wasm32")]
            Backend::Gpu(g) => match g.feed(tokens).await {
                Ok(logits) => Ok(logits),
                Err(llm::gpu::GpuError::Engine(e)) => Err(e.into()),
                Err(e) => {
                    let mut cpu = model.session();
                    let held = g.tokens().to_vec();
                    if !held.is_empty() {
                        cpu.feed(&held)?;
                    }
                    let logits = cpu.feed(tokens)?;
                    *note = Some(format!("WebGPU failed ({e}); the model runs on the CPU"));
                    *self = Backend::Cpu(cpu);
                    Ok(logits)
                }
            },
        }
    }
}

impl DeviceModel {
    /// Loads a whole GGUF file (as downloaded).
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Self> {
        #[cfg(target_arch = "wasm32")]
        let threads = crate::threads::count();
        #[cfg(not(target_arch = "wasm32"))]
        let threads = 1;
        let options = ModelOptions {
            threads: Some(threads),
            context: Some(CONTEXT),
            ..ModelOptions::default()
        };
        let model = Model::from_bytes(bytes, name, &options)?;
        let template = model.chat_template().cloned().ok_or_else(|| {
            DeviceError::Request(format!(
                "{name} has a chat template of a family the engine does not render"
            ))
        })?;
        let backend = Backend::Cpu(model.session());
        Ok(DeviceModel {
            model,
            template,
            backend,
            note: None,
        })
    }

    /// `"cpu"` or `"webgpu"`.
    pub fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// Why the model runs on the CPU although the GPU was asked for (no adapter, no kernels
    /// for this model, the device was lost), if it does.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// Moves the model to the GPU; on failure it stays on the CPU and [`Self::note`] says
    /// why. Returns the adapter's name on success.
    #[cfg(target_arch = "wasm32")]
    pub async fn use_gpu(&mut self) -> Option<String> {
        let gpu = match llm::gpu::GpuModel::new(&self.model).await {
            Ok(g) => g,
            Err(e) => {
                self.note = Some(format!("{e}; the model runs on the CPU"));
                return None;
            }
        };
        match gpu.session(CONTEXT).await {
            Ok(s) => {
                self.backend = Backend::Gpu(s);
                self.note = None;
                Some(gpu.adapter().to_string())
            }
            Err(e) => {
                self.note = Some(format!("{e}; the model runs on the CPU"));
                None
            }
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Starts answering `messages`: renders the prompt, keeps the cached prefix it shares with
    /// the conversation so far, and drops the oldest turns if the prompt and `max_tokens` do not
    /// fit the context.
    pub fn start(&mut self, messages: &[Message], params: SamplingParams) -> Result<Turn<'_>> {
        let budget = CONTEXT.saturating_sub(params.max_tokens);
        let mut kept: Vec<Message> = messages.to_vec();
        let prompt = loop {
            let prompt = self.template.encode(self.model.tokenizer(), &kept, true);
            if prompt.len() <= budget {
                break prompt;
            }
            // Drop the oldest message that is not a system message and not the last one.
            match kept
                .iter()
                .position(|m| m.role != llm::Role::System)
                .filter(|&i| i + 1 < kept.len())
            {
                Some(i) => {
                    kept.remove(i);
                }
                None => {
                    return Err(DeviceError::Request(format!(
                        "the question needs {} tokens; the device model's context holds {} \
                         with {} for the answer",
                        prompt.len(),
                        CONTEXT,
                        params.max_tokens
                    )));
                }
            }
        };
        let cached = self
            .backend
            .tokens()
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count()
            // At least one token is fed, for the next token's logits.
            .min(prompt.len().saturating_sub(1));
        self.backend.truncate(cached);
        let mut stop = params.stop.clone();
        stop.push(self.template.end_of_turn().to_string());
        let params = SamplingParams { stop, ..params };
        Ok(Turn {
            model: &self.model,
            backend: &mut self.backend,
            note: &mut self.note,
            decoder: Decoder::new(params),
            prompt_tokens: prompt.len(),
            cached_tokens: cached,
            pending: prompt[cached..].to_vec(),
            next_logits: None,
        })
    }
}

/// One answer being generated.
pub struct Turn<'m> {
    model: &'m Model,
    backend: &'m mut Backend,
    note: &'m mut Option<String>,
    decoder: Decoder,
    prompt_tokens: usize,
    cached_tokens: usize,
    /// Prompt tokens not fed yet.
    pending: Vec<u32>,
    next_logits: Option<Vec<f32>>,
}

impl Turn<'_> {
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Prompt tokens the conversation's cache already held.
    pub fn cached_tokens(&self) -> usize {
        self.cached_tokens
    }

    /// Feeds the next slice of the prompt; `false` once the whole prompt is in.
    pub async fn prefill_step(&mut self) -> Result<bool> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let n = self.pending.len().min(PREFILL_STEP);
        let piece: Vec<u32> = self.pending.drain(..n).collect();
        let logits = self.backend.feed(self.model, self.note, &piece).await?;
        if self.pending.is_empty() {
            self.next_logits = Some(logits);
        }
        Ok(!self.pending.is_empty())
    }

    /// The next token, or `None` once the answer has ended. Call after the prefill.
    pub async fn next_token(&mut self) -> Result<Option<Token>> {
        let Some(logits) = self.next_logits.take() else {
            return Ok(None);
        };
        let Some(mut token) = self.decoder.next_token(logits, self.model.tokenizer())? else {
            return Ok(None);
        };
        if self.decoder.finish_reason().is_none() {
            match self.backend.feed(self.model, self.note, &[token.id]).await {
                Ok(next) => self.next_logits = Some(next),
                Err(DeviceError::Model(llm::Error::ContextFull { .. })) => {
                    token.text += &self.decoder.end(FinishReason::Length);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(token))
    }

    /// Stops the answer (the user cancelled); returns text still held back.
    pub fn cancel(&mut self) -> String {
        self.next_logits = None;
        self.decoder.end(FinishReason::Cancelled)
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.decoder.finish_reason()
    }
}

// Native only: they read the model from the cache folder.
#[cfg(all(test, not(target_arch = "wasm32")))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use offload::PerplexityAccumulator;
    use std::path::PathBuf;

    fn device_model() -> Option<DeviceModel> {
        let dir = std::env::var_os("LADDER_MODELS")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ladder/models"))
            })?;
        let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        let bytes = std::fs::read(&path).ok()?;
        Some(DeviceModel::from_bytes(bytes, "SmolLM2-135M-Instruct.Q4_1").unwrap())
    }

    fn answer(m: &mut DeviceModel, messages: &[Message]) -> (String, usize, f64) {
        let params = SamplingParams {
            max_tokens: 12,
            ..SamplingParams::default()
        };
        let mut turn = m.start(messages, params).unwrap();
        let cached = turn.cached_tokens();
        while pollster::block_on(turn.prefill_step()).unwrap() {}
        let mut text = String::new();
        let mut acc = PerplexityAccumulator::new();
        while let Some(t) = pollster::block_on(turn.next_token()).unwrap() {
            text += &t.text;
            acc.push(f64::from(t.logprob)).unwrap();
        }
        (text, cached, acc.confidence().unwrap().get())
    }

    /// The conversation's cache is reused across turns and gives the same answer as a fresh one.
    #[test]
    fn turns_reuse_the_cache_and_answer_the_same() {
        let Some(mut m) = device_model() else {
            eprintln!("skipped: the device model is not in the model cache (cargo xtask models)");
            return;
        };
        let first = [
            Message::system("You are a helpful assistant."),
            Message::user("What is the capital of France?"),
        ];
        let (text, cached, _) = answer(&mut m, &first);
        assert_eq!(cached, 0);
        assert!(text.contains("Paris"), "{text:?}");
        let second = [
            first[0].clone(),
            first[1].clone(),
            Message::assistant(text.clone()),
            Message::user("And of Italy?"),
        ];
        let (again, cached, conf) = answer(&mut m, &second);
        assert!(cached > 10, "cached {cached}");
        assert!(conf > 0.0 && conf <= 0.5);
        let mut fresh = device_model().unwrap();
        assert_eq!(answer(&mut fresh, &second).0, again);
    }
}
