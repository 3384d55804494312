//! Integration tests: run the real `tame` binary over the policies in
//! `policies/`, over bad input, and against a real server.

// Test helpers may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use support::*;

#[test]
fn policies_dir_has_the_required_examples() {
    let names: Vec<String> = policy_files()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    for wanted in [
        "coding_agent",
        "github_agent",
        "database_analyst",
        "support_email",
        "mcp_filesystem",
        "legacy_tame",
        "example",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "missing policies/{wanted}.yml in {names:?}"
        );
    }
}

#[test]
fn every_policy_passes_check() {
    for file in policy_files() {
        let r = run(tame().arg("check").arg(&file));
        assert_eq!(r.code, 0, "tame check {}:\n{}{}", file.display(), r.stdout, r.stderr);
        assert!(
            r.stdout.contains("rules,") && r.stdout.contains("tools indexed") && r.stdout.contains("DAG nodes"),
            "summary line missing for {}: {}",
            file.display(),
            r.stdout
        );
    }
}

#[test]
fn check_json_reports_counts_per_file() {
    let files = policy_files();
    let r = run(tame().arg("check").arg("--json").args(&files));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), files.len());
    for line in &lines {
        assert_eq!(line["ok"], true, "{line}");
        assert!(line["rules"].as_u64().unwrap() > 0, "{line}");
        assert!(line["dag_nodes"].as_u64().unwrap() > 0, "{line}");
    }
    let legacy = lines
        .iter()
        .find(|l| l["file"].as_str().unwrap().ends_with("legacy_tame.yml"))
        .unwrap();
    assert_eq!(legacy["legacy"], true);
    assert_eq!(legacy["rules"], 7);
}

#[test]
fn every_policy_passes_its_tests() {
    for file in policy_files() {
        let r = run(tame().arg("test").arg(&file));
        assert_eq!(r.code, 0, "tame test {}:\n{}{}", file.display(), r.stdout, r.stderr);
        let summary = r.stdout.lines().last().unwrap_or("");
        assert!(
            summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 passed"),
            "{}: summary `{summary}`",
            file.display()
        );
    }
}

#[test]
fn test_runner_counts_cases_across_files() {
    let files = policy_files();
    let r = run(tame().arg("test").arg("--json").args(&files));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Pretty JSON first, then the summary line.
    let (json_text, summary) = r.stdout.trim_end().rsplit_once('\n').unwrap();
    let report: Value = serde_json::from_str(json_text).unwrap();
    let passed = report["passed"].as_u64().unwrap();
    assert_eq!(report["failed"], 0);
    assert_eq!(summary, format!("{passed} passed, 0 failed"));
    let sum: u64 = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["cases"].as_array().unwrap().len() as u64)
        .sum();
    assert_eq!(sum, passed);
}

#[test]
fn directories_expand_to_their_policies() {
    // `cargo xtask ci` runs exactly these two commands.
    let r = run(tame().arg("check").arg(policies_dir()));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        policy_files_recursive().len()
    );
    assert!(
        !r.stdout.contains(".tests.yml"),
        "test files are not policies: {}",
        r.stdout
    );
    let r = run(tame().arg("test").arg(policies_dir()));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("testing ")).count(),
        policy_files_recursive().len()
    );
    let empty = tempfile::tempdir().unwrap();
    let r = run(tame().arg("check").arg(empty.path()));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no policy files"), "{}", r.stderr);
}

