//! The formatter's printer: an [`Expr`] as a policy author would write it.
//!
//! [`Display`](std::fmt::Display) prints with parentheses around every
//! compound operand and symbol operators (`&&`, `!`), which is safe but
//! noisy. [`pretty`] prints what `tame fmt` writes into policies.yml:
//!
//! - the word operators `and`, `or`, `not` (YAML-friendly: a condition
//!   never starts with `!`, which YAML reads as a tag);
//! - parentheses only where precedence or associativity needs them
//!   (`a - (b - c)`, `(a or b) and c`), and around an `and` chain inside
//!   an `or` chain for the reader (`(a and b) or c`);
//! - one space around binary operators and after commas and colons.
//!
//! [`pretty_lines`] also breaks a condition longer than a width at its
//! `and`/`or` chains: one operand per line, the operator at the end of the
//! line, a parenthesized chain opening on the line before and indented by
//! two spaces. Nothing else is ever broken. Both re-parse to an equal tree
//! (a property test checks it), since the tree has no node for parentheses.

use std::fmt::Write as _;

use crate::ast::{BinaryOp, Expr, ExprKind, Literal, UnaryOp};
use crate::parser::MAX_DEPTH;
use crate::print::write_field;

/// Precedence of a node as an operand: binary operators by
/// [`BinaryOp::precedence`], the ternary below all, everything else above.
fn precedence(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Ternary { .. } => 0,
        ExprKind::Binary { op, .. } => op.precedence(),
        ExprKind::Unary { .. } => 6,
        _ => 7,
    }
}

/// Whether `child`, an operand of `op` (its right operand when `right`),
/// is written in parentheses: where precedence or left associativity needs
/// them, and around an `and` chain inside an `or` chain for the reader.
fn operand_parens(op: BinaryOp, child: &Expr, right: bool) -> bool {
    let p = precedence(child);
    let needed = p < op.precedence() || (right && p == op.precedence());
    let clarity = op == BinaryOp::Or && matches!(child.kind, ExprKind::Binary { op: BinaryOp::And, .. });
    needed || clarity
}

fn is_number(e: &Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Literal(Literal::Int(_) | Literal::Uint(_) | Literal::Double(_))
    )
}

/// The word for an operator.
fn word(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Or => "or",
        BinaryOp::And => "and",
        other => other.symbol(),
    }
}

/// `expr` on one line, as `tame fmt` writes it. Trees deeper than the
/// parser accepts print as a placeholder that does not parse (as
/// [`Display`](std::fmt::Display) does).
pub fn pretty(expr: &Expr) -> String {
    if expr.depth() > MAX_DEPTH {
        return format!("<expression nested deeper than {MAX_DEPTH} levels>");
    }
    let mut out = String::new();
    write_expr(expr, &mut out);
    out
}

/// `expr` as lines no longer than `width` where its `and`/`or` chains
/// allow, for a text starting at column `indent`. Every line but the first
/// carries its own extra indentation (spaces); lines never end in spaces.
pub fn pretty_lines(expr: &Expr, indent: usize, width: usize) -> Vec<String> {
    if expr.depth() > MAX_DEPTH {
        return vec![pretty(expr)];
    }
    layout(expr, indent, width)
}

fn layout(e: &Expr, indent: usize, width: usize) -> Vec<String> {
    let flat = pretty(e);
    if indent + flat.chars().count() <= width {
        return vec![flat];
    }
    match &e.kind {
        ExprKind::Binary {
            op: op @ (BinaryOp::Or | BinaryOp::And),
            ..
        } => chain_lines(e, *op, indent, width),
        ExprKind::Unary {
            op: UnaryOp::Not,
            operand,
        } if matches!(
            operand.kind,
            ExprKind::Binary {
                op: BinaryOp::Or | BinaryOp::And,
                ..
            }
        ) =>
        {
            let mut lines = vec![String::from("not (")];
            lines.extend(indented(layout(operand, indent + 2, width)));
            lines.push(String::from(")"));
            lines
        }
        _ => vec![flat],
    }
}

fn indented(lines: Vec<String>) -> impl Iterator<Item = String> {
    lines.into_iter().map(|l| format!("  {l}"))
}

