//! The compiler: rules to one decision DAG, lowered to a flat program.
//!
//! The DAG is built with petgraph. Its root is a switch on the tool name:
//! exact names through a hash map to a precomputed, ordered list of the
//! rules that apply to them (rules naming them, rules whose globs match
//! them, rules for all tools); any other name through a compiled
//! [`GlobSet`]. Each rule's condition is split into its boolean structure
//! (`&&`, `||`, `!`, `?:`) over atoms; identical atoms are hash-consed
//! across all rules (AST equality ignores spans) and their results are
//! memoized per request, so each is evaluated at most once. Predicate
//! nodes have three edges, true / false / error, which keeps CEL's error
//! semantics exact (`false && error` is false, `true || error` is true);
//! identical nodes are shared. Every rule's sub-DAG ends in one of three
//! exits: matched, not matched, errored.
//!
//! The petgraph graph is kept for DOT export; evaluation runs on the flat
//! lowering: an array of `(atom, [true, false, error])` nodes.

use std::fmt;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use petgraph::graph::{Graph, NodeIndex};
use rustc_hash::FxHashMap;
use tame_lang::{BinaryOp, Expr, ExprKind, Literal, UnaryOp};

use crate::facade::Action;
use crate::legacy::LegacyCheck;
use crate::template::Template;

/// Exit nodes: flat indices 0, 1, 2.
pub(crate) const EXIT_MATCH: u32 = 0;
pub(crate) const EXIT_NO_MATCH: u32 = 1;
pub(crate) const EXIT_ERROR: u32 = 2;
const EXITS: u32 = 3;

/// Above this many predicate nodes for one rule, the condition is kept as
/// a single atom instead of being split (bounds compile time and size).
const RULE_NODE_BUDGET: usize = 512;

/// What an atom evaluates.
pub(crate) enum AtomKind {
    Cel(tame_interp::Program),
    Legacy(LegacyCheck),
}

impl fmt::Debug for AtomKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtomKind::Cel(_) => f.write_str("Cel"),
            AtomKind::Legacy(c) => write!(f, "Legacy({c:?})"),
        }
    }
}

/// A hash-consed predicate.
#[derive(Debug)]
pub(crate) struct Atom {
    pub kind: AtomKind,
    /// Source text, for explain traces and DOT labels.
    pub label: Arc<str>,
}

/// Hash-consing key of an atom.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AtomKey {
    Cel(Expr),
    Legacy(LegacyCheck),
}

/// A rule's condition as the compiler receives it.
#[derive(Debug)]
pub(crate) enum CondSpec {
    Always,
    Cel(Expr),
    /// All checks must hold.
    Legacy(Vec<LegacyCheck>),
}

/// A rule as the compiler receives it (already validated).
#[derive(Debug)]
pub(crate) struct RuleSpec {
    pub name: Arc<str>,
    pub action: Action,
    /// Tool patterns; empty = all tools.
    pub tools: Vec<String>,
    pub condition: CondSpec,
    pub reason: Arc<str>,
    pub template: Option<Template>,
}

/// A rule in the flat program.
#[derive(Debug)]
pub(crate) struct FlatRule {
    pub name: Arc<str>,
    pub action: Action,
    /// Entry node of the rule's condition (an exit when unconditional).
    pub entry: u32,
    pub reason: Arc<str>,
    pub template: Option<Template>,
}

/// A predicate node: the atom to test and where to go on true, false and
/// error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlatNode {
    pub atom: u32,
    pub next: [u32; 3],
}

/// The tool switch at the root of the DAG.
#[derive(Debug)]
pub(crate) struct Switch {
    /// Exact tool name -> index into `buckets`.
    pub exact: FxHashMap<Box<str>, u32>,
    /// For each exact name: the rules that apply, in file order.
    pub buckets: Vec<Box<[u32]>>,
    /// The glob patterns of all rules.
    pub globs: GlobSet,
    /// Glob pattern index -> rules using it, in file order.
    pub glob_rules: Vec<Box<[u32]>>,
    /// Rules for every tool, in file order.
    pub universal: Box<[u32]>,
}

/// Node weights of the petgraph DAG.
#[derive(Clone, Debug)]
pub(crate) enum DagNode {
    Switch,
    Bucket(Arc<str>),
    Test { atom: u32, label: Arc<str> },
    Exit(u32),
}

