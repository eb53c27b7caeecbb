//! Cross-crate tests: wasmtime component tests, the three-tier end-to-end test, and browser tests.
//!
//! Nothing here yet: the tiers these tests exercise come with issues 4, 5 and 6.
