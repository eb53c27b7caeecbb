//! Running components: one wasmtime engine (Cranelift, the component model's async ABI, the
//! pooling allocator, epoch interruption), the linker with every interface the edge component
//! may import, and one fresh instance per request, as Spin does, so no request sees another's
//! memory.
//!
//! Per request: an instance from the pool (a fixed number of slots; a request that finds none
//! free waits for one, up to its deadline), a memory limit, an epoch deadline that traps a
//! component still running past the request's time limit (checked every tick of guest code,
//! between host calls), and WASI with no sockets and read-only mounts. A trap, a guest error
//! code or a host error becomes [`Failure`]; the server turns it into a 500 JSON error.

use crate::error::HostError;
use crate::keyvalue::{self, ComponentStores, PlatformView};
use crate::manifest::FileMount;
use crate::nn::Graphs;
use crate::outbound::AllowedHosts;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, UpdateDeadline, format_err,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

/// How often the epoch advances (the granularity of the time limit).
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits every request runs under.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest linear memory of one instance.
    pub max_memory_bytes: usize,
    /// Instances alive at once (the pool's slots).
    pub max_instances: u32,
    /// Wall-clock limit of one request, body included.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // The in-wasm build holds a 253 MB model in its own memory.
            max_memory_bytes: 1 << 30,
            max_instances: 8,
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// The shared engine and the epoch ticker.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    limits: Limits,
    slots: Arc<Semaphore>,
}

impl Runtime {
    pub fn new(limits: Limits) -> Result<Self, HostError> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = limits.max_instances.max(1);
        // A component is a few core instances (the program, and the shim and fix-up modules
        // `wit-component` adds, with their tables); one memory in practice.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 16)
            .max_core_instances_per_component(16)
            .total_memories(instances * 2)
            .max_memories_per_component(2)
            .total_tables(instances * 16)
            .max_tables_per_component(16)
            .total_stacks(instances * 4)
            .max_memory_size(limits.max_memory_bytes);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .wasm_component_model_async(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| HostError::wasmtime(&e))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|source| HostError::Io {
                what: "the epoch ticker thread".into(),
                source,
            })?;
        Ok(Runtime {
            engine,
            limits,
            slots: Arc::new(Semaphore::new(instances as usize)),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles `wasm` and links it against the host's interfaces.
    pub fn load(&self, id: &str, path: &std::path::Path) -> Result<Prepared, HostError> {
        let bad = |message: String| HostError::Component {
            id: id.to_string(),
            path: path.to_path_buf(),
            message,
        };
        let started = Instant::now();
        let component = Component::from_file(&self.engine, path).map_err(|e| {
            bad(format!(
                "cannot compile it ({e:#}); build it with `cargo xtask edge-fn [--release]`"
            ))
        })?;
        let mut linker = Linker::<Host>::new(&self.engine);
        link(&mut linker).map_err(|e| bad(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| bad(format!("cannot link it: {e:#}")))?;
        let pre = ServicePre::new(pre).map_err(|e| {
            bad(format!(
                "it does not export `wasi:http/handler@0.3.0` (a spin-sdk 7 `#[http_service]`): \
                 {e:#}"
            ))
        })?;
        tracing::info!(
            "component `{id}`: {} compiled in {:.2} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(Prepared { pre })
    }

    /// Serves one request with a fresh instance. Resolves when the response head is ready; the
    /// body then streams from the instance, which lives until the body is done.
    pub async fn serve(
        &self,
        prepared: &Prepared,
        setup: InstanceSetup,
        request: http::Request<http_body_util::Full<Bytes>>,
    ) -> Result<http::Response<ResponseBody>, Failure> {
        let deadline = Instant::now() + self.limits.request_timeout;
        let permit =
            tokio::time::timeout_at(deadline.into(), Arc::clone(&self.slots).acquire_owned())
                .await
                .map_err(|_| Failure::Busy)?
                .map_err(|_| Failure::Busy)?;
        let mut store = setup.store(&self.engine, &self.limits, deadline)?;
        let pre = prepared.pre.clone();
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, String>>(32);
        let timeout = self.limits.request_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let mut head_tx = Some(head_tx);
            let errors = body_tx.clone();
            let run = async {
                let service = pre.instantiate_async(&mut store).await?;
                let (request, _io) = wasmtime_wasi_http::p3::Request::from_http(
                    &mut store.data_mut().hooks,
                    request,
                );
                store
                    .run_concurrent(async |access| {
                        let response = match service.handle(access, request).await? {
                            Ok(response) => response,
                            Err(code) => {
                                return Err(format_err!(
                                    "the component answered with error code {code:?}"
                                ));
                            }
                        };
                        let response =
                            access.with(|store| response.into_http(store, async { Ok(()) }))?;
                        let (parts, mut body) = response.into_parts();
                        if let Some(tx) = head_tx.take() {
                            let _ = tx.send(Ok(parts));
                        }
                        while let Some(frame) = body.frame().await {
                            match frame.map(Frame::into_data) {
                                Ok(Ok(data)) => {
                                    if body_tx.send(Ok(data)).await.is_err() {
                                        // The client went away; stop the instance.
                                        break;
                                    }
                                }
                                Ok(Err(_trailers)) => {}
                                Err(e) => {
                                    return Err(format_err!("the response body failed: {e:?}"));
                                }
                            }
                        }
                        Ok(())
                    })
                    .await?
            };
            let result = tokio::time::timeout(timeout, run).await;
            let error = match result {
                Ok(Ok(())) => return,
                Ok(Err(e)) => Failure::Component(format!("{e:#}")),
                Err(_) => Failure::Timeout(timeout),
            };
            tracing::warn!("request failed: {error}");
            match head_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Err(error));
                }
                None => {
                    let _ = errors.send(Err(error.to_string())).await;
                }
            }
        });
        match tokio::time::timeout_at(deadline.into(), head_rx).await {
            Ok(Ok(Ok(parts))) => Ok(http::Response::from_parts(
                parts,
                ResponseBody { rx: body_rx },
            )),
            Ok(Ok(Err(failure))) => Err(failure),
            Ok(Err(_)) => Err(Failure::Component(
                "the instance ended without a response".into(),
            )),
            Err(_) => Err(Failure::Timeout(self.limits.request_timeout)),
        }
    }
}

