//! Model families behind one interface: load a GGUF, open a [`Session`] (one sequence with its
//! own KV cache), feed tokens, get the next-token logits; or step many sessions at once with
//! [`feed_batch`].
//!
//! The forward pass is the project's own ([`decoder`]) on its own kernels
//! ([`crate::kernels`]); each family's file (`llama.rs` for llama and qwen2, `gemma3.rs`) only
//! reads its hyper-parameters and weights into it. Weights stay in the GGUF's quantised
//! layout, memory-mapped where the platform has mmap.

pub(crate) mod decoder;
mod gemma3;
mod llama;
mod load;

use crate::error::{Error, Result};
use crate::kernels::{Isa, Pool, Storage};
use crate::{Architecture, ChatTemplate, Gguf, Tokenizer};
use decoder::{Cache, Decoder, Seq};
use std::path::Path;
use std::sync::Arc;

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Threads for the kernels (default: [`Pool::default_threads`], i.e. `$LADDER_THREADS` or
    /// every core). WebAssembly builds always use one.
    pub threads: Option<usize>,
    /// Cap on the context (default: the model's trained context length).
    pub context: Option<usize>,
    /// Which kernels to run (default: the fastest this machine has, [`Isa::detect`]);
    /// [`Isa::Scalar`] is the reference the SIMD paths are checked against. Every choice gives
    /// the same logits bit for bit.
    pub kernels: Option<Isa>,
    /// Dequantise every weight to f32 at load and multiply float activations: the file's
    /// weights in exact arithmetic, without the 8-bit rounding of activations the quantised
    /// products make. A reference for checking and evaluation; four to eight times the memory
    /// of the quantised model, and slower.
    pub exact: bool,
}

struct Inner {
    decoder: Decoder,
    pool: Pool,
    isa: Isa,
}

/// A loaded model: weights (shared, read-only), its tokenizer and limits. Cheap to clone.
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
    tokenizer: Arc<Tokenizer>,
    /// `None` when the GGUF has no template this crate renders (see [`Model::chat_template`]).
    chat: Option<ChatTemplate>,
    arch: Architecture,
    context: usize,
    name: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("architecture", &self.arch)
            .field("context", &self.context)
            .field("threads", &self.inner.pool.threads())
            .finish()
    }
}

