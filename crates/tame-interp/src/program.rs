//! Compiled programs and their evaluation (the hot path).
//!
//! A [`Program`] is a tree of [`Node`]s whose names are already resolved
//! to slots, whose regexes and globs are compiled and whose constant
//! sub-expressions are folded. Evaluation borrows values where it can
//! (`args.path` reads through the activation without touching reference
//! counts) and allocates only when an operation builds a new value.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use tame_lang::{BinaryOp, HostFn, Key, MacroKind, Span, Value, ValueMap};

use crate::SessionFacts;
use crate::error::EvalError;
use crate::funcs::{Builtin, Cidr};
use crate::ops;

/// The values a program runs against.
pub struct Activation<'a> {
    /// Variable values by slot (see [`crate::Env::declare`] and
    /// [`crate::roots`]).
    pub vars: &'a [Value],
    /// The session's facts for `session.*`.
    pub facts: &'a dyn SessionFacts,
    /// The value of `now`.
    pub now: jiff::Timestamp,
}

impl std::fmt::Debug for Activation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation")
            .field("vars", &self.vars)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<'a> Activation<'a> {
    pub fn new(vars: &'a [Value], facts: &'a dyn SessionFacts, now: jiff::Timestamp) -> Self {
        Self { vars, facts, now }
    }
}

/// String tests with a constant argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// A compiled node.
#[derive(Clone)]
pub(crate) enum Node {
    Const(Value),
    /// A run-time error known at compile time (lenient mode, folded errors).
    Fail(EvalError),
    Slot {
        slot: usize,
        span: Span,
    },
    Local(usize),
    Now,
    Select {
        operand: Box<Node>,
        key: Key,
        span: Span,
    },
    /// `var.field` on a slot (`args.path`): the hot path, one step.
    SlotField {
        slot: usize,
        key: Key,
        span: Span,
    },
    Has {
        operand: Box<Node>,
        key: Key,
        span: Span,
    },
    Index {
        operand: Box<Node>,
        index: Box<Node>,
        span: Span,
    },
    /// `operand.?key`: an optional.
    OptSelect {
        operand: Box<Node>,
        key: Key,
        span: Span,
    },
    /// `operand[?index]`: an optional.
    OptIndex {
        operand: Box<Node>,
        index: Box<Node>,
        span: Span,
    },
    /// `?x` in a list literal or as a map literal's key: the element
    /// (entry) is there only when the optional has a value. Evaluated by
    /// the list or map, never on its own.
    OptElem(Box<Node>, Span),
    /// `lhs.orValue(rhs)` (`value`) or `lhs.or(rhs)`: `rhs` is evaluated
    /// only when the optional `lhs` is empty.
    OptOr {
        lhs: Box<Node>,
        rhs: Box<Node>,
        value: bool,
        span: Span,
    },
    Not {
        operand: Box<Node>,
        span: Span,
    },
    Neg {
        operand: Box<Node>,
        span: Span,
    },
    And(Box<Node>, Box<Node>, Span),
    Or(Box<Node>, Box<Node>, Span),
    Ternary {
        cond: Box<Node>,
        then: Box<Node>,
        otherwise: Box<Node>,
        span: Span,
    },
    Eq(Box<Node>, Box<Node>),
    Ne(Box<Node>, Box<Node>),
    Rel {
        op: BinaryOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        span: Span,
    },
    Arith {
        op: BinaryOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        span: Span,
    },
    In {
        lhs: Box<Node>,
        rhs: Box<Node>,
        span: Span,
    },
    List(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        span: Span,
    },
    Comprehension(Box<Compr>),
    /// Placed every few levels of a deep program: makes sure enough stack
    /// is left before descending further (growing it on the heap if not).
    /// Shallow programs have none, so the hot path pays nothing.
    Grow(Box<Node>),
    /// `x in [...]` over a long constant list of strings: a hash lookup.
    InStrSet {
        lhs: Box<Node>,
        set: Arc<rustc_hash::FxHashSet<Arc<str>>>,
    },
    Call {
        func: Builtin,
        args: Vec<Node>,
        span: Span,
    },
    StrTest {
        op: StrOp,
        target: Box<Node>,
        lit: Arc<str>,
        span: Span,
    },
    Regex {
        target: Box<Node>,
        re: Arc<regex::Regex>,
        span: Span,
    },
    Glob {
        target: Box<Node>,
        glob: Arc<globset::GlobMatcher>,
        span: Span,
    },
    /// A timestamp accessor with a constant time zone, resolved once.
    TsPartTz {
        target: Box<Node>,
        part: crate::time::TsPart,
        tz: jiff::tz::TimeZone,
        span: Span,
    },
    InCidr {
        target: Box<Node>,
        net: Cidr,
        span: Span,
    },
    Host {
        name: Arc<str>,
        func: HostFn,
        args: Vec<Node>,
        span: Span,
    },
    /// A session fact or provenance check (`crate::session`).
    Session(Box<crate::session::SessionNode>),
}

