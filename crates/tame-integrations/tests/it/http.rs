//! The MCP proxy over Streamable HTTP in process: the listener (scripted
//! guard, the stdlib mini server behind it) driven with raw HTTP, and the
//! HTTP side towards a server that cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tame_engine::Action;
use tame_integrations::mcp_listen::{self, Sessions};
use tame_integrations::{ApprovalOutcome, CallStatus, McpProxyOptions, TlsRoots, run_mcp_proxy_with};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{ScriptedGuard, by_id, fixture, json_lines};

/// The listener over `guard` and the mini server, on a free port.
async fn listener(guard: Arc<ScriptedGuard>) -> (String, Arc<Sessions>) {
    let opts = McpProxyOptions {
        command: vec!["python3".into(), fixture("mini_server.py").display().to_string()],
        approval_timeout: Duration::from_secs(600),
        ..McpProxyOptions::default()
    };
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (app, sessions) = mcp_listen::router(guard, opts, addr).unwrap();
    tokio::spawn(async move { axum::serve(socket, app).await.unwrap() });
    (format!("http://{addr}{}", mcp_listen::MCP_PATH), sessions)
}

/// A plain HTTP client (reqwest is built without a default TLS provider).
fn http() -> reqwest::Client {
    TlsRoots::system().http_client(reqwest::Client::builder()).unwrap()
}

fn init() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
        "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
}

fn call(id: i64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

/// POSTs `body` (with the session, if any) and returns the status, the
/// session header and the messages of the answer (SSE or JSON).
async fn post(url: &str, session: Option<&str>, body: &Value) -> (u16, Option<String>, Vec<Value>) {
    let mut request = http()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = tokio::time::timeout(Duration::from_secs(60), request.send())
        .await
        .expect("no answer within 60 s")
        .unwrap();
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let text = tokio::time::timeout(Duration::from_secs(60), response.text())
        .await
        .expect("the stream did not end within 60 s")
        .unwrap();
    let messages = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    } else if text.is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(&text).unwrap()]
    };
    (status, id, messages)
}

#[tokio::test]
async fn over_http_allow_runs_deny_answers_and_an_approved_call_is_released() {
    let mut guard = ScriptedGuard::new(&[
        ("echo", Action::Allow),
        ("delete_file", Action::Deny),
        ("pay", Action::Approve),
    ]);
    guard.approval = Some(ApprovalOutcome::Approved);
    let guard = Arc::new(guard);
    let (url, sessions) = listener(Arc::clone(&guard)).await;

    let (status, session, answers) = post(&url, None, &init()).await;
    assert_eq!(status, 200);
    let session = session.expect("initialize names the session");
    assert_eq!(answers[0]["result"]["serverInfo"]["name"], "mini");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(&url, Some(&session), &initialized).await.0, 202);

    let (_, _, answers) = post(&url, Some(&session), &call(1, "echo", json!({"text": "hi"}))).await;
    assert_eq!(answers[0]["result"]["content"][0]["text"], r#"ran echo {"text": "hi"}"#);
    let (_, _, answers) = post(&url, Some(&session), &call(2, "delete_file", json!({"path": "/"}))).await;
    assert_eq!(answers[0]["result"]["isError"], true);
    // A batch: each call enforced, each answered on this POST's stream.
    let batch = json!([call(3, "pay", json!({"amount": 5})), call(4, "delete_file", json!({}))]);
    let (_, _, answers) = post(&url, Some(&session), &batch).await;
    assert_eq!(answers.len(), 2);
    assert_eq!(
        by_id(&answers, 3)["result"]["content"][0]["text"],
        r#"ran pay {"amount": 5}"#
    );
    assert_eq!(by_id(&answers, 4)["result"]["isError"], true);

    // The server saw only the allowed and released calls; their results
    // are recorded (as the answers go out), the released one under the
    // release's log entry.
    for _ in 0..100 {
        if guard.records().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = guard.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].1.status, CallStatus::Success);
    assert_eq!(records[1].0.log_id.as_deref(), Some("released-appr-3"));
    let calls = guard.calls();
    assert!(calls.iter().all(|c| c.session_id == calls[0].session_id));
    assert_eq!(guard.waited.lock().unwrap()[0].0, "appr-3");

    // DELETE ends the session; it is unknown afterwards.
    let deleted = http()
        .delete(&url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    assert!(sessions.is_empty());
    assert_eq!(post(&url, Some(&session), &call(5, "echo", json!({}))).await.0, 404);
}

#[tokio::test]
async fn a_server_request_reaches_the_client_and_its_answer_the_server() {
    let guard = Arc::new(ScriptedGuard::new(&[("ask_client", Action::Allow)]));
    let (url, _) = listener(guard).await;
    let (_, session, _) = post(&url, None, &init()).await;
    let session = session.unwrap();
    // The call's stream carries the server's request (no GET stream is
    // open), then, once the client answered it on another POST, the result.
    let url2 = url.clone();
    let session2 = session.clone();
    let asking = tokio::spawn(async move { post(&url2, Some(&session2), &call(1, "ask_client", json!({}))).await });
    // Wait for the server's request to be in flight, then answer it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = json!({"jsonrpc": "2.0", "id": "srv-1", "result": {"roots": []}});
    assert_eq!(post(&url, Some(&session), &answer).await.0, 202);
    let (_, _, messages) = asking.await.unwrap();
    assert_eq!(messages[0]["method"], "roots/list");
    assert_eq!(
        by_id(&messages, 1)["result"]["content"][0]["text"],
        r#"client said {"id": "srv-1", "jsonrpc": "2.0", "result": {"roots": []}}"#
    );
}

