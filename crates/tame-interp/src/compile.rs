//! Compiles an AST into a [`Program`]: resolves names to slots, picks
//! built-in overloads, compiles constant regexes, globs and networks once,
//! and folds constant sub-expressions.

use std::sync::Arc;

use tame_lang::{BinaryOp, Expr, ExprKind, Key, Literal, Span, UnaryOp, Value};

use crate::NoFacts;
use crate::env::Env;
use crate::error::{CompileError, EvalError};
use crate::funcs::{self, Builtin};
use crate::program::{Activation, Compr, Cx, GROW_EVERY, Node, Program, STACK_GROW, STACK_RED_ZONE, StrOp};
use crate::session::{Fact, SessionNode};

/// Deepest expression accepted. The parser refuses deeper input already;
/// this guard keeps hand-built ASTs from overflowing the stack of the
/// (recursive) compiler and evaluator.
pub const MAX_DEPTH: usize = 320;

/// Compiles a condition against an environment.
pub fn compile(expr: &Expr, env: &Env) -> Result<Program, CompileError> {
    check_depth(expr)?;
    let mut c = Compiler {
        env,
        scopes: Vec::new(),
        max_locals: 0,
        depth: 0,
    };
    let root = c.expr(expr)?;
    Ok(Program {
        root,
        locals: c.max_locals,
        var_names: env.vars().iter().map(|v| v.name.clone()).collect(),
    })
}

fn children(e: &Expr) -> Vec<&Expr> {
    match &e.kind {
        ExprKind::Literal(_) | ExprKind::Ident(_) => Vec::new(),
        ExprKind::Select { operand, .. } | ExprKind::OptSelect { operand, .. } | ExprKind::OptEntry(operand) => {
            vec![operand]
        }
        ExprKind::Index { operand, index } | ExprKind::OptIndex { operand, index } => vec![operand, index],
        ExprKind::Call { target, args, .. } => target.iter().map(|t| &**t).chain(args).collect(),
        ExprKind::Unary { operand, .. } => vec![operand],
        ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
        ExprKind::Ternary { cond, then, otherwise } => vec![cond, then, otherwise],
        ExprKind::List(items) => items.iter().collect(),
        ExprKind::Map(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
        ExprKind::Comprehension(c) => std::iter::once(&c.range)
            .chain(c.predicate.as_ref())
            .chain(c.transform.as_ref())
            .collect(),
    }
}

/// Iterative depth check (so the check itself cannot overflow).
fn check_depth(root: &Expr) -> Result<(), CompileError> {
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return Err(CompileError::new(
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
                e.span,
            ));
        }
        stack.extend(children(e).into_iter().map(|c| (c, d + 1)));
    }
    Ok(())
}

struct Compiler<'e> {
    env: &'e Env,
    /// Macro variables in scope, innermost last, with their local index.
    scopes: Vec<(String, usize)>,
    max_locals: usize,
    /// Nesting depth of the expression being compiled.
    depth: usize,
}

fn literal(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(i) => Value::Int(*i),
        Literal::Uint(u) => Value::Uint(*u),
        Literal::Double(d) => Value::Double(*d),
        Literal::String(s) => Value::string(s),
        Literal::Bytes(b) => Value::Bytes(Arc::from(b.as_slice())),
    }
}

