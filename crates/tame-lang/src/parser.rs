//! The parser: source text to [`Expr`], through the pest grammar in
//! `grammar.pest`. pest stays inside this module: pairs become AST at once,
//! macros are expanded, literals decoded and limits enforced here.

use std::num::NonZeroUsize;

use pest::Parser as _;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, ConstPrattParser, Op};

use crate::ast::{BinaryOp, Comprehension, Expr, ExprKind, Literal, MacroKind, Span, UnaryOp};
use crate::diag::ParseError;

mod grammar {
    #![allow(missing_docs, missing_debug_implementations, clippy::all, clippy::pedantic)]
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    #[derive(pest_derive::Parser)]
    #[grammar = "grammar.pest"]
    pub(super) struct CelParser;
}

use grammar::{CelParser, Rule};

/// The longest condition accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 64 * 1024;
/// The deepest nesting of brackets and ternaries accepted.
pub const MAX_NESTING: usize = 32;
/// The deepest expression tree accepted (operator chains, unary chains,
/// member chains and nesting all count).
pub const MAX_DEPTH: usize = 256;
/// pest's budget of rule calls for one parse: far above what any accepted
/// source needs, it stops pathological backtracking.
const CALL_LIMIT: usize = 20_000_000;

/// Words CEL reserves: never identifiers. `and`, `or` and `not` are Tame's
/// word operators.
pub const RESERVED: &[&str] = &[
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "package",
    "namespace",
    "null",
    "return",
    "true",
    "var",
    "void",
    "while",
    "and",
    "or",
    "not",
];

/// Is `word` reserved (cannot name a variable or function)?
pub fn is_reserved(word: &str) -> bool {
    RESERVED.contains(&word)
}

type Res<T> = Result<T, ParseError>;

static PRATT: ConstPrattParser<Rule, 14> = ConstPrattParser::new_const([
    (Op::infix(Rule::op_or, Assoc::Left), true),
    (Op::infix(Rule::op_and, Assoc::Left), true),
    (Op::infix(Rule::op_eq, Assoc::Left), true),
    (Op::infix(Rule::op_ne, Assoc::Left), false),
    (Op::infix(Rule::op_lt, Assoc::Left), false),
    (Op::infix(Rule::op_le, Assoc::Left), false),
    (Op::infix(Rule::op_gt, Assoc::Left), false),
    (Op::infix(Rule::op_ge, Assoc::Left), false),
    (Op::infix(Rule::op_in, Assoc::Left), false),
    (Op::infix(Rule::op_add, Assoc::Left), true),
    (Op::infix(Rule::op_sub, Assoc::Left), false),
    (Op::infix(Rule::op_mul, Assoc::Left), true),
    (Op::infix(Rule::op_div, Assoc::Left), false),
    (Op::infix(Rule::op_rem, Assoc::Left), false),
]);

/// Parses a condition. Macros (`all`, `exists`, `exists_one`, `map`,
/// `filter`, `has`) are expanded; spans are byte ranges into `source`.
///
/// Sources longer than [`MAX_SOURCE_LEN`], nested deeper than
/// [`MAX_NESTING`] or producing trees deeper than [`MAX_DEPTH`] are refused
/// with an error; nothing here recurses without bound.
pub fn parse(source: &str) -> Result<Expr, ParseError> {
    if source.len() > MAX_SOURCE_LEN {
        return Err(ParseError::new(
            format!(
                "condition is too long ({} bytes, the limit is {MAX_SOURCE_LEN} bytes)",
                source.len()
            ),
            Span::new(MAX_SOURCE_LEN, source.len()),
        ));
    }
    prescan(source)?;
    pest::set_call_limit(NonZeroUsize::new(CALL_LIMIT));
    let mut pairs = CelParser::parse(Rule::program, source).map_err(|e| from_pest(&e, source))?;
    let program = pairs
        .next()
        .ok_or_else(|| ParseError::new("empty condition", Span::new(0, 0)))?;
    let expr_pair = program
        .into_inner()
        .find(|p| p.as_rule() == Rule::expr)
        .ok_or_else(|| ParseError::new("empty condition", Span::new(0, 0)))?;
    let expr = build_expr(expr_pair)?;
    check_depth(expr)
}

// ---------------------------------------------------------------------------
// Limits

