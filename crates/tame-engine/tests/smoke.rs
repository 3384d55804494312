//! Quick end-to-end check of the facade.
use serde_json::json;
use tame_engine::*;

#[test]
fn design_example() {
    let src = r#"
version: "2026-11"
description: "Coding agent guardrails"
default: deny
rules:
  - name: block_system_files
    action: deny
    tools: ["read_file", "write_*"]
    condition: 'args.path.startsWith("/etc/") or glob(args.path, "/root/**")'
    reason: "System paths are off limits ({args.path})"
  - name: rate_limit_email
    action: deny
    tools: ["send_email"]
    condition: 'session.count("send_email", duration("1h")) >= 20'
  - name: prod_db_needs_approval
    action: approve
    tools: ["query_database"]
    condition: 'args.database == "production" and not args.query.matches("(?i)^\\s*select")'
  - name: allow_reads
    action: allow
    tools: ["read_*", "list_*", "search_*"]
"#;
    let p = Policy::from_yaml(src, "policies.yml").unwrap_or_else(|e| panic!("{e}"));
    let ev = |c: serde_json::Value| p.evaluate(&Request::from_call_json(&c).unwrap(), &NoFacts);
    let d = ev(json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}}));
    assert_eq!(d.action, Action::Deny);
    assert_eq!(&*d.reason, "System paths are off limits (/etc/passwd)");
    let d = ev(json!({"tool_name": "read_file", "tool_args": {"path": "/home/x"}}));
    assert_eq!(d.action, Action::Allow, "{d:?}");
    let d = ev(json!({"tool_name": "write_file", "tool_args": {"path": "/root/a/b"}}));
    assert_eq!(d.action, Action::Deny, "{d:?}");
    let d = ev(json!({"tool_name": "query_database", "tool_args": {"database": "production", "query": "DROP TABLE x"}}));
    assert_eq!(d.action, Action::Approve, "{d:?}");
    let d = ev(json!({"tool_name": "list_dir", "tool_args": {}}));
    assert_eq!(d.action, Action::Allow, "{d:?}");
    let d = ev(json!({"tool_name": "rm", "tool_args": {}}));
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.rule_name, None);
    println!("{}", p.to_dot());
    println!("{:?}", p.stats());
}

#[test]
fn payload_checks_use_the_scanner() {
    let src = r#"
rules:
  - name: no_secrets
    action: deny
    condition: 'has_secret(args)'
  - name: pii_needs_approval
    action: approve
    condition: 'has_pii(args) && size(secrets(args)) == 0'
  - name: rest
    action: allow
"#;
    let p = Policy::from_yaml(src, "p.yml").unwrap_or_else(|e| panic!("{e}"));
    let ev = |c: serde_json::Value| p.evaluate(&Request::from_call_json(&c).unwrap(), &NoFacts);
    let d = ev(json!({"tool_name": "http", "tool_args": {"body": "key AKIAIOSFODNN7EXAMPLE"}}));
    assert_eq!(d.rule_name.as_deref(), Some("no_secrets"), "{d:?}");
    let d = ev(json!({"tool_name": "mail", "tool_args": {"to": "jane.doe@example.com"}}));
    assert_eq!(d.rule_name.as_deref(), Some("pii_needs_approval"), "{d:?}");
    let d = ev(json!({"tool_name": "mail", "tool_args": {"to": "nobody"}}));
    assert_eq!(d.action, Action::Allow, "{d:?}");
}
