//! Router tests through tower's `oneshot`: every route, its error paths,
//! auth, limits, session facts, approvals and the policy life cycle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use tame_server::{Auth, FailureLimit, Limits, ROUTES};

#[tokio::test]
async fn enforce_answers_in_the_original_shape_and_logs() {
    let h = harness();
    let r = h
        .enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}, "agent_id": "a1"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let j = &r.json;
    assert_eq!(j["decision"], "deny");
    assert_eq!(j["rule_name"], "block_etc");
    assert_eq!(j["reason"], "System paths are off limits (/etc/passwd)");
    assert_eq!(j["policy_version"], "t1");
    assert!(j.get("approval_id").is_none());
    let sid = j["session_id"].as_str().unwrap();
    assert_eq!(sid.len(), 36, "a fresh UUID");
    let ts = j["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-11-21T06:00:00.123456Z".len(),
        "{ts}"
    );
    let log_id = j["log_id"].as_str().unwrap();

    let log = h.get(&format!("/api/v1/sessions/{sid}")).await;
    assert_eq!(log.status, StatusCode::OK);
    let entries = log.json.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["id"], log_id);
    assert_eq!(e["policy_decision"], "deny");
    assert_eq!(e["policy_rule"], "block_etc");
    assert_eq!(e["tool_args"]["path"], "/etc/passwd");
    assert_eq!(e["agent_id"], "a1");
    for key in [
        "session_id",
        "timestamp",
        "tool_name",
        "tool_result",
        "policy_version",
        "execution_status",
        "execution_duration_ms",
        "error_message",
        "user_id",
    ] {
        assert!(e.get(key).is_some(), "log entry lacks {key}");
    }

    let ok = h
        .enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/a"}, "session_id": sid}))
        .await;
    assert_eq!(ok.json["decision"], "allow");
    assert_eq!(ok.json["session_id"], sid);
    let none = h.enforce(json!({"tool_name": "rm_rf", "session_id": sid})).await;
    assert_eq!(none.json["decision"], "deny");
    assert!(none.json["rule_name"].is_null());

    let summary = h.get(&format!("/api/v1/sessions/{sid}/summary")).await;
    assert_eq!(summary.status, StatusCode::OK);
    assert_eq!(summary.json["total_calls"], 3);
    assert_eq!(summary.json["allowed_calls"], 1);
    assert_eq!(summary.json["denied_calls"], 2);
    assert_eq!(summary.json["agent_id"], "a1");

    let list = h.get("/api/v1/sessions?page=1&page_size=10&agent_id=a1").await;
    assert_eq!(list.json["total_count"], 1);
    assert_eq!(list.json["page_size"], 10);
    assert_eq!(list.json["sessions"][0]["session_id"], sid);
    assert_eq!(
        h.get("/api/v1/sessions?page=0").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(h.get("/api/v1/sessions/unknown").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.get("/api/v1/sessions/unknown/summary").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn results_are_recorded_with_404_and_403() {
    let h = harness();
    let r = h
        .enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}, "session_id": "s1"}))
        .await;
    let log_id = r.json["log_id"].as_str().unwrap().to_string();
    let ok = h
        .post(
            &format!("/api/v1/enforce/s1/result?log_id={log_id}"),
            json!({"status": "success", "duration_ms": 5, "execution_time_ms": 5, "output": "x"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json["status"], "updated");
    assert_eq!(ok.json["log_id"], log_id.as_str());
    // No contract for read_file: the result comes back unchanged.
    assert_eq!(ok.json["safe_response"]["output"], "x");
    assert_eq!(ok.json["stripped_fields"], json!([]));
    let log = h.get("/api/v1/sessions/s1").await;
    assert_eq!(log.json[0]["execution_status"], "success");
    assert_eq!(log.json[0]["execution_duration_ms"], 5.0);
    assert_eq!(log.json[0]["tool_result"]["output"], "x");

    let missing = h
        .post("/api/v1/enforce/s1/result?log_id=nope", json!({"status": "success"}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json["detail"].as_str().unwrap().contains("nope"));
    let foreign = h
        .post(
            &format!("/api/v1/enforce/s2/result?log_id={log_id}"),
            json!({"status": "x"}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let no_id = h.post("/api/v1/enforce/s1/result", json!({})).await;
    assert_eq!(no_id.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_id.json["field"], "log_id");
    let bad = h
        .post(
            &format!("/api/v1/enforce/s1/result?log_id={log_id}"),
            json!({"duration_ms": "slow"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json["field"], "duration_ms");
}

#[tokio::test]
async fn rate_limits_and_flow_rules_work_through_the_server() {
    let h = harness();
    let send = || h.enforce(json!({"tool_name": "send_email", "tool_args": {"to": "a@b.c"}, "session_id": "s"}));
    assert_eq!(send().await.json["decision"], "allow");
    assert_eq!(send().await.json["decision"], "allow");
    let third = send().await;
    assert_eq!(third.json["decision"], "deny");
    assert_eq!(third.json["rule_name"], "rate_limit_email");
    // Another session has its own count.
    let other = h
        .enforce(json!({"tool_name": "send_email", "session_id": "other"}))
        .await;
    assert_eq!(other.json["decision"], "allow");

    let post = || h.enforce(json!({"tool_name": "http_post", "session_id": "flow"}));
    assert_eq!(post().await.json["decision"], "allow");
    assert_eq!(
        h.enforce(json!({"tool_name": "read_secret", "session_id": "flow"}))
            .await
            .json["decision"],
        "allow"
    );
    let after = post().await;
    assert_eq!(after.json["decision"], "deny");
    assert_eq!(after.json["rule_name"], "no_post_after_secret");
}

#[tokio::test]
async fn approvals_flow_from_pending_to_release() {
    let h = harness();
    let call = json!({"tool_name": "query_database", "tool_args": {"database": "production", "query": "drop table x"}, "session_id": "s"});
    let r = h.enforce(call.clone()).await;
    assert_eq!(r.json["decision"], "approve");
    let id = r.json["approval_id"].as_str().unwrap().to_string();

    let pending = h.get("/api/v1/approvals").await;
    assert_eq!(pending.json["total_count"], 1);
    assert_eq!(pending.json["approvals"][0]["approval_id"], id);
    assert_eq!(pending.json["approvals"][0]["tool_name"], "query_database");
    assert_eq!(pending.json["approvals"][0]["state"], "pending");

    let mut release = call.clone();
    release["approval_id"] = json!(id);
    let early = h.enforce(release.clone()).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text);

    let waited = h.get(&format!("/api/v1/approvals/{id}/wait?timeout=1")).await;
    assert_eq!(waited.json["timed_out"], true);

    let approved = h
        .post(
            &format!("/api/v1/approvals/{id}/approve"),
            json!({"reason": "ticket 42", "by": "alice"}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.json["state"], "approved");
    let waited = h.get(&format!("/api/v1/approvals/{id}/wait?timeout=1")).await;
    assert_eq!(waited.json["state"], "approved");
    assert_eq!(waited.json["timed_out"], false);
    assert_eq!(
        h.post(&format!("/api/v1/approvals/{id}/reject"), json!({}))
            .await
            .status,
        StatusCode::CONFLICT
    );

    let mut other = release.clone();
    other["tool_args"]["query"] = json!("drop table y");
    assert_eq!(h.enforce(other).await.status, StatusCode::FORBIDDEN);

    let released = h.enforce(release.clone()).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.text);
    assert_eq!(released.json["decision"], "allow");
    assert!(released.json["reason"].as_str().unwrap().contains("alice"));
    let again = h.enforce(release).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let one = h.get(&format!("/api/v1/approvals/{id}")).await;
    assert_eq!(one.json["released_log_id"], released.json["log_id"]);
    assert_eq!(h.get("/api/v1/approvals/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        h.get("/api/v1/approvals?state=bogus").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let verify = h.get("/api/v1/audit/verify").await;
    assert_eq!(verify.json["valid"], true, "{}", verify.text);
}

#[tokio::test]
async fn rejected_and_expired_approvals_deny() {
    let h = harness_with(Auth::default(), short_approvals());
    let call = json!({"tool_name": "query_database", "tool_args": {"database": "production"}, "session_id": "s"});
    let id = h.enforce(call.clone()).await.json["approval_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rejected = h
        .post(&format!("/api/v1/approvals/{id}/reject"), json!({"reason": "no"}))
        .await;
    assert_eq!(rejected.json["state"], "rejected");
    let mut release = call.clone();
    release["metadata"] = json!({"approval_id": id});
    let denied = h.enforce(release).await;
    assert_eq!(denied.json["decision"], "deny");
    assert!(
        denied.json["reason"].as_str().unwrap().contains("rejected"),
        "{}",
        denied.text
    );

    let id = h.enforce(call.clone()).await.json["approval_id"]
        .as_str()
        .unwrap()
        .to_string();
    let waited = h.get(&format!("/api/v1/approvals/{id}/wait?timeout=5")).await;
    assert_eq!(waited.json["state"], "expired", "{}", waited.text);
    let mut release = call;
    release["approval_id"] = json!(id);
    let denied = h.enforce(release).await;
    assert_eq!(denied.json["decision"], "deny");
    assert!(denied.json["reason"].as_str().unwrap().contains("expired"));
    let late = h.post(&format!("/api/v1/approvals/{id}/approve"), json!({})).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn policy_current_validate_reload_versions_and_test() {
    let h = harness();
    let cur = h.get("/api/v1/policy/current").await;
    assert_eq!(cur.status, StatusCode::OK);
    assert_eq!(cur.json["version"], "t1");
    assert_eq!(cur.json["rules_count"], 5);
    assert_eq!(cur.json["rules"][0]["name"], "block_etc");
    assert_eq!(cur.json["active"], true);
    assert_eq!(cur.json["hash"].as_str().unwrap().len(), 64);
    let old_hash = cur.json["hash"].clone();

    let valid = h
        .post("/api/v1/policy/validate", json!({"policy_content": POLICY}))
        .await;
    assert_eq!(valid.json["is_valid"], true);
    assert_eq!(valid.json["rules_count"], 5);
    let broken = "version: \"x\"\nrules:\n  - name: r\n    action: deny\n    condition: 'args.path.nosuch('\n";
    let invalid = h
        .post("/api/v1/policy/validate", json!({"policy_content": broken}))
        .await;
    assert_eq!(invalid.json["is_valid"], false);
    assert!(!invalid.json["errors"].as_array().unwrap().is_empty());
    let wrong_type = h.post("/api/v1/policy/validate", json!({"policy_content": 5})).await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong_type.json["field"], "policy_content");

    let rejected = h.post("/api/v1/policy/reload", json!({"policy_content": broken})).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        rejected.json["detail"]
            .as_str()
            .unwrap()
            .contains("running policy stays")
    );
    assert!(!rejected.json["diagnostics"].as_array().unwrap().is_empty());
    assert_eq!(h.get("/api/v1/policy/current").await.json["hash"], old_hash);

    let v2 = POLICY.replace("version: \"t1\"", "version: \"t2\"");
    std::fs::write(h.dir.path().join("policies.yml"), &v2).unwrap();
    let reloaded = h.call("POST", "/api/v1/policy/reload", None, None).await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text);
    assert_eq!(reloaded.json["status"], "reloaded");
    assert_eq!(reloaded.json["version"], "t2");
    let same = h.call("POST", "/api/v1/policy/reload", None, None).await;
    assert_eq!(same.json["status"], "unchanged");
    let r = h
        .enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}}))
        .await;
    assert_eq!(r.json["policy_version"], "t2");
    let versions = h.get("/api/v1/policy/versions").await;
    let list = versions.json["versions"].as_array().unwrap();
    assert_eq!(
        list.len(),
        1,
        "only reloads are stored by the router; run() stores the first: {}",
        versions.text
    );
    assert_eq!(list[0]["version"], "t2");
    assert_eq!(list[0]["active"], true);

    let t = h
        .get("/api/v1/policy/test?tool_name=read_file&tool_args=%7B%22path%22%3A%22%2Fetc%2Fx%22%7D")
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(t.json["decision"]["action"], "deny");
    assert_eq!(t.json["decision"]["rule_name"], "block_etc");
    let t = h
        .post(
            "/api/v1/policy/test",
            json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}, "session_context": {"user_role": "admin"}}),
        )
        .await;
    assert_eq!(t.json["decision"]["action"], "allow");
    assert_eq!(
        h.get("/api/v1/policy/test?tool_name=x&tool_args=%7B").await.status,
        StatusCode::BAD_REQUEST
    );
    // Dry runs are not logged.
    assert_eq!(h.get("/api/v1/sessions").await.json["total_count"], 1);
}

