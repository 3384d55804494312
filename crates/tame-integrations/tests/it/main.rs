//! Integration tests of tame-integrations: the MCP proxy (in process and as
//! a binary, against stdlib and real `mcp` servers) and the tool runner
//! (real python3 subprocesses, a local HTTP service), and both over https
//! against an in-process TLS server with a throwaway CA.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should panic with its message"
)]

mod common;
mod embedded;
mod examples;
mod http;
mod https;
mod proxy;
mod remote;
mod runner;
mod service;