/// The operands of a left-leaning chain of `op`, in source order.
fn chain_operands(e: &Expr, op: BinaryOp) -> Vec<&Expr> {
    let mut right = Vec::new();
    let mut cur = e;
    while let ExprKind::Binary { op: o, lhs, rhs } = &cur.kind {
        if *o != op {
            break;
        }
        right.push(&**rhs);
        cur = lhs;
    }
    right.push(cur);
    right.reverse();
    right
}

fn chain_lines(e: &Expr, op: BinaryOp, indent: usize, width: usize) -> Vec<String> {
    let operands = chain_operands(e, op);
    let count = operands.len();
    let mut lines: Vec<String> = Vec::new();
    for (k, operand) in operands.into_iter().enumerate() {
        // The first operand is the chain's left end; the others were right
        // operands, which need parentheses at equal precedence too.
        let needs_parens = operand_parens(op, operand, k > 0);
        let sub_chain = matches!(
            operand.kind,
            ExprKind::Binary {
                op: BinaryOp::Or | BinaryOp::And,
                ..
            }
        );
        let flat = pretty(operand);
        let mut part: Vec<String> = if needs_parens || (sub_chain && indent + flat.chars().count() > width) {
            let one = format!("({flat})");
            if indent + one.chars().count() <= width || !sub_chain {
                vec![one]
            } else {
                // A nested chain too long for its line: parenthesized (the
                // tree is the same) and broken one level deeper.
                let mut v = vec![String::from("(")];
                v.extend(indented(layout(operand, indent + 2, width)));
                v.push(String::from(")"));
                v
            }
        } else {
            layout(operand, indent, width)
        };
        if k + 1 < count
            && let Some(last) = part.last_mut()
        {
            last.push(' ');
            last.push_str(word(op));
        }
        // `a and (` rather than a line holding `(` alone.
        if part.first().is_some_and(|l| l == "(")
            && let Some(prev) = lines.last_mut()
        {
            prev.push_str(" (");
            part.remove(0);
        }
        lines.extend(part);
    }
    lines
}

fn write_args(args: &[Expr], out: &mut String) {
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_expr(a, out);
    }
}

/// An operand of `.`, `[]` or a unary operator: numbers and anything below
/// member level get parentheses.
fn write_target(e: &Expr, out: &mut String) {
    if is_number(e) || precedence(e) < 7 {
        out.push('(');
        write_expr(e, out);
        out.push(')');
    } else {
        write_expr(e, out);
    }
}

fn write_parens_if(e: &Expr, parens: bool, out: &mut String) {
    if parens {
        out.push('(');
        write_expr(e, out);
        out.push(')');
    } else {
        write_expr(e, out);
    }
}