#[tokio::test]
async fn keys_gate_routes_by_role() {
    let h = harness_with(Auth::new(&["agent-k".into()], &["admin-k".into()]), Limits::default());
    let body = json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}}).to_string();
    let none = h.call("POST", "/api/v1/enforce", Some(&body), None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.json["detail"].as_str().unwrap().contains("API key"));
    let wrong = h.call("POST", "/api/v1/enforce", Some(&body), Some("nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.call("POST", "/api/v1/enforce", Some(&body), Some("agent-k"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.call("GET", "/api/v1/sessions", None, Some("agent-k")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.call("POST", "/api/v1/policy/reload", None, Some("agent-k"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.call("GET", "/api/v1/audit/verify", None, Some("agent-k"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.call("GET", "/api/v1/sessions", None, Some("admin-k")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.call("POST", "/api/v1/enforce", Some(&body), Some("admin-k"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(h.call("GET", "/health", None, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_key_is_checked_before_the_body_is_read() {
    let limits = Limits {
        body_bytes: 2048,
        ..Limits::default()
    };
    // Sixteen refusals in a row: the failed-authentication limit is off here.
    let auth = Auth::new(&["agent-k".into()], &[]).with_failure_limit(FailureLimit::off());
    let h = harness_with(auth, limits);
    let big = json!({"tool_name": "t", "tool_args": {"x": "a".repeat(4096)}}).to_string();
    for path in [
        "/api/v1/enforce",
        "/api/v1/enforce/s1/result?log_id=x",
        "/api/v1/policy/validate",
        "/api/v1/policy/test",
    ] {
        // Neither an oversized nor a malformed body is looked at without a key.
        for body in [big.as_str(), "{\"tool_name\": "] {
            let r = h.call("POST", path, Some(body), None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {:?}", r.json);
            let r = h.call("POST", path, Some(body), Some("wrong")).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {:?}", r.json);
        }
        // With the key the body's own errors come back.
        let r = h.call("POST", path, Some(&big), Some("agent-k")).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {:?}", r.json);
        let r = h.call("POST", path, Some("{\"tool_name\": "), Some("agent-k")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {:?}", r.json);
    }
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_no_panic() {
    let limits = Limits {
        body_bytes: 2048,
        json_depth: 8,
        ..Limits::default()
    };
    let h = harness_with(Auth::default(), limits);
    let big = json!({"tool_name": "t", "tool_args": {"x": "a".repeat(4096)}}).to_string();
    let r = h.call("POST", "/api/v1/enforce", Some(&big), None).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.json["detail"].as_str().unwrap().contains("2048"));
    let deep = format!(
        "{{\"tool_name\":\"t\",\"tool_args\":{}1{}}}",
        "[".repeat(20),
        "]".repeat(20)
    );
    let r = h.call("POST", "/api/v1/enforce", Some(&deep), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json["detail"].as_str().unwrap().contains("nesting"));
    let r = h.call("POST", "/api/v1/enforce", Some("{\"tool_name\": "), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json["detail"].as_str().unwrap().contains("malformed JSON"));
    let r = h.call("POST", "/api/v1/enforce", Some(""), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = h.enforce(json!({"tool_name": "t", "tool_args": "not an object"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["field"], "tool_args");
    let r = h.enforce(json!({"tool_args": {}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["field"], "tool_name");
    let r = h.enforce(json!({"tool_name": "t", "session_id": 5})).await;
    assert_eq!(r.json["field"], "session_id");
    let r = h.enforce(json!({"tool_name": "t", "approval_id": 5})).await;
    assert_eq!(r.json["field"], "approval_id");
    let r = h.enforce(json!([1, 2])).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = h.get("/api/v1/nothing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json["detail"].is_string());
    let r = h
        .call("POST", "/api/v1/approvals/x/approve", Some("{\"reason\": 5}"), None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json["field"], "reason");
    // Condition errors on odd argument types do not widen access.
    let r = h
        .enforce(json!({"tool_name": "read_file", "tool_args": {"path": 42}}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["decision"], "deny");
}

#[tokio::test]
async fn audit_verify_export_health_metrics() {
    let h = harness();
    for _ in 0..3 {
        h.enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}}))
            .await;
    }
    h.enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/etc/x"}}))
        .await;
    let v = h.get("/api/v1/audit/verify").await;
    assert_eq!(v.json["valid"], true);
    assert_eq!(v.json["records"], 4);
    let e = h.get("/api/v1/audit/export").await;
    assert_eq!(e.status, StatusCode::OK);
    let lines: Vec<serde_json::Value> = e.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["record"]["decision"], "deny");

    let health = h.get("/health").await;
    assert_eq!(health.json["status"], "healthy");
    let m = h.get("/metrics").await;
    assert!(
        m.text
            .contains("tame_decisions_total{action=\"allow\",rule=\"allow_rest\"} 3"),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("tame_decisions_total{action=\"deny\",rule=\"block_etc\"} 1")
    );
    assert!(m.text.contains("tame_enforce_duration_seconds_count 4"));
}

#[tokio::test]
async fn openapi_matches_the_router() {
    let h = harness();
    let doc = h.get("/openapi.json").await.json;
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), p.clone())))
        .collect();
    documented.sort();
    let mut table: Vec<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    table.sort();
    assert_eq!(documented, table);
    // Every documented operation is served (not 404/405).
    for route in ROUTES {
        let uri = route.path.replace("{session_id}", "s").replace("{approval_id}", "a");
        let uri = if uri.ends_with("/wait") {
            format!("{uri}?timeout=1")
        } else {
            uri
        };
        let method = route.method.to_uppercase();
        let body = (method == "POST").then_some("{}");
        let r = h.call(&method, &uri, body, None).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if r.status == StatusCode::NOT_FOUND {
            assert!(
                !r.json["detail"].as_str().unwrap().contains("no such route"),
                "{method} {uri} is documented but not routed"
            );
        }
    }
    openapi_429s_match_the_limiter(&doc).await;
}

/// The document's 429s are those of the real router: with keys and a
/// client over its failed-authentication budget, exactly the routes that
/// document a 429 answer it (with `Retry-After` and the documented body);
/// the others still answer.
async fn openapi_429s_match_the_limiter(doc: &serde_json::Value) {
    use tower::ServiceExt as _;
    let limit = tame_server::FailureLimit {
        burst: 1,
        period: std::time::Duration::from_secs(3600),
        trusted_proxies: Vec::new(),
    };
    let h = harness_with(
        Auth::new(&["agent-k".into()], &["admin-k".into()]).with_failure_limit(limit),
        Limits::default(),
    );
    // The one failure of the budget (all `oneshot` requests are one client).
    let first = h.call("GET", "/api/v1/sessions", None, Some("wrong")).await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED, "{}", first.text);
    let schema = &doc["components"]["schemas"]["TooManyFailedAuthentications"];
    let mut limited = 0;
    for route in ROUTES {
        let documented = &doc["paths"][route.path][route.method]["responses"]["429"];
        let uri = route.path.replace("{session_id}", "s").replace("{approval_id}", "a");
        let req = axum::http::Request::builder()
            .method(route.method.to_uppercase().as_str())
            .uri(&uri)
            .header("authorization", "Bearer admin-k")
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let resp = tame_server::app(h.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").cloned();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let what = format!("{} {}", route.method, route.path);
        if status != StatusCode::TOO_MANY_REQUESTS {
            assert!(
                documented.is_null(),
                "{what} documents a 429 it does not answer ({status})"
            );
            continue;
        }
        limited += 1;
        assert!(documented.is_object(), "{what} answers 429 but does not document it");
        assert!(documented["headers"]["Retry-After"].is_object(), "{what}: {documented}");
        let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
        assert!(secs >= 1, "{what}: Retry-After {secs}");
        assert_eq!(body["retry_after"], json!(secs), "{what}: {body}");
        assert!(body["detail"].is_string(), "{what}: {body}");
        for field in schema["required"].as_array().unwrap() {
            assert!(
                body.get(field.as_str().unwrap()).is_some(),
                "{what}: {body} lacks {field}"
            );
        }
    }
    let keyed = ROUTES.iter().filter(|r| r.role != tame_server::Role::Public).count();
    assert_eq!(limited, keyed, "every keyed route is limited");
}

#[tokio::test]
async fn verify_names_an_edited_and_a_deleted_record() {
    let h = harness();
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = h
            .enforce(json!({"tool_name": "read_file", "tool_args": {"path": format!("/tmp/{i}")}, "session_id": "s"}))
            .await;
        ids.push(r.json["log_id"].as_str().unwrap().to_string());
    }
    let db = rusqlite::Connection::open(h.dir.path().join("tame.db")).unwrap();
    db.execute(
        "UPDATE audit SET body = replace(body, '/tmp/1', '/tmp/X') WHERE seq = 2",
        [],
    )
    .unwrap();
    let v = h.get("/api/v1/audit/verify").await;
    assert_eq!(v.json["valid"], false);
    assert_eq!(v.json["first_problem"]["kind"], "edited");
    assert_eq!(v.json["first_problem"]["seq"], 2);
    assert_eq!(v.json["first_problem"]["ref_id"], ids[1]);
    db.execute(
        "UPDATE audit SET body = replace(body, '/tmp/X', '/tmp/1') WHERE seq = 2",
        [],
    )
    .unwrap();
    assert_eq!(h.get("/api/v1/audit/verify").await.json["valid"], true);
    db.execute("DELETE FROM audit WHERE seq = 3", []).unwrap();
    let v = h.get("/api/v1/audit/verify").await;
    assert_eq!(v.json["first_problem"]["kind"], "missing");
    assert_eq!(v.json["first_problem"]["seq"], 3);
    assert!(
        v.json["first_problem"]["message"]
            .as_str()
            .unwrap()
            .contains("record 3 is missing")
    );
}