#[derive(Clone)]
pub(crate) struct Compr {
    pub kind: MacroKind,
    pub range: Node,
    pub local: usize,
    /// The second variable of a two-variable comprehension.
    pub local2: Option<usize>,
    pub predicate: Option<Node>,
    pub transform: Option<Node>,
    pub span: Span,
}

/// A compiled condition. Cheap to share (`Send + Sync`); evaluate it as
/// often as needed.
#[derive(Clone)]
pub struct Program {
    pub(crate) root: Node,
    pub(crate) locals: usize,
    pub(crate) var_names: Arc<[String]>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("locals", &self.locals)
            .field("constant", &self.constant())
            .finish_non_exhaustive()
    }
}

impl Program {
    /// Evaluates the program.
    pub fn eval(&self, act: &Activation<'_>) -> Result<Value, EvalError> {
        let cx = Cx::new(act, self);
        self.root.eval(&cx).map(Cow::into_owned).map_err(|e| *e)
    }

    /// Evaluates a condition that must be a bool (no clone of the result).
    pub fn eval_bool(&self, act: &Activation<'_>) -> Result<bool, EvalError> {
        let cx = Cx::new(act, self);
        let v = self.root.eval(&cx).map_err(|e| *e)?;
        match &*v {
            Value::Bool(b) => Ok(*b),
            other => Err(EvalError::new(
                format!("condition is {}, not bool", other.type_of().name()),
                self.root.span(),
            )),
        }
    }

    /// The program's value when it folded to a constant.
    pub fn constant(&self) -> Option<&Value> {
        match &self.root {
            Node::Const(v) => Some(v),
            _ => None,
        }
    }
}

pub(crate) struct Cx<'a> {
    act: &'a Activation<'a>,
    locals: RefCell<Vec<Value>>,
    names: &'a [String],
}

impl<'a> Cx<'a> {
    fn new(act: &'a Activation<'a>, p: &'a Program) -> Self {
        let locals = if p.locals == 0 {
            Vec::new()
        } else {
            vec![Value::Null; p.locals]
        };
        Cx {
            act,
            locals: RefCell::new(locals),
            names: &p.var_names,
        }
    }

    /// A context for folding constants: no locals, no variables.
    pub(crate) fn for_folding(act: &'a Activation<'a>) -> Self {
        Cx {
            act,
            locals: RefCell::new(Vec::new()),
            names: &[],
        }
    }

    /// The session's facts.
    pub(crate) fn facts(&self) -> &'a dyn SessionFacts {
        self.act.facts
    }

    fn set_local(&self, i: usize, v: Value, span: Span) -> Result<(), Fault> {
        let mut l = self
            .locals
            .try_borrow_mut()
            .map_err(|_| fault("internal error: locals busy", span))?;
        match l.get_mut(i) {
            Some(slot) => {
                *slot = v;
                Ok(())
            }
            None => Err(fault("internal error: bad local", span)),
        }
    }
}

