//! Integration tests of the policy authoring commands (`tame fmt`, `tame
//! schema`, `tame init`, `tame replay`, `tame migrate`): the real binary
//! over the policies in `policies/` and over bad input.

// Test helpers may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

/// A copy of `policies/` (files and subdirectories) in a temporary directory.
fn copy_policies() -> tempfile::TempDir {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_dir(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&policies_dir(), dir.path());
    dir
}

// ------------------------------------------------------------------ fmt

#[test]
fn fmt_is_idempotent_over_every_policy_and_keeps_meaning() {
    let dir = copy_policies();
    let first = run(tame().arg("fmt").arg(dir.path()));
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let formatted: Vec<(PathBuf, String)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    // A second run changes nothing, and --check agrees.
    let second = run(tame().arg("fmt").arg(dir.path()));
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    assert!(
        second.stdout.contains("0 formatted, 9 unchanged") || second.stdout.starts_with("0 formatted"),
        "{}",
        second.stdout
    );
    eprintln!("{}", first.stdout);
    for (path, text) in &formatted {
        assert_eq!(&std::fs::read_to_string(path).unwrap(), text, "{}", path.display());
    }
    let check = run(tame().args(["fmt", "--check"]).arg(dir.path()));
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    // Comments survive: every comment line of the original is still there.
    for original in policy_files() {
        let text = std::fs::read_to_string(&original).unwrap();
        let after = std::fs::read_to_string(dir.path().join(original.file_name().unwrap())).unwrap();
        for line in text.lines().filter(|l| l.trim_start().starts_with('#')) {
            assert!(after.contains(line), "{}: lost `{line}`", original.display());
        }
    }
    // The formatted policies still compile and pass their own tests.
    let test = run(tame().args(["test", "-q"]).arg(dir.path()));
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
}

#[test]
fn fmt_check_reports_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yml");
    let text = "# keep me\nversion: \"1\"\nrules:\n  - name: r   # and me\n    action: deny\n    condition: \"args.a==1&&!has(args.b)\"\n";
    std::fs::write(&path, text).unwrap();
    let check = run(tame().args(["fmt", "--check"]).arg(&path));
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("not formatted"), "{}", check.stdout);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let write = run(tame().arg("fmt").arg(&path));
    assert_eq!(write.code, 0, "{}{}", write.stdout, write.stderr);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# keep me\nversion: \"1\"\nrules:\n  - name: r   # and me\n    action: deny\n    condition: 'args.a == 1 and not has(args.b)'\n"
    );
    // Standard input to standard output.
    let mut cmd = tame();
    cmd.args(["fmt", "-"]).write_stdin(text);
    let piped = run(&mut cmd);
    assert_eq!(piped.code, 0, "{}", piped.stderr);
    assert_eq!(piped.stdout, std::fs::read_to_string(&path).unwrap());
}

#[test]
fn fmt_refuses_bad_input_and_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yml");
    let text = "rules:\n  - name: r\n    action: deny\n    condition: 'args.a == '\n";
    std::fs::write(&path, text).unwrap();
    let out = run(tame().arg("fmt").arg(&path));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("bad.yml:4:16"), "{}", out.stderr);
    assert!(
        out.stderr.contains("rules[0].condition does not parse"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    std::fs::write(&path, "rules: [\n").unwrap();
    let out = run(tame().arg("fmt").arg(&path));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid YAML"), "{}", out.stderr);

    let out = run(tame().arg("fmt").arg(dir.path().join("missing.yml")));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("missing.yml"), "{}", out.stderr);
}

// ------------------------------------------------------------------ docs

/// The call and session facts of the reference's examples.
fn example_context() -> (tame_engine::Request, tame_enforce::SessionState) {
    let mut call: serde_json::Value = serde_json::from_str(tame_lang::reference::EXAMPLE_CALL).unwrap();
    let now = call.as_object_mut().unwrap().remove("now").unwrap();
    let mut request = tame_engine::Request::from_call_json(&call).unwrap();
    request.now = now.as_str().unwrap().parse().unwrap();
    let session: serde_json::Value = serde_json::from_str(tame_lang::reference::EXAMPLE_SESSION).unwrap();
    let mut state = tame_enforce::SessionState::from_json(&session).unwrap();
    // The steps the session saw after its facts, a minute apart, ending
    // before the example call.
    let key = state.index_key();
    let steps: Vec<serde_json::Value> = tame_lang::reference::EXAMPLE_STEPS
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = steps.len() as i64;
    for (i, step) in steps.iter().enumerate() {
        let at = request.now - jiff::SignedDuration::from_mins(n - i as i64);
        if let Some(text) = step.get("input").and_then(serde_json::Value::as_str) {
            state.record_input(text, at, &tame_enforce::provenance::Extract::text(&key, text, false));
        } else if let Some(value) = step.get("result") {
            let log_id = format!("call-{}", i - 1);
            let extract = tame_enforce::provenance::Extract::json(&key, value, true);
            let value = tame_engine::json_to_value(value);
            assert!(state.record_result(&log_id, None, value, tame_enforce::ResultSource::Agent, &extract));
        } else {
            let decision = match step["decision"].as_str().unwrap() {
                "allow" => tame_engine::Action::Allow,
                "deny" => tame_engine::Action::Deny,
                _ => tame_engine::Action::Approve,
            };
            let tool = step["tool_name"].as_str().unwrap();
            let mut call = tame_enforce::CallStep::new(tool, decision, None, false, at);
            call.args = tame_engine::json_to_value(&step["tool_args"]);
            call.log_id = Some(format!("call-{i}").into());
            state.record(call);
        }
    }
    (request, state)
}