#[test]
fn policy_subcommands_alias_the_local_commands() {
    let r = run(tame()
        .arg("policy")
        .arg("check")
        .arg(policies_dir().join("example.yml")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("ok "), "{}", r.stdout);
    let r = run(tame()
        .arg("policy")
        .arg("test")
        .arg("-q")
        .arg(policies_dir().join("example.yml")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.trim_end().ends_with(" passed, 0 failed"), "{}", r.stdout);
    let r = run(tame()
        .arg("policy")
        .arg("graph")
        .arg(policies_dir().join("example.yml")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("digraph"), "{}", r.stdout);
}

// ---------------------------------------------------------------- eval

#[test]
fn eval_coding_agent_calls_decides_exactly() {
    let r = run(tame()
        .arg("eval")
        .arg(policies_dir().join("coding_agent.yml"))
        .arg(policies_dir().join("calls/coding_agent.jsonl")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let got: Vec<(String, Option<String>)> = json_lines(&r.stdout)
        .iter()
        .map(|l| {
            (
                l["decision"].as_str().unwrap().to_string(),
                l["rule_name"].as_str().map(str::to_string),
            )
        })
        .collect();
    let want: Vec<(&str, Option<&str>)> = vec![
        ("allow", Some("allow_workspace_reads")),
        ("deny", Some("block_system_paths")),
        ("deny", Some("block_secret_files")),
        ("allow", Some("allow_workspace_writes")),
        ("approve", Some("delete_needs_approval")),
        ("allow", Some("allow_build_and_test")),
        ("deny", Some("block_dangerous_shell")),
        ("approve", Some("shell_needs_approval")),
        ("allow", Some("allow_git_reads")),
        ("deny", Some("block_force_push")),
        ("approve", Some("push_needs_approval")),
        ("allow", Some("allow_workspace_reads")),
        ("allow", Some("allow_workspace_reads")),
        ("deny", None),
    ];
    let want: Vec<(String, Option<String>)> = want
        .into_iter()
        .map(|(d, r)| (d.to_string(), r.map(str::to_string)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn eval_lines_have_the_documented_fields() {
    let r = run(tame()
        .arg("eval")
        .arg(policies_dir().join("example.yml"))
        .arg("-")
        .write_stdin("{\"tool_name\": \"read_file\", \"tool_args\": {\"path\": \"/etc/hosts\"}}\n"));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), 1);
    let line = lines[0].as_object().unwrap();
    let mut keys: Vec<&str> = line.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["decision", "policy_version", "reason", "rule_name"]);
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["rule_name"], "block_system_files");
    assert_eq!(line["reason"], "System paths are off limits (/etc/hosts)");
    assert_eq!(line["policy_version"], "2026-11");
    // Byte for byte, fields in the documented order (as in the README).
    assert_eq!(
        r.stdout,
        "{\"decision\":\"deny\",\"rule_name\":\"block_system_files\",\"reason\":\"System paths are off limits (/etc/hosts)\",\"policy_version\":\"2026-11\"}\n"
    );
}

#[test]
fn eval_accumulates_session_facts_for_rate_limits() {
    let r = run(tame()
        .arg("eval")
        .arg(policies_dir().join("support_email.yml"))
        .arg(policies_dir().join("calls/support_email.jsonl")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), 26);
    for (i, line) in lines.iter().take(20).enumerate() {
        assert_eq!(
            line["decision"],
            "allow",
            "e-mail {} of session support-1: {line}",
            i + 1
        );
    }
    for line in &lines[20..22] {
        assert_eq!(line["decision"], "deny", "{line}");
        assert_eq!(line["rule_name"], "hourly_email_limit");
    }
    // Another session starts from zero.
    assert_eq!(lines[22]["decision"], "allow");
    // The export is recorded; the e-mail after it in the same session is denied.
    assert_eq!(lines[23]["rule_name"], "allow_ticket_tools");
    assert_eq!(lines[24]["rule_name"], "no_external_mail_after_export");
    assert_eq!(lines[25]["rule_name"], "reply_to_ticket_customer");
}

#[test]
fn eval_without_accumulation_forgets_earlier_calls() {
    let r = run(tame()
        .arg("eval")
        .arg("--no-accumulate")
        .arg(policies_dir().join("support_email.yml"))
        .arg(policies_dir().join("calls/support_email.jsonl")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines = json_lines(&r.stdout);
    assert!(lines[..23].iter().all(|l| l["decision"] == "allow"));
    assert_eq!(lines[24]["rule_name"], "reply_to_ticket_customer");
}

#[test]
fn eval_takes_offline_session_facts_per_line() {
    let input = concat!(
        "{\"tool_name\": \"send_email\", \"tool_args\": {\"to\": \"a@b.example\"}, \"session\": {\"calls\": 30, \"counts\": {\"send_email\": 25}}}\n",
        "{\"tool_name\": \"send_email\", \"tool_args\": {\"to\": \"a@b.example\"}}\n",
    );
    let r = run(tame()
        .arg("eval")
        .arg(policies_dir().join("example.yml"))
        .write_stdin(input));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines[0]["rule_name"], "rate_limit_email");
    assert_eq!(lines[1]["rule_name"], "allow_email");
}

#[test]
fn eval_reports_malformed_lines_and_goes_on() {
    let input = concat!(
        "{\"tool_name\": \"read_file\", \"tool_args\": {\"path\": \"/tmp/a\"}}\n",
        "{not json\n",
        "\n",
        "[1, 2]\n",
        "{\"tool_args\": {}}\n",
        "{\"tool_name\": \"read_file\", \"tool_args\": {\"path\": \"/etc/x\"}}\n",
    );
    let r = run(tame()
        .arg("eval")
        .arg(policies_dir().join("example.yml"))
        .arg("-")
        .write_stdin(input));
    assert_eq!(r.code, 1, "a malformed line makes the run fail: {}", r.stdout);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"].as_str().unwrap().contains("invalid JSON"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["line"], 4);
    assert!(lines[2]["error"].as_str().unwrap().contains("object"), "{}", lines[2]);
    assert_eq!(lines[3]["line"], 5);
    assert!(
        lines[3]["error"].as_str().unwrap().contains("tool_name"),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4]["decision"], "deny");
}

#[test]
fn eval_explain_adds_a_trace() {
    let r = run(tame()
        .arg("eval")
        .arg("--explain")
        .arg(policies_dir().join("example.yml"))
        .write_stdin("{\"tool_name\": \"read_file\", \"tool_args\": {\"path\": \"/tmp/a\"}}\n"));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines[0]["decision"], "allow");
    let trace = &lines[0]["explain"];
    assert!(!trace.is_null(), "{}", lines[0]);
    assert!(
        trace.to_string().contains("block_system_files"),
        "the trace names tried rules: {trace}"
    );
}

/// `n` e-mails of one session, `gap_minutes` apart, as eval input.
fn spaced_emails(n: u32, gap_minutes: u32) -> String {
    let start: jiff::Timestamp = "2026-11-21T00:00:00Z".parse().unwrap();
    (0..n)
        .map(|i| {
            let at = start + jiff::SignedDuration::from_mins(i64::from(i * gap_minutes));
            format!(
                "{{\"tool_name\": \"send_email\", \"tool_args\": {{\"to\": \"ops@acme.example\"}}, \"session_id\": \"s\", \"now\": \"{at}\"}}\n"
            )
        })
        .collect()
}

#[test]
fn eval_rate_limit_windows_follow_the_calls_own_times() {
    let policy = policies_dir().join("support_email.yml");
    // One a minute: the 21st within the hour is denied.
    let r = run(tame().arg("eval").arg(&policy).write_stdin(spaced_emails(21, 1)));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = json_lines(&r.stdout);
    assert_eq!(lines[19]["decision"], "allow");
    assert_eq!(lines[20]["rule_name"], "hourly_email_limit");
    // One every five minutes: never more than 12 in an hour, all allowed.
    let r = run(tame().arg("eval").arg(&policy).write_stdin(spaced_emails(30, 5)));
    let lines = json_lines(&r.stdout);
    assert_eq!(lines.len(), 30);
    assert!(lines.iter().all(|l| l["decision"] == "allow"), "{}", r.stdout);
}

#[test]
fn eval_counts_only_calls_that_were_let_through() {
    // Five e-mails denied for carrying a secret do not use up the quota.
    let secret = "{\"tool_name\": \"send_email\", \"tool_args\": {\"to\": \"ops@acme.example\", \"body\": \"AKIAIOSFODNN7EXAMPLE\"}, \"session_id\": \"s\"}\n";
    let plain =
        "{\"tool_name\": \"send_email\", \"tool_args\": {\"to\": \"ops@acme.example\"}, \"session_id\": \"s\"}\n";
    let input = secret.repeat(5) + &plain.repeat(21);
    let r = run(tame()
        .arg("eval")
        .arg(policies_dir().join("support_email.yml"))
        .write_stdin(input));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = json_lines(&r.stdout);
    assert!(lines[..5].iter().all(|l| l["rule_name"] == "block_secrets_in_email"));
    assert!(lines[5..25].iter().all(|l| l["decision"] == "allow"), "{}", r.stdout);
    assert_eq!(lines[25]["rule_name"], "hourly_email_limit");
}

#[test]
fn eval_rejects_a_bad_now_and_bad_facts_per_line() {
    let input = concat!(
        "{\"tool_name\": \"send_email\", \"tool_args\": {}, \"now\": \"yesterday\"}\n",
        "{\"tool_name\": \"send_email\", \"tool_args\": {}, \"session\": {\"cals\": 3}}\n",
    );
    let r = run(tame()
        .arg("eval")
        .arg(policies_dir().join("example.yml"))
        .write_stdin(input));
    assert_eq!(r.code, 1);
    let lines = json_lines(&r.stdout);
    assert!(lines[0]["error"].as_str().unwrap().contains("`now`"), "{}", lines[0]);
    assert!(
        lines[1]["error"].as_str().unwrap().contains("session.cals"),
        "{}",
        lines[1]
    );
}

#[test]
fn explain_shows_every_rule_tried_and_exits_with_the_decision() {
    let r = run(tame()
        .arg("explain")
        .arg(policies_dir().join("coding_agent.yml"))
        .arg("--tool")
        .arg("run_shell")
        .arg("--args")
        .arg(r#"{"command": "ls -la"}"#));
    assert_eq!(r.code, 3, "approve exits 3: {}{}", r.stdout, r.stderr);
    let out = &r.stdout;
    assert!(out.starts_with("approve  shell_needs_approval"), "{out}");
    for rule in ["block_dangerous_shell", "block_sudo", "allow_build_and_test"] {
        assert!(out.contains(rule), "{rule} missing from the trace: {out}");
    }
    assert!(out.contains("not matched"), "{out}");
    let r = run(tame()
        .arg("explain")
        .arg("--json")
        .arg(policies_dir().join("coding_agent.yml"))
        .arg("--tool")
        .arg("read_file")
        .arg("--args")
        .arg(r#"{"path": "/etc/shadow"}"#));
    assert_eq!(r.code, 2);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["explain"]["rules"][1]["rule"], "block_system_paths");
    assert_eq!(v["explain"]["rules"][1]["outcome"], "matched");
}

// ---------------------------------------------------------------- bad input

#[test]
fn unreadable_policy_file_is_named() {
    let r = run(tame().arg("check").arg("/nonexistent/policy.yml"));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot read `/nonexistent/policy.yml`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn binary_policy_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary.yml");
    std::fs::write(&path, [0xff_u8, 0xfe, 0x00, 0x9f]).unwrap();
    let r = run(tame().arg("check").arg(&path));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot read"), "{}", r.stderr);
    assert!(r.stderr.contains("binary.yml"), "{}", r.stderr);
    assert!(r.stderr.contains("UTF-8"), "{}", r.stderr);
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "broken.yml",
        "version: \"1\"\nrules:\n  - name: a\n    action: allow\n   tools: [x]\n",
    );
    let r = run(tame().arg("check").arg(&path));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("broken.yml:5:"), "line missing: {}", r.stderr);
}

#[test]
fn bad_condition_shows_a_caret() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.yml",
        "version: \"1\"\ndefault: deny\nrules:\n  - name: r1\n    action: deny\n    condition: 'args.path.startsWith(\"/etc\") and frobnicate(args)'\n",
    );
    let r = run(tame().arg("check").arg(&path));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("frobnicate"), "{}", r.stderr);
    assert!(r.stderr.contains("bad.yml:6:"), "{}", r.stderr);
    assert!(
        r.stderr.contains('─') || r.stderr.contains('^'),
        "no caret: {}",
        r.stderr
    );
    assert!(r.stderr.contains("r1"), "the rule is named: {}", r.stderr);
}

#[test]
fn check_keeps_going_after_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.yml", "rules: [\n");
    let r = run(tame().arg("check").arg(&bad).arg(policies_dir().join("example.yml")));
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("example.yml"),
        "the good file is still checked: {}",
        r.stdout
    );
}

