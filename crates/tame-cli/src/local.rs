//! Offline commands over the engine facade: `check`, `eval`, `explain` and
//! `graph`. Every decision comes from `tame_engine`; this module only reads
//! files, converts input and prints.

use std::cell::RefCell;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tame_enforce::{Enforcer, FactsView, MemoryStore, SessionSource as _, SessionState};
use tame_engine::{MemoryFacts, Policy, Provenance, Request, SessionFacts, ToolPattern};

use crate::Exit;
use crate::cli::{CheckArgs, EvalArgs, ExplainArgs, GraphArgs};
use crate::client::parse_object;
use crate::error::CliError;
use crate::output::{Out, bold, dim, pass_word};
use crate::steps::{self, Step, StepError, parse_step};

/// Reads a file, naming it when it cannot be read.
pub fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Converts an engine error into the CLI's error, keeping every diagnostic.
pub fn policy_error(path: &Path, err: &tame_engine::PolicyError) -> CliError {
    CliError::Policy {
        path: path.to_path_buf(),
        rendered: err.to_string().trim_end().to_string(),
        diagnostics: err
            .diagnostics
            .iter()
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
            .collect(),
    }
}

/// Whether a path names a policy file (YAML, not a sibling test file).
fn is_policy_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    (name.ends_with(".yml") || name.ends_with(".yaml")) && !name.contains(".tests.")
}

fn collect_dir(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CliError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CliError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        paths.push(entry.path());
    }
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_dir(&path, found)?;
        } else if is_policy_file(&path) {
            found.push(path);
        }
    }
    Ok(())
}

/// Expands directories to the policy files below them (sorted; sibling
/// `*.tests.yml` files are not policies). Files are kept as given.
pub fn expand_targets(targets: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for target in targets {
        if target.is_dir() {
            let before = out.len();
            collect_dir(target, &mut out)?;
            if out.len() == before {
                return Err(CliError::Input(format!(
                    "no policy files (*.yml, *.yaml) in `{}`",
                    target.display()
                )));
            }
        } else {
            out.push(target.clone());
        }
    }
    Ok(out)
}

/// Reads and compiles a policy file.
pub fn load_policy(path: &Path) -> Result<Policy, CliError> {
    let source = read_file(path)?;
    let origin = path.display().to_string();
    Policy::from_yaml(&source, &origin).map_err(|e| policy_error(path, &e))
}

/// `tame check FILE...`.
pub fn check(args: &CheckArgs, out: &Out) -> Result<Exit, CliError> {
    let mut failed = false;
    let mut warned = false;
    for path in &expand_targets(&args.files)? {
        match check_one(path, out) {
            Ok(had_warnings) => warned |= had_warnings,
            Err(err) => {
                failed = true;
                if out.json {
                    let mut obj = err.to_json();
                    crate::output::set(&mut obj, "ok", false);
                    crate::output::set(&mut obj, "file", path.display().to_string());
                    out.json_line(&obj);
                } else {
                    out.error(&err);
                }
            }
        }
    }
    if failed || (args.deny_warnings && warned) {
        Ok(Exit::Error)
    } else {
        Ok(Exit::Ok)
    }
}

