//! Errors of compiling and evaluating a condition.

use tame_lang::Span;

/// A condition that cannot be compiled: an unknown root or function, a bad
/// constant regex or glob, an expression nested too deeply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    /// What is wrong, lowercase, user input in backticks.
    pub message: String,
    /// Where, as a byte range of the condition's source.
    pub span: Span,
}

impl CompileError {
    pub(crate) fn new(message: impl Into<String>, span: Span) -> Self {
        Self {
            message: message.into(),
            span,
        }
    }
}

/// A run-time error of a condition. Errors are values in CEL: `&&` and
/// `||` may absorb them; anything else propagates them to the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// CEL-style message: `no such overload`, `no such key: foo`,
    /// `division by zero`, `return error for overflow`, ...
    pub message: String,
    /// The sub-expression that failed.
    pub span: Span,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>, span: Span) -> Self {
        Self {
            message: message.into(),
            span,
        }
    }
}
