//! The abstract syntax tree of a condition, with byte spans into its source.
//!
//! Equality and hashing ignore spans, so structurally identical
//! sub-expressions compare equal: the compiler hash-conses on that.

use std::hash::{Hash, Hasher};

/// A byte range `start..end` into the condition's source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            start: clamp(start),
            end: clamp(end),
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// An expression node. `PartialEq` and `Hash` ignore the span.
#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Self { kind, span }
    }

    /// The depth of the tree (a leaf is 1), computed without recursion.
    pub fn depth(&self) -> usize {
        let mut max = 0;
        let mut stack: Vec<(&Expr, usize)> = vec![(self, 1)];
        while let Some((e, d)) = stack.pop() {
            max = max.max(d);
            e.for_each_child(|c| stack.push((c, d + 1)));
        }
        max
    }

    /// Calls `f` on each direct sub-expression, in source order.
    pub fn for_each_child<'a>(&'a self, mut f: impl FnMut(&'a Expr)) {
        match &self.kind {
            ExprKind::Literal(_) | ExprKind::Ident(_) => {}
            ExprKind::Select { operand, .. }
            | ExprKind::OptSelect { operand, .. }
            | ExprKind::Unary { operand, .. }
            | ExprKind::OptEntry(operand) => f(operand),
            ExprKind::Index { operand, index } | ExprKind::OptIndex { operand, index } => {
                f(operand);
                f(index);
            }
            ExprKind::Call { target, args, .. } => {
                if let Some(t) = target {
                    f(t);
                }
                args.iter().for_each(f);
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                f(lhs);
                f(rhs);
            }
            ExprKind::Ternary { cond, then, otherwise } => {
                f(cond);
                f(then);
                f(otherwise);
            }
            ExprKind::List(items) => items.iter().for_each(f),
            ExprKind::Map(entries) => {
                for (k, v) in entries {
                    f(k);
                    f(v);
                }
            }
            ExprKind::Comprehension(c) => {
                f(&c.range);
                if let Some(p) = &c.predicate {
                    f(p);
                }
                if let Some(t) = &c.transform {
                    f(t);
                }
            }
        }
    }

    /// Moves the direct sub-expressions out into `out`, leaving `null`
    /// literals behind. Lets very deep trees be dropped without recursion.
    pub fn take_children(&mut self, out: &mut Vec<Expr>) {
        let mut take = |e: &mut Expr| {
            out.push(std::mem::replace(
                e,
                Expr::new(ExprKind::Literal(Literal::Null), e.span),
            ));
        };
        match &mut self.kind {
            ExprKind::Literal(_) | ExprKind::Ident(_) => {}
            ExprKind::Select { operand, .. }
            | ExprKind::OptSelect { operand, .. }
            | ExprKind::Unary { operand, .. }
            | ExprKind::OptEntry(operand) => take(operand),
            ExprKind::Index { operand, index } | ExprKind::OptIndex { operand, index } => {
                take(operand);
                take(index);
            }
            ExprKind::Call { target, args, .. } => {
                if let Some(t) = target {
                    take(t);
                }
                out.append(args);
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                take(lhs);
                take(rhs);
            }
            ExprKind::Ternary { cond, then, otherwise } => {
                take(cond);
                take(then);
                take(otherwise);
            }
            ExprKind::List(items) => out.append(items),
            ExprKind::Map(entries) => {
                for (k, v) in entries.drain(..) {
                    out.push(k);
                    out.push(v);
                }
            }
            ExprKind::Comprehension(c) => {
                take(&mut c.range);
                if let Some(p) = c.predicate.take() {
                    out.push(p);
                }
                if let Some(t) = c.transform.take() {
                    out.push(t);
                }
            }
        }
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}
impl Eq for Expr {}
impl Hash for Expr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExprKind {
    Literal(Literal),
    /// A plain identifier: a root (`args`, `tool`, ...), a declared variable,
    /// or a macro's iteration variable. May be dotted when it names a
    /// qualified identifier in CEL (`a.b.c` is parsed as selects, though).
    Ident(String),
    /// `operand.field`; `test` is true for the `has(operand.field)` form.
    Select {
        operand: Box<Expr>,
        field: String,
        test: bool,
    },
    /// `operand[index]`.
    Index {
        operand: Box<Expr>,
        index: Box<Expr>,
    },
    /// `operand.?field` (CEL optionals): an optional, empty when the map
    /// has no such key (or the operand is an empty optional).
    OptSelect {
        operand: Box<Expr>,
        field: String,
    },
    /// `operand[?index]` (CEL optionals): an optional, empty when the map
    /// has no such key or the list no such index.
    OptIndex {
        operand: Box<Expr>,
        index: Box<Expr>,
    },
    /// `?x` as an element of a list literal (`[?x]`) or as the key of a map
    /// literal entry (`{?k: v}`): the element (entry) is there only when
    /// the optional `x` (`v`) has a value. The parser makes it nowhere else.
    OptEntry(Box<Expr>),
    /// A global call `f(args)` (target `None`) or a receiver-style call
    /// `target.f(args)`.
    Call {
        target: Option<Box<Expr>>,
        function: String,
        args: Vec<Expr>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `cond ? then : otherwise`.
    Ternary {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    List(Vec<Expr>),
    /// Map literal entries in source order.
    Map(Vec<(Expr, Expr)>),
    /// A macro expanded at parse time (`all`, `exists`, `exists_one`,
    /// `map`, `filter`, their two-variable forms, `transformList`,
    /// `transformMap`, `transformMapEntry`, `optMap`, `optFlatMap`).
    /// `has()` is a [`ExprKind::Select`] with `test`.
    Comprehension(Box<Comprehension>),
}

/// `range.all(var, predicate)` and friends.
///
/// With one variable, `var` is a list's item or a map's key. With two
/// (`all(i, v, p)`, `transformList(i, v, f)`...), `var` is a list's index
/// or a map's key and `var2` the item or value. For `optMap`/`optFlatMap`
/// the range is an optional and `var` its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Comprehension {
    pub kind: MacroKind,
    pub range: Expr,
    pub var: String,
    /// The second variable of a two-variable comprehension.
    pub var2: Option<String>,
    /// For `all`/`exists`/`exists_one`/`filter`: the predicate. For `map`
    /// and the `transform*` macros: the filter of the longer form, if any.
    pub predicate: Option<Expr>,
    /// For `map`, the `transform*` macros, `optMap` and `optFlatMap`: the
    /// transform.
    pub transform: Option<Expr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MacroKind {
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
    /// `transformList(i, v, [filter,] f)`: a list of `f` per entry.
    TransformList,
    /// `transformMap(k, v, [filter,] f)`: the same keys, values `f`.
    TransformMap,
    /// `transformMapEntry(k, v, [filter,] m)`: the union of the one-entry
    /// maps `m`.
    TransformMapEntry,
    /// `opt.optMap(v, f)`: `optional.of(f)` when `opt` has a value `v`.
    OptMap,
    /// `opt.optFlatMap(v, f)`: `f` (an optional) when `opt` has a value.
    OptFlatMap,
}

impl MacroKind {
    pub fn name(self) -> &'static str {
        match self {
            MacroKind::All => "all",
            MacroKind::Exists => "exists",
            MacroKind::ExistsOne => "exists_one",
            MacroKind::Map => "map",
            MacroKind::Filter => "filter",
            MacroKind::TransformList => "transformList",
            MacroKind::TransformMap => "transformMap",
            MacroKind::TransformMapEntry => "transformMapEntry",
            MacroKind::OptMap => "optMap",
            MacroKind::OptFlatMap => "optFlatMap",
        }
    }

    /// Whether the macro has a transform (`map`, `transform*`, `optMap`,
    /// `optFlatMap`); the predicate of the others is a filter for these.
    pub fn transforms(self) -> bool {
        matches!(
            self,
            MacroKind::Map
                | MacroKind::TransformList
                | MacroKind::TransformMap
                | MacroKind::TransformMapEntry
                | MacroKind::OptMap
                | MacroKind::OptFlatMap
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `!x` or `not x`.
    Not,
    /// `-x`.
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `||` or `or`.
    Or,
    /// `&&` or `and`.
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }

    /// CEL precedence, higher binds tighter: `||` 1, `&&` 2, relations and
    /// `in` 3, `+ -` 4, `* / %` 5. (Ternary is 0, unary 6, member 7.)
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::In => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 5,
        }
    }
}

/// A literal. `Double` compares and hashes by bit pattern so that the AST
/// can be hash-consed (`NaN == NaN` here, which is what identity wants).
#[derive(Clone, Debug)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Double(f64),
    String(String),
    Bytes(Vec<u8>),
}

impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Literal::Null, Literal::Null) => true,
            (Literal::Bool(a), Literal::Bool(b)) => a == b,
            (Literal::Int(a), Literal::Int(b)) => a == b,
            (Literal::Uint(a), Literal::Uint(b)) => a == b,
            (Literal::Double(a), Literal::Double(b)) => a.to_bits() == b.to_bits(),
            (Literal::String(a), Literal::String(b)) => a == b,
            (Literal::Bytes(a), Literal::Bytes(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Literal {}
impl Hash for Literal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Literal::Null => {}
            Literal::Bool(b) => b.hash(state),
            Literal::Int(i) => i.hash(state),
            Literal::Uint(u) => u.hash(state),
            Literal::Double(d) => d.to_bits().hash(state),
            Literal::String(s) => s.hash(state),
            Literal::Bytes(b) => b.hash(state),
        }
    }
}
