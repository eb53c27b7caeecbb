//! The tier's settings, from the component's variables (`[component.edge.variables]` in
//! `spin.toml`, read through `wasi:config/store`).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `model` | `gemma-3-270m-q4_k_m` | the model's id; in the wasi-nn build also the graph name for `load-by-name` |
//! | `model_file` | `/models/gemma-3-270m-q4_k_m.gguf` | in the `in-wasm` build: the GGUF file inside the component's file system |
//! | `context` | `4096` | in the `in-wasm` build: most tokens of context |
//! | `cloud_url` | (none) | where to offload, e.g. `http://127.0.0.1:8081`; empty: this is the top reachable tier |
//! | `cloud_timeout_ms` | `30000` | how long to wait for the cloud's answer (its response head when streaming) before answering locally |
//! | `policy` | RecServe, β = 0.3, k = 10000 | the default policy as JSON (`{"name": "recserve", "beta": 0.3, "k": 1000}`); a request's `offload.policy` overrides it |
//! | `max_tokens` | `256` | output tokens when a request does not say |
//! | `kv_store` | `default` | the key-value store label that holds the windows |

use crate::error::EdgeError;
use offload::PolicySpec;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub model: String,
    pub model_file: String,
    pub context: usize,
    pub cloud_url: Option<String>,
    pub cloud_timeout: Duration,
    pub policy: PolicySpec,
    pub max_tokens: u32,
    pub kv_store: String,
}

impl Settings {
    /// Settings from a variable lookup (`None`: not set).
    pub fn from_lookup(mut get: impl FnMut(&str) -> Option<String>) -> Result<Self, EdgeError> {
        let mut text = |name: &str, default: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let number = |name: &str, value: String| {
            value.parse::<u64>().map_err(|_| {
                EdgeError::Config(format!(
                    "variable `{name}` must be a whole number, is {value:?}"
                ))
            })
        };
        let model = text("model", "gemma-3-270m-q4_k_m");
        let model_file = text("model_file", "/models/gemma-3-270m-q4_k_m.gguf");
        let context = number("context", text("context", "4096"))? as usize;
        let cloud_url = Some(text("cloud_url", ""))
            .filter(|u| !u.is_empty())
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(url) = &cloud_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(EdgeError::Config(format!(
                "variable `cloud_url` must be an http:// or https:// URL, is {url:?}"
            )));
        }
        let cloud_timeout = Duration::from_millis(number(
            "cloud_timeout_ms",
            text("cloud_timeout_ms", "30000"),
        )?);
        let policy_text = text("policy", "");
        let policy = if policy_text.is_empty() {
            PolicySpec::default()
        } else {
            let spec: PolicySpec = serde_json::from_str(&policy_text).map_err(|e| {
                EdgeError::Config(format!("variable `policy` is not a policy: {e}"))
            })?;
            spec.build()
                .map_err(|e| EdgeError::Config(format!("variable `policy`: {e}")))?;
            spec
        };
        let max_tokens = number("max_tokens", text("max_tokens", "256"))?.clamp(1, 4096) as u32;
        let kv_store = text("kv_store", "default");
        Ok(Settings {
            model,
            model_file,
            context,
            cloud_url,
            cloud_timeout,
            policy,
            max_tokens,
            kv_store,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s.model, "gemma-3-270m-q4_k_m");
        assert!(s.cloud_url.is_none());
        assert_eq!(s.policy.name(), "recserve");
        let s = Settings::from_lookup(|k| match k {
            "cloud_url" => Some("http://127.0.0.1:9/".into()),
            "policy" => Some(r#"{"name": "casserve", "thresholds": 0.2}"#.into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.cloud_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(s.policy.name(), "casserve");
    }

    #[test]
    fn bad_values_are_named() {
        for (k, v) in [
            ("cloud_url", "ftp://x"),
            ("cloud_timeout_ms", "soon"),
            ("policy", "{\"name\": \"recserve\", \"beta\": 7}"),
        ] {
            let err = Settings::from_lookup(|n| (n == k).then(|| v.to_string())).unwrap_err();
            assert!(err.to_string().contains(k), "{err}");
        }
    }
}
