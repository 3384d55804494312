//! `tame test`: the policy test runner (cases in the policy's `tests:`
//! section and in a sibling `NAME.tests.yml`), and the TameSDK-compatible
//! `tame test TOOL --args JSON` dry run against a server.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};
use tame_enforce::{Enforcer, MemoryStore, SessionState};
use tame_engine::{Decision, Policy};

use crate::Exit;
use crate::cli::TestArgs;
use crate::client::{self, ServerOpts};
use crate::error::CliError;
use crate::local::{expand_targets, load_policy, read_file};
use crate::output::{Out, bold, decision_word, dim, pass_word};
use crate::remote;

/// A test case as written in YAML (a sibling file or the `tests:` section).
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Test case")]
pub struct CaseSpec {
    #[serde(default)]
    pub name: Option<String>,
    /// The call: `{tool_name, tool_args, session_id?, agent_id?, user_id?, metadata?}`.
    #[serde(default)]
    pub call: Option<Value>,
    /// Shorthand for `call.tool_name`.
    #[serde(default)]
    pub tool: Option<String>,
    /// Shorthand for `call.tool_args`.
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Offline session facts: `{calls, counts, called, labels}`.
    #[serde(default)]
    pub session: Option<Value>,
    /// The evaluation time (RFC 3339), for time-window rules.
    #[serde(default)]
    pub now: Option<String>,
    /// The expected decision: `allow`, `deny` or `approve` (of `call`; a
    /// test with `steps:` expects per step).
    #[serde(default, alias = "decision")]
    pub expect: Option<String>,
    /// The expected rule; `null` means "the default applied"; absent means
    /// "any rule".
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    pub rule: Option<Option<String>>,
    /// A text the reason must contain.
    #[serde(default)]
    pub reason_contains: Option<String>,
    /// A whole session instead of one `call`, in one fresh session: each
    /// step a call with its expected decision, a user `input`, or the
    /// `result` of the previous call.
    #[serde(default)]
    pub steps: Option<Vec<StepSpec>>,
}

/// One step of a session test (`steps:`): exactly one of `call` (with
/// `expect`, and optionally `rule` and `reason`), `input` or `result`.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Test step")]
pub struct StepSpec {
    /// A call: `{tool_name, tool_args, agent_id?, user_id?, metadata?, now?}`
    /// (in the test's session).
    #[serde(default)]
    pub call: Option<Value>,
    /// The call's expected decision: `allow`, `deny` or `approve`.
    #[serde(default, alias = "decision")]
    pub expect: Option<String>,
    /// The rule expected to decide the call; `null`: the default applied.
    #[serde(default, deserialize_with = "present")]
    #[schemars(with = "Option<String>")]
    pub rule: Option<Option<String>>,
    /// A text the call's reason must contain.
    #[serde(default, alias = "reason")]
    pub reason_contains: Option<String>,
    /// What the user asked (recorded as the session's input).
    #[serde(default)]
    pub input: Option<String>,
    /// What the previous call returned (any value; it must have run).
    #[serde(default, deserialize_with = "present_value")]
    #[schemars(with = "Option<Value>")]
    pub result: Option<Value>,
}

/// Distinguishes `result: null` (Some(Null)) from an absent `result`.
fn present_value<'de, D>(d: D) -> Result<Option<Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Value::deserialize(d).map(Some)
}

/// Distinguishes `rule: null` (Some(None)) from an absent `rule` (None).
fn present<'de, D>(d: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d).map(Some)
}

/// A sibling test file: a list of cases or `{tests: [...]}`. Its JSON
/// Schema (`tame schema tests`) is derived from it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(title = "Tame policy tests (NAME.tests.yml)")]
pub(crate) enum TestFile {
    List(Vec<CaseSpec>),
    Map { tests: Vec<CaseSpec> },
}

/// One case ready to run.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    /// Where the case was written.
    pub origin: String,
    pub spec: CaseSpec,
    /// Why the case cannot run at all, found when it was read.
    pub problem: Option<String>,
}

