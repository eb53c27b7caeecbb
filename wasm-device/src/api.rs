//! The JavaScript API (wasm-bindgen): one [`Device`] per page (or worker), with `load`, `ask`,
//! `cancel`, `settings`, `stats`, `reset` and `bench`. Objects cross the boundary as JSON with
//! the field names of the Rust types (snake case, as on the wire); the TypeScript section
//! below types them in the generated `.d.ts`.

use crate::browser::{self, js_error};
use crate::download;
use crate::engine::{Backend, DeviceModel};
use crate::error::{DeviceError, Result};
use crate::ladder::{
    self, AskEvent, AskRequest, AskResult, DeviceAnswer, Source, UpstreamAnswer, UpstreamReader,
};
use crate::settings::Settings;
use crate::stats::{self, Stats};
use crate::store;
use js_sys::{Function, Promise};
use llm::SamplingParams;
use offload::policy::{RouteInput, decide};
use offload::wire::{ErrorResponse, HopOutcome, LinkBytes, OffloadResponse};
use offload::{
    Confidence, Decision, PerplexityAccumulator, Reason, Route, TaskType, Tier, TierSet,
};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{AbortController, Headers, Request, RequestInit};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Roles and texts of a conversation, oldest first, ending with the user's message. */
export interface AskRequest {
  messages: { role: "system" | "user" | "assistant"; content: string }[];
  request_id?: string;
  max_tokens?: number;
}

/** offload's PolicySpec, e.g. {name: "recserve", beta: {device: 0.3, edge: 0.3}, k: 10000}. */
export type PolicySpec =
  | { name: "recserve"; beta?: number | { device: number; edge: number }; k?: number; skip_unavailable?: boolean }
  | { name: "casserve"; thresholds: number | { device: number; edge: number }; skip_unavailable?: boolean }
  | { name: "colserve"; probability: number | { device: number; edge: number }; seed?: number; skip_unavailable?: boolean }
  | { name: "endserve" | "edgeserve" | "cloudserve"; skip_unavailable?: boolean };

export interface Settings {
  /** The edge's base URL; empty: the device answers everything. */
  edge_url: string;
  policy: PolicySpec;
  max_tokens: number;
  temperature: number;
  seed: number;
  edge_timeout_ms: number;
  /** The device model's instruction when the conversation has none; empty: the model's own. */
  system_prompt: string;
  /** Run the model on WebGPU where there is an adapter (applies at the next load). */
  webgpu: boolean;
}

export type Tier = "device" | "edge" | "cloud";

/** offload's HopRecord: one tier's part in an answer. */
export interface HopRecord {
  tier: Tier;
  model: string;
  outcome: "answered" | "offloaded" | "forwarded" | "fallback" | "failed";
  confidence?: number;
  threshold?: number;
  policy?: string;
  decision?: { action: "answer" | "offload"; to?: Tier; reason: { kind: string; [k: string]: unknown } };
  error?: string;
  bytes?: { sent: number; received: number };
  tokens?: { prompt: number; completion: number };
  timings?: { queue_ms?: number; prefill_ms?: number; decode_ms?: number; first_token_ms?: number; upstream_ms?: number; total_ms?: number };
}

export interface OffloadResponse { answered_by: Tier; hops: HopRecord[]; request_id?: string }

export type AskEvent =
  | { type: "started"; prompt_tokens: number; cached_tokens: number }
  | { type: "token"; source: "device" | "upstream"; text: string }
  | { type: "decision"; hop: HopRecord }
  | { type: "upstream"; url: string }
  | { type: "fallback"; error: string }
  | { type: "backend"; backend: "cpu" | "webgpu"; note: string };

export interface AskResult {
  text: string;
  answered_by: Tier;
  device_text: string;
  finish_reason: "stop" | "length" | "cancelled";
  offload: OffloadResponse;
  bytes: { sent: number; received: number };
  latency_ms: number;
  note?: string;
}

export interface Progress { loaded: number; total: number | null; source: "network" | "cache" }

