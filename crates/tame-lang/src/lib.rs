//! Tame's condition language: a CEL dialect for policy conditions.
//!
//! This crate parses and checks conditions; it never evaluates them and does
//! no I/O. Evaluation lives in `tame-interp`, policies in `tame-engine`.

pub mod ast;
pub mod diag;
mod parser;
mod print;
pub mod value;

pub use ast::{BinaryOp, Comprehension, Expr, ExprKind, Literal, MacroKind, Span, UnaryOp};
pub use diag::{CheckError, ParseError, PlainDiagnostic, line_col};
pub use parser::{MAX_DEPTH, MAX_NESTING, MAX_SOURCE_LEN, is_reserved, parse};
pub use value::{HostFn, Key, Type, Value, ValueMap};