/// The outcome of one case.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub case: Case,
    pub pass: bool,
    pub actual: Value,
    /// Why the case failed, one line per difference.
    pub diff: Vec<String>,
    /// The rules that decided its calls.
    pub hit: Vec<String>,
}

impl CaseSpec {
    /// The call as the engine reads it, with the CLI's extra keys.
    pub fn call_json(&self) -> Result<Value, String> {
        let mut call = match &self.call {
            Some(Value::Object(map)) => Value::Object(map.clone()),
            Some(_) => return Err(String::from("`call` must be a mapping")),
            None => json!({}),
        };
        if let Some(tool) = &self.tool {
            crate::output::set(&mut call, "tool_name", tool.clone());
        }
        if let Some(args) = &self.args {
            crate::output::set(&mut call, "tool_args", args.clone());
        }
        if call.get("tool_args").is_none() {
            crate::output::set(&mut call, "tool_args", json!({}));
        }
        for (key, value) in [
            ("session_id", &self.session_id),
            ("agent_id", &self.agent_id),
            ("user_id", &self.user_id),
        ] {
            if let Some(v) = value {
                crate::output::set(&mut call, key, v.clone());
            }
        }
        if let Some(m) = &self.metadata {
            crate::output::set(&mut call, "metadata", m.clone());
        }
        if let Some(s) = &self.session {
            crate::output::set(&mut call, "session", s.clone());
        }
        if let Some(now) = &self.now {
            crate::output::set(&mut call, "now", now.clone());
        }
        if call.get("tool_name").is_none() {
            return Err(String::from("the case names no tool (`tool:` or `call.tool_name`)"));
        }
        Ok(call)
    }
}

/// The sibling test file of a policy: `NAME.tests.yml` beside `NAME.yml`.
pub fn sibling_tests(policy: &Path) -> Option<PathBuf> {
    let stem = policy.file_stem()?.to_str()?;
    let ext = policy.extension().and_then(|e| e.to_str()).unwrap_or("yml");
    let candidate = policy.with_file_name(format!("{stem}.tests.{ext}"));
    candidate.is_file().then_some(candidate)
}

/// Reads cases from a test file.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, CliError> {
    let text = read_file(path)?;
    let origin = path.display().to_string();
    let file: TestFile = serde_yaml::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{origin}:{}:{}: ", l.line(), l.column()))
            .unwrap_or_else(|| format!("{origin}: "));
        CliError::Input(format!("{at}invalid test file: {e}"))
    })?;
    let specs = match file {
        TestFile::List(specs) | TestFile::Map { tests: specs } => specs,
    };
    Ok(number_cases(specs, &origin))
}

fn number_cases(specs: Vec<CaseSpec>, origin: &str) -> Vec<Case> {
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Case {
            name: spec.name.clone().unwrap_or_else(|| format!("case {}", i + 1)),
            origin: origin.to_string(),
            spec,
            problem: None,
        })
        .collect()
}

/// The cases kept in the policy file itself (`tests:`), read by the engine
/// (a session test's steps are read here, as in a sibling file).
pub fn inline_cases(policy: &Policy, origin: &str) -> Vec<Case> {
    policy
        .tests()
        .iter()
        .map(|test| Case {
            name: test.name.clone(),
            origin: format!("{origin}:{}", test.line),
            problem: None,
            spec: CaseSpec {
                name: Some(test.name.clone()),
                call: (!test.call.is_null()).then(|| test.call.clone()),
                tool: None,
                args: None,
                session_id: None,
                agent_id: None,
                user_id: None,
                metadata: None,
                session: test.session.clone(),
                now: None,
                expect: test.expect.map(|e| e.as_str().to_string()),
                // The engine's `rule` is "the rule expected, if given".
                rule: test.rule.clone().map(Some),
                reason_contains: None,
                steps: None,
            },
        })
        .zip(policy.tests())
        .map(|(mut case, test)| {
            if let Some(steps) = &test.steps {
                match steps
                    .iter()
                    .map(|s| serde_json::from_value::<StepSpec>(s.clone()))
                    .collect()
                {
                    Ok(steps) => case.spec.steps = Some(steps),
                    Err(e) => {
                        case.spec.steps = Some(Vec::new());
                        case.problem = Some(format!("invalid step: {e}"));
                    }
                }
            }
            case
        })
        .collect()
}

