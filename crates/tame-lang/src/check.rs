//! The type checker: resolves every name and function against a
//! [`CheckEnv`] and its [`Registry`], and rejects what is statically wrong.
//!
//! `dyn` is compatible with everything, so valid CEL is never rejected;
//! only what cannot work at run time (`"a" + 1`, `size(1)`, `!"x"`, an
//! unknown root or function, a wrong number of arguments) is an error.
//! All errors of an expression are collected.

use indexmap::IndexMap;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::ast::{BinaryOp, Comprehension, Expr, ExprKind, Literal, MacroKind, Span, UnaryOp};
use crate::diag::CheckError;
use crate::registry::{Overload, Registry};
use crate::value::Type;

/// The names a condition may use, with their types, and the functions it
/// may call.
#[derive(Clone, Debug)]
pub struct CheckEnv<'r> {
    vars: IndexMap<String, Type, FxBuildHasher>,
    registry: &'r Registry,
}

/// Type names usable as values (`type(x) == int`).
const TYPE_NAMES: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "optional_type",
];

/// The fields of the `session` root.
const SESSION_FIELDS: &[&str] = &["id", "calls", "inputs", "labels"];

fn session_field(name: &str) -> Option<Type> {
    match name {
        "id" => Some(Type::String),
        // Every call, oldest first: `{tool, args, decision, rule, released,
        // at, result, source}`.
        "calls" => Some(Type::List(Box::new(Type::Map(
            Box::new(Type::String),
            Box::new(Type::Dyn),
        )))),
        "inputs" => Some(Type::List(Box::new(Type::String))),
        "labels" => Some(Type::List(Box::new(Type::String))),
        _ => None,
    }
}

impl<'r> CheckEnv<'r> {
    /// An environment with no variables.
    pub fn new(registry: &'r Registry) -> Self {
        Self {
            vars: IndexMap::default(),
            registry,
        }
    }

    /// The roots of a policy condition: `tool` (string), `args` and its
    /// alias `tool_args` (map(string, dyn)), `session`, `agent` and `user`
    /// (dyn: a string or null), `metadata` and its alias `context`
    /// (map(string, dyn)) and `now` (timestamp).
    pub fn policy(registry: &'r Registry) -> Self {
        let map = || Type::Map(Box::new(Type::String), Box::new(Type::Dyn));
        Self::new(registry)
            .with("tool", Type::String)
            .with("args", map())
            .with("tool_args", map())
            .with("session", Type::Session)
            .with("agent", Type::Dyn)
            .with("user", Type::Dyn)
            .with("metadata", map())
            .with("context", map())
            .with("now", Type::Timestamp)
            // The policy's `lists:`; an unknown name is a compile error.
            .with("lists", map())
    }

    /// Declares (or redeclares) a variable.
    pub fn declare(&mut self, name: impl Into<String>, ty: Type) -> &mut Self {
        self.vars.insert(name.into(), ty);
        self
    }

    /// Declares a variable, builder style.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, ty: Type) -> Self {
        self.declare(name, ty);
        self
    }

    pub fn var(&self, name: &str) -> Option<&Type> {
        self.vars.get(name)
    }

    /// Declared variables, in declaration order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Type)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn registry(&self) -> &'r Registry {
        self.registry
    }
}

/// Checks `expr` and returns its type, or every error found.
///
/// Trees deeper than [`MAX_DEPTH`](crate::MAX_DEPTH) (which the parser
/// never produces) are refused rather than walked.
pub fn check(expr: &Expr, env: &CheckEnv<'_>) -> Result<Type, Vec<CheckError>> {
    if expr.depth() > crate::parser::MAX_DEPTH {
        return Err(vec![CheckError::new(
            format!(
                "expression nests too deeply (more than {} levels)",
                crate::parser::MAX_DEPTH
            ),
            expr.span,
        )]);
    }
    let mut checker = Checker {
        env,
        scopes: Vec::new(),
        errors: Vec::new(),
    };
    let ty = checker.expr(expr);
    if checker.errors.is_empty() {
        Ok(ty)
    } else {
        Err(checker.errors)
    }
}

