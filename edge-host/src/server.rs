//! The HTTP front: routes each request to the component its `spin.toml` route names, with the
//! cross-cutting parts as layers (CORS for the configured origins, answering preflight
//! `OPTIONS` itself) and the request body limit checked before any instance is made. Whatever
//! fails outside the component answers with the OpenAI error JSON of `offload::wire`.

use crate::runtime::{Failure, InstanceSetup, Prepared, ResponseBody, Runtime};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use offload::wire::ErrorResponse;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// One servable component.
pub struct Served {
    pub prepared: Prepared,
    pub setup: InstanceSetup,
}

/// Everything the handlers share.
pub struct App {
    pub manifest: crate::manifest::Manifest,
    pub components: HashMap<String, Served>,
    pub runtime: Runtime,
    pub max_body_bytes: usize,
}

/// The router: every path goes to [`handle`], behind the CORS layer.
pub fn router(app: Arc<App>, cors_origins: &[String]) -> Result<axum::Router, String> {
    let router = axum::Router::new().fallback(handle).with_state(app);
    if cors_origins.is_empty() {
        return Ok(router);
    }
    let origins = if cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = cors_origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .map_err(|_| format!("--cors-origin {o:?} is not a valid origin"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let cors = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([http::Method::GET, http::Method::POST, http::Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
        .max_age(std::time::Duration::from_secs(600));
    Ok(router.layer(cors))
}

fn error(status: StatusCode, body: ErrorResponse) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    let Some(route) = app.manifest.route(&path) else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorResponse::not_found(format!("no route of this application serves {path}")),
        );
    };
    let Some(served) = app.components.get(&route.component) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorResponse::server_error(format!("component `{}` is not loaded", route.component)),
        );
    };
    let (parts, body) = request.into_parts();
    let body = match read_body(body, app.max_body_bytes).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorResponse::invalid_request(
                    format!(
                        "the request body is over the limit of {} bytes",
                        app.max_body_bytes
                    ),
                    None,
                )
                .with_code("request_too_large"),
            );
        }
        Err(BodyError::Read(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorResponse::invalid_request(format!("cannot read the body: {e}"), None),
            );
        }
    };
    let request = match component_request(parts, body, route, client) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorResponse::invalid_request(e, None),
            );
        }
    };
    match app
        .runtime
        .serve(&served.prepared, served.setup.clone(), request)
        .await
    {
        Ok(response) => {
            let sse = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let (parts, body) = response.into_parts();
            Response::from_parts(parts, Body::from_stream(body_stream(body, sse)))
        }
        Err(failure) => {
            let status = match failure {
                Failure::Busy => StatusCode::SERVICE_UNAVAILABLE,
                Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                Failure::Component(_) | Failure::Setup(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(
                status,
                ErrorResponse::server_error(format!("component `{}`: {failure}", route.component)),
            )
        }
    }
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// How much of an over-limit body is read and dropped, and for how long, before the 413 is
/// sent: a client still writing when the server answers and closes sees a reset instead of the
/// answer. Past these bounds the connection is closed anyway.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the body up to `limit` bytes. An over-limit body is drained (bounded by
/// [`DRAIN_BYTES`] and [`DRAIN_TIME`]) so that the client reads the 413.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if buf.len() + chunk.len() > limit {
            let mut drained = buf.len() + chunk.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while drained < DRAIN_BYTES {
                    match stream.next().await {
                        Some(Ok(chunk)) => drained += chunk.len(),
                        _ => break,
                    }
                }
            })
            .await;
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The request as the component sees it: an absolute URI and Spin's `spin-*` headers.
fn component_request(
    parts: http::request::Parts,
    body: Bytes,
    route: &crate::manifest::Route,
    client: SocketAddr,
) -> Result<http::Request<http_body_util::Full<Bytes>>, String> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let full = format!("http://{host}{path_and_query}");
    let uri: http::Uri = full
        .parse()
        .map_err(|e| format!("cannot form the request URL {full:?}: {e}"))?;
    let matched = if route.wildcard {
        format!("{}/...", route.path.trim_end_matches('/'))
    } else {
        route.path.clone()
    };
    let path_info = if route.wildcard {
        let prefix = route.path.trim_end_matches('/');
        parts
            .uri
            .path()
            .strip_prefix(prefix)
            .unwrap_or("")
            .to_string()
    } else {
        String::new()
    };
    let mut request = http::Request::from_parts(parts, http_body_util::Full::new(body));
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for (name, value) in [
        ("spin-full-url", full),
        ("spin-path-info", path_info),
        ("spin-matched-route", matched.clone()),
        ("spin-component-route", matched),
        ("spin-base-path", "/".to_string()),
        ("spin-client-addr", client.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(request)
}

/// The component's body as a byte stream. A failure after the head was sent ends an SSE
/// stream with one error event (the wire protocol's mid-stream error) and aborts any other body.
fn body_stream(
    body: ResponseBody,
    sse: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold((body, false), move |(mut body, done)| async move {
        if done {
            return None;
        }
        match body.next().await? {
            Ok(bytes) => Some((Ok(bytes), (body, false))),
            Err(message) if sse => {
                let event = offload::wire::encode_event(&ErrorResponse::server_error(message));
                Some((Ok(Bytes::from(event)), (body, true)))
            }
            Err(message) => Some((Err(std::io::Error::other(message)), (body, true))),
        }
    })
}