/// Runs one case against a compiled policy.
pub fn run_case(policy: &Policy, case: &Case) -> Outcome {
    if let Some(problem) = &case.problem {
        return Outcome {
            case: case.clone(),
            pass: false,
            actual: json!({"error": problem}),
            diff: vec![format!("the case cannot run: {problem}")],
            hit: Vec::new(),
        };
    }
    if let Some(steps) = &case.spec.steps {
        return run_session(policy, case, steps);
    }
    // Through the enforcement path, from the case's fixed facts (a case
    // is one call: it records nothing).
    let evaluated = case.spec.call_json().and_then(|call| {
        let (call, facts) = crate::local::enforce_call(&call)?;
        let state = facts.as_ref().map(SessionState::seeded).unwrap_or_default();
        Enforcer::with_policy(policy)
            .decide(call, &state, None)
            .map(|outcome| outcome.decision)
            .map_err(|e| e.to_string())
    });
    let decision = match evaluated {
        Ok(d) => d,
        Err(message) => {
            return Outcome {
                case: case.clone(),
                pass: false,
                actual: json!({"error": message}),
                diff: vec![format!("the case cannot run: {message}")],
                hit: Vec::new(),
            };
        }
    };
    let spec = &case.spec;
    let diff = check(
        spec.expect.as_deref(),
        spec.rule.as_ref(),
        spec.reason_contains.as_deref(),
        &decision,
    );
    Outcome {
        case: case.clone(),
        pass: diff.is_empty(),
        actual: decision_json(&decision),
        diff,
        hit: decision.rule_name.iter().map(|r| r.to_string()).collect(),
    }
}

fn decision_json(decision: &Decision) -> Value {
    json!({
        "decision": decision.action.as_str(),
        "rule_name": decision.rule_name.as_deref(),
        "reason": decision.reason,
    })
}

/// How `decision` differs from what was expected, one line per difference.
fn check(
    expect: Option<&str>,
    rule: Option<&Option<String>>,
    reason_contains: Option<&str>,
    decision: &Decision,
) -> Vec<String> {
    let mut diff = Vec::new();
    match expect {
        None => diff.push(String::from("no `expect:` (allow, deny or approve)")),
        Some(e) if !matches!(e, "allow" | "deny" | "approve") => {
            diff.push(format!("`expect: {e}` is not a decision (allow, deny or approve)"));
        }
        Some(e) if e != decision.action.as_str() => {
            diff.push(format!("decision: expected {e}, got {}", decision.action.as_str()));
        }
        Some(_) => {}
    }
    if let Some(expected_rule) = rule {
        let got = decision.rule_name.as_deref();
        if expected_rule.as_deref() != got {
            diff.push(format!(
                "rule: expected {}, got {}",
                expected_rule.as_deref().unwrap_or("(default)"),
                got.unwrap_or("(default)")
            ));
        }
    }
    if let Some(text) = reason_contains.filter(|text| !decision.reason.contains(text)) {
        diff.push(format!(
            "reason: expected it to contain `{text}`, got `{}`",
            decision.reason
        ));
    }
    diff
}

