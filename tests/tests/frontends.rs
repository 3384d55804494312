//! The same call gets the same decision (action, rule, reason, policy
//! version) from every frontend: the engine facade, the real `tame eval`
//! binary and a real `tame serve` process over HTTP, for every policy in
//! `policies/` that has sample calls in `policies/calls/`, and for the
//! legacy policy (whose reasons are the original server's).

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a failed check panics with a message, which is how a test fails"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tame_e2e::{Server, cli_eval, decision_fields, engine_eval, live_calls, read_calls, root};
use tame_engine::Policy;

/// Every `policies/NAME.yml` (not `NAME.tests.yml`) with a
/// `policies/calls/NAME.jsonl`, sorted.
fn policies_with_calls() -> Vec<(String, PathBuf, PathBuf)> {
    let dir = root().join("policies");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read policies/") {
        let path = entry.expect("policies/ entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".yml") else {
            continue;
        };
        if stem.contains(".tests") {
            continue;
        }
        let calls = dir.join("calls").join(format!("{stem}.jsonl"));
        if calls.is_file() {
            found.push((stem.to_string(), path, calls));
        }
    }
    found.sort();
    assert!(
        found.len() >= 3,
        "expected the sample calls of example, coding_agent and support_email in policies/calls/, found {found:?}"
    );
    found
}

fn load(path: &Path) -> Policy {
    Policy::from_file(path).unwrap_or_else(|e| panic!("{} does not compile:\n{e}", path.display()))
}

/// Asserts two lists of decisions are equal field by field, naming the
/// first call where they differ.
fn assert_same(what: &str, calls: &[Value], left: (&str, &[Value]), right: (&str, &[Value])) {
    assert_eq!(
        left.1.len(),
        right.1.len(),
        "{what}: {} and {} decided different numbers of calls",
        left.0,
        right.0
    );
    for (i, call) in calls.iter().enumerate() {
        let a = decision_fields(&left.1[i]);
        let b = decision_fields(&right.1[i]);
        assert_eq!(
            a,
            b,
            "{what}, call {} {call}:\n  {}: {a}\n  {}: {b}",
            i + 1,
            left.0,
            right.0
        );
    }
}

/// Offline, with the files exactly as written (their `session` facts and
/// `now` times included): the engine facade and `tame eval` agree on every
/// call. Across the files every action and the policy default appear, so
/// the comparison is not vacuous.
#[test]
fn engine_and_tame_eval_agree_on_every_sample_call() {
    let mut actions = BTreeSet::new();
    let mut defaulted = 0;
    for (stem, policy_path, calls_path) in policies_with_calls() {
        let policy = load(&policy_path);
        let calls = read_calls(&calls_path);
        assert!(!calls.is_empty(), "{} has no calls", calls_path.display());
        let engine = engine_eval(&policy, &calls);
        let cli = cli_eval(&policy_path, &calls);
        assert_same(&stem, &calls, ("engine", &engine), ("tame eval", &cli));
        for d in &engine {
            actions.insert(d["decision"].as_str().unwrap_or_default().to_string());
            assert_eq!(
                d["policy_version"],
                json!(policy.info().version.to_string()),
                "{stem}: {d}"
            );
            defaulted += usize::from(d["rule_name"].is_null());
        }
    }
    let expected: BTreeSet<String> = ["allow", "deny", "approve"].iter().map(|s| s.to_string()).collect();
    assert_eq!(actions, expected, "the sample calls should exercise every action");
    assert!(defaulted > 0, "no sample call fell through to a policy's default");
}

/// The session-sensitive sample calls decide as the files' comments say:
/// the 21st e-mail within an hour of one support session is rate limited,
/// and a fixed count of 30 e-mails trips the example's limit. (Guards the
/// comparison above against both frontends losing session facts alike.)
#[test]
fn offline_session_facts_reach_the_rate_limits() {
    let support = root().join("policies/support_email.yml");
    let calls = read_calls(&root().join("policies/calls/support_email.jsonl"));
    let decisions = engine_eval(&load(&support), &calls);
    let limited = decisions.iter().position(|d| d["rule_name"] == "hourly_email_limit");
    assert_eq!(
        limited,
        Some(20),
        "the 21st e-mail should be the first one limited: {decisions:#?}"
    );

    let example = root().join("policies/example.yml");
    let calls = read_calls(&root().join("policies/calls/example.jsonl"));
    let decisions = cli_eval(&example, &calls);
    let email: Vec<(&Value, &Value)> = calls
        .iter()
        .zip(&decisions)
        .filter(|(c, _)| c["tool_name"] == "send_email")
        .collect();
    assert_eq!(email.len(), 2);
    assert_eq!(email[0].1["decision"], "allow", "3 earlier e-mails: {}", email[0].1);
    assert_eq!(
        email[1].1["rule_name"], "rate_limit_email",
        "30 earlier e-mails: {}",
        email[1].1
    );
}