#[test]
fn every_builtin_and_root_is_in_the_language_reference() {
    let missing = tame_lang::reference::undocumented(&tame_lang::Registry::builtins());
    assert!(
        missing.is_empty(),
        "not in the language reference (document them beside their signatures in \
         crates/tame-lang/src/registry.rs, roots in reference.rs, then run `cargo xtask docs`): {missing:?}"
    );
}

#[test]
fn every_example_of_the_language_reference_evaluates_as_written() {
    let (request, state) = example_context();
    let facts = state.view(request.now);
    let examples = tame_lang::reference::examples(&tame_lang::Registry::builtins());
    assert!(examples.len() > 50, "{}", examples.len());
    let mut wrong = Vec::new();
    for ex in &examples {
        // Allowed exactly when the example equals its documented value; an
        // error is no match, so the default (deny) tells.
        let condition = format!("({}) == ({})", ex.expr, ex.result);
        let text = format!(
            "version: \"1\"\ndefault: deny\nlists: {}\nrules:\n  - name: equal\n    action: allow\n    condition: '{}'\n",
            tame_lang::reference::EXAMPLE_LISTS,
            condition.replace('\'', "''")
        );
        match tame_engine::Policy::from_yaml(&text, "example") {
            Err(e) => wrong.push(format!("{}: `{}` does not compile: {e}", ex.subject, ex.expr)),
            Ok(policy) => {
                let d = policy.evaluate(&request, &facts);
                if d.action != tame_engine::Action::Allow {
                    wrong.push(format!(
                        "{}: `{}` is not `{}` ({})",
                        ex.subject, ex.expr, ex.result, d.reason
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn docs_language_md_is_what_the_registry_writes() {
    let shipped = std::fs::read_to_string(repo().join("docs/language.md")).unwrap_or_default();
    let generated = tame_lang::reference::language_reference(&tame_lang::Registry::builtins());
    assert!(
        shipped == generated,
        "docs/language.md is out of date: run `cargo xtask docs`"
    );
}

// ------------------------------------------------------------------ init

/// A fake MCP server (bash): answers `initialize` and two pages of
/// `tools/list`, logs a line to stdout and pings the client meanwhile.
const FAKE_MCP: &str = r#"#!/bin/bash
while IFS= read -r line; do
  case "$line" in
    *'"initialize"'*) echo 'not json: a server log line'
      echo '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}}';;
    *'"tools/list"'*'"cursor"'*) echo '{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"move_file","inputSchema":{"type":"object"}},{"name":"send_message"}]}}';;
    *'"tools/list"'*) echo '{"jsonrpc":"2.0","method":"ping","id":"s1"}'
      echo '{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"read_text_file","annotations":{"readOnlyHint":true}},{"name":"obliterate","annotations":{"destructiveHint":true}}],"nextCursor":"p2"}}';;
  esac
done
"#;

fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = write(dir, name, text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

/// Runs the generated policy's own tests and returns its text.
fn check_generated(path: &Path) -> String {
    let test = run(tame().arg("test").arg(path));
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn init_from_names_sorts_reads_writes_deletes_and_sends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yml");
    let out = run(tame()
        .args([
            "init",
            "read_file",
            "list_dir",
            "write_file",
            "delete_file",
            "send_email",
            "frobnicate",
            "-o",
        ])
        .arg(&path));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("6 tools (2 read, 2 write, 1 delete, 1 send)"),
        "{}",
        out.stdout
    );
    check_generated(&path);
    let policy = tame_engine::Policy::from_file(&path).unwrap();
    let decide = |tool: &str| {
        let call = serde_json::json!({"tool_name": tool, "tool_args": {}});
        let req = tame_engine::Request::from_call_json(&call).unwrap();
        policy.evaluate(&req, &tame_engine::NoFacts).action.as_str().to_owned()
    };
    assert_eq!(decide("read_file"), "allow");
    assert_eq!(decide("list_dir"), "allow");
    assert_eq!(decide("write_file"), "approve");
    assert_eq!(decide("delete_file"), "approve");
    assert_eq!(decide("send_email"), "approve");
    assert_eq!(decide("frobnicate"), "approve");
    assert_eq!(decide("not_listed"), "deny");
    // The file exists now: refused without --force.
    let again = run(tame().args(["init", "read_file", "-o"]).arg(&path));
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let forced = run(tame().args(["init", "read_file", "--force", "-o"]).arg(&path));
    assert_eq!(forced.code, 0, "{}", forced.stderr);
}

#[test]
fn init_from_an_mcp_server_uses_its_annotations_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = write_script(dir.path(), "fake_mcp.sh", FAKE_MCP);
    let path = dir.path().join("mcp.yml");
    let out = run(tame()
        .args(["init", "--schema", "../schema/policy.schema.json", "-o"])
        .arg(&path)
        .arg("--")
        .arg(&server));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let text = check_generated(&path);
    assert!(
        text.starts_with("# yaml-language-server: $schema=../schema/policy.schema.json\n"),
        "{text}"
    );
    assert!(
        text.contains("\"obliterate\"   # MCP annotation destructiveHint"),
        "{text}"
    );
    assert!(
        text.contains("\"read_text_file\"   # MCP annotation readOnlyHint"),
        "{text}"
    );
    assert!(text.contains("\"move_file\"   # the word `move`"), "{text}");
    assert!(text.contains("\"send_message\"   # the word `send`"), "{text}");
}

#[test]
fn init_from_tools_files() {
    let dir = tempfile::tempdir().unwrap();
    // The tool protocol's tools.yaml: a map of name to runner.
    let protocol = dir.path().join("tools.yaml");
    std::fs::write(
        &protocol,
        "tools:\n  get_weather: {runner: service, url: http://127.0.0.1:9/tools}\n  delete_cache: {runner: local, entry: t:f}\n",
    )
    .unwrap();
    let out = run(tame().args(["init", "--tools-file"]).arg(&protocol));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("\"get_weather\""), "{}", out.stdout);
    assert!(
        out.stdout.contains("\"delete_cache\"   # the word `delete`"),
        "{}",
        out.stdout
    );
    // Seed 002's list, with requires_approval, and a saved tools/list answer.
    let specs = dir.path().join("specs.json");
    std::fs::write(
        &specs,
        r#"{"jsonrpc": "2.0", "id": 2, "result": {"tools": [{"name": "search_docs"}, {"name": "lookup", "requires_approval": true}]}}"#,
    )
    .unwrap();
    let path = dir.path().join("p.yml");
    let out = run(tame().args(["init", "--tools-file"]).arg(&specs).arg("-o").arg(&path));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = check_generated(&path);
    assert!(text.contains("\"lookup\"   # requires_approval: true"), "{text}");
}

#[test]
fn init_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    // No source, two sources.
    let out = run(tame().arg("init"));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("give the tools one way"), "{}", out.stderr);
    let out = run(tame().args(["init", "read_file", "--tools-file", "x.yml"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("give the tools one way"), "{}", out.stderr);
    // A tools file without tools, a missing one, one with a nameless tool.
    let empty = dir.path().join("empty.yml");
    std::fs::write(&empty, "tools: []\n").unwrap();
    let out = run(tame().args(["init", "--tools-file"]).arg(&empty));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no tools found"), "{}", out.stderr);
    let out = run(tame()
        .args(["init", "--tools-file"])
        .arg(dir.path().join("missing.yml")));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("missing.yml"), "{}", out.stderr);
    let nameless = dir.path().join("nameless.yml");
    std::fs::write(&nameless, "tools:\n  - description: no name\n").unwrap();
    let out = run(tame().args(["init", "--tools-file"]).arg(&nameless));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("tools[0]") && out.stderr.contains("name"),
        "{}",
        out.stderr
    );
    // An MCP server that cannot start, one that exits, one that errors.
    let out = run(tame().args(["init", "--", "/nonexistent/mcp-server"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("cannot start mcp server"), "{}", out.stderr);
    let quits = write_script(dir.path(), "quits.sh", "#!/bin/bash\nexit 3\n");
    let out = run(tame().arg("init").arg("--").arg(&quits));
    assert_eq!(out.code, 1);
    // It may exit before or after reading the first request.
    assert!(
        out.stderr.contains("before answering (exit status: 3)"),
        "{}",
        out.stderr
    );
    let errs = write_script(
        dir.path(),
        "errs.sh",
        "#!/bin/bash\nread -r line\necho '{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"nope\"}}'\n",
    );
    let out = run(tame().arg("init").arg("--").arg(&errs));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("answered with an error: nope"), "{}", out.stderr);
    let silent = write_script(dir.path(), "silent.sh", "#!/bin/bash\nexec sleep 30\n");
    let out = run(tame().args(["init", "--mcp-timeout", "1", "--"]).arg(&silent));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("did not answer in time"), "{}", out.stderr);
}