/// What one step of a session test does.
enum StepKind<'a> {
    Call(&'a Value),
    Input(&'a str),
    Result(&'a Value),
}

fn step_kind(step: &StepSpec) -> Result<StepKind<'_>, String> {
    let has_call_fields = step.expect.is_some() || step.rule.is_some() || step.reason_contains.is_some();
    match (&step.call, &step.input, &step.result) {
        (Some(call), None, None) => Ok(StepKind::Call(call)),
        (None, Some(text), None) if !has_call_fields => Ok(StepKind::Input(text)),
        (None, None, Some(value)) if !has_call_fields => Ok(StepKind::Result(value)),
        (None, None, None) => Err(String::from("the step has none of `call`, `input`, `result`")),
        (None, _, _) if has_call_fields => Err(String::from("`expect`, `rule` and `reason` belong to a `call` step")),
        _ => Err(String::from(
            "a step is one of `call`, `input` or `result`, not several",
        )),
    }
}

/// Runs a session test (`steps:`) in one fresh session, through the
/// enforcement path as `tame eval` does: each call decided and recorded,
/// each input and result recorded. A step that cannot run ends the test.
fn run_session(policy: &Policy, case: &Case, steps: &[StepSpec]) -> Outcome {
    let spec = &case.spec;
    let store = MemoryStore::with_log_capacity(0);
    let enforcer = Enforcer::with_policy(policy);
    let mut session = spec.session_id.clone().unwrap_or_else(|| String::from("test"));
    let mut diff = Vec::new();
    let mut actual = Vec::new();
    let mut hit = Vec::new();
    if spec.call.is_some() || spec.tool.is_some() || spec.expect.is_some() {
        diff.push(String::from(
            "a test holds `steps:` or one `call:` with `expect:`, not both",
        ));
    }
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let ran = step_kind(step).and_then(|kind| match kind {
            StepKind::Call(call) => {
                let call = step_call(spec, call, &session)?;
                if let Some(id) = call.get("session_id").and_then(Value::as_str) {
                    session = id.to_owned();
                }
                let tool = call.get("tool_name").and_then(Value::as_str).unwrap_or("?").to_owned();
                let (call, facts) = crate::local::enforce_call(&call)?;
                if let Some(facts) = &facts {
                    store.seed_session(&enforcer.session_key(&call), SessionState::seeded(facts));
                }
                let decision = store.enforce(&enforcer, call).map_err(|e| e.to_string())?.decision;
                let mut got = decision_json(&decision);
                crate::output::set(&mut got, "step", n);
                actual.push(got);
                hit.extend(decision.rule_name.iter().map(|r| r.to_string()));
                let wrong = check(
                    step.expect.as_deref(),
                    step.rule.as_ref(),
                    step.reason_contains.as_deref(),
                    &decision,
                );
                diff.extend(wrong.into_iter().map(|d| format!("step {n} (`{tool}`): {d}")));
                Ok(())
            }
            StepKind::Input(text) => {
                actual.push(json!({"step": n, "recorded": "input"}));
                crate::steps::record_input(&store, &enforcer, &session, text).map_err(|e| e.to_string())
            }
            StepKind::Result(value) => {
                actual.push(json!({"step": n, "recorded": "result"}));
                crate::steps::record_result(&store, &enforcer, &session, value.clone()).map_err(|e| e.to_string())
            }
        });
        if let Err(message) = ran {
            diff.push(format!("step {n} cannot run: {message}"));
            actual.push(json!({"step": n, "error": message}));
            break;
        }
    }
    Outcome {
        case: case.clone(),
        pass: diff.is_empty(),
        actual: json!({ "steps": actual }),
        diff,
        hit,
    }
}

/// A step's call in the test's session (with the test's `agent_id`,
/// `user_id` and `metadata` unless the call names its own).
fn step_call(spec: &CaseSpec, call: &Value, session: &str) -> Result<Value, String> {
    let Value::Object(fields) = call else {
        return Err(String::from("`call` must be a mapping"));
    };
    let mut call = Value::Object(fields.clone());
    let defaults = [
        ("session_id", Some(Value::String(session.to_owned()))),
        ("agent_id", spec.agent_id.clone().map(Value::String)),
        ("user_id", spec.user_id.clone().map(Value::String)),
        ("metadata", spec.metadata.clone()),
    ];
    for (key, value) in defaults {
        if let Some(value) = value
            && call.get(key).is_none()
        {
            crate::output::set(&mut call, key, value);
        }
    }
    if call.get("tool_args").is_none() {
        crate::output::set(&mut call, "tool_args", json!({}));
    }
    Ok(call)
}

/// The rule names a policy declares, in file order.
pub fn rule_names(policy: &Policy) -> Vec<String> {
    policy.info().rules.iter().map(|r| r.name.to_string()).collect()
}