/// Refuses sources that nest brackets or ternaries deeper than
/// [`MAX_NESTING`], before pest recurses into them. Strings and comments
/// are skipped the way the grammar reads them.
fn prescan(source: &str) -> Res<()> {
    let bytes = source.as_bytes();
    // Per open bracket: how many `?` are pending at that level.
    let mut levels: Vec<usize> = vec![0];
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' | b'\'' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                levels.push(0);
                depth += 1;
            }
            b')' | b']' | b'}' if levels.len() > 1 => {
                let pending = levels.pop().unwrap_or(0);
                depth = depth.saturating_sub(1 + pending);
            }
            // `.?f`, `[?k]`, `[?x, ?y]`, `{?k: v}`: optional markers, not
            // ternaries.
            b'?' if matches!(
                bytes
                    .get(..i)
                    .and_then(|b| b.iter().rev().find(|c| !c.is_ascii_whitespace())),
                Some(b'.' | b'[' | b',' | b'{')
            ) => {}
            b'?' => {
                if let Some(top) = levels.last_mut() {
                    *top += 1;
                }
                depth += 1;
            }
            b',' => {
                if let Some(top) = levels.last_mut() {
                    depth = depth.saturating_sub(*top);
                    *top = 0;
                }
            }
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(ParseError::new(
                format!("condition nests too deeply (more than {MAX_NESTING} levels)"),
                Span::new(i, i + 1),
            )
            .with_help("split the condition or flatten the nested brackets"));
        }
        i += 1;
    }
    Ok(())
}