struct Checker<'a, 'r> {
    env: &'a CheckEnv<'r>,
    /// Macro variables in scope, innermost last.
    scopes: Vec<(&'a str, Type)>,
    errors: Vec<CheckError>,
}

fn is_numeric(t: &Type) -> bool {
    matches!(t, Type::Int | Type::Uint | Type::Double)
}

fn list(t: Type) -> Type {
    Type::List(Box::new(t))
}

fn optional(t: Type) -> Type {
    Type::Optional(Box::new(t))
}

/// The common type of two branches or elements: the type itself when
/// equal, `dyn` otherwise.
fn join(a: Type, b: &Type) -> Type {
    if a == *b { a } else { Type::Dyn }
}

/// Can values of these types ever be equal (or one be found in a
/// collection of the other)? Numbers compare across types; `null` and
/// `dyn` compare with anything.
fn comparable(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Dyn | Type::Null, _) | (_, Type::Dyn | Type::Null) => true,
        (Type::List(x), Type::List(y)) | (Type::Optional(x), Type::Optional(y)) => comparable(x, y),
        (Type::Map(k1, v1), Type::Map(k2, v2)) => comparable(k1, k2) && comparable(v1, v2),
        _ => a == b || (is_numeric(a) && is_numeric(b)),
    }
}

fn orderable(a: &Type, b: &Type) -> bool {
    let ordered = |t: &Type| {
        matches!(
            t,
            Type::Dyn
                | Type::Int
                | Type::Uint
                | Type::Double
                | Type::String
                | Type::Bytes
                | Type::Bool
                | Type::Timestamp
                | Type::Duration
        )
    };
    ordered(a)
        && ordered(b)
        && (matches!(a, Type::Dyn) || matches!(b, Type::Dyn) || a == b || (is_numeric(a) && is_numeric(b)))
}

/// Binds the type parameters of `param` to match `arg`; `dyn` matches
/// anything.
fn unify(param: &Type, arg: &Type, subst: &mut FxHashMap<&'static str, Type>) -> bool {
    match (param, arg) {
        (Type::Dyn, _) | (_, Type::Dyn) => true,
        (Type::Param(p), _) => match subst.get(p) {
            Some(bound) => {
                let bound = bound.clone();
                unify(&bound, arg, subst)
            }
            None => {
                subst.insert(p, arg.clone());
                true
            }
        },
        (Type::List(p), Type::List(a)) | (Type::Optional(p), Type::Optional(a)) => unify(p, a, subst),
        (Type::Map(pk, pv), Type::Map(ak, av)) => unify(pk, ak, subst) && unify(pv, av, subst),
        _ => param == arg,
    }
}

fn substitute(t: &Type, subst: &FxHashMap<&'static str, Type>) -> Type {
    match t {
        Type::Param(p) => subst.get(p).cloned().unwrap_or(Type::Dyn),
        Type::List(e) => list(substitute(e, subst)),
        Type::Optional(e) => optional(substitute(e, subst)),
        Type::Map(k, v) => Type::Map(Box::new(substitute(k, subst)), Box::new(substitute(v, subst))),
        other => other.clone(),
    }
}

/// Edit distance, for "did you mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(usize::from(ca != *cb));
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX).saturating_add(1);
            let ins = cur.get(j).copied().unwrap_or(usize::MAX).saturating_add(1);
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// The candidate closest to `name`, if close enough to be a likely typo.
fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (name.chars().count() / 3).max(1);
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&lower, &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// The dotted name of a chain of plain selects on an identifier
/// (`google.protobuf.Timestamp`), root first.
fn dotted(e: &Expr) -> Option<Vec<(&str, Span)>> {
    match &e.kind {
        ExprKind::Ident(name) => Some(vec![(name.as_str(), e.span)]),
        ExprKind::Select {
            operand,
            field,
            test: false,
        } => {
            let mut parts = dotted(operand)?;
            parts.push((field.as_str(), e.span));
            Some(parts)
        }
        _ => None,
    }
}

