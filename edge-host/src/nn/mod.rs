//! `wasi:nn` for the components: the GGUF backend ([`gguf`]) and the named graphs the host was
//! started with (`load-by-name`). The WIT glue is `wasmtime-wasi-nn`'s.

pub mod gguf;

use crate::error::HostError;
use gguf::{GgufBackend, GgufGraph};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime_wasi_nn::wit::WasiNnCtx;
use wasmtime_wasi_nn::{Backend, Graph, GraphRegistry, Registry};

/// A graph to load at startup: `NAME=PATH` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSpec {
    pub name: String,
    pub path: PathBuf,
}

impl std::str::FromStr for GraphSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, path) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PATH.gguf, got {s:?}"))?;
        if name.is_empty() || path.is_empty() {
            return Err(format!("expected NAME=PATH.gguf, got {s:?}"));
        }
        Ok(GraphSpec {
            name: name.to_string(),
            path: PathBuf::from(path),
        })
    }
}

/// The loaded graphs, shared by every request.
#[derive(Clone, Default)]
pub struct Graphs {
    graphs: Arc<HashMap<String, Graph>>,
    models: Arc<HashMap<String, llm::Model>>,
}

impl Graphs {
    /// Loads every graph (memory-mapped GGUF files) with `threads` kernel threads each and a
    /// context of at most `context` tokens.
    pub fn load(
        specs: &[GraphSpec],
        threads: Option<usize>,
        context: Option<usize>,
    ) -> Result<Self, HostError> {
        let mut graphs = HashMap::new();
        let mut models = HashMap::new();
        for spec in specs {
            let options = llm::models::ModelOptions {
                threads,
                context,
                ..Default::default()
            };
            let graph_error = |source| HostError::Graph {
                name: spec.name.clone(),
                path: spec.path.clone(),
                source: Box::new(source),
            };
            let model = llm::Model::load_with(&spec.path, &options).map_err(graph_error)?;
            tracing::info!(
                "wasi-nn graph `{}`: {} ({:?}, context {}, {} threads)",
                spec.name,
                spec.path.display(),
                model.architecture(),
                model.context_length(),
                model.threads()
            );
            let header = gguf::Header::read(&spec.path).map_err(graph_error)?;
            let backend_graph: Box<dyn wasmtime_wasi_nn::backend::BackendGraph> =
                Box::new(GgufGraph::new(model.clone(), header));
            graphs.insert(spec.name.clone(), Graph::from(backend_graph));
            models.insert(spec.name.clone(), model);
        }
        Ok(Graphs {
            graphs: Arc::new(graphs),
            models: Arc::new(models),
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.graphs.keys().map(String::as_str)
    }

    /// The model behind a graph (for benchmarks that compare against it natively).
    pub fn model(&self, name: &str) -> Option<&llm::Model> {
        self.models.get(name)
    }

    /// The wasi-nn state of one request's store.
    pub fn context(&self) -> WasiNnCtx {
        WasiNnCtx::new(
            [Backend::from(GgufBackend)],
            Registry::from(SharedRegistry(Arc::clone(&self.graphs))),
        )
    }
}

/// `load-by-name` over the graphs loaded at startup.
struct SharedRegistry(Arc<HashMap<String, Graph>>);

impl GraphRegistry for SharedRegistry {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }

    fn get_mut(&mut self, _name: &str) -> Option<&mut Graph> {
        // Graphs are shared by all requests and never changed by one.
        None
    }
}