impl fmt::Display for DagNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DagNode::Switch => f.write_str("switch tool"),
            DagNode::Bucket(name) => write!(f, "tool {name}"),
            DagNode::Test { atom, label } => write!(f, "a{atom}: {label}"),
            DagNode::Exit(EXIT_MATCH) => f.write_str("matched"),
            DagNode::Exit(EXIT_NO_MATCH) => f.write_str("not matched"),
            DagNode::Exit(_) => f.write_str("error"),
        }
    }
}

/// Edge weights of the petgraph DAG.
#[derive(Clone, Debug)]
pub(crate) enum DagEdge {
    True,
    False,
    Error,
    /// Switch -> bucket for a tool pattern.
    Tool,
    /// Bucket -> rule entry: the `n`th rule tried, its name and action.
    Rule(u32, Arc<str>, Action),
}

impl fmt::Display for DagEdge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DagEdge::True => f.write_str("true"),
            DagEdge::False => f.write_str("false"),
            DagEdge::Error => f.write_str("error"),
            DagEdge::Tool => Ok(()),
            DagEdge::Rule(n, name, action) => write!(f, "{n}. {name} ({})", action.as_str()),
        }
    }
}

/// The compiled program.
#[derive(Debug)]
pub(crate) struct Program {
    pub atoms: Vec<Atom>,
    pub nodes: Vec<FlatNode>,
    pub rules: Vec<FlatRule>,
    pub switch: Switch,
    pub graph: Graph<DagNode, DagEdge>,
}

/// An error found while compiling one rule: message and the span inside
/// its condition (tool-pattern errors carry the pattern's index instead).
#[derive(Debug)]
pub(crate) enum CompileFailure {
    Condition {
        rule: usize,
        message: String,
        span: tame_lang::Span,
    },
    Tool {
        rule: usize,
        pattern: usize,
        message: String,
    },
}

/// The boolean structure of a condition over atoms.
#[derive(Clone, Copy, Debug)]
enum BNode {
    Const(bool),
    Atom(u32),
    Not(u32),
    And(u32, u32),
    Or(u32, u32),
    Cond(u32, u32, u32),
}

struct Builder<'e> {
    env: &'e tame_interp::Env,
    atoms: Vec<Atom>,
    atom_ids: FxHashMap<AtomKey, u32>,
    graph: Graph<DagNode, DagEdge>,
    /// Flat index of graph node i (exits and tests only).
    tests: FxHashMap<(u32, u32, u32, u32), u32>,
    flat: Vec<FlatNode>,
    flat_to_graph: Vec<NodeIndex>,
}

/// Whether a tool pattern is a glob (otherwise an exact name).
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

pub(crate) fn tool_glob(pattern: &str) -> Result<globset::Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map_err(|e| format!("invalid tool pattern `{pattern}`: {}", e.kind()))
}

/// Compiles the rules into the DAG and its flat program.
pub(crate) fn compile(rules: &[RuleSpec], env: &tame_interp::Env) -> Result<Program, Vec<CompileFailure>> {
    let mut b = Builder {
        env,
        atoms: Vec::new(),
        atom_ids: FxHashMap::default(),
        graph: Graph::new(),
        tests: FxHashMap::default(),
        flat: Vec::new(),
        flat_to_graph: Vec::new(),
    };
    for exit in 0..EXITS {
        let g = b.graph.add_node(DagNode::Exit(exit));
        b.flat.push(FlatNode {
            atom: u32::MAX,
            next: [exit; 3],
        });
        b.flat_to_graph.push(g);
    }
    let mut failures = Vec::new();
    let mut flat_rules = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let entry = match b.rule_entry(&rule.condition) {
            Ok(e) => e,
            Err((message, span)) => {
                failures.push(CompileFailure::Condition { rule: i, message, span });
                EXIT_NO_MATCH
            }
        };
        flat_rules.push(FlatRule {
            name: rule.name.clone(),
            action: rule.action,
            entry,
            reason: rule.reason.clone(),
            template: rule.template.clone(),
        });
    }
    let switch = build_switch(rules, &mut failures);
    if !failures.is_empty() {
        return Err(failures);
    }
    let mut program = Program {
        atoms: b.atoms,
        nodes: b.flat,
        rules: flat_rules,
        switch,
        graph: b.graph,
    };
    add_switch_to_graph(&mut program, &b.flat_to_graph);
    Ok(program)
}

