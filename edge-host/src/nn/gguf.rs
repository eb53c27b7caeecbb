//! The GGUF backend of `wasi:nn@0.2.0-rc-2024-10-28`, built on `llm`.
//!
//! A **graph** is one GGUF model ([`llm::Model`]): its weights are loaded (memory-mapped) once
//! when the host starts and shared by every request. An **execution context** is one sequence
//! with its own KV cache ([`llm::Session`]); it lives as long as the component keeps it, so a
//! generation feeds its prompt once and then one token per step.
//!
//! # Tensor protocol
//!
//! Everything goes through `compute(list<tuple<string, tensor>>)`; inputs and outputs are named.
//! Token ids are `I64` (or `I32`) tensors of shape `[n]`, little-endian, as the WIT specifies.
//!
//! | inputs | outputs | what it does |
//! |---|---|---|
//! | `tokens` `[n]`, optionally `keep` `I64 [1]` | `logits` `FP32 [vocab]`, `context` `I64 [2]` | first drops the cache after `keep` tokens (if given), then feeds the `n` tokens after what the context holds: the prompt (prefill, in chunks of at most [`GgufBackend::max_tokens`]) or one sampled token (a decode step). `logits` are the next token's raw scores; `context` is `[tokens held, context length]`. |
//! | `options` `[m]`, `option-lengths` `I64 [k]` | `scores` `FP64 [k]`, `context` | scores `k` continuations of the sequence fed so far (their token ids back to back in `options`): each score is the sum of the option's token log-probs (`llm::generate::score_options_after`), for a max-softmax confidence. The context's own cache is unchanged. Needs a `tokens` compute first. |
//! | `header` `U8 [0]` | `header` `U8 [n]`, `file-length` `I64 [1]`, `context` | the GGUF file's bytes up to its tensor data (metadata: vocabulary, chat template, hyper-parameters) and the whole file's length, so the component builds exactly the model's tokenizer with `llm` without a copy of the file. |
//! | none | `context` `I64 [2]` | reports the context's size; computes nothing. |
//!
//! One `compute` is bounded work: at most [`GgufBackend::max_tokens`] tokens fed, or at most
//! that many option tokens scored. Host calls are synchronous, so this bound (with the
//! component's epoch deadline between calls) is what keeps one request from holding the host;
//! a compute that feeds or scores more than one token also runs under
//! `tokio::task::block_in_place`, so a long one does not hold up the other requests on the same
//! executor thread. A decode step (one token) runs in place: it is as short as the guest's own
//! work between host calls, and handing the executor thread over on every token cost 15% of
//! the decode speed on two cores (`cargo xtask bench edge`).
//!
//! Errors are `runtime-error` with a message saying what was wrong (unknown input names, a bad
//! tensor type or shape, a full context, token ids outside the vocabulary).

use llm::{Model, Session};
use std::sync::Arc;
use wasmtime::format_err;
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding, TensorType};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

/// The backend for graph encoding `ggml`. Graphs come from the registry (`load-by-name`);
/// loading a model from bytes the component passes is refused.
#[derive(Default)]
pub struct GgufBackend;

impl GgufBackend {
    /// Most tokens one `compute` feeds or scores.
    pub const fn max_tokens() -> usize {
        512
    }
}

impl BackendInner for GgufBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Ggml
    }

    fn load(
        &mut self,
        _builders: &[&[u8]],
        _target: ExecutionTarget,
    ) -> Result<Graph, BackendError> {
        Err(backend_error(
            "loading a GGUF model from component memory is not supported; load a graph the \
             host was started with by name (`load-by-name`)"
                .to_string(),
        ))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

fn backend_error(message: String) -> BackendError {
    BackendError::BackendAccess(format_err!("{message}"))
}

/// A loaded model, shared by its execution contexts, with its file's header.
pub struct GgufGraph {
    model: Model,
    header: Arc<Header>,
}

/// The bytes of a GGUF file before its tensor data, and the file's length.
pub struct Header {
    pub bytes: Vec<u8>,
    pub file_len: u64,
}

impl Header {
    /// Reads the header of the GGUF file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, llm::Error> {
        use std::io::Read;
        let gguf = llm::Gguf::open(path)?;
        let io = |source| llm::Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(gguf.content().tensor_data_offset)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Ok(Header {
            bytes,
            file_len: gguf.file_len(),
        })
    }
}

impl GgufGraph {
    pub fn new(model: Model, header: Header) -> Self {
        GgufGraph {
            model,
            header: Arc::new(header),
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
}

impl BackendGraph for GgufGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let context: Box<dyn BackendExecutionContext> = Box::new(GgufContext {
            model: self.model.clone(),
            header: Arc::clone(&self.header),
            session: self.model.session(),
            last_logits: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
        });
        Ok(ExecutionContext::from(context))
    }
}

