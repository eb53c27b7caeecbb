//! Model families behind one interface: load a GGUF, open a [`Session`] (one sequence with its
//! own KV cache), feed tokens, get the next-token logits.
//!
//! Today the forward passes are candle-transformers' quantised llama and gemma3 on the CPU. The
//! interface is what decoding, option scoring and the tiers use, so the project's own kernels
//! (issue 3) can replace the forward passes without touching any caller.

use crate::error::{Error, Result};
use crate::{Architecture, Gguf, Tokenizer};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama};
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
enum Weights {
    Llama(quantized_llama::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

/// A loaded model: weights (shared, read-only), its tokenizer and limits. Cheap to clone.
#[derive(Clone)]
pub struct Model {
    weights: Weights,
    tokenizer: Arc<Tokenizer>,
    arch: Architecture,
    context: usize,
    name: String,
}

impl Model {
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let gguf = Gguf::open(path)?;
        let arch = gguf.architecture()?;
        let tokenizer = Arc::new(gguf.tokenizer()?);
        let context = gguf
            .metadata()
            .get(&format!("{}.context_length", arch.name()))
            .and_then(|v| v.to_u64().ok())
            .map(|v| v as usize)
            .unwrap_or(2048)
            // candle's llama precomputes rotary tables for this many positions only.
            .min(match arch {
                Architecture::Llama => quantized_llama::MAX_SEQ_LEN,
                _ => usize::MAX,
            });
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let content = gguf_file::Content::read(&mut file)?;
        let device = Device::Cpu;
        let weights = match arch {
            Architecture::Llama => Weights::Llama(quantized_llama::ModelWeights::from_gguf(
                content, &mut file, &device,
            )?),
            Architecture::Gemma3 => Weights::Gemma3(quantized_gemma3::ModelWeights::from_gguf(
                content, &mut file, &device,
            )?),
            other => {
                return Err(Error::NoForwardPass {
                    architecture: other.name(),
                });
            }
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Model {
            weights,
            tokenizer,
            arch,
            context,
            name,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn architecture(&self) -> Architecture {
        self.arch
    }

    pub fn context_length(&self) -> usize {
        self.context
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh sequence with its own, empty KV cache.
    pub fn session(&self) -> Session {
        Session {
            weights: self.weights.clone(),
            tokens: Vec::new(),
            context: self.context,
        }
    }
}

/// One sequence being decoded: the model's weights (shared) plus this sequence's KV cache.
/// Cloning a session forks it: both continue from the same cached prefix.
#[derive(Clone)]
pub struct Session {
    weights: Weights,
    tokens: Vec<u32>,
    context: usize,
}

impl Session {
    /// Tokens fed so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Feeds `tokens` after those already cached and returns the logits for the next token.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let needed = self.tokens.len() + tokens.len();
        if needed > self.context {
            return Err(Error::ContextFull {
                needed,
                context: self.context,
            });
        }
        let mut logits = None;
        // gemma3's forward pass masks the cached prefix wrongly when several tokens are fed at
        // a non-zero position, so after the first chunk tokens go in one at a time there.
        let chunks: Vec<&[u32]> = match (&self.weights, self.tokens.is_empty()) {
            (Weights::Gemma3(_), false) => tokens.chunks(1).collect(),
            _ => vec![tokens],
        };
        for chunk in chunks {
            if chunk.is_empty() {
                continue;
            }
            let pos = self.tokens.len();
            let input = Tensor::new(chunk, &Device::Cpu)?.unsqueeze(0)?;
            let out = match &mut self.weights {
                Weights::Llama(w) => w.forward(&input, pos)?,
                Weights::Gemma3(w) => w.forward(&input, pos)?,
            };
            self.tokens.extend_from_slice(chunk);
            logits = Some(out);
        }
        let logits = logits.ok_or(Error::EmptyInput)?;
        Ok(logits
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?)
    }
}