export interface ModelInfo {
  name: string; architecture: string; context: number; bytes: number;
  source: "network" | "cache"; cache_error: string | null; load_ms: number; kernels: string; threads: number;
  backend: "webgpu" | "cpu"; adapter: string | null; backend_note: string | null;
}

/** The WebGPU path against the CPU path on one prompt (both fed the CPU's greedy tokens). */
export interface Comparison {
  adapter: string; cpu_tokens: number[]; gpu_tokens: number[]; cpu_text: string;
  max_abs_gap: number; max_rel_gap: number;
  disagreements: { step: number; cpu_margin: number; gap: number }[];
}

export interface TierStats { seen: number; offloaded: number; answered: number; last_confidence: number | null; last_threshold: number | null }

export interface Snapshot {
  stats: { device: TierStats; edge: TierStats; cloud: TierStats; bytes: { sent: number; received: number }; fallbacks: number };
  offload_rate: { device: number | null; edge: number | null; cloud: number | null };
  device_threshold: number | null;
  device_window_len: number;
  policy: PolicySpec;
}

export interface BenchResult { backend: "cpu" | "webgpu"; prompt_tokens: number; decode_tokens: number; prefill_ms: number; decode_ms: number; prefill_tok_s: number; decode_tok_s: number }
"#;

/// The key of the persisted state in IndexedDB.
const STATE_KEY: &str = "device-state-v1";

/// What is persisted: the windows (the policy's memory) and the panel's counts.
#[derive(Default, Serialize, Deserialize)]
struct Persisted {
    windows: offload::Windows,
    stats: Stats,
}

struct State {
    settings: Settings,
    windows: offload::Windows,
    stats: Stats,
}

struct Inner {
    state: RefCell<State>,
    engine: RefCell<Option<DeviceModel>>,
    cancelled: Cell<bool>,
    abort: RefCell<Option<AbortController>>,
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue> {
    let json = serde_json::to_string(value).map_err(DeviceError::json)?;
    js_sys::JSON::parse(&json).map_err(js_error)
}

fn from_js(value: &JsValue) -> Result<serde_json::Value> {
    if value.is_undefined() || value.is_null() {
        return Ok(serde_json::Value::Null);
    }
    let json: String = js_sys::JSON::stringify(value).map_err(js_error)?.into();
    serde_json::from_str(&json).map_err(DeviceError::json)
}

fn js_err(err: DeviceError) -> JsValue {
    js_sys::Error::new(&err.to_string()).into()
}

fn promise<F, T>(future: F) -> Promise
where
    F: Future<Output = Result<T>> + 'static,
    T: Serialize,
{
    future_to_promise(async move {
        let value = future.await.map_err(js_err)?;
        to_js(&value).map_err(js_err)
    })
}

/// The device tier of one page.
#[wasm_bindgen]
pub struct Device {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl Device {
    /// A device with the windows and counts this browser kept from earlier visits.
    pub async fn open() -> std::result::Result<Device, JsError> {
        let persisted: Persisted = match store::get(STATE_KEY).await {
            Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_default(),
            _ => Persisted::default(),
        };
        let settings = Settings::default();
        let mut windows = persisted.windows;
        if let Some(k) = settings.policy.window_size() {
            windows
                .set_capacity(k)
                .map_err(|e| JsError::new(&e.to_string()))?;
        }
        Ok(Device {
            inner: Rc::new(Inner {
                state: RefCell::new(State {
                    settings,
                    windows,
                    stats: persisted.stats,
                }),
                engine: RefCell::new(None),
                cancelled: Cell::new(false),
                abort: RefCell::new(None),
            }),
        })
    }

