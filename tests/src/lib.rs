//! Cross-crate tests: wasmtime component tests, the three-tier end-to-end test, and browser tests.
//!
//! This library holds what the test files share: [`build`] (the binaries and the edge
//! component, built on demand), [`serve`] (servers started as processes on loopback, as users
//! start them), and [`stub`] (a stub cloud tier).

pub mod build;
pub mod serve;
pub mod stub;
