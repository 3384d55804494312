//! Payload safety through the engine facade: argument schemas, agent
//! binding, tool contracts (tags, response filtering) and the payload scan.
use serde_json::json;
use tame_engine::{Action, MemoryFacts, NoFacts, Policy, Request};

const POLICY: &str = r#"
version: "1"
default: allow
tools:
  - name: create_user
    description: Create a user
    input_schema:
      type: object
      required: [username, profile]
      properties:
        username: {type: string, minLength: 3}
        profile:
          type: object
          properties:
            age: {type: integer, minimum: 0}
tool_contracts:
  send_email:
    allowed_request_tags: [personal.pii.email, personal.pii.name]
    allowed_response_fields: [status, message_id]
agents:
  support_bot:
    allowed_tools: ["send_email", "create_user", "search_*"]
  "*":
    allowed_tools: ["search_*"]
rules:
  - name: no_email_after_secret
    action: deny
    tools: [send_email]
    condition: '"secret" in session.labels'
    reason: "a secret was read in this session"
"#;

fn req(call: serde_json::Value) -> Request {
    Request::from_call_json(&call).unwrap()
}

fn policy() -> Policy {
    Policy::from_yaml(POLICY, "policies.yml").unwrap()
}

#[test]
fn nested_schema_failure_names_the_json_path() {
    let p = policy();
    let d = p.evaluate(
        &req(json!({"tool_name": "create_user", "agent_id": "support_bot",
                    "tool_args": {"username": "alice", "profile": {"age": "old"}}})),
        &NoFacts,
    );
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.rule_name.as_deref(), Some(tame_engine::RULE_TOOL_SCHEMA));
    assert!(d.reason.contains("$.profile.age"), "{}", d.reason);

    let ok = p.evaluate(
        &req(json!({"tool_name": "create_user", "agent_id": "support_bot",
                    "tool_args": {"username": "alice", "profile": {"age": 30}}})),
        &NoFacts,
    );
    assert_eq!(ok.action, Action::Allow, "{}", ok.reason);
    assert_eq!(ok.rule_name, None);
}

#[test]
fn explain_shows_builtin_denials() {
    let p = policy();
    let e = p.explain(
        &req(json!({"tool_name": "create_user", "agent_id": "support_bot", "tool_args": {"username": "al"}})),
        &NoFacts,
    );
    assert_eq!(e.decision.rule_name.as_deref(), Some("tool_schema"));
    assert!(e.rules.is_empty());
    assert!(!e.defaulted);
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["decision"]["rule_name"], "tool_schema");
}

#[test]
fn agent_binding_runs_before_the_schema() {
    let p = policy();
    // Bad arguments too, but the agent may not call the tool at all.
    let d = p.evaluate(
        &req(json!({"tool_name": "create_user", "agent_id": "intruder", "tool_args": {}})),
        &NoFacts,
    );
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.rule_name.as_deref(), Some("agent_binding"));
    assert!(d.reason.contains("create_user"), "{}", d.reason);
    let anon = p.evaluate(&req(json!({"tool_name": "search_web", "tool_args": {}})), &NoFacts);
    assert_eq!(anon.action, Action::Allow);
    assert!(!p.validate_agent(Some("intruder"), "send_email").allowed);
    assert!(p.validate_agent(Some("support_bot"), "send_email").allowed);
}

#[test]
fn data_tags_come_from_metadata() {
    let p = policy();
    let call = |tags: serde_json::Value| {
        req(json!({"tool_name": "send_email", "agent_id": "support_bot",
                   "tool_args": {"to": "a@example.com"}, "metadata": {"data_tags": tags}}))
    };
    let d = p.evaluate(&call(json!(["personal.financial"])), &NoFacts);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.rule_name.as_deref(), Some("tool_contract"));
    assert_eq!(
        &*d.reason,
        "Tag 'personal.financial' not in allowed_request_tags for send_email"
    );
    let ok = p.evaluate(&call(json!(["personal.pii.email"])), &NoFacts);
    assert_eq!(ok.action, Action::Allow, "{}", ok.reason);
    assert!(p.validate_tool_request("send_email", &["personal.pii.name"]).allowed);
    assert!(!p.validate_tool_request("send_email", &["personal.financial"]).allowed);
}

#[test]
fn session_labels_from_results_stop_a_later_email() {
    let p = policy();
    let result = json!({"content": "key AKIAIOSFODNN7EXAMPLE"});
    let labels = tame_engine::labels(&tame_engine::Scanner::global().scan(&result));
    assert!(labels.iter().any(|l| l == "secret"), "{labels:?}");
    let facts = MemoryFacts::from_json(&json!({"labels": labels})).unwrap();
    let d = p.evaluate(
        &req(json!({"tool_name": "send_email", "agent_id": "support_bot", "tool_args": {"to": "a@example.com"}})),
        &facts,
    );
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.rule_name.as_deref(), Some("no_email_after_secret"));
}

#[test]
fn response_filtering_strips_unlisted_fields() {
    let p = policy();
    let f = p.filter_response(
        "send_email",
        &json!({"status": "sent", "message_id": "m-1", "internal_trace_id": "x-9"}),
    );
    assert_eq!(f.safe_response, json!({"status": "sent", "message_id": "m-1"}));
    assert_eq!(f.stripped_fields, vec!["internal_trace_id".to_owned()]);
    // No contract: unchanged.
    let raw = json!({"a": 1});
    let f = p.filter_response("search_web", &raw);
    assert_eq!(f.safe_response, raw);
    assert!(f.stripped_fields.is_empty());
}