/// The body of a component's response, as it streams out of the instance; an `Err` item is a
/// failure after the head was sent.
pub struct ResponseBody {
    rx: mpsc::Receiver<Result<Bytes, String>>,
}

impl ResponseBody {
    pub async fn next(&mut self) -> Option<Result<Bytes, String>> {
        self.rx.recv().await
    }
}

/// Why a request could not be served by its component.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error("the component failed: {0}")]
    Component(String),
    #[error("the request ran past its time limit of {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("every instance slot is busy; try again")]
    Busy,
    #[error("cannot set up the instance: {0}")]
    Setup(String),
}

/// A compiled, linked component.
#[derive(Clone)]
pub struct Prepared {
    pre: ServicePre<Host>,
}

/// What one component's instances get: mounts, environment, variables, stores, outbound hosts
/// and wasi-nn graphs.
#[derive(Clone)]
pub struct InstanceSetup {
    pub id: String,
    pub files: Vec<FileMount>,
    pub environment: BTreeMap<String, String>,
    pub variables: Arc<BTreeMap<String, String>>,
    pub stores: ComponentStores,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub graphs: Graphs,
}

impl InstanceSetup {
    fn store(
        &self,
        engine: &Engine,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<Store<Host>, Failure> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream {
            component: self.id.clone(),
            stderr: false,
        })
        .stderr(LogStream {
            component: self.id.clone(),
            stderr: true,
        })
        // The in-wasm build reads its model file in large pieces: read files on this thread.
        .allow_blocking_current_thread(true)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
        for (k, v) in &self.environment {
            wasi.env(k, v);
        }
        for mount in &self.files {
            wasi.preopened_dir(&mount.source, &mount.destination, FsPerms::ReadOnly)
                .map_err(|e| {
                    Failure::Setup(format!(
                        "cannot mount {} at {}: {e:#}",
                        mount.source.display(),
                        mount.destination
                    ))
                })?;
        }
        let host = Host {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: Outbound {
                allowed: Arc::clone(&self.allowed_hosts),
            },
            nn: self.graphs.context(),
            stores: self.stores.clone(),
            variables: Arc::clone(&self.variables),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.max_memory_bytes)
                .instances(64)
                .build(),
        };
        let mut store = Store::new(engine, host);
        store.limiter(|h| &mut h.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(format_err!(
                    "the component was still running at the request's time limit"
                ))
            } else {
                // Let other requests' tasks run between ticks of a busy guest.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }
}

/// The state of one instance's store.
pub struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Outbound,
    nn: wasmtime_wasi_nn::wit::WasiNnCtx,
    stores: ComponentStores,
    variables: Arc<BTreeMap<String, String>>,
    limits: StoreLimits,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Every interface a component may import: WASI P2 (what Rust's std uses on wasm32-wasip2),
/// WASI P3 and `wasi:http@0.3.0` (spin-sdk 7), `wasi:nn`, `wasi:keyvalue` and `wasi:config`.
fn link(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi::p3::add_to_linker(linker)?;
    wasmtime_wasi_http::p3::add_to_linker(linker)?;
    wasmtime_wasi_nn::wit::add_to_linker(linker, |h: &mut Host| {
        wasmtime_wasi_nn::wit::WasiNnView::new(&mut h.table, &mut h.nn)
    })?;
    keyvalue::add_to_linker(linker, |h: &mut Host| PlatformView {
        table: &mut h.table,
        stores: &h.stores,
        config: &h.variables,
    })?;
    Ok(())
}

/// Outbound HTTP: the allowed-hosts check, then wasmtime's default client.
struct Outbound {
    allowed: Arc<AllowedHosts>,
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        if let Err(why) = self.allowed.check(request.uri()) {
            tracing::warn!("{why}");
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(http_body_util::BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// A component's stdout/stderr, as log lines tagged with the component id.
#[derive(Clone)]
struct LogStream {
    component: String,
    stderr: bool,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LogWriter {
            component: self.component.clone(),
            stderr: self.stderr,
            line: Vec::new(),
        })
    }
}

struct LogWriter {
    component: String,
    stderr: bool,
    line: Vec<u8>,
}

impl LogWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end();
        if !text.is_empty() {
            if self.stderr {
                tracing::warn!(target: "component", "[{}] {text}", self.component);
            } else {
                tracing::info!(target: "component", "[{}] {text}", self.component);
            }
        }
        self.line.clear();
    }
}

impl tokio::io::AsyncWrite for LogWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else if self.line.len() < 16 * 1024 {
                self.line.push(b);
            }
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.emit();
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}