#[tokio::test]
async fn the_listener_checks_host_origin_and_content_type() {
    let guard = Arc::new(ScriptedGuard::new(&[]));
    let (url, sessions) = listener(guard).await;
    let client = http();
    let send = |headers: Vec<(&'static str, &'static str)>| {
        let mut request = client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .body(init().to_string());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let json = ("content-type", "application/json");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(send(vec![json, ("host", "attacker.example")]).await.unwrap()),
        421
    );
    assert_eq!(
        status(send(vec![json, ("origin", "http://attacker.example")]).await.unwrap()),
        403
    );
    assert_eq!(status(send(vec![("content-type", "text/plain")]).await.unwrap()), 415);
    assert_eq!(status(send(vec![]).await.unwrap()), 415);
    // Nothing was opened by the refused requests.
    assert!(sessions.is_empty());
    assert_eq!(status(send(vec![json, ("host", "localhost:1234")]).await.unwrap()), 200);
    assert_eq!(sessions.len(), 1);
}

#[tokio::test]
async fn an_unreachable_http_server_answers_each_request_with_an_error() {
    let guard = Arc::new(ScriptedGuard::new(&[("echo", Action::Allow)]));
    // A port nothing listens on.
    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().port()
    };
    let opts = McpProxyOptions {
        url: Some(format!("http://127.0.0.1:{port}/mcp")),
        ..McpProxyOptions::default()
    };
    let (mut client_tx, proxy_in) = tokio::io::duplex(1 << 16);
    let (proxy_out, mut client_rx) = tokio::io::duplex(1 << 16);
    let proxy_guard = Arc::clone(&guard);
    let proxy = tokio::spawn(async move { run_mcp_proxy_with(proxy_guard, &opts, proxy_in, proxy_out).await });
    for message in [init(), call(1, "echo", json!({"text": "x"}))] {
        client_tx.write_all(format!("{message}\n").as_bytes()).await.unwrap();
    }
    // Read until both answers are in, then hang up.
    let mut out = String::new();
    for id in [0, 1] {
        until_answered(&mut client_rx, &mut out, id).await;
    }
    drop(client_tx);
    assert_eq!(proxy.await.unwrap().unwrap(), 0);
    let messages = json_lines(&out);
    for id in [0, 1] {
        let error = by_id(&messages, id)["error"]["message"].as_str().unwrap().to_owned();
        assert!(error.contains("cannot reach the mcp server"), "{error}");
    }
    // The allowed call's failure is recorded as its outcome.
    let records = guard.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.status, CallStatus::Error);
}

/// Reads the proxy's output until the answer to `id` is in.
async fn until_answered(client_rx: &mut tokio::io::DuplexStream, out: &mut String, id: i64) -> Value {
    let mut buf = vec![0; 1 << 16];
    loop {
        let messages = json_lines(out);
        if let Some(found) = messages.iter().find(|m| m["id"] == id) {
            return found.clone();
        }
        let n = tokio::time::timeout(Duration::from_secs(30), client_rx.read(&mut buf))
            .await
            .expect("no answer within 30 s")
            .unwrap();
        assert!(n > 0, "the proxy closed its output: {out}");
        out.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
}

#[tokio::test]
async fn a_result_is_recorded_before_the_client_sees_it() {
    // Recording is slow; the client's next call may use the result (a
    // provenance rule), so the session must hold it by the time the
    // client has it.
    let mut guard = ScriptedGuard::new(&[("echo", Action::Allow)]);
    guard.record_delay = Duration::from_millis(300);
    let guard = Arc::new(guard);
    let opts = McpProxyOptions {
        command: vec!["python3".into(), fixture("mini_server.py").display().to_string()],
        ..McpProxyOptions::default()
    };
    let (mut client_tx, proxy_in) = tokio::io::duplex(1 << 16);
    let (proxy_out, mut client_rx) = tokio::io::duplex(1 << 16);
    let proxy_guard = Arc::clone(&guard);
    let proxy = tokio::spawn(async move { run_mcp_proxy_with(proxy_guard, &opts, proxy_in, proxy_out).await });
    let mut out = String::new();
    for (i, text) in ["first", "second"].into_iter().enumerate() {
        let id = i64::try_from(i).unwrap() + 1;
        let message = call(id, "echo", json!({"text": text}));
        client_tx.write_all(format!("{message}\n").as_bytes()).await.unwrap();
        let answer = until_answered(&mut client_rx, &mut out, id).await;
        assert_eq!(answer["result"]["isError"], false);
        assert_eq!(guard.records().len(), i + 1, "answered before its result was recorded");
    }
    // In the order the server answered.
    let logged: Vec<_> = guard.records().iter().map(|(v, _)| v.log_id.clone().unwrap()).collect();
    assert_eq!(logged, ["log-1", "log-2"]);
    drop(client_tx);
    assert_eq!(proxy.await.unwrap().unwrap(), 0);
}

#[test]
fn print_config_prints_the_entry_that_runs_the_proxy() {
    let bin = env!("CARGO_BIN_EXE_tame-mcp-proxy");
    let policy = fixture("policy.yml");
    let out = std::process::Command::new(bin)
        .args([
            "--policy",
            &policy.display().to_string(),
            "--agent-id",
            "desk",
            "--print-config",
            "cursor",
        ])
        .args(["--", "npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &config["mcpServers"]["server-filesystem"];
    assert_eq!(entry["command"], bin);
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "--policy",
            policy.to_str().unwrap(),
            "--agent-id",
            "desk",
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "/tmp"
        ]
    );
    // Either a command or --url, not both, and not neither.
    let both = std::process::Command::new(bin)
        .args([
            "--policy",
            "p.yml",
            "--url",
            "http://127.0.0.1:1/mcp",
            "--",
            "python3",
            "s.py",
        ])
        .output()
        .unwrap();
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("not both"));
}
