//! The compiled policy: the facade every frontend uses.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tame_interp::SessionFacts;

use crate::compile::{self, CompileFailure, Program, RuleSpec};
use crate::diag::{Diagnostic, PolicyError, Reporter};
use crate::eval::{Explanation, Frame, NoTrace, Recorder};
use crate::facade::{Action, Decision, Request};
use crate::facts::MemoryFacts;
use crate::load::{self, NO_MATCH_REASON};
use crate::request::RequestError;
use crate::safety::Safety;
use tame_safety::{RequestInterception, RequestValidation, ResponseInterception};

/// One rule as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub name: String,
    pub action: Action,
    /// Tool patterns; empty means every tool.
    pub tools: Vec<String>,
    pub description: Option<String>,
    /// The condition's source text (`None` for unconditional and legacy rules).
    pub condition: Option<String>,
    /// The reason template as written.
    pub reason: Option<String>,
}

/// What a policy is: for `GET /api/v1/policy/current` and `tame policy info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    /// The file's `version`, or `sha256:` and the hash's first 12 digits.
    pub version: String,
    pub description: Option<String>,
    /// sha256 (hex) of the source text.
    pub hash: String,
    pub default: Action,
    pub rules: Vec<RuleInfo>,
    /// True when the file uses the original tame server's format.
    pub legacy: bool,
    /// Where the policy came from (file path or a name).
    pub origin: String,
}

/// Size of the compiled policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub rules: usize,
    /// Exact tool names in the root switch.
    pub tools_indexed: usize,
    /// Distinct glob patterns in the root switch.
    pub globs: usize,
    /// Distinct (hash-consed) atoms.
    pub atoms: usize,
    /// Nodes of the DAG: switch, tool buckets, predicates and exits.
    pub dag_nodes: usize,
    /// Predicate nodes of the flat program.
    pub predicates: usize,
}

/// A test case kept in the policy file (`tests:`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyTest {
    pub name: String,
    /// The call: `{tool_name, tool_args, session_id?, agent_id?, user_id?, metadata?}`
    /// (`null` in a session test).
    pub call: serde_json::Value,
    /// Session facts for the call: `{calls, counts, called, labels}`.
    pub session: Option<serde_json::Value>,
    /// The call's expected decision (`None` in a session test).
    pub expect: Option<Action>,
    /// The rule expected to decide, if given.
    pub rule: Option<String>,
    /// Line of the test in the file.
    pub line: usize,
    /// A session test's steps (`{call, expect, rule?, reason?}`, `{input}`,
    /// `{result}`), run through the enforcement path by `tame test`.
    pub steps: Option<Vec<serde_json::Value>>,
}

/// The result of running one [`PolicyTest`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    pub decision: Option<Decision>,
    /// Why it failed (or the call could not be read).
    pub message: Option<String>,
}

impl PolicyTest {
    /// The tools the test calls (its call's, or its steps').
    pub fn tools(&self) -> impl Iterator<Item = &str> {
        let steps = self.steps.iter().flatten().filter_map(|s| s.get("call"));
        std::iter::once(&self.call)
            .chain(steps)
            .filter_map(|c| c.get("tool_name")?.as_str())
    }

    pub fn request(&self) -> Result<Request, RequestError> {
        Request::from_call_json(&self.call)
    }

    pub fn facts(&self) -> Result<MemoryFacts, RequestError> {
        match &self.session {
            Some(s) => MemoryFacts::from_json(s),
            None => Ok(MemoryFacts::default()),
        }
    }

    /// Runs the test against a policy.
    pub fn run(&self, policy: &Policy) -> TestOutcome {
        let fail = |message: String| TestOutcome {
            name: self.name.clone(),
            passed: false,
            decision: None,
            message: Some(message),
        };
        let (None, Some(expect)) = (&self.steps, self.expect) else {
            return fail("a session test (`steps:`) runs through the enforcement path: `tame test`".into());
        };
        let req = match self.request() {
            Ok(r) => r,
            Err(e) => return fail(format!("call: {e}")),
        };
        let facts = match self.facts() {
            Ok(f) => f,
            Err(e) => return fail(e.to_string()),
        };
        let d = policy.evaluate(&req, &facts);
        let mut problems = Vec::new();
        if d.action != expect {
            problems.push(format!(
                "expected `{}`, got `{}` ({})",
                expect.as_str(),
                d.action.as_str(),
                d.reason
            ));
        }
        if let Some(rule) = &self.rule
            && d.rule_name.as_deref() != Some(rule.as_str())
        {
            problems.push(format!(
                "expected rule `{rule}`, got {}",
                d.rule_name.as_deref().map_or("no rule".into(), |r| format!("`{r}`"))
            ));
        }
        TestOutcome {
            name: self.name.clone(),
            passed: problems.is_empty(),
            decision: Some(d),
            message: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }
}

/// A compiled policy. `Send + Sync`; share it as `Arc<Policy>`.
#[derive(Debug)]
pub struct Policy {
    info: PolicyInfo,
    program: Program,
    version: Arc<str>,
    default_reason: Arc<str>,
    lints: Vec<Diagnostic>,
    tests: Vec<PolicyTest>,
    /// `tools:`, `tool_contracts:`, `agents:`, `payload:` (see `crate::safety`).
    safety: Safety,
}

/// Host functions the embedding program adds to conditions.
pub use tame_lang::Registry;

impl Policy {
    /// Loads and compiles a policy from YAML text. `origin` names it in
    /// diagnostics (usually the file path).
    pub fn from_yaml(source: &str, origin: &str) -> Result<Policy, PolicyError> {
        Self::from_yaml_with(source, origin, &Registry::new())
    }

