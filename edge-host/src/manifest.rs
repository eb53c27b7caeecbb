//! Reading a Spin application manifest (`spin.toml`, `spin_manifest_version = 2`): the subset
//! `edge-host` serves, with an error that names the key for everything else.
//!
//! Served: `[application]`, `[variables]` (with `default`, `required`, `secret`), HTTP triggers
//! (`route = "/path"` or `"/prefix/..."`, `component = "id"`), and per component `source` (a
//! local `.wasm` path), `files` (directories, as `"dir"` or `{ source, destination }`),
//! `allowed_outbound_hosts`, `key_value_stores`, `environment` and `[component.ID.variables]`
//! (templates over the application variables, `{{ name }}`). Relative paths are relative to the
//! manifest's directory, as in Spin.

use crate::error::HostError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The parsed manifest, paths resolved against its directory.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// `[application].name`.
    pub name: String,
    /// The manifest's directory.
    pub dir: PathBuf,
    /// `[variables]`: application variables and how they may be set.
    pub variables: BTreeMap<String, VariableDecl>,
    /// HTTP routes, in manifest order.
    pub routes: Vec<Route>,
    /// Components by id.
    pub components: BTreeMap<String, ComponentDecl>,
}

/// One application variable.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// A route of an HTTP trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `/v1/chat` (exact) or `/v1` with `wildcard` (for `/v1/...`).
    pub path: String,
    pub wildcard: bool,
    pub component: String,
}

impl Route {
    fn parse(route: &str, component: String) -> Result<Self, HostError> {
        let bad = |why: &str| HostError::Manifest(format!("trigger route {route:?}: {why}"));
        if !route.starts_with('/') {
            return Err(bad("a route starts with `/`"));
        }
        let (path, wildcard) = match route.strip_suffix("/...") {
            Some(prefix) => (prefix, true),
            None if route.contains("...") => {
                return Err(bad(
                    "`...` is only allowed as the last segment, `/prefix/...`",
                ));
            }
            None => (route, false),
        };
        let path = path.trim_end_matches('/');
        Ok(Route {
            path: if path.is_empty() { "/" } else { path }.to_string(),
            wildcard,
            component,
        })
    }

    /// How specifically this route matches `path` (longer is more specific), or `None`.
    fn matches(&self, path: &str) -> Option<usize> {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if self.wildcard {
            let prefix = self.path.trim_end_matches('/');
            let hit = prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'));
            // An exact route beats any wildcard of the same length.
            hit.then_some(prefix.len() * 2)
        } else {
            (path == self.path).then_some(self.path.len() * 2 + 1)
        }
    }
}

/// A directory mounted into a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub source: PathBuf,
    /// Absolute guest path, e.g. `/models`.
    pub destination: String,
}

/// One `[component.ID]`.
#[derive(Debug, Clone)]
pub struct ComponentDecl {
    pub id: String,
    /// The component's `.wasm` file.
    pub source: PathBuf,
    pub files: Vec<FileMount>,
    /// Patterns such as `http://127.0.0.1:8080`, `https://*.example.com`, `http://{{ host }}:*`
    /// (templates are expanded when the application's variables are resolved).
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value store labels the component may open (`default` is the default store).
    pub key_value_stores: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// Component variables: templates over the application variables.
    pub variables: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    #[serde(default)]
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize, Default)]
struct RawApplication {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, Default)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: toml::Value,
    component: toml::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    allowed_http_hosts: Option<toml::Value>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// `spin build` settings; not used when serving.
    #[serde(default)]
    build: Option<toml::Value>,
    /// Settings for other tools; Spin ignores them, and so do we.
    #[serde(default)]
    tool: Option<toml::Value>,
    #[serde(default)]
    dependencies: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawFile {
    Pattern(String),
    Mapping { source: String, destination: String },
}

impl Manifest {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, HostError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostError::Io {
            what: format!("manifest {}", path.display()),
            source,
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        Self::parse(&text, &dir)
    }