fn is_plain_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn const_str(n: &Node) -> Option<&Arc<str>> {
    match n {
        Node::Const(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn is_const(n: &Node) -> bool {
    matches!(n, Node::Const(_))
}

/// Whether every input of `n` is a constant, so `n` can run now.
fn foldable(n: &Node) -> bool {
    match n {
        Node::Select { operand, .. }
        | Node::OptSelect { operand, .. }
        | Node::Has { operand, .. }
        | Node::Not { operand, .. }
        | Node::Neg { operand, .. } => is_const(operand),
        Node::StrTest { target, .. }
        | Node::Regex { target, .. }
        | Node::Glob { target, .. }
        | Node::InCidr { target, .. }
        | Node::TsPartTz { target, .. } => is_const(target),
        Node::Index {
            operand: a, index: b, ..
        }
        | Node::OptIndex {
            operand: a, index: b, ..
        }
        | Node::OptOr { lhs: a, rhs: b, .. }
        | Node::And(a, b, _)
        | Node::Or(a, b, _)
        | Node::Eq(a, b)
        | Node::Ne(a, b)
        | Node::Rel { lhs: a, rhs: b, .. }
        | Node::Arith { lhs: a, rhs: b, .. }
        | Node::In { lhs: a, rhs: b, .. } => is_const(a) && is_const(b),
        Node::Ternary {
            cond, then, otherwise, ..
        } => is_const(cond) && is_const(then) && is_const(otherwise),
        Node::List(items) => items.iter().all(is_const),
        Node::Map { entries, .. } => entries.iter().all(|(k, v)| is_const(k) && is_const(v)),
        Node::Call { args, .. } => args.iter().all(is_const),
        _ => false,
    }
}

/// Constant lists of at least this many strings are searched by hash.
const STRING_SET_MIN: usize = 8;

fn string_set(n: &Node) -> Option<Arc<rustc_hash::FxHashSet<Arc<str>>>> {
    let Node::Const(Value::List(items)) = n else {
        return None;
    };
    if items.len() < STRING_SET_MIN {
        return None;
    }
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect::<Option<rustc_hash::FxHashSet<_>>>()
        .map(Arc::new)
}

/// `operand.key`, in one step when the operand is a variable.
fn select_node(operand: Node, key: Key, span: Span) -> Node {
    match operand {
        Node::Slot { slot, .. } => Node::SlotField { slot, key, span },
        operand => fold(Node::Select {
            operand: Box::new(operand),
            key,
            span,
        }),
    }
}

/// Evaluates a node whose inputs are all constants.
fn fold(n: Node) -> Node {
    if !foldable(&n) {
        return simplify(n);
    }
    let act = Activation::new(&[], &NoFacts, jiff::Timestamp::UNIX_EPOCH);
    let cx = Cx::for_folding(&act);
    let r = n.eval(&cx).map(std::borrow::Cow::into_owned);
    match r {
        Ok(v) => Node::Const(v),
        Err(e) => Node::Fail(*e),
    }
}

/// Algebraic shortcuts that keep CEL semantics: `false` absorbs anything
/// in `&&` (errors included), `true` in `||`; a constant condition picks
/// its branch.
fn simplify(n: Node) -> Node {
    match n {
        Node::And(a, b, span) => {
            if matches!(*a, Node::Const(Value::Bool(false))) || matches!(*b, Node::Const(Value::Bool(false))) {
                Node::Const(Value::Bool(false))
            } else {
                Node::And(a, b, span)
            }
        }
        Node::Or(a, b, span) => {
            if matches!(*a, Node::Const(Value::Bool(true))) || matches!(*b, Node::Const(Value::Bool(true))) {
                Node::Const(Value::Bool(true))
            } else {
                Node::Or(a, b, span)
            }
        }
        Node::Ternary {
            cond,
            then,
            otherwise,
            span,
        } => match *cond {
            Node::Const(Value::Bool(true)) => *then,
            Node::Const(Value::Bool(false)) => *otherwise,
            cond => Node::Ternary {
                cond: Box::new(cond),
                then,
                otherwise,
                span,
            },
        },
        other => other,
    }
}

impl Compiler<'_> {
    fn local(&self, name: &str) -> Option<usize> {
        self.scopes.iter().rev().find(|(n, _)| n == name).map(|(_, i)| *i)
    }

    /// An error that is a compile error in strict mode and a run-time
    /// error in lenient mode.
    fn unresolved(&self, message: String, span: Span) -> Result<Node, CompileError> {
        if self.env.lenient() {
            Ok(Node::Fail(EvalError::new(message, span)))
        } else {
            Err(CompileError::new(message, span))
        }
    }

    /// Compiles `e`, checking the stack every [`GROW_EVERY`] levels, and
    /// marks those levels with [`Node::Grow`] for the evaluator.
    fn expr(&mut self, e: &Expr) -> Result<Node, CompileError> {
        self.depth += 1;
        let depth = self.depth;
        let r = if depth.is_multiple_of(GROW_EVERY) {
            stacker::maybe_grow(STACK_RED_ZONE, STACK_GROW, || self.expr_inner(e))
        } else {
            self.expr_inner(e)
        };
        self.depth -= 1;
        let node = r?;
        Ok(if depth.is_multiple_of(GROW_EVERY) && !is_const(&node) {
            Node::Grow(Box::new(node))
        } else {
            node
        })
    }

    fn expr_inner(&mut self, e: &Expr) -> Result<Node, CompileError> {
        let span = e.span;
        Ok(match &e.kind {
            ExprKind::Literal(l) => Node::Const(literal(l)),
            ExprKind::Ident(name) => {
                if let Some(i) = self.local(name) {
                    return Ok(Node::Local(i));
                }
                let parts: Vec<(&str, Span)> = name.split('.').map(|p| (p, span)).collect();
                self.qualified(&parts, parts.len(), span)?
            }
            ExprKind::Select { operand, field, test } => {
                if !*test && let Some(n) = self.select_path(e)? {
                    return Ok(n);
                }
                let base = self.expr(operand)?;
                let key = Key::String(Arc::from(field.as_str()));
                if *test {
                    fold(Node::Has {
                        operand: Box::new(base),
                        key,
                        span,
                    })
                } else {
                    select_node(base, key, span)
                }
            }
            ExprKind::Index { operand, index } => {
                let operand = Box::new(self.expr(operand)?);
                let index = Box::new(self.expr(index)?);
                fold(Node::Index { operand, index, span })
            }
            ExprKind::OptSelect { operand, field } => {
                let operand = Box::new(self.expr(operand)?);
                let key = Key::String(Arc::from(field.as_str()));
                fold(Node::OptSelect { operand, key, span })
            }
            ExprKind::OptIndex { operand, index } => {
                let operand = Box::new(self.expr(operand)?);
                let index = Box::new(self.expr(index)?);
                fold(Node::OptIndex { operand, index, span })
            }
            ExprKind::OptEntry(_) => {
                return self.unresolved(
                    "`?` marks an optional element of a list or map literal only".to_owned(),
                    span,
                );
            }
            ExprKind::Call { target, function, args } => self.call(target.as_deref(), function, args, span)?,
            ExprKind::Unary { op, operand } => {
                let operand = Box::new(self.expr(operand)?);
                match op {
                    UnaryOp::Not => fold(Node::Not { operand, span }),
                    UnaryOp::Neg => fold(Node::Neg { operand, span }),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = Box::new(self.expr(lhs)?);
                let b = Box::new(self.expr(rhs)?);
                let op = *op;
                fold(match op {
                    BinaryOp::And => Node::And(a, b, span),
                    BinaryOp::Or => Node::Or(a, b, span),
                    BinaryOp::Eq => Node::Eq(a, b),
                    BinaryOp::Ne => Node::Ne(a, b),
                    BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => Node::Rel {
                        op,
                        lhs: a,
                        rhs: b,
                        span,
                    },
                    BinaryOp::In => match string_set(&b) {
                        Some(set) if !is_const(&a) => Node::InStrSet { lhs: a, set },
                        _ => Node::In { lhs: a, rhs: b, span },
                    },
                    BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => Node::Arith {
                        op,
                        lhs: a,
                        rhs: b,
                        span,
                    },
                })
            }
            ExprKind::Ternary { cond, then, otherwise } => {
                let cond = Box::new(self.expr(cond)?);
                let then = Box::new(self.expr(then)?);
                let otherwise = Box::new(self.expr(otherwise)?);
                fold(Node::Ternary {
                    cond,
                    then,
                    otherwise,
                    span,
                })
            }
            ExprKind::List(items) => {
                let items = items.iter().map(|i| self.element(i)).collect::<Result<Vec<_>, _>>()?;
                fold(Node::List(items))
            }
            ExprKind::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    out.push((self.element(k)?, self.expr(v)?));
                }
                fold(Node::Map { entries: out, span })
            }
            ExprKind::Comprehension(c) => {
                let range = self.expr(&c.range)?;
                let local = self.scopes.len();
                self.scopes.push((c.var.clone(), local));
                let local2 = c.var2.as_ref().map(|v2| {
                    let l2 = local + 1;
                    self.scopes.push((v2.clone(), l2));
                    l2
                });
                self.max_locals = self.max_locals.max(local2.unwrap_or(local) + 1);
                let predicate = c.predicate.as_ref().map(|p| self.expr(p)).transpose();
                let transform = c.transform.as_ref().map(|t| self.expr(t)).transpose();
                self.scopes.pop();
                if local2.is_some() {
                    self.scopes.pop();
                }
                Node::Comprehension(Box::new(Compr {
                    kind: c.kind,
                    range,
                    local,
                    local2,
                    predicate: predicate?,
                    transform: transform?,
                    span,
                }))
            }
        })
    }

    /// An element of a list literal or a key of a map literal: `?x` marks
    /// an optional one.
    fn element(&mut self, e: &Expr) -> Result<Node, CompileError> {
        match &e.kind {
            ExprKind::OptEntry(inner) => Ok(Node::OptElem(Box::new(self.expr(inner)?), e.span)),
            _ => self.expr(e),
        }
    }

    /// `a.b.c` as a chain of plain selects ending at an identifier that is
    /// not a macro variable: resolved against qualified declarations
    /// (longest prefix first), type names and the `session` root.
    fn select_path(&mut self, e: &Expr) -> Result<Option<Node>, CompileError> {
        let mut fields: Vec<(&str, Span)> = Vec::new();
        let mut cur = e;
        let root = loop {
            match &cur.kind {
                ExprKind::Select {
                    operand,
                    field,
                    test: false,
                } => {
                    fields.push((field.as_str(), cur.span));
                    cur = operand;
                }
                ExprKind::Ident(name) => break name,
                _ => return Ok(None),
            }
        };
        let root_name = root.split('.').next().unwrap_or(root);
        if self.local(root_name).is_some() {
            return Ok(None);
        }
        let mut parts: Vec<(&str, Span)> = root.split('.').map(|p| (p, cur.span)).collect();
        parts.extend(fields.into_iter().rev());
        // Only leading plain identifiers can form a qualified name.
        let plain = parts.iter().take_while(|(p, _)| is_plain_ident(p)).count();
        self.qualified(&parts, plain.max(1), e.span).map(Some)
    }

    fn qualified(&mut self, parts: &[(&str, Span)], plain: usize, span: Span) -> Result<Node, CompileError> {
        let name_of = |k: usize| parts.iter().take(k).map(|(p, _)| *p).collect::<Vec<_>>().join(".");
        let mut base: Option<(Node, usize)> = None;
        for k in (1..=plain.min(parts.len())).rev() {
            let name = name_of(k);
            let part_span = parts.get(k - 1).map_or(span, |(_, s)| *s);
            if let Some(slot) = self.env.slot(&name) {
                base = Some((Node::Slot { slot, span: part_span }, k));
                break;
            }
            if k == parts.len()
                && let Some(t) = tame_lang::Type::from_name(&name)
            {
                base = Some((Node::Const(Value::Type(t)), k));
                break;
            }
        }
        let root = parts.first().map_or("", |(p, _)| *p);
        if base.is_none() && root == "session" && self.env.session_root() {
            let fact = parts.get(1).map(|(p, _)| *p);
            let node = match fact {
                Some(name @ ("calls" | "inputs" | "labels")) => {
                    let fact = match name {
                        "calls" => Fact::Calls,
                        "inputs" => Fact::Inputs,
                        _ => Fact::Labels,
                    };
                    Node::Session(Box::new(SessionNode {
                        fact,
                        args: Vec::new(),
                        span,
                    }))
                }
                Some(other) => {
                    return Err(CompileError::new(
                        format!(
                            "unknown session fact `session.{other}` (expected id, calls, inputs, labels, count(), called(), denied() or results())"
                        ),
                        span,
                    ));
                }
                None => {
                    return Err(CompileError::new(
                        "`session` is not a value: use session.id, session.calls, session.inputs, session.labels, session.count(tool), session.called(tool), session.denied(tool) or session.results(tool)",
                        span,
                    ));
                }
            };
            base = Some((node, 2));
        }
        if base.is_none() && root == "lists" && self.env.session_root() && self.local("lists").is_none() {
            let Some((name, name_span)) = parts.get(1) else {
                return Err(CompileError::new(
                    "`lists` is not a value: name one of the policy's lists, `lists.NAME`",
                    span,
                ));
            };
            let found = match self.env.lists() {
                Some(Value::Map(m)) => m.get(&Key::String(Arc::from(*name))).cloned(),
                _ => None,
            };
            let Some(value) = found else {
                let declared = match self.env.lists() {
                    Some(Value::Map(m)) if !m.is_empty() => {
                        let names: Vec<String> = m
                            .keys()
                            .map(|k| format!("`{}`", crate::program::key_text(k).trim_matches('\'')))
                            .collect();
                        format!("the policy's `lists:` declares {}", names.join(", "))
                    }
                    _ => "the policy has no `lists:` section".to_owned(),
                };
                return Err(CompileError::new(
                    format!("unknown list `lists.{name}` ({declared})"),
                    *name_span,
                ));
            };
            base = Some((Node::Const(value), 2));
        }
        if base.is_none() && root == "now" && self.env.now_root() {
            base = Some((Node::Now, 1));
        }
        let Some((mut node, used)) = base else {
            let name = name_of(parts.len());
            return if self.env.lenient() {
                Ok(Node::Fail(EvalError::new(
                    format!("undeclared reference to '{name}'"),
                    span,
                )))
            } else {
                Err(CompileError::new(
                    format!("unknown name `{root}`"),
                    parts.first().map_or(span, |(_, s)| *s),
                ))
            };
        };
        for (field, s) in parts.iter().skip(used) {
            node = select_node(node, Key::String(Arc::from(*field)), *s);
        }
        Ok(node)
    }

    fn is_session_target(&self, t: &Expr) -> bool {
        matches!(&t.kind, ExprKind::Ident(n) if n == "session")
            && self.env.session_root()
            && self.local("session").is_none()
            && self.env.slot("session").is_none()
    }

    fn call(&mut self, target: Option<&Expr>, function: &str, args: &[Expr], span: Span) -> Result<Node, CompileError> {
        if let Some(t) = target
            && self.is_session_target(t)
        {
            return self.session_call(function, args, span);
        }
        if target.is_none()
            && self.env.session_root()
            && let Some(fact) = Fact::provenance(function, args.len())
        {
            return self.session_node(fact, args, span);
        }
        // A namespaced function (`optional.of(x)`, `strings.quote(s)`)
        // parses as a call on an identifier that names no variable.
        if let Some(t) = target
            && let ExprKind::Ident(ns) = &t.kind
            && self.local(ns).is_none()
            && self.env.slot(ns).is_none()
        {
            let qualified = format!("{ns}.{function}");
            if let Some(b) = Builtin::resolve(&qualified, false, args.len()) {
                let nodes = args.iter().map(|a| self.expr(a)).collect::<Result<Vec<_>, _>>()?;
                return self.builtin(b, nodes, span);
            }
        }
        let mut nodes = Vec::with_capacity(args.len() + 1);
        if let Some(t) = target {
            nodes.push(self.expr(t)?);
        }
        for a in args {
            nodes.push(self.expr(a)?);
        }
        let receiver = target.is_some();
        if let Some(b) = Builtin::resolve(function, receiver, nodes.len()) {
            return self.builtin(b, nodes, span);
        }
        if let Some(h) = self.env.function(function, receiver, nodes.len()) {
            return Ok(Node::Host {
                name: Arc::from(function),
                func: h.func.clone(),
                args: nodes,
                span,
            });
        }
        if self.env.has_function_named(function) {
            return Err(CompileError::new(
                format!(
                    "no overload of host function `{function}` takes {} argument(s){}",
                    nodes.len() - usize::from(receiver),
                    if receiver { " as a method" } else { "" }
                ),
                span,
            ));
        }
        if self.env.is_unimplemented(function) {
            return Err(CompileError::new(
                format!("`{function}` is declared but the embedding program registered no implementation"),
                span,
            ));
        }
        if Builtin::known_name(function) {
            let form = if receiver { "receiver-style " } else { "" };
            return self.unresolved(
                format!(
                    "no such overload: no {form}`{function}` takes {} argument(s)",
                    nodes.len() - usize::from(receiver)
                ),
                span,
            );
        }
        self.unresolved(format!("unbound function: unknown function `{function}`"), span)
    }

    fn session_call(&mut self, function: &str, args: &[Expr], span: Span) -> Result<Node, CompileError> {
        let Some(fact) = Fact::method(function, args.len()) else {
            return Err(CompileError::new(
                format!(
                    "unknown session function `session.{function}` with {} argument(s) (expected count(tool[, window]), called(tool), denied(tool[, window]) or results(tool))",
                    args.len()
                ),
                span,
            ));
        };
        self.session_node(fact, args, span)
    }

    /// A session fact node over `args`; a constant tool pattern is
    /// compiled now.
    fn session_node(&mut self, fact: Fact, args: &[Expr], span: Span) -> Result<Node, CompileError> {
        let mut nodes = Vec::with_capacity(args.len());
        for a in args {
            nodes.push(self.expr(a)?);
        }
        let node = SessionNode::new(fact, nodes, span).map_err(|m| CompileError::new(m, span))?;
        Ok(Node::Session(Box::new(node)))
    }

    /// Specialises calls with constant arguments (regexes, globs, networks
    /// and string tests compiled once), else a generic call.
    fn builtin(&mut self, b: Builtin, mut nodes: Vec<Node>, span: Span) -> Result<Node, CompileError> {
        // `or` and `orValue` evaluate their argument only when needed.
        if matches!(b, Builtin::OptOr | Builtin::OptOrValue)
            && let [_, _] = nodes.as_slice()
        {
            let rhs = Box::new(nodes.pop().unwrap_or(Node::Const(Value::Null)));
            let lhs = Box::new(nodes.pop().unwrap_or(Node::Const(Value::Null)));
            return Ok(fold(Node::OptOr {
                lhs,
                rhs,
                value: b == Builtin::OptOrValue,
                span,
            }));
        }
        let all_const = nodes.iter().all(is_const);
        if !all_const && nodes.len() == 2 {
            if let Some(lit) = nodes.get(1).and_then(const_str).cloned() {
                let str_op = match b {
                    Builtin::Contains => Some(StrOp::Contains),
                    Builtin::StartsWith => Some(StrOp::StartsWith),
                    Builtin::EndsWith => Some(StrOp::EndsWith),
                    _ => None,
                };
                let target = Box::new(nodes.swap_remove(0));
                return Ok(match (b, str_op) {
                    (_, Some(op)) => Node::StrTest { op, target, lit, span },
                    (Builtin::Matches, _) => match funcs::compile_regex(&lit) {
                        Ok(re) => Node::Regex {
                            target,
                            re: Arc::new(re),
                            span,
                        },
                        Err(m) => return self.unresolved(m, span),
                    },
                    (Builtin::Glob, _) => match funcs::compile_glob(&lit) {
                        Ok(glob) => Node::Glob {
                            target,
                            glob: Arc::new(glob),
                            span,
                        },
                        Err(m) => return self.unresolved(m, span),
                    },
                    (Builtin::Part(part), _) => match crate::time::parse_tz(&lit) {
                        Ok(tz) => Node::TsPartTz { target, part, tz, span },
                        Err(m) => return self.unresolved(m, span),
                    },
                    (Builtin::InCidr, _) if lit.contains('/') => match funcs::parse_cidr(&lit) {
                        Ok(net) => Node::InCidr { target, net, span },
                        Err(m) => return self.unresolved(m, span),
                    },
                    _ => {
                        nodes.insert(0, *target);
                        Node::Call {
                            func: b,
                            args: nodes,
                            span,
                        }
                    }
                });
            }
            // `cidr(const).containsIP(x)`: the receiver is the constant.
            if b == Builtin::InCidr
                && let Some(lit) = nodes.first().and_then(const_str).cloned()
                && let Ok(net) = funcs::parse_cidr(&lit)
            {
                let target = Box::new(nodes.swap_remove(1));
                return Ok(Node::InCidr { target, net, span });
            }
        }
        let node = fold(Node::Call {
            func: b,
            args: nodes,
            span,
        });
        // A constructor given bad constant text (`duration('1y')`,
        // `cidr('10.0.0.0/99')`) can never work: a compile error in
        // strict mode rather than a rule that always errors.
        let parses_text = matches!(
            b,
            Builtin::Timestamp
                | Builtin::Duration
                | Builtin::Ip
                | Builtin::Cidr
                | Builtin::Url
                | Builtin::Matches
                | Builtin::Glob
                | Builtin::InCidr
        );
        match node {
            Node::Fail(e) if parses_text && !self.env.lenient() => Err(CompileError::new(e.message, e.span)),
            other => Ok(other),
        }
    }
}