/// Live: a real server on a fresh database decides every call exactly like
/// the engine facade and `tame eval` fed the same calls.
///
/// Like with like: the server takes neither a `session` object nor `now`
/// from a request. It keeps each session's facts itself (only calls it
/// allowed count, as in `tame eval`) and decides at its own clock. So all
/// three frontends are handed the calls rewritten by [`live_calls`]: `now`
/// dropped (everything happens within a few seconds, inside every window
/// the policies use), `session` facts replaced by that many real earlier
/// calls in a session of their own. A call that names no session gets a
/// fresh session from the server, and empty facts offline.
#[test]
fn server_agrees_with_engine_and_tame_eval() {
    for (stem, policy_path, calls_path) in policies_with_calls() {
        let (calls, dropped) = live_calls(&read_calls(&calls_path), &format!("{stem}-seeded"));
        for s in &dropped {
            eprintln!("{stem}: session facts no call can create, dropped on every frontend: {s}");
        }
        assert!(calls.len() >= 5, "{stem}: too few calls");
        compare_live(&stem, &policy_path, &calls);
    }
}

fn compare_live(what: &str, policy_path: &Path, calls: &[Value]) -> Vec<Value> {
    let engine = engine_eval(&load(policy_path), calls);
    let cli = cli_eval(policy_path, calls);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(policy_path, &dir.path().join("tame.db"));
    let live = server.eval(calls);
    assert_same(what, calls, ("engine", &engine), ("tame eval", &cli));
    assert_same(what, calls, ("engine", &engine), ("tame serve", &live));

    // Calls that name no session are each given a session of their own.
    let mut fresh = BTreeSet::new();
    for (call, answer) in calls.iter().zip(&live) {
        let sid = answer["session_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no session_id in {answer}"));
        match call.get("session_id").and_then(Value::as_str) {
            Some(named) => assert_eq!(sid, named, "{what}: {call}"),
            None => assert!(fresh.insert(sid.to_string()), "{what}: session {sid} reused for {call}"),
        }
        assert!(
            answer["log_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: no log_id in {answer}"
        );
    }
    server.stop();
    engine
}

/// The example's `session: {counts: {send_email: 30}}` call, replayed live:
/// the server stops counting at the limit (denied e-mails did not run), yet
/// the call is still denied by the rate limit on every frontend.
#[test]
fn live_replay_of_session_facts_hits_the_rate_limit() {
    let policy = root().join("policies/example.yml");
    let call = json!({"tool_name": "send_email", "tool_args": {"to": "a@b.example"}, "session": {"counts": {"send_email": 30}}});
    let (calls, dropped) = live_calls(&[call], "limit");
    assert!(dropped.is_empty());
    assert_eq!(calls.len(), 31);
    let decisions = compare_live("example rate limit", &policy, &calls);
    let allowed = decisions.iter().filter(|d| d["decision"] == "allow").count();
    assert_eq!(allowed, 20, "20 e-mails per hour: {decisions:#?}");
    let last = decisions.last().expect("decisions");
    assert_eq!(last["rule_name"], "rate_limit_email");
    assert_eq!(last["reason"], "Rate limit: 20 e-mails per hour");
}

/// The legacy policy (the original tame server's format) decides with the
/// original reasons, `Matched rule: <name>` and `No matching policy rule
/// found`, identically on all three frontends.
#[test]
fn legacy_policy_reasons_on_every_frontend() {
    let policy = root().join("policies/legacy_tame.yml");
    let cases = [
        (
            json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}}),
            "deny",
            Some("block_sensitive_files"),
        ),
        (
            json!({"tool_name": "read_file", "tool_args": {"path": "/app/.env"}}),
            "deny",
            None,
        ),
        (
            json!({"tool_name": "read_file", "tool_args": {"path": "/home/u/notes.txt"}}),
            "allow",
            Some("allow_reads_except_env"),
        ),
        (
            json!({"tool_name": "execute_command", "tool_args": {"command": "rm", "path": "/tmp/x", "recursive": true}, "metadata": {"role": "admin"}}),
            "deny",
            Some("block_destructive_commands"),
        ),
        (
            json!({"tool_name": "execute_command", "tool_args": {"command": "ls -la"}, "metadata": {"role": "admin"}}),
            "allow",
            Some("admin_commands"),
        ),
        (
            json!({"tool_name": "execute_command", "tool_args": {"command": "ls -la"}, "metadata": {"role": "developer"}}),
            "approve",
            Some("commands_need_approval"),
        ),
        (
            json!({"tool_name": "delete_file", "tool_args": {"path": "/tmp/x"}}),
            "approve",
            Some("require_approval_for_deletion"),
        ),
        (
            json!({"tool_name": "send_email", "tool_args": {"to": "a@b.example"}, "metadata": {"verified": true}}),
            "allow",
            Some("verified_senders_may_email"),
        ),
        (
            json!({"tool_name": "send_email", "tool_args": {"to": "a@b.example"}}),
            "deny",
            None,
        ),
        (json!({"tool_name": "format_disk", "tool_args": {}}), "deny", None),
    ];
    let calls: Vec<Value> = cases.iter().map(|(c, _, _)| c.clone()).collect();
    let decisions = compare_live("legacy_tame", &policy, &calls);
    for ((call, action, rule), d) in cases.iter().zip(&decisions) {
        let reason = match rule {
            Some(name) => format!("Matched rule: {name}"),
            None => String::from("No matching policy rule found"),
        };
        let expected = json!({"decision": action, "rule_name": rule, "reason": reason, "policy_version": "1.0"});
        assert_eq!(decision_fields(d), expected, "{call}");
    }
}