/// The innermost bracket still open at `upto`: its offset and byte.
fn unclosed(source: &str, upto: usize) -> Option<(usize, u8)> {
    let bytes = source.as_bytes();
    let mut stack: Vec<(usize, u8)> = Vec::new();
    let mut i = 0usize;
    while i < upto {
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'"' | b'\'' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => stack.push((i, b)),
            b')' | b']' | b'}' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    stack.pop()
}

/// The index just past the string literal whose opening quote is at `i`.
fn skip_string(bytes: &[u8], i: usize) -> usize {
    let quote = bytes.get(i).copied().unwrap_or(b'"');
    let prev = |k: usize| i.checked_sub(k).and_then(|j| bytes.get(j)).copied();
    let is_ident = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_');
    let raw = match prev(1) {
        Some(b'r' | b'R') => !is_ident(prev(2)) || matches!(prev(2), Some(b'b' | b'B')),
        Some(b'b' | b'B') => matches!(prev(2), Some(b'r' | b'R')),
        _ => false,
    };
    let triple = bytes.get(i + 1) == Some(&quote) && bytes.get(i + 2) == Some(&quote);
    let mut j = if triple { i + 3 } else { i + 1 };
    while let Some(&c) = bytes.get(j) {
        if c == b'\\' && !raw {
            j += 2;
            continue;
        }
        if triple {
            if c == quote && bytes.get(j + 1) == Some(&quote) && bytes.get(j + 2) == Some(&quote) {
                return j + 3;
            }
        } else if c == quote || c == b'\n' || c == b'\r' {
            return j + 1;
        }
        j += 1;
    }
    j
}

/// Refuses trees deeper than [`MAX_DEPTH`]. Iterative, and a refused tree
/// is taken apart iteratively too, so neither checking nor dropping it
/// can overflow the stack.
fn check_depth(expr: Expr) -> Res<Expr> {
    let mut too_deep = None;
    let mut stack: Vec<(&Expr, usize)> = vec![(&expr, 1)];
    while let Some((e, d)) = stack.pop() {
        if d > MAX_DEPTH {
            too_deep = Some(e.span);
            break;
        }
        e.for_each_child(|c| stack.push((c, d + 1)));
    }
    drop(stack);
    match too_deep {
        None => Ok(expr),
        Some(span) => {
            dismantle(expr);
            Err(ParseError::new(
                format!("condition nests too deeply (more than {MAX_DEPTH} levels)"),
                span,
            )
            .with_help("split long chains of operators, e.g. use `x in [..]` for many `||`"))
        }
    }
}

/// Drops a tree without recursion.
fn dismantle(expr: Expr) {
    let mut stack = vec![expr];
    while let Some(mut e) = stack.pop() {
        e.take_children(&mut stack);
    }
}

// ---------------------------------------------------------------------------
// Pairs to AST

fn span_of(pair: &Pair<'_, Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

fn missing(span: Span, what: &str) -> ParseError {
    ParseError::new(format!("internal parser error: missing {what}"), span)
}

fn build_expr(pair: Pair<'_, Rule>) -> Res<Expr> {
    let span = span_of(&pair);
    let mut inner = pair.into_inner();
    let cond = build_chain(inner.next().ok_or_else(|| missing(span, "operand"))?)?;
    if inner.next().is_none() {
        return Ok(cond);
    }
    let then = build_chain(inner.next().ok_or_else(|| missing(span, "ternary branch"))?)?;
    let _colon = inner.next();
    let otherwise = build_expr(inner.next().ok_or_else(|| missing(span, "ternary branch"))?)?;
    Ok(Expr::new(
        ExprKind::Ternary {
            cond: Box::new(cond),
            then: Box::new(then),
            otherwise: Box::new(otherwise),
        },
        span,
    ))
}

fn build_chain(pair: Pair<'_, Rule>) -> Res<Expr> {
    PRATT
        .map_primary(build_unary)
        .map_infix(|lhs, op, rhs| {
            let (lhs, rhs) = (lhs?, rhs?);
            let op = match op.as_rule() {
                Rule::op_or => BinaryOp::Or,
                Rule::op_and => BinaryOp::And,
                Rule::op_eq => BinaryOp::Eq,
                Rule::op_ne => BinaryOp::Ne,
                Rule::op_lt => BinaryOp::Lt,
                Rule::op_le => BinaryOp::Le,
                Rule::op_gt => BinaryOp::Gt,
                Rule::op_ge => BinaryOp::Ge,
                Rule::op_in => BinaryOp::In,
                Rule::op_add => BinaryOp::Add,
                Rule::op_sub => BinaryOp::Sub,
                Rule::op_mul => BinaryOp::Mul,
                Rule::op_div => BinaryOp::Div,
                _ => BinaryOp::Rem,
            };
            let span = lhs.span.to(rhs.span);
            Ok(Expr::new(
                ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
                span,
            ))
        })
        .parse(pair.into_inner())
}

fn build_unary(pair: Pair<'_, Rule>) -> Res<Expr> {
    let span = span_of(&pair);
    let mut ops: Vec<(UnaryOp, Span)> = Vec::new();
    let mut member = None;
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::op_not => ops.push((UnaryOp::Not, span_of(&p))),
            Rule::op_neg => ops.push((UnaryOp::Neg, span_of(&p))),
            _ => member = Some(p),
        }
    }
    let member = member.ok_or_else(|| missing(span, "operand"))?;
    let mut expr = None;
    // `-` directly before a bare int or double literal is part of it, so
    // that `-9223372036854775808` is `i64::MIN`.
    if let Some(&(UnaryOp::Neg, neg_span)) = ops.last()
        && let Some(number) = bare_signed_number(&member)
    {
        let lit_span = neg_span.to(span_of(&member));
        expr = Some(Expr::new(
            ExprKind::Literal(parse_number(number, true, lit_span)?),
            lit_span,
        ));
        ops.pop();
    }
    let mut expr = match expr {
        Some(e) => e,
        None => build_member(member)?,
    };
    for (op, op_span) in ops.into_iter().rev() {
        let span = op_span.to(expr.span);
        expr = Expr::new(
            ExprKind::Unary {
                op,
                operand: Box::new(expr),
            },
            span,
        );
    }
    Ok(expr)
}

/// The `number` pair of a member that is only an int or double literal.
fn bare_signed_number<'i>(member: &Pair<'i, Rule>) -> Option<Pair<'i, Rule>> {
    let mut inner = member.clone().into_inner();
    let first = inner.next()?;
    if inner.next().is_some() || first.as_rule() != Rule::number {
        return None;
    }
    let kind = first.clone().into_inner().next()?.as_rule();
    matches!(kind, Rule::int | Rule::double).then_some(first)
}