/// Checks one file; `Ok(true)` when it compiled with lints.
fn check_one(path: &Path, out: &Out) -> Result<bool, CliError> {
    let policy = load_policy(path)?;
    let stats = policy.stats();
    let lints = policy.lints();
    if out.json {
        out.json_line(&json!({
            "file": path.display().to_string(),
            "ok": true,
            "version": policy.info().version.to_string(),
            "legacy": policy.info().legacy,
            "rules": stats.rules,
            "tools_indexed": stats.tools_indexed,
            "dag_nodes": stats.dag_nodes,
            "tests": policy.tests().len(),
            "warnings": lints,
        }));
        return Ok(!lints.is_empty());
    }
    if out.error_format == crate::output::ErrorFormat::Json {
        // One JSON object per lint: the engine's diagnostic shape.
        for lint in lints {
            let value = serde_json::to_value(lint).unwrap_or(Value::Null);
            crate::output::err!("{}", json!({"warning": value}));
        }
    } else {
        if !lints.is_empty() {
            out.warning(format!(
                "{}: {} lint{} in policy",
                path.display(),
                lints.len(),
                if lints.len() == 1 { "" } else { "s" }
            ));
        }
        for lint in lints {
            // Rendered lints carry their location and a caret.
            crate::output::err!("{}", lint.rendered.trim_end());
        }
    }
    let legacy = if policy.info().legacy { ", legacy format" } else { "" };
    let warnings = match lints.len() {
        0 => String::new(),
        1 => String::from(", 1 warning"),
        n => format!(", {n} warnings"),
    };
    out.line(format!(
        "{} {}: {} rules, {} tools indexed, {} DAG nodes{legacy}{warnings}",
        pass_word(true),
        bold(path.display()),
        stats.rules,
        stats.tools_indexed,
        stats.dag_nodes,
    ));
    Ok(!lints.is_empty())
}

/// `tame graph POLICY`.
pub fn graph(args: &GraphArgs, out: &Out) -> Result<Exit, CliError> {
    let policy = load_policy(&args.policy)?;
    out.line(policy.to_dot().trim_end());
    Ok(Exit::Ok)
}

/// One input line, converted: the call and the fixed facts it brings.
struct Line {
    call: tame_enforce::Call,
    session: Option<MemoryFacts>,
    /// The line named its session (a call without one gets a fresh id and
    /// shares nothing with the other lines).
    named_session: bool,
}

/// Splits a call line into the call proper and its `session` and `now`
/// (which only offline runs accept).
fn split_line(value: &Value) -> Result<(Value, Option<MemoryFacts>, Option<jiff::Timestamp>), String> {
    let Some(obj) = value.as_object() else {
        return Err(String::from("a call must be a JSON object"));
    };
    let mut call = obj.clone();
    let session = call.remove("session");
    let now = match call.remove("now") {
        None => None,
        Some(now) => {
            let text = now
                .as_str()
                .ok_or_else(|| String::from("`now` must be an RFC 3339 timestamp string"))?;
            Some(
                text.parse::<jiff::Timestamp>()
                    .map_err(|e| format!("`now` is not an RFC 3339 timestamp: {e}"))?,
            )
        }
    };
    let facts = match session {
        None | Some(Value::Null) => None,
        Some(s) => Some(facts_from_json(&s)?),
    };
    Ok((Value::Object(call), facts, now))
}

/// Parses one line of calls (also used by `bench`, `test` and `replay`).
pub fn parse_call(value: &Value) -> Result<(Request, Option<MemoryFacts>), String> {
    let (call, facts, now) = split_line(value)?;
    let mut request = Request::from_call_json(&call).map_err(|e| e.to_string())?;
    if let Some(now) = now {
        request.now = now;
    }
    Ok((request, facts))
}

/// Offline session facts from JSON (`{"calls": 3, "counts": {...}}`).
pub fn facts_from_json(value: &Value) -> Result<MemoryFacts, String> {
    MemoryFacts::from_json(value).map_err(|e| format!("bad `session` facts: {e}"))
}

/// Reads a call line for the enforcement path: the call (at its `now`)
/// and its fixed `session` facts.
pub fn enforce_call(value: &Value) -> Result<(tame_enforce::Call, Option<MemoryFacts>), String> {
    let (call, session, now) = split_line(value)?;
    let mut call = tame_enforce::Call::from_json(call).map_err(|e| e.to_string())?;
    if let Some(now) = now {
        call = call.at(now);
    }
    Ok((call, session))
}

/// Reads a call line (a [`Step::Call`]).
fn call_line(value: &Value) -> Result<Line, String> {
    let named_session = value.get("session_id").is_some_and(|s| !s.is_null());
    let (call, session) = enforce_call(value)?;
    Ok(Line {
        call,
        session,
        named_session,
    })
}

