//! The component's entry point (`#[http_service]`, `wasi:http/handler@0.3.0`) and its platform:
//! variables through `wasi:config`, windows through `wasi:keyvalue` with compare-and-swap, and
//! the cloud through outbound `wasi:http`.
//!
//! Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health` (answers without
//! touching the model: what the host's per-request overhead is measured with).

use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::{atomics, store as kv};
use crate::error::EdgeError;
use crate::settings::Settings;
use crate::tier::{self, Edge, EventSink};
use crate::upstream::{Body, Reply, Upstream};
use crate::windows::{Update, WindowStore};
use bytes::Bytes;
use futures::SinkExt as _;
use http_body_util::BodyExt as _;
use offload::wire::{ErrorResponse, ModelInfo, ModelList};
use spin_sdk::http::body::IncomingBodyExt as _;
use spin_sdk::http::{BoxBody, Request, box_body};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Response = http::Response<BoxBody>;

fn json<T: serde::Serialize>(status: u16, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"message":"cannot encode the answer: {e}","type":"server_error","param":null,"code":null}}}}"#)
            .into_bytes()
    });
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(box_body(http_body_util::Full::new(Bytes::from(body))))
        .unwrap_or_else(|_| http::Response::new(box_body(http_body_util::Empty::new())))
}

fn error(e: &EdgeError) -> Response {
    json(e.status(), &e.to_response())
}

#[spin_sdk::http_service]
async fn handle(request: Request) -> Response {
    let path = request.uri().path().trim_end_matches('/').to_string();
    let method = request.method().clone();
    match (method.as_str(), path.as_str()) {
        ("POST", "/v1/chat/completions") => chat(request).await,
        ("GET", "/v1/models") => match settings() {
            Ok(s) => json(
                200,
                &ModelList::new(vec![ModelInfo::new(s.model, 0, "ladder-edge")]),
            ),
            Err(e) => error(&e),
        },
        ("GET", "/health") | ("GET", "") => json(200, &serde_json::json!({"status": "ok"})),
        (_, "/v1/chat/completions" | "/v1/models" | "/health") => json(
            405,
            &ErrorResponse::invalid_request(format!("{method} is not allowed on {path}"), None)
                .with_code("method_not_allowed"),
        ),
        _ => json(
            404,
            &ErrorResponse::not_found(format!(
                "the edge tier serves POST /v1/chat/completions and GET /v1/models, not {method} {path}"
            )),
        ),
    }
}

fn settings() -> Result<Settings, EdgeError> {
    Settings::from_lookup(|key| config::get(key).ok().flatten())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(not(feature = "in-wasm"))]
fn backend(settings: &Settings) -> Result<crate::backend::wasi_nn::WasiNn, EdgeError> {
    crate::backend::wasi_nn::WasiNn::load(&settings.model)
}

#[cfg(feature = "in-wasm")]
fn backend(settings: &Settings) -> Result<crate::backend::local::Local, EdgeError> {
    crate::backend::local::Local::load(
        &settings.model_file,
        &settings.model,
        Some(settings.context),
    )
}

async fn chat(request: Request) -> Response {
    let received = Instant::now();
    let body = match request.into_body().bytes().await {
        Ok(body) => body,
        Err(e) => {
            return json(
                400,
                &ErrorResponse::invalid_request(format!("cannot read the body: {e:?}"), None),
            );
        }
    };
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let incoming = match tier::parse(&body, &settings, received, unix_now()) {
        Ok(i) => i,
        Err(e) => return error(&e),
    };
    let mut store = match KvStore::open(&settings.kv_store) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    if !incoming.request.stream {
        let mut edge = Edge {
            settings: &settings,
            store: &mut store,
            upstream: &SpinUpstream,
        };
        return match edge.respond(|| backend(&settings), &incoming).await {
            Ok(response) => json(200, &response),
            Err(e) => error(&e),
        };
    }
    let (tx, body) = spin_sdk::http::body::stream::<String>();
    spin_sdk::wasip3::spawn(async move {
        let mut sink = Channel(tx);
        let mut edge = Edge {
            settings: &settings,
            store: &mut store,
            upstream: &SpinUpstream,
        };
        if let Err(e) = edge
            .respond_stream(|| backend(&settings), &incoming, &mut sink)
            .await
        {
            eprintln!("edge: streamed request failed: {e}");
            sink.send(tier::error_event(&e)).await;
        }
    });
    http::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(box_body(body))
        .unwrap_or_else(|_| http::Response::new(box_body(http_body_util::Empty::new())))
}

