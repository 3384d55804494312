//! What an operator watches: `GET /ready` over a working, a failing and a
//! hanging store (and `/health` unmoved by them), and the access events of
//! `--log-format json` captured from requests through the router.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use tame_server::{ACCESS_TARGET, Auth, Limits, LogFormat};
use tame_store::{SqliteOptions, SqliteStore};
use tower::ServiceExt as _;

// ------------------------------------------------------------ /ready

/// A harness over a store whose reads can be made to fail or hang
/// ([`Hooked`]'s `reads_broken` and `read_delay`).
fn flaky_harness(auth: Auth) -> (Harness, Arc<Hooked>) {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
    let store = Arc::new(Hooked::new(inner));
    (harness_on(dir, store.clone(), auth, Limits::default()), store)
}

#[tokio::test]
async fn ready_answers_200_with_each_check_on_a_working_store() {
    let h = harness();
    let r = h.get("/ready").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "ready");
    assert_eq!(r.json["failed"], json!([]));
    assert_eq!(r.json["checks"]["store"], json!({"ok": true}));
    let policy = &r.json["checks"]["policy"];
    assert_eq!(policy["ok"], true);
    assert_eq!(policy["version"], "t1");
    assert_eq!(policy["hash"].as_str().unwrap().len(), 64, "{policy}");
}

#[tokio::test]
async fn ready_answers_503_naming_the_store_while_it_fails_and_health_stays_200() {
    let (h, store) = flaky_harness(Auth::default());
    assert_eq!(h.get("/ready").await.status, StatusCode::OK);
    store.reads_broken.store(true, Ordering::SeqCst);
    let r = h.get("/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json["status"], "not ready");
    assert_eq!(r.json["failed"], json!(["store"]));
    assert_eq!(r.json["checks"]["store"]["ok"], false);
    let error = r.json["checks"]["store"]["error"].as_str().unwrap();
    assert_eq!(error, "the store failed a read");
    assert!(
        !r.text.contains("disk went away"),
        "the cause stays in the log: {}",
        r.text
    );
    assert_eq!(r.json["checks"]["policy"]["ok"], true, "the policy check still runs");
    // Liveness does not depend on the store.
    let health = h.get("/health").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    // Ready again once the store answers, without a restart.
    store.reads_broken.store(false, Ordering::SeqCst);
    assert_eq!(h.get("/ready").await.status, StatusCode::OK);
}

#[tokio::test]
async fn ready_answers_503_when_the_store_does_not_answer_in_time() {
    let (h, store) = flaky_harness(Auth::default());
    *store.read_delay.lock().unwrap() = tame_server::STORE_PROBE_TIMEOUT + Duration::from_millis(500);
    let r = h.get("/ready").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json["failed"], json!(["store"]));
    let error = r.json["checks"]["store"]["error"].as_str().unwrap();
    assert!(error.contains("did not answer within 1000 ms"), "{error}");
}

