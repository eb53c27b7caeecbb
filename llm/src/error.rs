//! The crate's one error type. Every message says what went wrong and what to do next.

use std::path::PathBuf;

/// Everything that can go wrong in the `llm` crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model file could not be opened or read.
    #[error(
        "cannot read model file {path}: {source}; check the path (models live under ~/.cache/ladder/models/ or $LADDER_MODELS)"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file does not start with the GGUF magic.
    #[error("{what} is not a GGUF file ({detail}); pass a .gguf model file")]
    NotGguf { what: String, detail: String },

    /// The file ends before its header or its tensor data does.
    #[error(
        "{what} is truncated: {detail}; the download was probably cut off, fetch the model again"
    )]
    Truncated { what: String, detail: String },

    /// The GGUF header is malformed in some other way.
    #[error(
        "{what} has an invalid GGUF header: {detail}; the file is corrupt or written by an incompatible tool, fetch or convert it again"
    )]
    InvalidGguf { what: String, detail: String },

    /// A tensor uses a ggml quantisation type this runtime cannot read.
    #[error(
        "{what} uses ggml quantisation type {ggml_type}, which is not supported; use a GGUF quantised as F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 or a K-quant (Q2_K..Q6_K)"
    )]
    UnsupportedQuantization { what: String, ggml_type: String },

    /// `general.architecture` names a model family this runtime does not implement.
    #[error(
        "model architecture `{architecture}` is not supported; supported architectures: {supported}"
    )]
    UnknownArchitecture {
        architecture: String,
        supported: &'static str,
    },

    /// A metadata key the model needs is absent.
    #[error("GGUF metadata key `{key}` is missing; {hint}")]
    MissingMetadata { key: String, hint: &'static str },

    /// A metadata key has a value of the wrong type or out of range.
    #[error(
        "GGUF metadata key `{key}` is invalid: {detail}; the file was written by an incompatible converter, convert the model again"
    )]
    InvalidMetadata { key: String, detail: String },

    /// `tokenizer.ggml.model` names a vocabulary type this runtime does not implement.
    #[error(
        "tokenizer model `{model}` is not supported; supported: `gpt2` (byte-level BPE) and `llama` (SentencePiece)"
    )]
    UnsupportedTokenizer { model: String },

    /// `tokenizer.ggml.pre` names a BPE pre-tokenizer this runtime does not implement.
    #[error("BPE pre-tokenizer `{pre}` is not supported; supported: {supported}")]
    UnsupportedPreTokenizer {
        pre: String,
        supported: &'static str,
    },

    /// The vocabulary in the metadata is inconsistent.
    #[error(
        "invalid tokenizer vocabulary: {detail}; convert the model again with a current llama.cpp"
    )]
    InvalidVocab { detail: String },

    /// The GGUF's chat template is of a family this runtime does not render.
    #[error(
        "chat template starting {template_start:?} is not supported (supported: {supported}); send a completion-style prompt instead"
    )]
    UnsupportedChatTemplate {
        template_start: String,
        supported: &'static str,
    },

    /// The model has no chat template and its architecture implies none.
    #[error(
        "the `{architecture}` model has no chat template in its GGUF; send a completion-style prompt instead"
    )]
    NoChatTemplate { architecture: String },

    /// A token id is outside the vocabulary.
    #[error(
        "token id {id} is out of range for a vocabulary of {vocab_size} tokens; pass ids produced by this model's tokenizer"
    )]
    TokenOutOfRange { id: u32, vocab_size: usize },

    /// The model's forward pass failed inside candle.
    #[error(
        "model computation failed: {0}; this is a bug or an unsupported tensor layout, please report it with the model file's name"
    )]
    Compute(#[from] candle_core::Error),

    /// A tensor the model family needs is absent from the file.
    #[error(
        "the model file has no tensor `{name}`, which a {architecture} model needs; the file is incomplete or of another family, convert it again"
    )]
    MissingTensor {
        name: String,
        architecture: &'static str,
    },

    /// A tensor's shape or layout disagrees with the model's metadata.
    #[error(
        "tensor `{name}` is {found}, but the metadata implies {expected}; the file is inconsistent, convert it again"
    )]
    TensorShape {
        name: String,
        expected: String,
        found: String,
    },

    /// A sequence would outgrow the model's context.
    #[error(
        "the sequence needs {needed} tokens but the model's context holds {context}; shorten the prompt or lower max_tokens"
    )]
    ContextFull { needed: usize, context: usize },

    /// There was nothing to feed the model.
    #[error("the prompt encoded to no tokens; send some text")]
    EmptyInput,

    /// A batched step mixed sessions of different models.
    #[error("a batched step got sessions of different models; batch sessions of one model only")]
    MixedModels,

    /// A batched step was given a different number of tokens than sequences.
    #[error(
        "a batched step got {tokens} token lists for {sessions} sequences; pass one per sequence"
    )]
    BatchMismatch { sessions: usize, tokens: usize },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