/// Stack that must be left when a [`Node::Grow`] is reached: enough for
/// the levels up to the next one, even with debug builds' large frames.
pub(crate) const STACK_RED_ZONE: usize = 1024 * 1024;
/// Size of a new stack segment when less than the red zone is left.
pub(crate) const STACK_GROW: usize = 4 * 1024 * 1024;
/// Levels between two [`Node::Grow`] (and between stack checks of the
/// compiler).
pub(crate) const GROW_EVERY: usize = 32;

/// Errors travel boxed inside the evaluator so that results stay small.
pub(crate) type Fault = Box<EvalError>;

type Out<'s> = Result<Cow<'s, Value>, Fault>;

pub(crate) fn fault(msg: impl Into<String>, span: Span) -> Fault {
    Box::new(EvalError::new(msg, span))
}

fn owned<'s>(v: Value) -> Out<'s> {
    Ok(Cow::Owned(v))
}

fn err<'s>(msg: impl Into<String>, span: Span) -> Out<'s> {
    Err(fault(msg, span))
}

/// Runs a host function. Errors become messages; the caller adds the span.
/// A host function that panics is an error of the call, not a crash of
/// the evaluator (with `panic = "unwind"`).
fn call_host(func: &HostFn, args: &[Value]) -> Result<Value, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| func(args)))
        .unwrap_or_else(|_| Err("host function panicked".to_string()))
}

impl Node {
    pub(crate) fn span(&self) -> Span {
        match self {
            Node::Fail(e) => e.span,
            Node::Slot { span, .. }
            | Node::Select { span, .. }
            | Node::SlotField { span, .. }
            | Node::Has { span, .. }
            | Node::Index { span, .. }
            | Node::OptSelect { span, .. }
            | Node::OptIndex { span, .. }
            | Node::OptElem(_, span)
            | Node::OptOr { span, .. }
            | Node::Not { span, .. }
            | Node::Neg { span, .. }
            | Node::And(_, _, span)
            | Node::Or(_, _, span)
            | Node::Ternary { span, .. }
            | Node::Rel { span, .. }
            | Node::Arith { span, .. }
            | Node::In { span, .. }
            | Node::Map { span, .. }
            | Node::Call { span, .. }
            | Node::StrTest { span, .. }
            | Node::Regex { span, .. }
            | Node::Glob { span, .. }
            | Node::InCidr { span, .. }
            | Node::TsPartTz { span, .. }
            | Node::Host { span, .. } => *span,
            Node::Session(n) => n.span,
            Node::Comprehension(c) => c.span,
            Node::Grow(n) => n.span(),
            Node::Eq(a, b) | Node::Ne(a, b) => a.span().to(b.span()),
            _ => Span::default(),
        }
    }