/// Every policy in `policies/` (with or without sample calls), fed the
/// calls of its own `tests:` cases: the engine facade and `tame eval` agree
/// offline (with the cases' session facts), and a live server agrees with
/// both on the calls it can be sent (see [`live_calls`]).
#[test]
fn every_policy_test_case_decides_alike_on_every_frontend() {
    let dir = root().join("policies");
    let mut policies: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read policies/")
        .map(|e| e.expect("policies/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml") && !p.to_string_lossy().ends_with(".tests.yml"))
        .collect();
    policies.sort();
    assert!(policies.len() >= 8, "{policies:?}");
    let mut compared = 0;
    for path in policies {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let policy = load(&path);
        // One-call cases (session tests run their steps in `tame test`).
        let cases: Vec<_> = policy.tests().iter().filter(|case| case.steps.is_none()).collect();
        let calls: Vec<Value> = cases
            .iter()
            .map(|case| {
                let mut call = case.call.clone();
                if let (Some(session), Some(obj)) = (&case.session, call.as_object_mut()) {
                    obj.insert("session".into(), session.clone());
                }
                call
            })
            .collect();
        if calls.is_empty() {
            continue;
        }
        let engine = engine_eval(&policy, &calls);
        let cli = cli_eval(&path, &calls);
        assert_same(
            &format!("{stem} tests:"),
            &calls,
            ("engine", &engine),
            ("tame eval", &cli),
        );
        // The cases' own expectations hold (what `tame test` checks), so
        // the frontends agree on the intended decisions.
        for (case, d) in cases.iter().zip(&engine) {
            let expect = case.expect.map(|e| e.as_str());
            assert_eq!(d["decision"].as_str(), expect, "{stem}: case `{}`: {d}", case.name);
            if let Some(rule) = &case.rule {
                assert_eq!(d["rule_name"], rule.as_str(), "{stem}: case `{}`: {d}", case.name);
            }
        }
        let (live, dropped) = live_calls(&calls, &format!("{stem}-case"));
        for s in &dropped {
            eprintln!("{stem}: session facts no call can create, dropped on every frontend: {s}");
        }
        compare_live(&format!("{stem} tests (live)"), &path, &live);
        compared += calls.len();
    }
    assert!(compared >= 40, "only {compared} test cases compared");
}

/// A malformed call is refused with the same message by every frontend:
/// the engine's `RequestError`, the `error` of `tame eval`'s line and the
/// `detail` of the server's 422 answer (which also names the field).
#[test]
fn malformed_calls_are_refused_alike() {
    let policy = root().join("policies/example.yml");
    let calls = [
        json!({"tool_name": "read_file", "tool_args": "/tmp/a"}),
        json!({"tool_args": {}}),
        json!({"tool_name": "", "tool_args": {}}),
        json!({"tool_name": "read_file", "session_id": 5}),
        json!({"tool_name": "read_file", "metadata": [1]}),
    ];
    let input: String = calls.iter().map(|c| format!("{c}\n")).collect();
    let out = tame_e2e::tame()
        .arg("eval")
        .arg(&policy)
        .arg("-")
        .write_stdin(input)
        .output()
        .expect("run tame eval");
    assert_eq!(out.status.code(), Some(1), "malformed lines fail the run");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), calls.len());
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&policy, &dir.path().join("tame.db"));
    for (i, (call, line)) in calls.iter().zip(&lines).enumerate() {
        let err = tame_engine::Request::from_call_json(call).expect_err("malformed");
        let message = err.to_string();
        assert_eq!(line["error"], message.as_str(), "tame eval, {call}");
        assert_eq!(line["line"], i + 1, "tame eval, {call}");
        let (status, body) = server.post("/api/v1/enforce", call);
        assert_eq!(status, 422, "{call}: {body}");
        assert_eq!(body["detail"], message.as_str(), "tame serve, {call}");
        assert_eq!(body["field"], err.path.as_str(), "tame serve, {call}");
    }
    server.stop();
}
