//! The model behind `wasi:nn@0.2.0-rc-2024-10-28`, as `edge-host`'s GGUF backend serves it
//! (the tensor protocol is documented in `edge-host/src/nn/gguf.rs`): the graph is loaded by
//! name, its GGUF header (vocabulary, chat template) comes back through one `compute`, so the
//! tokenizer here is exactly `llm`'s for that file, and each sequence is one execution context
//! whose KV cache stays in the host.

use super::{Backend, FEED_CHUNK, Sequence};
use crate::bindings::wasi::nn::{errors, graph, inference, tensor};
use crate::error::EdgeError;
use llm::{ChatTemplate, Gguf, Tokenizer};
use std::io::{Read, Seek, SeekFrom};

pub struct WasiNn {
    graph: graph::Graph,
    id: String,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    context: usize,
}

fn nn_error(what: &str, e: errors::Error) -> EdgeError {
    EdgeError::Model(format!("wasi-nn {what}: {:?}: {}", e.code(), e.data()))
}

fn named<'a>(
    outputs: &'a [(String, tensor::Tensor)],
    name: &str,
) -> Result<&'a tensor::Tensor, EdgeError> {
    outputs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| EdgeError::Model(format!("wasi-nn compute returned no `{name}` output")))
}

fn i64s(tensor: &tensor::Tensor) -> Vec<i64> {
    tensor
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

fn ids_tensor(ids: &[u32]) -> tensor::Tensor {
    let data: Vec<u8> = ids
        .iter()
        .flat_map(|&id| i64::from(id).to_le_bytes())
        .collect();
    tensor::Tensor::new(&[ids.len() as u32], tensor::TensorType::I64, &data)
}

/// `[tokens held, context length]` from a compute's `context` output.
fn context(outputs: &[(String, tensor::Tensor)]) -> Result<(usize, usize), EdgeError> {
    match i64s(named(outputs, "context")?).as_slice() {
        [held, capacity] => Ok((*held as usize, *capacity as usize)),
        other => Err(EdgeError::Model(format!(
            "wasi-nn `context` output should be [held, capacity], is {other:?}"
        ))),
    }
}

/// The bytes of a GGUF file before its tensor data, read as if they were the whole file (of
/// `len` bytes), so `llm`'s header reader checks them as it checks a real file.
struct Header {
    bytes: Vec<u8>,
    len: u64,
    pos: u64,
}

impl Read for Header {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = (self.pos as usize).min(self.bytes.len());
        let n = buf.len().min(self.bytes.len() - start);
        buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Header {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

impl WasiNn {
    /// Opens graph `name` (`load-by-name`) and builds its tokenizer from its header.
    pub fn load(name: &str) -> Result<Self, EdgeError> {
        let graph = graph::load_by_name(name).map_err(|e| nn_error("load-by-name", e))?;
        let probe = graph
            .init_execution_context()
            .map_err(|e| nn_error("init-execution-context", e))?;
        let outputs = probe
            .compute(vec![(
                "header".to_string(),
                tensor::Tensor::new(&[0], tensor::TensorType::U8, &[]),
            )])
            .map_err(|e| nn_error("compute(header)", e))?;
        let bytes = named(&outputs, "header")?.data();
        let len = match i64s(named(&outputs, "file-length")?).as_slice() {
            [len] => *len as u64,
            _ => {
                return Err(EdgeError::Model(
                    "wasi-nn `file-length` should be one number".into(),
                ));
            }
        };
        let (_, capacity) = context(&outputs)?;
        let gguf = Gguf::read(&mut Header { bytes, len, pos: 0 }, name)?;
        Ok(WasiNn {
            graph,
            id: name.to_string(),
            tokenizer: gguf.tokenizer()?,
            template: ChatTemplate::for_model(&gguf).ok(),
            context: capacity,
        })
    }
}

impl Backend for WasiNn {
    type Sequence = NnSequence;

    fn model_id(&self) -> &str {
        &self.id
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    fn context_length(&self) -> usize {
        self.context
    }

    fn sequence(&self) -> Result<NnSequence, EdgeError> {
        let context = self
            .graph
            .init_execution_context()
            .map_err(|e| nn_error("init-execution-context", e))?;
        Ok(NnSequence { context, held: 0 })
    }
}

pub struct NnSequence {
    context: inference::GraphExecutionContext,
    held: usize,
}

impl Sequence for NnSequence {
    fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EdgeError> {
        debug_assert!(tokens.len() <= FEED_CHUNK);
        let outputs = self
            .context
            .compute(vec![("tokens".to_string(), ids_tensor(tokens))])
            .map_err(|e| nn_error("compute(tokens)", e))?;
        self.held = context(&outputs)?.0;
        let logits = named(&outputs, "logits")?.data();
        if !logits.len().is_multiple_of(4) {
            return Err(EdgeError::Model(format!(
                "wasi-nn `logits` has {} bytes, not a whole number of FP32 values",
                logits.len()
            )));
        }
        // Little-endian, as wasm32 is.
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&logits))
    }

    fn score_options(&mut self, options: &[Vec<u32>]) -> Result<Vec<f64>, EdgeError> {
        let flat: Vec<u32> = options.iter().flatten().copied().collect();
        let lengths: Vec<u8> = options
            .iter()
            .flat_map(|o| (o.len() as i64).to_le_bytes())
            .collect();
        let outputs = self
            .context
            .compute(vec![
                ("options".to_string(), ids_tensor(&flat)),
                (
                    "option-lengths".to_string(),
                    tensor::Tensor::new(&[options.len() as u32], tensor::TensorType::I64, &lengths),
                ),
            ])
            .map_err(|e| nn_error("compute(options)", e))?;
        Ok(named(&outputs, "scores")?
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }

    fn len(&self) -> usize {
        self.held
    }
}