/// Why a line of `eval` gave no decision: the message, and the field at
/// fault when one is.
struct LineError {
    message: String,
    field: Option<String>,
}

impl From<String> for LineError {
    fn from(message: String) -> Self {
        LineError { message, field: None }
    }
}

impl From<StepError> for LineError {
    fn from(e: StepError) -> Self {
        LineError {
            message: e.to_string(),
            field: Some(e.field),
        }
    }
}

/// One line of `eval`: a call gives its decision, a step `{"recorded": KIND}`.
fn eval_line(
    enforcer: &Enforcer<'_>,
    text: &str,
    store: &MemoryStore,
    explain: bool,
    no_accumulate: bool,
) -> Result<String, LineError> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON at column {}: {e}", e.column()))?;
    let step = parse_step(&value)?;
    if no_accumulate && !matches!(step, Step::Call(_)) {
        return Err(LineError {
            message: String::from("an `input` or `result` step needs the session's history: drop --no-accumulate"),
            field: Some(String::from(if matches!(step, Step::Input { .. }) {
                "input"
            } else {
                "result"
            })),
        });
    }
    let kind = match step {
        Step::Call(call) => {
            return Ok(evaluate_line(
                enforcer,
                call_line(&call)?,
                store,
                explain,
                no_accumulate,
            )?);
        }
        Step::Input { session_id, text } => {
            steps::record_input(store, enforcer, &session_id, &text)?;
            "input"
        }
        Step::Result { session_id, value } => {
            steps::record_result(store, enforcer, &session_id, value)?;
            "result"
        }
    };
    Ok(json!({ "recorded": kind }).to_string())
}

/// One output line of `eval`.
#[derive(serde::Serialize)]
struct EvalLine<'a> {
    decision: &'a str,
    rule_name: Option<&'a str>,
    reason: &'a str,
    policy_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    explain: Option<Value>,
    /// With `payload: {secrets|pii: redact}`: the arguments to pass on.
    #[serde(skip_serializing_if = "Option::is_none")]
    sanitized_args: Option<Value>,
}

/// `tame eval POLICY [CALLS|-]`.
pub fn eval(args: &EvalArgs, out: &Out) -> Result<Exit, CliError> {
    let policy = load_policy(&args.policy)?;
    let reader: Box<dyn BufRead> = if args.calls == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let path = PathBuf::from(&args.calls);
        let file = std::fs::File::open(&path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        Box::new(std::io::BufReader::new(file))
    };
    // Sessions across the lines of this run; nothing is logged (every
    // decision is printed instead).
    let store = MemoryStore::with_log_capacity(0);
    let enforcer = Enforcer::with_policy(&policy);
    let mut had_error = false;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                out.json_line(&json!({"error": format!("cannot read line: {e}"), "line": number}));
                had_error = true;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match eval_line(&enforcer, &line, &store, args.explain, args.no_accumulate) {
            Ok(text) => out.line(text),
            Err(LineError { message, field }) => {
                let mut answer = json!({"error": message, "line": number});
                if let Some(field) = field {
                    crate::output::set(&mut answer, "field", field);
                }
                out.json_line(&answer);
                had_error = true;
            }
        }
    }
    Ok(if had_error { Exit::Error } else { Exit::Ok })
}