#[tokio::test]
async fn secrets_are_redacted_before_storage() {
    let h = harness();
    let key = "AKIAIOSFODNN7EXAMPLE";
    let r = h
        .enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/a", "aws": key}, "session_id": "sec"}))
        .await;
    assert_eq!(r.json["decision"], "allow");
    let log_id = r.json["log_id"].as_str().unwrap().to_string();
    h.post(
        &format!("/api/v1/enforce/sec/result?log_id={log_id}"),
        json!({"status": "success", "output": key}),
    )
    .await;
    let log = h.get("/api/v1/sessions/sec").await;
    assert!(!log.text.contains(key), "{}", log.text);
    assert!(log.text.contains("[REDACTED:"), "{}", log.text);
    assert_eq!(log.json[0]["tool_args"]["path"], "/tmp/a");
    let export = h.get("/api/v1/audit/export").await;
    assert!(!export.text.contains(key));
}

/// A call the policy sends for approval in `session`, and its approval's id.
async fn pending_approval(h: &Harness, session: &str) -> (serde_json::Value, String) {
    let call = json!({"tool_name": "query_database", "tool_args": {"database": "production"}, "session_id": session});
    let id = h.enforce(call.clone()).await.json["approval_id"]
        .as_str()
        .unwrap()
        .to_string();
    (call, id)
}