fn build_member(pair: Pair<'_, Rule>) -> Res<Expr> {
    let span = span_of(&pair);
    let mut inner = pair.into_inner();
    let mut expr = build_primary(inner.next().ok_or_else(|| missing(span, "operand"))?)?;
    for postfix in inner {
        let pspan = span_of(&postfix);
        let whole = expr.span.to(pspan);
        match postfix.as_rule() {
            Rule::select => {
                let mut parts = postfix.into_inner();
                let name = parts.next().ok_or_else(|| missing(pspan, "field name"))?;
                let field = name.as_str().trim_matches('`').to_owned();
                match parts.next() {
                    None => {
                        expr = Expr::new(
                            ExprKind::Select {
                                operand: Box::new(expr),
                                field,
                                test: false,
                            },
                            whole,
                        );
                    }
                    Some(call_args) => {
                        let args = build_args(call_args)?;
                        expr = receiver_call(expr, field, span_of(&name), args, whole)?;
                    }
                }
            }
            Rule::opt_select => {
                let name = postfix
                    .into_inner()
                    .next()
                    .ok_or_else(|| missing(pspan, "field name"))?;
                let field = name.as_str().trim_matches('`').to_owned();
                expr = Expr::new(
                    ExprKind::OptSelect {
                        operand: Box::new(expr),
                        field,
                    },
                    whole,
                );
            }
            rule => {
                let index = postfix.into_inner().next().ok_or_else(|| missing(pspan, "index"))?;
                let index = Box::new(build_expr(index)?);
                let operand = Box::new(expr);
                let kind = if rule == Rule::opt_index {
                    ExprKind::OptIndex { operand, index }
                } else {
                    ExprKind::Index { operand, index }
                };
                expr = Expr::new(kind, whole);
            }
        }
    }
    Ok(expr)
}

fn build_args(pair: Pair<'_, Rule>) -> Res<Vec<Expr>> {
    pair.into_inner().map(build_expr).collect()
}

/// `target.function(args)`: a macro when the name and arity say so.
fn receiver_call(target: Expr, function: String, name_span: Span, args: Vec<Expr>, span: Span) -> Res<Expr> {
    // (kind, variables, whether the longer form has a filter)
    let kind = match (function.as_str(), args.len()) {
        ("all", 2) => Some((MacroKind::All, 1)),
        ("all", 3) => Some((MacroKind::All, 2)),
        ("exists", 2) => Some((MacroKind::Exists, 1)),
        ("exists", 3) => Some((MacroKind::Exists, 2)),
        ("exists_one" | "existsOne", 2) => Some((MacroKind::ExistsOne, 1)),
        ("exists_one" | "existsOne", 3) => Some((MacroKind::ExistsOne, 2)),
        ("filter", 2) => Some((MacroKind::Filter, 1)),
        ("map", 2 | 3) => Some((MacroKind::Map, 1)),
        ("transformList", 3 | 4) => Some((MacroKind::TransformList, 2)),
        ("transformMap", 3 | 4) => Some((MacroKind::TransformMap, 2)),
        ("transformMapEntry", 3 | 4) => Some((MacroKind::TransformMapEntry, 2)),
        ("optMap", 2) => Some((MacroKind::OptMap, 1)),
        ("optFlatMap", 2) => Some((MacroKind::OptFlatMap, 1)),
        _ => None,
    };
    let Some((kind, vars)) = kind else {
        return Ok(Expr::new(
            ExprKind::Call {
                target: Some(Box::new(target)),
                function,
                args,
            },
            span,
        ));
    };
    let _ = name_span;
    let mut args = args.into_iter();
    let mut names = Vec::with_capacity(vars);
    for _ in 0..vars {
        let var_expr = args.next().ok_or_else(|| missing(span, "macro variable"))?;
        match var_expr.kind {
            ExprKind::Ident(name) if !name.contains('.') => names.push(name),
            _ => {
                let which = if names.is_empty() { "first" } else { "second" };
                return Err(ParseError::new(
                    format!("the {which} argument of `{function}` must be a variable name"),
                    var_expr.span,
                )
                .with_label("not a simple name")
                .with_help(format!("write it like `list.{function}(x, ...)`")));
            }
        }
    }
    let mut names = names.into_iter();
    let var = names.next().ok_or_else(|| missing(span, "macro variable"))?;
    let var2 = names.next();
    if var2.as_ref() == Some(&var) {
        return Err(ParseError::new(
            format!("the two variables of `{function}` must differ (both are `{var}`)"),
            span,
        ));
    }
    let (predicate, transform) = match (kind.transforms(), args.next(), args.next()) {
        (true, Some(t), None) => (None, Some(t)),
        (true, Some(p), Some(t)) => (Some(p), Some(t)),
        (_, p, _) => (p, None),
    };
    Ok(Expr::new(
        ExprKind::Comprehension(Box::new(Comprehension {
            kind,
            range: target,
            var,
            var2,
            predicate,
            transform,
        })),
        span,
    ))
}

