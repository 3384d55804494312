//! The evaluator: runs a request through the flat decision program.
//!
//! First match wins, else the policy's default. A run-time error never
//! widens access: an erroring condition does not match an `allow` rule and
//! does match a `deny` or `approve` rule, with the error in the reason.
//! On the common path nothing is allocated: per-request atom results live
//! in a reused thread-local scratch (generation-stamped, never cleared),
//! variables are `Arc` clones on the stack, and a static reason is an
//! `Arc` clone.

use std::cell::RefCell;
use std::sync::Arc;

use serde::Serialize;
use tame_interp::{Activation, SessionFacts};
use tame_lang::Value;

use crate::compile::{AtomKind, EXIT_ERROR, EXIT_MATCH, EXIT_NO_MATCH, FlatRule, Program};
use crate::facade::{Action, Decision, Request};

const R_TRUE: u8 = 0;
const R_FALSE: u8 = 1;
const R_ERROR: u8 = 2;

/// Reused per-thread buffers.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    generation: u32,
    stamps: Vec<u32>,
    results: Vec<u8>,
    errors: Vec<(u32, String)>,
    globs: Vec<usize>,
    rules: Vec<u32>,
}

impl Scratch {
    const fn new() -> Self {
        Scratch {
            generation: 0,
            stamps: Vec::new(),
            results: Vec::new(),
            errors: Vec::new(),
            globs: Vec::new(),
            rules: Vec::new(),
        }
    }

    fn begin(&mut self, atoms: usize) {
        if self.stamps.len() < atoms {
            self.stamps.resize(atoms, 0);
            self.results.resize(atoms, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
        self.errors.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch::new()) };
}

/// Where the tool switch sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolMatch {
    /// The tool is named exactly in the policy.
    Exact,
    /// The tool matched glob patterns or only rules for all tools.
    Other,
}

/// Why a rule did or did not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOutcome {
    Matched,
    NotMatched,
    /// The condition failed at run time; `deny`/`approve` rules match on
    /// an error, `allow` rules do not.
    Error,
}

/// One atom test on the path through the DAG.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AtomTrace {
    /// The DAG node visited.
    pub node: u32,
    /// The hash-consed atom it tests.
    pub atom: u32,
    /// The atom's source text.
    pub expr: String,
    /// `true`, `false` or `error`.
    pub value: String,
    pub error: Option<String>,
    /// True when the result was reused from an earlier rule.
    pub cached: bool,
}

/// One rule tried, in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleTrace {
    pub rule: String,
    pub action: Action,
    pub outcome: RuleOutcome,
    pub error: Option<String>,
    pub atoms: Vec<AtomTrace>,
}

/// A decision with the reasoning behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    pub tool: String,
    pub tool_match: ToolMatch,
    /// Every rule tried, in order, until the first match.
    pub rules: Vec<RuleTrace>,
    /// The DAG nodes visited, in order (see `to_dot`).
    pub visited: Vec<u32>,
    /// True when no rule matched and the default applied.
    pub defaulted: bool,
}

/// Receives evaluation events; the no-op tracer compiles away.
pub(crate) trait Tracer {
    fn rule_start(&mut self, _rule: &FlatRule) {}
    fn atom(&mut self, _node: u32, _atom: u32, _result: u8, _cached: bool, _error: Option<&str>) {}
    fn rule_end(&mut self, _outcome: RuleOutcome, _error: Option<&str>) {}
}

pub(crate) struct NoTrace;
impl Tracer for NoTrace {}

pub(crate) struct Recorder<'p> {
    program: &'p Program,
    pub rules: Vec<RuleTrace>,
    pub visited: Vec<u32>,
}

impl<'p> Recorder<'p> {
    pub fn new(program: &'p Program) -> Self {
        Recorder {
            program,
            rules: Vec::new(),
            visited: Vec::new(),
        }
    }
}