#[tokio::test]
async fn ready_and_health_need_no_key_on_a_keyed_server() {
    let h = harness_with(Auth::new(&["agent-k".into()], &["admin-k".into()]), Limits::default());
    for path in ["/ready", "/health"] {
        let r = h.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
    // A keyed route of the same server does refuse.
    assert_eq!(h.get("/api/v1/sessions").await.status, StatusCode::UNAUTHORIZED);
}

// ------------------------------------------------------------ access log

/// Everything a subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Sends `req` through the router; the answer's status and `X-Request-Id`.
async fn send_raw(h: &Harness, req: Request<Body>) -> (StatusCode, String) {
    let resp = tame_server::app(h.state.clone()).oneshot(req).await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    (resp.status(), id)
}

fn post_json(uri: &str, body: &Value) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn json_logs_give_one_access_object_per_request_with_route_status_and_decision() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(tame_server::log_subscriber(
        LogFormat::Json,
        None,
        captured.clone(),
        false,
    ));
    let h = harness();
    let call =
        json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}, "session_id": "sess-secretive-42"});
    let (status, enforce_id) = send_raw(&h, post_json("/api/v1/enforce", &call)).await;
    assert_eq!(status, StatusCode::OK);
    let allowed = json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/a"}});
    send_raw(&h, post_json("/api/v1/enforce", &allowed)).await;
    let req = Request::get("/api/v1/sessions/sess-secretive-42")
        .header("x-request-id", "lb-7f3a.1")
        .body(Body::empty())
        .unwrap();
    let (status, given_id) = send_raw(&h, req).await;
    assert_eq!((status, given_id.as_str()), (StatusCode::OK, "lb-7f3a.1"));
    let (status, _) = send_raw(&h, Request::get("/no/such/route").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A refusal of the edge is logged too (a body that is not JSON).
    let req = Request::post("/api/v1/enforce")
        .header("content-type", "text/plain")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(send_raw(&h, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let text = captured.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line: {e}: {l}")))
        .collect();
    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == ACCESS_TARGET).collect();
    assert_eq!(access.len(), 5, "{text}");
    for event in &access {
        assert_eq!(event["level"], "INFO", "{event}");
        assert_eq!(event["message"], "request answered", "{event}");
        let ts = event["timestamp"].as_str().unwrap();
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
        assert!(event["latency_ms"].as_f64().unwrap() >= 0.0, "{event}");
        assert!(event["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{event}");
    }
    let denied = access[0];
    assert_eq!(denied["request_id"], enforce_id.as_str());
    assert_eq!(denied["method"], "POST");
    assert_eq!(denied["route"], "/api/v1/enforce");
    assert_eq!(denied["status"], 200);
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["rule"], "block_etc");
    assert_eq!(access[1]["decision"], "allow");
    assert_eq!(access[1]["rule"], "allow_rest");
    let read = access[2];
    assert_eq!(read["request_id"], "lb-7f3a.1");
    assert_eq!(
        read["route"], "/api/v1/sessions/{session_id}",
        "the template, not the path"
    );
    assert!(read.get("decision").is_none() && read.get("rule").is_none(), "{read}");
    let unrouted = access[3];
    assert_eq!(unrouted["status"], 404);
    assert!(unrouted.get("route").is_none(), "no route matched: {unrouted}");
    assert_eq!(access[4]["status"], 415);
    assert_eq!(access[4]["route"], "/api/v1/enforce");
    // Ids are distinct, and no raw path (with its session id) is logged.
    let mut ids: Vec<&str> = access.iter().map(|e| e["request_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert!(!text.contains("sess-secretive-42"), "{text}");
}

#[tokio::test]
async fn text_logs_keep_quiet_about_requests_unless_asked() {
    let call = json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}});
    let quiet = Captured::default();
    {
        let _guard =
            tracing::subscriber::set_default(tame_server::log_subscriber(LogFormat::Text, None, quiet.clone(), false));
        let h = harness();
        assert_eq!(
            send_raw(&h, post_json("/api/v1/enforce", &call)).await.0,
            StatusCode::OK
        );
    }
    assert!(!quiet.text().contains("request answered"), "{}", quiet.text());

    let asked = Captured::default();
    let filter = tracing_subscriber::EnvFilter::new(format!("info,{ACCESS_TARGET}=info"));
    let _guard = tracing::subscriber::set_default(tame_server::log_subscriber(
        LogFormat::Text,
        Some(filter),
        asked.clone(),
        false,
    ));
    let h = harness();
    let (_, id) = send_raw(&h, post_json("/api/v1/enforce", &call)).await;
    let text = asked.text();
    let line = text
        .lines()
        .find(|l| l.contains("request answered"))
        .unwrap_or_else(|| panic!("{text}"));
    for part in [
        format!("request_id=\"{id}\""),
        "route=\"/api/v1/enforce\"".into(),
        "status=200".into(),
        "decision=\"deny\"".into(),
        "rule=\"block_etc\"".into(),
    ] {
        assert!(line.contains(&part), "{part} not in {line}");
    }
}