fn build_primary(pair: Pair<'_, Rule>) -> Res<Expr> {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::number => Ok(Expr::new(ExprKind::Literal(parse_number(pair, false, span)?), span)),
        Rule::string => Ok(Expr::new(ExprKind::Literal(decode_string(pair)?), span)),
        Rule::paren => build_expr(pair.into_inner().next().ok_or_else(|| missing(span, "expression"))?),
        Rule::list => {
            let mut items = Vec::new();
            for element in pair.into_inner() {
                let espan = span_of(&element);
                let mut parts = element.into_inner().peekable();
                let optional = parts.next_if(|p| p.as_rule() == Rule::opt_mark).is_some();
                let item = build_expr(parts.next().ok_or_else(|| missing(espan, "list element"))?)?;
                items.push(if optional {
                    Expr::new(ExprKind::OptEntry(Box::new(item)), espan)
                } else {
                    item
                });
            }
            Ok(Expr::new(ExprKind::List(items), span))
        }
        Rule::map => {
            let mut entries = Vec::new();
            for entry in pair.into_inner() {
                let espan = span_of(&entry);
                let mut kv = entry.into_inner().peekable();
                let optional = kv.next_if(|p| p.as_rule() == Rule::opt_mark).is_some();
                let k = build_expr(kv.next().ok_or_else(|| missing(espan, "map key"))?)?;
                let v = build_expr(kv.next().ok_or_else(|| missing(espan, "map value"))?)?;
                let k = if optional {
                    let kspan = Span::new(espan.range().start, k.span.range().end);
                    Expr::new(ExprKind::OptEntry(Box::new(k)), kspan)
                } else {
                    k
                };
                entries.push((k, v));
            }
            Ok(Expr::new(ExprKind::Map(entries), span))
        }
        Rule::ident_expr => build_ident(pair),
        _ => Err(missing(span, "operand")),
    }
}

fn build_ident(pair: Pair<'_, Rule>) -> Res<Expr> {
    let span = span_of(&pair);
    let mut name = None;
    let mut call_args = None;
    let mut has_dot = false;
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::ident => name = Some(p),
            Rule::call_args => call_args = Some(p),
            _ => has_dot = true,
        }
    }
    let name = name.ok_or_else(|| missing(span, "name"))?;
    let text = name.as_str();
    let keyword = match text {
        "true" => Some(Literal::Bool(true)),
        "false" => Some(Literal::Bool(false)),
        "null" => Some(Literal::Null),
        _ => None,
    };
    if let Some(lit) = keyword
        && call_args.is_none()
        && !has_dot
    {
        return Ok(Expr::new(ExprKind::Literal(lit), span));
    }
    if is_reserved(text) {
        return Err(ParseError::new(format!("`{text}` is a reserved word"), span_of(&name))
            .with_label("reserved word")
            .with_help("reserved words cannot name a variable or function"));
    }
    let Some(call_args) = call_args else {
        return Ok(Expr::new(ExprKind::Ident(text.to_owned()), span));
    };
    let args = build_args(call_args)?;
    if text == "has" && args.len() == 1 {
        let mut args = args;
        let arg = args.pop().ok_or_else(|| missing(span, "argument"))?;
        return match arg.kind {
            ExprKind::Select {
                operand,
                field,
                test: false,
            } => Ok(Expr::new(
                ExprKind::Select {
                    operand,
                    field,
                    test: true,
                },
                span,
            )),
            _ => Err(
                ParseError::new("the argument of `has` must be a field selection", arg.span)
                    .with_label("not a field selection")
                    .with_help("write it like `has(args.path)`"),
            ),
        };
    }
    Ok(Expr::new(
        ExprKind::Call {
            target: None,
            function: text.to_owned(),
            args,
        },
        span,
    ))
}

// ---------------------------------------------------------------------------
// Literals

