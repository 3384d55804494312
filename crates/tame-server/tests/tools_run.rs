//! `POST /api/v1/tools/run` through the router (`oneshot`): a local Python
//! tool (tool protocol v1) decided by the server's enforce path, its result
//! recorded in the audit log; denied tools do not run; unknown tools 404.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{Harness, harness, harness_with};
use serde_json::{Value, json};
use tame_integrations::ToolsFile;
use tame_server::{Auth, Limits};

/// `read_file` appends each path it is run with to `ran.txt` next to it, so
/// a test can tell whether it ran at all.
const TOOL: &str = r#"
import os

def read_file(payload):
    path = payload["path"]
    with open(os.path.join(os.path.dirname(__file__), "ran.txt"), "a") as f:
        f.write(path + "\n")
    return {"content": "contents of " + path}

def query(payload):
    return {"rows": 3, "database": payload["database"]}
"#;

const TOOLS_YAML: &str = r#"
tools:
  read_file:
    runner: local
    entry: pytools.files:read_file
    python_path: [./src]
    timeout_seconds: 20
  query_database:
    runner: local
    entry: pytools.files:query
    python_path: [./src]
  delete_everything:
    runner: local
    entry: pytools.files:read_file
    python_path: [./src]
"#;

/// Writes the tool and its tools file into the harness's directory and
/// registers them with the server.
fn with_tools(h: &Harness) -> std::path::PathBuf {
    let pkg = h.dir.path().join("src/pytools");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("__init__.py"), "").unwrap();
    std::fs::write(pkg.join("files.py"), TOOL).unwrap();
    let file = h.dir.path().join("tools.yaml");
    std::fs::write(&file, TOOLS_YAML).unwrap();
    assert!(h.state.set_tools(ToolsFile::from_file(&file).unwrap()));
    pkg.join("ran.txt")
}

fn ran(marker: &std::path::Path) -> String {
    std::fs::read_to_string(marker).unwrap_or_default()
}