fn write_expr(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Literal(l) => {
            let _ = write!(out, "{l}");
        }
        ExprKind::Ident(name) => out.push_str(name),
        ExprKind::Select { operand, field, test } => {
            if *test {
                out.push_str("has(");
            }
            write_target(operand, out);
            out.push('.');
            let _ = write_field(field, out);
            if *test {
                out.push(')');
            }
        }
        ExprKind::Index { operand, index } => {
            write_target(operand, out);
            out.push('[');
            write_expr(index, out);
            out.push(']');
        }
        ExprKind::OptSelect { operand, field } => {
            write_target(operand, out);
            out.push_str(".?");
            let _ = write_field(field, out);
        }
        ExprKind::OptIndex { operand, index } => {
            write_target(operand, out);
            out.push_str("[?");
            write_expr(index, out);
            out.push(']');
        }
        ExprKind::OptEntry(inner) => {
            out.push('?');
            write_parens_if(inner, precedence(inner) == 0, out);
        }
        ExprKind::Call { target, function, args } => {
            if let Some(t) = target {
                write_target(t, out);
                out.push('.');
            }
            out.push_str(function);
            out.push('(');
            write_args(args, out);
            out.push(')');
        }
        ExprKind::Unary { op, operand } => {
            out.push_str(match op {
                UnaryOp::Not => "not ",
                UnaryOp::Neg => "-",
            });
            match operand.kind {
                // `not not x` and `--x` read back as the same chain.
                ExprKind::Unary { .. } => write_expr(operand, out),
                _ => write_target(operand, out),
            }
        }
        ExprKind::Binary { op, lhs, rhs } => {
            write_parens_if(lhs, operand_parens(*op, lhs, false), out);
            out.push(' ');
            out.push_str(word(*op));
            out.push(' ');
            write_parens_if(rhs, operand_parens(*op, rhs, true), out);
        }
        ExprKind::Ternary { cond, then, otherwise } => {
            // `cond ? then : otherwise`: cond and then are chains, the
            // otherwise branch may be another ternary.
            write_parens_if(cond, precedence(cond) == 0, out);
            out.push_str(" ? ");
            write_parens_if(then, precedence(then) == 0, out);
            out.push_str(" : ");
            write_expr(otherwise, out);
        }
        ExprKind::List(items) => {
            out.push('[');
            write_args(items, out);
            out.push(']');
        }
        ExprKind::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if let ExprKind::OptEntry(inner) = &k.kind {
                    out.push('?');
                    write_parens_if(inner, precedence(inner) == 0, out);
                } else {
                    write_parens_if(k, precedence(k) == 0, out);
                }
                out.push_str(": ");
                write_expr(v, out);
            }
            out.push('}');
        }
        ExprKind::Comprehension(c) => {
            write_target(&c.range, out);
            out.push('.');
            out.push_str(c.kind.name());
            out.push('(');
            out.push_str(&c.var);
            if let Some(v2) = &c.var2 {
                out.push_str(", ");
                out.push_str(v2);
            }
            for part in [&c.predicate, &c.transform].into_iter().flatten() {
                out.push_str(", ");
                write_expr(part, out);
            }
            out.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::parse;

    fn fmt(src: &str) -> String {
        pretty(&parse(src).unwrap())
    }

    #[test]
    fn words_and_minimal_parentheses() {
        assert_eq!(fmt("a && b || !c"), "(a and b) or not c");
        assert_eq!(fmt("a || b && c || d"), "a or (b and c) or d");
        assert_eq!(fmt("(a || b) && c"), "(a or b) and c");
        assert_eq!(fmt("a - (b - c)"), "a - (b - c)");
        assert_eq!(fmt("(a - b) - c"), "a - b - c");
        assert_eq!(fmt("!(a.b)"), "not a.b");
        assert_eq!(fmt("!(a == b)"), "not (a == b)");
        assert_eq!(fmt("(x ? 1 : 2) + 3"), "(x ? 1 : 2) + 3");
        assert_eq!(fmt("x ? 1 : y ? 2 : 3"), "x ? 1 : y ? 2 : 3");
        assert_eq!(fmt("(a ? b : c) ? d : e"), "(a ? b : c) ? d : e");
        assert_eq!(
            fmt("has(args.x) && args.list.all(p,p.startsWith('/'))"),
            "has(args.x) and args.list.all(p, p.startsWith(\"/\"))"
        );
        assert_eq!(fmt("(1).e5"), "(1).e5");
        assert_eq!(fmt("-(a + b)"), "-(a + b)");
    }

    #[test]
    fn long_chains_break_one_operand_a_line() {
        let e = parse(
            "is_ip(url(args.url).host) && (in_cidr(url(args.url).host, '10.0.0.0/8') || \
             in_cidr(url(args.url).host, '172.16.0.0/12') || in_cidr(url(args.url).host, '192.168.0.0/16'))",
        )
        .unwrap();
        let lines = pretty_lines(&e, 6, 80);
        assert_eq!(
            lines,
            [
                "is_ip(url(args.url).host) and (",
                "  in_cidr(url(args.url).host, \"10.0.0.0/8\") or",
                "  in_cidr(url(args.url).host, \"172.16.0.0/12\") or",
                "  in_cidr(url(args.url).host, \"192.168.0.0/16\")",
                ")",
            ]
        );
        assert_eq!(parse(&lines.join("\n")).unwrap(), e);
        // What fits stays on one line.
        assert_eq!(pretty_lines(&e, 0, 1000).len(), 1);
    }
}
