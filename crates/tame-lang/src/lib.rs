//! Tame's condition language: a CEL dialect for policy conditions.
//!
//! This crate parses and checks conditions; it never evaluates them and does
//! no I/O. Evaluation lives in `tame-interp`, policies in `tame-engine`.

pub mod ast;
pub mod value;

pub use ast::{BinaryOp, Comprehension, Expr, ExprKind, Literal, MacroKind, Span, UnaryOp};
pub use value::{HostFn, Key, Type, Value, ValueMap};
