//! Integration tests of `tame contract` and of payload safety through
//! `tame eval`, on `policies/payload_safety.yml`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::tame;

fn policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/payload_safety.yml")
}

fn run(args: &[&str], stdin: Option<&str>) -> (i32, Value, String) {
    let mut cmd = tame();
    cmd.args(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn request_with_allowed_tags_is_allowed() {
    let p = policy();
    let (code, j, err) = run(
        &[
            "contract",
            "request",
            p.to_str().unwrap(),
            "--tool",
            "send_email",
            "--tags",
            "personal.pii.email,personal.pii.name",
            "--payload",
            r#"{"to": "alice@example.com", "subject": "Invoice"}"#,
            "--agent",
            "support_bot",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["action"], "allow");
    assert_eq!(j["allowed"], true);
    assert_eq!(j["payload"]["to"], "alice@example.com");
    assert_eq!(j["detected_tags"], json!(["personal.pii.email"]));
}

#[test]
fn request_with_a_disallowed_tag_is_blocked_with_the_seed_reason() {
    let p = policy();
    let (code, j, _) = run(
        &[
            "contract",
            "request",
            p.to_str().unwrap(),
            "--tool",
            "send_email",
            "--tags",
            "personal.financial",
            "--agent",
            "support_bot",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert_eq!(j["action"], "block");
    assert_eq!(j["allowed"], false);
    assert_eq!(
        j["reason"],
        "Tag 'personal.financial' not in allowed_request_tags for send_email"
    );
}

#[test]
fn request_by_an_unbound_agent_or_with_a_secret_is_blocked() {
    let p = policy();
    let (code, j, _) = run(
        &[
            "contract",
            "request",
            p.to_str().unwrap(),
            "--tool",
            "query_orders",
            "--agent",
            "support_bot",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(j["reason"].as_str().unwrap().contains("query_orders"), "{j}");
    let (code, j, _) = run(
        &[
            "contract",
            "request",
            p.to_str().unwrap(),
            "--tool",
            "send_email",
            "--agent",
            "support_bot",
            "--payload",
            r#"{"body": "key AKIAIOSFODNN7EXAMPLE"}"#,
        ],
        None,
    );
    assert_eq!(code, 2);
    assert_eq!(j["action"], "block");
    assert!(!j["payload"].to_string().contains("AKIAIOSFODNN7EXAMPLE"), "{j}");
}

#[test]
fn response_is_filtered_from_an_argument_or_stdin() {
    let p = policy();
    let raw = r#"{"status": "sent", "message_id": "m-1", "internal_trace_id": "x-9"}"#;
    let (code, j, err) = run(
        &["contract", "response", p.to_str().unwrap(), "--tool", "send_email", raw],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(j["safe_response"], json!({"status": "sent", "message_id": "m-1"}));
    assert_eq!(j["stripped_fields"], json!(["internal_trace_id"]));
    let (code, j, _) = run(
        &["contract", "response", p.to_str().unwrap(), "--tool", "search_kb", "-"],
        Some(raw),
    );
    assert_eq!(code, 0);
    assert_eq!(j["stripped_fields"], json!([]));
    assert_eq!(j["safe_response"]["internal_trace_id"], "x-9");
}

#[test]
fn bad_json_is_an_input_error() {
    let p = policy();
    let (code, _, err) = run(
        &[
            "contract",
            "response",
            p.to_str().unwrap(),
            "--tool",
            "send_email",
            "{nope",
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("invalid JSON"), "{err}");
}

#[test]
fn eval_applies_schemas_binding_and_redaction() {
    let p = policy();
    let lines = [
        json!({"tool_name": "create_ticket", "agent_id": "support_bot",
               "tool_args": {"title": "Printer on fire", "customer": {"email": "a@example.com", "tier": 9}}}),
        json!({"tool_name": "create_ticket", "agent_id": "billing_bot",
               "tool_args": {"title": "Printer on fire", "customer": {"email": "a@example.com"}}}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let out = tame()
        .args(["eval", p.to_str().unwrap()])
        .write_stdin(lines)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(results[0]["rule_name"], "tool_schema");
    assert!(
        results[0]["reason"].as_str().unwrap().contains("$.customer.tier"),
        "{}",
        results[0]
    );
    assert_eq!(results[1]["rule_name"], "agent_binding");

    let dir = tempfile::tempdir().unwrap();
    let redact = dir.path().join("redact.yml");
    std::fs::write(
        &redact,
        "version: '1'\ndefault: allow\npayload: {pii: redact}\nrules: []\n",
    )
    .unwrap();
    let out = tame()
        .args(["eval", redact.to_str().unwrap()])
        .write_stdin(json!({"tool_name": "t", "tool_args": {"note": "mail bob@example.com"}}).to_string())
        .output()
        .unwrap();
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["decision"], "allow");
    assert_eq!(j["sanitized_args"]["note"], "mail [REDACTED:email]");
}

#[test]
fn explain_names_the_builtin_check() {
    let p = policy();
    let out = tame()
        .args([
            "explain",
            p.to_str().unwrap(),
            "--tool",
            "create_ticket",
            "--args",
            r#"{"title": "Printer on fire"}"#,
        ])
        .args(["--agent-id", "support_bot"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("tool_schema"), "{stdout}");
    assert!(stdout.contains("$.customer"), "{stdout}");
    assert!(
        stdout.contains("built-in payload safety check `tool_schema`"),
        "{stdout}"
    );
}