    /// Downloads the model (or reads it from the browser's cache) and loads it.
    #[wasm_bindgen(unchecked_return_type = "Promise<ModelInfo>")]
    pub fn load(
        &self,
        url: String,
        #[wasm_bindgen(unchecked_param_type = "((p: Progress) => void) | undefined")]
        on_progress: Option<Function>,
    ) -> Promise {
        let inner = Rc::clone(&self.inner);
        promise(async move {
            let t0 = browser::now();
            let report = |p: &download::Progress| {
                if let (Some(f), Ok(v)) = (&on_progress, to_js(p)) {
                    let _ = f.call1(&JsValue::NULL, &v);
                }
            };
            let file = download::fetch_model(&url, &report).await?;
            let name = url
                .rsplit('/')
                .next()
                .unwrap_or("model")
                .trim_end_matches(".gguf")
                .to_string();
            let size = file.bytes.len();
            let mut model = DeviceModel::from_bytes(file.bytes, &name)?;
            let webgpu = inner.state.borrow().settings.webgpu;
            let adapter = if webgpu { model.use_gpu().await } else { None };
            let info = ModelInfo {
                name,
                architecture: model.model().architecture().to_string(),
                context: model.model().context_length(),
                bytes: size as u64,
                source: file.source,
                cache_error: file.cache_error,
                load_ms: browser::now() - t0,
                kernels: model.model().kernels().name().to_string(),
                threads: model.model().threads(),
                backend: model.backend(),
                adapter,
                backend_note: model.note().map(str::to_string),
            };
            *inner
                .engine
                .try_borrow_mut()
                .map_err(|_| DeviceError::Busy)? = Some(model);
            Ok(info)
        })
    }

    /// Answers a question: `on_event` receives the streamed tokens and decisions; the promise
    /// the answer with every tier's hop record.
    #[wasm_bindgen(unchecked_return_type = "Promise<AskResult>")]
    pub fn ask(
        &self,
        #[wasm_bindgen(unchecked_param_type = "AskRequest")] request: JsValue,
        #[wasm_bindgen(unchecked_param_type = "(e: AskEvent) => void")] on_event: Function,
    ) -> Promise {
        let inner = Rc::clone(&self.inner);
        let request = from_js(&request).and_then(AskRequest::parse);
        promise(async move {
            let emit = |event: &AskEvent| {
                if let Ok(v) = to_js(event) {
                    let _ = on_event.call1(&JsValue::NULL, &v);
                }
            };
            ask(&inner, request?, &emit).await
        })
    }

    /// Stops the answer being generated (the device's, or the stream from the edge).
    pub fn cancel(&self) {
        self.inner.cancelled.set(true);
        if let Some(abort) = self.inner.abort.borrow().as_ref() {
            abort.abort();
        }
    }

    /// Changes some settings (omit the argument to read them); returns all of them. A bad
    /// value throws and changes nothing.
    #[wasm_bindgen(unchecked_return_type = "Settings")]
    pub fn settings(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Partial<Settings> | undefined")] update: JsValue,
    ) -> std::result::Result<JsValue, JsError> {
        let run = || -> Result<JsValue> {
            let update = from_js(&update)?;
            let mut state = self.inner.state.borrow_mut();
            if !update.is_null() {
                let next = state.settings.merged(&update)?;
                if let Some(k) = next.policy.window_size() {
                    state.windows.set_capacity(k)?;
                }
                state.settings = next;
            }
            to_js(&state.settings)
        };
        run().map_err(|e| JsError::new(&e.to_string()))
    }