// ------------------------------------------------------------------ replay

const REPLAY_POLICY: &str = r#"version: "2"
default: deny
rules:
  - name: no_mail_after_secret
    action: deny
    tools: ["send_email"]
    condition: '"secret" in session.labels'
  - name: mail_limit
    action: deny
    tools: ["send_email"]
    condition: 'session.count("send_email") >= 2'
  - name: mail
    action: allow
    tools: ["send_email"]
  - name: reads
    action: allow
    tools: ["read_*"]
  - name: deletes
    action: approve
    tools: ["delete_*"]
"#;

fn replay_json(args: &[&str], dir: &Path) -> (i32, Value, String) {
    let out = run(tame().current_dir(dir).arg("--json").arg("replay").args(args));
    let value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    (out.code, value, out.stderr)
}

fn changes(report: &Value) -> Vec<(String, String, u64)> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["old"].as_str().unwrap().to_owned(),
                c["new"].as_str().unwrap().to_owned(),
                c["calls"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn replay_counts_changes_against_recorded_decisions_in_session_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yml"), REPLAY_POLICY).unwrap();
    // Recorded: three mails allowed in session s1. Under the candidate the
    // third is over the limit: only the calls it allowed count.
    let lines = [
        r#"{"tool_name": "send_email", "tool_args": {"to": "a@b.c"}, "session_id": "s1", "decision": "allow", "rule_name": "mail"}"#,
        r#"{"tool_name": "send_email", "tool_args": {"to": "a@b.c"}, "session_id": "s2", "decision": "allow", "rule_name": "mail"}"#,
        r#"{"tool_name": "send_email", "tool_args": {"to": "a@b.c"}, "session_id": "s1", "decision": "allow", "rule_name": "mail"}"#,
        r#"{"tool_name": "send_email", "tool_args": {"to": "a@b.c"}, "session_id": "s1", "decision": "allow", "rule_name": "mail"}"#,
        r#"{"tool_name": "read_file", "tool_args": {}, "decision": "deny"}"#,
        r#"{"session_id": "s1", "input": "please mail Ada"}"#,
        "",
        r#"{"tool_name": "delete_file", "tool_args": {}, "decision": "approve", "rule_name": "deletes"}"#,
    ];
    std::fs::write(dir.path().join("calls.jsonl"), lines.join("\n")).unwrap();
    let (code, report, stderr) = replay_json(&["p.yml", "calls.jsonl"], dir.path());
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["calls"], 6);
    // The input is a step of s1's history, not a call.
    assert_eq!(report["steps_skipped"], 0);
    assert_eq!(report["changed"], 2, "{report}");
    assert_eq!(
        changes(&report),
        [("allow".into(), "deny".into(), 1), ("deny".into(), "allow".into(), 1)]
    );
    let examples = &report["changes"][0]["examples"];
    assert_eq!(examples[0]["at"], "line 4", "{report}");
    assert_eq!(examples[0]["new"]["rule"], "mail_limit");
    let by_rule = &report["changes_by_rule"];
    assert!(
        by_rule
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["old"] == "(default)" && r["new"] == "reads"),
        "{report}"
    );
    // Per-rule hits as `tame bench` gives them.
    let rules = report["rules"].as_array().unwrap();
    let hits = |name: &str| {
        rules.iter().find(|r| r["rule"] == name).unwrap()["hits"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        (hits("mail"), hits("mail_limit"), hits("reads"), hits("deletes")),
        (3, 1, 1, 1)
    );
    // Human output says the same.
    let human = run(tame().current_dir(dir.path()).args(["replay", "p.yml", "calls.jsonl"]));
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(human.stdout.contains("2 of 6 calls change"), "{}", human.stdout);
    assert!(human.stdout.contains("line 4: send_email"), "{}", human.stdout);
}