    /// Parses manifest text whose relative paths are relative to `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Self, HostError> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| HostError::Manifest(format!("not a valid spin.toml: {e}")))?;
        if raw.spin_manifest_version.as_integer() != Some(2)
            && raw.spin_manifest_version.as_str() != Some("2")
        {
            return Err(HostError::Manifest(
                "only `spin_manifest_version = 2` is supported".into(),
            ));
        }
        if let Some(kind) = raw.trigger.other.keys().next() {
            return Err(HostError::Manifest(format!(
                "trigger type `{kind}` is not supported; edge-host serves `[[trigger.http]]` only"
            )));
        }
        for name in raw.variables.keys() {
            check_variable_name(name)?;
        }
        let mut components = BTreeMap::new();
        for (id, c) in raw.component {
            components.insert(id.clone(), ComponentDecl::from_raw(id, c, dir)?);
        }
        let mut routes = Vec::new();
        for t in raw.trigger.http {
            let component = match &t.component {
                toml::Value::String(id) => id.clone(),
                _ => {
                    return Err(HostError::Manifest(
                        "a trigger's `component` must name a `[component.ID]` (inline components \
                         are not supported)"
                            .into(),
                    ));
                }
            };
            if !components.contains_key(&component) {
                return Err(HostError::Manifest(format!(
                    "a trigger names component `{component}`, which the manifest does not define"
                )));
            }
            match &t.route {
                toml::Value::String(route) => routes.push(Route::parse(route, component)?),
                // `route = { private = true }`: reachable only by other components; nothing to
                // serve.
                toml::Value::Table(t)
                    if t.get("private").and_then(toml::Value::as_bool) == Some(true) => {}
                other => {
                    return Err(HostError::Manifest(format!(
                        "unsupported trigger route {other:?}; use a path such as \"/...\""
                    )));
                }
            }
        }
        if routes.is_empty() {
            return Err(HostError::Manifest(
                "the manifest has no `[[trigger.http]]` route to serve".into(),
            ));
        }
        Ok(Manifest {
            name: raw.application.name,
            dir: dir.to_path_buf(),
            variables: raw.variables,
            routes,
            components,
        })
    }

    /// The route that serves `path`: the most specific match (exact before wildcard, longer
    /// before shorter).
    pub fn route(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .filter_map(|r| r.matches(path).map(|score| (score, r)))
            .max_by_key(|(score, _)| *score)
            .map(|(_, r)| r)
    }
}

fn check_variable_name(name: &str) -> Result<(), HostError> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(HostError::Manifest(format!(
            "variable name {name:?} is invalid: Spin variables are lower-case letters, digits and \
             `_`, starting with a letter"
        )))
    }
}

impl ComponentDecl {
    fn from_raw(id: String, c: RawComponent, dir: &Path) -> Result<Self, HostError> {
        let bad = |why: String| HostError::Manifest(format!("component `{id}`: {why}"));
        let source = match &c.source {
            toml::Value::String(path) => dir.join(path),
            _ => {
                return Err(bad(
                    "`source` must be a local .wasm path (URL and registry sources are not \
                     supported)"
                        .into(),
                ));
            }
        };
        if c.allowed_http_hosts.is_some() {
            return Err(bad(
                "`allowed_http_hosts` is the old name; use `allowed_outbound_hosts`".into(),
            ));
        }
        for (key, list) in [
            ("sqlite_databases", &c.sqlite_databases),
            ("ai_models", &c.ai_models),
        ] {
            if !list.is_empty() {
                return Err(bad(format!("`{key}` is not supported by edge-host")));
            }
        }
        if c.dependencies.is_some() {
            return Err(bad(
                "component `dependencies` are not supported by edge-host".into(),
            ));
        }
        if !c.exclude_files.is_empty() {
            return Err(bad(
                "`exclude_files` is not supported; mount directories instead".into(),
            ));
        }
        let _ = (&c.description, &c.build, &c.tool);
        let mut files = Vec::new();
        for f in c.files {
            let (source, destination) = match f {
                RawFile::Pattern(p) => {
                    if p.contains(['*', '?', '[']) {
                        return Err(bad(format!(
                            "file pattern {p:?}: glob patterns are not supported; name a \
                             directory, or use {{ source, destination }}"
                        )));
                    }
                    let guest = format!("/{}", p.trim_start_matches("./").trim_matches('/'));
                    (dir.join(&p), guest)
                }
                RawFile::Mapping {
                    source,
                    destination,
                } => (dir.join(source), destination),
            };
            if !destination.starts_with('/') {
                return Err(bad(format!(
                    "file destination {destination:?} must be an absolute guest path"
                )));
            }
            files.push(FileMount {
                source,
                destination,
            });
        }
        for name in c.variables.keys() {
            check_variable_name(name).map_err(|e| bad(e.to_string()))?;
        }
        Ok(ComponentDecl {
            id,
            source,
            files,
            allowed_outbound_hosts: c.allowed_outbound_hosts,
            key_value_stores: c.key_value_stores,
            environment: c.environment,
            variables: c.variables,
        })
    }
}