    /// The panel's numbers: offload rates and thresholds per tier.
    #[wasm_bindgen(unchecked_return_type = "Snapshot")]
    pub fn stats(&self) -> std::result::Result<JsValue, JsError> {
        let state = self.inner.state.borrow();
        to_js(&stats::snapshot(
            &state.stats,
            &state.settings.policy,
            &state.windows,
        ))
        .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Forgets the windows and the counts (here and in IndexedDB).
    #[wasm_bindgen(unchecked_return_type = "Promise<null>")]
    pub fn reset(&self) -> Promise {
        let inner = Rc::clone(&self.inner);
        promise(async move {
            {
                let mut state = inner.state.borrow_mut();
                let k = state.windows.capacity();
                state.windows = offload::Windows::new(k)?;
                state.stats = Stats::default();
            }
            persist(&inner).await?;
            Ok(())
        })
    }

    /// Speed of the loaded model: feeds `prompt_tokens` tokens, then decodes `decode_tokens`
    /// greedily without stopping at an end token (as llama.cpp's `llama-bench` does).
    #[wasm_bindgen(unchecked_return_type = "Promise<BenchResult>")]
    pub fn bench(
        &self,
        prompt_tokens: u32,
        decode_tokens: u32,
        backend: Option<String>,
    ) -> Promise {
        let inner = Rc::clone(&self.inner);
        promise(async move {
            // A clone (shared weights), so no borrow of the engine is held across the awaits.
            let model = &model_of(&inner)?;
            let mut session = backend_session(model, backend.as_deref()).await?;
            let mut note = None;
            let prompt: Vec<u32> = (0..prompt_tokens.max(1)).map(|i| 100 + i % 1000).collect();
            let t0 = browser::now();
            let mut logits = session.feed(model, &mut note, &prompt).await?;
            let t1 = browser::now();
            for _ in 0..decode_tokens {
                let next = llm::generate::top_n(&logits, 1)
                    .first()
                    .map_or(0, |(id, _)| *id);
                logits = session.feed(model, &mut note, &[next]).await?;
            }
            if let Some(note) = note {
                return Err(DeviceError::Gpu(note));
            }
            let t2 = browser::now();
            let per_s = |n: u32, ms: f64| f64::from(n) / (ms / 1000.0).max(1e-9);
            Ok(BenchResult {
                backend: session.name(),
                prompt_tokens: prompt.len() as u32,
                decode_tokens,
                prefill_ms: t1 - t0,
                decode_ms: t2 - t1,
                prefill_tok_s: per_s(prompt.len() as u32, t1 - t0),
                decode_tok_s: per_s(decode_tokens, t2 - t1),
            })
        })
    }
}

/// The loaded model (a handle on its shared weights).
fn model_of(inner: &Inner) -> Result<llm::Model> {
    let engine = inner.engine.try_borrow().map_err(|_| DeviceError::Busy)?;
    Ok(engine
        .as_ref()
        .ok_or(DeviceError::NotLoaded)?
        .model()
        .clone())
}

/// A fresh session of `model` on `backend` (`"cpu"`, the default, or `"webgpu"`).
async fn backend_session(model: &llm::Model, backend: Option<&str>) -> Result<Backend> {
    match backend.unwrap_or("cpu") {
        "cpu" => Ok(Backend::Cpu(model.session())),
        "webgpu" => {
            let gpu = llm::gpu::GpuModel::new(model)
                .await
                .map_err(|e| DeviceError::Gpu(e.to_string()))?;
            let session = gpu
                .session(crate::engine::CONTEXT)
                .await
                .map_err(|e| DeviceError::Gpu(e.to_string()))?;
            Ok(Backend::Gpu(session))
        }
        other => Err(DeviceError::Request(format!(
            "backend `{other}`: expected \"cpu\" or \"webgpu\""
        ))),
    }
}

#[wasm_bindgen]
impl Device {
    /// Runs `text` (as one user message) greedily on the CPU and on WebGPU side by side, both
    /// fed the CPU's tokens so their logits stay comparable: the WebGPU path's check against
    /// the CPU path (`steps` tokens).
    #[wasm_bindgen(unchecked_return_type = "Promise<Comparison>")]
    pub fn compare_backends(&self, text: String, steps: u32) -> Promise {
        let inner = Rc::clone(&self.inner);
        promise(async move {
            let model = &model_of(&inner)?;
            let template = model
                .chat_template()
                .ok_or_else(|| DeviceError::Request("the model has no chat template".into()))?;
            let prompt = template.encode(model.tokenizer(), &[llm::Message::user(text)], true);
            let mut cpu = model.session();
            let gpu = llm::gpu::GpuModel::new(model)
                .await
                .map_err(|e| DeviceError::Gpu(e.to_string()))?;
            let mut g = gpu
                .session(crate::engine::CONTEXT)
                .await
                .map_err(|e| DeviceError::Gpu(e.to_string()))?;
            let gpu_err = |e: llm::gpu::GpuError| DeviceError::Gpu(e.to_string());
            let mut lc = cpu.feed(&prompt)?;
            let mut lg = g.feed(&prompt).await.map_err(gpu_err)?;
            let mut out = Comparison {
                adapter: gpu.adapter().to_string(),
                ..Comparison::default()
            };
            let argmax = |l: &[f32]| llm::generate::top_n(l, 1).first().map_or(0, |(id, _)| *id);
            for step in 0..steps {
                let diff = lc
                    .iter()
                    .zip(&lg)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                let top = lc.iter().map(|v| v.abs()).fold(f32::MIN_POSITIVE, f32::max);
                out.max_abs_gap = out.max_abs_gap.max(diff);
                out.max_rel_gap = out.max_rel_gap.max(diff / top);
                let (tc, tg) = (argmax(&lc), argmax(&lg));
                if tc != tg {
                    out.disagreements.push(Disagreement {
                        step,
                        cpu_margin: lc[tc as usize] - lc[tg as usize],
                        gap: diff,
                    });
                }
                out.cpu_tokens.push(tc);
                out.gpu_tokens.push(tg);
                lc = cpu.feed(&[tc])?;
                lg = g.feed(&[tc]).await.map_err(gpu_err)?;
                browser::yield_now().await?;
            }
            out.cpu_text = model
                .tokenizer()
                .decode(&out.cpu_tokens, llm::DecodeOptions::default())?;
            Ok(out)
        })
    }
}

#[derive(Serialize, Default)]
struct Comparison {
    adapter: String,
    cpu_tokens: Vec<u32>,
    gpu_tokens: Vec<u32>,
    cpu_text: String,
    max_abs_gap: f32,
    max_rel_gap: f32,
    disagreements: Vec<Disagreement>,
}

#[derive(Serialize)]
struct Disagreement {
    step: u32,
    cpu_margin: f32,
    gap: f32,
}

#[derive(Serialize)]
struct ModelInfo {
    name: String,
    architecture: String,
    context: usize,
    bytes: u64,
    source: &'static str,
    cache_error: Option<String>,
    load_ms: f64,
    kernels: String,
    /// Kernel threads on the CPU path (more than one in the threaded build).
    threads: usize,
    /// `"webgpu"` or `"cpu"`.
    backend: &'static str,
    adapter: Option<String>,
    /// Why the model runs on the CPU although WebGPU was asked for.
    backend_note: Option<String>,
}

#[derive(Serialize)]
struct BenchResult {
    backend: &'static str,
    prompt_tokens: u32,
    decode_tokens: u32,
    prefill_ms: f64,
    decode_ms: f64,
    prefill_tok_s: f64,
    decode_tok_s: f64,
}

async fn persist(inner: &Inner) -> Result<()> {
    let json = {
        let state = inner.state.borrow();
        serde_json::to_string(&PersistedRef {
            windows: &state.windows,
            stats: &state.stats,
        })
        .map_err(DeviceError::json)?
    };
    store::put(STATE_KEY, &json).await
}

#[derive(Serialize)]
struct PersistedRef<'a> {
    windows: &'a offload::Windows,
    stats: &'a Stats,
}

fn new_request_id() -> String {
    let stamp = js_sys::Date::now() as u64;
    let random = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    format!("dev-{stamp:x}-{random:08x}")
}

/// The device's own answer.
async fn generate(
    inner: &Inner,
    engine: &mut DeviceModel,
    request: &AskRequest,
    settings: &Settings,
    t0: f64,
    emit: &dyn Fn(&AskEvent),
) -> Result<(DeviceAnswer, PerplexityAccumulator)> {
    let params = SamplingParams {
        temperature: settings.temperature,
        seed: settings.seed,
        max_tokens: request.max_tokens.unwrap_or(settings.max_tokens) as usize,
        ..SamplingParams::default()
    };
    let mut turn = engine.start(&request.llm_messages(&settings.system_prompt), params)?;
    emit(&AskEvent::Started {
        prompt_tokens: turn.prompt_tokens() as u32,
        cached_tokens: turn.cached_tokens() as u32,
    });
    let mut answer = DeviceAnswer {
        prompt_tokens: turn.prompt_tokens() as u32,
        ..DeviceAnswer::default()
    };
    let mut acc = PerplexityAccumulator::new();
    let mut cancelled = false;
    while turn.prefill_step().await? {
        browser::yield_now().await?;
        if inner.cancelled.get() {
            cancelled = true;
            break;
        }
    }
    let t_prefill = browser::now();
    answer.prefill_ms = t_prefill - t0;
    if !cancelled {
        loop {
            let Some(token) = turn.next_token().await? else {
                break;
            };
            if answer.first_token_ms.is_none() {
                answer.first_token_ms = Some(browser::now() - t0);
            }
            answer.completion_tokens += 1;
            acc.push(f64::from(token.logprob))?;
            if !token.text.is_empty() {
                answer.text += &token.text;
                emit(&AskEvent::Token {
                    source: Source::Device,
                    text: token.text,
                });
            }
            browser::yield_now().await?;
            if inner.cancelled.get() {
                let rest = turn.cancel();
                answer.text += &rest;
                cancelled = true;
                break;
            }
        }
    }
    answer.decode_ms = browser::now() - t_prefill;
    answer.finish_reason = match turn.finish_reason() {
        _ if cancelled => "cancelled",
        Some(llm::FinishReason::Length) => "length",
        Some(llm::FinishReason::Cancelled) => "cancelled",
        _ => "stop",
    };
    Ok((answer, acc))
}

/// Sends the question up and streams the answer back. Errors are sentences for the user.
async fn upstream(
    inner: &Inner,
    url: &str,
    body: &[u8],
    timeout_ms: u32,
    emit: &dyn Fn(&AskEvent),
) -> (std::result::Result<UpstreamAnswer, String>, LinkBytes) {
    let mut bytes = LinkBytes {
        sent: body.len() as u64,
        received: 0,
    };
    let result = upstream_inner(inner, url, body, timeout_ms, emit, &mut bytes).await;
    inner.abort.borrow_mut().take();
    (result, bytes)
}

async fn upstream_inner(
    inner: &Inner,
    url: &str,
    body: &[u8],
    timeout_ms: u32,
    emit: &dyn Fn(&AskEvent),
    bytes: &mut LinkBytes,
) -> std::result::Result<UpstreamAnswer, String> {
    let unreachable = |e: DeviceError| format!("the edge at {url} is unreachable ({e})");
    let abort = AbortController::new().map_err(|e| js_error(e).to_string())?;
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&js_sys::Uint8Array::from(body).into());
    init.set_signal(Some(&abort.signal()));
    let headers = Headers::new().map_err(|e| js_error(e).to_string())?;
    headers
        .set("content-type", "application/json")
        .map_err(|e| js_error(e).to_string())?;
    headers
        .set("accept", "text/event-stream")
        .map_err(|e| js_error(e).to_string())?;
    init.set_headers(&headers);
    let request =
        Request::new_with_str_and_init(url, &init).map_err(|e| js_error(e).to_string())?;
    *inner.abort.borrow_mut() = Some(abort.clone());
    let _timer = Timeout::start(timeout_ms, abort);
    let response = browser::fetch(&request).await.map_err(|e| {
        if inner.cancelled.get() {
            "cancelled".to_string()
        } else {
            unreachable(e)
        }
    })?;
    let reader = browser::body_reader(&response).map_err(unreachable)?;
    if !response.ok() {
        let mut text = Vec::new();
        while let Ok(Some(chunk)) = browser::read_chunk(&reader).await {
            text.extend_from_slice(&chunk);
            if text.len() > 64 * 1024 {
                break;
            }
        }
        bytes.received = text.len() as u64;
        let detail = serde_json::from_slice::<ErrorResponse>(&text)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&text).chars().take(200).collect());
        return Err(format!(
            "the edge answered HTTP {}: {detail}",
            response.status()
        ));
    }
    let mut stream = UpstreamReader::new();
    loop {
        let chunk = browser::read_chunk(&reader).await.map_err(|e| {
            if inner.cancelled.get() {
                "cancelled".to_string()
            } else {
                format!("the edge's answer broke off ({e})")
            }
        });
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                bytes.received = stream.received();
                return Err(e);
            }
        };
        let Some(chunk) = chunk else { break };
        let texts = stream.feed(&chunk);
        bytes.received = stream.received();
        for text in texts? {
            emit(&AskEvent::Token {
                source: Source::Upstream,
                text,
            });
        }
    }
    stream.finish()
}

