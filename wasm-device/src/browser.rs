//! The few browser services the device uses, from a page or a worker alike: `fetch`, Cache
//! Storage, IndexedDB, the clock, `navigator.onLine`, and a zero-delay yield to the event loop.

use crate::error::{DeviceError, Result};
use js_sys::{Promise, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    CacheStorage, IdbFactory, ReadableStreamDefaultReader, Request, Response, Window,
    WorkerGlobalScope,
};

/// A JavaScript exception as an error (its message, or its text).
pub fn js_error(value: JsValue) -> DeviceError {
    let text = value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"));
    DeviceError::Browser(text)
}

pub async fn wait(promise: Promise) -> Result<JsValue> {
    JsFuture::from(promise).await.map_err(js_error)
}

enum Scope {
    Window(Window),
    Worker(WorkerGlobalScope),
}

fn scope() -> Result<Scope> {
    let global = js_sys::global();
    if let Some(w) = global.dyn_ref::<Window>() {
        return Ok(Scope::Window(w.clone()));
    }
    if let Some(w) = global.dyn_ref::<WorkerGlobalScope>() {
        return Ok(Scope::Worker(w.clone()));
    }
    Err(DeviceError::Browser(
        "neither a window nor a worker: no fetch here".into(),
    ))
}

pub async fn fetch(request: &Request) -> Result<Response> {
    let promise = match scope()? {
        Scope::Window(w) => w.fetch_with_request(request),
        Scope::Worker(w) => w.fetch_with_request(request),
    };
    Ok(wait(promise).await?.unchecked_into())
}

pub fn caches() -> Result<CacheStorage> {
    match scope()? {
        Scope::Window(w) => w.caches(),
        Scope::Worker(w) => w.caches(),
    }
    .map_err(js_error)
}

pub fn indexed_db() -> Result<IdbFactory> {
    match scope()? {
        Scope::Window(w) => w.indexed_db(),
        Scope::Worker(w) => w.indexed_db(),
    }
    .map_err(js_error)?
    .ok_or_else(|| DeviceError::Browser("IndexedDB is not available".into()))
}

/// Milliseconds on a monotonic clock.
pub fn now() -> f64 {
    let perf = match scope() {
        Ok(Scope::Window(w)) => w.performance(),
        Ok(Scope::Worker(w)) => w.performance(),
        Err(_) => None,
    };
    perf.map_or_else(js_sys::Date::now, |p| p.now())
}

/// Whether the browser thinks it is online (`navigator.onLine`).
pub fn online() -> bool {
    match scope() {
        Ok(Scope::Window(w)) => w.navigator().on_line(),
        Ok(Scope::Worker(w)) => w.navigator().on_line(),
        Err(_) => true,
    }
}

/// Lets the event loop run (messages such as a cancel, a repaint) and resumes at once: a
/// message on a fresh channel, which unlike `setTimeout(0)` is not clamped to 4 ms.
pub async fn yield_now() -> Result<()> {
    let channel = web_sys::MessageChannel::new().map_err(js_error)?;
    let promise = Promise::new(&mut |resolve, _reject| {
        channel.port1().set_onmessage(Some(&resolve));
    });
    channel
        .port2()
        .post_message(&JsValue::NULL)
        .map_err(js_error)?;
    wait(promise).await?;
    channel.port1().set_onmessage(None);
    Ok(())
}

/// The next chunk of a body stream, `None` at its end.
pub async fn read_chunk(reader: &ReadableStreamDefaultReader) -> Result<Option<Vec<u8>>> {
    let result = wait(reader.read()).await?;
    let done = js_sys::Reflect::get(&result, &JsValue::from_str("done"))
        .map_err(js_error)?
        .as_bool()
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    let value = js_sys::Reflect::get(&result, &JsValue::from_str("value")).map_err(js_error)?;
    Ok(Some(Uint8Array::new(&value).to_vec()))
}

/// A reader of a response's body.
pub fn body_reader(response: &Response) -> Result<ReadableStreamDefaultReader> {
    let body = response
        .body()
        .ok_or_else(|| DeviceError::Browser("the response has no body".into()))?;
    Ok(body.get_reader().unchecked_into())
}
