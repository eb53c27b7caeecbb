//! The device's errors. In the browser each becomes a JavaScript `Error` whose message is the
//! text below, so the page can show it as it is.

use thiserror::Error;

pub type Result<T, E = DeviceError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum DeviceError {
    /// A setting the page sent is not acceptable.
    #[error("setting `{field}`: {message}")]
    Settings {
        field: &'static str,
        message: String,
    },
    /// The question the page sent is not acceptable.
    #[error("bad request: {0}")]
    Request(String),
    /// `ask` before `load` finished.
    #[error("the model is not loaded yet")]
    NotLoaded,
    /// One `ask` at a time: the page must wait for the answer or cancel it.
    #[error("an answer is still being generated; cancel it or wait for it")]
    Busy,
    /// The model file could not be downloaded.
    #[error("downloading the model from {url}: {message}")]
    Download { url: String, message: String },
    /// The model runtime failed (a bad GGUF, the context is full, ...).
    #[error("model: {0}")]
    Model(#[from] llm::Error),
    /// The GPU path could not be used (see the message).
    #[error("WebGPU: {0}")]
    Gpu(String),
    /// Confidence or policy bookkeeping refused a value.
    #[error("offload: {0}")]
    Offload(#[from] offload::OffloadError),
    /// Something the browser did failed (a JavaScript exception, as its text).
    #[error("browser: {0}")]
    Browser(String),
    #[error("JSON: {0}")]
    Json(String),
}

impl DeviceError {
    pub fn json(err: serde_json::Error) -> Self {
        DeviceError::Json(err.to_string())
    }
}
