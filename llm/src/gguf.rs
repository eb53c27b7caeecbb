//! Reading GGUF files: the header (metadata and tensor table) through candle's
//! `quantized::gguf_file`, with the checks and messages a user needs when a file is cut off,
//! of an unknown family, or lacks the keys the runtime depends on.
//!
//! Only the header is read here; tensor data is read later, by the model loader, from the
//! same reader. [`Gguf::open`] works where a file system exists (native, wasip2);
//! [`Gguf::read`] takes any `Read + Seek`, e.g. a `Cursor` over bytes fetched in a browser.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Model families whose GGUF files this runtime reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// `llama`: Llama 1-3, SmolLM2, TinyLlama, Mistral-style dense models.
    Llama,
    /// `gemma3`: Gemma 3 text models.
    Gemma3,
    /// `qwen2`: Qwen 2 / 2.5 dense models.
    Qwen2,
}

impl Architecture {
    /// The `general.architecture` names accepted, for error messages.
    pub const SUPPORTED: &'static str = "llama, gemma3, qwen2";

    /// Parses a `general.architecture` value.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "llama" => Ok(Self::Llama),
            "gemma3" => Ok(Self::Gemma3),
            "qwen2" => Ok(Self::Qwen2),
            other => Err(Error::UnknownArchitecture {
                architecture: other.to_string(),
                supported: Self::SUPPORTED,
            }),
        }
    }

    /// The name used in GGUF keys (`{name}.block_count`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Gemma3 => "gemma3",
            Self::Qwen2 => "qwen2",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The header of a GGUF file: metadata key/values and the tensor table, checked against the
/// file's length.
#[derive(Debug)]
pub struct Gguf {
    content: Content,
    file_len: u64,
    what: String,
}

impl Gguf {
    /// Opens `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        // The header is read in many small pieces (every vocabulary entry is a few): buffer
        // them, or each is a system call natively and a host call in WebAssembly.
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        Self::read(&mut reader, &path.display().to_string())
    }

    /// Reads a GGUF header from an in-memory copy of the whole file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::read(&mut std::io::Cursor::new(bytes), "in-memory GGUF")
    }

    /// Reads a GGUF header from `reader`, which must cover the whole file (its tensor data is
    /// checked to fit). `what` names the source in error messages, e.g. the file's path.
    pub fn read<R: Read + Seek>(reader: &mut R, what: &str) -> Result<Self> {
        let file_len = reader
            .seek(std::io::SeekFrom::End(0))
            .and_then(|len| reader.rewind().map(|()| len))
            .map_err(|source| Error::Io {
                path: what.into(),
                source,
            })?;
        let content = Content::read(reader).map_err(|e| classify_read_error(&e, what))?;
        let gguf = Self {
            content,
            file_len,
            what: what.to_string(),
        };
        gguf.check_tensor_data_fits()?;
        Ok(gguf)
    }

    fn check_tensor_data_fits(&self) -> Result<()> {
        // A file without tensors (a vocabulary-only GGUF) may end before the aligned start
        // of its empty data section.
        let mut needed = 0;
        let mut last = None;
        for (name, info) in &self.content.tensor_infos {
            let end = self
                .content
                .tensor_data_offset
                .checked_add(info.offset)
                .and_then(|start| start.checked_add(tensor_bytes(info)?))
                .ok_or_else(|| Error::InvalidGguf {
                    what: self.what.clone(),
                    detail: format!("tensor `{name}` has an offset or size that overflows"),
                })?;
            if end > needed {
                needed = end;
                last = Some(name.as_str());
            }
        }
        if needed > self.file_len {
            return Err(Error::Truncated {
                what: self.what.clone(),
                detail: format!(
                    "it has {} bytes but its tensor data (up to tensor `{}`) needs {needed}",
                    self.file_len,
                    last.unwrap_or("?"),
                ),
            });
        }
        Ok(())
    }

    /// The parsed header, for the model loader.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// All metadata key/values.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// The tensor table.
    pub fn tensor_infos(&self) -> &HashMap<String, TensorInfo> {
        &self.content.tensor_infos
    }

    /// The file's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The model family, from `general.architecture`.
    pub fn architecture(&self) -> Result<Architecture> {
        let name = require_str(self.metadata(), "general.architecture", ARCH_HINT)?;
        Architecture::from_name(name)
    }

    /// The Jinja chat template the file ships (`tokenizer.chat_template`), if any.
    pub fn chat_template(&self) -> Option<&str> {
        match self.metadata().get("tokenizer.chat_template") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Builds the tokenizer described by the `tokenizer.ggml.*` keys.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::from_gguf_metadata(self.metadata())
    }
}

