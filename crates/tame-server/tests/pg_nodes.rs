//! Two servers on one PostgreSQL database, through their routers (no
//! socket): a session's limit holds exactly when its calls are spread over
//! both at once, and each server's decisions are in its own chain of one
//! log that both verify. Run with `scripts/pg-test.sh` (skipped with a
//! message without a database, a failure when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

mod pg {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    use tame_server::{AppState, Auth, Limits};
    use tame_store::testing::database_or_skip;
    use tame_store::{PgOptions, PgStore, Store};

    use super::common::{POLICY, enforce_on, send, state_with};

    fn server(url: &str, node: &str) -> AppState {
        let options = PgOptions {
            node: Some(node.to_string()),
            ..PgOptions::new(b"pg-nodes-test-secret-0123".to_vec())
        };
        let store = Arc::new(PgStore::open(url, options).unwrap()) as Arc<dyn Store>;
        state_with(POLICY, None, store, Auth::default(), Limits::default())
    }

    async fn enforce(state: AppState, body: Value) -> (StatusCode, Value) {
        let reply = enforce_on(&state, &body).await;
        (reply.status, reply.json)
    }

    /// The test policy allows two `send_email` per session and hour. Twenty
    /// calls of one session, sent at once, half to each server: exactly two
    /// are allowed, whatever the interleaving; every answered call is
    /// stored; a call refused because the other server kept moving the
    /// session on is a 503, never an allow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_session_limit_holds_across_two_servers() {
        let Some(url) = database_or_skip("nodes_limit").unwrap() else {
            return;
        };
        let (a, b) = (server(&url, "node-a"), server(&url, "node-b"));
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..20 {
            let state = if i % 2 == 0 { a.clone() } else { b.clone() };
            let body =
                json!({"tool_name": "send_email", "tool_args": {"to": format!("x{i}@example.com")}, "session_id": "s"});
            calls.spawn(enforce(state, body));
        }
        let (mut allowed, mut denied, mut busy) = (0, 0, 0);
        while let Some(answer) = calls.join_next().await {
            let (status, body) = answer.unwrap();
            match (status, body["decision"].as_str()) {
                (StatusCode::OK, Some("allow")) => allowed += 1,
                (StatusCode::OK, Some("deny")) => {
                    assert_eq!(body["rule_name"], "rate_limit_email", "{body}");
                    denied += 1;
                }
                (StatusCode::SERVICE_UNAVAILABLE, None) => {
                    assert_eq!(body["error"], "session_busy", "{body}");
                    busy += 1;
                }
                other => panic!("unexpected answer {other:?}: {body}"),
            }
        }
        assert_eq!(allowed, 2, "allowed {allowed}, denied {denied}, busy {busy}");
        assert_eq!(allowed + denied + busy, 20);
        // Every answered decision is stored, once, in the session's log.
        let req = Request::builder()
            .uri("/api/v1/sessions/s")
            .body(Body::empty())
            .unwrap();
        let log = send(&b, req).await;
        let entries = log.json.as_array().unwrap();
        assert_eq!(entries.len(), allowed + denied, "{}", log.text);
        let stored_allows = entries.iter().filter(|e| e["policy_decision"] == "allow").count();
        assert_eq!(stored_allows, 2);
        // One log, two chains, both servers verify it.
        for state in [&a, &b] {
            let req = Request::builder()
                .uri("/api/v1/audit/verify")
                .body(Body::empty())
                .unwrap();
            let v = send(state, req).await;
            assert_eq!(v.json["valid"], true, "{}", v.text);
            assert_eq!(v.json["records"], json!(allowed + denied), "{}", v.text);
        }
    }

    /// The same calls one after another, alternating between the servers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_session_limit_holds_across_two_servers_in_turn() {
        let Some(url) = database_or_skip("nodes_turns").unwrap() else {
            return;
        };
        let (a, b) = (server(&url, "node-a"), server(&url, "node-b"));
        let mut decisions = Vec::new();
        for i in 0..6 {
            let state = if i % 2 == 0 { a.clone() } else { b.clone() };
            let body =
                json!({"tool_name": "send_email", "tool_args": {"to": format!("x{i}@example.com")}, "session_id": "s"});
            let (status, body) = enforce(state, body).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            decisions.push(body["decision"].as_str().unwrap().to_owned());
        }
        assert_eq!(decisions, ["allow", "allow", "deny", "deny", "deny", "deny"]);
    }

    async fn call(state: &AppState, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let reply = send(state, req.body(body).unwrap()).await;
        (reply.status, reply.json)
    }

    /// An approval made on one server is listed on the other, waited on at
    /// the other (woken when it is decided on the first, well before the
    /// wait's timeout: the store's notifications, not polling), released
    /// through the other, and released once only across both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_approval_is_shared_by_two_servers() {
        let Some(url) = database_or_skip("nodes_approvals").unwrap() else {
            return;
        };
        let (a, b) = (server(&url, "node-a"), server(&url, "node-b"));
        let request =
            json!({"tool_name": "query_database", "tool_args": {"database": "production"}, "session_id": "s"});
        let (_, made) = enforce(a.clone(), request.clone()).await;
        assert_eq!(made["decision"], "approve", "{made}");
        let id = made["approval_id"].as_str().unwrap().to_owned();
        let (_, listed) = call(&b, "GET", "/api/v1/approvals", None).await;
        assert_eq!(listed["approvals"][0]["approval_id"], id.as_str(), "{listed}");
        // Waiting on `b` for 30 s; decided on `a`.
        let waiter = {
            let (b, id) = (b.clone(), id.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let answer = call(&b, "GET", &format!("/api/v1/approvals/{id}/wait?timeout=30"), None).await;
                (answer, started.elapsed())
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (status, decided) = call(
            &a,
            "POST",
            &format!("/api/v1/approvals/{id}/approve"),
            Some(json!({"reason": "ok"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{decided}");
        let ((status, waited), took) = waiter.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{waited}");
        assert_eq!(waited["state"], "approved", "{waited}");
        assert!(
            took < std::time::Duration::from_secs(10),
            "the waiter was not woken: {took:?}"
        );
        // Released through `b`, once; `a` cannot release it again.
        let mut release = request.clone();
        release["approval_id"] = json!(id);
        let (_, released) = enforce(b.clone(), release.clone()).await;
        assert_eq!(released["decision"], "allow", "{released}");
        let (status, again) = enforce(a.clone(), release).await;
        assert_eq!(status, StatusCode::CONFLICT, "{again}");
    }

    /// A policy reloaded on one server is served by the other within 2 s;
    /// a broken one is refused by the server it is sent to, and the other
    /// keeps serving the last good one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_reload_on_one_server_reaches_the_other() {
        let Some(url) = database_or_skip("nodes_policy").unwrap() else {
            return;
        };
        let (a, b) = (server(&url, "node-a"), server(&url, "node-b"));
        let follower = tokio::spawn(b.clone().follow_stored_policies());
        let read = json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/a"}, "session_id": "p"});
        assert_eq!(enforce(b.clone(), read.clone()).await.1["decision"], "allow");
        let stricter = POLICY.replace("version: \"t1\"", "version: \"t2\"").replace(
            "rules:\n",
            "rules:\n  - name: no_reads\n    action: deny\n    tools: [\"read_file\"]\n",
        );
        assert_ne!(stricter, POLICY);
        let (status, reloaded) = call(
            &a,
            "POST",
            "/api/v1/policy/reload",
            Some(json!({"policy_content": stricter})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{reloaded}");
        let started = std::time::Instant::now();
        let mut seen = None;
        while started.elapsed() < std::time::Duration::from_secs(2) {
            let (_, d) = enforce(b.clone(), read.clone()).await;
            if d["rule_name"] == "no_reads" {
                seen = Some(started.elapsed());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            seen.is_some(),
            "the other server did not serve the new policy within 2 s"
        );
        let (_, current) = call(&b, "GET", "/api/v1/policy/current", None).await;
        assert_eq!(current["version"], "t2", "{current}");
        // A broken policy: refused on `a`, never stored, `b` unchanged.
        let (status, _) = call(
            &a,
            "POST",
            "/api/v1/policy/reload",
            Some(json!({"policy_content": "rules: [oops"})),
        )
        .await;
        assert!(status.is_client_error(), "{status}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (_, current) = call(&b, "GET", "/api/v1/policy/current", None).await;
        assert_eq!(current["version"], "t2", "{current}");
        follower.abort();
    }

    /// A policy version written into the database by someone else (a row
    /// whose source lifts a deny rule, pointing at a real `policy_loaded`
    /// record, then announced) is not served by any server: the row does
    /// not match the record the chain keeps.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_policy_row_forged_in_the_database_is_not_adopted() {
        let Some(url) = database_or_skip("nodes_forged_policy").unwrap() else {
            return;
        };
        let (a, b) = (server(&url, "node-a"), server(&url, "node-b"));
        // The version the tests' servers share, stored as a server does.
        a.record_version(&a.policy()).await;
        let follower = tokio::spawn(b.clone().follow_stored_policies());
        let secret = json!({"tool_name": "read_file", "tool_args": {"path": "/etc/shadow"}, "session_id": "f"});
        assert_eq!(enforce(b.clone(), secret.clone()).await.1["rule_name"], "block_etc");
        let lifted = POLICY
            .replace("version: \"t1\"", "version: \"evil\"")
            .replace("condition: 'args.path.startsWith(\"/etc/\")'", "condition: 'false'");
        assert_ne!(lifted, POLICY);
        let sql = "INSERT INTO policy_versions(seq, version, hash, origin, loaded_at, source)
             SELECT seq, 'evil', encode(sha256(convert_to($1, 'UTF8')), 'hex'), 'policies.yml', ts, $1
               FROM audit WHERE kind = 'policy_loaded' ORDER BY seq DESC LIMIT 1";
        let inserted = tame_store::testing::execute_with(&url, sql, &lifted).unwrap();
        assert_eq!(inserted, 1);
        tame_store::testing::execute(&url, "SELECT pg_notify('tame_policy', 'forged')").unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        assert_eq!(enforce(b.clone(), secret).await.1["rule_name"], "block_etc");
        let (_, current) = call(&b, "GET", "/api/v1/policy/current", None).await;
        assert_eq!(current["version"], "t1", "{current}");
        assert!(matches!(
            b.store().newest_policy_version(),
            Err(tame_store::StoreError::PolicyForged { .. })
        ));
        follower.abort();
    }
}