fn build_switch(rules: &[RuleSpec], failures: &mut Vec<CompileFailure>) -> Switch {
    let mut exact_names: Vec<&str> = Vec::new();
    let mut exact_seen: FxHashMap<&str, ()> = FxHashMap::default();
    let mut glob_builder = GlobSetBuilder::new();
    let mut glob_rules: Vec<Vec<u32>> = Vec::new();
    let mut glob_index: FxHashMap<&str, usize> = FxHashMap::default();
    let mut exact_rules: FxHashMap<&str, Vec<u32>> = FxHashMap::default();
    let mut universal = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let ri = u32::try_from(i).unwrap_or(u32::MAX);
        if rule.tools.is_empty() {
            universal.push(ri);
            continue;
        }
        for (pi, pattern) in rule.tools.iter().enumerate() {
            if is_glob(pattern) {
                let gi = match glob_index.get(pattern.as_str()) {
                    Some(&gi) => gi,
                    None => match tool_glob(pattern) {
                        Ok(glob) => {
                            let gi = glob_rules.len();
                            glob_builder.add(glob);
                            glob_rules.push(Vec::new());
                            glob_index.insert(pattern.as_str(), gi);
                            gi
                        }
                        Err(message) => {
                            failures.push(CompileFailure::Tool {
                                rule: i,
                                pattern: pi,
                                message,
                            });
                            continue;
                        }
                    },
                };
                if let Some(list) = glob_rules.get_mut(gi)
                    && list.last() != Some(&ri)
                {
                    list.push(ri);
                }
            } else {
                if exact_seen.insert(pattern.as_str(), ()).is_none() {
                    exact_names.push(pattern.as_str());
                }
                exact_rules.entry(pattern.as_str()).or_default().push(ri);
            }
        }
    }
    let globs = glob_builder.build().unwrap_or_else(|_| GlobSet::empty());
    // Every exact name gets the ordered list of the rules that apply:
    // rules naming it, rules whose globs match it, rules for all tools.
    let mut exact = FxHashMap::default();
    let mut buckets = Vec::with_capacity(exact_names.len());
    let mut matched = Vec::new();
    for name in exact_names {
        let mut list: Vec<u32> = exact_rules.remove(name).unwrap_or_default();
        matched.clear();
        globs.matches_into(name, &mut matched);
        for gi in &matched {
            if let Some(rs) = glob_rules.get(*gi) {
                list.extend_from_slice(rs);
            }
        }
        list.extend_from_slice(&universal);
        list.sort_unstable();
        list.dedup();
        exact.insert(Box::from(name), u32::try_from(buckets.len()).unwrap_or(u32::MAX));
        buckets.push(list.into_boxed_slice());
    }
    Switch {
        exact,
        buckets,
        globs,
        glob_rules: glob_rules.into_iter().map(Vec::into_boxed_slice).collect(),
        universal: universal.into_boxed_slice(),
    }
}

/// Adds the switch and bucket nodes to the petgraph DAG (for DOT).
fn add_switch_to_graph(p: &mut Program, flat_to_graph: &[NodeIndex]) {
    let root = p.graph.add_node(DagNode::Switch);
    let mut names: Vec<(&str, u32)> = p.switch.exact.iter().map(|(k, v)| (&**k, *v)).collect();
    names.sort_unstable();
    let mut buckets: Vec<(Arc<str>, Vec<u32>)> = names
        .into_iter()
        .map(|(name, b)| {
            (
                Arc::from(name),
                p.switch.buckets.get(b as usize).map(|l| l.to_vec()).unwrap_or_default(),
            )
        })
        .collect();
    // Other names: the glob rules and the universal ones, in order.
    let mut other: Vec<u32> = p.switch.glob_rules.iter().flat_map(|l| l.iter().copied()).collect();
    other.extend(p.switch.universal.iter().copied());
    other.sort_unstable();
    other.dedup();
    buckets.push((Arc::from("(any other)"), other));
    for (name, list) in buckets {
        let bucket = p.graph.add_node(DagNode::Bucket(name));
        p.graph.add_edge(root, bucket, DagEdge::Tool);
        for (n, ri) in list.iter().enumerate() {
            if let Some(rule) = p.rules.get(*ri as usize)
                && let Some(&target) = flat_to_graph.get(rule.entry as usize)
            {
                let edge = DagEdge::Rule(u32::try_from(n + 1).unwrap_or(u32::MAX), rule.name.clone(), rule.action);
                p.graph.add_edge(bucket, target, edge);
            }
        }
    }
}