    /// Evaluates to a boolean for `&&`, `||`, `!` and `?:`.
    fn eval_bool<'s>(&'s self, cx: &'s Cx<'s>, what: &str) -> Result<bool, Fault> {
        match &*self.eval(cx)? {
            Value::Bool(b) => Ok(*b),
            other => Err(fault(
                format!(
                    "no matching overload: `{what}` needs bool, got {}",
                    other.type_of().name()
                ),
                self.span(),
            )),
        }
    }

    pub(crate) fn eval<'s>(&'s self, cx: &'s Cx<'s>) -> Out<'s> {
        match self {
            Node::Const(v) => Ok(Cow::Borrowed(v)),
            Node::Fail(e) => Err(Box::new(e.clone())),
            Node::Slot { slot, span } => match cx.act.vars.get(*slot) {
                Some(v) => Ok(Cow::Borrowed(v)),
                None => {
                    let name = cx.names.get(*slot).map_or("?", String::as_str);
                    err(format!("no value bound for variable `{name}`"), *span)
                }
            },
            Node::Local(i) => match cx.locals.try_borrow().ok().and_then(|l| l.get(*i).cloned()) {
                Some(v) => owned(v),
                None => err("internal error: bad local", Span::default()),
            },
            Node::Now => owned(Value::Timestamp(cx.act.now)),
            Node::SlotField { slot, key, span } => match cx.act.vars.get(*slot) {
                Some(v) => select(Cow::Borrowed(v), key, *span),
                None => {
                    let name = cx.names.get(*slot).map_or("?", String::as_str);
                    err(format!("no value bound for variable `{name}`"), *span)
                }
            },
            Node::Select { operand, key, span } => {
                let base = operand.eval(cx)?;
                select(base, key, *span)
            }
            Node::Has { operand, key, span } => match &*operand.eval(cx)? {
                Value::Map(m) => owned(Value::Bool(m.contains_key(key))),
                // `has(opt.f)`: false when empty, else `has(value.f)`.
                Value::Optional(None) => owned(Value::Bool(false)),
                Value::Optional(Some(v)) => match &**v {
                    Value::Map(m) => owned(Value::Bool(m.contains_key(key))),
                    other => err(format!("no such overload: has() on {}", other.type_of().name()), *span),
                },
                other => err(format!("no such overload: has() on {}", other.type_of().name()), *span),
            },
            Node::OptSelect { operand, key, span } => crate::optional::select(&*operand.eval(cx)?, key)
                .map(Cow::Owned)
                .map_err(|m| fault(m, *span)),
            Node::OptIndex { operand, index, span } => {
                let base = operand.eval(cx)?;
                let idx = index.eval(cx)?;
                crate::optional::index(&base, &idx)
                    .map(Cow::Owned)
                    .map_err(|m| fault(m, *span))
            }
            Node::OptElem(_, span) => err("internal error: optional element outside a list or map", *span),
            Node::OptOr { lhs, rhs, value, span } => match &*lhs.eval(cx)? {
                Value::Optional(Some(v)) => {
                    if *value {
                        owned((**v).clone())
                    } else {
                        owned(Value::Optional(Some(v.clone())))
                    }
                }
                Value::Optional(None) => {
                    let r = rhs.eval(cx)?;
                    match (&*r, value) {
                        (_, true) | (Value::Optional(_), false) => Ok(r),
                        (other, false) => err(ops::no_overload("or", &[&Value::Optional(None), other]), *span),
                    }
                }
                other => err(ops::no_overload(if *value { "orValue" } else { "or" }, &[other]), *span),
            },
            Node::Index { operand, index, span } => {
                let base = operand.eval(cx)?;
                let idx = index.eval(cx)?;
                index_value(base, &idx, *span)
            }
            Node::Not { operand, .. } => owned(Value::Bool(!operand.eval_bool(cx, "!")?)),
            Node::Neg { operand, span } => ops::negate(&*operand.eval(cx)?)
                .map(Cow::Owned)
                .map_err(|m| fault(m, *span)),
            Node::And(a, b, _) => {
                // CEL: false wins over errors on either side.
                match a.eval_bool(cx, "&&") {
                    Ok(false) => owned(Value::Bool(false)),
                    Ok(true) => b.eval_bool(cx, "&&").map(|v| Cow::Owned(Value::Bool(v))),
                    Err(e) => match b.eval_bool(cx, "&&") {
                        Ok(false) => owned(Value::Bool(false)),
                        _ => Err(e),
                    },
                }
            }
            Node::Or(a, b, _) => match a.eval_bool(cx, "||") {
                Ok(true) => owned(Value::Bool(true)),
                Ok(false) => b.eval_bool(cx, "||").map(|v| Cow::Owned(Value::Bool(v))),
                Err(e) => match b.eval_bool(cx, "||") {
                    Ok(true) => owned(Value::Bool(true)),
                    _ => Err(e),
                },
            },
            Node::Ternary {
                cond, then, otherwise, ..
            } => {
                if cond.eval_bool(cx, "_?_:_")? {
                    then.eval(cx)
                } else {
                    otherwise.eval(cx)
                }
            }
            Node::Eq(a, b) => {
                let x = a.eval(cx)?;
                let y = b.eval(cx)?;
                owned(Value::Bool(ops::equals(&x, &y)))
            }
            Node::Ne(a, b) => {
                let x = a.eval(cx)?;
                let y = b.eval(cx)?;
                owned(Value::Bool(!ops::equals(&x, &y)))
            }
            Node::Rel { op, lhs, rhs, span } => {
                let x = lhs.eval(cx)?;
                let y = rhs.eval(cx)?;
                ops::relation(&x, &y, *op)
                    .map(|b| Cow::Owned(Value::Bool(b)))
                    .map_err(|m| fault(m, *span))
            }
            Node::Arith { op, lhs, rhs, span } => {
                let x = lhs.eval(cx)?;
                let y = rhs.eval(cx)?;
                ops::arith(*op, &x, &y).map(Cow::Owned).map_err(|m| fault(m, *span))
            }
            Node::In { lhs, rhs, span } => {
                let x = lhs.eval(cx)?;
                let y = rhs.eval(cx)?;
                match &*y {
                    Value::List(l) => owned(Value::Bool(ops::in_list(&x, l))),
                    Value::Map(m) => owned(Value::Bool(ops::map_get(m, &x).is_some())),
                    other => err(ops::no_overload("in", &[&x, other]), *span),
                }
            }
            Node::InStrSet { lhs, set } => {
                let found = match &*lhs.eval(cx)? {
                    Value::String(x) => set.contains(&**x),
                    // Heterogeneous equality is false, never an error.
                    _ => false,
                };
                owned(Value::Bool(found))
            }
            Node::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    if let Node::OptElem(x, span) = i {
                        if let Some(v) = opt_entry(&*x.eval(cx)?, *span)? {
                            out.push(v);
                        }
                        continue;
                    }
                    out.push(i.eval(cx)?.into_owned());
                }
                owned(Value::List(Arc::from(out)))
            }
            Node::Map { entries, span } => {
                let mut m = ValueMap::with_capacity_and_hasher(entries.len(), Default::default());
                for (k, v) in entries {
                    let (k, optional) = match k {
                        Node::OptElem(inner, _) => (&**inner, true),
                        k => (k, false),
                    };
                    let key = ops::to_key(&*k.eval(cx)?).map_err(|e| fault(e, k.span()))?;
                    if ops::map_has_key(&m, &key) {
                        return err(format!("Failed with repeated key: {}", key_text(&key)), *span);
                    }
                    let val = if optional {
                        match opt_entry(&*v.eval(cx)?, v.span())? {
                            Some(val) => val,
                            None => continue,
                        }
                    } else {
                        v.eval(cx)?.into_owned()
                    };
                    m.insert(key, val);
                }
                owned(Value::Map(Arc::new(m)))
            }
            Node::Comprehension(c) => eval_comprehension(c, cx),
            Node::Grow(n) => stacker::maybe_grow(STACK_RED_ZONE, STACK_GROW, || n.eval(cx)),
            Node::Call { func, args, span } => {
                let r = match args.as_slice() {
                    [a] => func.call(&[&*a.eval(cx)?]),
                    [a, b] => {
                        let a = a.eval(cx)?;
                        let b = b.eval(cx)?;
                        func.call(&[&a, &b])
                    }
                    [a, b, c] => {
                        let a = a.eval(cx)?;
                        let b = b.eval(cx)?;
                        let c = c.eval(cx)?;
                        func.call(&[&a, &b, &c])
                    }
                    [a, b, c, d] => {
                        let a = a.eval(cx)?;
                        let b = b.eval(cx)?;
                        let c = c.eval(cx)?;
                        let d = d.eval(cx)?;
                        func.call(&[&a, &b, &c, &d])
                    }
                    _ => func.call(&[]),
                };
                r.map(Cow::Owned).map_err(|m| fault(m, *span))
            }
            Node::StrTest { op, target, lit, span } => match &*target.eval(cx)? {
                Value::String(s) => owned(Value::Bool(match op {
                    StrOp::Contains => s.contains(&**lit),
                    StrOp::StartsWith => s.starts_with(&**lit),
                    StrOp::EndsWith => s.ends_with(&**lit),
                })),
                other => err(
                    ops::no_overload(str_op_name(*op), &[other, &Value::String(lit.clone())]),
                    *span,
                ),
            },
            Node::Regex { target, re, span } => match &*target.eval(cx)? {
                Value::String(s) => owned(Value::Bool(re.is_match(s))),
                other => err(ops::no_overload("matches", &[other]), *span),
            },
            Node::Glob { target, glob, span } => match &*target.eval(cx)? {
                Value::String(s) => owned(Value::Bool(glob.is_match(&**s))),
                other => err(ops::no_overload("glob", &[other]), *span),
            },
            Node::TsPartTz { target, part, tz, span } => match &*target.eval(cx)? {
                Value::Timestamp(t) => owned(Value::Int(part.of_timestamp(*t, tz))),
                other => err(ops::no_overload("timestamp accessor", &[other]), *span),
            },
            Node::InCidr { target, net, span } => match &*target.eval(cx)? {
                Value::String(s) => match s.parse::<std::net::IpAddr>() {
                    Ok(ip) => owned(Value::Bool(net.contains(ip))),
                    Err(_) => err(format!("invalid IP address `{s}`"), *span),
                },
                other => err(ops::no_overload("containsIP", &[other]), *span),
            },
            Node::Host { name, func, args, span } => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(a.eval(cx)?.into_owned());
                }
                call_host(func, &vals)
                    .map(Cow::Owned)
                    .map_err(|m| fault(format!("{name}: {m}"), *span))
            }
            Node::Session(n) => n.eval(cx),
        }
    }
}