/// The SSE body's sender.
struct Channel(futures::channel::mpsc::Sender<String>);

impl EventSink for Channel {
    async fn send(&mut self, event: String) -> bool {
        self.0.send(event).await.is_ok()
    }
}

/// The windows' store: `wasi:keyvalue` with compare-and-swap where the runtime has it, plain
/// get/set where it does not.
struct KvStore {
    bucket: kv::Bucket,
}

fn kv_error(e: kv::Error) -> EdgeError {
    EdgeError::Store(match e {
        kv::Error::NoSuchStore => "no such store".into(),
        kv::Error::AccessDenied => {
            "access denied: list the store in the component's key_value_stores".into()
        }
        kv::Error::Other(m) => m,
    })
}

impl KvStore {
    fn open(label: &str) -> Result<Self, EdgeError> {
        Ok(KvStore {
            bucket: kv::open(label).map_err(kv_error)?,
        })
    }
}

/// Tries of a compare-and-swap before giving up.
const CAS_TRIES: usize = 16;

impl WindowStore for KvStore {
    fn update<T>(&mut self, key: &str, update: &mut Update<'_, T>) -> Result<T, EdgeError> {
        let Ok(mut cas) = atomics::Cas::new(&self.bucket, key) else {
            let current = self.bucket.get(key).map_err(kv_error)?;
            let (value, out) = update(current.as_deref())?;
            self.bucket.set(key, &value).map_err(kv_error)?;
            return Ok(out);
        };
        for _ in 0..CAS_TRIES {
            let current = cas.current().map_err(kv_error)?;
            let (value, out) = update(current.as_deref())?;
            match atomics::swap(cas, &value) {
                Ok(()) => return Ok(out),
                Err(atomics::CasError::CasFailed(next)) => cas = next,
                Err(atomics::CasError::StoreError(e)) => return Err(kv_error(e)),
            }
        }
        Err(EdgeError::Store(format!(
            "`{key}` kept changing under concurrent requests ({CAS_TRIES} tries)"
        )))
    }
}

/// Outbound `wasi:http` to the cloud.
struct SpinUpstream;

struct SpinBody(spin_sdk::http::Response);

impl Body for SpinBody {
    async fn next(&mut self) -> Option<Result<Vec<u8>, String>> {
        loop {
            match self.0.body_mut().frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data.to_vec()));
                    }
                }
                Err(e) => return Some(Err(format!("{e:?}"))),
            }
        }
    }
}

impl Upstream for SpinUpstream {
    type Body = SpinBody;

    async fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply<SpinBody>, String> {
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request to {url}: {e}"))?;
        match self.within(timeout, spin_sdk::http::send(request)).await {
            None => Err(format!(
                "no answer from {url} within {} ms",
                timeout.as_millis()
            )),
            Some(Err(code)) => Err(format!("cannot reach {url}: {code:?}")),
            Some(Ok(response)) => Ok(Reply {
                status: response.status().as_u16(),
                body: SpinBody(response),
            }),
        }
    }

    async fn within<T>(&self, timeout: Duration, future: impl Future<Output = T>) -> Option<T> {
        let future = std::pin::pin!(future);
        let timer = std::pin::pin!(spin_sdk::time::sleep(timeout));
        match futures::future::select(future, timer).await {
            futures::future::Either::Left((value, _)) => Some(value),
            futures::future::Either::Right(_) => None,
        }
    }
}