const ARCH_HINT: &str =
    "every model GGUF names its family there; the file is not a model or was converted wrongly";

/// Bytes a tensor occupies in the file.
fn tensor_bytes(info: &TensorInfo) -> Option<u64> {
    let dtype = info.ggml_dtype;
    let blocks = info.shape.elem_count().div_ceil(dtype.block_size());
    u64::try_from(blocks)
        .ok()?
        .checked_mul(u64::try_from(dtype.type_size()).ok()?)
}

/// Turns candle's header-reading error into ours. candle reports everything as one error type
/// with a message; truncation shows up as an I/O end-of-file or a "remaining" bounds message.
fn classify_read_error(err: &candle_core::Error, what: &str) -> Error {
    let detail = innermost(err).to_string();
    let what = what.to_string();
    if is_eof(err) || detail.contains("remaining") {
        Error::Truncated {
            what,
            detail: format!("its header ends early ({detail})"),
        }
    } else if detail.contains("unknown magic") {
        Error::NotGguf { what, detail }
    } else if let Some(ggml_type) = detail.strip_prefix("unknown dtype for tensor ") {
        Error::UnsupportedQuantization {
            what,
            ggml_type: ggml_type.trim().to_string(),
        }
    } else {
        Error::InvalidGguf { what, detail }
    }
}

fn innermost(err: &candle_core::Error) -> &candle_core::Error {
    use candle_core::Error as E;
    match err {
        E::WithBacktrace { inner, .. } | E::Context { inner, .. } | E::WithPath { inner, .. } => {
            innermost(inner)
        }
        other => other,
    }
}

fn is_eof(err: &candle_core::Error) -> bool {
    matches!(innermost(err), candle_core::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
}

// --- typed metadata access -------------------------------------------------------------------
// GGUF writers differ in the integer widths they use for the same key, so numeric getters
// accept any integer type whose value fits.

pub(crate) fn get_str<'a>(meta: &'a HashMap<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong_type(key, "a string", v)),
    }
}

pub(crate) fn require_str<'a>(
    meta: &'a HashMap<String, Value>,
    key: &str,
    hint: &'static str,
) -> Result<&'a str> {
    get_str(meta, key)?.ok_or_else(|| Error::MissingMetadata {
        key: key.to_string(),
        hint,
    })
}

pub(crate) fn get_u32(meta: &HashMap<String, Value>, key: &str) -> Result<Option<u32>> {
    let Some(v) = meta.get(key) else {
        return Ok(None);
    };
    let n: Option<u64> = match *v {
        Value::U8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => return Err(wrong_type(key, "an unsigned integer", v)),
    };
    n.and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| Error::InvalidMetadata {
            key: key.to_string(),
            detail: format!("{v:?} does not fit in a u32"),
        })
}

pub(crate) fn get_f32(meta: &HashMap<String, Value>, key: &str) -> Result<Option<f32>> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::F32(x)) => Ok(Some(*x)),
        Some(Value::F64(x)) => Ok(Some(*x as f32)),
        Some(v) => Err(wrong_type(key, "a float", v)),
    }
}

pub(crate) fn get_bool(meta: &HashMap<String, Value>, key: &str) -> Result<Option<bool>> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong_type(key, "a bool", v)),
    }
}

pub(crate) fn get_array<'a>(
    meta: &'a HashMap<String, Value>,
    key: &str,
) -> Result<Option<&'a [Value]>> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(wrong_type(key, "an array", v)),
    }
}