fn str_op_name(op: StrOp) -> &'static str {
    match op {
        StrOp::Contains => "contains",
        StrOp::StartsWith => "startsWith",
        StrOp::EndsWith => "endsWith",
    }
}

pub(crate) fn key_text(k: &Key) -> String {
    match k {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => format!("{u}u"),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => format!("'{s}'"),
    }
}

fn select<'s>(base: Cow<'s, Value>, key: &Key, span: Span) -> Out<'s> {
    let missing = || {
        let name = match key {
            Key::String(s) => s.to_string(),
            other => key_text(other),
        };
        fault(format!("no such key: {name}"), span)
    };
    match base {
        Cow::Borrowed(Value::Map(m)) => m.get(key).map(Cow::Borrowed).ok_or_else(missing),
        Cow::Owned(Value::Map(m)) => m.get(key).cloned().map(Cow::Owned).ok_or_else(missing),
        // A field of an optional is an optional, empty when absent.
        Cow::Borrowed(o @ Value::Optional(_)) => crate::optional::select(o, key)
            .map(Cow::Owned)
            .map_err(|m| fault(m, span)),
        Cow::Owned(o @ Value::Optional(_)) => crate::optional::select(&o, key)
            .map(Cow::Owned)
            .map_err(|m| fault(m, span)),
        other => err(
            format!("type '{}' does not support field selection", other.type_of().name()),
            span,
        ),
    }
}

