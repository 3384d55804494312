//! Tame's policy engine: loads `policies.yml`, compiles its rules into one
//! decision DAG and evaluates tool calls against it.
//!
//! This is the one API every frontend (server, CLI, Python) uses. It knows
//! nothing of HTTP, SQL or Python, and evaluation does no I/O.

mod facade;

pub use facade::*;
pub use tame_interp::{NoFacts, SessionFacts};
pub use tame_lang::{Type, Value};