/// One sequence: the shared model, its own KV cache, and the logits of the last feed (which
/// option scoring continues from).
struct GgufContext {
    model: Model,
    header: Arc<Header>,
    session: Session,
    last_logits: Option<Vec<f32>>,
    /// For the WITX-style `set_input`/`get_output` calls.
    inputs: Vec<NamedTensor>,
    outputs: Vec<NamedTensor>,
}

impl BackendExecutionContext for GgufContext {
    fn set_input(&mut self, id: Id, tensor: &Tensor) -> Result<(), BackendError> {
        let name = id.name().map(str::to_string).ok_or_else(|| {
            backend_error("inputs are named (tokens, keep, options, option-lengths)".into())
        })?;
        self.inputs.retain(|t| t.name != name);
        self.inputs.push(NamedTensor {
            name,
            tensor: tensor.clone(),
        });
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<Tensor, BackendError> {
        let name = id.name().unwrap_or_default();
        self.outputs
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.tensor.clone())
            .ok_or_else(|| backend_error(format!("no output named {name:?}")))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let named = inputs.is_some();
        let inputs = inputs.unwrap_or_else(|| std::mem::take(&mut self.inputs));
        let outputs = if is_decode_step(&inputs) {
            self.run(inputs)
        } else {
            block_in_place(|| self.run(inputs))
        }
        .map_err(backend_error)?;
        if named {
            Ok(Some(outputs))
        } else {
            self.outputs = outputs;
            Ok(None)
        }
    }
}

/// Whether the inputs are one decode step: a `tokens` tensor holding a single id, alone.
/// Judged by the bytes (at most one I64), not the declared shape: the bytes are what gets fed,
/// so a tensor whose shape understates them still runs under `block_in_place`.
fn is_decode_step(inputs: &[NamedTensor]) -> bool {
    match inputs {
        [only] => only.name == "tokens" && only.tensor.data.len() <= 8,
        _ => false,
    }
}