impl Tracer for Recorder<'_> {
    fn rule_start(&mut self, rule: &FlatRule) {
        self.rules.push(RuleTrace {
            rule: rule.name.to_string(),
            action: rule.action,
            outcome: RuleOutcome::NotMatched,
            error: None,
            atoms: Vec::new(),
        });
    }
    fn atom(&mut self, node: u32, atom: u32, result: u8, cached: bool, error: Option<&str>) {
        self.visited.push(node);
        let expr = self
            .program
            .atoms
            .get(atom as usize)
            .map_or_else(String::new, |a| a.label.to_string());
        let value = match result {
            R_TRUE => "true",
            R_FALSE => "false",
            _ => "error",
        };
        if let Some(r) = self.rules.last_mut() {
            r.atoms.push(AtomTrace {
                node,
                atom,
                expr,
                value: value.into(),
                error: error.map(str::to_owned),
                cached,
            });
        }
    }
    fn rule_end(&mut self, outcome: RuleOutcome, error: Option<&str>) {
        if let Some(r) = self.rules.last_mut() {
            r.outcome = outcome;
            r.error = error.map(str::to_owned);
        }
    }
}

/// The policy-level constants the evaluator needs.
pub(crate) struct Frame<'a> {
    pub program: &'a Program,
    pub default: Action,
    pub default_reason: &'a Arc<str>,
    pub version: &'a Arc<str>,
}

/// The result of a run: the matching rule (if any) and its error.
pub(crate) struct Outcome {
    pub rule: Option<u32>,
    pub error: Option<String>,
    pub tool_match: ToolMatch,
}

impl Frame<'_> {
    /// Evaluates with the thread's scratch (a fresh one when re-entered,
    /// e.g. from a host function).
    pub fn run<T: Tracer>(&self, req: &Request, facts: &dyn SessionFacts, tracer: &mut T) -> Outcome {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.run_with(req, facts, &mut scratch, tracer),
            Err(_) => self.run_with(req, facts, &mut Scratch::default(), tracer),
        })
    }

    fn run_with<T: Tracer>(&self, req: &Request, facts: &dyn SessionFacts, s: &mut Scratch, tracer: &mut T) -> Outcome {
        let p = self.program;
        s.begin(p.atoms.len());
        let mut vars: Option<[Value; tame_interp::roots::COUNT]> = None;
        let (rules, tool_match): (&[u32], ToolMatch) = match p.switch.exact.get(&*req.tool) {
            Some(&b) => (
                p.switch.buckets.get(b as usize).map_or(&[][..], |l| &l[..]),
                ToolMatch::Exact,
            ),
            None if p.switch.glob_rules.is_empty() => (&p.switch.universal[..], ToolMatch::Other),
            None => {
                s.globs.clear();
                p.switch.globs.matches_into(&*req.tool, &mut s.globs);
                s.rules.clear();
                for &gi in &s.globs {
                    if let Some(list) = p.switch.glob_rules.get(gi) {
                        s.rules.extend_from_slice(list);
                    }
                }
                if s.rules.is_empty() {
                    (&p.switch.universal[..], ToolMatch::Other)
                } else {
                    s.rules.extend_from_slice(&p.switch.universal);
                    s.rules.sort_unstable();
                    s.rules.dedup();
                    // Detach the list from the scratch while atoms use it.
                    let list = std::mem::take(&mut s.rules);
                    let out = self.try_rules(&list, req, facts, s, &mut vars, tracer, ToolMatch::Other);
                    s.rules = list;
                    return out;
                }
            }
        };
        self.try_rules(rules, req, facts, s, &mut vars, tracer, tool_match)
    }

    #[allow(clippy::too_many_arguments)]
    fn try_rules<T: Tracer>(
        &self,
        rules: &[u32],
        req: &Request,
        facts: &dyn SessionFacts,
        s: &mut Scratch,
        vars: &mut Option<[Value; tame_interp::roots::COUNT]>,
        tracer: &mut T,
        tool_match: ToolMatch,
    ) -> Outcome {
        let p = self.program;
        for &ri in rules {
            let Some(rule) = p.rules.get(ri as usize) else { continue };
            tracer.rule_start(rule);
            let mut node = rule.entry;
            let mut last_error: Option<u32> = None;
            let mut steps = 0usize;
            while node > EXIT_ERROR {
                let Some(n) = p.nodes.get(node as usize) else {
                    node = EXIT_ERROR;
                    break;
                };
                let a = n.atom as usize;
                let cached = s.stamps.get(a) == Some(&s.generation);
                let r = if cached {
                    s.results.get(a).copied().unwrap_or(R_ERROR)
                } else {
                    let r = eval_atom(p, n.atom, req, facts, vars, &mut s.errors);
                    if let (Some(st), Some(rs)) = (s.stamps.get_mut(a), s.results.get_mut(a)) {
                        *st = s.generation;
                        *rs = r;
                    }
                    r
                };
                if r == R_ERROR {
                    last_error = Some(n.atom);
                }
                tracer.atom(
                    node,
                    n.atom,
                    r,
                    cached,
                    if r == R_ERROR { error_of(s, n.atom) } else { None },
                );
                node = n.next.get(r as usize).copied().unwrap_or(EXIT_ERROR);
                steps += 1;
                if steps > p.nodes.len() {
                    node = EXIT_ERROR;
                    break;
                }
            }
            match node {
                EXIT_MATCH => {
                    tracer.rule_end(RuleOutcome::Matched, None);
                    return Outcome {
                        rule: Some(ri),
                        error: None,
                        tool_match,
                    };
                }
                EXIT_NO_MATCH => tracer.rule_end(RuleOutcome::NotMatched, None),
                _ => {
                    let msg = last_error
                        .and_then(|a| error_of(s, a))
                        .unwrap_or("condition failed")
                        .to_owned();
                    tracer.rule_end(RuleOutcome::Error, Some(&msg));
                    if rule.action != Action::Allow {
                        return Outcome {
                            rule: Some(ri),
                            error: Some(msg),
                            tool_match,
                        };
                    }
                }
            }
        }
        Outcome {
            rule: None,
            error: None,
            tool_match,
        }
    }

    /// Turns an outcome into a decision (allocates only for templates and
    /// errors).
    pub fn decide(&self, req: &Request, out: &Outcome) -> Decision {
        let Some(rule) = out.rule.and_then(|r| self.program.rules.get(r as usize)) else {
            return Decision {
                action: self.default,
                rule_name: None,
                reason: self.default_reason.clone(),
                policy_version: self.version.clone(),
            };
        };
        let mut reason = match &rule.template {
            Some(t) => Arc::from(t.render(req)),
            None => rule.reason.clone(),
        };
        if let Some(e) = &out.error {
            reason = Arc::from(format!("{reason} (condition error: {e})"));
        }
        Decision {
            action: rule.action,
            rule_name: Some(rule.name.clone()),
            reason,
            policy_version: self.version.clone(),
        }
    }
}

