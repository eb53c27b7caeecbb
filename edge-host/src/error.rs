//! The host's error type: what can go wrong while setting up (manifest, variables, components,
//! models) and while serving one request.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("spin.toml: {0}")]
    Manifest(String),

    #[error("variable: {0}")]
    Variable(String),

    #[error("allowed_outbound_hosts: {0}")]
    OutboundHost(String),

    #[error("component `{id}` ({path}): {message}")]
    Component {
        id: String,
        path: PathBuf,
        message: String,
    },

    #[error("wasi-nn graph `{name}` ({path}): {source}")]
    Graph {
        name: String,
        path: PathBuf,
        #[source]
        source: Box<llm::Error>,
    },

    #[error("key-value store `{label}`: {message}")]
    KeyValue { label: String, message: String },

    #[error("wasmtime: {0}")]
    Wasmtime(String),
}

impl HostError {
    /// A wasmtime error with its whole chain of causes.
    pub fn wasmtime(err: &wasmtime::Error) -> Self {
        HostError::Wasmtime(format!("{err:#}"))
    }
}
