//! Tool contracts (seed 004) and agent identity binding.

use serde_json::json;
use tame_safety::{Contracts, InterceptAction, Kind};

const CONFIG: &str = r#"
tool_contracts:
  send_email:
    allowed_request_tags:
      - personal.pii.email
      - personal.pii.name
    allowed_response_fields:
      - status
      - message_id
  query_database:
    allowed_request_tags:
      - personal.financial
    allowed_response_fields:
      - rows
      - row_count
  web_search:
    allowed_request_tags:
      - public
    allowed_response_fields:
      - results
      - total_count
agents:
  support_bot:
    allowed_tools: ["send_email", "web_*"]
  "*":
    allowed_tools: ["web_search"]
"#;

fn contracts() -> Contracts {
    Contracts::from_yaml(CONFIG).unwrap()
}

#[test]
fn seed_request_validation() {
    let c = contracts();
    let r1 = c.validate_tool_request("send_email", &["personal.pii.email"]);
    assert!(r1.allowed);
    let r2 = c.validate_tool_request("send_email", &["personal.financial"]);
    assert!(!r2.allowed);
    assert_eq!(
        r2.reason,
        "Tag 'personal.financial' not in allowed_request_tags for send_email"
    );
    let v = serde_json::to_value(&r2).unwrap();
    assert_eq!(
        v,
        json!({"allowed": false, "reason": "Tag 'personal.financial' not in allowed_request_tags for send_email"})
    );
}

#[test]
fn tag_hierarchy() {
    let c = contracts();
    // `personal.financial` allows its children, not its parent or siblings.
    assert!(
        c.validate_tool_request("query_database", &["personal.financial.card"])
            .allowed
    );
    assert!(!c.validate_tool_request("query_database", &["personal"]).allowed);
    assert!(
        !c.validate_tool_request("query_database", &["personal.financialx"])
            .allowed
    );
    // `personal.pii.email` does not allow the broader `personal.pii`.
    assert!(!c.validate_tool_request("send_email", &["personal.pii"]).allowed);
    // The first disallowed tag is named.
    let r = c.validate_tool_request("send_email", &["personal.pii.name", "secret.token", "x"]);
    assert_eq!(
        r.reason,
        "Tag 'secret.token' not in allowed_request_tags for send_email"
    );
}

#[test]
fn tools_without_contract_are_unrestricted() {
    let c = contracts();
    assert!(c.validate_tool_request("read_file", &["personal.financial"]).allowed);
    let resp = json!({"content": "x", "debug": 1});
    let out = c.intercept_tool_response("read_file", &resp);
    assert_eq!(out.safe_response, resp);
    assert!(out.stripped_fields.is_empty());
}

#[test]
fn star_contract_applies_to_other_tools() {
    let c = Contracts::from_yaml(
        "tool_contracts:\n  '*':\n    allowed_request_tags: [public]\n    allowed_response_fields: [result]\n",
    )
    .unwrap();
    assert!(!c.validate_tool_request("read_file", &["personal.pii"]).allowed);
    let out = c.intercept_tool_response("read_file", &json!({"result": 1, "trace": 2}));
    assert_eq!(out.safe_response, json!({"result": 1}));
    assert_eq!(out.stripped_fields, vec!["trace"]);
}

#[test]
fn seed_request_interception() {
    let c = contracts();
    let out = c.intercept_tool_request(
        "send_email",
        &json!({"to": "alice@example.com", "subject": "Invoice", "body": "..."}),
        &["personal.pii.email"],
        Some("support_bot"),
    );
    assert_eq!(out.action, InterceptAction::Allow, "{}", out.reason);
    assert_eq!(out.payload["to"], "alice@example.com");
    assert_eq!(out.detected_tags, vec!["personal.pii.email"]);
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(v["action"], "allow");
}

#[test]
fn pii_not_allowed_by_contract_is_redacted() {
    let c = contracts();
    let out = c.intercept_tool_request(
        "send_email",
        &json!({"to": "alice@example.com", "body": "my card is 4111 1111 1111 1111"}),
        &["personal.pii.email"],
        Some("support_bot"),
    );
    assert_eq!(out.action, InterceptAction::Allow);
    assert_eq!(out.payload["to"], "alice@example.com");
    assert_eq!(out.payload["body"], "my card is [REDACTED:credit_card]");
    assert!(out.reason.contains("credit_card at $.body"), "{}", out.reason);
}