impl<'a> Checker<'a, '_> {
    fn error(&mut self, err: CheckError) -> Type {
        self.errors.push(err);
        Type::Dyn
    }

    fn lookup(&self, name: &str) -> Option<Type> {
        if let Some((_, t)) = self.scopes.iter().rev().find(|(n, _)| *n == name) {
            return Some(t.clone());
        }
        if let Some(t) = self.env.var(name) {
            return Some(t.clone());
        }
        TYPE_NAMES.contains(&name).then_some(Type::Type)
    }

    fn unknown_ident(&mut self, name: &str, span: Span) -> Type {
        let scoped: Vec<&str> = self.scopes.iter().map(|(n, _)| *n).collect();
        let candidates = scoped.into_iter().chain(self.env.vars.keys().map(String::as_str));
        let mut err = CheckError::new(format!("unknown identifier `{name}`"), span).with_label("not declared");
        if let Some(s) = closest(name, candidates) {
            err = err.with_help(format!("did you mean `{s}`?"));
        } else {
            let roots: Vec<&str> = self.env.vars.keys().map(String::as_str).collect();
            if !roots.is_empty() {
                err = err.with_help(format!("available roots: {}", roots.join(", ")));
            }
        }
        self.error(err)
    }

    fn expr(&mut self, e: &'a Expr) -> Type {
        match &e.kind {
            ExprKind::Literal(l) => match l {
                Literal::Null => Type::Null,
                Literal::Bool(_) => Type::Bool,
                Literal::Int(_) => Type::Int,
                Literal::Uint(_) => Type::Uint,
                Literal::Double(_) => Type::Double,
                Literal::String(_) => Type::String,
                Literal::Bytes(_) => Type::Bytes,
            },
            ExprKind::Ident(name) => match self.lookup(name) {
                Some(t) => t,
                None => self.unknown_ident(name, e.span),
            },
            ExprKind::Select { operand, field, test } => self.select(e, operand, field, *test),
            ExprKind::Index { operand, index } => {
                let ot = self.expr(operand);
                let it = self.expr(index);
                self.index(&ot, &it, index.span, e.span)
            }
            ExprKind::Call { target, function, args } => self.call(e, target.as_deref(), function, args),
            ExprKind::Unary { op, operand } => {
                let t = self.expr(operand);
                match (op, &t) {
                    (UnaryOp::Not, Type::Bool | Type::Dyn) => Type::Bool,
                    (UnaryOp::Neg, Type::Int | Type::Double | Type::Dyn) => t,
                    (UnaryOp::Not, _) => self.error(
                        CheckError::new(format!("`!` needs a bool, not `{}`", t.name()), operand.span)
                            .with_label(format!("this is `{}`", t.name())),
                    ),
                    (UnaryOp::Neg, _) => self.error(
                        CheckError::new(format!("cannot negate a value of type `{}`", t.name()), operand.span)
                            .with_label(format!("this is `{}`", t.name())),
                    ),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.expr(lhs);
                let r = self.expr(rhs);
                self.binary(*op, (&l, lhs.span), (&r, rhs.span), e.span)
            }
            ExprKind::Ternary { cond, then, otherwise } => {
                let c = self.expr(cond);
                if !matches!(c, Type::Bool | Type::Dyn) {
                    self.error(
                        CheckError::new(
                            format!("the condition of `? :` must be a bool, not `{}`", c.name()),
                            cond.span,
                        )
                        .with_label(format!("this is `{}`", c.name())),
                    );
                }
                let a = self.expr(then);
                let b = self.expr(otherwise);
                join(a, &b)
            }
            ExprKind::List(items) => {
                let mut elem: Option<Type> = None;
                for item in items {
                    let t = match &item.kind {
                        ExprKind::OptEntry(inner) => self.optional_entry(inner),
                        _ => self.expr(item),
                    };
                    elem = Some(match elem {
                        None => t,
                        Some(prev) => join(prev, &t),
                    });
                }
                list(elem.unwrap_or(Type::Dyn))
            }
            ExprKind::Map(entries) => {
                let mut key: Option<Type> = None;
                let mut value: Option<Type> = None;
                for (k, v) in entries {
                    let (k, optional_entry) = match &k.kind {
                        ExprKind::OptEntry(inner) => (&**inner, true),
                        _ => (k, false),
                    };
                    let kt = self.expr(k);
                    if !matches!(kt, Type::Int | Type::Uint | Type::Bool | Type::String | Type::Dyn) {
                        self.error(
                            CheckError::new(
                                format!("map keys must be int, uint, bool or string, not `{}`", kt.name()),
                                k.span,
                            )
                            .with_label(format!("this is `{}`", kt.name())),
                        );
                    }
                    let vt = if optional_entry {
                        self.optional_entry(v)
                    } else {
                        self.expr(v)
                    };
                    key = Some(key.map_or(kt.clone(), |p| join(p, &kt)));
                    value = Some(value.map_or(vt.clone(), |p| join(p, &vt)));
                }
                Type::Map(Box::new(key.unwrap_or(Type::Dyn)), Box::new(value.unwrap_or(Type::Dyn)))
            }
            ExprKind::Comprehension(c) => self.comprehension(c, e.span),
            ExprKind::OptSelect { operand, field } => {
                let t = self.expr(operand);
                let base = match t {
                    Type::Optional(inner) => *inner,
                    other => other,
                };
                let found = self.field(&base, field, false, e.span);
                optional(found)
            }
            ExprKind::OptIndex { operand, index } => {
                let t = self.expr(operand);
                let i = self.expr(index);
                let base = match t {
                    Type::Optional(inner) => *inner,
                    other => other,
                };
                let found = self.index(&base, &i, index.span, e.span);
                optional(found)
            }
            ExprKind::OptEntry(inner) => {
                self.expr(inner);
                self.error(
                    CheckError::new("`?` marks an optional element of a list or map literal only", e.span)
                        .with_help("write `[?x]` or `{?key: value}`, or use `x.orValue(default)`"),
                )
            }
        }
    }

    /// The type an optional element (`[?x]`) or entry value (`{?k: x}`)
    /// contributes: `x` must be an optional.
    fn optional_entry(&mut self, x: &'a Expr) -> Type {
        match self.expr(x) {
            Type::Optional(t) => *t,
            Type::Dyn => Type::Dyn,
            other => self.error(
                CheckError::new(
                    format!("an optional element must be an optional, not `{}`", other.name()),
                    x.span,
                )
                .with_label(format!("this is `{}`", other.name()))
                .with_help("wrap it: `?optional.of(x)`, or drop the `?`"),
            ),
        }
    }

    fn select(&mut self, e: &'a Expr, operand: &'a Expr, field: &str, test: bool) -> Type {
        // A qualified name: a type name, or a variable declared with dots.
        if !test
            && let Some(parts) = dotted(e)
            && let Some(&(root, root_span)) = parts.first()
            && self.lookup(root).is_none()
        {
            let names: Vec<&str> = parts.iter().map(|(n, _)| *n).collect();
            let full = names.join(".");
            if TYPE_NAMES.contains(&full.as_str()) {
                return Type::Type;
            }
            if let Some(t) = self.env.var(&full) {
                return t.clone();
            }
            // The longest declared prefix, then fields on it.
            for k in (2..names.len()).rev() {
                let prefix = names.get(..k).map(|p| p.join(".")).unwrap_or_default();
                if let Some(t) = self.env.var(&prefix) {
                    let mut t = t.clone();
                    for (i, name) in names.iter().enumerate().skip(k) {
                        let span = parts.get(i).map_or(e.span, |p| p.1);
                        t = self.field(&t, name, false, span);
                    }
                    return t;
                }
            }
            return self.unknown_ident(root, root_span);
        }
        let t = self.expr(operand);
        self.field(&t, field, test, e.span)
    }

    fn field(&mut self, t: &Type, field: &str, test: bool, span: Span) -> Type {
        // A field of an optional is an optional (CEL's optional chaining).
        if let Type::Optional(inner) = t {
            let found = self.field(inner, field, test, span);
            return if test { Type::Bool } else { optional(found) };
        }
        let found = match t {
            Type::Dyn => Type::Dyn,
            Type::Map(k, v) if matches!(**k, Type::String | Type::Dyn) => (**v).clone(),
            Type::Session => match session_field(field) {
                Some(t) => t,
                None => {
                    let mut err =
                        CheckError::new(format!("`session` has no field `{field}`"), span).with_label("unknown field");
                    err = match closest(field, SESSION_FIELDS.iter().copied()) {
                        Some(s) => err.with_help(format!("did you mean `session.{s}`?")),
                        None => err.with_help(format!(
                            "session fields: {}; methods: count(tool[, window]), called(tool), denied(tool[, window]), results(tool)",
                            SESSION_FIELDS.join(", ")
                        )),
                    };
                    return self.error(err);
                }
            },
            other => {
                let verb = if test { "test for" } else { "select" };
                return self.error(
                    CheckError::new(
                        format!("cannot {verb} field `{field}` of a value of type `{}`", other.name()),
                        span,
                    )
                    .with_label(format!("this is `{}`", other.name())),
                );
            }
        };
        if test { Type::Bool } else { found }
    }

    fn index(&mut self, operand: &Type, index: &Type, index_span: Span, span: Span) -> Type {
        match operand {
            Type::Optional(inner) => optional(self.index(inner, index, index_span, span)),
            Type::Dyn => Type::Dyn,
            Type::List(elem) => {
                if !matches!(index, Type::Int | Type::Uint | Type::Dyn) {
                    self.error(
                        CheckError::new(
                            format!("a list index must be an int, not `{}`", index.name()),
                            index_span,
                        )
                        .with_label(format!("this is `{}`", index.name())),
                    );
                }
                (**elem).clone()
            }
            Type::Map(k, v) => {
                if !comparable(k, index) {
                    self.error(
                        CheckError::new(
                            format!("this map has `{}` keys, not `{}`", k.name(), index.name()),
                            index_span,
                        )
                        .with_label(format!("this is `{}`", index.name())),
                    );
                }
                (**v).clone()
            }
            other => self.error(
                CheckError::new(format!("cannot index a value of type `{}`", other.name()), span)
                    .with_help("only lists and maps can be indexed"),
            ),
        }
    }

    fn binary(&mut self, op: BinaryOp, (l, ls): (&Type, Span), (r, rs): (&Type, Span), span: Span) -> Type {
        use Type::{Bool, Bytes, Double, Duration, Dyn, Int, String as Str, Timestamp, Uint};
        let sym = op.symbol();
        match op {
            BinaryOp::And | BinaryOp::Or => {
                for (t, s) in [(l, ls), (r, rs)] {
                    if !matches!(t, Bool | Dyn) {
                        self.error(
                            CheckError::new(format!("`{sym}` needs bool operands, not `{}`", t.name()), s)
                                .with_label(format!("this is `{}`", t.name())),
                        );
                    }
                }
                Bool
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                if !comparable(l, r) {
                    self.error(
                        CheckError::new(format!("cannot compare `{}` with `{}`", l.name(), r.name()), span)
                            .with_help("values of different types are never equal"),
                    );
                }
                Bool
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                if !orderable(l, r) {
                    self.error(CheckError::new(
                        format!("cannot order `{}` and `{}` with `{sym}`", l.name(), r.name()),
                        span,
                    ));
                }
                Bool
            }
            BinaryOp::In => {
                match r {
                    Dyn => {}
                    Type::List(e) | Type::Map(e, _) => {
                        if !comparable(l, e) {
                            self.error(CheckError::new(
                                format!("`{}` is never in a `{}`", l.name(), r.name()),
                                span,
                            ));
                        }
                    }
                    other => {
                        self.error(
                            CheckError::new(
                                format!("`in` needs a list or map on the right, not `{}`", other.name()),
                                rs,
                            )
                            .with_label(format!("this is `{}`", other.name())),
                        );
                    }
                }
                Bool
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                let result = match (op, l, r) {
                    (_, Dyn, Dyn) => Some(Dyn),
                    (BinaryOp::Add, Type::List(a), Type::List(b)) => Some(list(join((**a).clone(), b))),
                    (BinaryOp::Add, Timestamp, Duration) | (BinaryOp::Add, Duration, Timestamp) => Some(Timestamp),
                    (BinaryOp::Add | BinaryOp::Sub, Duration, Duration) => Some(Duration),
                    (BinaryOp::Sub, Timestamp, Timestamp) => Some(Duration),
                    (BinaryOp::Sub, Timestamp, Duration) => Some(Timestamp),
                    (BinaryOp::Add, Str, Str) | (BinaryOp::Add, Bytes, Bytes) => Some(l.clone()),
                    (BinaryOp::Rem, Int, Int) | (BinaryOp::Rem, Uint, Uint) => Some(l.clone()),
                    (BinaryOp::Rem, _, _) => rem_dyn(l, r),
                    (_, Int, Int) | (_, Uint, Uint) | (_, Double, Double) => Some(l.clone()),
                    (_, Dyn, other) | (_, other, Dyn) => arith_dyn(op, other),
                    _ => None,
                };
                match result {
                    Some(t) => t,
                    None => self.error(
                        CheckError::new(format!("no `{sym}` for `{}` and `{}`", l.name(), r.name()), span).with_help(
                            if is_numeric(l) && is_numeric(r) {
                                "convert one side, e.g. `double(x)`: arithmetic needs operands of the same numeric type"
                            } else {
                                "the operands' types do not support this operator"
                            },
                        ),
                    ),
                }
            }
        }
    }

    fn call(&mut self, e: &'a Expr, target: Option<&'a Expr>, function: &str, args: &'a [Expr]) -> Type {
        // A namespaced function (`optional.of(x)`, `strings.quote(s)`)
        // parses as a call on an identifier that names no variable.
        if let Some(t) = target
            && let ExprKind::Ident(ns) = &t.kind
            && self.lookup(ns).is_none()
        {
            let qualified = format!("{ns}.{function}");
            let registry = self.env.registry();
            if !registry.overloads(&qualified).is_empty() {
                return self.call(e, None, &qualified, args);
            }
            let prefix = format!("{ns}.");
            if registry.names().any(|n| n.starts_with(&prefix)) {
                let mut err =
                    CheckError::new(format!("unknown function `{qualified}`"), e.span).with_label("not declared");
                if let Some(s) = closest(&qualified, registry.names().filter(|n| n.starts_with(&prefix))) {
                    err = err.with_help(format!("did you mean `{s}`?"));
                }
                return self.error(err);
            }
        }
        // A macro's name that did not expand: its arguments are not
        // expressions to check (the variable is not declared).
        if self.env.registry().overloads(function).is_empty()
            && let Some(usage) = macro_usage(function)
        {
            return self.error(
                CheckError::new(
                    format!("`{function}` is a macro and takes {usage}"),
                    name_span(e, target, function),
                )
                .with_label(format!("called with {} argument(s)", args.len())),
            );
        }
        let target_type = target.map(|t| self.expr(t));
        let arg_types: Vec<Type> = args.iter().map(|a| self.expr(a)).collect();
        let registry = self.env.registry();
        let receiver = target.is_some();
        let all = registry.overloads(function);
        if all.is_empty() {
            let candidates = registry
                .names()
                .filter(|n| registry.overloads(n).iter().any(|o| o.receiver == receiver));
            let mut err = CheckError::new(format!("unknown function `{function}`"), name_span(e, target, function))
                .with_label("not declared");
            if let Some(s) = closest(function, candidates) {
                err = err.with_help(format!("did you mean `{s}`?"));
            }
            return self.error(err);
        }
        let styled: Vec<&Overload> = all.iter().filter(|o| o.receiver == receiver).collect();
        if styled.is_empty() {
            let help = if receiver {
                format!("`{function}` is a global function: write `{function}(x, ...)`")
            } else {
                format!("`{function}` is a method: write `x.{function}(...)`")
            };
            return self.error(
                CheckError::new(
                    format!("`{function}` cannot be called this way"),
                    name_span(e, target, function),
                )
                .with_help(help),
            );
        }
        let arity = args.len();
        let by_arity: Vec<&Overload> = styled.iter().copied().filter(|o| o.arity() == arity).collect();
        if by_arity.is_empty() {
            let mut arities: Vec<usize> = styled.iter().map(|o| o.arity()).collect();
            arities.sort_unstable();
            arities.dedup();
            let expected: Vec<String> = arities.iter().map(ToString::to_string).collect();
            let plural = if arities == [1] { "argument" } else { "arguments" };
            return self.error(
                CheckError::new(
                    format!("`{function}` takes {} {plural}, not {arity}", expected.join(" or ")),
                    e.span,
                )
                .with_help(signatures(function, &styled)),
            );
        }
        let mut actual: Vec<Type> = Vec::with_capacity(arity + 1);
        actual.extend(target_type);
        actual.extend(arg_types);
        let mut result: Option<Type> = None;
        for o in &by_arity {
            let mut subst = FxHashMap::default();
            if o.params.len() == actual.len() && o.params.iter().zip(&actual).all(|(p, a)| unify(p, a, &mut subst)) {
                let t = substitute(&o.result, &subst);
                result = Some(match result {
                    None => t,
                    Some(prev) => join(prev, &t),
                });
            }
        }
        match result {
            Some(t) => t,
            None => {
                let shown: Vec<String> = actual.iter().map(Type::name).collect();
                let shown = match (receiver, shown.split_first()) {
                    (true, Some((t, rest))) => format!("`{t}.{function}({})`", rest.join(", ")),
                    _ => format!("`{function}({})`", shown.join(", ")),
                };
                self.error(
                    CheckError::new(format!("no overload of `{function}` matches {shown}"), e.span)
                        .with_help(signatures(function, &by_arity)),
                )
            }
        }
    }

    fn comprehension(&mut self, c: &'a Comprehension, span: Span) -> Type {
        let range = self.expr(&c.range);
        let name = c.kind.name();
        if matches!(c.kind, MacroKind::OptMap | MacroKind::OptFlatMap) {
            let value = match &range {
                Type::Dyn => Type::Dyn,
                Type::Optional(t) => (**t).clone(),
                other => self.error(
                    CheckError::new(
                        format!("`{name}` needs an optional, not `{}`", other.name()),
                        c.range.span,
                    )
                    .with_label(format!("this is `{}`", other.name())),
                ),
            };
            self.scopes.push((c.var.as_str(), value));
            let t = c.transform.as_ref().map_or(Type::Dyn, |t| self.expr(t));
            self.scopes.pop();
            return match c.kind {
                MacroKind::OptMap => optional(t),
                _ => match t {
                    Type::Optional(_) | Type::Dyn => t,
                    other => self.error(
                        CheckError::new(
                            format!(
                                "the transform of `optFlatMap` must be an optional, not `{}`",
                                other.name()
                            ),
                            c.transform.as_ref().map_or(c.range.span, |t| t.span),
                        )
                        .with_help("use `optMap` to wrap a plain value"),
                    ),
                },
            };
        }
        // (first variable, second variable): one variable is a list's item
        // or a map's key; two are a list's index and item or a map's key
        // and value.
        let (first, second) = match &range {
            Type::Dyn => (Type::Dyn, Type::Dyn),
            Type::List(e) => {
                if c.var2.is_some() {
                    (Type::Int, (**e).clone())
                } else {
                    ((**e).clone(), Type::Dyn)
                }
            }
            Type::Map(k, v) => ((**k).clone(), (**v).clone()),
            other => {
                let t = self.error(
                    CheckError::new(
                        format!("`{name}` needs a list or map, not `{}`", other.name()),
                        c.range.span,
                    )
                    .with_label(format!("this is `{}`", other.name())),
                );
                (t, Type::Dyn)
            }
        };
        self.scopes.push((c.var.as_str(), first.clone()));
        if let Some(v2) = &c.var2 {
            self.scopes.push((v2.as_str(), second.clone()));
        }
        if let Some(p) = &c.predicate {
            let t = self.expr(p);
            if !matches!(t, Type::Bool | Type::Dyn) {
                let what = if c.transform.is_some() { "filter" } else { "predicate" };
                self.error(
                    CheckError::new(
                        format!("the {what} of `{name}` must be a bool, not `{}`", t.name()),
                        p.span,
                    )
                    .with_label(format!("this is `{}`", t.name())),
                );
            }
        }
        let transform = c.transform.as_ref().map(|t| (self.expr(t), t.span));
        self.scopes.pop();
        if c.var2.is_some() {
            self.scopes.pop();
        }
        let transformed = transform.as_ref().map_or(Type::Dyn, |(t, _)| t.clone());
        match c.kind {
            MacroKind::All | MacroKind::Exists | MacroKind::ExistsOne => Type::Bool,
            MacroKind::Filter => list(first),
            MacroKind::Map | MacroKind::TransformList => list(transformed),
            MacroKind::TransformMap => {
                let key = match &range {
                    Type::List(_) => Type::Int,
                    _ => first,
                };
                Type::Map(Box::new(key), Box::new(transformed))
            }
            MacroKind::TransformMapEntry => match transformed {
                t @ (Type::Map(..) | Type::Dyn) => t,
                other => self.error(
                    CheckError::new(
                        format!(
                            "the transform of `transformMapEntry` must be a map, not `{}`",
                            other.name()
                        ),
                        transform.map_or(span, |(_, s)| s),
                    )
                    .with_help("return a one-entry map: `{k: v}`"),
                ),
            },
            MacroKind::OptMap | MacroKind::OptFlatMap => Type::Dyn,
        }
    }
}