fn index_value<'s>(base: Cow<'s, Value>, idx: &Value, span: Span) -> Out<'s> {
    if let Value::Optional(_) = &*base {
        // An index of an optional is an optional, empty when absent.
        return crate::optional::index(&base, idx)
            .map(Cow::Owned)
            .map_err(|m| fault(m, span));
    }
    match base {
        Cow::Borrowed(Value::Map(m)) => match ops::map_get(m, idx) {
            Some(v) => Ok(Cow::Borrowed(v)),
            None => err(format!("no such key: {}", display_key(idx)), span),
        },
        Cow::Owned(Value::Map(m)) => match ops::map_get(&m, idx) {
            Some(v) => owned(v.clone()),
            None => err(format!("no such key: {}", display_key(idx)), span),
        },
        Cow::Borrowed(Value::List(l)) => ops::list_index(l, idx).map(Cow::Owned).map_err(|m| fault(m, span)),
        Cow::Owned(Value::List(l)) => ops::list_index(&l, idx).map(Cow::Owned).map_err(|m| fault(m, span)),
        other => err(ops::no_overload("[]", &[&other, idx]), span),
    }
}

/// The value an optional element or entry contributes: `None` when the
/// optional is empty; an error when it is not an optional.
fn opt_entry(v: &Value, span: Span) -> Result<Option<Value>, Fault> {
    match v {
        Value::Optional(o) => Ok(o.as_deref().cloned()),
        other => Err(fault(
            format!(
                "an optional element must be an optional, not {}",
                other.type_of().name()
            ),
            span,
        )),
    }
}