#[test]
fn error_format_json_gives_structured_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.yml",
        "version: \"1\"\ndefault: deny\nrules:\n  - name: r1\n    action: deny\n    condition: 'nope.x == 1'\n",
    );
    let r = run(tame().arg("--error-format").arg("json").arg("check").arg(&path));
    assert_eq!(r.code, 1);
    let err: Value = serde_json::from_str(r.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(err["kind"], "policy");
    let diag = &err["diagnostics"][0];
    assert_eq!(diag["severity"], "error");
    assert_eq!(diag["line"], 6);
    assert!(diag["column"].as_u64().unwrap() > 0);
}

#[test]
fn eval_with_unreadable_calls_file_fails_clearly() {
    let r = run(tame()
        .arg("eval")
        .arg(policies_dir().join("example.yml"))
        .arg("/nonexistent/calls.jsonl"));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("cannot read `/nonexistent/calls.jsonl`"),
        "{}",
        r.stderr
    );
}

#[test]
fn legacy_lints_are_warnings_with_a_condition_to_paste() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "old.yml",
        concat!(
            "version: \"1.0\"\n",
            "rules:\n",
            "  - name: big_payments\n",
            "    action: deny\n",
            "    tools: [pay]\n",
            "    conditions:\n",
            "      arg_contains:\n",
            "        amount: \">50\"\n",
            "  - name: etc_regex\n",
            "    action: deny\n",
            "    tools: [read_file]\n",
            "    conditions:\n",
            "      arg_contains:\n",
            "        path: \"^/etc/.*\"\n",
        ),
    );
    let r = run(tame().arg("check").arg(&path));
    assert_eq!(r.code, 0, "lints do not fail a check: {}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("warning"), "{}", r.stderr);
    assert!(
        r.stderr.contains("big_payments") && r.stderr.contains("etc_regex"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("condition"),
        "the lint shows a condition: {}",
        r.stderr
    );
    assert!(r.stdout.contains("2 warnings"), "{}", r.stdout);
    let strict = run(tame().arg("check").arg("--deny-warnings").arg(&path));
    assert_eq!(strict.code, 1);
    // As JSON: one object per lint, with its position and the rule.
    let r = run(tame().arg("--error-format").arg("json").arg("check").arg(&path));
    assert_eq!(r.code, 0);
    let lints = json_lines(&r.stderr);
    assert_eq!(lints.len(), 2, "{}", r.stderr);
    assert_eq!(lints[0]["warning"]["rule"], "big_payments");
    assert_eq!(lints[0]["warning"]["line"], 8);
    assert!(
        lints[0]["warning"]["help"]
            .as_str()
            .unwrap()
            .contains("args.amount > 50")
    );
}

#[test]
fn shadowed_rule_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "shadow.yml",
        concat!(
            "version: \"1\"\n",
            "default: deny\n",
            "rules:\n",
            "  - name: allow_everything\n",
            "    action: allow\n",
            "  - name: deny_rm\n",
            "    action: deny\n",
            "    tools: [rm]\n",
        ),
    );
    let r = run(tame()
        .arg("--error-format")
        .arg("json")
        .arg("check")
        .arg("--json")
        .arg(&path));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w["rule"] == "deny_rm" && w["severity"] == "warning"),
        "{report}"
    );
}