#[test]
fn replay_reads_audit_and_session_exports() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yml"), REPLAY_POLICY).unwrap();
    let record = |seq: u32, kind: &str, session: &str, body: Value| {
        serde_json::json!({"seq": seq, "kind": kind, "ts": "2026-11-21T10:00:00Z", "session_id": session,
                           "ref_id": null, "session_prev": null, "record": body, "prev_hash": "00", "hash": "11"})
        .to_string()
    };
    let decision = |tool: &str, decision: &str, rule: Option<&str>, extra: Value| {
        let mut body = serde_json::json!({"tool_name": tool, "tool_args": {}, "decision": decision,
            "rule_name": rule, "session_id": "s1", "timestamp": "2026-11-21T10:00:00Z", "log_id": "l"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let lines = [
        // An approved delete, then released by a human: not a decision to compare.
        record(
            1,
            "decision",
            "s1",
            decision(
                "delete_file",
                "approve",
                Some("deletes"),
                serde_json::json!({"approval_id": "a1"}),
            ),
        ),
        record(2, "approval_created", "s1", serde_json::json!({"approval_id": "a1"})),
        record(
            3,
            "decision",
            "s1",
            decision("delete_file", "allow", None, serde_json::json!({"released_by": "a1"})),
        ),
        // A mail, then a result that revealed a secret: the next mail is denied.
        record(
            4,
            "decision",
            "s1",
            decision("send_email", "allow", Some("mail"), serde_json::json!({})),
        ),
        record(
            5,
            "result",
            "s1",
            serde_json::json!({"log_id": "l", "labels": ["secret"]}),
        ),
        record(
            6,
            "decision",
            "s1",
            decision("send_email", "allow", Some("mail"), serde_json::json!({})),
        ),
    ];
    std::fs::write(dir.path().join("audit.jsonl"), lines.join("\n") + "\n").unwrap();
    let (code, report, stderr) = replay_json(&["p.yml", "audit.jsonl"], dir.path());
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(
        (report["calls"].as_u64(), report["releases"].as_u64()),
        (Some(3), Some(1)),
        "{report}"
    );
    assert_eq!(changes(&report), [("allow".into(), "deny".into(), 1)], "{report}");
    assert_eq!(
        report["changes"][0]["examples"][0]["new"]["rule"],
        "no_mail_after_secret"
    );
    // A session export: `tame sessions show ID --json`, a JSON array.
    let entries = serde_json::json!([
        {"id": "1", "session_id": "s9", "timestamp": "2026-11-21T10:00:00Z", "tool_name": "read_file",
         "tool_args": {"path": "/a"}, "policy_decision": "deny", "policy_rule": null},
        {"id": "2", "session_id": "s9", "timestamp": "2026-11-21T10:00:01Z", "tool_name": "send_email",
         "tool_args": {}, "policy_decision": "allow", "policy_rule": "mail"}
    ]);
    std::fs::write(
        dir.path().join("session.json"),
        serde_json::to_string_pretty(&entries).unwrap(),
    )
    .unwrap();
    let (code, report, stderr) = replay_json(&["p.yml", "session.json"], dir.path());
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["calls"], 2);
    assert_eq!(changes(&report), [("deny".into(), "allow".into(), 1)]);
    assert_eq!(report["changes"][0]["examples"][0]["at"], "item 1");
}

#[test]
fn replay_scores_labels_and_fails_on_a_regression_against_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.yml"), REPLAY_POLICY).unwrap();
    // The candidate lets deletes through: the labelled delete regresses.
    let candidate = REPLAY_POLICY.replace(
        "    action: approve\n    tools: [\"delete_*\"]",
        "    action: allow\n    tools: [\"delete_*\"]",
    );
    assert_ne!(candidate, REPLAY_POLICY);
    std::fs::write(dir.path().join("new.yml"), &candidate).unwrap();
    let lines = [
        r#"{"tool_name": "delete_file", "tool_args": {}, "expect": "approve"}"#,
        r#"{"tool_name": "read_file", "tool_args": {}, "expect": "allow"}"#,
        r#"{"tool_name": "write_file", "tool_args": {}, "expect": "deny"}"#,
        r#"{"tool_name": "send_email", "tool_args": {}, "session_id": "s", "expect": "allow"}"#,
        r#"{"tool_name": "send_email", "tool_args": {}, "session_id": "s", "expect": "allow"}"#,
        r#"{"tool_name": "send_email", "tool_args": {}, "session_id": "s", "expect": "deny"}"#,
    ];
    std::fs::write(dir.path().join("labelled.jsonl"), lines.join("\n")).unwrap();
    // Against itself: no change, no regression; precision and recall.
    let (code, report, _) = replay_json(&["base.yml", "labelled.jsonl", "--baseline", "base.yml"], dir.path());
    assert_eq!(code, 0, "{report}");
    let labels = &report["labels"];
    assert_eq!(labels["labelled"], 6);
    assert_eq!(labels["regressions"], 0);
    assert_eq!(labels["actions"]["deny"]["precision"], 1.0, "{report}");
    assert_eq!(labels["actions"]["deny"]["recall"], 1.0, "{report}");
    assert_eq!(labels["actions"]["approve"]["recall"], 1.0, "{report}");
    let rule = labels["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "mail_limit")
        .unwrap();
    assert_eq!(
        (rule["hits"].as_u64(), rule["precision"].as_f64()),
        (Some(1), Some(1.0)),
        "{report}"
    );
    // The candidate regresses: exit 1, the call named.
    let (code, report, stderr) = replay_json(&["new.yml", "labelled.jsonl", "--baseline", "base.yml"], dir.path());
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["labels"]["regressions"], 1);
    assert_eq!(report["labels"]["regression_examples"][0]["at"], "line 1");
    assert_eq!(report["labels"]["actions"]["approve"]["recall"], 0.0, "{report}");
    let _ = stderr;
    let human =
        run(tame()
            .current_dir(dir.path())
            .args(["replay", "new.yml", "labelled.jsonl", "--baseline", "base.yml"]));
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains("1 regressions"), "{}", human.stdout);
    assert!(human.stderr.contains("decided otherwise"), "{}", human.stderr);
}

