//! Every way a request can fail, as one enum that renders OpenAI's error JSON with the right
//! HTTP status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use offload::wire::{ErrorResponse, WireError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    /// The body is not a valid request (400 / 413 / 422, from `offload::wire`).
    #[error(transparent)]
    Wire(#[from] WireError),

    #[error(
        "the request body is larger than the limit of {limit} bytes; send a shorter \
         conversation or raise `limits.max_body_bytes`"
    )]
    BodyTooLarge { limit: usize },

    #[error("could not read the request body: {0}")]
    BodyRead(String),

    #[error(
        "this model's context is {context} tokens, but the prompt has {prompt} tokens and \
         {requested} more were asked for; shorten the conversation or lower `max_tokens`"
    )]
    ContextLength {
        prompt: usize,
        requested: usize,
        context: usize,
    },

    #[error("{0}")]
    Invalid(String, Option<&'static str>),

    #[error("the server is busy ({queued} requests waiting); retry after {retry_after} s")]
    QueueFull { queued: usize, retry_after: u64 },

    #[error("the server is shutting down; retry on another instance")]
    ShuttingDown,

    #[error("{0}")]
    Unauthorized(&'static str),

    #[error(
        "no route for {method} {path}; this server answers POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health and GET /metrics"
    )]
    NotFound { method: String, path: String },

    #[error("{method} is not allowed here; see GET /v1/models for the API's routes")]
    MethodNotAllowed { method: String },

    /// The engine this host fronts failed or sent something unusable.
    #[error("the upstream engine failed: {0}")]
    Upstream(String),

    /// The engine refused the request as malformed (its 4xx), e.g. a prompt over its context.
    #[error("the upstream engine refused the request ({status}): {message}")]
    UpstreamRefused { status: u16, message: String },

    #[error("the model failed: {0}")]
    Model(#[from] llm::Error),

    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Wire(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead(_) | ApiError::ContextLength { .. } | ApiError::Invalid(..) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamRefused { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::Model(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI error body.
    pub fn body(&self) -> ErrorResponse {
        let message = self.to_string();
        match self {
            ApiError::Wire(e) => e.to_response(),
            ApiError::BodyTooLarge { .. } => {
                ErrorResponse::invalid_request(message, None).with_code("request_too_large")
            }
            ApiError::BodyRead(_) => ErrorResponse::invalid_request(message, None),
            ApiError::ContextLength { .. } => {
                ErrorResponse::invalid_request(message, Some("messages"))
                    .with_code("context_length_exceeded")
            }
            ApiError::Invalid(_, param) => ErrorResponse::invalid_request(message, *param),
            ApiError::NotFound { .. } => ErrorResponse::not_found(message),
            ApiError::MethodNotAllowed { .. } => {
                ErrorResponse::invalid_request(message, None).with_code("method_not_allowed")
            }
            ApiError::QueueFull { .. } => {
                ErrorResponse::rate_limit(message).with_code("queue_full")
            }
            ApiError::ShuttingDown => {
                ErrorResponse::server_error(message).with_code("shutting_down")
            }
            ApiError::Unauthorized(_) => {
                ErrorResponse::authentication(message).with_code("invalid_api_key")
            }
            ApiError::Upstream(_) => ErrorResponse::upstream(message),
            ApiError::UpstreamRefused { .. } => ErrorResponse::invalid_request(message, None),
            ApiError::Model(_) | ApiError::Internal(_) => ErrorResponse::server_error(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        match &self {
            ApiError::QueueFull { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