/// `tame test ...`: the policy runner, or a server dry run.
pub fn test_command(args: &TestArgs, server: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let first = args.targets.first().map(String::as_str).unwrap_or("");
    let looks_like_file = |t: &str| Path::new(t).exists() || t.ends_with(".yml") || t.ends_with(".yaml");
    let server_mode = args.args.is_some() || args.server || (args.targets.len() == 1 && !looks_like_file(first));
    if server_mode {
        if args.targets.len() != 1 {
            return Err(CliError::Input(String::from(
                "`tame test TOOL --args JSON` takes exactly one tool name",
            )));
        }
        let tool_args = client::parse_loose_args(args.args.as_deref().unwrap_or("{}"))?;
        return remote::test_call(first, tool_args, server, out);
    }
    run_policy_tests(args, out)
}

fn run_policy_tests(args: &TestArgs, out: &Out) -> Result<Exit, CliError> {
    let mut passed = 0usize;
    let mut failed = 0usize;
    let mut errors = 0usize;
    let mut reports = Vec::new();
    let targets: Vec<PathBuf> = args.targets.iter().map(PathBuf::from).collect();
    for path in expand_targets(&targets)? {
        let target = path.display().to_string();
        match run_file(&path, &args.test_files, args.quiet, out) {
            Ok(report) => {
                passed += report.passed;
                failed += report.failed;
                reports.push(report.json);
            }
            Err(err) => {
                errors += 1;
                if out.json {
                    reports.push(json!({"file": target, "error": err.to_json()}));
                } else {
                    out.error(&err);
                }
            }
        }
    }
    if out.json {
        out.json_pretty(&json!({
            "files": reports,
            "passed": passed,
            "failed": failed,
            "errors": errors,
        }));
    }
    // The summary line stands alone so CI tools can read it.
    out.line(format!("{passed} passed, {failed} failed"));
    Ok(if failed > 0 || errors > 0 {
        Exit::Error
    } else {
        Exit::Ok
    })
}

struct FileReport {
    passed: usize,
    failed: usize,
    json: Value,
}

fn run_file(path: &Path, extra: &[PathBuf], quiet: bool, out: &Out) -> Result<FileReport, CliError> {
    let policy = load_policy(path)?;
    let origin = path.display().to_string();
    let mut cases = inline_cases(&policy, &origin);
    if let Some(sibling) = sibling_tests(path) {
        cases.extend(read_cases(&sibling)?);
    }
    for file in extra {
        cases.extend(read_cases(file)?);
    }
    if cases.is_empty() {
        return Err(CliError::Input(format!(
            "{origin}: no tests found (add a `tests:` section or a {} file)",
            sibling_name(path)
        )));
    }
    if !out.json {
        out.line(format!("{} {}", bold("testing"), bold(&origin)));
    }
    let mut hit = BTreeSet::new();
    let mut passed = 0;
    let mut failed = 0;
    let mut case_reports = Vec::new();
    for case in &cases {
        let outcome = run_case(&policy, case);
        hit.extend(outcome.hit.iter().cloned());
        if outcome.pass {
            passed += 1;
        } else {
            failed += 1;
        }
        if out.json {
            case_reports.push(json!({
                "name": case.name,
                "origin": case.origin,
                "pass": outcome.pass,
                "expected": {
                    "decision": case.spec.expect,
                    "rule_name": case.spec.rule,
                },
                "actual": outcome.actual,
                "diff": outcome.diff,
            }));
        } else {
            if !(quiet && outcome.pass) {
                print_outcome(&outcome, out);
            }
        }
    }
    let uncovered: Vec<String> = rule_names(&policy).into_iter().filter(|r| !hit.contains(r)).collect();
    if !out.json {
        if uncovered.is_empty() {
            out.line(dim("  coverage: every rule was hit"));
        } else {
            out.line(format!(
                "  {} rules never hit: {}",
                uncovered.len(),
                uncovered.join(", ")
            ));
        }
    }
    Ok(FileReport {
        passed,
        failed,
        json: json!({
            "file": origin,
            "passed": passed,
            "failed": failed,
            "cases": case_reports,
            "uncovered_rules": uncovered,
        }),
    })
}