impl Model {
    /// Loads a GGUF file with the default options.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, &ModelOptions::default())
    }

    pub fn load_with(path: impl AsRef<Path>, options: &ModelOptions) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let storage = map_or_read(file).map_err(io)?;
        // The header is parsed from the bytes already mapped or read, not from the file again.
        let what = path.display().to_string();
        let gguf = Gguf::read(&mut std::io::Cursor::new(storage.bytes()), &what)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::build(&gguf, storage, name, options)
    }

    /// Loads a model from the bytes of a whole GGUF file (a browser download, say).
    pub fn from_bytes(bytes: Vec<u8>, name: &str, options: &ModelOptions) -> Result<Self> {
        let gguf = Gguf::from_bytes(&bytes)?;
        Self::build(&gguf, Storage::new(bytes), name.to_string(), options)
    }

    fn build(gguf: &Gguf, storage: Storage, name: String, options: &ModelOptions) -> Result<Self> {
        let arch = gguf.architecture()?;
        let tokenizer = Arc::new(gguf.tokenizer()?);
        // A model without a known chat template still serves plain completions.
        let chat = ChatTemplate::for_model(gguf).ok();
        let tensors = load::Tensors::new(gguf, storage, options.exact)?;
        let decoder = match arch {
            Architecture::Llama | Architecture::Qwen2 => llama::load(&tensors, arch)?,
            Architecture::Gemma3 => gemma3::load(&tensors)?,
        };
        if decoder.vocab_size() < tokenizer.vocab_size() {
            return Err(Error::TensorShape {
                name: "output.weight".into(),
                expected: format!("at least {} rows (the vocabulary)", tokenizer.vocab_size()),
                found: decoder.vocab_size().to_string(),
            });
        }
        let trained = tensors.hparam("context_length")?.unwrap_or(2048);
        let context = options.context.map_or(trained, |c| c.min(trained)).max(1);
        let threads = options.threads.unwrap_or_else(Pool::default_threads);
        Ok(Model {
            inner: Arc::new(Inner {
                decoder,
                pool: Pool::new(threads),
                isa: options.kernels.unwrap_or_else(Isa::detect),
            }),
            tokenizer,
            chat,
            arch,
            context,
            name,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's chat format, read from its GGUF template (or its architecture); `None` when
    /// the file has a template of a family this crate does not render, in which case only plain
    /// completions can be served. [`ChatTemplate::for_model`] gives the reason.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
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

    /// Threads the kernels run on.
    pub fn threads(&self) -> usize {
        self.inner.pool.threads()
    }

    /// The kernels this model runs.
    pub fn kernels(&self) -> Isa {
        self.inner.isa
    }

    /// Entries in the logits (at least the vocabulary size).
    pub fn logits_len(&self) -> usize {
        self.inner.decoder.vocab_size()
    }

    /// The decoder's weights and configuration (the GPU path uploads them).
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn decoder(&self) -> &Decoder {
        &self.inner.decoder
    }

    /// A fresh sequence with its own, empty KV cache.
    pub fn session(&self) -> Session {
        Session {
            inner: Arc::clone(&self.inner),
            cache: self.inner.decoder.new_cache(),
            tokens: Vec::new(),
            context: self.context,
        }
    }
}

/// Maps the file read-only where the platform can, else reads it into memory.
fn map_or_read(mut file: std::fs::File) -> std::io::Result<Storage> {
    #[cfg(not(target_family = "wasm"))]
    {
        // SAFETY: the map is read-only; like every mmap-based loader this relies on the model
        // file not being truncated or rewritten while it is in use.
        if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
            return Ok(Storage::new(map));
        }
    }
    let len = file.metadata().map_or(0, |m| m.len() as usize);
    let mut bytes = Vec::with_capacity(len);
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(Storage::new(bytes))
}

/// One sequence being decoded: the model's weights (shared) plus this sequence's KV cache.
/// Cloning a session forks it: both continue from the same cached prefix.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
    cache: Cache,
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
        let mut out = feed_batch(&mut [self], &[tokens])?;
        out.pop().ok_or(Error::EmptyInput)
    }

    /// Drops everything after the first `len` tokens, so the sequence continues from there
    /// (a shared prompt prefix reused for another continuation).
    ///
    /// A sliding-window layer (Gemma 3) keeps only a bounded span of recent positions; when
    /// the cut goes back further than that span allows, the cache is dropped and the next
    /// [`Session::feed`] feeds the kept tokens again first (same logits, more time).
    pub fn truncate(&mut self, len: usize) {
        if len < self.tokens.len() {
            self.tokens.truncate(len);
            self.cache.truncate(len, self.inner.decoder.kv_dim());
        }
    }

    /// Tokens whose keys and values are cached; the rest of [`Session::tokens`] is fed again
    /// by the next [`Session::feed`] (see [`Session::truncate`]).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// A new session holding the first `len` tokens of this one, copying only their part of
    /// the KV cache (a cached prompt prefix reused by another request; where a sliding-window
    /// layer no longer holds what the prefix needs, the copy is empty and the fork's first
    /// feed recomputes it, as in [`Session::truncate`]).
    pub fn fork(&self, len: usize) -> Session {
        let len = len.min(self.tokens.len());
        Session {
            inner: Arc::clone(&self.inner),
            cache: self.cache.prefix(len, self.inner.decoder.kv_dim()),
            tokens: self.tokens[..len].to_vec(),
            context: self.context,
        }
    }
}

/// One forward pass for many sequences of the same model: feeds `tokens[i]` after what
/// `sessions[i]` holds and returns each sequence's next-token logits, in order. This is the
/// call a continuous-batching scheduler makes once per step (one token per sequence), and a
/// prefill makes with one sequence and its whole prompt; every sequence's rows share one pass
/// over the weights. On error no session has changed.
pub fn feed_batch(sessions: &mut [&mut Session], tokens: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
    if sessions.len() != tokens.len() {
        return Err(Error::BatchMismatch {
            sessions: sessions.len(),
            tokens: tokens.len(),
        });
    }
    let Some(first) = sessions.first() else {
        return Ok(Vec::new());
    };
    let inner = Arc::clone(&first.inner);
    for (s, t) in sessions.iter().zip(tokens) {
        if !Arc::ptr_eq(&s.inner, &inner) {
            return Err(Error::MixedModels);
        }
        if t.is_empty() {
            return Err(Error::EmptyInput);
        }
        let needed = s.tokens.len() + t.len();
        if needed > s.context {
            return Err(Error::ContextFull {
                needed,
                context: s.context,
            });
        }
    }
    // Tokens a rewind took out of the cache go in again before the new ones.
    let fed: Vec<Option<Vec<u32>>> = sessions
        .iter()
        .zip(tokens)
        .map(|(s, t)| {
            let cached = s.cache.len();
            (cached < s.tokens.len()).then(|| [&s.tokens[cached..], t].concat())
        })
        .collect();
    let logits = {
        let mut seqs: Vec<Seq<'_>> = sessions
            .iter_mut()
            .zip(tokens)
            .zip(&fed)
            .map(|((s, t), fed)| Seq {
                cache: &mut s.cache,
                tokens: fed.as_deref().unwrap_or(t),
            })
            .collect();
        inner.decoder.forward(&inner.pool, inner.isa, &mut seqs)?
    };
    for (s, t) in sessions.iter_mut().zip(tokens) {
        s.tokens.extend_from_slice(t);
    }
    Ok(logits)
}

#[cfg(test)]
pub(crate) mod tests;
