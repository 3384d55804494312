//! The service runner against a local HTTP service, and the server-side
//! `POST /api/v1/tools/run` handler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use serde_json::{Map, Value, json};
use tame_engine::Action;
use tame_integrations::protocol::ToolsFile;
use tame_integrations::{RunnerSpec, ToolBinding, ToolRunner, ToolsService, tools_router};
use tower::ServiceExt as _;

use crate::common::{ScriptedGuard, fixture};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, Value)>>>);

/// Starts a protocol service on 127.0.0.1; `mode` picks its behaviour.
async fn service(mode: &'static str) -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(
            "/capabilities/handshake",
            post(move |State(seen): State<Seen>, Json(body): Json<Value>| async move {
                seen.0.lock().unwrap().push(("handshake".into(), body));
                match mode {
                    "refuse" => Json(json!({"ok": false, "error": {"type": "Refused", "message": "not today"}})),
                    _ => Json(json!({"ok": true, "enforcement": "enforced", "supported_guarantees": {"no_network": true}, "service_version": "1.0.0"})),
                }
            }),
        )
        .route(
            "/tools/run",
            post(move |State(seen): State<Seen>, Json(body): Json<Value>| async move {
                seen.0.lock().unwrap().push(("run".into(), body.clone()));
                match mode {
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        (StatusCode::OK, Json(json!({"ok": true, "result": null})))
                    }
                    "error" => (StatusCode::OK, Json(json!({"ok": false, "error": {"type": "ValueError", "message": "Missing input"}}))),
                    "500" => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"detail": "boom"}))),
                    _ => {
                        let name = body["payload"]["name"].as_str().unwrap_or("?").to_owned();
                        (StatusCode::OK, Json(json!({"ok": true, "result": {"message": format!("Hello {name}")}})))
                    }
                }
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/tools/run"), seen)
}

fn binding(url: &str, guarantees: Value, timeout: Option<f64>) -> ToolBinding {
    let Value::Object(required_guarantees) = guarantees else {
        panic!()
    };
    ToolBinding {
        name: "greeter".into(),
        runner: RunnerSpec::Service {
            url: url.into(),
            entry: Some("tools.sample_tool:greet".into()),
            kind: None,
            required_guarantees,
        },
        timeout_seconds: timeout,
    }
}

#[tokio::test]
async fn handshake_then_call_with_the_protocol_payload() {
    let (url, seen) = service("ok").await;
    let run = ToolRunner::default()
        .execute(
            &binding(&url, json!({"no_network": true}), Some(3.0)),
            &json!({"name": "Ada"}),
            "tr-1",
        )
        .await;
    assert!(run.ok, "{run:#?}");
    assert_eq!(run.result, Some(json!({"message": "Hello Ada"})));
    assert_eq!(run.trace.runner, "service");
    assert_eq!(run.trace.service_url.as_deref(), Some(url.as_str()));
    assert_eq!(run.trace.service_handshake.as_deref(), Some("ok"));
    assert_eq!(run.trace.enforcement_level.as_deref(), Some("enforced"));
    assert_eq!(run.trace.timeout_ms, 3000);

    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, "handshake");
    assert_eq!(
        seen[0].1,
        json!({"protocol_version": 1, "tool_name": "greeter", "runner": "service", "required_guarantees": {"no_network": true}})
    );
    assert_eq!(seen[1].0, "run");
    let body = &seen[1].1;
    assert_eq!(body["protocol_version"], 1);
    assert_eq!(body["tool_name"], "greeter");
    assert_eq!(body["kind"], "python");
    assert_eq!(body["entry"], "tools.sample_tool:greet");
    assert_eq!(body["payload"], json!({"name": "Ada"}));
    assert_eq!(body["timeout_ms"], 3000);
    assert_eq!(body["trace_id"], "tr-1");
}

