//! A wasmtime host that serves the `edge-fn` component from its `spin.toml` the way `spin up`
//! does, plus what Spin does not have: `wasi:nn` with a GGUF backend built on `llm`.
//!
//! Up the request path: browsers (`wasm-device`) and OpenAI clients over HTTP; down: the
//! component (`edge-fn`), which calls back into this host for inference (`wasi:nn`), its state
//! (`wasi:keyvalue`), its settings (`wasi:config`) and outbound HTTP to `cloud-host`.
//!
//! - [`manifest`] reads `spin.toml`; [`variables`] resolves its variables (`--var`,
//!   `SPIN_VARIABLE_*`, defaults).
//! - [`runtime`] runs components: one fresh pooled instance per request, with a memory limit,
//!   an epoch deadline and no sockets; [`server`] is the HTTP front (routes, CORS, body limit).
//! - [`nn`] is the wasi-nn GGUF backend and its named graphs; [`keyvalue`] the persistent
//!   key-value stores and `wasi:config`; [`outbound`] the enforced `allowed_outbound_hosts`.

pub mod error;
pub mod keyvalue;
pub mod manifest;
pub mod nn;
pub mod outbound;
pub mod runtime;
pub mod server;
pub mod variables;

pub use error::HostError;

use manifest::{FileMount, Manifest};
use nn::{GraphSpec, Graphs};
use outbound::{AllowedHosts, HostPattern};
use runtime::{InstanceSetup, Runtime};
use server::{App, Served};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use variables::Variables;

/// How to serve an application.
#[derive(Debug, Clone)]
pub struct Options {
    /// The application's `spin.toml`.
    pub manifest: PathBuf,
    /// Application variables set on the command line (`--var name=value`).
    pub variables: Vec<(String, String)>,
    /// Mounts that replace or add to the manifest's `files` (by guest path).
    pub dirs: Vec<FileMount>,
    /// wasi-nn graphs to load.
    pub graphs: Vec<GraphSpec>,
    /// Kernel threads per graph (default: `llm`'s, every core or `$LADDER_THREADS`).
    pub threads: Option<usize>,
    /// Context cap per graph, in tokens.
    pub context: Option<usize>,
    /// Where the key-value stores are persisted (default: `.spin` beside the manifest).
    pub state_dir: Option<PathBuf>,
    /// Origins allowed to call cross-origin (`*` for any).
    pub cors_origins: Vec<String>,
    pub limits: runtime::Limits,
    pub max_body_bytes: usize,
}

impl Options {
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Options {
            manifest: manifest.into(),
            variables: Vec::new(),
            dirs: Vec::new(),
            graphs: Vec::new(),
            threads: None,
            context: None,
            state_dir: None,
            cors_origins: Vec::new(),
            limits: runtime::Limits::default(),
            max_body_bytes: offload::wire::Limits::default().max_body_bytes,
        }
    }
}

/// A loaded application, ready to serve.
pub struct Application {
    app: Arc<App>,
    cors_origins: Vec<String>,
}

impl Application {
    /// Reads the manifest, resolves variables, opens the key-value stores, loads the graphs and
    /// compiles every component. Everything that can be wrong is reported here, before the host
    /// listens.
    pub fn load(options: &Options) -> Result<Self, HostError> {
        let manifest = Manifest::load(&options.manifest)?;
        let variables = Variables::resolve(&manifest, &options.variables, std::env::vars())?;
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| manifest.dir.join(".spin"));
        let labels: Vec<&str> = manifest
            .components
            .values()
            .flat_map(|c| c.key_value_stores.iter().map(String::as_str))
            .collect();
        let stores = keyvalue::KeyValueStores::open(&state_dir.join("key-value"), labels)?;
        let graphs = Graphs::load(&options.graphs, options.threads, options.context)?;
        let runtime = Runtime::new(options.limits.clone())?;
        let mut components = HashMap::new();
        let used: std::collections::BTreeSet<&str> = manifest
            .routes
            .iter()
            .map(|r| r.component.as_str())
            .collect();
        for (id, decl) in &manifest.components {
            if !used.contains(id.as_str()) {
                continue;
            }
            let mut files = decl.files.clone();
            for dir in &options.dirs {
                files.retain(|f| f.destination != dir.destination);
                files.push(dir.clone());
            }
            for f in &files {
                if !f.source.is_dir() {
                    return Err(HostError::Manifest(format!(
                        "component `{id}` mounts {} at {}, which is not a directory (mount \
                         another one with --dir HOST::{})",
                        f.source.display(),
                        f.destination,
                        f.destination
                    )));
                }
            }
            let allowed = decl
                .allowed_outbound_hosts
                .iter()
                .map(|p| HostPattern::parse(&variables.render(p)?))
                .collect::<Result<Vec<_>, _>>()?;
            let setup = InstanceSetup {
                id: id.clone(),
                files,
                environment: decl.environment.clone(),
                variables: Arc::new(variables.component(&decl.variables)?),
                stores: stores.for_component(&decl.key_value_stores),
                allowed_hosts: Arc::new(AllowedHosts::new(allowed)),
                graphs: graphs.clone(),
            };
            let prepared = runtime.load(id, &decl.source)?;
            components.insert(id.clone(), Served { prepared, setup });
        }
        Ok(Application {
            app: Arc::new(App {
                manifest,
                components,
                runtime,
                max_body_bytes: options.max_body_bytes,
            }),
            cors_origins: options.cors_origins.clone(),
        })
    }

    /// Binds `addr` and serves until the process ends; `on_bound` gets the bound address
    /// (which `127.0.0.1:0` makes known only now).
    pub async fn serve(
        self,
        addr: SocketAddr,
        on_bound: impl FnOnce(SocketAddr),
    ) -> Result<(), HostError> {
        let router = server::router(Arc::clone(&self.app), &self.cors_origins)
            .map_err(HostError::Manifest)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HostError::Io {
                what: format!("listening address {addr}"),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| HostError::Io {
            what: "the bound address".into(),
            source,
        })?;
        on_bound(bound);
        // Without TCP_NODELAY a response written in two pieces (head, then body) waits for
        // the client's delayed ACK: 40 ms on every request.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .map_err(|source| HostError::Io {
            what: "the HTTP server".into(),
            source,
        })
    }
}