fn parse_number(pair: Pair<'_, Rule>, negative: bool, span: Span) -> Res<Literal> {
    let inner = pair.into_inner().next().ok_or_else(|| missing(span, "number"))?;
    let text = inner.as_str();
    let shown = if negative { format!("-{text}") } else { text.to_owned() };
    match inner.as_rule() {
        Rule::double => {
            let v: f64 = text
                .parse()
                .map_err(|_| ParseError::new(format!("invalid double literal `{shown}`"), span))?;
            if !v.is_finite() {
                return Err(ParseError::new(
                    format!("double literal `{shown}` is out of range"),
                    span,
                ));
            }
            Ok(Literal::Double(if negative { -v } else { v }))
        }
        Rule::uint => {
            let digits = text.get(..text.len().saturating_sub(1)).unwrap_or_default();
            let v = parse_magnitude(digits).ok_or_else(|| {
                ParseError::new(format!("uint literal `{shown}` is out of range"), span)
                    .with_help("uint values go up to 18446744073709551615")
            })?;
            Ok(Literal::Uint(v))
        }
        _ => {
            let out_of_range = || {
                ParseError::new(format!("int literal `{shown}` is out of range"), span)
                    .with_help("int values go from -9223372036854775808 to 9223372036854775807; add `u` for a uint")
            };
            let mag = parse_magnitude(text).ok_or_else(out_of_range)?;
            let v = if negative {
                0i64.checked_sub_unsigned(mag).ok_or_else(out_of_range)?
            } else {
                i64::try_from(mag).map_err(|_| out_of_range())?
            };
            Ok(Literal::Int(v))
        }
    }
}

fn parse_magnitude(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn decode_string(pair: Pair<'_, Rule>) -> Res<Literal> {
    let span = span_of(&pair);
    let mut bytes = false;
    let mut raw = false;
    let mut body = None;
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::raw_prefix | Rule::bytes_prefix => {
                bytes = p.as_str().contains(['b', 'B']);
            }
            Rule::raw_quoted => {
                raw = true;
                body = Some(p);
            }
            _ => body = Some(p),
        }
    }
    let body = body.ok_or_else(|| missing(span, "string body"))?;
    let quoted = body.as_str();
    let q = if quoted.starts_with("\"\"\"") || quoted.starts_with("'''") {
        3
    } else {
        1
    };
    let content = quoted.get(q..quoted.len().saturating_sub(q)).unwrap_or_default();
    let content_start = body.as_span().start() + q;
    let mut out: Vec<u8> = Vec::with_capacity(content.len());
    if raw {
        out.extend_from_slice(content.as_bytes());
    } else {
        unescape(content, content_start, bytes, &mut out)?;
    }
    if bytes {
        Ok(Literal::Bytes(out))
    } else {
        String::from_utf8(out)
            .map(Literal::String)
            .map_err(|_| ParseError::new("string literal is not valid utf-8", span))
    }
}