fn sibling_name(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("policy");
    format!("{stem}.tests.yml")
}

fn print_outcome(outcome: &Outcome, out: &Out) {
    let case = &outcome.case;
    if outcome.pass {
        out.line(format!("  {} {}", pass_word(true), case.name));
        return;
    }
    out.line(format!(
        "  {} {} {}",
        pass_word(false),
        bold(&case.name),
        dim(format!("({})", case.origin))
    ));
    if case.spec.steps.is_some() {
        // A session: each line names its step.
        for line in &outcome.diff {
            out.line(format!("      {line}"));
        }
        return;
    }
    let expected_rule = match &case.spec.rule {
        None => String::new(),
        Some(None) => String::from(" by (default)"),
        Some(Some(r)) => format!(" by {r}"),
    };
    out.line(format!(
        "      - expected: {}{expected_rule}",
        decision_word(case.spec.expect.as_deref().unwrap_or("(none)"))
    ));
    let actual_decision = outcome
        .actual
        .get("decision")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let actual_rule = outcome
        .actual
        .get("rule_name")
        .map(|r| r.as_str().unwrap_or("(default)").to_string())
        .unwrap_or_default();
    let reason = outcome
        .actual
        .get("reason")
        .or_else(|| outcome.actual.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("");
    out.line(format!(
        "      + actual:   {} by {actual_rule} {}",
        decision_word(actual_decision),
        dim(format!("({reason})"))
    ));
    for line in &outcome.diff {
        out.line(format!("        {}", dim(line)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> CaseSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn shorthand_cases_build_the_call() {
        let s = spec(
            "tool: send_email\nargs: {to: a@b.c}\nuser_id: u1\nsession: {calls: 2}\nnow: '2026-01-01T00:00:00Z'\nexpect: deny\n",
        );
        assert_eq!(
            s.call_json().unwrap(),
            json!({"tool_name": "send_email", "tool_args": {"to": "a@b.c"}, "user_id": "u1",
                   "session": {"calls": 2}, "now": "2026-01-01T00:00:00Z"})
        );
        assert_eq!(s.rule, None, "absent rule means any rule");
    }

    #[test]
    fn rule_null_means_the_default() {
        let s = spec("tool: x\nexpect: deny\nrule: null\n");
        assert_eq!(s.rule, Some(None));
        let s = spec("tool: x\nexpect: deny\nrule: r1\n");
        assert_eq!(s.rule, Some(Some(String::from("r1"))));
    }

    #[test]
    fn a_case_without_a_tool_cannot_run() {
        let s = spec("args: {}\nexpect: allow\n");
        assert!(s.call_json().unwrap_err().contains("names no tool"));
    }

    #[test]
    fn typos_in_cases_are_errors() {
        let err = serde_yaml::from_str::<CaseSpec>("tool: x\nexpct: allow\n").unwrap_err();
        assert!(err.to_string().contains("expct"), "{err}");
    }

    #[test]
    fn cases_run_against_a_policy_with_a_diff() {
        let policy = Policy::from_yaml(
            "version: \"t\"\ndefault: deny\nrules:\n  - name: reads\n    action: allow\n    tools: [\"read_*\"]\n",
            "t.yml",
        )
        .unwrap();
        let case = |yaml: &str| Case {
            name: String::from("c"),
            origin: String::from("t.tests.yml"),
            spec: spec(yaml),
            problem: None,
        };
        let ok = run_case(&policy, &case("tool: read_file\nexpect: allow\nrule: reads\n"));
        assert!(ok.pass, "{:?}", ok.diff);
        let bad = run_case(&policy, &case("tool: write_file\nexpect: allow\nrule: reads\n"));
        assert!(!bad.pass);
        assert_eq!(
            bad.diff,
            vec![
                String::from("decision: expected allow, got deny"),
                String::from("rule: expected reads, got (default)"),
            ]
        );
        let typo = run_case(&policy, &case("tool: read_file\nexpect: alow\n"));
        assert!(
            typo.diff[0].contains("`expect: alow` is not a decision"),
            "{:?}",
            typo.diff
        );
    }
}
