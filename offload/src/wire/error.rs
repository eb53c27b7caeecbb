//! Errors on the wire: the OpenAI error body every tier answers with, and [`WireError`], what
//! parsing and validating a request can fail with.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// The `type` values of OpenAI's error bodies.
pub mod error_type {
    /// The request is malformed or invalid (HTTP 400, 404, 413, 422).
    pub const INVALID_REQUEST: &str = "invalid_request_error";
    /// Missing or wrong credentials (HTTP 401).
    pub const AUTHENTICATION: &str = "authentication_error";
    /// Valid credentials without access (HTTP 403).
    pub const PERMISSION: &str = "permission_error";
    /// Too many requests or tokens (HTTP 429).
    pub const RATE_LIMIT: &str = "rate_limit_error";
    /// The server failed (HTTP 500, 502, 503, 504).
    pub const SERVER: &str = "server_error";
}

/// The body of every error response: `{"error": {"message", "type", "param", "code"}}`.
///
/// `param` and `code` are written as `null` when absent, exactly as OpenAI writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// The error object inside [`ErrorResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A sentence for a person: what is wrong and, where it helps, how to fix it.
    pub message: String,
    /// One of [`error_type`]'s values.
    #[serde(rename = "type", default = "default_kind")]
    pub kind: String,
    /// The request field at fault (`messages[0].content`, `temperature`), when there is one.
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code (`invalid_value`, `request_too_large`, …). Read from a string or,
    /// as llama.cpp's server writes it, a number.
    #[serde(default, deserialize_with = "string_or_number")]
    pub code: Option<String>,
}

fn default_kind() -> String {
    error_type::SERVER.to_owned()
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, a number or null")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

impl ErrorResponse {
    /// An error of type `kind` (one of [`error_type`]'s values).
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorResponse {
            error: ErrorBody {
                message: message.into(),
                kind: kind.into(),
                param: None,
                code: None,
            },
        }
    }

    /// `invalid_request_error`, naming the field at fault if there is one.
    pub fn invalid_request(message: impl Into<String>, param: Option<&str>) -> Self {
        let mut response = Self::new(error_type::INVALID_REQUEST, message);
        response.error.param = param.map(str::to_owned);
        response
    }

    /// `invalid_request_error` with code `not_found` (an unknown route or model; HTTP 404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(error_type::INVALID_REQUEST, message).with_code("not_found")
    }

    /// `authentication_error` (HTTP 401).
    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(error_type::AUTHENTICATION, message)
    }

    /// `permission_error` (HTTP 403).
    pub fn permission(message: impl Into<String>) -> Self {
        Self::new(error_type::PERMISSION, message)
    }

    /// `rate_limit_error` (HTTP 429).
    pub fn rate_limit(message: impl Into<String>) -> Self {
        Self::new(error_type::RATE_LIMIT, message)
    }

    /// `server_error` (HTTP 500).
    pub fn server_error(message: impl Into<String>) -> Self {
        Self::new(error_type::SERVER, message)
    }

    /// `server_error` with code `upstream_error`: the tier above failed (HTTP 502).
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(error_type::SERVER, message).with_code("upstream_error")
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.error.code = Some(code.into());
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.error.param = Some(param.into());
        self
    }

    /// The HTTP status this error is usually sent with, from its type and code.
    pub fn status(&self) -> u16 {
        match (self.error.kind.as_str(), self.error.code.as_deref()) {
            (_, Some("not_found")) => 404,
            (_, Some("request_too_large")) => 413,
            (_, Some("upstream_error")) => 502,
            (error_type::INVALID_REQUEST, _) => 400,
            (error_type::AUTHENTICATION, _) => 401,
            (error_type::PERMISSION, _) => 403,
            (error_type::RATE_LIMIT, _) => 429,
            _ => 500,
        }
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error.kind, self.error.message)?;
        if let Some(param) = &self.error.param {
            write!(f, " (param `{param}`)")?;
        }
        Ok(())
    }
}

/// Why a request body was refused. Each variant knows its HTTP status ([`Self::status`]), the
/// field at fault ([`Self::param`]) and its OpenAI error body ([`Self::to_response`]).
///
/// - 400: the body is not a well-formed request (not UTF-8, not JSON, a field of the wrong type,
///   a required field missing);
/// - 413: the body is larger than [`Limits::max_body_bytes`](super::Limits::max_body_bytes);
/// - 422: the request is well-formed but a value is out of range, unsupported or over a limit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("request body is {size} bytes, more than the limit of {limit} bytes")]
    BodyTooLarge { size: usize, limit: usize },

    #[error(
        "request body is not valid UTF-8: invalid byte at offset {offset} (line {line}, column {column})"
    )]
    InvalidUtf8 {
        offset: usize,
        line: usize,
        column: usize,
    },

    #[error("request body is not valid JSON: {message} (line {line}, column {column})")]
    MalformedJson {
        message: String,
        line: usize,
        column: usize,
    },

    /// A required field is absent. `param` is its full path (`messages`, `messages[1].role`).
    #[error("missing required field `{param}` (line {line}, column {column})")]
    MissingField {
        param: String,
        line: usize,
        column: usize,
    },

    /// A field has the wrong type or an unknown value. `param` is its path; `None` when the
    /// body itself is of the wrong type (not an object).
    #[error("{}", describe_invalid_field(.param.as_deref(), .message, *.line, *.column))]
    InvalidField {
        param: Option<String>,
        message: String,
        line: usize,
        column: usize,
    },

    /// A value is out of its range or inconsistent with another field.
    #[error("invalid `{param}`: {message}")]
    Invalid { param: String, message: String },

    /// A valid OpenAI setting this server does not serve (`n > 1`, image content parts).
    #[error("unsupported `{param}`: {message}")]
    Unsupported { param: String, message: String },

    /// A count over one of the [`Limits`](super::Limits).
    #[error("`{param}` is too large: {value} {unit}, the limit is {limit}")]
    LimitExceeded {
        param: String,
        value: u64,
        limit: u64,
        unit: &'static str,
    },
}