/// Decodes CEL escapes of `content` (which starts at byte `base` of the
/// source) into `out`. In bytes literals `\x..` and octal escapes are raw
/// bytes; in strings they are code points.
fn unescape(content: &str, base: usize, bytes: bool, out: &mut Vec<u8>) -> Res<()> {
    let mut chars = content.char_indices().peekable();
    let mut buf = [0u8; 4];
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err(ParseError::new(
                "unfinished escape at the end of the string",
                Span::new(base + i, base + i + 1),
            ));
        };
        let simple = match e {
            'a' => Some(0x07u8),
            'b' => Some(0x08),
            'f' => Some(0x0C),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0B),
            '\\' => Some(b'\\'),
            '?' => Some(b'?'),
            '"' => Some(b'"'),
            '\'' => Some(b'\''),
            '`' => Some(b'`'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let (radix, len) = match e {
            'x' | 'X' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            '0'..='3' => (8, 2),
            _ => {
                let end = base + i + 1 + e.len_utf8();
                return Err(ParseError::new(format!("invalid escape `\\{e}`"), Span::new(base + i, end))
                    .with_help("valid escapes: \\n \\t \\r \\\\ \\\" \\' \\` \\? \\a \\b \\f \\v \\xHH \\uHHHH \\UHHHHHHHH \\ooo"));
            }
        };
        let mut value: u32 = if radix == 8 { e.to_digit(8).unwrap_or(0) } else { 0 };
        let mut end = i + 2;
        for _ in 0..len {
            let digit = chars.peek().and_then(|&(_, d)| d.to_digit(radix));
            let Some(d) = digit else {
                return Err(ParseError::new(
                    format!(
                        "escape `\\{e}` needs {} {} digits",
                        if radix == 8 { len + 1 } else { len },
                        if radix == 8 { "octal" } else { "hex" }
                    ),
                    Span::new(base + i, base + end),
                ));
            };
            value = value.saturating_mul(radix).saturating_add(d);
            if let Some((j, d)) = chars.next() {
                end = j + d.len_utf8();
            }
        }
        let escape_span = Span::new(base + i, base + end);
        let is_byte_escape = matches!(e, 'x' | 'X' | '0'..='3');
        if bytes && is_byte_escape {
            out.push(u8::try_from(value).unwrap_or(u8::MAX));
        } else {
            let ch = char::from_u32(value).ok_or_else(|| {
                ParseError::new(
                    format!(
                        "escape `{}` is not a valid unicode code point",
                        content.get(i..end).unwrap_or("\\")
                    ),
                    escape_span,
                )
            })?;
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// pest errors

fn from_pest(e: &pest::error::Error<Rule>, source: &str) -> ParseError {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = found_at(source, pos);
    match &e.variant {
        ErrorVariant::CustomError { message } => {
            let limit = message.contains("limit reached");
            let msg = if limit {
                "condition is too complex to parse".to_owned()
            } else {
                message.clone()
            };
            ParseError::new(msg, found.1)
        }
        ErrorVariant::ParsingError { positives, .. } => {
            let mut expected: Vec<&str> = Vec::new();
            for r in positives {
                let d = describe(*r);
                if !expected.contains(&d) {
                    expected.push(d);
                }
            }
            let mut err = ParseError::new(format!("unexpected {}", found.0), found.1);
            if !expected.is_empty() {
                err = err.with_label(format!("expected {}", join_or(&expected)));
            }
            let rest = source.get(pos..).unwrap_or_default();
            let prev = source.get(..pos).and_then(|b| b.chars().next_back());
            if let Some(hint) = common_mistake(prev, rest) {
                err = err.with_help(hint);
            } else if rest.starts_with('"') || rest.starts_with('\'') {
                err = err.with_help("is a string missing its closing quote, or an escape invalid?");
            } else if let Some((open, bracket)) = unclosed(source, pos) {
                let close = match bracket {
                    b'(' => ')',
                    b'[' => ']',
                    _ => '}',
                };
                let before = source.get(..open).unwrap_or_default();
                let word_start = before
                    .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map_or(0, |i| i + 1);
                let word = before.get(word_start..).unwrap_or_default();
                let what = if word.is_empty() {
                    format!("`{}`", char::from(bracket))
                } else {
                    format!("`{}` after `{word}`", char::from(bracket))
                };
                err = err.with_help(format!("the {what} is never closed: add `{close}`"));
            }
            err
        }
    }
}

/// A hint for mistakes people make when coming from other languages.
fn common_mistake(prev: Option<char>, rest: &str) -> Option<&'static str> {
    let word: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    match word.as_str() {
        "AND" | "And" => return Some("write `and` or `&&`"),
        "OR" | "Or" => return Some("write `or` or `||`"),
        "NOT" | "Not" => return Some("write `not` or `!`"),
        "is" => return Some("compare with `==` (`x == null` tests for null)"),
        _ => {}
    }
    if rest.starts_with('=') && matches!(prev, Some('=' | '!')) {
        Some("CEL compares with `==` and `!=`")
    } else if rest.starts_with('=') && !rest.starts_with("==") {
        Some("compare with `==`; CEL has no assignment")
    } else if rest.starts_with('&') && !rest.starts_with("&&") {
        Some("write `&&` or `and`")
    } else if rest.starts_with('|') && !rest.starts_with("||") {
        Some("write `||` or `or`")
    } else {
        None
    }
}

/// What the parser found at `pos`, for messages, and its span.
fn found_at(source: &str, pos: usize) -> (String, Span) {
    let rest = source.get(pos..).unwrap_or_default();
    let Some(first) = rest.chars().next() else {
        return ("end of condition".to_owned(), Span::new(pos, pos));
    };
    let len = if first.is_alphanumeric() || first == '_' {
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len())
    } else {
        first.len_utf8()
    };
    let token = rest.get(..len).unwrap_or_default();
    let shown = if first.is_whitespace() {
        "whitespace".to_owned()
    } else {
        format!("`{token}`")
    };
    (shown, Span::new(pos, pos + len))
}

fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of condition",
        Rule::op_or
        | Rule::op_and
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_lt
        | Rule::op_le
        | Rule::op_gt
        | Rule::op_ge
        | Rule::op_in
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div
        | Rule::op_rem
        | Rule::question => "an operator",
        Rule::colon => "`:`",
        Rule::select | Rule::index | Rule::opt_select | Rule::opt_index | Rule::call_args => "`.`, `[` or `(`",
        Rule::ident | Rule::field_name => "a name",
        _ => "an expression",
    }
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
