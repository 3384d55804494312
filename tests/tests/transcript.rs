//! Offline and online decide a session identically: one transcript
//! (`tests/transcripts/session.jsonl`, sessions that hit windowed counts,
//! flow rules, totals, approvals and denies that must not count, and a
//! session with a user input and tool results deciding provenance rules,
//! one result never reported) through every frontend that enforces calls:
//!
//! - `tame eval` (the real binary);
//! - the Python engine (`tame.Engine.enforce`, the extension built by
//!   `scripts/py-test.sh` into `target/py-venv`);
//! - the MCP proxy's embedded guard (`tame_integrations::EmbeddedGuard`);
//! - a live `tame serve` over HTTP.
//!
//! Decision, rule and reason must be the same for every call; each
//! frontend records the `input` and `result` steps its own way (the
//! server's inputs and result endpoints, the guard's store and its
//! recorded outcome, the Python engine's record_input/record_result).

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a failed check panics with a message, which is how a test fails"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tame_e2e::{Server, cli_eval, read_calls, root};
use tame_integrations::{CallOutcome, CallStatus, EmbeddedGuard, Guard, ToolCall, Verdict};

fn transcript() -> (PathBuf, PathBuf, Vec<Value>) {
    let dir = root().join("tests/transcripts");
    let calls = read_calls(&dir.join("session.jsonl"));
    (dir.join("session.yml"), dir.join("session.jsonl"), calls)
}

/// What must agree: the decision, the rule and the reason (of a step:
/// that it was recorded).
fn key(v: &Value) -> Value {
    json!({"decision": v["decision"], "rule_name": v["rule_name"], "reason": v["reason"], "recorded": v["recorded"]})
}

/// A line's session (every step names one).
fn session_of(line: &Value) -> String {
    line["session_id"].as_str().unwrap().to_owned()
}

/// What a step line gives on every frontend.
fn recorded(kind: &str) -> Value {
    json!({ "recorded": kind })
}

/// The transcript through a live `tame serve`: calls to the enforce
/// endpoint, inputs to the inputs endpoint, results to the result
/// endpoint under the session's latest call.
fn server_eval(server: &Server, lines: &[Value]) -> Vec<Value> {
    let mut last_log: HashMap<String, String> = HashMap::new();
    lines
        .iter()
        .map(|line| {
            if line.get("tool_name").is_some() {
                let answer = server.enforce(line);
                if let Some(log_id) = answer["log_id"].as_str() {
                    last_log.insert(session_of(line), log_id.to_owned());
                }
                return answer;
            }
            let session = session_of(line);
            if let Some(text) = line.get("input") {
                let (status, body) = server.post(&format!("/api/v1/sessions/{session}/inputs"), &json!({"text": text}));
                assert_eq!(status, 201, "input {line}: {body}");
                return recorded("input");
            }
            let log_id = &last_log[&session];
            let path = format!("/api/v1/enforce/{session}/result?log_id={log_id}");
            let (status, body) = server.post(&path, &json!({"result": line["result"]}));
            assert_eq!(status, 200, "result {line}: {body}");
            recorded("result")
        })
        .collect()
}

/// The transcript through the MCP proxy's embedded guard.
fn guard_eval(policy: &Path, calls: &[Value]) -> Vec<Value> {
    let guard = EmbeddedGuard::from_file(policy).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut last: HashMap<String, (ToolCall, Verdict)> = HashMap::new();
    calls
        .iter()
        .map(|c| {
            if let Some(text) = c.get("input") {
                // The proxy sees no user input: the integration records it
                // in the guard's store.
                let enforcer = tame_enforce::Enforcer::with_policy(guard.policy());
                guard
                    .store()
                    .record_input(&enforcer, &session_of(c), &json!({ "text": text }))
                    .unwrap();
                return recorded("input");
            }
            if let Some(result) = c.get("result") {
                let (call, verdict) = &last[&session_of(c)];
                let outcome = CallOutcome {
                    status: CallStatus::Success,
                    duration_ms: 1,
                    error_message: None,
                    result: result.clone(),
                    extra: serde_json::Map::new(),
                };
                rt.block_on(guard.record(verdict, call, &outcome)).unwrap();
                return recorded("result");
            }
            let mut call = ToolCall::new(
                c["tool_name"].as_str().unwrap(),
                c.get("tool_args").cloned().unwrap_or(json!({})),
                c["session_id"].as_str().unwrap(),
            );
            call.agent_id = c.get("agent_id").and_then(Value::as_str).map(str::to_owned);
            call.user_id = c.get("user_id").and_then(Value::as_str).map(str::to_owned);
            if let Some(m) = c.get("metadata") {
                call.metadata = m.clone();
            }
            let v = rt.block_on(guard.enforce(&call)).unwrap();
            let answer = json!({"decision": v.decision, "rule_name": v.rule_name, "reason": v.reason});
            last.insert(session_of(c), (call, v));
            answer
        })
        .collect()
}