/// The type of `dyn % t` (or `t % dyn`), if `%` can apply.
fn rem_dyn(l: &Type, r: &Type) -> Option<Type> {
    match (l, r) {
        (Type::Dyn, Type::Int | Type::Uint) => Some(r.clone()),
        (Type::Int | Type::Uint, Type::Dyn) => Some(l.clone()),
        _ => None,
    }
}

/// The type of `dyn op t` (or `t op dyn`), if the operator can apply.
fn arith_dyn(op: BinaryOp, other: &Type) -> Option<Type> {
    match (op, other) {
        (_, Type::Int | Type::Uint | Type::Double) => Some(other.clone()),
        (BinaryOp::Add, Type::String | Type::Bytes | Type::List(_)) => Some(other.clone()),
        (BinaryOp::Add | BinaryOp::Sub, Type::Timestamp | Type::Duration) => Some(Type::Dyn),
        _ => None,
    }
}

/// How a macro is called, for calls of a macro's name that did not expand.
fn macro_usage(function: &str) -> Option<&'static str> {
    match function {
        "all" | "exists" | "exists_one" | "existsOne" => {
            Some("one or two variables and a predicate: `list.all(x, x > 0)`, `list.all(i, x, x > i)`")
        }
        "filter" => Some("a variable and a predicate: `list.filter(x, x > 0)`"),
        "transformList" | "transformMap" | "transformMapEntry" => {
            Some("two variables, an optional filter and a transform: `list.transformList(i, x, x * i)`")
        }
        "optMap" | "optFlatMap" => Some("a variable and a transform: `opt.optMap(x, x + 1)`"),
        "map" => Some("a variable, an optional filter and a transform: `list.map(x, x * 2)`"),
        "has" => Some("one field selection: `has(args.path)`"),
        _ => None,
    }
}

/// Where the function's name is in a call: right after the target's `.`
/// (assuming no blanks around it), or at the start of a global call.
fn name_span(call: &Expr, target: Option<&Expr>, function: &str) -> Span {
    let start = target.map_or(call.span.start, |t| t.span.end.saturating_add(1));
    let len = u32::try_from(function.len()).unwrap_or(u32::MAX);
    let end = start.saturating_add(len).min(call.span.end);
    Span {
        start: start.min(end),
        end,
    }
}

fn signatures(function: &str, overloads: &[&Overload]) -> String {
    let sigs: Vec<String> = overloads
        .iter()
        .map(|o| format!("`{}`", o.signature(function)))
        .collect();
    format!("expected {}", sigs.join(" or "))
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
