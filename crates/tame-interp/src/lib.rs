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
mod optional;
mod program;
mod session;
mod strings;
mod time;

pub use compile::{MAX_DEPTH, compile};
pub use env::{Env, HostFunction, VarDecl, host_fn, roots};
pub use error::{CompileError, EvalError};
pub use ops::equals;
pub use program::{Activation, Program};
pub use session::{Provenance, ToolPattern};

use std::sync::Arc;

/// What a condition may ask about the current session. Implemented by the
/// caller; the evaluator never does I/O itself. Tool arguments are
/// [`ToolPattern`]s: one name, or a glob.
///
/// The methods past [`SessionFacts::labels`] have defaults for a session
/// that has seen nothing (no history, no inputs, no results).
pub trait SessionFacts {
    /// Calls that ran in this session so far (allowed, or released by a
    /// human).
    fn calls(&self) -> i64;
    /// Calls of matching tools that ran, within `window` before now when
    /// given (`session.count("send_email", duration("1h"))`).
    fn count(&self, tool: &ToolPattern, window: Option<jiff::SignedDuration>) -> i64;
    /// Whether a call of a matching tool ran (`session.called(tool)`).
    fn called(&self, tool: &ToolPattern) -> bool;
    /// Labels attached to the session, e.g. `secret_read` (`session.labels`).
    fn labels(&self) -> Vec<Arc<str>>;
    /// Every call of the session, oldest first, each a map `{tool, args,
    /// decision, rule, released, at, result, source}` (`session.calls`).
    fn history(&self) -> tame_lang::Value {
        tame_lang::Value::List(Arc::from(Vec::new()))
    }
    /// Calls of matching tools that did not run (denied, or approval not
    /// released), within `window` before now when given.
    fn denied(&self, _tool: &ToolPattern, _window: Option<jiff::SignedDuration>) -> i64 {
        0
    }
    /// The user's inputs, oldest first (`session.inputs`).
    fn inputs(&self) -> tame_lang::Value {
        tame_lang::Value::List(Arc::from(Vec::new()))
    }
    /// Results of earlier calls to matching tools, newest first
    /// (`session.results(glob)`); an error when one of them is not
    /// reported yet or no longer kept.
    fn results(&self, _tool: &ToolPattern) -> Result<tame_lang::Value, String> {
        Ok(tame_lang::Value::List(Arc::from(Vec::new())))
    }
    /// Answers a provenance question; an error when it cannot be answered
    /// reliably.
    fn provenance(&self, _question: Provenance<'_>) -> Result<bool, String> {
        Ok(false)
    }
}

/// Facts of a session that has made no calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFacts;

impl SessionFacts for NoFacts {
    fn calls(&self) -> i64 {
        0
    }
    fn count(&self, _tool: &ToolPattern, _window: Option<jiff::SignedDuration>) -> i64 {
        0
    }
    fn called(&self, _tool: &ToolPattern) -> bool {
        false
    }
    fn labels(&self) -> Vec<Arc<str>> {
        Vec::new()
    }
}

#[cfg(test)]
mod builtins_declared;
#[cfg(test)]
mod ext_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
