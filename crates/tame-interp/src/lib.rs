//! Evaluates checked Tame conditions with CEL semantics.
//!
//! The evaluator does no I/O: session facts arrive through
//! [`SessionFacts`], implemented by the caller (the store, the CLI's
//! offline facts, the Python in-memory session).
//!
//! Compile once per condition with [`compile`] against an [`Env`] (the
//! policy roots come from [`Env::policy`], slots in [`roots`]), then call
//! [`Program::eval`] or [`Program::eval_bool`] per request with an
//! [`Activation`].
//!
//! ```
//! use std::sync::Arc;
//! use tame_interp::{Activation, Env, NoFacts, compile, roots};
//! use tame_lang::{Key, Value, ValueMap};
//!
//! let ast = tame_lang::parse(r#"args.path.startsWith("/etc/") or glob(args.path, "/root/**")"#)?;
//! let program = compile(&ast, &Env::policy())?;
//!
//! let mut args = ValueMap::default();
//! args.insert(Key::from("path"), Value::string("/etc/hosts"));
//! let mut vars = vec![Value::Null; roots::COUNT];
//! vars[roots::TOOL] = Value::string("read_file");
//! vars[roots::ARGS] = Value::Map(Arc::new(args));
//!
//! let act = Activation::new(&vars, &NoFacts, jiff::Timestamp::now());
//! assert_eq!(program.eval_bool(&act)?, true);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod compile;
mod env;
mod error;
mod funcs;
mod net;
mod ops;
mod program;
mod time;

pub use compile::{MAX_DEPTH, compile};
pub use env::{Env, HostFunction, VarDecl, host_fn, roots};
pub use error::{CompileError, EvalError};
pub use ops::equals;
pub use program::{Activation, Program};

use std::sync::Arc;

/// What a condition may ask about the current session. Implemented by the
/// caller; the evaluator never does I/O itself.
pub trait SessionFacts {
    /// Tool calls recorded in this session so far (`session.calls`).
    fn calls(&self) -> i64;
    /// Calls of `tool` in this session, within `window` before now when
    /// given (`session.count("send_email", duration("1h"))`).
    fn count(&self, tool: &str, window: Option<jiff::SignedDuration>) -> i64;
    /// Whether `tool` was called in this session (`session.called(tool)`).
    fn called(&self, tool: &str) -> bool;
    /// Labels attached to the session, e.g. `secret_read` (`session.labels`).
    fn labels(&self) -> Vec<Arc<str>>;
}

/// Facts of a session that has made no calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFacts;

impl SessionFacts for NoFacts {
    fn calls(&self) -> i64 {
        0
    }
    fn count(&self, _tool: &str, _window: Option<jiff::SignedDuration>) -> i64 {
        0
    }
    fn called(&self, _tool: &str) -> bool {
        false
    }
    fn labels(&self) -> Vec<Arc<str>> {
        Vec::new()
    }
}

#[cfg(test)]
mod builtins_declared;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