/// An approvals row altered outside tame (someone with the database file
/// edits it) is never acted on, and the client is told why in a 409 naming
/// the approval, not a bare 500: a release of an approval whose row names
/// another approver, and an approval of a row set to rejected.
#[tokio::test]
async fn a_forged_approval_is_refused_with_a_clear_conflict() {
    let h = harness();
    let forge = |sql: &str, id: &str| {
        let db = rusqlite::Connection::open(h.dir.path().join("tame.db")).unwrap();
        assert_eq!(db.execute(sql, [id]).unwrap(), 1);
    };
    let assert_forged = |reply: &Reply, id: &str| {
        assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
        assert_eq!(reply.json["error"], "approval_forged", "{}", reply.text);
        assert_eq!(reply.json["approval_id"], id);
        let detail = reply.json["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("approval `{id}` cannot be used")), "{detail}");
        assert!(detail.contains("audit log"), "{detail}");
    };

    let (call, id) = pending_approval(&h, "s1").await;
    let approved = h
        .post(&format!("/api/v1/approvals/{id}/approve"), json!({"reason": "ok"}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    forge("UPDATE approvals SET decided_by = 'mallory' WHERE id = ?1", &id);
    let mut release = call;
    release["approval_id"] = json!(id);
    assert_forged(&h.enforce(release).await, &id);

    let (_, id) = pending_approval(&h, "s2").await;
    forge(
        "UPDATE approvals SET state = 'rejected', decided_by = 'admin' WHERE id = ?1",
        &id,
    );
    let approve = h
        .post(&format!("/api/v1/approvals/{id}/approve"), json!({"reason": "ok"}))
        .await;
    assert_forged(&approve, &id);
}

/// A windowed rate limit holds for calls sent at once: a call read a
/// moment later but decided first counts for the ones decided after it
/// (the test policy allows two `send_email` per session and hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_for_calls_sent_at_once() {
    let h = harness();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..24 {
        let state = h.state.clone();
        let body =
            json!({"tool_name": "send_email", "tool_args": {"to": format!("x{i}@example.com")}, "session_id": "burst"});
        calls.spawn(async move { enforce_on(&state, &body).await });
    }
    let mut allowed = 0;
    while let Some(reply) = calls.join_next().await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        if reply.json["decision"] == "allow" {
            allowed += 1;
        } else {
            assert_eq!(reply.json["rule_name"], "rate_limit_email", "{}", reply.text);
        }
    }
    assert_eq!(allowed, 2);
}