    /// Like [`Policy::from_yaml`], with host functions.
    pub fn from_yaml_with(source: &str, origin: &str, registry: &Registry) -> Result<Policy, PolicyError> {
        let mut env = crate::cond::CondEnv::new(registry);
        let mut r = Reporter::new(origin, source);
        let check = |e: &tame_lang::Expr| env.check(e);
        let loaded = load::load(&mut r, source, &check);
        let Some(mut loaded) = loaded else {
            return Err(PolicyError {
                diagnostics: r.diagnostics,
            });
        };
        let sections = std::mem::take(&mut loaded.safety);
        let safety = crate::safety::load(&mut r, origin, loaded.tree.as_ref(), sections);
        if r.has_errors() {
            r.diagnostics.extend(loaded.warnings);
            r.diagnostics.sort_by_key(|d| (d.line, d.column));
            return Err(PolicyError {
                diagnostics: r.diagnostics,
            });
        }
        if let Some(lists) = loaded.lists.take() {
            env.set_lists(lists);
        }
        let program = match compile::compile(&loaded.rules, env.interp()) {
            Ok(p) => p,
            Err(failures) => {
                report_compile_failures(&mut r, source, &loaded.rules, &loaded.rule_spans, failures);
                return Err(PolicyError {
                    diagnostics: r.diagnostics,
                });
            }
        };
        let hash = hex::encode(Sha256::digest(source.as_bytes()));
        let version = loaded
            .version
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", hash.get(..12).unwrap_or("")));
        let default_reason: Arc<str> = if loaded.legacy || loaded.default == Action::Deny {
            Arc::from(NO_MATCH_REASON)
        } else {
            Arc::from(format!(
                "{NO_MATCH_REASON}; the policy's default is `{}`",
                loaded.default.as_str()
            ))
        };
        let info = PolicyInfo {
            version: version.clone(),
            description: loaded.description.clone(),
            hash,
            default: loaded.default,
            rules: loaded.infos.clone(),
            legacy: loaded.legacy,
            origin: origin.to_owned(),
        };
        let mut lints = crate::lint::lints(&r, &loaded);
        lints.splice(0..0, loaded.warnings);
        Ok(Policy {
            info,
            program,
            version: Arc::from(version),
            default_reason,
            lints,
            tests: loaded.tests,
            safety,
        })
    }

