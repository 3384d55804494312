//! A call's life cycle through [`MemoryStore`]: session state, the
//! counts-as-run rule, approvals created, decided, released once, and
//! redaction before storage.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed check panics with a message, which is how a test fails"
)]

use std::time::Duration;

use serde_json::{Value, json};
use tame_enforce::{
    Action, ApprovalDecision, ApprovalState, Call, EnforceError, Enforcer, MemoryStore, Refusal, SessionState,
};
use tame_engine::Policy;

const POLICY: &str = r#"
version: "t1"
rules:
  - name: no_etc
    action: deny
    tools: ["read_file"]
    condition: 'args.path.startsWith("/etc/")'
    reason: "no system files ({args.path})"
  - name: two_emails
    action: deny
    tools: ["send_email"]
    condition: 'session.count("send_email", duration("1h")) >= 2'
  - name: prod_needs_ok
    action: approve
    tools: ["query_db"]
  - name: login_reason
    action: deny
    tools: ["login"]
    reason: "no logins with {args.password}"
  - name: rest
    action: allow
"#;

fn policy() -> Policy {
    Policy::from_yaml(POLICY, "t.yml").unwrap()
}

fn call(body: Value) -> Call {
    Call::from_json(body).unwrap()
}

#[test]
fn only_calls_that_ran_count_toward_a_rate_limit() {
    let p = policy();
    let e = Enforcer::with_policy(&p);
    let store = MemoryStore::new();
    let email = || call(json!({"tool_name": "send_email", "tool_args": {"to": "a@b.c"}, "session_id": "s"}));
    let decisions: Vec<Action> = (0..4)
        .map(|_| store.enforce(&e, email()).unwrap().decision.action)
        .collect();
    assert_eq!(decisions, [Action::Allow, Action::Allow, Action::Deny, Action::Deny]);
    let state = store.session("s").unwrap();
    let state = state.lock();
    // Denied attempts stay in the history but did not run.
    assert_eq!(state.history().len(), 4);
    assert_eq!(state.calls(), 2);
}

#[test]
fn an_approval_releases_its_call_once() {
    let p = policy();
    let e = Enforcer::new(&p, tame_enforce::Redactor::unkeyed(), Duration::from_secs(60));
    let store = MemoryStore::new();
    let body = json!({"tool_name": "query_db", "tool_args": {"q": "drop"}, "session_id": "s"});
    let asked = store.enforce(&e, call(body.clone())).unwrap();
    assert_eq!(asked.decision.action, Action::Approve);
    let id = asked.approval_id().unwrap().to_owned();
    assert_eq!(store.session("s").unwrap().lock().calls(), 0);

    let mut again = body.clone();
    again["approval_id"] = json!(id);
    // Still pending: refused, nothing recorded.
    let err = store.enforce(&e, call(again.clone())).unwrap_err();
    assert!(
        matches!(err, EnforceError::Refused(Refusal::ApprovalPending { .. })),
        "{err}"
    );
    // Another call cannot use it.
    let mut other = again.clone();
    other["tool_args"] = json!({"q": "select"});
    let err = store.enforce(&e, call(other)).unwrap_err();
    assert!(
        matches!(err, EnforceError::Refused(Refusal::ApprovalMismatch(_))),
        "{err}"
    );

    store
        .decide_approval(ApprovalDecision {
            id: id.clone(),
            approve: true,
            by: Some("alice".into()),
            reason: Some("ok".into()),
            at: jiff::Timestamp::now(),
        })
        .unwrap();
    let released = store.enforce(&e, call(again.clone())).unwrap();
    assert_eq!(released.decision.action, Action::Allow);
    assert_eq!(
        &*released.decision.reason,
        format!("approved by alice: ok (approval {id})")
    );
    assert!(released.step.released);
    assert_eq!(store.session("s").unwrap().lock().calls(), 1);
    assert_eq!(
        store
            .approval(&id, jiff::Timestamp::now())
            .unwrap()
            .released_log_id
            .as_deref(),
        Some(released.log_id.as_str())
    );
    // Used up.
    let err = store.enforce(&e, call(again)).unwrap_err();
    assert!(matches!(err, EnforceError::Refused(Refusal::ApprovalUsed(_))), "{err}");
    assert_eq!(store.session("s").unwrap().lock().calls(), 1);
}

