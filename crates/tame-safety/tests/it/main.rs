//! Integration tests of tame-safety: detectors, corpus quality, redaction,
//! limits, argument schemas and tool contracts.

mod contracts;
mod corpus;
mod detectors;
mod limits;
mod redaction;
mod schema;