/// Decides one line through the enforcement path: calls sharing a
/// `session_id` share a session in `store` (a line's `session` facts
/// replace it first); a call without one, or with `--no-accumulate`,
/// starts from its own facts and is not kept.
fn evaluate_line(
    enforcer: &Enforcer<'_>,
    line: Line,
    store: &MemoryStore,
    explain: bool,
    no_accumulate: bool,
) -> Result<String, String> {
    let Line {
        call,
        session,
        named_session,
    } = line;
    let policy = enforcer.policy();
    let keep = named_session && !no_accumulate;
    let outcome = if keep {
        let key = enforcer.session_key(&call).into_owned();
        if let Some(given) = &session {
            store.seed_session(&key, SessionState::seeded(given));
        }
        let explain = if explain {
            let cell = store.session_state(&key, false).map_err(|e| e.to_string())?;
            let state = cell.lock();
            Some(explain_json(policy, &call.request, &state))
        } else {
            None
        };
        (store.enforce(enforcer, call).map_err(|e| e.to_string())?, explain)
    } else {
        let state = session.as_ref().map(SessionState::seeded).unwrap_or_default();
        let explain = explain.then(|| explain_json(policy, &call.request, &state));
        (enforcer.decide(call, &state, None).map_err(|e| e.to_string())?, explain)
    };
    let (outcome, explain) = outcome;
    let decision = &outcome.decision;
    let line = EvalLine {
        decision: decision.action.as_str(),
        rule_name: decision.rule_name.as_deref(),
        reason: &decision.reason,
        policy_version: &decision.policy_version,
        explain,
        sanitized_args: outcome.sanitized_args.clone(),
    };
    // Fields in the documented order (a struct, not a sorted map).
    Ok(serde_json::to_string(&line)
        .unwrap_or_else(|e| json!({"error": format!("cannot write the decision: {e}")}).to_string()))
}

/// The explanation of `request` over `state`, with the provenance checks
/// it asked (`provenance`: each check, its answer, and the history entry
/// that made it true).
fn explain_json(policy: &Policy, request: &Request, state: &SessionState) -> Value {
    let facts = Traced::new(state, request.now);
    let mut trace = serde_json::to_value(policy.explain(request, &facts)).unwrap_or(Value::Null);
    let asked = facts.asked.into_inner();
    if !asked.is_empty() {
        crate::output::set(&mut trace, "provenance", asked);
    }
    trace
}

/// Session facts that note each provenance question asked, its answer and,
/// for a true one, the history entry it came from
/// ([`SessionState::provenance_source`]: a slow path, for explanations only).
struct Traced<'a> {
    state: &'a SessionState,
    view: FactsView<'a>,
    asked: RefCell<Vec<Value>>,
}

impl<'a> Traced<'a> {
    fn new(state: &'a SessionState, now: jiff::Timestamp) -> Self {
        Traced {
            state,
            view: state.view(now),
            asked: RefCell::new(Vec::new()),
        }
    }
}

/// A provenance question as a condition would write it.
fn describe(question: Provenance<'_>) -> String {
    fn text(s: &str) -> String {
        const MAX: usize = 60;
        match s.char_indices().nth(MAX) {
            Some((cut, _)) => format!("{:?}", format!("{}…", s.get(..cut).unwrap_or(s))),
            None => format!("{s:?}"),
        }
    }
    let with_glob = |name: &str, x: &str, tools: Option<&ToolPattern>| match tools {
        Some(glob) => format!("{name}({}, {:?})", text(x), glob.as_str()),
        None => format!("{name}({})", text(x)),
    };
    match question {
        Provenance::Input(x) => format!("from_input({})", text(x)),
        Provenance::Results(x, tools) => with_glob("from_results", x, tools),
        Provenance::Carries(x, tools) => with_glob("carries_from_results", x, tools),
    }
}

impl SessionFacts for Traced<'_> {
    fn calls(&self) -> i64 {
        self.view.calls()
    }
    fn count(&self, tool: &ToolPattern, window: Option<jiff::SignedDuration>) -> i64 {
        self.view.count(tool, window)
    }
    fn called(&self, tool: &ToolPattern) -> bool {
        self.view.called(tool)
    }
    fn labels(&self) -> Vec<std::sync::Arc<str>> {
        self.view.labels()
    }
    fn history(&self) -> tame_lang::Value {
        self.view.history()
    }
    fn denied(&self, tool: &ToolPattern, window: Option<jiff::SignedDuration>) -> i64 {
        self.view.denied(tool, window)
    }
    fn inputs(&self) -> tame_lang::Value {
        self.view.inputs()
    }
    fn results(&self, tool: &ToolPattern) -> Result<tame_lang::Value, String> {
        self.view.results(tool)
    }
    fn provenance(&self, question: Provenance<'_>) -> Result<bool, String> {
        let answer = self.view.provenance(question);
        let check = describe(question);
        let mut asked = self.asked.borrow_mut();
        if !asked
            .iter()
            .any(|a| a.get("check").and_then(Value::as_str) == Some(check.as_str()))
        {
            let entry = match &answer {
                Ok(true) => json!({
                    "check": check,
                    "value": true,
                    "source": self.state.provenance_source(question),
                }),
                Ok(false) => json!({"check": check, "value": false}),
                Err(e) => json!({"check": check, "error": e}),
            };
            asked.push(entry);
        }
        answer
    }
}

