//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong inside `offload`. No variant is ever produced by a panic path:
/// inputs that come from a model or from the network are checked and reported here.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum OffloadError {
    /// A score, log-prob or confidence was NaN or infinite; the model or the caller produced
    /// garbage, and no decision can be taken from it.
    #[error("{what} must be a finite number, got {value}")]
    NotFinite { what: &'static str, value: f64 },

    /// A value lies outside the range it must be in (a probability outside `[0, 1]`, a positive
    /// log-prob, a window of size zero).
    #[error("{what} must be {expected}, got {value}")]
    OutOfRange {
        what: &'static str,
        expected: &'static str,
        value: f64,
    },

    /// A confidence measure was asked for with no input at all.
    #[error("{0} needs at least one value")]
    Empty(&'static str),

    /// A policy or request was configured inconsistently (for example a per-tier list of the
    /// wrong length); the message says which setting and how to fix it.
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub type Result<T, E = OffloadError> = std::result::Result<T, E>;

/// Checks that `value` is finite, naming it in the error.
pub(crate) fn finite(what: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(OffloadError::NotFinite { what, value })
    }
}