#[test]
fn intercept_tool_request_blocks_secrets_and_redacts_untagged_pii() {
    let p = policy();
    let i = p.intercept_tool_request(
        "send_email",
        &json!({"to": "alice@example.com", "body": "AKIAIOSFODNN7EXAMPLE"}),
        &["personal.pii.email"],
        Some("support_bot"),
    );
    assert_eq!(i.action, tame_engine::InterceptAction::Block);
    assert!(!i.payload.to_string().contains("AKIAIOSFODNN7EXAMPLE"));
    let i = p.intercept_tool_request(
        "send_email",
        &json!({"to": "alice@example.com"}),
        &["personal.pii.email"],
        Some("support_bot"),
    );
    assert_eq!(i.action, tame_engine::InterceptAction::Allow);
    assert_eq!(i.payload, json!({"to": "alice@example.com"}));
}

#[test]
fn payload_deny_and_redact_modes() {
    let deny = Policy::from_yaml(
        "version: '1'\ndefault: allow\npayload: {secrets: deny}\nrules: []\n",
        "p.yml",
    )
    .unwrap();
    let call =
        req(json!({"tool_name": "http_get", "tool_args": {"url": "https://x", "h": {"auth": "AKIAIOSFODNN7EXAMPLE"}}}));
    let d = deny.evaluate(&call, &NoFacts);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.rule_name.as_deref(), Some("payload_secrets"));
    assert!(d.reason.contains("$.h.auth"), "{}", d.reason);
    assert!(!d.reason.contains("AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(deny.sanitize_args(&call), None);

    let redact = Policy::from_yaml(
        "version: '1'\ndefault: allow\npayload: {secrets: redact, pii: allow}\nrules: []\n",
        "p.yml",
    )
    .unwrap();
    let call = req(
        json!({"tool_name": "http_get", "tool_args": {"to": "bob@example.com", "h": {"auth": "AKIAIOSFODNN7EXAMPLE"}}}),
    );
    assert_eq!(redact.evaluate(&call, &NoFacts).action, Action::Allow);
    let clean = redact.sanitize_args(&call).unwrap();
    assert_eq!(clean["h"]["auth"], "[REDACTED:aws_access_key_id]");
    assert_eq!(clean["to"], "bob@example.com");
    let nothing = req(json!({"tool_name": "http_get", "tool_args": {"q": "weather"}}));
    assert_eq!(redact.sanitize_args(&nothing), None);
}

#[test]
fn policies_without_sections_are_unchanged() {
    let p = Policy::from_yaml(
        "version: '1'\nrules:\n  - name: a\n    action: allow\n    tools: [x]\n",
        "p.yml",
    )
    .unwrap();
    let d = p.evaluate(
        &req(json!({"tool_name": "x", "tool_args": {"k": "AKIAIOSFODNN7EXAMPLE"}})),
        &NoFacts,
    );
    assert_eq!(d.action, Action::Allow);
    assert!(p.contracts().is_empty());
    assert!(p.tool_schemas().is_empty());
}

#[test]
fn load_errors_have_locations_and_tool_names() {
    let src = "version: '1'\ntools:\n  - name: ok\n    description: fine\n    input_schema: {type: object}\n  - name: broken\n    description: bad\n    input_schema: {type: 12}\ntool_contracts:\n  send_email:\n    allowed_request_tag: [x]\npayload: {secrets: maybe}\nrules: []\n";
    let err = Policy::from_yaml(src, "policies.yml").unwrap_err();
    let ds: Vec<_> = err.errors().collect();
    let broken = ds
        .iter()
        .find(|d| d.message.contains("`broken`"))
        .expect("schema error");
    assert_eq!((broken.file.as_str(), broken.line), ("policies.yml", 6));
    let contract = ds
        .iter()
        .find(|d| d.message.contains("`send_email`"))
        .expect("contract error");
    assert_eq!(contract.line, 10);
    let payload = ds
        .iter()
        .find(|d| d.message.contains("payload"))
        .expect("payload error");
    assert_eq!(payload.line, 12);
    assert!(broken.column > 0);
}

#[test]
fn tools_file_is_read_relative_to_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tools.yml"),
        "tools:\n  - name: t\n    description: d\n    input_schema: {type: object, required: [a]}\n",
    )
    .unwrap();
    let pol = dir.path().join("policies.yml");
    std::fs::write(&pol, "version: '1'\ndefault: allow\ntools_file: tools.yml\nrules: []\n").unwrap();
    let p = Policy::from_file(&pol).unwrap();
    let d = p.evaluate(&req(json!({"tool_name": "t", "tool_args": {}})), &NoFacts);
    assert_eq!(d.rule_name.as_deref(), Some("tool_schema"));
    std::fs::write(&pol, "version: '1'\ntools_file: missing.yml\nrules: []\n").unwrap();
    let err = Policy::from_file(&pol).unwrap_err();
    assert!(err.to_string().contains("missing.yml"), "{err}");
}

#[test]
fn file_tests_may_expect_builtin_rules() {
    let src = format!(
        "{POLICY}tests:\n  - call: {{tool_name: create_user, agent_id: support_bot, tool_args: {{username: al, profile: {{}}}}}}\n    expect: deny\n    rule: tool_schema\n"
    );
    let p = Policy::from_yaml(&src, "p.yml").unwrap();
    let out = p.run_tests();
    assert!(out.iter().all(|o| o.passed), "{out:?}");
}