/// `tame explain POLICY --tool T --args JSON`.
pub fn explain(args: &ExplainArgs, out: &Out) -> Result<Exit, CliError> {
    let policy = load_policy(&args.policy)?;
    let store = MemoryStore::with_log_capacity(0);
    let enforcer = Enforcer::with_policy(&policy);
    let tool_args = parse_object(&args.args, "--args")?;
    let mut call = json!({"tool_name": args.tool, "tool_args": tool_args});
    if let Some(a) = &args.agent_id {
        crate::output::set(&mut call, "agent_id", a.clone());
    }
    if let Some(u) = &args.user_id {
        crate::output::set(&mut call, "user_id", u.clone());
    }
    if let Some(m) = &args.metadata {
        crate::output::set(&mut call, "metadata", parse_object(m, "--metadata")?);
    }
    if let Some(s) = &args.session {
        crate::output::set(&mut call, "session", parse_object(s, "--session")?);
    }
    let session_id = match &args.steps {
        Some(path) => Some(run_steps(path, &store, &enforcer)?),
        None => None,
    };
    if let Some(id) = args.session_id.clone().or(session_id) {
        crate::output::set(&mut call, "session_id", id);
    }
    let (request, facts) = parse_call(&call).map_err(CliError::Input)?;
    let given = facts.as_ref().map(SessionState::seeded);
    let stored = match (&given, request.session_id.as_deref()) {
        (None, Some(id)) => store.session(&enforcer.stored_session(id)),
        _ => None,
    };
    let guard = stored.as_ref().map(|cell| cell.lock());
    let empty = SessionState::new();
    let state = match (&guard, &given) {
        (Some(state), _) => &**state,
        (None, Some(state)) => state,
        (None, None) => &empty,
    };
    let decision = policy.evaluate(&request, &state.view(request.now));
    let trace = explain_json(&policy, &request, state);
    if out.json {
        out.json_pretty(&json!({
            "decision": decision.action.as_str(),
            "rule_name": decision.rule_name.as_deref(),
            "reason": decision.reason,
            "policy_version": &*decision.policy_version,
            "explain": trace,
        }));
    } else {
        out.line(format!(
            "{}  {}",
            crate::output::decision_word(decision.action.as_str()),
            bold(decision.rule_name.as_deref().unwrap_or("(default)"))
        ));
        out.line(format!("  reason: {}", decision.reason));
        print_trace(&trace, out);
    }
    Ok(Exit::for_action(decision.action))
}

/// Runs the step lines of `path` (calls, inputs, results: what `tame eval`
/// reads) into `store`; returns the session of the last line that names
/// one.
fn run_steps(path: &Path, store: &MemoryStore, enforcer: &Enforcer<'_>) -> Result<String, CliError> {
    let text = read_file(path)?;
    let mut last = None;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| CliError::Input(format!("{}:{}: {message}", path.display(), index + 1));
        eval_line(enforcer, line, store, false, false).map_err(|e| at(e.message))?;
        if let Some(id) = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("session_id").and_then(Value::as_str).map(str::to_owned))
        {
            last = Some(id);
        }
    }
    last.ok_or_else(|| {
        CliError::Input(format!(
            "{}: no step names a `session_id` (the session to explain the call in)",
            path.display()
        ))
    })
}

