//! Support code for the conformance runner.

pub mod textproto;