#[test]
fn secrets_block_and_are_redacted() {
    let c = contracts();
    let out = c.intercept_tool_request(
        "send_email",
        &json!({"to": "alice@example.com", "body": "key: AKIAIOSFODNN7EXAMPLE"}),
        &["personal.pii.email"],
        Some("support_bot"),
    );
    assert_eq!(out.action, InterceptAction::Block);
    assert_eq!(
        out.reason,
        "Payload for send_email contains a secret (aws_access_key_id at $.body)"
    );
    assert_eq!(out.payload["body"], "key: [REDACTED:aws_access_key_id]");
    assert!(out.findings.iter().any(|f| f.kind == Kind::AwsAccessKeyId));
    // Secrets block even for tools without a contract.
    let out = Contracts::empty().intercept_tool_request(
        "anything",
        &json!({"t": "ghp_R7c2Xw9Lk3Pq8Zt1Vb6Nm4Hs0Jd5Fg2Ya8Qe"}),
        &[] as &[&str],
        None,
    );
    assert_eq!(out.action, InterceptAction::Block);
}

#[test]
fn disallowed_tags_block() {
    let c = contracts();
    let out = c.intercept_tool_request(
        "send_email",
        &json!({"to": "a@example.com"}),
        &["personal.financial"],
        Some("support_bot"),
    );
    assert_eq!(out.action, InterceptAction::Block);
    assert_eq!(
        out.reason,
        "Tag 'personal.financial' not in allowed_request_tags for send_email"
    );
    assert_eq!(out.payload["to"], "[REDACTED:email]");
}

#[test]
fn seed_response_interception() {
    let c = contracts();
    let raw = json!({"status": "sent", "message_id": "msg-12345", "internal_trace_id": "x-trace-9999"});
    let out = c.intercept_tool_response("send_email", &raw);
    assert_eq!(out.safe_response, json!({"status": "sent", "message_id": "msg-12345"}));
    assert_eq!(out.stripped_fields, vec!["internal_trace_id"]);
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(v["stripped_fields"], json!(["internal_trace_id"]));
    // Non-object responses are withheld under a contract.
    let out = c.intercept_tool_response("send_email", &json!(["sent"]));
    assert_eq!(out.safe_response, serde_json::Value::Null);
    assert_eq!(out.stripped_fields, vec!["$"]);
}

#[test]
fn response_findings_label_what_was_revealed() {
    let c = contracts();
    let out = c.intercept_tool_response(
        "query_database",
        &json!({"rows": [{"iban": "DE89370400440532013000"}], "row_count": 1}),
    );
    assert_eq!(out.findings.len(), 1);
    assert_eq!(out.findings[0].kind, Kind::Iban);
    assert_eq!(out.findings[0].path, "$.rows[0].iban");
}

#[test]
fn agent_binding() {
    let c = contracts();
    assert!(c.validate_agent(Some("support_bot"), "send_email").allowed);
    assert!(c.validate_agent(Some("support_bot"), "web_fetch").allowed);
    let r = c.validate_agent(Some("support_bot"), "query_database");
    assert!(!r.allowed);
    assert_eq!(
        r.reason,
        "Tool 'query_database' not in allowed_tools for agent 'support_bot'"
    );
    // Unlisted agents and anonymous calls fall back to "*".
    assert!(c.validate_agent(Some("intern_bot"), "web_search").allowed);
    assert!(!c.validate_agent(Some("intern_bot"), "send_email").allowed);
    assert!(c.validate_agent(None, "web_search").allowed);
    let out = c.intercept_tool_request("send_email", &json!({}), &[] as &[&str], Some("intern_bot"));
    assert_eq!(out.action, InterceptAction::Block);
    assert_eq!(
        out.reason,
        "Tool 'send_email' not in allowed_tools for agent 'intern_bot'"
    );

    let strict = Contracts::from_yaml("agents:\n  a:\n    allowed_tools: ['x']\n").unwrap();
    assert_eq!(
        strict.validate_agent(Some("b"), "x").reason,
        "Agent 'b' is not declared in agents"
    );
    assert!(!strict.validate_agent(None, "x").allowed);
    assert!(Contracts::empty().validate_agent(None, "x").allowed);
}

#[test]
fn load_errors_name_the_entry() {
    let bad = r#"
tool_contracts:
  send_email:
    allowed_request_tag: [a]
  q:
    allowed_request_tags: ["personal..pii"]
agents:
  bot:
    allowed_tools: ["a[" ]
"#;
    let err = Contracts::from_yaml(bad).unwrap_err();
    let names: Vec<(&str, &str)> = err
        .errors
        .iter()
        .map(|e| (e.section.as_str(), e.name.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("tool_contracts", "send_email"),
            ("tool_contracts", "q"),
            ("agents", "bot")
        ],
        "{err}"
    );
    assert!(err.to_string().contains("unknown field `allowed_request_tag`"), "{err}");
    assert!(Contracts::from_yaml("tool_contracts: [1]").is_err());
}
