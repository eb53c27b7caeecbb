//! The link to the tier above: POST a request body to the cloud's chat endpoint and read its
//! answer, whole or as it streams. The component implements it with outbound `wasi:http`
//! (spin-sdk); tests implement it in memory.

use std::time::Duration;

/// The cloud's answer: its status, and its body as it arrives.
pub struct Reply<B> {
    pub status: u16,
    pub body: B,
}

/// A response body read piece by piece.
#[allow(async_fn_in_trait)]
pub trait Body {
    /// The next piece; `None` at the end, `Err` when the transfer failed.
    async fn next(&mut self) -> Option<Result<Vec<u8>, String>>;
}

/// Sends requests up one tier.
#[allow(async_fn_in_trait)]
pub trait Upstream {
    type Body: Body;

    /// POSTs `body` (JSON) to `url` and resolves with the response head, or an error (refused,
    /// denied, timed out after `timeout`) as a sentence.
    async fn post(
        &self,
        url: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply<Self::Body>, String>;

    /// Waits for `future` at most `timeout`; `None` when it did not finish in time.
    async fn within<T>(&self, timeout: Duration, future: impl Future<Output = T>) -> Option<T>;
}

/// Reads a whole body, up to `limit` bytes, within `timeout`.
pub async fn read_all<U: Upstream>(
    upstream: &U,
    body: &mut U::Body,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let read = async {
        let mut all = Vec::new();
        while let Some(piece) = body.next().await {
            let piece = piece?;
            if all.len() + piece.len() > limit {
                return Err(format!("the answer is over {limit} bytes"));
            }
            all.extend_from_slice(&piece);
        }
        Ok(all)
    };
    upstream.within(timeout, read).await.unwrap_or_else(|| {
        Err(format!(
            "no complete answer within {} ms",
            timeout.as_millis()
        ))
    })
}
