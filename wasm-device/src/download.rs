//! The model download: streamed, with progress, and kept in the browser's Cache Storage so a
//! reload reads it from disk instead of the network.

use crate::browser::{self, js_error, wait};
use crate::error::{DeviceError, Result};
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Cache, Request, Response};

/// The Cache Storage bucket the model files go in.
const CACHE: &str = "ladder-models-v1";
/// Largest model file accepted (the 32-bit wasm heap holds less than 4 GiB in all).
const MAX_MODEL_BYTES: u64 = 2 << 30;

/// A progress report, as the page receives it.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub loaded: u64,
    /// From `Content-Length`, when the server sent it.
    pub total: Option<u64>,
    /// `network` or `cache`.
    pub source: &'static str,
}

/// A downloaded model file.
pub struct Download {
    pub bytes: Vec<u8>,
    pub source: &'static str,
    /// Why the file could not be cached, when it could not (the next load downloads again).
    pub cache_error: Option<String>,
}

pub async fn fetch_model(url: &str, progress: &dyn Fn(&Progress)) -> Result<Download> {
    let fail = |message: String| DeviceError::Download {
        url: url.to_string(),
        message,
    };
    // No Cache Storage (a page that is not a secure context): download every time.
    let cache: Option<Cache> = match browser::caches() {
        Ok(storage) => wait(storage.open(CACHE))
            .await
            .ok()
            .map(JsValue::unchecked_into),
        Err(_) => None,
    };
    if let Some(cache) = &cache {
        let hit = wait(cache.match_with_str(url)).await?;
        if let Some(response) = hit.dyn_ref::<Response>() {
            let bytes = read_body(response, "cache", progress)
                .await
                .map_err(|e| fail(format!("reading the cached copy: {e}")))?;
            return Ok(Download {
                bytes,
                source: "cache",
                cache_error: None,
            });
        }
    }
    let request = Request::new_with_str(url).map_err(|e| fail(js_error(e).to_string()))?;
    let response = browser::fetch(&request)
        .await
        .map_err(|e| fail(format!("the server is unreachable ({e})")))?;
    if !response.ok() {
        return Err(fail(format!(
            "HTTP {} {}",
            response.status(),
            response.status_text()
        )));
    }
    // Cache a copy while reading the other.
    let put = match &cache {
        Some(cache) => Some(
            response
                .clone()
                .map(|copy| cache.put_with_str(url, &copy))
                .map_err(js_error)?,
        ),
        None => None,
    };
    let bytes = read_body(&response, "network", progress)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let cache_error = match put {
        Some(put) => wait(put).await.err().map(|e| e.to_string()),
        None => Some("Cache Storage is not available in this page".into()),
    };
    Ok(Download {
        bytes,
        source: "network",
        cache_error,
    })
}

async fn read_body(
    response: &Response,
    source: &'static str,
    progress: &dyn Fn(&Progress),
) -> Result<Vec<u8>> {
    let total = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(total) = total
        && total > MAX_MODEL_BYTES
    {
        return Err(DeviceError::Browser(format!(
            "the file has {total} bytes; at most {MAX_MODEL_BYTES} fit in the page"
        )));
    }
    let reader = browser::body_reader(response)?;
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut report = Progress {
        loaded: 0,
        total,
        source,
    };
    progress(&report);
    let mut last = 0u64;
    while let Some(chunk) = browser::read_chunk(&reader).await? {
        bytes.extend_from_slice(&chunk);
        report.loaded = bytes.len() as u64;
        if report.loaded > MAX_MODEL_BYTES {
            return Err(DeviceError::Browser(format!(
                "the file is larger than {MAX_MODEL_BYTES} bytes"
            )));
        }
        // About every megabyte, so a fast cache read does not flood the page with messages.
        if report.loaded - last >= 1 << 20 {
            last = report.loaded;
            progress(&report);
        }
    }
    if let Some(total) = total
        && total != report.loaded
    {
        return Err(DeviceError::Browser(format!(
            "the download stopped after {} of {total} bytes",
            report.loaded
        )));
    }
    progress(&report);
    Ok(bytes)
}