// ---------------------------------------------------------------- test runner

#[test]
fn failing_policy_test_shows_a_diff_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.yml",
        "version: \"t1\"\ndefault: deny\nrules:\n  - name: allow_reads\n    action: allow\n    tools: [\"read_*\"]\n  - name: never_used\n    action: approve\n    tools: [\"launch\"]\n",
    );
    write(
        dir.path(),
        "p.tests.yml",
        "tests:\n  - name: reads\n    tool: read_file\n    args: {path: /a}\n    expect: allow\n    rule: allow_reads\n  - name: wrong\n    tool: write_file\n    args: {path: /a}\n    expect: allow\n",
    );
    let r = run(tame().arg("test").arg(&policy));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("- expected: allow"), "{}", r.stdout);
    assert!(r.stdout.contains("+ actual:   deny"), "{}", r.stdout);
    assert!(
        r.stdout.contains("never_used"),
        "coverage lists the unhit rule: {}",
        r.stdout
    );
    assert_eq!(r.stdout.lines().last().unwrap(), "1 passed, 1 failed");
    assert!(r.stdout.contains("ok reads"), "{}", r.stdout);
    // --quiet keeps the failure and the summary, drops the passing case.
    let r = run(tame().arg("test").arg("-q").arg(&policy));
    assert_eq!(r.code, 1);
    assert!(!r.stdout.contains("ok reads"), "{}", r.stdout);
    assert!(r.stdout.contains("FAIL wrong"), "{}", r.stdout);
    assert_eq!(r.stdout.lines().last().unwrap(), "1 passed, 1 failed");
}

#[test]
fn policy_without_tests_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "lonely.yml", "version: \"1\"\ndefault: allow\nrules: []\n");
    let r = run(tame().arg("test").arg(&policy));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no tests found"), "{}", r.stderr);
}

#[test]
fn malformed_test_file_names_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "p.yml", "version: \"1\"\ndefault: allow\nrules: []\n");
    write(
        dir.path(),
        "p.tests.yml",
        "tests:\n  - name: x\n    tool: a\n    expct: allow\n",
    );
    let r = run(tame().arg("test").arg(&policy));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("p.tests.yml:"), "{}", r.stderr);
}

// ---------------------------------------------------------------- bench, graph

#[test]
fn bench_reports_rates_and_rule_hits() {
    let r = run(tame()
        .arg("bench")
        .arg("--json")
        .arg("-n")
        .arg("1100")
        .arg("--warmup")
        .arg("10")
        .arg(policies_dir().join("example.yml"))
        .arg(policies_dir().join("calls/example.jsonl")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["decisions"], 1100);
    assert!(report["decisions_per_sec"].as_f64().unwrap() > 0.0);
    assert!(report["p50_ns"].as_u64().unwrap() <= report["p99_ns"].as_u64().unwrap());
    let hits: u64 = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["hits"].as_u64().unwrap())
        .sum();
    assert_eq!(hits, 1100);
    // 11 calls cycled 100 times: block_system_files decides 1 of 11.
    let block = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "block_system_files")
        .unwrap();
    assert_eq!(block["hits"], 100);
}

#[test]
fn bench_names_a_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    let calls = write(
        dir.path(),
        "calls.jsonl",
        "{\"tool_name\": \"read_file\", \"tool_args\": {}}\n{oops\n",
    );
    let r = run(tame().arg("bench").arg(policies_dir().join("example.yml")).arg(&calls));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("calls.jsonl:2:"), "{}", r.stderr);
    let empty = write(dir.path(), "empty.jsonl", "\n");
    let r = run(tame().arg("bench").arg(policies_dir().join("example.yml")).arg(&empty));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no calls to benchmark"), "{}", r.stderr);
}

#[test]
fn graph_prints_dot() {
    let r = run(tame().arg("graph").arg(policies_dir().join("example.yml")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.trim_start().starts_with("digraph"), "{}", r.stdout);
    assert!(r.stdout.contains("block_system_files"), "{}", r.stdout);
}

// ---------------------------------------------------------------- manners

#[test]
fn every_command_has_examples_in_help() {
    use clap::CommandFactory;
    let commands: Vec<String> = tame_cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(commands.len() >= 15, "{commands:?}");
    for cmd in &commands {
        let r = run(tame().arg(cmd).arg("--help"));
        assert_eq!(r.code, 0, "{cmd}: {}", r.stderr);
        assert!(r.stdout.contains("Examples:"), "`tame {cmd} --help` has no examples");
    }
}

#[test]
fn completions_are_generated() {
    let r = run(tame().arg("completions").arg("bash"));
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("_tame()") || r.stdout.contains("complete"),
        "{}",
        r.stdout
    );
}