/// Aborts a request after a delay unless dropped first.
struct Timeout {
    id: Option<i32>,
    _callback: Closure<dyn FnMut()>,
}

impl Timeout {
    fn start(ms: u32, abort: AbortController) -> Timeout {
        let callback = Closure::<dyn FnMut()>::new(move || abort.abort());
        let global = js_sys::global();
        let id = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .and_then(|f| {
                f.call2(
                    &global,
                    callback.as_ref().unchecked_ref(),
                    &JsValue::from(ms),
                )
                .ok()
            })
            .and_then(|id| id.as_f64())
            .map(|id| id as i32);
        Timeout {
            id,
            _callback: callback,
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        let global = js_sys::global();
        if let (Some(id), Ok(clear)) = (
            self.id,
            js_sys::Reflect::get(&global, &JsValue::from_str("clearTimeout")),
        ) && let Ok(clear) = clear.dyn_into::<Function>()
        {
            let _ = clear.call1(&global, &JsValue::from(id));
        }
    }
}

// The model's `RefCell` stays borrowed for the whole answer, across awaits: that borrow is
// what marks the model busy. Every other use of it tries to borrow and answers `Busy` when it
// cannot, so the borrow never panics.
#[allow(clippy::await_holding_refcell_ref)]
async fn ask(inner: &Inner, request: AskRequest, emit: &dyn Fn(&AskEvent)) -> Result<AskResult> {
    let t0 = browser::now();
    let mut slot = inner
        .engine
        .try_borrow_mut()
        .map_err(|_| DeviceError::Busy)?;
    let engine = slot.as_mut().ok_or(DeviceError::NotLoaded)?;
    inner.cancelled.set(false);
    let settings = inner.state.borrow().settings.clone();
    let policy = settings.policy.build()?;
    let request_id = request.request_id.clone().unwrap_or_else(new_request_id);
    let key = ladder::request_key(&request_id);
    let edge = settings.edge_endpoint();
    let online = browser::online();
    let reachable = if edge.is_some() && online {
        TierSet::ALL
    } else {
        TierSet::NONE.with(Tier::Device)
    };
    let model = engine.model().name().to_string();

    // Before generating: attempt here, or forward (a single-tier policy above the device).
    let route = policy.route(&RouteInput {
        tier: Tier::Device,
        task: TaskType::Chat,
        request_key: key,
        reachable,
    });
    let (mut answer, confidence, decision) = match route {
        Route::Forward { to, reason } => (
            DeviceAnswer {
                finish_reason: "stop",
                ..DeviceAnswer::default()
            },
            None,
            Decision::offload(to, reason),
        ),
        Route::Attempt => {
            let backend = engine.backend();
            let generated = generate(inner, engine, &request, &settings, t0, emit).await;
            if engine.backend() != backend {
                // The GPU failed (even if the answer then failed too): the page says so.
                emit(&AskEvent::Backend {
                    backend: engine.backend().to_string(),
                    note: engine.note().unwrap_or("the backend changed").to_string(),
                });
            }
            let (answer, acc) = generated?;
            if answer.finish_reason == "cancelled" {
                // A cancelled answer is not scored: its confidence says nothing.
                let hop = ladder::device_hop(
                    &model,
                    policy.name(),
                    &answer,
                    None,
                    None,
                    HopOutcome::Answered,
                    browser::now() - t0,
                );
                return Ok(AskResult {
                    text: answer.text.clone(),
                    answered_by: Tier::Device,
                    device_text: answer.text,
                    finish_reason: "cancelled".into(),
                    offload: OffloadResponse::new(Tier::Device, vec![hop]),
                    bytes: LinkBytes::default(),
                    latency_ms: browser::now() - t0,
                    note: Some("stopped".into()),
                });
            }
            // An empty answer is as unconfident as an answer can be.
            let confidence = acc.confidence().unwrap_or(Confidence::ZERO);
            let decision = {
                let mut state = inner.state.borrow_mut();
                decide(
                    policy.as_ref(),
                    &mut state.windows,
                    Tier::Device,
                    TaskType::Chat,
                    confidence,
                    key,
                    reachable,
                )?
            };
            (answer, Some(confidence.get()), decision)
        }
    };
    let offloads = decision.offloads();
    let no_tier_above = matches!(decision.reason, Reason::NoTierAbove { .. });
    let outcome = match (offloads, confidence) {
        (false, _) => HopOutcome::Answered,
        (true, Some(_)) => HopOutcome::Offloaded,
        (true, None) => HopOutcome::Forwarded,
    };
    let hop = ladder::device_hop(
        &model,
        policy.name(),
        &answer,
        confidence,
        Some(decision),
        outcome,
        browser::now() - t0,
    );
    emit(&AskEvent::Decision {
        hop: Box::new(hop.clone()),
    });

    let mut note = None;
    let mut bytes = LinkBytes::default();
    let (text, record) = match (offloads, &edge) {
        (true, Some(url)) => {
            let body = serde_json::to_vec(&ladder::upstream_request(
                &request,
                &settings,
                hop.clone(),
                &request_id,
            ))
            .map_err(DeviceError::json)?;
            emit(&AskEvent::Upstream { url: url.clone() });
            let t_up = browser::now();
            let (result, link) = upstream(inner, url, &body, settings.edge_timeout_ms, emit).await;
            bytes = link;
            let upstream_ms = browser::now() - t_up;
            match result {
                Ok(up) => {
                    let record =
                        ladder::upstream_record(hop, &up, link, upstream_ms, browser::now() - t0);
                    (up.text, record)
                }
                Err(error) if inner.cancelled.get() => {
                    note = Some("stopped".to_string());
                    answer.finish_reason = "cancelled";
                    let record = ladder::fallback_record(
                        hop,
                        &error,
                        link,
                        upstream_ms,
                        browser::now() - t0,
                    );
                    (answer.text.clone(), record)
                }
                Err(error) => {
                    emit(&AskEvent::Fallback {
                        error: error.clone(),
                    });
                    if confidence.is_none() {
                        // Forwarded without generating: generate here after all.
                        let (own, _) =
                            generate(inner, engine, &request, &settings, browser::now(), emit)
                                .await?;
                        answer = own;
                    }
                    note = Some(format!("{error}; answered on the device"));
                    let record = ladder::fallback_record(
                        hop,
                        &error,
                        link,
                        upstream_ms,
                        browser::now() - t0,
                    );
                    (answer.text.clone(), record)
                }
            }
        }
        _ => {
            if no_tier_above || (offloads && edge.is_none()) {
                note = Some(if !online {
                    "offline: answered on the device".to_string()
                } else if edge.is_none() {
                    "no edge is configured: answered on the device".to_string()
                } else {
                    "no tier above is reachable: answered on the device".to_string()
                });
            }
            let mut hop = hop;
            if offloads {
                hop.outcome = HopOutcome::Fallback;
                hop.error = note.clone();
            }
            (
                answer.text.clone(),
                OffloadResponse::new(Tier::Device, vec![hop]),
            )
        }
    };
    let mut record = record;
    record.request_id = Some(request_id);
    {
        let mut state = inner.state.borrow_mut();
        state.stats.record(&record);
    }
    // The windows must survive a reload; a failure to store them costs only that.
    let _ = persist(inner).await;
    Ok(AskResult {
        text,
        answered_by: record.answered_by,
        device_text: answer.text,
        finish_reason: answer.finish_reason.to_string(),
        offload: record,
        bytes,
        latency_ms: browser::now() - t0,
        note,
    })
}
