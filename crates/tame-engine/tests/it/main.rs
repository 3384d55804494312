//! The engine's integration tests, one test binary: the facade (loading,
//! diagnostics, the decision DAG, evaluation and explain), the legacy
//! format against the original server's decisions, huge texts, the shipped
//! path policies, the network built-ins (`domain`, `lookalike`, `url`) in
//! policies, payload safety, typed rule reading, and the differential
//! property test against a tree-walking reference.

// Test helpers may fail loudly: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod differential;
mod engine;
mod huge_text;
mod legacy;
mod net_policies;
mod path_policies;
mod payload_safety;
mod typed_rules;
