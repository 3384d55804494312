//! Integration tests of tame-safety: detectors, corpus quality, redaction,
//! limits, argument schemas and tool contracts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly on purpose"
)]

mod contracts;
mod corpus;
mod detectors;
mod limits;
mod redaction;
mod schema;
mod vendors;