    /// Reads and compiles a policy file.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let origin = path.display().to_string();
        let source = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::plain(&origin, format!("cannot read policy file: {e}")))?;
        Self::from_yaml(&source, &origin)
    }

    fn frame(&self) -> Frame<'_> {
        Frame {
            program: &self.program,
            default: self.info.default,
            default_reason: &self.default_reason,
            version: &self.version,
        }
    }

    /// Decides a call: the first matching rule, else the default.
    /// With payload safety sections, their built-in checks run first (see
    /// [`crate::RULE_TOOL_SCHEMA`] and the other built-in rule names).
    pub fn evaluate(&self, req: &Request, facts: &dyn SessionFacts) -> Decision {
        if self.safety.active
            && let Some(d) = self.safety.precheck(req, &self.version)
        {
            return d;
        }
        let frame = self.frame();
        let out = frame.run(req, facts, &mut NoTrace);
        frame.decide(req, &out)
    }

    /// Decides a call and says why: every rule tried with the value of each
    /// atom, and the DAG nodes visited.
    pub fn explain(&self, req: &Request, facts: &dyn SessionFacts) -> Explanation {
        let frame = self.frame();
        if self.safety.active
            && let Some(decision) = self.safety.precheck(req, &self.version)
        {
            // A built-in check decided: no rule was tried.
            let out = frame.run(req, facts, &mut NoTrace);
            return Explanation {
                defaulted: false,
                decision,
                tool: req.tool.to_string(),
                tool_match: out.tool_match,
                rules: Vec::new(),
                visited: Vec::new(),
            };
        }
        let mut rec = Recorder::new(&self.program);
        let out = frame.run(req, facts, &mut rec);
        let decision = frame.decide(req, &out);
        Explanation {
            defaulted: out.rule.is_none(),
            decision,
            tool: req.tool.to_string(),
            tool_match: out.tool_match,
            rules: rec.rules,
            visited: rec.visited,
        }
    }

    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn stats(&self) -> Stats {
        Stats {
            rules: self.program.rules.len(),
            tools_indexed: self.program.switch.exact.len(),
            globs: self.program.switch.glob_rules.len(),
            atoms: self.program.atoms.len(),
            dag_nodes: self.program.graph.node_count(),
            predicates: self.program.nodes.len().saturating_sub(3),
        }
    }

    /// Warnings: shadowed rules, globs matching no named tool, legacy
    /// values that look like regexes, ranges or time windows.
    pub fn lints(&self) -> &[Diagnostic] {
        &self.lints
    }

    /// The test cases kept in the file.
    pub fn tests(&self) -> &[PolicyTest] {
        &self.tests
    }

    /// Runs every test case of the file.
    pub fn run_tests(&self) -> Vec<TestOutcome> {
        self.tests.iter().map(|t| t.run(self)).collect()
    }

    /// The arguments to pass on when `payload:` says `redact`: detected
    /// secrets and/or personal data replaced by `[REDACTED:kind]`. `None`
    /// when there is nothing to redact (pass the arguments unchanged).
    pub fn sanitize_args(&self, req: &Request) -> Option<serde_json::Value> {
        if !self.safety.active {
            return None;
        }
        self.safety.sanitize_args(req)
    }

    /// Seed 004's lightweight check: may `tool` receive data with these tags?
    pub fn validate_tool_request<S: AsRef<str>>(&self, tool: &str, data_tags: &[S]) -> RequestValidation {
        self.safety.validate_tool_request(tool, data_tags)
    }

    /// Agent identity binding: may `agent` call `tool`?
    pub fn validate_agent(&self, agent: Option<&str>, tool: &str) -> RequestValidation {
        self.safety.contracts.validate_agent(agent, tool)
    }

    /// Seed 004's full request interception: agent binding, tags, then a
    /// payload scan (a secret blocks; personal data the contract does not
    /// allow is redacted from `payload`).
    pub fn intercept_tool_request<S: AsRef<str>>(
        &self,
        tool: &str,
        payload: &serde_json::Value,
        data_tags: &[S],
        agent: Option<&str>,
    ) -> RequestInterception {
        self.safety
            .contracts
            .intercept_tool_request(tool, payload, data_tags, agent)
    }

    /// Filters a tool's result per its contract: only `allowed_response_fields`
    /// survive (`stripped_fields` names the rest); `findings` are the
    /// secrets and personal data left in `safe_response`. Without a
    /// contract for the tool the response passes unchanged.
    pub fn filter_response(&self, tool: &str, response: &serde_json::Value) -> ResponseInterception {
        self.safety.contracts.intercept_tool_response(tool, response)
    }

    /// The tool contracts and agent bindings of the policy.
    pub fn contracts(&self) -> &tame_safety::Contracts {
        &self.safety.contracts
    }

    /// The tools' argument schemas of the policy.
    pub fn tool_schemas(&self) -> &tame_safety::ToolSchemas {
        &self.safety.schemas
    }

    /// The `payload:` section (defaults when absent).
    pub fn payload_policy(&self) -> crate::safety::PayloadPolicy {
        self.safety.payload
    }

    /// The decision DAG in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        format!("{}", petgraph::dot::Dot::new(&self.program.graph))
    }
}

fn report_compile_failures(
    r: &mut Reporter<'_>,
    source: &str,
    rules: &[RuleSpec],
    spans: &[Option<std::ops::Range<usize>>],
    failures: Vec<CompileFailure>,
) {
    let tree = crate::locate::parse(source).ok().flatten();
    let rule_node = |i: usize| {
        tree.as_ref()
            .and_then(|t| t.get("rules"))
            .and_then(|n| n.items().get(i))
    };
    // Rules may have been skipped while loading; find the node by name.
    let node_of = |i: usize| {
        let name = rules.get(i).map(|r| &*r.name)?;
        (0..)
            .map_while(&rule_node)
            .find(|n| n.get("name").and_then(|v| v.as_str()) == Some(name))
    };
    for f in failures {
        match f {
            CompileFailure::Condition { rule, message, span } => {
                let name = rules.get(rule).map_or("?", |r| &*r.name);
                let cond = node_of(rule).and_then(|n| n.get("condition"));
                load::lang_error(r, source, cond, name, &message, span, None, None);
            }
            CompileFailure::Tool { rule, pattern, message } => {
                let name = rules.get(rule).map_or("?", |r| &*r.name);
                let span = node_of(rule)
                    .and_then(|n| n.get("tools"))
                    .and_then(|t| t.items().get(pattern).map(crate::locate::YNode::span))
                    .or_else(|| spans.get(rule).cloned().flatten());
                r.error(message, span, Some(name), None);
            }
        }
    }
}
