//! The audit chain across a server restart: a real `tame serve` records a
//! mix of allowed, denied and approval-gated calls and their results;
//! `tame audit verify` and `GET /api/v1/audit/verify` report the chain
//! intact; one row is edited directly in the SQLite database while the
//! server is stopped; after a restart both name the edited record.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code: a failed check panics with a message, which is how a test fails"
)]

use serde_json::{Value, json};
use tame_e2e::{Server, root, tame};

/// `tame audit verify` against `server`: exit code and stdout, human form
/// and `--json` form.
fn cli_verify(server: &Server) -> (i32, String, Value) {
    let human = tame()
        .args(["--api-url", &server.url, "audit", "verify"])
        .output()
        .expect("run tame audit verify");
    let json = tame()
        .args(["--api-url", &server.url, "--json", "audit", "verify"])
        .output()
        .expect("run tame audit verify --json");
    assert_eq!(
        human.status.code(),
        json.status.code(),
        "the exit code does not depend on --json"
    );
    let report: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!(
            "`tame --json audit verify` is not JSON ({e}): {}",
            String::from_utf8_lossy(&json.stdout)
        )
    });
    (
        human.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&human.stdout).into_owned(),
        report,
    )
}

fn api_verify(server: &Server) -> Value {
    let (status, report) = server.get("/api/v1/audit/verify");
    assert_eq!(status, 200, "{report}");
    report
}

fn result(server: &Server, decided: &Value, body: Value) {
    let path = format!(
        "/api/v1/enforce/{}/result?log_id={}",
        decided["session_id"].as_str().expect("session_id"),
        decided["log_id"].as_str().expect("log_id")
    );
    let (status, answer) = server.post(&path, &body);
    assert_eq!(status, 200, "{path}: {answer}");
    assert_eq!(answer["status"], "updated");
}

fn decide_approval(server: &Server, decided: &Value, verdict: &str) {
    let id = decided["approval_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval_id in {decided}"));
    let (status, answer) = server.post(
        &format!("/api/v1/approvals/{id}/{verdict}"),
        &json!({"by": "e2e", "reason": "test"}),
    );
    assert_eq!(status, 200, "{verdict} {id}: {answer}");
}

/// Re-sends an approval-gated call with its approval id.
fn release(server: &Server, call: &Value, decided: &Value) -> Value {
    let mut again = call.clone();
    again["session_id"] = decided["session_id"].clone();
    again["approval_id"] = decided["approval_id"].clone();
    server.enforce(&again)
}

#[test]
fn audit_chain_is_verified_by_cli_and_api_and_tampering_is_named_after_restart() {
    let policy = root().join("policies/example.yml");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("tame.db");
    let server = Server::start(&policy, &db);

    let session = json!("audit-e2e");
    let read =
        server.enforce(&json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/a.txt"}, "session_id": session}));
    assert_eq!(read["decision"], "allow");
    result(
        &server,
        &read,
        json!({"status": "success", "duration_ms": 3, "output": "hello"}),
    );

    let denied =
        server.enforce(&json!({"tool_name": "read_file", "tool_args": {"path": "/etc/hosts"}, "session_id": session}));
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["rule_name"], "block_system_files");

    let delete = json!({"tool_name": "delete_file", "tool_args": {"path": "/tmp/x"}, "session_id": session});
    let pending = server.enforce(&delete);
    assert_eq!(pending["decision"], "approve", "{pending}");
    decide_approval(&server, &pending, "approve");
    let released = release(&server, &delete, &pending);
    assert_eq!(released["decision"], "allow", "{released}");
    result(&server, &released, json!({"status": "success", "duration_ms": 12}));

    let write =
        json!({"tool_name": "query_database", "tool_args": {"database": "production", "query": "DELETE FROM t"}});
    let pending_write = server.enforce(&write);
    assert_eq!(pending_write["decision"], "approve", "{pending_write}");
    decide_approval(&server, &pending_write, "reject");
    let refused = release(&server, &write, &pending_write);
    assert_eq!(refused["decision"], "deny", "{refused}");

    let tmp = server.enforce(&json!({"tool_name": "write_file", "tool_args": {"path": "/tmp/out.txt", "content": "x"}, "session_id": session}));
    assert_eq!(tmp["decision"], "allow");
    result(
        &server,
        &tmp,
        json!({"status": "error", "error_message": "disk full", "duration_ms": 1}),
    );

    // Intact: both frontends say so, over the same records.
    let report = api_verify(&server);
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["first_problem"].is_null(), "{report}");
    let records = report["records"].as_u64().expect("records");
    // 7 decisions and 3 results at least (plus approvals, policy versions).
    assert!(records >= 10, "{report}");
    let (code, text, cli_report) = cli_verify(&server);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("audit chain intact"), "{text}");
    assert!(text.contains(&format!("{records} records")), "{text}");
    assert_eq!(
        cli_report, report,
        "tame --json audit verify prints the server's report"
    );
    server.stop();

    // Tamper: the denied read becomes an allowed one, directly in SQLite.
    let log_id = denied["log_id"].as_str().expect("log_id").to_string();
    let seq: i64 = {
        let conn = rusqlite::Connection::open(&db).expect("open the database");
        let seq: i64 = conn
            .query_row(
                "SELECT seq FROM audit WHERE ref_id = ?1 AND kind = 'decision'",
                [&log_id],
                |r| r.get(0),
            )
            .expect("the denied call's audit row");
        let changed = conn
            .execute(
                "UPDATE audit SET body = replace(body, '\"deny\"', '\"allow\"') WHERE seq = ?1",
                [seq],
            )
            .expect("edit the row");
        assert_eq!(changed, 1);
        let body: String = conn
            .query_row("SELECT body FROM audit WHERE seq = ?1", [seq], |r| r.get(0))
            .expect("body");
        assert!(
            body.contains("\"allow\"") && !body.contains("\"deny\""),
            "the edit took: {body}"
        );
        seq
    };

    let server = Server::start(&policy, &db);
    let report = api_verify(&server);
    assert_eq!(report["valid"], false, "{report}");
    let problem = &report["first_problem"];
    assert_eq!(problem["seq"], json!(seq), "{report}");
    assert_eq!(problem["ref_id"], json!(log_id), "{report}");
    assert_eq!(problem["kind"], "edited", "{report}");

    let (code, text, cli_report) = cli_verify(&server);
    assert_eq!(code, 1, "a broken chain fails the command: {text}");
    assert!(text.contains("audit chain broken"), "{text}");
    assert!(
        text.contains(&format!("record #{seq}")),
        "the CLI names the record: {text}"
    );
    assert!(text.contains(&log_id), "the CLI names the log id: {text}");
    assert_eq!(cli_report, report);
    server.stop();
}