/// Expands `{{ name }}` in `template` with `lookup(name)`.
pub fn render(
    template: &str,
    mut lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in {template:?}"))?;
        let name = after[..end].trim();
        let value = lookup(name).ok_or_else(|| {
            format!("{template:?} refers to variable `{name}`, which has no value")
        })?;
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "app"
[variables]
cloud_url = { default = "http://127.0.0.1:9" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "edge"
[[trigger.http]]
route = "/v1/models"
component = "other"
[component.edge]
source = "edge.wasm"
files = ["static", { source = "models", destination = "/models" }]
allowed_outbound_hosts = ["{{ cloud_url }}"]
key_value_stores = ["default"]
[component.edge.variables]
cloud_url = "{{ cloud_url }}"
[component.edge.build]
command = "cargo build"
[component.other]
source = "/abs/other.wasm"
"#;

    #[test]
    fn reads_the_served_subset() {
        let m = Manifest::parse(APP, Path::new("/app")).unwrap();
        assert_eq!(m.name, "app");
        let edge = &m.components["edge"];
        assert_eq!(edge.source, Path::new("/app/edge.wasm"));
        assert_eq!(m.components["other"].source, Path::new("/abs/other.wasm"));
        assert_eq!(
            edge.files,
            vec![
                FileMount {
                    source: "/app/static".into(),
                    destination: "/static".into()
                },
                FileMount {
                    source: "/app/models".into(),
                    destination: "/models".into()
                }
            ]
        );
        assert!(m.variables["token"].required);
        assert_eq!(edge.key_value_stores, ["default"]);
    }

    #[test]
    fn routes_pick_the_most_specific() {
        let m = Manifest::parse(APP, Path::new("/app")).unwrap();
        assert_eq!(m.route("/v1/models").unwrap().component, "other");
        assert_eq!(m.route("/v1/models/").unwrap().component, "other");
        assert_eq!(m.route("/v1/chat/completions").unwrap().component, "edge");
        assert_eq!(m.route("/").unwrap().component, "edge");
        let only = Route::parse("/api/...", "c".into()).unwrap();
        assert!(only.matches("/api").is_some());
        assert!(only.matches("/api/x/y").is_some());
        assert!(only.matches("/apix").is_none());
    }

    #[test]
    fn unsupported_parts_are_named() {
        let cases = [
            ("spin_manifest_version = 1", "version = 2"),
            (
                "spin_manifest_version = 2\n[[trigger.redis]]\ncomponent = \"c\"\nchannel = \"x\"",
                "redis",
            ),
            (
                "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"missing\"",
                "missing",
            ),
            (
                "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = { url = \"https://x\", digest = \"d\" }",
                "local .wasm",
            ),
            (
                "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\nfiles = [\"*.txt\"]",
                "glob",
            ),
        ];
        for (text, needle) in cases {
            let err = Manifest::parse(text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn templates_expand_and_fail_clearly() {
        let vars = |n: &str| (n == "host").then(|| "127.0.0.1".to_string());
        assert_eq!(
            render("http://{{ host }}:8080", vars).unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(render("{{ nope }}", vars).unwrap_err().contains("nope"));
        assert!(render("{{ host", vars).unwrap_err().contains("unclosed"));
    }
}