fn display_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => format!("{u}u"),
        Value::Double(d) => d.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.type_of().name(),
    }
}

/// What a comprehension iterates over.
#[derive(Clone, Copy)]
enum Range<'v> {
    List(&'v [Value]),
    Map(&'v ValueMap),
}

impl Range<'_> {
    fn len(self) -> usize {
        match self {
            Range::List(l) => l.len(),
            Range::Map(m) => m.len(),
        }
    }

    /// The key of entry `i` for `transformMap`: a list's index or a
    /// map's key.
    fn key(self, i: usize) -> Option<Key> {
        match self {
            Range::List(_) => i64::try_from(i).ok().map(Key::Int),
            Range::Map(m) => m.get_index(i).map(|(k, _)| k.clone()),
        }
    }
}

/// Binds the variables of a comprehension to entry `i` and returns the
/// first variable's value: with one variable a list's item or a map's key,
/// with two a list's index or a map's key (the second gets the item or
/// value).
fn bind(c: &Compr, cx: &Cx<'_>, range: Range<'_>, i: usize) -> Result<Value, Fault> {
    let missing = || fault("internal error: comprehension entry out of range", c.span);
    let (first, second) = match range {
        Range::List(l) => {
            let item = l.get(i).cloned().ok_or_else(missing)?;
            if c.local2.is_some() {
                (Value::Int(i64::try_from(i).unwrap_or(i64::MAX)), Some(item))
            } else {
                (item, None)
            }
        }
        Range::Map(m) => {
            let (k, v) = m.get_index(i).ok_or_else(missing)?;
            (ops::key_to_value(k), c.local2.map(|_| v.clone()))
        }
    };
    cx.set_local(c.local, first.clone(), c.span)?;
    if let (Some(l2), Some(v)) = (c.local2, second) {
        cx.set_local(l2, v, c.span)?;
    }
    Ok(first)
}