fn describe_invalid_field(
    param: Option<&str>,
    message: &str,
    line: usize,
    column: usize,
) -> String {
    match param {
        Some(param) => format!("invalid `{param}`: {message} (line {line}, column {column})"),
        None => format!("invalid request body: {message} (line {line}, column {column})"),
    }
}

impl WireError {
    /// A 422 for a value out of range; tiers use it for their own checks too (for example a
    /// policy that fails to build: `WireError::invalid("offload.policy", err.to_string())`).
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        WireError::Invalid {
            param: param.into(),
            message: message.into(),
        }
    }

    /// A 422 for a setting that is valid OpenAI but not served here.
    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        WireError::Unsupported {
            param: param.into(),
            message: message.into(),
        }
    }

    /// The HTTP status to answer with: 400 malformed, 413 too large, 422 semantically invalid.
    pub fn status(&self) -> u16 {
        match self {
            WireError::BodyTooLarge { .. } => 413,
            WireError::InvalidUtf8 { .. }
            | WireError::MalformedJson { .. }
            | WireError::MissingField { .. }
            | WireError::InvalidField { .. } => 400,
            WireError::Invalid { .. }
            | WireError::Unsupported { .. }
            | WireError::LimitExceeded { .. } => 422,
        }
    }

    /// The request field at fault, as a path (`messages[0].content[1].type`).
    pub fn param(&self) -> Option<&str> {
        match self {
            WireError::BodyTooLarge { .. }
            | WireError::InvalidUtf8 { .. }
            | WireError::MalformedJson { .. } => None,
            WireError::InvalidField { param, .. } => param.as_deref(),
            WireError::MissingField { param, .. }
            | WireError::Invalid { param, .. }
            | WireError::Unsupported { param, .. }
            | WireError::LimitExceeded { param, .. } => Some(param),
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::BodyTooLarge { .. } => "request_too_large",
            WireError::InvalidUtf8 { .. } => "invalid_encoding",
            WireError::MalformedJson { .. } => "invalid_json",
            WireError::MissingField { .. } => "missing_required_parameter",
            WireError::InvalidField { .. } => "invalid_type",
            WireError::Invalid { .. } => "invalid_value",
            WireError::Unsupported { .. } => "unsupported_value",
            WireError::LimitExceeded { .. } => "limit_exceeded",
        }
    }

    /// The error body to send with [`Self::status`].
    pub fn to_response(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                message: self.to_string(),
                kind: error_type::INVALID_REQUEST.to_owned(),
                param: self.param().map(str::to_owned),
                code: Some(self.code().to_owned()),
            },
        }
    }
}

impl From<&WireError> for ErrorResponse {
    fn from(error: &WireError) -> Self {
        error.to_response()
    }
}

impl From<WireError> for ErrorResponse {
    fn from(error: WireError) -> Self {
        error.to_response()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_openai_shape() {
        let body = ErrorResponse::invalid_request("bad", Some("temperature")).with_code("x");
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error": {"message": "bad", "type": "invalid_request_error",
                "param": "temperature", "code": "x"}})
        );
        let plain = serde_json::to_string(&ErrorResponse::server_error("boom")).unwrap();
        assert_eq!(
            plain,
            r#"{"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#
        );
    }

    #[test]
    fn reads_numeric_codes() {
        let body: ErrorResponse = serde_json::from_str(
            r#"{"error":{"code":400,"message":"bad","type":"invalid_request_error"}}"#,
        )
        .unwrap();
        assert_eq!(body.error.code.as_deref(), Some("400"));
        assert_eq!(body.error.param, None);
        assert_eq!(body.status(), 400);
    }

    #[test]
    fn statuses_follow_type_and_code() {
        assert_eq!(ErrorResponse::rate_limit("slow down").status(), 429);
        assert_eq!(ErrorResponse::authentication("who").status(), 401);
        assert_eq!(ErrorResponse::permission("no").status(), 403);
        assert_eq!(ErrorResponse::not_found("gone").status(), 404);
        assert_eq!(ErrorResponse::upstream("cloud down").status(), 502);
        assert_eq!(ErrorResponse::server_error("boom").status(), 500);
        let too_large = WireError::BodyTooLarge { size: 9, limit: 1 }.to_response();
        assert_eq!(too_large.status(), 413);
    }

    #[test]
    fn wire_errors_render_as_invalid_requests() {
        let err = WireError::unsupported("n", "n > 1 is not supported");
        let body = ErrorResponse::from(&err);
        assert_eq!(err.status(), 422);
        assert_eq!(body.error.kind, error_type::INVALID_REQUEST);
        assert_eq!(body.error.param.as_deref(), Some("n"));
        assert_eq!(body.error.code.as_deref(), Some("unsupported_value"));
        assert_eq!(
            body.error.message,
            "unsupported `n`: n > 1 is not supported"
        );
    }
}