#[test]
fn usage_errors_exit_1_not_2() {
    // 2 means "deny": a typo must not look like a denial.
    let r = run(tame().arg("frobnicate"));
    assert_eq!(r.code, 1);
}

#[test]
fn reject_needs_a_reason() {
    let r = run(tame().arg("approvals").arg("reject").arg("some-id"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--reason"), "{}", r.stderr);
}

#[test]
fn no_colour_when_not_a_terminal() {
    let r = run(Command::cargo_bin("tame")
        .unwrap()
        .env_remove("NO_COLOR")
        .arg("check")
        .arg(policies_dir().join("example.yml")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stdout.contains('\u{1b}'),
        "escape codes in piped output: {:?}",
        r.stdout
    );
}

#[test]
fn colour_can_be_forced() {
    let r = run(tame()
        .arg("--color")
        .arg("always")
        .arg("check")
        .arg(policies_dir().join("example.yml")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\u{1b}["), "no escape codes: {:?}", r.stdout);
}

// ---------------------------------------------------------------- server down

fn dead_url() -> String {
    // A port that was free a moment ago: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn enforce_against_a_down_server_names_the_url() {
    let url = dead_url();
    let r = run(tame()
        .arg("--api-url")
        .arg(&url)
        .arg("enforce")
        .arg("--tool")
        .arg("delete_file")
        .arg("--args")
        .arg("{\"path\": \"/tmp/test\"}"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    assert!(r.stderr.contains("cannot reach the tame server"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("backtrace"),
        "{}",
        r.stderr
    );
}

#[test]
fn test_tells_policy_files_from_tool_names() {
    let url = dead_url();
    // A tool name (no such file): a dry run on the server.
    let r = run(tame().arg("--api-url").arg(&url).arg("test").arg("read_file"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    // A missing .yml file: the policy runner says it cannot read it.
    let r = run(tame().arg("--api-url").arg(&url).arg("test").arg("missing.yml"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot read `missing.yml`"), "{}", r.stderr);
    // --args forces the server, even for a name that looks like a file.
    let r = run(tame()
        .arg("--api-url")
        .arg(&url)
        .arg("test")
        .arg("weird.yml")
        .arg("--args")
        .arg("{}"));
    assert!(r.stderr.contains(&url), "{}", r.stderr);
}

#[test]
fn api_url_comes_from_the_environment() {
    let url = dead_url();
    let r = run(tame().env("TAME_API_URL", &url).arg("status"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
}

#[test]
fn enforce_rejects_bad_args_json_before_connecting() {
    let r = run(tame()
        .arg("--api-url")
        .arg(dead_url())
        .arg("enforce")
        .arg("--tool")
        .arg("x")
        .arg("--args")
        .arg("{\"path\": "));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--args is not valid JSON"), "{}", r.stderr);
}

#[test]
fn interactive_reports_errors_and_goes_on() {
    let url = dead_url();
    let r = run(tame()
        .arg("--api-url")
        .arg(&url)
        .arg("interactive")
        .write_stdin("help\nfrobnicate\nstatus\nconfig\nquit\n"));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("commands:"), "{}", r.stdout);
    assert!(r.stderr.contains("unknown command `frobnicate`"), "{}", r.stderr);
    assert!(r.stderr.contains(&url), "status names the URL: {}", r.stderr);
    assert!(r.stdout.contains(&format!("api url: {url}")), "{}", r.stdout);
}

// ---------------------------------------------------------------- real server

/// A `tame serve` process on a free port with a temporary database; killed
/// when dropped.
struct Server {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(policy: &Path, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<std::ffi::OsString> = vec![
            "--policy".into(),
            policy.into(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--db".into(),
            dir.path().join("tame.db").into(),
            "--no-watch".into(),
        ];
        args.extend(extra.iter().map(std::ffi::OsString::from));
        Server::spawn(&args, dir)
    }

    /// Runs `tame serve ARGS` and waits for its `listening on` line.
    fn spawn(args: &[std::ffi::OsString], dir: tempfile::TempDir) -> Server {
        Server::spawn_with_env(args, &[], dir)
    }

    /// Runs `tame serve ARGS` with the variables `env` set.
    fn spawn_with_env(args: &[std::ffi::OsString], env: &[(&str, &str)], dir: tempfile::TempDir) -> Server {
        use std::io::BufRead;
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("tame"))
            .arg("serve")
            .args(args)
            .env_remove("TAME_POLICY")
            .env_remove("TAME_ADDR")
            .env_remove("TAME_DB")
            .env_remove("TAME_CONFIG")
            .env_remove("TAME_AUTH_FAILURE_BURST")
            .env_remove("TAME_AUTH_FAILURE_PERIOD_SECS")
            .env_remove("TAME_TRUSTED_PROXIES")
            .env_remove("TAME_WORKERS")
            .envs(env.iter().copied())
            .env("TAME_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        std::io::BufReader::new(stdout).read_line(&mut first).unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from tame serve: {first:?}"))
            .to_string();
        Server { child, url, _dir: dir }
    }

    fn tame(&self) -> Command {
        let mut cmd = tame();
        cmd.arg("--api-url").arg(&self.url);
        cmd
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn server_commands_against_a_real_server() {
    let server = Server::start(&policies_dir().join("example.yml"), &[]);

    let r = run(server.tame().arg("status"));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&server.url), "{}", r.stdout);
    assert!(r.stdout.contains("version 2026-11 (7 rules)"), "{}", r.stdout);

    let r = run(server.tame().arg("policy").arg("--json"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let policy: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(policy["rules_count"], 7);
    assert_eq!(policy["rules"][0]["name"], "block_system_files");

    // Exit codes: 0 allow, 2 deny, 3 approve.
    let enforce = |tool: &str, args: &str| {
        run(server
            .tame()
            .arg("enforce")
            .arg("--tool")
            .arg(tool)
            .arg("--args")
            .arg(args)
            .arg("--session-id")
            .arg("cli-test")
            .arg("--json"))
    };
    let r = enforce("read_file", r#"{"path": "/tmp/file.txt"}"#);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let d: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(d["decision"], "allow");
    assert_eq!(d["session_id"], "cli-test");
    assert!(d["log_id"].as_str().is_some_and(|s| !s.is_empty()));
    let r = enforce("read_file", r#"{"path": "/etc/passwd"}"#);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let r = enforce("delete_file", r#"{"path": "/tmp/test"}"#);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let d: Value = serde_json::from_str(&r.stdout).unwrap();
    let approval_id = d["approval_id"].as_str().unwrap().to_string();

    // Dry run: the same exit codes, nothing logged.
    let r = run(server
        .tame()
        .arg("test")
        .arg("read_file")
        .arg("--args")
        .arg(r#"{"path": "/etc/hosts"}"#));
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("block_system_files"), "{}", r.stdout);

    let r = run(server.tame().arg("approvals").arg("list"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&approval_id), "{}", r.stdout);
    assert!(r.stdout.contains("delete_file"), "{}", r.stdout);

    let r = run(server
        .tame()
        .arg("approvals")
        .arg("approve")
        .arg(&approval_id)
        .arg("--reason")
        .arg("looks fine")
        .arg("--json"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(a["state"], "approved");
    assert_eq!(a["decision_reason"], "looks fine");

    let r = run(server.tame().arg("approvals").arg("list").arg("--json"));
    let list: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(list["approvals"].as_array().unwrap().len(), 0, "{list}");

    let r = run(server
        .tame()
        .arg("approvals")
        .arg("reject")
        .arg("no-such-approval")
        .arg("--reason")
        .arg("no"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
    assert!(r.stderr.contains("no-such-approval"), "{}", r.stderr);

    let r = run(server.tame().arg("audit").arg("verify"));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("audit chain intact"), "{}", r.stdout);

    // The three enforced calls are in session `cli-test`.
    let r = run(server
        .tame()
        .arg("sessions")
        .arg("summary")
        .arg("cli-test")
        .arg("--json"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["total_calls"], 3, "{summary}");
    assert_eq!(summary["denied_calls"], 1, "{summary}");
    let r = run(server.tame().arg("sessions").arg("show").arg("cli-test"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().filter(|l| l.contains("read_file")).count(),
        2,
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("delete_needs_approval"), "{}", r.stdout);
    let r = run(server.tame().arg("sessions"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("cli-test"), "{}", r.stdout);
    let r = run(server.tame().arg("sessions").arg("show").arg("no-such-session"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
}

#[test]
fn api_key_is_sent_from_flag_or_environment() {
    let server = Server::start(
        &policies_dir().join("example.yml"),
        &["--admin-key", "sekrit-admin", "--agent-key", "sekrit-agent"],
    );
    let enforce = |cmd: &mut Command| {
        run(cmd
            .arg("enforce")
            .arg("--tool")
            .arg("read_file")
            .arg("--args")
            .arg(r#"{"path": "/tmp/a"}"#))
    };
    // Health needs no key; the policy line says why it is missing.
    let r = run(server.tame().arg("status"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("not readable with this API key (401)"),
        "{}",
        r.stdout
    );

    let r = enforce(&mut server.tame());
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(r.stderr.contains("API key"), "{}", r.stderr);

    let r = enforce(server.tame().arg("--api-key").arg("sekrit-agent"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = enforce(server.tame().env("TAME_API_KEY", "sekrit-agent"));
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Agent keys may not list approvals; admin keys may.
    let r = run(server
        .tame()
        .env("TAME_API_KEY", "sekrit-agent")
        .arg("approvals")
        .arg("list"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    let r = run(server
        .tame()
        .env("TAME_API_KEY", "sekrit-admin")
        .arg("approvals")
        .arg("list"));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn interactive_mode_talks_to_the_server() {
    let server = Server::start(&policies_dir().join("example.yml"), &[]);
    let r = run(server.tame().arg("interactive").write_stdin(
        "status\ntest read_file {\"path\": \"/etc/x\"}\ntest query_database database=production,query=DROP\nenforce read_file {\"path\": \"/tmp/r\"}\nsessions\npolicy\nquit\n",
    ));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("connected to"), "{}", r.stdout);
    assert!(r.stdout.contains("deny  block_system_files"), "{}", r.stdout);
    assert!(r.stdout.contains("approve  prod_db_needs_approval"), "{}", r.stdout);
    assert!(r.stdout.contains("1 of 1 sessions"), "{}", r.stdout);
    assert!(
        r.stdout.contains("allow_email"),
        "the policy lists its rules: {}",
        r.stdout
    );
}

#[test]
fn serve_refuses_a_policy_that_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yml",
        "version: \"1\"\nrules:\n  - name: x\n    action: maybe\n",
    );
    let r = run(tame()
        .arg("serve")
        .arg("--policy")
        .arg(&bad)
        .arg("--addr")
        .arg("127.0.0.1:0")
        .arg("--db")
        .arg(dir.path().join("t.db")));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad.yml"), "{}", r.stderr);
    assert!(r.stderr.contains("maybe"), "{}", r.stderr);
}

#[test]
fn policy_life_cycle_and_audit_export_through_the_cli() {
    let server = Server::start(&policies_dir().join("example.yml"), &[]);
    let dir = tempfile::tempdir().unwrap();

    let r = run(server
        .tame()
        .arg("policy")
        .arg("validate")
        .arg(policies_dir().join("coding_agent.yml")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("14 rules"), "{}", r.stdout);

    let bad = write(
        dir.path(),
        "bad.yml",
        "version: \"1\"\nrules:\n  - name: r\n    action: deny\n    condition: 'nope(1)'\n",
    );
    let r = run(server.tame().arg("policy").arg("validate").arg(&bad));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("nope"), "the diagnostic is shown: {}", r.stdout);

    // A failed reload keeps the running policy and shows why.
    let r = run(server.tame().arg("policy").arg("reload").arg(&bad));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);

    let r = run(server
        .tame()
        .arg("policy")
        .arg("reload")
        .arg(policies_dir().join("coding_agent.yml")));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("14 rules"), "{}", r.stdout);
    let r = run(server.tame().arg("policy").arg("--json"));
    let current: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(current["rules_count"], 14);

    let r = run(server.tame().arg("policy").arg("versions").arg("--json"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let versions: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2, "{versions}");

    for path in ["/workspace/a", "/etc/passwd", "/workspace/b"] {
        let args = format!("{{\"path\": \"{path}\"}}");
        run(server
            .tame()
            .arg("enforce")
            .arg("--tool")
            .arg("read_file")
            .arg("--args")
            .arg(&args));
    }
    let r = run(server.tame().arg("audit").arg("export"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let records = json_lines(&r.stdout);
    let decisions: Vec<&Value> = records
        .iter()
        .filter(|rec| rec.to_string().contains("read_file"))
        .collect();
    assert_eq!(decisions.len(), 3, "{}", r.stdout);
}

/// Starts `tame enforce --wait` in the background, then decides its
/// approval with `tame approvals`; returns the waiting process's result.
fn enforce_and_decide(server: &Server, verb: &str) -> (i32, String) {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("tame"))
        .env("NO_COLOR", "1")
        .arg("--api-url")
        .arg(&server.url)
        .arg("enforce")
        .arg("--tool")
        .arg("delete_file")
        .arg("--args")
        .arg(r#"{"path": "/tmp/wait-test"}"#)
        .arg("--session-id")
        .arg(format!("wait-{verb}"))
        .arg("--wait")
        .arg("30")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Find the pending approval (the waiting process created it).
    let mut id = None;
    for _ in 0..400 {
        let r = run(server.tame().arg("approvals").arg("list").arg("--json"));
        let list: Value = serde_json::from_str(&r.stdout).unwrap();
        id = list["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["session_id"] == format!("wait-{verb}"))
            .map(|a| a["approval_id"].as_str().unwrap().to_string());
        if id.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let id = id.expect("the waiting enforce created no approval");
    let r = run(server
        .tame()
        .arg("approvals")
        .arg(verb)
        .arg(&id)
        .arg("--reason")
        .arg("decided in a test"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn enforce_wait_releases_an_approved_call_and_denies_a_rejected_one() {
    let server = Server::start(&policies_dir().join("example.yml"), &[]);
    let (code, stdout) = enforce_and_decide(&server, "approve");
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("waiting up to 30 s"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("allow")), "{stdout}");
    let (code, stdout) = enforce_and_decide(&server, "reject");
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("was rejected"), "{stdout}");
}

#[test]
fn serve_reads_a_config_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "tame.yml",
        &format!(
            "policy: {}\naddr: \"127.0.0.1:0\"\ndb: state/tame.db\nwatch_policy: false\nadmin_keys: [\"from-config\"]\n",
            policies_dir().join("github_agent.yml").display()
        ),
    );
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let server = Server::spawn(
        &[
            "--config".into(),
            config.into_os_string(),
            "--admin-key".into(),
            "from-flag".into(),
        ],
        dir,
    );
    // The policy and the database come from the file (db relative to it).
    let r = run(server
        .tame()
        .arg("--api-key")
        .arg("from-flag")
        .arg("policy")
        .arg("--json"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let policy: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(policy["rules_count"], 9);
    assert!(server._dir.path().join("state/tame.db").exists());
    // The flag's key replaced the file's.
    let r = run(server.tame().arg("--api-key").arg("from-config").arg("policy"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
}

// ------------------------------------------------- failed-authentication limit

#[test]
fn serve_help_lists_the_auth_failure_flags() {
    let r = run(tame().arg("serve").arg("--help"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    // clap may wrap the help texts: compare them with their spaces squeezed.
    let help = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "--auth-failure-burst <N>",
        "answered 429 (default 10; 0 turns the limit off) [env: TAME_AUTH_FAILURE_BURST]",
        "--auth-failure-period <SECS>",
        "regained once the burst is spent (default 6) [env: TAME_AUTH_FAILURE_PERIOD_SECS]",
        "--trusted-proxy <NET>",
        "whose X-Forwarded-For names the client (repeatable or comma separated; none by default) [env: TAME_TRUSTED_PROXIES]",
    ] {
        assert!(help.contains(expected), "`{expected}` not in:\n{}", r.stdout);
    }
}

#[test]
fn serve_refuses_bad_auth_failure_values_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |flag: &str, value: &str| {
        run(tame()
            .arg("serve")
            .arg("--policy")
            .arg(policies_dir().join("example.yml"))
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(dir.path().join("t.db"))
            .arg(flag)
            .arg(value))
    };
    // The exit code of any other usage error of `tame serve`.
    let usage = serve("--approval-timeout", "soon");
    assert_ne!(usage.code, 0, "{}", usage.stderr);
    for (flag, value) in [
        ("--auth-failure-burst", "lots"),
        ("--auth-failure-period", "-2"),
        ("--auth-failure-burst", "-1"),
        ("--auth-failure-period", "0"),
        ("--auth-failure-period", "never"),
        ("--trusted-proxy", "10.0.0.0/99"),
    ] {
        let r = serve(flag, value);
        assert_eq!(r.code, usage.code, "{flag} {value}: {}", r.stderr);
        assert!(r.stderr.contains(flag), "{flag} {value}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "nothing was served: {}", r.stdout);
    }
    assert!(!dir.path().join("t.db").exists(), "no database was opened");
}

#[test]
fn serve_takes_a_worker_count_and_refuses_zero() {
    let server = Server::start(&policies_dir().join("example.yml"), &["--workers", "1"]);
    let (status, _, body) = http(&server.url, "GET", "/health", "", "");
    assert_eq!(status, 200, "{body}");
    let call = r#"{"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}}"#;
    let (status, _, body) = http(&server.url, "POST", "/api/v1/enforce", "", call);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""decision":"deny""#), "{body}");

    let dir = tempfile::tempdir().unwrap();
    for bad in ["0", "two"] {
        let r = run(tame()
            .arg("serve")
            .arg("--policy")
            .arg(policies_dir().join("example.yml"))
            .arg("--db")
            .arg(dir.path().join("t.db"))
            .arg("--workers")
            .arg(bad));
        assert_ne!(r.code, 0, "--workers {bad}: {}", r.stderr);
        assert!(r.stderr.contains("--workers"), "--workers {bad}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "nothing was served: {}", r.stdout);
    }
    assert!(!dir.path().join("t.db").exists(), "no database was opened");
}

/// One HTTP/1.1 request over a fresh socket: status, headers (names in
/// lowercase) and body.
fn http(url: &str, method: &str, path: &str, key: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let host = url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Sends wrong keys to `/api/v1/enforce` until the answer is not 401:
/// how many were refused with 401 first, and the answer that ended it.
fn wrong_keys_until_limited(server: &Server) -> (usize, u16, Vec<(String, String)>, String) {
    let call = r#"{"tool_name": "read_file", "tool_args": {"path": "/tmp/a"}}"#;
    for refused in 0..60 {
        let (status, headers, body) = http(
            &server.url,
            "POST",
            "/api/v1/enforce",
            &format!("guess-{refused}"),
            call,
        );
        if status != 401 {
            return (refused, status, headers, body);
        }
    }
    panic!("60 wrong keys and never limited");
}

#[test]
fn serve_limits_failed_authentications_with_the_flags_over_env_and_file() {
    let policy = policies_dir().join("example.yml");
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "tame.yml",
        "auth_failure_burst: 50\nauth_failure_period_secs: 60\n",
    );
    let args = |extra: &[&str]| -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--config".into(),
            config.clone().into(),
            "--policy".into(),
            policy.clone().into(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--db".into(),
            dir.path().join(format!("tame-{}.db", extra.len())).into(),
            "--no-watch".into(),
            "--agent-key".into(),
            "right-key".into(),
        ];
        args.extend(extra.iter().map(std::ffi::OsString::from));
        args
    };

    // The flag beats the environment, which beats the file: the 3rd wrong
    // key is answered 429 with Retry-After and the JSON error body.
    let env = [("TAME_AUTH_FAILURE_BURST", "40")];
    let server = Server::spawn_with_env(
        &args(&["--auth-failure-burst", "2"]),
        &env,
        tempfile::tempdir().unwrap(),
    );
    let (ok, _, body) = http(
        &server.url,
        "POST",
        "/api/v1/enforce",
        "right-key",
        r#"{"tool_name": "read_file", "tool_args": {"path": "/tmp/a"}}"#,
    );
    assert_eq!(ok, 200, "{body}");
    let (refused, status, headers, body) = wrong_keys_until_limited(&server);
    assert_eq!((refused, status), (2, 429), "{body}");
    let retry_after: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    // The period of the file (60 s): one more failure in at most a minute.
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["retry_after"], retry_after);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("too many failed authentications"),
        "{body}"
    );
    // Limited: even the right key is refused until the budget refills.
    let (status, _, _) = http(&server.url, "GET", "/api/v1/policy/current", "right-key", "");
    assert_eq!(status, 429);
    // Routes that need no key still answer.
    let (status, _, _) = http(&server.url, "GET", "/health", "", "");
    assert_eq!(status, 200);
    drop(server);

    // Without the flag the environment beats the file.
    let server = Server::spawn_with_env(
        &args(&[]),
        &[("TAME_AUTH_FAILURE_BURST", "3")],
        tempfile::tempdir().unwrap(),
    );
    let (refused, status, _, body) = wrong_keys_until_limited(&server);
    assert_eq!((refused, status), (3, 429), "{body}");
    drop(server);

    // Burst 0 turns the limit off.
    let server = Server::spawn_with_env(
        &args(&["--auth-failure-burst", "0", "--trusted-proxy", "10.0.0.0/8"]),
        &env,
        tempfile::tempdir().unwrap(),
    );
    let call = r#"{"tool_name": "read_file"}"#;
    for i in 0..12 {
        let (status, _, body) = http(&server.url, "POST", "/api/v1/enforce", &format!("g{i}"), call);
        assert_eq!(status, 401, "wrong key {i}: {body}");
    }
}

/// `tame audit verify` prints every problem the server finds and exits 1;
/// a second server on the same SQLite file is refused, naming the file.
#[test]
fn audit_verify_prints_every_problem_and_a_second_server_on_the_file_is_refused() {
    let policy = policies_dir().join("example.yml");
    let server = Server::start(&policy, &[]);
    for i in 0..4 {
        let r = run(server
            .tame()
            .arg("enforce")
            .arg("--tool")
            .arg("read_file")
            .arg("--args")
            .arg(format!(r#"{{"path": "/tmp/{i}.txt"}}"#))
            .arg("--session-id")
            .arg("verify-test"));
        assert!(r.code == 0 || r.code == 2, "{}{}", r.stdout, r.stderr);
    }
    let db = server._dir.path().join("tame.db");

    let second = run(tame()
        .arg("serve")
        .arg("--policy")
        .arg(&policy)
        .arg("--addr")
        .arg("127.0.0.1:0")
        .arg("--db")
        .arg(&db)
        .arg("--no-watch"));
    assert_ne!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("another tame server has the SQLite database"),
        "{}",
        second.stderr
    );

    // Someone with the database edits one record and deletes another.
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(
        conn.execute("UPDATE audit SET body = body || ' ' WHERE seq = 2", [])
            .unwrap(),
        1
    );
    assert_eq!(conn.execute("DELETE FROM audit WHERE seq = 4", []).unwrap(), 1);
    drop(conn);
    let r = run(server.tame().arg("audit").arg("verify"));
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("audit chain broken: 2 problems"), "{}", r.stdout);
    assert!(
        r.stdout.contains("record 2") && r.stdout.contains("was edited"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("record 4 is missing"), "{}", r.stdout);
}
