//! Integration tests of tame-integrations: the MCP proxy (in process and as
//! a binary, against stdlib and real `mcp` servers) and the tool runner
//! (real python3 subprocesses, a local HTTP service).

mod common;
mod embedded;
mod proxy;
mod runner;
mod service;
