//! Secrets in what a call carries besides its arguments (the session, agent
//! and user ids, the tool's name, a reason quoting the arguments, a result,
//! an approval's reason and approver) reach neither the database files nor
//! the logs in clear; the session facts still count a secret-bearing
//! session, across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use common::Harness;
use serde_json::{Value, json};
use tame_server::{AppState, Auth, Limits};
use tame_store::{SqliteOptions, SqliteStore};

/// `ghp_` and 36 alphanumerics: the scanner's `github_token`.
const BODY: &str = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
/// A password the scanner finds only by its member's name.
const PASSWORD: &str = "Zq8#kL2!pW9xR4";
const KEY: &[u8] = b"test audit secret, 32 bytes long";

fn token() -> String {
    format!("ghp_{BODY}")
}

/// The harness's policy and a rule whose reason quotes a password.
fn policy() -> String {
    format!(
        "{}{}",
        common::POLICY,
        r#"  - name: no_logins
    action: deny
    tools: ["login"]
    condition: 'true'
    reason: "no logins as {args.user} with {args.password}"
"#
    )
}

fn state_on(db: &Path) -> AppState {
    let store = SqliteStore::open(db, SqliteOptions::default()).unwrap();
    let state = common::state_with(&policy(), None, Arc::new(store), Auth::default(), Limits::default());
    state.set_redaction_key(KEY).unwrap();
    state
}

/// Every log line of this test binary, at every level.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The files of `dir` (the database, its WAL and shared memory) whose bytes
/// hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test]
async fn secrets_in_ids_reasons_results_and_approvals_are_not_stored_or_logged() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tame.db");
    let h = Harness {
        state: state_on(&db),
        dir: tempfile::tempdir().unwrap(),
    };
    let token = token();
    let session = format!("sess.{token}");
    let ids = json!({"session_id": session, "agent_id": format!("agent:{token}"), "user_id": format!("user {token}")});
    let with_ids = |call: Value| {
        let mut call = call;
        for (k, v) in ids.as_object().unwrap() {
            call[k] = v.clone();
        }
        call
    };

    // The reason quotes the path; the answer keeps what the client sent.
    let read = h
        .enforce(with_ids(
            json!({"tool_name": "read_file", "tool_args": {"path": format!("/etc/{token}")}}),
        ))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.json["decision"], "deny");
    assert_eq!(read.json["session_id"], session.as_str());
    assert_eq!(
        read.json["reason"],
        format!("System paths are off limits (/etc/{token})")
    );

    // A secret the scanner knows by its member's name, quoted by a reason.
    let login = h
        .enforce(with_ids(
            json!({"tool_name": "login", "tool_args": {"user": "bob", "password": PASSWORD}}),
        ))
        .await;
    assert_eq!(login.json["decision"], "deny", "{}", login.text);

    // A secret in the tool's name.
    let tool = format!("tool.{token}");
    let odd = h.enforce(with_ids(json!({"tool_name": tool, "tool_args": {}}))).await;
    assert_eq!(odd.json["decision"], "deny", "{}", odd.text);

    // A result carrying one, reported under the session id the client knows.
    let log_id = read.json["log_id"].as_str().unwrap();
    let result = h
        .post(
            &format!("/api/v1/enforce/{session}/result?log_id={log_id}"),
            json!({"status": "error", "error_message": format!("401 for {token}"), "result": {"echo": token}}),
        )
        .await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.text);

    // An approval decided with a reason and an approver carrying one, then
    // the call released (its reason quotes the approver).
    let query = with_ids(json!({"tool_name": "query_database", "tool_args": {"database": "production"}}));
    let pending = h.enforce(query.clone()).await;
    let approval_id = pending.json["approval_id"].as_str().unwrap().to_string();
    let approved = h
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            json!({"reason": format!("rotated {token}"), "by": format!("admin {token}")}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    let mut release = query;
    release["approval_id"] = json!(approval_id);
    let released = h.enforce(release).await;
    assert_eq!(released.json["decision"], "allow", "{}", released.text);

    // Two e-mails: the session's facts count them under its stored id.
    let email = with_ids(json!({"tool_name": "send_email", "tool_args": {"to": "a@b.example"}}));
    for _ in 0..2 {
        assert_eq!(h.enforce(email.clone()).await.json["decision"], "allow");
    }
    assert_eq!(h.enforce(email.clone()).await.json["decision"], "deny");

    // The API finds the session by the id the client knows, and shows the
    // stored one.
    let log = h.get(&format!("/api/v1/sessions/{session}")).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let stored = log.json[0]["session_id"].as_str().unwrap().to_string();
    assert!(stored.starts_with("sess.[REDACTED:github_token:"), "{stored}");
    assert!(!log.text.contains(BODY), "{}", log.text);
    assert!(!log.text.contains(PASSWORD), "{}", log.text);
    let summary = h.get(&format!("/api/v1/sessions/{session}/summary")).await;
    assert_eq!(summary.status, StatusCode::OK, "{}", summary.text);
    let listed = h.get(&format!("/api/v1/sessions?agent_id=agent:{token}")).await;
    assert_eq!(listed.json["total_count"], 1, "{}", listed.text);

    // The database, its WAL and shared memory: while the store is open
    // (the WAL holds the records) and after it closed.
    h.state.store().flush().await.unwrap();
    let wal = dir.path().join("tame.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "no WAL to search");
    for needle in [BODY, PASSWORD] {
        assert_eq!(
            files_holding(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} stored in clear"
        );
    }
    drop(h);
    for needle in [BODY, PASSWORD] {
        assert_eq!(
            files_holding(dir.path(), needle),
            Vec::<String>::new(),
            "{needle} stored in clear"
        );
    }
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logged.contains("uri=/api/v1/enforce "),
        "the logs were not captured: {logged}"
    );
    // The result's target holds the session id.
    assert!(logged.contains("[REDACTED: the target holds a secret]"), "{logged}");
    assert!(!logged.contains(BODY), "a secret was logged: {logged}");

    // After a restart the facts are read back under the same stored id:
    // the limit still holds.
    let h = Harness {
        state: state_on(&db),
        dir: tempfile::tempdir().unwrap(),
    };
    let again = h.enforce(email).await;
    assert_eq!(again.json["decision"], "deny", "{}", again.text);
    assert_eq!(again.json["rule_name"], "rate_limit_email");
    let verify = h.get("/api/v1/audit/verify").await;
    assert_eq!(verify.json["valid"], true, "{}", verify.text);
}
