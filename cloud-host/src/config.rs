//! The host's configuration: a TOML file, overridden by command-line flags (see `main.rs`).
//! Every field has a default, so an empty file (or none) is a valid configuration.

use offload::PolicySpec;
use offload::wire::Limits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where to listen. Port 0 picks a free port (printed at start).
    pub addr: SocketAddr,
    /// The GGUF to serve. Default: the largest GGUF in the model cache's `models.json`
    /// (what `cargo xtask models` fetched).
    pub model: Option<PathBuf>,
    /// The model's id in responses and `/v1/models`. Default: the id `models.json` gives the
    /// file, else the file name without `.gguf`.
    pub model_id: Option<String>,
    /// Kernel threads. Default: `$LADDER_THREADS`, else every core.
    pub threads: Option<usize>,
    /// Cap on the context window, in tokens. Default: the model's trained context.
    pub context: Option<usize>,
    /// Sequences decoded together in one batched step.
    pub max_batch: usize,
    /// Requests that may wait for a free batch slot; past it the host answers 429.
    pub max_queue: usize,
    /// Prompt tokens processed per batched step (long prompts are split so that sequences
    /// already decoding are not stalled behind them).
    pub prefill_chunk: usize,
    /// Tokens of finished sequences' KV caches kept for reuse by prompts that start the same
    /// way (0 turns prefix reuse off).
    pub prefix_cache_tokens: usize,
    /// `max_tokens` when a request does not set it (capped by the context left).
    pub default_max_tokens: u32,
    /// A request's whole time limit; a generation still running then ends with
    /// `finish_reason: "length"`.
    pub request_timeout_secs: u64,
    /// On shutdown, in-flight requests get this long to finish before they are ended.
    pub shutdown_grace_secs: u64,
    /// Body, message, character and output-token limits (checked before any model work).
    pub limits: Limits,
    /// Bearer tokens accepted on `/v1/*`; empty means no authentication. Also read from
    /// `$LADDER_API_KEYS` (comma-separated).
    pub api_keys: Vec<String>,
    /// Origins allowed to call the API from a browser (CORS); empty means none.
    pub cors_origins: Vec<String>,
    /// The policy named in this tier's hop records when a request names none, and the window
    /// size of this tier's confidence record. The top tier always answers.
    pub policy: PolicySpec,
    /// Forward to an existing OpenAI-compatible engine instead of running a model.
    pub upstream: Option<UpstreamConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL of the engine, e.g. `http://127.0.0.1:8081` (its `/v1/...` routes are used).
    pub url: String,
    /// Bearer token for the engine. Also read from `$LADDER_UPSTREAM_API_KEY`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The model name to ask the engine for. Default: the first one its `/v1/models` lists.
    #[serde(default)]
    pub model: Option<String>,
    /// Time limit to connect to the engine.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_connect_timeout() -> u64 {
    10
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            model: None,
            model_id: None,
            threads: None,
            context: None,
            max_batch: 16,
            max_queue: 64,
            prefill_chunk: 256,
            prefix_cache_tokens: 4096,
            default_max_tokens: 512,
            request_timeout_secs: 600,
            shutdown_grace_secs: 30,
            limits: Limits::default(),
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            policy: PolicySpec::default(),
            upstream: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("could not read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid configuration: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field} {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error(
        "no model to serve: pass --model PATH.gguf, set `model` in the configuration, run \
         `cargo xtask models` to fetch the default models, or use --upstream URL"
    )]
    NoModel,
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks the settings that have no sensible meaning out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |field: &'static str, value: usize| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    field,
                    problem: "must be at least 1".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("max_batch", self.max_batch)?;
        positive("prefill_chunk", self.prefill_chunk)?;
        positive("default_max_tokens", self.default_max_tokens as usize)?;
        positive("request_timeout_secs", self.request_timeout_secs as usize)?;
        positive("limits.max_body_bytes", self.limits.max_body_bytes)?;
        positive("limits.max_tokens", self.limits.max_tokens as usize)?;
        if let Some(threads) = self.threads {
            positive("threads", threads)?;
        }
        self.policy.build().map_err(|e| ConfigError::Invalid {
            field: "policy",
            problem: e.to_string(),
        })?;
        if let Some(up) = &self.upstream
            && !(up.url.starts_with("http://") || up.url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                field: "upstream.url",
                problem: format!("must start with http:// or https://, got {:?}", up.url),
            });
        }
        Ok(())
    }
}

/// The default model: the largest GGUF that `models.json` in the model cache lists, with its id.
pub fn default_model() -> Result<(PathBuf, String), ConfigError> {
    let dir = std::env::var_os("LADDER_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("ladder").join("models"))
        })
        .ok_or(ConfigError::NoModel)?;
    let text =
        std::fs::read_to_string(dir.join("models.json")).map_err(|_| ConfigError::NoModel)?;
    #[derive(Deserialize)]
    struct Manifest {
        models: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        id: String,
        files: Vec<File>,
    }
    #[derive(Deserialize)]
    struct File {
        path: PathBuf,
        bytes: u64,
    }
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
        path: dir.join("models.json"),
        message: e.to_string(),
    })?;
    manifest
        .models
        .into_iter()
        .flat_map(|m| {
            let id = m.id;
            m.files.into_iter().map(move |f| (f, id.clone()))
        })
        .filter(|(f, _)| f.path.extension().is_some_and(|e| e == "gguf") && f.path.exists())
        .max_by_key(|(f, _)| f.bytes)
        .map(|(f, id)| (f.path, id))
        .ok_or(ConfigError::NoModel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_configuration() {
        let config: Config = toml::from_str("").expect("empty TOML");
        assert_eq!(config, Config::default());
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("max_bacth = 3").is_err());
        let config: Config = toml::from_str("max_batch = 0").expect("parses");
        let err = config.validate().expect_err("zero batch");
        assert!(err.to_string().contains("max_batch"), "{err}");
        let config: Config = toml::from_str("[upstream]\nurl = \"localhost:80\"").expect("parses");
        assert!(config.validate().is_err());
    }

    #[test]
    fn the_example_file_is_the_default_configuration() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloud-host.example.toml");
        let config = Config::from_file(&path).expect("the example parses");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn nested_tables_parse() {
        let config: Config = toml::from_str(
            r#"
            addr = "127.0.0.1:9000"
            api_keys = ["k1"]
            [limits]
            max_tokens = 64
            [policy]
            name = "recserve"
            beta = 0.5
            k = 100
            "#,
        )
        .expect("parses");
        assert_eq!(config.limits.max_tokens, 64);
        assert_eq!(config.policy.window_size(), Some(100));
        assert_eq!(config.addr.port(), 9000);
    }
}