fn eval_comprehension<'s>(c: &'s Compr, cx: &'s Cx<'s>) -> Out<'s> {
    let range = c.range.eval(cx)?;
    if matches!(c.kind, MacroKind::OptMap | MacroKind::OptFlatMap) {
        return eval_opt_map(c, cx, &range);
    }
    let r = match &*range {
        Value::List(l) => Range::List(l),
        Value::Map(m) => Range::Map(m),
        other => {
            return err(
                format!("no such overload: `{}` over {}", c.kind.name(), other.type_of().name()),
                c.span,
            );
        }
    };
    let pred_bool = |node: &'s Node| -> Result<bool, Fault> { node.eval_bool(cx, c.kind.name()) };
    let need = |n: &'s Option<Node>, what: &str| -> Result<&'s Node, Fault> {
        n.as_ref()
            .ok_or_else(|| fault(format!("malformed macro: missing {what}"), c.span))
    };
    // Whether entry `i` passes the filter of a `map`/`transform*` macro.
    let keep = |_: usize| -> Result<bool, Fault> {
        match &c.predicate {
            Some(filter) => pred_bool(filter),
            None => Ok(true),
        }
    };
    match c.kind {
        MacroKind::All | MacroKind::Exists => {
            let stop_on = c.kind == MacroKind::Exists;
            let mut first_err = None;
            let pred = need(&c.predicate, "predicate")?;
            for i in 0..r.len() {
                bind(c, cx, r, i)?;
                match pred_bool(pred) {
                    Ok(b) if b == stop_on => return owned(Value::Bool(stop_on)),
                    Ok(_) => {}
                    Err(e) => {
                        if first_err.is_none() {
                            first_err = Some(e);
                        }
                    }
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => owned(Value::Bool(!stop_on)),
            }
        }
        MacroKind::ExistsOne => {
            let pred = need(&c.predicate, "predicate")?;
            let mut n = 0usize;
            for i in 0..r.len() {
                bind(c, cx, r, i)?;
                if pred_bool(pred)? {
                    n += 1;
                }
            }
            owned(Value::Bool(n == 1))
        }
        MacroKind::Filter => {
            let pred = need(&c.predicate, "predicate")?;
            let mut out = Vec::new();
            for i in 0..r.len() {
                let item = bind(c, cx, r, i)?;
                if pred_bool(pred)? {
                    out.push(item);
                }
            }
            owned(Value::List(Arc::from(out)))
        }
        MacroKind::Map | MacroKind::TransformList => {
            let transform = need(&c.transform, "transform")?;
            let mut out = Vec::with_capacity(r.len());
            for i in 0..r.len() {
                bind(c, cx, r, i)?;
                if keep(i)? {
                    out.push(transform.eval(cx)?.into_owned());
                }
            }
            owned(Value::List(Arc::from(out)))
        }
        MacroKind::TransformMap => {
            let transform = need(&c.transform, "transform")?;
            let mut out = ValueMap::with_capacity_and_hasher(r.len(), Default::default());
            for i in 0..r.len() {
                bind(c, cx, r, i)?;
                if keep(i)? {
                    let key = r
                        .key(i)
                        .ok_or_else(|| fault("internal error: comprehension key", c.span))?;
                    out.insert(key, transform.eval(cx)?.into_owned());
                }
            }
            owned(Value::Map(Arc::new(out)))
        }
        MacroKind::TransformMapEntry => {
            let transform = need(&c.transform, "transform")?;
            let mut out = ValueMap::default();
            for i in 0..r.len() {
                bind(c, cx, r, i)?;
                if !keep(i)? {
                    continue;
                }
                let entry = transform.eval(cx)?;
                let Value::Map(m) = &*entry else {
                    return err(
                        format!(
                            "no such overload: `transformMapEntry` needs a map, got {}",
                            entry.type_of().name()
                        ),
                        transform.span(),
                    );
                };
                for (k, v) in m.iter() {
                    if ops::map_has_key(&out, k) {
                        return err(format!("insert failed: key {} already exists", key_text(k)), c.span);
                    }
                    out.insert(k.clone(), v.clone());
                }
            }
            owned(Value::Map(Arc::new(out)))
        }
        MacroKind::OptMap | MacroKind::OptFlatMap => err("internal error: optMap over a collection", c.span),
    }
}

/// `opt.optMap(v, f)` and `opt.optFlatMap(v, f)`.
fn eval_opt_map<'s>(c: &'s Compr, cx: &'s Cx<'s>, range: &Value) -> Out<'s> {
    let Value::Optional(o) = range else {
        return err(
            format!("no such overload: `{}` on {}", c.kind.name(), range.type_of().name()),
            c.span,
        );
    };
    let Some(v) = o else {
        return owned(Value::Optional(None));
    };
    let transform = c
        .transform
        .as_ref()
        .ok_or_else(|| fault("malformed macro: missing transform", c.span))?;
    cx.set_local(c.local, (**v).clone(), c.span)?;
    let t = transform.eval(cx)?.into_owned();
    match (c.kind, t) {
        (MacroKind::OptMap, t) => owned(Value::Optional(Some(Arc::new(t)))),
        (_, t @ Value::Optional(_)) => owned(t),
        (_, other) => err(
            format!(
                "no such overload: `optFlatMap` needs an optional, got {}",
                other.type_of().name()
            ),
            transform.span(),
        ),
    }
}