fn error_of(s: &Scratch, atom: u32) -> Option<&str> {
    s.errors.iter().rev().find(|(a, _)| *a == atom).map(|(_, m)| m.as_str())
}

fn eval_atom(
    p: &Program,
    atom: u32,
    req: &Request,
    facts: &dyn SessionFacts,
    vars: &mut Option<[Value; tame_interp::roots::COUNT]>,
    errors: &mut Vec<(u32, String)>,
) -> u8 {
    let Some(a) = p.atoms.get(atom as usize) else {
        return R_ERROR;
    };
    match &a.kind {
        AtomKind::Legacy(check) => {
            if check.eval(req) {
                R_TRUE
            } else {
                R_FALSE
            }
        }
        AtomKind::Cel(program) => {
            let vars = vars.get_or_insert_with(|| request_vars(req));
            let act = Activation::new(vars, facts, req.now);
            match program.eval_bool(&act) {
                Ok(true) => R_TRUE,
                Ok(false) => R_FALSE,
                Err(e) => {
                    errors.push((atom, e.message));
                    R_ERROR
                }
            }
        }
    }
}

/// The activation's variables, in the slots of `tame_interp::roots`.
pub(crate) fn request_vars(req: &Request) -> [Value; tame_interp::roots::COUNT] {
    let opt = |s: &Option<Arc<str>>| s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()));
    // The order below must follow tame_interp::roots.
    const _: () = assert!(
        tame_interp::roots::TOOL == 0
            && tame_interp::roots::ARGS == 1
            && tame_interp::roots::AGENT == 2
            && tame_interp::roots::USER == 3
            && tame_interp::roots::METADATA == 4
            && tame_interp::roots::SESSION_ID == 5
            && tame_interp::roots::COUNT == 6
    );
    [
        Value::String(req.tool.clone()),
        req.args.clone(),
        opt(&req.agent_id),
        opt(&req.user_id),
        req.metadata.clone(),
        opt(&req.session_id),
    ]
}
