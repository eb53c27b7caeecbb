//! The device's settings, as the page sets them: where the edge is, which policy decides (with
//! its β per tier), and how much to generate. Checked here, so the page can show a clear error
//! for a bad value; the policy itself is `offload`'s [`PolicySpec`], checked by building it.

use crate::error::{DeviceError, Result};
use offload::PolicySpec;
use serde::{Deserialize, Serialize};

/// Most tokens one answer may have.
pub const MAX_TOKENS_LIMIT: u32 = 2048;

/// Everything the page can change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The edge tier's base URL (`http://127.0.0.1:8081`); requests go to
    /// `{edge_url}/v1/chat/completions`. Empty: there is no edge and the device answers
    /// everything (its decisions then say that no tier above is up).
    pub edge_url: String,
    /// The policy that decides at the device and, sent along, at the edge. The default is
    /// RecServe with β = 0.3 per tier and k = 10 000, the paper's main setting.
    pub policy: PolicySpec,
    /// Most tokens per answer (device and upstream alike).
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy (the default, so answers are reproducible).
    pub temperature: f64,
    /// Seed of the sampler when `temperature > 0`.
    pub seed: u64,
    /// How long to wait for the edge (the whole answer), in milliseconds.
    pub edge_timeout_ms: u32,
    /// The instruction the device model gets when the conversation starts without a system
    /// message (SmolLM2's own default system message derails the 135M model on simple
    /// questions). Empty: the model's default. The tiers above get the conversation as it is.
    pub system_prompt: String,
    /// Run the model on WebGPU when the browser offers an adapter and the model's family has
    /// GPU kernels (checked at load; otherwise, and if the GPU fails, the CPU runs it).
    pub webgpu: bool,
}

/// Most characters in the system prompt.
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 4096;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            edge_url: String::new(),
            policy: PolicySpec::default(),
            max_tokens: 128,
            temperature: 0.0,
            seed: 0,
            edge_timeout_ms: 60_000,
            system_prompt: "You are a helpful assistant.".into(),
            webgpu: true,
        }
    }
}

impl Settings {
    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, message: String| DeviceError::Settings { field, message };
        self.policy
            .build()
            .map_err(|e| bad("policy", e.to_string()))?;
        if !(1..=MAX_TOKENS_LIMIT).contains(&self.max_tokens) {
            return Err(bad(
                "max_tokens",
                format!("must be between 1 and {MAX_TOKENS_LIMIT}"),
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(bad("temperature", "must be between 0 and 2".into()));
        }
        if self.edge_timeout_ms == 0 {
            return Err(bad("edge_timeout_ms", "must be at least 1".into()));
        }
        if self.system_prompt.chars().count() > MAX_SYSTEM_PROMPT_CHARS {
            return Err(bad(
                "system_prompt",
                format!("at most {MAX_SYSTEM_PROMPT_CHARS} characters"),
            ));
        }
        let url = self.edge_url.trim();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(
                "edge_url",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        Ok(())
    }

    /// These settings with the fields of `update` (a JSON object of some of them) replaced.
    /// Unknown fields and bad values are errors, and then nothing changes.
    pub fn merged(&self, update: &serde_json::Value) -> Result<Settings> {
        let serde_json::Value::Object(fields) = update else {
            return Err(DeviceError::Settings {
                field: "settings",
                message: "must be an object of the settings to change".into(),
            });
        };
        let mut current = serde_json::to_value(self).map_err(DeviceError::json)?;
        if let serde_json::Value::Object(map) = &mut current {
            for (k, v) in fields {
                map.insert(k.clone(), v.clone());
            }
        }
        let next: Settings =
            serde_json::from_value(current).map_err(|e| DeviceError::Settings {
                field: "settings",
                message: e.to_string(),
            })?;
        next.validate()?;
        Ok(next)
    }

    /// The chat-completions URL of the edge, if there is one.
    pub fn edge_endpoint(&self) -> Option<String> {
        let url = self.edge_url.trim().trim_end_matches('/');
        (!url.is_empty()).then(|| format!("{url}/v1/chat/completions"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use offload::policy::{PerTier, PolicyKind};
    use serde_json::json;

    #[test]
    fn defaults_are_valid_and_follow_the_paper() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.policy.name(), "recserve");
        assert_eq!(s.edge_endpoint(), None);
    }

    #[test]
    fn updates_merge_field_by_field() {
        let s = Settings::default()
            .merged(&json!({
                "edge_url": "http://127.0.0.1:9/",
                "policy": {"name": "recserve", "beta": {"device": 1.0, "edge": 0.5}, "k": 100}
            }))
            .unwrap();
        assert_eq!(
            s.edge_endpoint().as_deref(),
            Some("http://127.0.0.1:9/v1/chat/completions")
        );
        assert_eq!(
            s.policy.kind,
            PolicyKind::RecServe {
                beta: PerTier {
                    device: 1.0,
                    edge: 0.5
                },
                k: 100
            }
        );
        assert_eq!(s.max_tokens, Settings::default().max_tokens);
    }

    #[test]
    fn bad_values_name_their_field_and_change_nothing() {
        let s = Settings::default();
        for (update, field) in [
            (
                json!({"policy": {"name": "recserve", "beta": 1.5}}),
                "policy",
            ),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"temperature": -1}), "temperature"),
            (json!({"edge_url": "ftp://x"}), "edge_url"),
            (json!({"colour": "red"}), "settings"),
            (json!([1]), "settings"),
        ] {
            match s.merged(&update) {
                Err(DeviceError::Settings { field: f, .. }) => assert_eq!(f, field, "{update}"),
                other => panic!("{update}: {other:?}"),
            }
        }
    }
}
