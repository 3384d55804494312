//! The HTTP API through the router (no socket) with the store in
//! PostgreSQL: decisions and results, session facts read back after the
//! store is reopened, the approval life cycle, and tamper checks. Run with
//! `scripts/pg-test.sh` (a fresh database per test from
//! `TAME_TEST_DATABASE_URL`; skipped with a message when it is unset, a
//! failure when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

mod pg {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use serde_json::json;
    use tame_server::{Auth, Limits};
    use tame_store::testing::{TEST_DATABASE_URL, TestDbError, execute, fresh_database};
    use tame_store::{PgOptions, PgStore, Store};

    use super::common::{Harness, harness_on};

    /// A fresh database, or `None` (after saying so) outside CI without a server.
    fn database(label: &str) -> Option<String> {
        match fresh_database(label) {
            Ok(url) => Some(url),
            Err(TestDbError::NotConfigured) => {
                eprintln!("skipped: {TEST_DATABASE_URL} is not set (run scripts/pg-test.sh)");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn harness(url: &str) -> Harness {
        // Opened from inside the test's runtime, as the server does.
        let store = PgStore::open(url, PgOptions::new(b"pg-api-test-secret-0123".to_vec())).unwrap();
        harness_on(
            tempfile::tempdir().unwrap(),
            Arc::new(store) as Arc<dyn Store>,
            Auth::default(),
            Limits::default(),
        )
    }

    #[tokio::test]
    async fn decisions_results_and_sessions() {
        let Some(url) = database("api_decisions") else { return };
        let h = harness(&url);
        let allowed = h
            .enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/a"}, "session_id": "s1", "agent_id": "a1"}))
            .await;
        assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text);
        assert_eq!(allowed.json["decision"], "allow");
        let denied = h
            .enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}, "session_id": "s1"}))
            .await;
        assert_eq!(denied.json["decision"], "deny");
        assert_eq!(denied.json["rule_name"], "block_etc");

        let log_id = allowed.json["log_id"].as_str().unwrap();
        let result = h
            .post(
                &format!("/api/v1/enforce/s1/result?log_id={log_id}"),
                json!({"status": "success", "duration_ms": 3.5}),
            )
            .await;
        assert_eq!(result.status, StatusCode::OK, "{}", result.text);
        let foreign = h
            .post(
                &format!("/api/v1/enforce/s2/result?log_id={log_id}"),
                json!({"status": "success"}),
            )
            .await;
        assert_eq!(foreign.status, StatusCode::FORBIDDEN);
        let unknown = h
            .post("/api/v1/enforce/s1/result?log_id=nope", json!({"status": "success"}))
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);

        let log = h.get("/api/v1/sessions/s1").await;
        assert_eq!(log.status, StatusCode::OK);
        assert_eq!(log.json.as_array().unwrap().len(), 2);
        assert_eq!(log.json[0]["execution_status"], "success");
        assert_eq!(log.json[0]["execution_duration_ms"], 3.5);
        let summary = h.get("/api/v1/sessions/s1/summary").await;
        assert_eq!(summary.json["total_calls"], 2);
        assert_eq!(summary.json["denied_calls"], 1);
        assert_eq!(summary.json["agent_id"], "a1");
        let list = h.get("/api/v1/sessions?agent_id=a1").await;
        assert_eq!(list.json["total_count"], 1);
        assert_eq!(h.get("/api/v1/sessions/nope").await.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn session_facts_come_back_from_the_log_after_a_restart() {
        let Some(url) = database("api_facts") else { return };
        let send = json!({"tool_name": "send_email", "tool_args": {"to": "a@b.c"}, "session_id": "s"});
        {
            let h = harness(&url);
            assert_eq!(h.enforce(send.clone()).await.json["decision"], "allow");
            assert_eq!(h.enforce(send.clone()).await.json["decision"], "allow");
            let secret = json!({"tool_name": "read_secret", "session_id": "flow"});
            assert_eq!(h.enforce(secret).await.json["decision"], "allow");
        }
        // A new server on the same database: the counts and the flow come
        // from the stored log.
        let h = harness(&url);
        let third = h.enforce(send).await;
        assert_eq!(third.json["decision"], "deny", "{}", third.text);
        assert_eq!(third.json["rule_name"], "rate_limit_email");
        let post = h.enforce(json!({"tool_name": "http_post", "session_id": "flow"})).await;
        assert_eq!(post.json["rule_name"], "no_post_after_secret");
    }

    #[tokio::test]
    async fn an_approval_survives_a_restart_and_releases_its_call_once() {
        let Some(url) = database("api_approvals") else { return };
        let call = json!({"tool_name": "query_database", "tool_args": {"database": "production", "query": "drop table x"}, "session_id": "s"});
        let id = {
            let h = harness(&url);
            let r = h.enforce(call.clone()).await;
            assert_eq!(r.json["decision"], "approve");
            r.json["approval_id"].as_str().unwrap().to_string()
        };
        let h = harness(&url);
        let pending = h.get("/api/v1/approvals").await;
        assert_eq!(pending.json["total_count"], 1);
        assert_eq!(pending.json["approvals"][0]["approval_id"], id);
        assert_eq!(pending.json["approvals"][0]["state"], "pending");

        let mut release = call.clone();
        release["approval_id"] = json!(id);
        assert_eq!(h.enforce(release.clone()).await.status, StatusCode::CONFLICT);
        let approved = h
            .post(
                &format!("/api/v1/approvals/{id}/approve"),
                json!({"by": "alice", "reason": "ok"}),
            )
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
        let mut other = release.clone();
        other["tool_args"]["query"] = json!("drop table y");
        assert_eq!(h.enforce(other).await.status, StatusCode::FORBIDDEN);
        let released = h.enforce(release.clone()).await;
        assert_eq!(released.json["decision"], "allow", "{}", released.text);
        assert_eq!(h.enforce(release).await.status, StatusCode::CONFLICT);
        let one = h.get(&format!("/api/v1/approvals/{id}")).await;
        assert_eq!(one.json["released_log_id"], released.json["log_id"]);
        assert_eq!(h.get("/api/v1/audit/verify").await.json["valid"], true);
    }

    #[tokio::test]
    async fn verify_names_an_edited_and_a_deleted_record() {
        let Some(url) = database("api_verify") else { return };
        let h = harness(&url);
        let mut ids = Vec::new();
        for i in 0..4 {
            let r = h
                .enforce(
                    json!({"tool_name": "read_file", "tool_args": {"path": format!("/tmp/{i}")}, "session_id": "s"}),
                )
                .await;
            ids.push(r.json["log_id"].as_str().unwrap().to_string());
        }
        let edited = execute(
            &url,
            "UPDATE audit SET body = replace(body, '/tmp/1', '/tmp/X') WHERE seq = 2",
        )
        .unwrap();
        assert_eq!(edited, 1);
        let v = h.get("/api/v1/audit/verify").await;
        assert_eq!(v.json["valid"], false);
        assert_eq!(v.json["first_problem"]["kind"], "edited");
        assert_eq!(v.json["first_problem"]["seq"], 2);
        assert_eq!(v.json["first_problem"]["ref_id"], ids[1]);
        execute(
            &url,
            "UPDATE audit SET body = replace(body, '/tmp/X', '/tmp/1') WHERE seq = 2",
        )
        .unwrap();
        assert_eq!(h.get("/api/v1/audit/verify").await.json["valid"], true);
        execute(&url, "DELETE FROM audit WHERE seq = 4").unwrap();
        let v = h.get("/api/v1/audit/verify").await;
        assert_eq!(v.json["first_problem"]["kind"], "truncated");
        assert_eq!(v.json["first_problem"]["seq"], 4);
        execute(&url, "DELETE FROM audit WHERE seq = 2").unwrap();
        let v = h.get("/api/v1/audit/verify").await;
        assert_eq!(v.json["first_problem"]["kind"], "missing");
        assert_eq!(v.json["first_problem"]["seq"], 2);
        let export = h.get("/api/v1/audit/export").await;
        assert_eq!(export.status, StatusCode::OK);
        assert_eq!(export.text.lines().count(), 2);
    }

    /// A session another server recorded to (as far as this server can
    /// tell: the stored version moved on) is decided again on the session
    /// as stored, not refused and not decided on the stale state; a fresh
    /// read of the session holds the stored version.
    #[tokio::test]
    async fn a_call_on_a_session_that_moved_on_is_decided_again() {
        let Some(url) = database("api_moved") else { return };
        let h = harness(&url);
        let call = json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/a"}, "session_id": "s1"});
        assert_eq!(h.enforce(call.clone()).await.json["decision"], "allow");
        let bumped = execute(
            &url,
            "UPDATE sessions SET version = version + 1 WHERE session_id = 's1'",
        )
        .unwrap();
        assert_eq!(bumped, 1);
        let again = h.enforce(call.clone()).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        assert_eq!(again.json["decision"], "allow");
        // Decided on the session read back: version 2 stored, plus this call.
        let store = h.state.store();
        assert_eq!(store.cached_session_facts("s1").unwrap().lock().version(), 3);
        assert_eq!(h.get("/api/v1/sessions/s1").await.json.as_array().unwrap().len(), 2);
    }

    /// The database going away: calls are answered 503 (never allowed,
    /// nothing recorded) while it is gone, and the server recovers on its
    /// own when it comes back; every answered decision is stored.
    #[tokio::test]
    async fn calls_get_503_while_the_database_is_gone_and_recover() {
        let Some(url) = database("api_db_gone") else { return };
        let h = harness(&url);
        let call =
            |i: u32| json!({"tool_name": "read_file", "tool_args": {"path": format!("/tmp/{i}")}, "session_id": "s1"});
        assert_eq!(h.enforce(call(0)).await.json["decision"], "allow");
        let name: String = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
        let admin_before = std::env::var(tame_store::testing::TEST_DATABASE_URL).unwrap();
        execute(
            &admin_before,
            &format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"),
        )
        .unwrap();
        execute(
            &admin_before,
            &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
        )
        .unwrap();
        let mut answered = 1;
        for i in 1..4u32 {
            let r = h.enforce(call(i)).await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
            assert_eq!(r.json["error"], "store_unavailable", "{}", r.text);
            assert!(r.json.get("decision").is_none(), "{}", r.text);
        }
        // Back: the next calls are decided and stored, without a restart.
        // Through the server's own database: this one refuses connections.
        let admin = std::env::var(tame_store::testing::TEST_DATABASE_URL).unwrap();
        execute(
            &admin,
            &format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"),
        )
        .unwrap();
        let mut recovered = false;
        for i in 10..60 {
            let r = h.enforce(call(i)).await;
            if r.status == StatusCode::OK {
                assert_eq!(r.json["decision"], "allow");
                answered += 1;
                recovered = true;
                break;
            }
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(recovered, "the server did not recover");
        let log = h.get("/api/v1/sessions/s1").await;
        assert_eq!(log.json.as_array().map(Vec::len), Some(answered), "{}", log.text);
        assert_eq!(h.get("/api/v1/audit/verify").await.json["valid"], true);
    }
}
