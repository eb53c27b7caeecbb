//! Application variables as Spin resolves them: a value given on the command line
//! (`--var name=value`) wins over the environment (`SPIN_VARIABLE_NAME`), which wins over the
//! manifest's `default`; a `required` variable without a value stops the host at startup.
//! Component variables are templates over these, and what a component reads through
//! `wasi:config/store`.

use crate::error::HostError;
use crate::manifest::{Manifest, render};
use std::collections::BTreeMap;

/// Resolved application variables.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

impl Variables {
    /// Resolves every variable of `manifest` from `overrides` (command line), `env` (the
    /// process environment as `(key, value)` pairs) and the defaults.
    pub fn resolve(
        manifest: &Manifest,
        overrides: &[(String, String)],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, HostError> {
        for (name, _) in overrides {
            if !manifest.variables.contains_key(name) {
                return Err(HostError::Variable(format!(
                    "`--var {name}=…` sets a variable the manifest does not declare in \
                     [variables] (declared: {})",
                    manifest
                        .variables
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SPIN_VARIABLE_"))
            .collect();
        let mut values = BTreeMap::new();
        for (name, decl) in &manifest.variables {
            let from_env = env.get(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()));
            let value = overrides
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .or_else(|| from_env.cloned())
                .or_else(|| decl.default.clone());
            match value {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None if decl.required => {
                    return Err(HostError::Variable(format!(
                        "`{name}` is required: pass `--var {name}=VALUE` or set \
                         SPIN_VARIABLE_{}",
                        name.to_ascii_uppercase()
                    )));
                }
                None => {}
            }
        }
        Ok(Variables { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Renders a template such as `"{{ cloud_url }}/v1"`.
    pub fn render(&self, template: &str) -> Result<String, HostError> {
        render(template, |name| self.values.get(name).cloned()).map_err(HostError::Variable)
    }

    /// A component's variables, rendered.
    pub fn component(
        &self,
        templates: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, HostError> {
        templates
            .iter()
            .map(|(k, t)| Ok((k.clone(), self.render(t)?)))
            .collect()
    }
}

/// Parses `name=value` (the `--var` argument).
pub fn parse_assignment(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {arg:?}"))?;
    Ok((name.trim().to_string(), value.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest() -> Manifest {
        Manifest::parse(
            r#"
spin_manifest_version = 2
[variables]
cloud_url = { default = "http://127.0.0.1:9" }
token = { required = true }
other = {}
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
[component.c.variables]
url = "{{ cloud_url }}/v1"
"#,
            Path::new("."),
        )
        .unwrap()
    }

    #[test]
    fn command_line_beats_environment_beats_default() {
        let m = manifest();
        let env = vec![
            ("SPIN_VARIABLE_TOKEN".to_string(), "from-env".to_string()),
            (
                "SPIN_VARIABLE_CLOUD_URL".to_string(),
                "http://env".to_string(),
            ),
        ];
        let v = Variables::resolve(&m, &[], env.clone()).unwrap();
        assert_eq!(v.get("cloud_url"), Some("http://env"));
        assert_eq!(v.get("other"), None);
        let over = vec![("cloud_url".to_string(), "http://cli".to_string())];
        let v = Variables::resolve(&m, &over, env).unwrap();
        assert_eq!(v.get("cloud_url"), Some("http://cli"));
        assert_eq!(v.get("token"), Some("from-env"));
        let c = v.component(&m.components["c"].variables).unwrap();
        assert_eq!(c["url"], "http://cli/v1");
    }

    #[test]
    fn missing_required_and_unknown_overrides_fail() {
        let m = manifest();
        let err = Variables::resolve(&m, &[], vec![]).unwrap_err().to_string();
        assert!(err.contains("SPIN_VARIABLE_TOKEN"), "{err}");
        let over = vec![("nope".to_string(), "x".to_string())];
        let err = Variables::resolve(&m, &over, vec![])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        assert!(parse_assignment("novalue").is_err());
        assert_eq!(
            parse_assignment("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
    }
}