#[test]
fn a_rejected_approval_denies_and_an_unknown_one_is_refused() {
    let p = policy();
    let e = Enforcer::with_policy(&p);
    let store = MemoryStore::new();
    let body = json!({"tool_name": "query_db", "tool_args": {}, "session_id": "s"});
    let id = store
        .enforce(&e, call(body.clone()))
        .unwrap()
        .approval_id()
        .unwrap()
        .to_owned();
    store
        .decide_approval(ApprovalDecision {
            id: id.clone(),
            approve: false,
            by: None,
            reason: Some("no".into()),
            at: jiff::Timestamp::now(),
        })
        .unwrap();
    let mut again = body;
    again["approval_id"] = json!(id);
    let out = store.enforce(&e, call(again.clone())).unwrap();
    assert_eq!(out.decision.action, Action::Deny);
    assert_eq!(&*out.decision.reason, format!("approval {id} was rejected: no"));
    again["approval_id"] = json!("nope");
    assert!(matches!(
        store.enforce(&e, call(again)).unwrap_err(),
        EnforceError::Refused(Refusal::ApprovalNotFound(_))
    ));
    // A second verdict is refused.
    assert!(
        store
            .decide_approval(ApprovalDecision {
                id,
                approve: true,
                by: None,
                reason: None,
                at: jiff::Timestamp::now(),
            })
            .is_err()
    );
}

#[test]
fn an_unused_approval_expires() {
    let p = policy();
    let e = Enforcer::new(&p, tame_enforce::Redactor::unkeyed(), Duration::from_millis(1));
    let store = MemoryStore::new();
    let out = store
        .enforce(&e, call(json!({"tool_name": "query_db", "session_id": "s"})))
        .unwrap();
    let id = out.approval_id().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let now = jiff::Timestamp::now();
    assert_eq!(store.approval(id, now).unwrap().state, ApprovalState::Expired);
    assert_eq!(store.approvals(Some(ApprovalState::Pending), now).len(), 0);
}

#[test]
fn secrets_are_redacted_before_storage_but_not_in_the_answer() {
    let token = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
    let p = policy();
    let e = Enforcer::with_policy(&p);
    let store = MemoryStore::new();
    let out = store
        .enforce(
            &e,
            call(
                json!({"tool_name": "read_file", "tool_args": {"path": format!("/etc/{token}")},
                "session_id": format!("s.{token}"), "metadata": {"k": token}}),
            ),
        )
        .unwrap();
    assert_eq!(out.decision.rule_name.as_deref(), Some("no_etc"));
    assert!(out.decision.reason.contains(token));
    assert_eq!(out.session_id, format!("s.{token}"));
    let stored = serde_json::to_string(&store.log()).unwrap();
    assert!(!stored.contains(token), "{stored}");
    assert!(!out.record.session_id.contains(token));
    assert!(!out.record.reason.contains(token), "{}", out.record.reason);
    // The session's state is kept under the stored id, found again.
    let again = store
        .enforce(
            &e,
            call(json!({"tool_name": "send_email", "session_id": format!("s.{token}")})),
        )
        .unwrap();
    assert_eq!(again.record.session_id, out.record.session_id);
    assert_eq!(store.session_ids().len(), 1);
}

#[test]
fn results_label_the_session_and_must_belong_to_it() {
    let p = Policy::from_yaml(
        r#"
rules:
  - name: no_send_after_secret
    action: deny
    tools: ["send"]
    condition: '"secret" in session.labels'
  - name: rest
    action: allow
"#,
        "l.yml",
    )
    .unwrap();
    let e = Enforcer::with_policy(&p);
    let store = MemoryStore::new();
    let read = store
        .enforce(&e, call(json!({"tool_name": "read", "session_id": "s"})))
        .unwrap();
    let token = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
    let err = store
        .record_result(&e, "other", &read.log_id, json!({"status": "success"}))
        .unwrap_err();
    assert!(err.to_string().contains("another session"), "{err}");
    let out = store
        .record_result(
            &e,
            "s",
            &read.log_id,
            json!({"status": "success", "result": {"t": token}}),
        )
        .unwrap();
    assert!(out.labels.iter().any(|l| l == "secret"), "{:?}", out.labels);
    let entry = store.log_entry(&read.log_id).unwrap();
    assert_eq!(entry.execution_status.as_deref(), Some("success"));
    assert!(!serde_json::to_string(&entry).unwrap().contains(token));
    let send = store
        .enforce(&e, call(json!({"tool_name": "send", "session_id": "s"})))
        .unwrap();
    assert_eq!(send.decision.rule_name.as_deref(), Some("no_send_after_secret"));
    let err = store
        .record_result(&e, "s", &read.log_id, json!({"status": 5}))
        .unwrap_err();
    assert_eq!(err.to_string(), "status: wrong type");
}

#[test]
fn seeded_sessions_start_from_fixed_facts() {
    let p = policy();
    let e = Enforcer::with_policy(&p);
    let store = MemoryStore::new();
    store.seed_session(
        "s",
        SessionState::from_json(&json!({"counts": {"send_email": 2}})).unwrap(),
    );
    let out = store
        .enforce(&e, call(json!({"tool_name": "send_email", "session_id": "s"})))
        .unwrap();
    assert_eq!(out.decision.rule_name.as_deref(), Some("two_emails"));
}
