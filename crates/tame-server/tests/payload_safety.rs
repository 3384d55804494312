//! Payload safety through the router (`oneshot`): argument schemas and
//! agent binding on enforce, redacted arguments, the result endpoint's
//! contract filtering and session labels from scanned results.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tame_server::{AppState, Auth, Limits, LoadedPolicy};
use tame_store::{SqliteOptions, SqliteStore, Store};
use tower::ServiceExt;

const POLICY: &str = r#"
version: "ps1"
default: allow
payload: {secrets: redact}
tools:
  - name: create_user
    description: Create a user
    input_schema:
      type: object
      required: [username]
      properties:
        username: {type: string}
        profile: {type: object, properties: {age: {type: integer}}}
tool_contracts:
  send_email:
    allowed_request_tags: [personal.pii.email]
    allowed_response_fields: [status, message_id]
agents:
  support_bot: {allowed_tools: ["*"]}
  "*": {allowed_tools: ["read_*", "send_email"]}
rules:
  - name: no_email_after_secret
    action: deny
    tools: [send_email]
    condition: '"secret" in session.labels'
    reason: "a secret was read in this session"
"#;

struct H {
    state: AppState,
    _dir: tempfile::TempDir,
}

fn harness() -> H {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let loaded = LoadedPolicy {
        policy: tame_engine::Policy::from_yaml(POLICY, "policies.yml").unwrap(),
        source: POLICY.to_string(),
        origin: "policies.yml".into(),
        loaded_at: jiff::Timestamp::now(),
    };
    let state = AppState::new(loaded, None, store, Auth::default(), Limits::default());
    H { state, _dir: dir }
}

impl H {
    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = tame_server::app(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn schema_and_agent_binding_deny_before_rules() {
    let h = harness();
    let (s, j) = h
        .post(
            "/api/v1/enforce",
            json!({"tool_name": "create_user", "agent_id": "support_bot",
                   "tool_args": {"username": "al", "profile": {"age": "x"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j["decision"], "deny");
    assert_eq!(j["rule_name"], "tool_schema");
    assert!(j["reason"].as_str().unwrap().contains("$.profile.age"), "{j}");

    let (_, j) = h
        .post(
            "/api/v1/enforce",
            json!({"tool_name": "create_user", "agent_id": "stranger", "tool_args": {"username": "al"}}),
        )
        .await;
    assert_eq!(j["decision"], "deny");
    assert_eq!(j["rule_name"], "agent_binding");
}

#[tokio::test]
async fn redact_mode_returns_sanitized_args_and_logs_them() {
    let h = harness();
    let (_, j) = h
        .post(
            "/api/v1/enforce",
            json!({"tool_name": "read_config", "session_id": "r1",
                   "tool_args": {"path": "/app", "token": "AKIAIOSFODNN7EXAMPLE"}}),
        )
        .await;
    assert_eq!(j["decision"], "allow");
    assert_eq!(j["sanitized_args"]["token"], "[REDACTED:aws_access_key_id]");
    assert_eq!(j["sanitized_args"]["path"], "/app");
    let (_, clean) = h
        .post(
            "/api/v1/enforce",
            json!({"tool_name": "read_config", "session_id": "r1", "tool_args": {"path": "/app"}}),
        )
        .await;
    assert!(clean.get("sanitized_args").is_none(), "{clean}");
}

#[tokio::test]
async fn result_is_filtered_by_contract_and_labels_the_session() {
    let h = harness();
    let send = json!({"tool_name": "send_email", "session_id": "s1", "tool_args": {"to": "a@example.com"},
                      "metadata": {"data_tags": ["personal.pii.email"]}});
    let (_, j) = h.post("/api/v1/enforce", send.clone()).await;
    assert_eq!(j["decision"], "allow", "{j}");
    let log_id = j["log_id"].as_str().unwrap().to_string();
    let (s, r) = h
        .post(
            &format!("/api/v1/enforce/s1/result?log_id={log_id}"),
            json!({"status": "success", "result": {"status": "sent", "message_id": "m-1", "internal_trace_id": "x-9"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "updated");
    assert_eq!(r["safe_response"], json!({"status": "sent", "message_id": "m-1"}));
    assert_eq!(r["stripped_fields"], json!(["internal_trace_id"]));
    assert_eq!(r["labels"], json!([]));

    // A read reveals a secret: the session is labelled, and a later e-mail is denied.
    let (_, j) = h
        .post(
            "/api/v1/enforce",
            json!({"tool_name": "read_file", "session_id": "s1", "tool_args": {"path": "/k"}}),
        )
        .await;
    let read_id = j["log_id"].as_str().unwrap().to_string();
    let (s, r) = h
        .post(
            &format!("/api/v1/enforce/s1/result?log_id={read_id}"),
            json!({"status": "success", "result": {"content": "aws_key=AKIAIOSFODNN7EXAMPLE"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // No contract for read_file: the response comes back unchanged.
    assert_eq!(r["safe_response"], json!({"content": "aws_key=AKIAIOSFODNN7EXAMPLE"}));
    assert_eq!(r["stripped_fields"], json!([]));
    let labels: Vec<&str> = r["labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        labels.contains(&"secret") && labels.contains(&"secret.aws_access_key_id"),
        "{labels:?}"
    );
    let (_, j) = h.post("/api/v1/enforce", send.clone()).await;
    assert_eq!(j["decision"], "deny");
    assert_eq!(j["rule_name"], "no_email_after_secret");
    // Another session is not affected.
    let mut other = send;
    other["session_id"] = json!("s2");
    let (_, j) = h.post("/api/v1/enforce", other).await;
    assert_eq!(j["decision"], "allow");
}

#[tokio::test]
async fn disallowed_data_tags_are_denied_with_the_seed_reason() {
    let h = harness();
    let (_, j) = h
        .post(
            "/api/v1/enforce",
            json!({"tool_name": "send_email", "tool_args": {"to": "a@example.com"},
                   "metadata": {"data_tags": ["personal.financial"]}}),
        )
        .await;
    assert_eq!(j["decision"], "deny");
    assert_eq!(j["rule_name"], "tool_contract");
    assert_eq!(
        j["reason"],
        "Tag 'personal.financial' not in allowed_request_tags for send_email"
    );
}
