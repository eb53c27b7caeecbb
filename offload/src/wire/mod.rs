//! Wire types (in progress).
