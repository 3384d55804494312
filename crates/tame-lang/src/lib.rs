//! Tame's condition language: a CEL dialect for policy conditions.
//!
//! This crate parses and checks conditions; it never evaluates them and does
//! no I/O. Evaluation lives in `tame-interp`, policies in `tame-engine`.
//!
//! ```
//! use tame_lang::{CheckEnv, Registry, Type, check, parse};
//!
//! let expr = parse(r#"args.path.startsWith("/etc/") or glob(args.path, "/root/**")"#).unwrap();
//! let registry = Registry::builtins();
//! assert_eq!(check(&expr, &CheckEnv::policy(&registry)), Ok(Type::Bool));
//! ```

pub mod ast;
mod check;
pub mod diag;
mod parser;
mod pretty;
mod print;
pub mod reference;
mod registry;
mod snippet;
pub mod value;

pub use ast::{BinaryOp, Comprehension, Expr, ExprKind, Literal, MacroKind, Span, UnaryOp};
pub use check::{CheckEnv, check};
pub use diag::{CheckError, LineIndex, ParseError, PlainDiagnostic, Snippet, line_col, render_snippet};
pub use parser::{MAX_DEPTH, MAX_NESTING, MAX_SOURCE_LEN, is_reserved, parse};
pub use pretty::{pretty, pretty_lines};
pub use registry::{FunctionDoc, Overload, Registry, RegistryError};
pub use value::{HostFn, Key, Type, Value, ValueMap};