/// Runs `f` where blocking is allowed: on a multi-threaded tokio runtime, other tasks move to
/// another worker while it runs.
fn block_in_place<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl GgufContext {
    fn run(&mut self, mut inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, String> {
        let mut take = |name: &str| {
            inputs
                .iter()
                .position(|t| t.name == name)
                .map(|i| inputs.swap_remove(i).tensor)
        };
        let tokens = take("tokens");
        let keep = take("keep");
        let options = take("options");
        let lengths = take("option-lengths");
        let header = take("header");
        if let Some(extra) = inputs.first() {
            return Err(format!(
                "unknown input {:?}; the GGUF backend takes `tokens` (with optional `keep`), or \
                 `options` with `option-lengths`, or `header`, or nothing",
                extra.name
            ));
        }
        let mut out = Vec::new();
        if header.is_some() {
            if tokens.is_some() || options.is_some() || lengths.is_some() || keep.is_some() {
                return Err("`header` is asked for alone".into());
            }
            out.push(named(
                "header",
                Tensor::new(
                    vec![self.header.bytes.len() as u32],
                    TensorType::U8,
                    self.header.bytes.clone(),
                ),
            ));
            out.push(named(
                "file-length",
                Tensor::new(
                    vec![1],
                    TensorType::I64,
                    (self.header.file_len as i64).to_le_bytes().to_vec(),
                ),
            ));
        }
        match (tokens, options, lengths) {
            (Some(tokens), None, None) => {
                if let Some(keep) = keep {
                    let keep = ids(&keep, "keep")?;
                    let [keep] = keep.as_slice() else {
                        return Err("`keep` is one number".into());
                    };
                    self.session.truncate(*keep as usize);
                    self.last_logits = None;
                }
                let tokens = self.checked_ids(&tokens, "tokens")?;
                if tokens.is_empty() || tokens.len() > GgufBackend::max_tokens() {
                    return Err(format!(
                        "`tokens` holds {} ids; one compute feeds 1 to {} (feed a long prompt \
                         in chunks)",
                        tokens.len(),
                        GgufBackend::max_tokens()
                    ));
                }
                let logits = self.session.feed(&tokens).map_err(|e| e.to_string())?;
                // wasi-nn tensors are little-endian; so is every target wasmtime runs on but
                // s390x, where the bytes are swapped.
                let data = if cfg!(target_endian = "little") {
                    bytemuck::cast_slice::<f32, u8>(&logits).to_vec()
                } else {
                    logits.iter().flat_map(|x| x.to_le_bytes()).collect()
                };
                out.push(named(
                    "logits",
                    Tensor::new(vec![logits.len() as u32], TensorType::Fp32, data),
                ));
                self.last_logits = Some(logits);
            }
            (None, Some(options), Some(lengths)) => {
                if keep.is_some() {
                    return Err("`keep` goes with `tokens`".into());
                }
                let flat = self.checked_ids(&options, "options")?;
                let lengths = ids(&lengths, "option-lengths")?;
                if flat.len() > GgufBackend::max_tokens() {
                    return Err(format!(
                        "the options hold {} tokens; one compute scores at most {}",
                        flat.len(),
                        GgufBackend::max_tokens()
                    ));
                }
                if lengths.iter().map(|&l| l as usize).sum::<usize>() != flat.len() {
                    return Err("`option-lengths` must add up to the length of `options`".into());
                }
                let Some(logits) = self.last_logits.clone() else {
                    return Err("score options after feeding the prompt with `tokens`".into());
                };
                let mut split = Vec::with_capacity(lengths.len());
                let mut at = 0;
                for &len in &lengths {
                    split.push(flat[at..at + len as usize].to_vec());
                    at += len as usize;
                }
                let scores = llm::generate::score_options_after(&self.session, logits, &split)
                    .map_err(|e| e.to_string())?;
                out.push(named(
                    "scores",
                    Tensor::new(
                        vec![scores.len() as u32],
                        TensorType::Fp64,
                        scores.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    ),
                ));
            }
            (None, None, None) if keep.is_none() => {}
            _ => {
                return Err(
                    "give `tokens` (with optional `keep`), or `options` with `option-lengths`, \
                     or no input"
                        .into(),
                );
            }
        }
        let held = self.session.tokens().len() as i64;
        let context = self.model.context_length() as i64;
        out.push(named(
            "context",
            Tensor::new(
                vec![2],
                TensorType::I64,
                [held, context]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
        ));
        Ok(out)
    }

    /// Token ids, checked against the vocabulary.
    fn checked_ids(&self, tensor: &Tensor, what: &str) -> Result<Vec<u32>, String> {
        let ids = ids(tensor, what)?;
        let vocab = self.model.logits_len();
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(format!(
                "`{what}` holds token id {bad}, outside the vocabulary of {vocab}"
            ));
        }
        Ok(ids)
    }
}

fn named(name: &str, tensor: Tensor) -> NamedTensor {
    NamedTensor {
        name: name.to_string(),
        tensor,
    }
}

/// Non-negative integers from an `I64` or `I32` tensor of one dimension.
fn ids(tensor: &Tensor, what: &str) -> Result<Vec<u32>, String> {
    let width = match tensor.ty {
        TensorType::I64 => 8,
        TensorType::I32 => 4,
        other => {
            return Err(format!(
                "`{what}` must be an I64 or I32 tensor, not {other:?}"
            ));
        }
    };
    let count = tensor.data.len() / width;
    if !tensor.data.len().is_multiple_of(width) || tensor.dimensions != [count as u32] {
        return Err(format!(
            "`{what}` must have one dimension matching its {} bytes of data, has {:?}",
            tensor.data.len(),
            tensor.dimensions
        ));
    }
    tensor
        .data
        .chunks_exact(width)
        .map(|c| {
            let v = if width == 8 {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                i64::from_le_bytes(b)
            } else {
                let mut b = [0u8; 4];
                b.copy_from_slice(c);
                i64::from(i32::from_le_bytes(b))
            };
            u32::try_from(v).map_err(|_| format!("`{what}` holds {v}, not a token id"))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn i64s(v: &[i64]) -> Tensor {
        Tensor::new(
            vec![v.len() as u32],
            TensorType::I64,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        )
    }

    #[test]
    fn only_a_single_token_alone_is_a_decode_step() {
        let input = |name: &str, ids: &[i64]| NamedTensor {
            name: name.into(),
            tensor: i64s(ids),
        };
        assert!(is_decode_step(&[input("tokens", &[7])]));
        assert!(!is_decode_step(&[input("tokens", &[7, 8])]));
        assert!(!is_decode_step(&[
            input("tokens", &[7]),
            input("keep", &[3])
        ]));
        assert!(!is_decode_step(&[input("options", &[7])]));
        // A shape of one over the bytes of two ids is fed as two.
        let mut understated = input("tokens", &[7, 8]);
        understated.tensor.dimensions = vec![1];
        assert!(!is_decode_step(&[understated]));
        assert!(!is_decode_step(&[]));
    }

    #[test]
    fn ids_are_read_and_checked() {
        assert_eq!(ids(&i64s(&[1, 2, 3]), "t").unwrap(), vec![1, 2, 3]);
        assert!(
            ids(&i64s(&[-1]), "t")
                .unwrap_err()
                .contains("not a token id")
        );
        let i32s = Tensor::new(
            vec![2],
            TensorType::I32,
            [7i32, 9].iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
        assert_eq!(ids(&i32s, "t").unwrap(), vec![7, 9]);
        let bad_shape = Tensor::new(vec![3], TensorType::I64, 5i64.to_le_bytes().to_vec());
        assert!(ids(&bad_shape, "t").unwrap_err().contains("one dimension"));
        let floats = Tensor::new(vec![1], TensorType::Fp32, 1f32.to_le_bytes().to_vec());
        assert!(ids(&floats, "t").unwrap_err().contains("I64 or I32"));
    }
}