#[tokio::test]
async fn allowed_tool_runs_and_its_result_is_in_the_audit_log() {
    let h = harness();
    let marker = with_tools(&h);
    let r = h
        .post(
            "/api/v1/tools/run",
            json!({"tool_name": "read_file", "payload": {"path": "/tmp/notes.txt"}, "session_id": "s-tools", "trace_id": "trace-42"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["decision"], "allow");
    assert_eq!(r.json["rule_name"], "allow_rest");
    assert_eq!(r.json["executed"], true);
    assert_eq!(r.json["ok"], true, "{}", r.text);
    assert_eq!(r.json["result"], json!({"content": "contents of /tmp/notes.txt"}));
    let trace = &r.json["trace"];
    assert_eq!(trace["runner"], "local");
    assert_eq!(trace["protocol_version"], 1);
    assert_eq!(trace["trace_id"], "trace-42");
    assert_eq!(trace["timeout_ms"], 20_000);
    assert_eq!(trace["exit_code"], 0);
    assert_eq!(trace["python_env"], "python3");
    assert!(trace["python_path"].as_str().unwrap().ends_with("src"), "{trace}");
    assert!(trace["duration_ms"].is_u64());
    assert_eq!(ran(&marker), "/tmp/notes.txt\n");

    // The decision is in the session's log, with the outcome and its trace
    // recorded under the same log id.
    let log_id = r.json["log_id"].as_str().unwrap().to_owned();
    let session = h.get("/api/v1/sessions/s-tools").await;
    assert_eq!(session.status, StatusCode::OK, "{}", session.text);
    let entries = session.json.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", session.text);
    let entry = &entries[0];
    assert_eq!(entry["id"], log_id.as_str());
    assert_eq!(entry["tool_name"], "read_file");
    assert_eq!(entry["policy_decision"], "allow");
    assert_eq!(entry["execution_status"], "success", "{entry}");
    let stored = entry["tool_result"].to_string();
    assert!(stored.contains("contents of /tmp/notes.txt"), "{stored}");
    assert!(stored.contains("trace-42"), "{stored}");

    // And in the tamper-evident export.
    let export = h.get("/api/v1/audit/export").await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(export.text.contains(&log_id), "{}", export.text);
    // The runner ran the tool: its result is the runner's, not the agent's.
    let result: Value = export
        .text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["kind"] == "result")
        .unwrap();
    assert_eq!(result["record"]["source"], "runner", "{result}");
}

#[tokio::test]
async fn denied_tools_are_not_run() {
    let h = harness();
    let marker = with_tools(&h);
    // A deny rule with a condition.
    let r = h
        .post(
            "/api/v1/tools/run",
            json!({"tool_name": "read_file", "payload": {"path": "/etc/passwd"}, "session_id": "s-deny"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["decision"], "deny");
    assert_eq!(r.json["rule_name"], "block_etc");
    assert_eq!(r.json["reason"], "System paths are off limits (/etc/passwd)");
    assert_eq!(r.json["executed"], false);
    assert_eq!(r.json["ok"], false);
    assert!(r.json.get("result").is_none(), "{}", r.text);
    // The policy's default (deny) for a registered tool no rule allows.
    let r = h
        .post(
            "/api/v1/tools/run",
            json!({"tool_name": "delete_everything", "payload": {"path": "/"}, "session_id": "s-deny"}),
        )
        .await;
    assert_eq!(r.json["decision"], "deny", "{}", r.text);
    assert_eq!(r.json["executed"], false);
    assert_eq!(ran(&marker), "", "a denied tool ran");

    // Both decisions are logged like any enforce.
    let session = h.get("/api/v1/sessions/s-deny").await;
    let decisions: Vec<&Value> = session
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["policy_decision"])
        .collect();
    assert_eq!(decisions, [&json!("deny"), &json!("deny")], "{}", session.text);
}

#[tokio::test]
async fn unknown_tools_and_bad_bodies() {
    let h = harness();
    let marker = with_tools(&h);
    let r = h
        .post("/api/v1/tools/run", json!({"tool_name": "read_secret", "payload": {}}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.json["detail"], "unknown tool `read_secret`");
    let r = h.post("/api/v1/tools/run", json!({"payload": {}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = h
        .post("/api/v1/tools/run", json!({"tool_name": "read_file", "payload": [1]}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(ran(&marker), "");
    // Nothing was decided, so nothing was logged.
    let sessions = h.get("/api/v1/sessions").await;
    assert_eq!(sessions.json["total_count"], 0, "{}", sessions.text);
}

#[tokio::test]
async fn without_a_tools_file_the_route_is_not_found() {
    let h = harness();
    let r = h
        .post(
            "/api/v1/tools/run",
            json!({"tool_name": "read_file", "payload": {"path": "/tmp/x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(
        r.json["detail"].as_str().unwrap().contains("no tools file"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn the_agent_key_is_required() {
    let h = harness_with(Auth::new(&["agent-k".into()], &["admin-k".into()]), Limits::default());
    let marker = with_tools(&h);
    let body = json!({"tool_name": "read_file", "payload": {"path": "/tmp/a"}}).to_string();
    let r = h.call("POST", "/api/v1/tools/run", Some(&body), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = h.call("POST", "/api/v1/tools/run", Some(&body), Some("wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(ran(&marker), "");
    // With the agent key the tool runs and its result is recorded (the
    // result endpoint's key check passes with the same key).
    let r = h.call("POST", "/api/v1/tools/run", Some(&body), Some("agent-k")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["ok"], true, "{}", r.text);
    assert_eq!(ran(&marker), "/tmp/a\n");
    let sid = r.json["session_id"].as_str().unwrap();
    let session = h
        .call("GET", &format!("/api/v1/sessions/{sid}"), None, Some("admin-k"))
        .await;
    assert!(session.text.contains("/tmp/a"), "{}", session.text);
    assert!(session.text.contains("contents of /tmp/a"), "{}", session.text);
}

#[tokio::test]
async fn the_route_is_documented() {
    let h = harness();
    let doc = h.get("/openapi.json").await;
    let op = &doc.json["paths"]["/api/v1/tools/run"]["post"];
    assert_eq!(op["x-tame-role"], "agent", "{op}");
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["required"],
        json!(["tool_name"])
    );
}

#[tokio::test]
async fn approvals_are_waited_for_and_released() {
    let limits = Limits {
        max_wait: Duration::from_secs(10),
        ..Limits::default()
    };
    let h = harness_with(Auth::default(), limits);
    with_tools(&h);
    let run = h.post(
        "/api/v1/tools/run",
        json!({"tool_name": "query_database", "payload": {"database": "production"}, "session_id": "s-appr"}),
    );
    let approve = async {
        // The run waits on its approval: find it and approve it.
        for _ in 0..200 {
            let pending = h.get("/api/v1/approvals?state=pending").await;
            if let Some(id) = pending.json["approvals"][0]["approval_id"].as_str() {
                let r = h
                    .post(
                        &format!("/api/v1/approvals/{id}/approve"),
                        json!({"reason": "ok", "by": "ops"}),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                return id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no pending approval appeared");
    };
    let (r, approval_id) = tokio::join!(run, approve);
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["decision"], "allow", "{}", r.text);
    assert_eq!(r.json["ok"], true, "{}", r.text);
    assert_eq!(r.json["result"], json!({"rows": 3, "database": "production"}));
    assert!(r.json["reason"].as_str().unwrap().contains(&approval_id), "{}", r.text);
    // The approve decision and the release are both in the log.
    let session = h.get("/api/v1/sessions/s-appr").await;
    let decisions: Vec<&Value> = session
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["policy_decision"])
        .collect();
    assert_eq!(decisions, [&json!("approve"), &json!("allow")], "{}", session.text);
}

#[tokio::test]
async fn an_undecided_approval_leaves_the_tool_unrun() {
    let limits = Limits {
        max_wait: Duration::from_secs(1),
        ..Limits::default()
    };
    let h = harness_with(Auth::default(), limits);
    with_tools(&h);
    let r = h
        .post(
            "/api/v1/tools/run",
            json!({"tool_name": "query_database", "payload": {"database": "production"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["decision"], "approve", "{}", r.text);
    assert_eq!(r.json["executed"], false);
    assert!(r.json["approval_id"].is_string(), "{}", r.text);
    assert!(r.json.get("result").is_none(), "{}", r.text);
}

/// One HTTP/1.1 request over a fresh connection: the status and the JSON body.
async fn http_post(addr: std::net::SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn server_config(dir: &std::path::Path) -> tame_server::ServerConfig {
    let policy = dir.join("policies.yml");
    std::fs::write(&policy, common::POLICY).unwrap();
    tame_server::ServerConfig {
        policy_path: policy,
        addr: "127.0.0.1:0".parse().unwrap(),
        // Not the harness's `tame.db`: one store per SQLite file.
        db_path: dir.join("served.db"),
        watch_policy: false,
        ..tame_server::ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_with_a_tools_file_runs_its_tools() {
    let h = harness();
    let marker = with_tools(&h);
    let config = tame_server::ServerConfig {
        tools_file: Some(h.dir.path().join("tools.yaml")),
        ..server_config(h.dir.path())
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, addr) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(tame_server::run_until(
        config,
        async move {
            let _ = stopped.await;
        },
        move |addr| {
            let _ = ready.send(addr);
        },
    ));
    let addr = addr.await.unwrap();
    let (status, report) = http_post(
        addr,
        "/api/v1/tools/run",
        &json!({"tool_name": "read_file", "tool_args": {"path": "/srv/data"}}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["result"]["content"], "contents of /srv/data");
    assert_eq!(ran(&marker), "/srv/data\n");
    let (status, report) = http_post(addr, "/api/v1/tools/run", &json!({"tool_name": "nope"})).await;
    assert_eq!((status, &report["detail"]), (404, &json!("unknown tool `nope`")));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_broken_tools_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools.yaml");
    std::fs::write(&tools, "tools:\n  x:\n    runner: teleport\n").unwrap();
    let config = tame_server::ServerConfig {
        tools_file: Some(tools),
        ..server_config(dir.path())
    };
    let err = tame_server::run_until(config, async {}, |_| panic!("the server started"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("tools file"), "{err:#}");
}
