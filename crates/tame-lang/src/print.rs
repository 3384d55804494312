//! Printing an [`Expr`] back to source that re-parses to an equal tree.
//!
//! Parenthesizes conservatively: every operand that is not a primary or
//! member expression gets parentheses, so precedence never changes the tree.
//! Identifiers are printed as they are; a dotted [`ExprKind::Ident`] (which
//! the parser never produces) re-parses as field selections.

use std::fmt::{self, Display, Formatter, Write as _};

use crate::ast::{Expr, ExprKind, Literal, UnaryOp};
use crate::parser::MAX_DEPTH;

/// Trees deeper than the parser accepts are not printed (printing
/// recurses): they show as a placeholder that does not parse.
impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.depth() > MAX_DEPTH {
            return write!(f, "<expression nested deeper than {MAX_DEPTH} levels>");
        }
        write_expr(self, f)
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Uint(u) => write!(f, "{u}u"),
            Literal::Double(d) => write_double(*d, f),
            Literal::String(s) => write_string(s, f),
            Literal::Bytes(b) => write_bytes(b, f),
        }
    }
}

/// Primaries and member expressions: safe as the operand of `.`, `[]`,
/// a unary or binary operator without parentheses.
fn is_member_level(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Literal(_)
        | ExprKind::Ident(_)
        | ExprKind::Select { .. }
        | ExprKind::OptSelect { .. }
        | ExprKind::Index { .. }
        | ExprKind::OptIndex { .. }
        | ExprKind::Call { .. }
        | ExprKind::List(_)
        | ExprKind::Map(_)
        | ExprKind::Comprehension(_) => true,
        ExprKind::Unary { .. } | ExprKind::Binary { .. } | ExprKind::Ternary { .. } | ExprKind::OptEntry(_) => false,
    }
}

fn is_number(e: &Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Literal(Literal::Int(_) | Literal::Uint(_) | Literal::Double(_))
    )
}

/// The operand of `.`, `[]` or a unary operator: numbers get parentheses
/// too, so that `(1).e5` stays a select and `-(1)` a negation.
fn write_target(e: &Expr, f: &mut Formatter<'_>) -> fmt::Result {
    if is_number(e) {
        f.write_char('(')?;
        write_expr(e, f)?;
        f.write_char(')')
    } else {
        write_operand(e, f)
    }
}

fn write_operand(e: &Expr, f: &mut Formatter<'_>) -> fmt::Result {
    if is_member_level(e) {
        write_expr(e, f)
    } else {
        f.write_char('(')?;
        write_expr(e, f)?;
        f.write_char(')')
    }
}

fn write_args(args: &[Expr], f: &mut Formatter<'_>) -> fmt::Result {
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_expr(a, f)?;
    }
    Ok(())
}

fn write_expr(e: &Expr, f: &mut Formatter<'_>) -> fmt::Result {
    match &e.kind {
        ExprKind::Literal(l) => write!(f, "{l}"),
        ExprKind::Ident(name) => f.write_str(name),
        ExprKind::Select { operand, field, test } => {
            if *test {
                f.write_str("has(")?;
            }
            write_target(operand, f)?;
            f.write_char('.')?;
            write_field(field, f)?;
            if *test {
                f.write_char(')')?;
            }
            Ok(())
        }
        ExprKind::Index { operand, index } => {
            write_target(operand, f)?;
            f.write_char('[')?;
            write_expr(index, f)?;
            f.write_char(']')
        }
        ExprKind::OptSelect { operand, field } => {
            write_target(operand, f)?;
            f.write_str(".?")?;
            write_field(field, f)
        }
        ExprKind::OptIndex { operand, index } => {
            write_target(operand, f)?;
            f.write_str("[?")?;
            write_expr(index, f)?;
            f.write_char(']')
        }
        ExprKind::OptEntry(inner) => {
            f.write_char('?')?;
            write_operand(inner, f)
        }
        ExprKind::Call { target, function, args } => {
            if let Some(t) = target {
                write_target(t, f)?;
                f.write_char('.')?;
            }
            write!(f, "{function}(")?;
            write_args(args, f)?;
            f.write_char(')')
        }
        ExprKind::Unary { op, operand } => {
            f.write_str(match op {
                UnaryOp::Not => "!",
                UnaryOp::Neg => "-",
            })?;
            match operand.kind {
                // `--x` and `!!x` read back as the same chain.
                ExprKind::Unary { .. } => write_expr(operand, f),
                _ => write_target(operand, f),
            }
        }
        ExprKind::Binary { op, lhs, rhs } => {
            write_operand(lhs, f)?;
            write!(f, " {} ", op.symbol())?;
            write_operand(rhs, f)
        }
        ExprKind::Ternary { cond, then, otherwise } => {
            write_operand(cond, f)?;
            f.write_str(" ? ")?;
            write_operand(then, f)?;
            f.write_str(" : ")?;
            write_operand(otherwise, f)
        }
        ExprKind::List(items) => {
            f.write_char('[')?;
            write_args(items, f)?;
            f.write_char(']')
        }
        ExprKind::Map(entries) => {
            f.write_char('{')?;
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                if let ExprKind::OptEntry(inner) = &k.kind {
                    f.write_char('?')?;
                    write_operand(inner, f)?;
                } else {
                    write_operand(k, f)?;
                }
                f.write_str(": ")?;
                write_expr(v, f)?;
            }
            f.write_char('}')
        }
        ExprKind::Comprehension(c) => {
            write_target(&c.range, f)?;
            write!(f, ".{}({}", c.kind.name(), c.var)?;
            if let Some(v2) = &c.var2 {
                write!(f, ", {v2}")?;
            }
            for part in [&c.predicate, &c.transform].into_iter().flatten() {
                f.write_str(", ")?;
                write_expr(part, f)?;
            }
            f.write_char(')')
        }
    }
}

/// A field name, quoted with backticks unless it is a plain name (also
/// used by [`crate::pretty`]).
pub(crate) fn write_field(field: &str, f: &mut impl fmt::Write) -> fmt::Result {
    let mut chars = field.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        f.write_str(field)
    } else {
        write!(f, "`{field}`")
    }
}

/// Shortest text that reads back as the same `f64`, always with a `.` or
/// an exponent so it stays a double. NaN and infinities have no literal:
/// they print as conversions.
fn write_double(d: f64, f: &mut Formatter<'_>) -> fmt::Result {
    if d.is_nan() {
        return f.write_str("double(\"NaN\")");
    }
    if d.is_infinite() {
        return f.write_str(if d > 0.0 {
            "double(\"Infinity\")"
        } else {
            "double(\"-Infinity\")"
        });
    }
    let text = format!("{d:?}");
    if text.contains(['.', 'e', 'E']) {
        f.write_str(&text)
    } else {
        write!(f, "{text}.0")
    }
}

fn write_string(s: &str, f: &mut Formatter<'_>) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

fn write_bytes(b: &[u8], f: &mut Formatter<'_>) -> fmt::Result {
    f.write_str("b\"")?;
    for &byte in b {
        match byte {
            b'\\' => f.write_str("\\\\")?,
            b'"' => f.write_str("\\\"")?,
            0x20..=0x7e => f.write_char(char::from(byte))?,
            _ => write!(f, "\\x{byte:02x}")?,
        }
    }
    f.write_char('"')
}