#[tokio::test]
async fn refused_handshakes_and_missing_guarantees_stop_the_call() {
    let (url, seen) = service("refuse").await;
    let run = ToolRunner::default()
        .execute(&binding(&url, json!({}), None), &json!({}), "t")
        .await;
    let error = run.error.unwrap();
    assert_eq!(error.kind, "ServiceHandshakeError");
    assert!(error.message.contains("Refused: not today"), "{error:?}");
    assert_eq!(seen.0.lock().unwrap().len(), 1, "no call after a refused handshake");

    let (url, seen) = service("ok").await;
    let run = ToolRunner::default()
        .execute(&binding(&url, json!({"no_filesystem": true}), None), &json!({}), "t")
        .await;
    let error = run.error.unwrap();
    assert_eq!(error.reason_code.as_deref(), Some("guarantee_blocked"));
    assert!(error.message.contains("no_filesystem"), "{error:?}");
    assert_eq!(seen.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn service_errors_timeouts_and_outages() {
    let (url, _) = service("error").await;
    let run = ToolRunner::default()
        .execute(&binding(&url, json!({}), None), &json!({}), "t")
        .await;
    assert_eq!(run.error.unwrap().kind, "ValueError");

    let (url, _) = service("500").await;
    let run = ToolRunner::default()
        .execute(&binding(&url, json!({}), None), &json!({}), "t")
        .await;
    let error = run.error.unwrap();
    assert!(
        error.message.contains("500") && error.message.contains("boom"),
        "{error:?}"
    );

    let (url, _) = service("slow").await;
    let run = ToolRunner::default()
        .execute(&binding(&url, json!({}), Some(0.3)), &json!({}), "t")
        .await;
    assert_eq!(run.error.unwrap().kind, "ToolTimeout");

    // Nothing listens on port 1.
    let run = ToolRunner::default()
        .execute(&binding("http://127.0.0.1:1/run", json!({}), None), &json!({}), "t")
        .await;
    assert_eq!(run.error.unwrap().reason_code.as_deref(), Some("unreachable"));
    let run = ToolRunner::default()
        .execute(&binding("not a url", json!({}), None), &json!({}), "t")
        .await;
    assert_eq!(run.error.unwrap().reason_code.as_deref(), Some("bad_url"));
}

async fn post_json(app: axum::Router, body: &str) -> (StatusCode, Value) {
    let request = Request::post("/api/v1/tools/run")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_http_handler_runs_only_registered_tools() {
    let (url, _) = service("ok").await;
    let yaml = format!(
        "tools:\n  greet:\n    runner: local\n    entry: sample_tool:greet\n    python_path: [tools]\n  weather:\n    runner: service\n    url: {url}\n  die:\n    runner: local\n    entry: sample_tool:die\n    python_path: [tools]\n"
    );
    let tools = ToolsFile::from_yaml(&yaml, "tools.yaml", &fixture("")).unwrap();
    let guard = ScriptedGuard::new(&[("greet", Action::Allow), ("weather", Action::Allow)]);
    let state = Arc::new(ToolsService {
        guard,
        tools,
        runner: ToolRunner::default(),
        approval_timeout: Duration::from_secs(1),
    });
    let app = tools_router(Arc::clone(&state));

    let (status, report) = post_json(
        app.clone(),
        r#"{"tool_name": "greet", "payload": {"name": "Cy"}, "session_id": "s1"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["decision"], "allow");
    assert_eq!(report["result"]["message"], "Hello Cy");
    assert_eq!(report["trace"]["runner"], "local");
    assert_eq!(report["session_id"], "s1");

    let (_, report) = post_json(app.clone(), r#"{"tool_name": "weather", "tool_args": {"name": "Di"}}"#).await;
    assert_eq!(report["result"]["message"], "Hello Di");
    assert_eq!(report["trace"]["service_url"], url);

    let (status, report) = post_json(app.clone(), r#"{"tool_name": "die", "payload": {}}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["decision"], "deny");
    assert_eq!(report["executed"], false);

    let (status, body) = post_json(app.clone(), r#"{"tool_name": "rm", "payload": {}}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "unknown tool `rm`");

    let (status, body) = post_json(app.clone(), r#"{"tool_name": "greet", "payload": [1]}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["detail"].as_str().unwrap().contains("payload"));

    let (status, body) = post_json(app, r#"{"payload": {}}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["detail"].as_str().unwrap().contains("tool_name"), "{body}");
    let _ = Map::<String, Value>::new();
}