/// The Python interpreter with the `tame` package built from this tree.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TAME_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = root().join("target/py-venv/bin/python");
    venv.is_file().then_some(venv)
}

const PY_SCRIPT: &str = r#"
import json, sys
import tame
engine = tame.Engine.from_file(sys.argv[1])
last_log = {}
with open(sys.argv[2]) as f:
    for line in f:
        if not line.strip():
            continue
        step = json.loads(line)
        if "input" in step:
            engine.record_input(step["session_id"], step["input"])
            print(json.dumps({"recorded": "input"}))
        elif "result" in step:
            sid = step["session_id"]
            engine.record_result(sid, last_log[sid], {"result": step["result"]})
            print(json.dumps({"recorded": "result"}))
        else:
            d = engine.enforce(step)
            last_log[d["session_id"]] = d["log_id"]
            print(json.dumps({"decision": d["decision"], "rule_name": d["rule_name"], "reason": d["reason"]}))
"#;

/// The transcript through the Python engine (`None`: no interpreter with
/// the package; set `TAME_E2E_REQUIRE_PYTHON=1` to make that a failure).
fn python_eval(policy: &Path, transcript: &Path) -> Option<Vec<Value>> {
    let required = std::env::var_os("TAME_E2E_REQUIRE_PYTHON").is_some();
    let Some(py) = python() else {
        assert!(
            !required,
            "no Python with the tame package: run scripts/py-test.sh (or set TAME_PYTHON)"
        );
        eprintln!("skipping the Python engine: no target/py-venv (run scripts/py-test.sh) and no TAME_PYTHON");
        return None;
    };
    let out = Command::new(&py)
        .arg("-c")
        .arg(PY_SCRIPT)
        .arg(policy)
        .arg(transcript)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    assert!(
        out.status.success(),
        "the Python engine failed (rebuild it with scripts/py-test.sh if it predates Engine.enforce):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect(),
    )
}

#[test]
fn every_frontend_decides_the_transcript_alike() {
    let (policy, transcript_path, calls) = transcript();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&policy, &dir.path().join("tame.db"));
    let mut frontends: Vec<(&str, Vec<Value>)> = vec![
        ("tame serve", server_eval(&server, &calls)),
        ("tame eval", cli_eval(&policy, &calls)),
        ("mcp embedded guard", guard_eval(&policy, &calls)),
    ];
    if let Some(py) = python_eval(&policy, &transcript_path) {
        frontends.push(("python engine", py));
    }
    server.stop();
    let (reference_name, reference) = &frontends[0];
    assert_eq!(reference.len(), calls.len());
    for (name, decisions) in &frontends[1..] {
        assert_eq!(
            decisions.len(),
            calls.len(),
            "{name} decided a different number of calls"
        );
        for (i, call) in calls.iter().enumerate() {
            assert_eq!(
                key(&decisions[i]),
                key(&reference[i]),
                "call {} {call}: {name} and {reference_name} differ",
                i + 1
            );
        }
    }
    // The transcript means what it says (so agreement is not vacuous).
    let rules: Vec<Value> = reference.iter().map(|d| d["rule_name"].clone()).collect();
    let expected = json!([
        "allow_rest",
        "no_external_mail",
        "allow_rest",
        "mail_rate",
        "allow_rest",
        "allow_rest",
        "no_post_after_secret",
        "pay_needs_ok",
        "refund_after_payment",
        "refund_after_payment",
        "allow_rest",
        "allow_rest",
        "allow_rest",
        "allow_rest",
        null,
        "allow_rest",
        "busy_session",
        "no_external_mail",
        "allow_rest",
        "allow_rest",
        // t-9: the user's input, a fetched page with an injection.
        null,
        "allow_rest",
        null,
        "injected_recipient",
        "allow_rest",
        "exfiltration",
        "allow_rest",
        "injected_recipient"
    ]);
    assert_eq!(Value::Array(rules), expected);
    for (i, kind) in [(20, "input"), (22, "result")] {
        assert_eq!(reference[i]["recorded"], kind, "{}", reference[i]);
    }
    assert!(
        reference[27]["reason"].as_str().unwrap().contains("not reported yet"),
        "the last fetch's result never came: {}",
        reference[27]
    );
    assert!(
        reference[17]["reason"].as_str().unwrap().contains("ghp_"),
        "{}",
        reference[17]
    );
}