impl Builder<'_> {
    /// Compiles a rule's condition into the DAG; returns its entry node.
    fn rule_entry(&mut self, cond: &CondSpec) -> Result<u32, (String, tame_lang::Span)> {
        let mut arena = Vec::new();
        let root = match cond {
            CondSpec::Always => return Ok(EXIT_MATCH),
            CondSpec::Cel(expr) => self.split(expr, &mut arena, 0)?,
            CondSpec::Legacy(checks) => {
                let mut acc: Option<u32> = None;
                for c in checks {
                    let a = self.intern(AtomKey::Legacy(c.clone()), None)?;
                    let n = push(&mut arena, BNode::Atom(a));
                    acc = Some(match acc {
                        None => n,
                        Some(prev) => push(&mut arena, BNode::And(prev, n)),
                    });
                }
                match acc {
                    Some(n) => n,
                    None => return Ok(EXIT_MATCH),
                }
            }
        };
        let before = self.flat.len();
        let mut memo = FxHashMap::default();
        let entry = self.lower(&arena, root, [EXIT_MATCH, EXIT_NO_MATCH, EXIT_ERROR], &mut memo);
        if self.flat.len() - before > RULE_NODE_BUDGET {
            // Too many paths: test the whole condition as one atom instead.
            if let CondSpec::Cel(expr) = cond {
                let a = self.intern(AtomKey::Cel(expr.clone()), Some(expr))?;
                return Ok(self.test(a, [EXIT_MATCH, EXIT_NO_MATCH, EXIT_ERROR]));
            }
        }
        Ok(entry)
    }

    /// Splits an expression into boolean structure over atoms, folding
    /// constants with CEL's absorbing rules.
    fn split(&mut self, e: &Expr, arena: &mut Vec<BNode>, depth: usize) -> Result<u32, (String, tame_lang::Span)> {
        if depth > 64 {
            let a = self.intern(AtomKey::Cel(e.clone()), Some(e))?;
            return Ok(push(arena, BNode::Atom(a)));
        }
        let node = match &e.kind {
            ExprKind::Literal(Literal::Bool(b)) => BNode::Const(*b),
            ExprKind::Unary {
                op: UnaryOp::Not,
                operand,
            } => {
                let x = self.split(operand, arena, depth + 1)?;
                match arena.get(x as usize) {
                    Some(BNode::Const(b)) => BNode::Const(!b),
                    _ => BNode::Not(x),
                }
            }
            ExprKind::Binary {
                op: op @ (BinaryOp::And | BinaryOp::Or),
                lhs,
                rhs,
            } => {
                let l = self.split(lhs, arena, depth + 1)?;
                let r = self.split(rhs, arena, depth + 1)?;
                let and = *op == BinaryOp::And;
                // `false && x` and `x && false` are false even when x errs;
                // `true && x` is x. Dually for `||`.
                let absorbing = !and;
                match (arena.get(l as usize).copied(), arena.get(r as usize).copied()) {
                    (Some(BNode::Const(a)), _) if a == absorbing => BNode::Const(absorbing),
                    (_, Some(BNode::Const(b))) if b == absorbing => BNode::Const(absorbing),
                    (Some(BNode::Const(_)), _) => return Ok(r),
                    (_, Some(BNode::Const(_))) => return Ok(l),
                    _ if and => BNode::And(l, r),
                    _ => BNode::Or(l, r),
                }
            }
            ExprKind::Ternary { cond, then, otherwise } => {
                let c = self.split(cond, arena, depth + 1)?;
                let t = self.split(then, arena, depth + 1)?;
                let o = self.split(otherwise, arena, depth + 1)?;
                match arena.get(c as usize) {
                    Some(BNode::Const(true)) => return Ok(t),
                    Some(BNode::Const(false)) => return Ok(o),
                    _ => BNode::Cond(c, t, o),
                }
            }
            _ => {
                let a = self.intern(AtomKey::Cel(e.clone()), Some(e))?;
                // An atom that folded to a boolean constant is that constant.
                match self.atoms.get(a as usize).map(|at| &at.kind) {
                    Some(AtomKind::Cel(p)) => match p.constant() {
                        Some(tame_lang::Value::Bool(b)) => BNode::Const(*b),
                        _ => BNode::Atom(a),
                    },
                    _ => BNode::Atom(a),
                }
            }
        };
        Ok(push(arena, node))
    }

    fn intern(&mut self, key: AtomKey, expr: Option<&Expr>) -> Result<u32, (String, tame_lang::Span)> {
        if let Some(&id) = self.atom_ids.get(&key) {
            return Ok(id);
        }
        let atom = match (&key, expr) {
            (AtomKey::Cel(_), Some(e)) => {
                let program = tame_interp::compile(e, self.env).map_err(|err| (err.message, err.span))?;
                Atom {
                    kind: AtomKind::Cel(program),
                    label: Arc::from(e.to_string()),
                }
            }
            (AtomKey::Legacy(c), _) => Atom {
                kind: AtomKind::Legacy(c.clone()),
                label: Arc::from(c.describe()),
            },
            (AtomKey::Cel(e), None) => {
                let program = tame_interp::compile(e, self.env).map_err(|err| (err.message, err.span))?;
                Atom {
                    kind: AtomKind::Cel(program),
                    label: Arc::from(e.to_string()),
                }
            }
        };
        let id = u32::try_from(self.atoms.len()).unwrap_or(u32::MAX);
        self.atoms.push(atom);
        self.atom_ids.insert(key, id);
        Ok(id)
    }

    /// Lowers boolean structure to predicate nodes with exits
    /// `[on_true, on_false, on_error]`.
    fn lower(&mut self, arena: &[BNode], n: u32, exits: [u32; 3], memo: &mut FxHashMap<(u32, [u32; 3]), u32>) -> u32 {
        if let Some(&done) = memo.get(&(n, exits)) {
            return done;
        }
        let [t, f, e] = exits;
        let out = match arena.get(n as usize).copied() {
            None => e,
            Some(BNode::Const(true)) => t,
            Some(BNode::Const(false)) => f,
            Some(BNode::Atom(a)) => self.test(a, exits),
            Some(BNode::Not(x)) => self.lower(arena, x, [f, t, e], memo),
            Some(BNode::And(a, b)) => {
                // a false: false. a true: b. a error: false if b is false,
                // else error (CEL's commutative error absorption).
                let b_plain = self.lower(arena, b, [t, f, e], memo);
                let b_after_err = self.lower(arena, b, [e, f, e], memo);
                self.lower(arena, a, [b_plain, f, b_after_err], memo)
            }
            Some(BNode::Or(a, b)) => {
                let b_plain = self.lower(arena, b, [t, f, e], memo);
                let b_after_err = self.lower(arena, b, [t, e, e], memo);
                self.lower(arena, a, [t, b_plain, b_after_err], memo)
            }
            Some(BNode::Cond(c, x, y)) => {
                let xs = self.lower(arena, x, [t, f, e], memo);
                let ys = self.lower(arena, y, [t, f, e], memo);
                self.lower(arena, c, [xs, ys, e], memo)
            }
        };
        memo.insert((n, exits), out);
        out
    }

    /// A hash-consed predicate node.
    fn test(&mut self, atom: u32, next: [u32; 3]) -> u32 {
        if next[0] == next[1] && next[1] == next[2] {
            return next[0];
        }
        let key = (atom, next[0], next[1], next[2]);
        if let Some(&id) = self.tests.get(&key) {
            return id;
        }
        let id = u32::try_from(self.flat.len()).unwrap_or(u32::MAX);
        let label = self
            .atoms
            .get(atom as usize)
            .map_or_else(|| Arc::from("?"), |a| a.label.clone());
        let g = self.graph.add_node(DagNode::Test { atom, label });
        for (target, kind) in next.iter().zip([DagEdge::True, DagEdge::False, DagEdge::Error]) {
            if let Some(&tg) = self.flat_to_graph.get(*target as usize) {
                self.graph.add_edge(g, tg, kind);
            }
        }
        self.flat.push(FlatNode { atom, next });
        self.flat_to_graph.push(g);
        self.tests.insert(key, id);
        id
    }
}

fn push(arena: &mut Vec<BNode>, n: BNode) -> u32 {
    arena.push(n);
    u32::try_from(arena.len() - 1).unwrap_or(u32::MAX)
}