#[test]
fn replay_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yml"), REPLAY_POLICY).unwrap();
    // A malformed line is named, the others still count; exit 1.
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"tool_name\": \"read_file\"}\n{not json\n{\"tool_name\": \"read_file\", \"expect\": \"maybe\"}\n[1]\n",
    )
    .unwrap();
    let out = run(tame().current_dir(dir.path()).args(["replay", "p.yml", "bad.jsonl"]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("3 malformed records"), "{}", out.stdout);
    assert!(out.stdout.contains("line 2: invalid JSON"), "{}", out.stdout);
    assert!(out.stdout.contains("line 3: `expect` is `maybe`"), "{}", out.stdout);
    assert!(
        out.stdout.contains("line 4: a record must be a JSON object"),
        "{}",
        out.stdout
    );
    // No calls at all, a missing source, a broken policy, a broken array.
    std::fs::write(dir.path().join("empty.jsonl"), "\n\n").unwrap();
    let out = run(tame().current_dir(dir.path()).args(["replay", "p.yml", "empty.jsonl"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no calls to replay"), "{}", out.stderr);
    let out = run(tame()
        .current_dir(dir.path())
        .args(["replay", "p.yml", "missing.jsonl"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("missing.jsonl"), "{}", out.stderr);
    std::fs::write(
        dir.path().join("broken.yml"),
        "rules:\n  - name: x\n    action: maybe\n",
    )
    .unwrap();
    let out = run(tame()
        .current_dir(dir.path())
        .args(["replay", "broken.yml", "bad.jsonl"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("broken.yml"), "{}", out.stderr);
    std::fs::write(dir.path().join("cut.json"), "[{\"tool_name\": \"read_file\"}, {\"tool").unwrap();
    let out = run(tame().current_dir(dir.path()).args(["replay", "p.yml", "cut.json"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid JSON array"), "{}", out.stderr);
}

// ------------------------------------------------------------------ schema

/// The YAML file as JSON.
fn yaml_as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shipped_schema(name: &str) -> Value {
    let path = repo().join("schema").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn schema_errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn shipped_schemas_are_what_tame_schema_prints() {
    for (kind, file) in [
        ("policy", "policy.schema.json"),
        ("tests", "tests.schema.json"),
        ("config", "config.schema.json"),
    ] {
        let out = run(tame().args(["schema", kind]));
        assert_eq!(out.code, 0, "{}", out.stderr);
        let shipped = std::fs::read_to_string(repo().join("schema").join(file)).unwrap_or_default();
        assert!(
            out.stdout == shipped,
            "schema/{file} is out of date: run `tame schema {kind} > schema/{file}`"
        );
    }
    let out = run(tame().args(["schema", "polcy"]));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("policy"), "{}", out.stderr);
}

#[test]
fn every_file_in_policies_validates_against_its_schema_and_names_it() {
    let policy = shipped_schema("policy.schema.json");
    let tests = shipped_schema("tests.schema.json");
    let files = files_in_policies(is_yaml);
    assert!(files.len() >= 10, "{files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (schema, file) = if name.contains(".tests.") {
            (&tests, "tests.schema.json")
        } else {
            (&policy, "policy.schema.json")
        };
        let errors = schema_errors(schema, &yaml_as_json(&path));
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!("# yaml-language-server: $schema=../schema/{file}"),
            "{name} does not start with its schema line"
        );
    }
}

#[test]
fn the_policy_schema_rejects_what_the_loader_rejects() {
    let schema = shipped_schema("policy.schema.json");
    let bad = [
        ("rules:\n  - name: a\n    acton: deny\n", "a misspelt key"),
        ("rules:\n  - name: a\n    action: maybe\n", "an unknown action"),
        ("default: perhaps\n", "an unknown default"),
        (
            "rules:\n  - name: a\n    action: deny\n    condition: 3\n",
            "a number as condition",
        ),
        ("payload: {secrets: shred}\n", "an unknown payload mode"),
        (
            "rules:\n  - name: a\n    action: deny\n    conditions: {arg_contain: {a: 1}}\n",
            "a legacy typo",
        ),
        (
            "tests:\n  - call: {tool_name: x}\n    expect: allowed\n",
            "an unknown expected decision",
        ),
    ];
    for (text, what) in bad {
        let instance: Value = serde_yaml::from_str(text).unwrap();
        assert!(
            !schema_errors(&schema, &instance).is_empty(),
            "the schema accepts {what}"
        );
        assert!(
            tame_engine::Policy::from_yaml(text, "p.yml").is_err(),
            "the loader accepts {what}"
        );
    }
    let config = shipped_schema("config.schema.json");
    let instance: Value = serde_yaml::from_str("addr: 127.0.0.1:8000\nworkers: 2\nadmin_keys: [k]\n").unwrap();
    assert!(schema_errors(&config, &instance).is_empty());
    let instance: Value = serde_yaml::from_str("adress: 127.0.0.1:8000\n").unwrap();
    assert!(!schema_errors(&config, &instance).is_empty());
}

// ------------------------------------------------------------------ migrate

/// A legacy policy with every kind of check and value the original read.
const LEGACY: &str = r#"version: 1.0
description: "legacy, every kind of check"
rules:
  - name: no_tools
    action: deny
    tools: []
  - name: etc
    action: deny
    tools: ["read_file", "write_*"]
    conditions:
      arg_contains: {path: "/etc/passwd"}
  - name: regex_tools
    action: approve
    tools: ["exec.*", "run_(a|b)"]
    conditions:
      arg_contains: {n: 1}
  - name: numbers
    action: deny
    tools: ["*"]
    conditions:
      arg_contains: {n: 42, ratio: 2.5}
  - name: zero
    action: approve
    conditions:
      arg_contains: {flag: 0}
  - name: yes_flag
    action: deny
    tools: [send_email]
    conditions:
      arg_contains: {flag: yes}
      arg_not_contains: {note: "*"}
  - name: present
    action: approve
    tools: [send_email]
    conditions:
      arg_contains: {tags: "*"}
  - name: lists_and_nulls
    action: deny
    conditions:
      arg_contains: {tags: ["a", "b"], note: ~}
  - name: dates
    action: deny
    conditions:
      arg_contains: {when: 2024-01-01}
  - name: float_one
    action: allow
    tools: [read_file]
    conditions:
      arg_contains: {ratio: 1.0}
  - name: context
    action: allow
    conditions:
      session_context: {role: admin, agent_id: bot}
  - name: context_present
    action: approve
    conditions:
      session_context: {user_id: "*", team: "*"}
  - name: not_etc
    action: allow
    tools: [read_file, delete_file]
    conditions:
      arg_not_contains: {path: "/etc/shadow", flag: true}
  - name: null_agent
    action: deny
    conditions:
      session_context: {agent_id: ~, verified: false}
  - name: everything_else
    action: approve
    tools: [write_file]
"#;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn random_call(rng: &mut Rng) -> Value {
    use serde_json::json;
    let values = [
        json!("/etc/passwd"),
        json!("/etc/shadow"),
        json!("/tmp/x"),
        json!("admin"),
        json!("bot"),
        json!("*"),
        json!("2024-01-01"),
        json!(0),
        json!(1),
        json!(42),
        json!(0.0),
        json!(1.0),
        json!(2.5),
        json!(true),
        json!(false),
        json!(null),
        json!(["a", "b"]),
        json!(["b", "a"]),
        json!({"k": "v"}),
    ];
    let tools = [
        "read_file",
        "write_file",
        "write_log",
        "exec_shell",
        "executor",
        "run_a",
        "run_c",
        "send_email",
        "delete_file",
        "other",
    ];
    let mut args = serde_json::Map::new();
    for key in ["path", "n", "ratio", "flag", "tags", "note", "when"] {
        if rng.chance(45) {
            args.insert(key.into(), rng.pick(&values).clone());
        }
    }
    let mut call = json!({"tool_name": rng.pick(&tools), "tool_args": args});
    if rng.chance(60) {
        let mut metadata = serde_json::Map::new();
        for key in ["role", "verified", "team", "agent_id", "user_id"] {
            if rng.chance(35) {
                metadata.insert(key.into(), rng.pick(&values).clone());
            }
        }
        call["metadata"] = Value::Object(metadata);
    }
    for (key, ids) in [
        ("agent_id", ["bot", "other"]),
        ("user_id", ["u1", "admin"]),
        ("session_id", ["s1", "s2"]),
    ] {
        if rng.chance(50) {
            call[key] = json!(rng.pick(&ids));
        }
    }
    call
}

#[test]
fn migrate_rewrites_legacy_policies_that_decide_random_calls_identically() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("legacy.yml", LEGACY.to_owned()),
        (
            "legacy_tame.yml",
            std::fs::read_to_string(policies_dir().join("legacy_tame.yml")).unwrap(),
        ),
    ] {
        let legacy_path = dir.path().join(name);
        std::fs::write(&legacy_path, &text).unwrap();
        let migrated_path = dir.path().join(format!("migrated_{name}"));
        let out = run(tame().arg("migrate").arg(&legacy_path).arg("-o").arg(&migrated_path));
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        let legacy = tame_engine::Policy::from_yaml(&text, name).unwrap();
        assert!(legacy.info().legacy);
        let migrated = tame_engine::Policy::from_file(&migrated_path).unwrap();
        assert!(!migrated.info().legacy);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut lines = String::new();
        let mut matched = std::collections::BTreeSet::new();
        for _ in 0..5000 {
            let call = random_call(&mut rng);
            let req = tame_engine::Request::from_call_json(&call).unwrap();
            let a = legacy.evaluate(&req, &tame_engine::NoFacts);
            let b = migrated.evaluate(&req, &tame_engine::NoFacts);
            assert_eq!(
                (a.action, a.rule_name.as_deref(), &*a.reason),
                (b.action, b.rule_name.as_deref(), &*b.reason),
                "{name}: {call}\n{}",
                std::fs::read_to_string(&migrated_path).unwrap()
            );
            matched.insert(a.rule_name.as_deref().unwrap_or("(default)").to_owned());
            lines.push_str(&call.to_string());
            lines.push('\n');
        }
        // The calls reach most rules, so the comparison means something.
        assert!(matched.len() >= legacy.info().rules.len() / 2, "{name}: {matched:?}");
        // And the replay of those calls shows no change.
        std::fs::write(dir.path().join("random.jsonl"), lines).unwrap();
        let (code, report, stderr) = replay_json(
            &[
                migrated_path.to_str().unwrap(),
                "random.jsonl",
                "--baseline",
                legacy_path.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            (report["calls"].as_u64(), report["changed"].as_u64()),
            (Some(5000), Some(0)),
            "{report}"
        );
    }
}

#[test]
fn migrate_refuses_what_it_cannot_say_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join("current.yml");
    std::fs::write(&current, "version: \"1\"\nrules:\n  - name: a\n    action: deny\n").unwrap();
    let out = run(tame().arg("migrate").arg(&current));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("not in the original tame server's format"),
        "{}",
        out.stderr
    );
    let lists = dir.path().join("lists.yml");
    std::fs::write(
        &lists,
        "rules:\n  - name: nums\n    action: deny\n    conditions:\n      arg_contains: {ids: [1, 2]}\n",
    )
    .unwrap();
    let out = run(tame().arg("migrate").arg(&lists));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("rule `nums`") && out.stderr.contains("by hand"),
        "{}",
        out.stderr
    );
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "rules:\n  - name: x\n    action: deny\n    conditions: [1]\n").unwrap();
    let out = run(tame().arg("migrate").arg(&broken));
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("broken.yml"), "{}", out.stderr);
    let out = run(tame().arg("migrate").arg(dir.path().join("missing.yml")));
    assert_eq!(out.code, 1);
}

#[test]
fn migrate_output_keeps_an_existing_file_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = write(dir.path(), "legacy.yml", LEGACY);
    let output = write(dir.path(), "out.yml", "mine\n");
    let refused = run(tame().arg("migrate").arg(&legacy).arg("-o").arg(&output));
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("exists; use --force"), "{}", refused.stderr);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "mine\n");
    let forced = run(tame().arg("migrate").arg(&legacy).arg("-o").arg(&output).arg("--force"));
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(forced.stdout.contains("wrote"), "{}", forced.stdout);
    tame_engine::Policy::from_file(&output).unwrap();
}