/// Prints an explanation (the engine's JSON form) for humans: each rule
/// tried, its outcome, and the sub-expressions it tested.
fn print_trace(trace: &Value, out: &Out) {
    let Some(rules) = trace.get("rules").and_then(Value::as_array) else {
        out.line(trace);
        return;
    };
    if let Some(tool) = trace.get("tool").and_then(Value::as_str) {
        let how = match trace.get("tool_match").and_then(Value::as_str) {
            Some("exact") => "named exactly by the policy",
            _ => "matched by globs or rules for every tool",
        };
        out.line(format!("  tool `{tool}`: {how}"));
    }
    let builtin = trace
        .pointer("/decision/rule_name")
        .and_then(Value::as_str)
        .filter(|r| tame_engine::BUILTIN_RULES.contains(r));
    if let Some(check) = builtin {
        out.line(dim(format!(
            "  decided by the built-in payload safety check `{check}` before any rule"
        )));
    } else if rules.is_empty() {
        out.line(dim("  no rule applies to this tool"));
    }
    for rule in rules {
        let name = rule.get("rule").and_then(Value::as_str).unwrap_or("?");
        let action = rule.get("action").and_then(Value::as_str).unwrap_or("?");
        let outcome = match rule.get("outcome").and_then(Value::as_str) {
            Some("matched") => crate::output::good("matched"),
            Some("error") => crate::output::bad("error"),
            _ => dim("not matched"),
        };
        out.line(format!("  {} {} {outcome}", bold(name), dim(format!("({action})"))));
        if let Some(err) = rule.get("error").and_then(Value::as_str) {
            out.line(format!("      error: {err}"));
        }
        for atom in rule.get("atoms").and_then(Value::as_array).into_iter().flatten() {
            let expr = atom.get("expr").and_then(Value::as_str).unwrap_or("?");
            let value = atom.get("value").and_then(Value::as_str).unwrap_or("?");
            let cached = if atom.get("cached").and_then(Value::as_bool) == Some(true) {
                dim(" (cached)")
            } else {
                String::new()
            };
            out.line(format!("      {expr} => {value}{cached}"));
        }
    }
    let asked = trace.get("provenance").and_then(Value::as_array);
    if let Some(asked) = asked.filter(|a| !a.is_empty()) {
        out.line("  provenance checks:");
        for entry in asked {
            let check = entry.get("check").and_then(Value::as_str).unwrap_or("?");
            let answer = match (
                entry.get("value").and_then(Value::as_bool),
                entry.get("error").and_then(Value::as_str),
            ) {
                (_, Some(err)) => format!("error: {err}"),
                (Some(true), _) => match entry.get("source").and_then(Value::as_str) {
                    Some(source) => format!("true: {source}"),
                    None => String::from("true: an entry whose text is no longer kept"),
                },
                _ => String::from("false"),
            };
            out.line(format!("      {check} => {answer}"));
        }
    }
    if trace.get("defaulted").and_then(Value::as_bool) == Some(true) {
        out.line(dim("  no rule matched: the policy's default applied"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yaml_policies_count_as_policy_files() {
        assert!(is_policy_file(Path::new("p/coding_agent.yml")));
        assert!(is_policy_file(Path::new("p/x.yaml")));
        assert!(!is_policy_file(Path::new("p/coding_agent.tests.yml")));
        assert!(!is_policy_file(Path::new("p/calls/a.jsonl")));
        assert!(!is_policy_file(Path::new("p/README.md")));
    }

    #[test]
    fn calls_take_now_and_session_facts() {
        let (req, facts) = parse_call(&json!({
            "tool_name": "t", "tool_args": {"a": 1},
            "now": "2026-11-21T06:00:00Z", "session": {"counts": {"t": 2}}
        }))
        .unwrap();
        assert_eq!(&*req.tool, "t");
        assert_eq!(req.now.to_string(), "2026-11-21T06:00:00Z");
        assert!(facts.is_some());
        let err = parse_call(&json!({"tool_name": "t", "now": 5})).unwrap_err();
        assert!(err.contains("`now` must be"), "{err}");
        let err = parse_call(&json!("read_file")).unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
    }
}