pub(crate) fn wrong_type(key: &str, expected: &str, found: &Value) -> Error {
    Error::InvalidMetadata {
        key: key.to_string(),
        detail: format!("expected {expected}, found {:?}", found.value_type()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;

    fn write_gguf(meta: &[(&str, Value)]) -> Vec<u8> {
        let mut buf = std::io::Cursor::new(Vec::new());
        let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        gguf_file::write(&mut buf, &meta, &[]).expect("writing to a Vec cannot fail");
        buf.into_inner()
    }

    #[test]
    fn reads_architecture() {
        let bytes = write_gguf(&[("general.architecture", Value::String("gemma3".into()))]);
        let g = Gguf::from_bytes(&bytes).expect("valid gguf");
        assert_eq!(g.architecture().expect("known"), Architecture::Gemma3);
    }

    #[test]
    fn unknown_architecture_is_named() {
        let bytes = write_gguf(&[("general.architecture", Value::String("mamba".into()))]);
        let g = Gguf::from_bytes(&bytes).expect("valid gguf");
        let err = g.architecture().expect_err("mamba is not supported");
        assert!(matches!(err, Error::UnknownArchitecture { .. }), "{err}");
        assert!(err.to_string().contains("mamba"));
        assert!(err.to_string().contains("llama, gemma3, qwen2"));
    }

    #[test]
    fn missing_architecture() {
        let bytes = write_gguf(&[]);
        let g = Gguf::from_bytes(&bytes).expect("valid gguf");
        let err = g.architecture().expect_err("no key");
        assert!(
            matches!(err, Error::MissingMetadata { ref key, .. } if key == "general.architecture")
        );
    }

    #[test]
    fn truncated_header_is_reported_as_truncated() {
        let bytes = write_gguf(&[
            ("general.architecture", Value::String("llama".into())),
            (
                "general.name",
                Value::String("a fairly long model name".into()),
            ),
        ]);
        for cut in [6, 20, 40, bytes.len() / 2] {
            let err = Gguf::from_bytes(&bytes[..cut]).expect_err("cut file");
            assert!(
                matches!(err, Error::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn truncated_tensor_data_is_reported_as_truncated() {
        use candle_core::quantized::{GgmlDType, QTensor};
        use candle_core::{DType, Device, Tensor};
        let t = Tensor::zeros((4, 64), DType::F32, &Device::Cpu).expect("cpu tensor");
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).expect("quantize");
        let mut buf = std::io::Cursor::new(Vec::new());
        let arch = Value::String("llama".into());
        gguf_file::write(&mut buf, &[("general.architecture", &arch)], &[("w", &q)])
            .expect("writing to a Vec cannot fail");
        let bytes = buf.into_inner();
        let whole = Gguf::from_bytes(&bytes).expect("complete file");
        assert_eq!(whole.tensor_infos().len(), 1);
        // 4 x 64 Q8_0 values: 8 blocks of 34 bytes. (The writer pads the file after them.)
        let end = whole.content().tensor_data_offset as usize + 8 * 34;
        assert!(end <= bytes.len());
        let err = Gguf::from_bytes(&bytes[..end - 1]).expect_err("one byte short");
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("tensor `w`"), "{err}");
    }

    #[test]
    fn not_a_gguf() {
        let err = Gguf::from_bytes(b"PK\x03\x04 this is a zip file, not a model").expect_err("zip");
        assert!(matches!(err, Error::NotGguf { .. }), "{err}");
    }

    #[test]
    fn wrong_metadata_type() {
        let bytes = write_gguf(&[("general.architecture", Value::U32(7))]);
        let g = Gguf::from_bytes(&bytes).expect("valid gguf");
        let err = g.architecture().expect_err("u32 architecture");
        assert!(matches!(err, Error::InvalidMetadata { .. }), "{err}");
    }

    #[test]
    fn integer_widths_are_accepted() {
        let mut meta = HashMap::new();
        meta.insert("a".to_string(), Value::U8(3));
        meta.insert("b".to_string(), Value::I32(-1));
        meta.insert("c".to_string(), Value::U64(u64::from(u32::MAX) + 1));
        assert_eq!(get_u32(&meta, "a").expect("fits"), Some(3));
        assert!(get_u32(&meta, "b").is_err());
        assert!(get_u32(&meta, "c").is_err());
        assert_eq!(get_u32(&meta, "d").expect("absent is fine"), None);
    }
}
