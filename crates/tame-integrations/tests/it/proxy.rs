//! The MCP proxy in process (scripted guard, stdlib MCP-style server).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tame_engine::Action;
use tame_integrations::{ApprovalOutcome, CallStatus, McpProxyOptions, run_mcp_proxy_with};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{ScriptedGuard, by_id, fixture, json_lines};

fn mini_server_opts() -> McpProxyOptions {
    McpProxyOptions {
        command: vec!["python3".into(), fixture("mini_server.py").display().to_string()],
        agent_id: Some("agent-7".into()),
        session_id: Some("sess-1".into()),
        ..McpProxyOptions::default()
    }
}

/// Feeds `lines` to the proxy as the client, then closes stdin unless
/// `keep_open`; returns the exit code and everything the client received.
async fn session(
    guard: Arc<ScriptedGuard>,
    opts: McpProxyOptions,
    lines: &[String],
    keep_open: bool,
) -> (i32, Vec<Value>) {
    let (mut client_tx, proxy_in) = tokio::io::duplex(1 << 16);
    let (proxy_out, mut client_rx) = tokio::io::duplex(1 << 16);
    let proxy = tokio::spawn(async move { run_mcp_proxy_with(guard, &opts, proxy_in, proxy_out).await });
    let reader = tokio::spawn(async move {
        let mut out = String::new();
        client_rx.read_to_string(&mut out).await.unwrap();
        out
    });
    for line in lines {
        client_tx.write_all(line.as_bytes()).await.unwrap();
        client_tx.write_all(b"\n").await.unwrap();
    }
    let keep = if keep_open {
        Some(client_tx)
    } else {
        drop(client_tx);
        None
    };
    let code = tokio::time::timeout(Duration::from_secs(60), proxy)
        .await
        .expect("proxy hung")
        .unwrap()
        .unwrap();
    drop(keep);
    let out = reader.await.unwrap();
    (code, json_lines(&out))
}

fn call(id: i64, tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
}

fn init() -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}).to_string()
}

fn text_of(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn allow_forwards_deny_answers_and_malformed_lines_get_errors() {
    let guard = Arc::new(ScriptedGuard::new(&[
        ("echo", Action::Allow),
        ("delete_file", Action::Deny),
    ]));
    let marker = tempfile::NamedTempFile::new().unwrap();
    let mut opts = mini_server_opts();
    // The server finds the marker path through the environment it inherits.
    // SAFETY-free: set for this test's child only through a wrapper command.
    opts.command = vec![
        "env".into(),
        format!("MINI_SERVER_MARKER={}", marker.path().display()),
        "python3".into(),
        fixture("mini_server.py").display().to_string(),
    ];
    let lines = vec![
        init(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        "{this is not json".to_owned(),
        call(1, "echo", json!({"text": "hi"})),
        call(2, "delete_file", json!({"path": "/tmp/x"})),
        "42".to_owned(),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"arguments": {}}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "echo", "arguments": [1]}})
            .to_string(),
        json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo"}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}).to_string(),
    ];
    let (code, out) = session(Arc::clone(&guard), opts, &lines, false).await;
    assert_eq!(code, 0, "{out:#?}");

    assert_eq!(by_id(&out, 0)["result"]["serverInfo"]["name"], "mini");
    let allowed = by_id(&out, 1);
    assert_eq!(text_of(&allowed), r#"ran echo {"text": "hi"}"#);
    assert_eq!(allowed["result"]["isError"], false);

    let denied = by_id(&out, 2);
    assert_eq!(denied["result"]["isError"], true);
    assert_eq!(text_of(&denied), "scripted deny of delete_file");
    assert_eq!(denied["result"]["_meta"]["tame"]["rule_name"], "rule_for_delete_file");

    let errors: Vec<&Value> = out.iter().filter(|m| m["id"].is_null()).collect();
    let codes: Vec<i64> = errors.iter().map(|m| m["error"]["code"].as_i64().unwrap()).collect();
    assert_eq!(codes, vec![-32700, -32600], "{errors:#?}");
    assert_eq!(by_id(&out, 3)["error"]["code"], -32602);
    assert_eq!(by_id(&out, 4)["error"]["code"], -32602);
    // tools/list passes through unchanged (no --hide-denied).
    assert_eq!(by_id(&out, 5)["result"]["tools"].as_array().unwrap().len(), 6);

    // Only the allowed call ran; the tools/call notification was dropped.
    let ran: Vec<&Value> = out.iter().filter(|m| text_of(m).starts_with("ran ")).collect();
    assert_eq!(ran.len(), 1, "{ran:#?}");
    let calls = guard.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].session_id, "sess-1");
    assert_eq!(calls[0].agent_id.as_deref(), Some("agent-7"));
    assert_eq!(calls[0].tool_args, json!({"text": "hi"}));

    let records = guard.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0.log_id.as_deref(), Some("log-1"));
    assert_eq!(records[0].1.status, CallStatus::Success);
    assert_eq!(records[0].1.result["content"][0]["text"], r#"ran echo {"text": "hi"}"#);

    // The server saw stdin close and exited on its own.
    assert_eq!(std::fs::read_to_string(marker.path()).unwrap(), "clean-exit");
}

#[tokio::test]
async fn approvals_forward_when_approved_and_explain_otherwise() {
    for (outcome, ran, expect) in [
        (ApprovalOutcome::Approved, true, r#"ran pay {"amount": 5}"#.to_owned()),
        (
            ApprovalOutcome::Pending,
            false,
            "pending approval id: appr-1".to_owned(),
        ),
        (
            ApprovalOutcome::Rejected(Some("too much".into())),
            false,
            "was rejected: too much".to_owned(),
        ),
    ] {
        let mut guard = ScriptedGuard::new(&[("pay", Action::Approve)]);
        guard.approval = Some(outcome.clone());
        let guard = Arc::new(guard);
        let mut opts = mini_server_opts();
        opts.approval_timeout = Duration::from_secs(600);
        let (code, out) = session(
            Arc::clone(&guard),
            opts,
            &[init(), call(1, "pay", json!({"amount": 5}))],
            false,
        )
        .await;
        assert_eq!(code, 0);
        let answer = by_id(&out, 1);
        assert!(text_of(&answer).contains(&expect), "{outcome:?}: {answer:#}");
        assert_eq!(answer["result"]["isError"], !ran, "{outcome:?}");
        assert_eq!(guard.records().len(), usize::from(ran));
        let waited = guard.waited.lock().unwrap().clone();
        assert_eq!(waited.len(), 1);
        assert_eq!(waited[0].0, "appr-1");
        // The wait is bounded below MCP clients' usual 60 s timeout.
        assert!(waited[0].1 < Duration::from_secs(60));
    }
}

#[tokio::test]
async fn an_approved_call_is_released_before_it_runs() {
    let mut guard = ScriptedGuard::new(&[("pay", Action::Approve)]);
    guard.approval = Some(ApprovalOutcome::Approved);
    let guard = Arc::new(guard);
    let (_, out) = session(
        Arc::clone(&guard),
        mini_server_opts(),
        &[init(), call(1, "pay", json!({"amount": 5}))],
        false,
    )
    .await;
    assert_eq!(by_id(&out, 1)["result"]["isError"], false);
    // The result is recorded under the release's log entry.
    assert_eq!(guard.records()[0].0.log_id.as_deref(), Some("released-appr-1"));

    let mut guard = ScriptedGuard::new(&[("pay", Action::Approve)]);
    guard.approval = Some(ApprovalOutcome::Approved);
    guard.deny_on_release = true;
    let guard = Arc::new(guard);
    let (_, out) = session(
        Arc::clone(&guard),
        mini_server_opts(),
        &[init(), call(1, "pay", json!({"amount": 5}))],
        false,
    )
    .await;
    let answer = by_id(&out, 1);
    assert_eq!(answer["result"]["isError"], true);
    assert!(
        text_of(&answer).contains("granted but the call is denied: released appr-1"),
        "{answer:#}"
    );
    assert!(guard.records().is_empty());
}

#[tokio::test]
async fn server_requests_and_client_responses_pass_through_unchanged() {
    let guard = Arc::new(ScriptedGuard::new(&[("ask_client", Action::Allow)]));
    // Odd spacing on purpose: the proxy relays lines, it does not re-encode.
    let answer = r#"{"jsonrpc":"2.0", "id":"srv-1", "result":{"roots":[]}}"#.to_owned();
    let (tx, proxy_in) = tokio::io::duplex(1 << 16);
    let (proxy_out, rx) = tokio::io::duplex(1 << 16);
    let opts = mini_server_opts();
    let proxy = tokio::spawn(async move { run_mcp_proxy_with(guard, &opts, proxy_in, proxy_out).await });
    let mut tx = tx;
    let mut lines = tokio::io::BufReader::new(rx).lines();
    tx.write_all(format!("{}\n", call(1, "ask_client", json!({}))).as_bytes())
        .await
        .unwrap();
    let request = lines.next_line().await.unwrap().unwrap();
    assert_eq!(
        request,
        r#"{"jsonrpc":"2.0","id":"srv-1","method":"roots/list","params":{ }}"#
    );
    tx.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
    let reply: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        text_of(&reply),
        r#"client said {"id": "srv-1", "jsonrpc": "2.0", "result": {"roots": []}}"#
    );
    drop(tx);
    assert_eq!(proxy.await.unwrap().unwrap(), 0);
}

#[tokio::test]
async fn hide_denied_filters_tools_list() {
    let mut guard = ScriptedGuard::new(&[]);
    guard.hidden = vec!["delete_file".into(), "crash".into()];
    let mut opts = mini_server_opts();
    opts.hide_denied = true;
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}).to_string();
    let (_, out) = session(Arc::new(guard), opts, &[init(), list], false).await;
    let list = by_id(&out, 9);
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "read_file", "pay", "slow"]);
}

#[tokio::test]
async fn an_unreachable_policy_fails_closed() {
    let mut guard = ScriptedGuard::new(&[("echo", Action::Allow)]);
    guard.fail = true;
    let (_, out) = session(
        Arc::new(guard),
        mini_server_opts(),
        &[init(), call(1, "echo", json!({"text": "x"}))],
        false,
    )
    .await;
    let answer = by_id(&out, 1);
    assert_eq!(answer["result"]["isError"], true);
    assert!(text_of(&answer).contains("policy server unreachable"), "{answer:#}");
    assert!(!out.iter().any(|m| text_of(m).starts_with("ran ")));
}

#[tokio::test]
async fn batches_are_enforced_element_by_element() {
    let guard = Arc::new(ScriptedGuard::new(&[("echo", Action::Allow)]));
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "a"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "delete_file", "arguments": {"path": "/"}}}
    ]);
    let (_, out) = session(
        guard,
        mini_server_opts(),
        &[init(), batch.to_string(), "[]".into()],
        false,
    )
    .await;
    assert_eq!(text_of(&by_id(&out, 1)), r#"ran echo {"text": "a"}"#);
    assert_eq!(by_id(&out, 2)["result"]["isError"], true);
    assert!(out.iter().any(|m| m["id"].is_null() && m["error"]["code"] == -32600));
}

#[tokio::test]
async fn a_crashing_server_errors_pending_requests_and_exits_nonzero() {
    let guard = Arc::new(ScriptedGuard::new(&[("crash", Action::Allow)]));
    // The client stays connected: the proxy must notice the crash by itself.
    let (code, out) = session(
        Arc::clone(&guard),
        mini_server_opts(),
        &[init(), call(1, "crash", json!({}))],
        true,
    )
    .await;
    assert_eq!(code, 3, "the server's exit code is passed on");
    let answer = by_id(&out, 1);
    assert_eq!(answer["error"]["code"], -32603);
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("exited"),
        "{answer:#}"
    );
    assert!(guard.records().is_empty());
}

#[tokio::test]
async fn a_server_that_ignores_stdin_eof_gets_sigterm_then_sigkill() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let marker_path = marker.path().display().to_string();
    // Exits on SIGTERM, leaving a mark.
    let polite = "import signal, sys, time\n\
        def bye(*_):\n    open(sys.argv[1], 'w').write('term')\n    sys.exit(0)\n\
        signal.signal(signal.SIGTERM, bye)\ntime.sleep(120)\n";
    // Ignores SIGTERM: only SIGKILL ends it.
    let stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(120)\n";
    for (script, marked) in [(polite, true), (stubborn, false)] {
        std::fs::write(marker.path(), "").unwrap();
        let guard = Arc::new(ScriptedGuard::new(&[]));
        let opts = McpProxyOptions {
            command: vec!["python3".into(), "-c".into(), script.into(), marker_path.clone()],
            // Long enough for python (behind a pyenv shim, on a busy machine) to
            // install its handler before the signal comes.
            shutdown_grace: Duration::from_secs(3),
            ..McpProxyOptions::default()
        };
        let (code, out) = session(guard, opts, &[], false).await;
        assert_eq!(code, 0);
        assert!(out.is_empty());
        assert_eq!(
            std::fs::read_to_string(marker.path()).unwrap() == "term",
            marked,
            "{script}"
        );
    }
}

#[tokio::test]
async fn a_missing_server_command_is_a_clear_error() {
    let guard = Arc::new(ScriptedGuard::new(&[]));
    let opts = McpProxyOptions {
        command: vec!["/nonexistent/mcp-server".into()],
        ..McpProxyOptions::default()
    };
    let (_tx, rx) = tokio::io::duplex(64);
    let err = run_mcp_proxy_with(guard, &opts, rx, tokio::io::sink())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot start mcp server `/nonexistent/mcp-server`"),
        "{err:#}"
    );
    let empty = McpProxyOptions::default();
    let (_tx, rx) = tokio::io::duplex(64);
    let err = run_mcp_proxy_with(Arc::new(ScriptedGuard::new(&[])), &empty, rx, tokio::io::sink())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no mcp server command"), "{err}");
}

#[tokio::test]
async fn non_utf8_input_is_a_parse_error_and_the_proxy_goes_on() {
    let guard = Arc::new(ScriptedGuard::new(&[("echo", Action::Allow)]));
    let opts = mini_server_opts();
    let (mut client_tx, proxy_in) = tokio::io::duplex(1 << 16);
    let (proxy_out, mut client_rx) = tokio::io::duplex(1 << 16);
    let proxy = tokio::spawn(async move { run_mcp_proxy_with(guard, &opts, proxy_in, proxy_out).await });
    client_tx
        .write_all(b"{\"jsonrpc\": \"2.0\", \"id\": \xff\xfe}\r\n")
        .await
        .unwrap();
    client_tx
        .write_all(format!("{}\r\n", call(1, "echo", json!({"text": "ok"}))).as_bytes())
        .await
        .unwrap();
    drop(client_tx);
    let code = tokio::time::timeout(Duration::from_secs(60), proxy)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
    let mut out = String::new();
    client_rx.read_to_string(&mut out).await.unwrap();
    let out = json_lines(&out);
    assert_eq!(out[0]["error"]["code"], -32700);
    assert!(
        out[0]["error"]["message"].as_str().unwrap().contains("utf-8"),
        "{:#}",
        out[0]
    );
    assert_eq!(text_of(&by_id(&out, 1)), r#"ran echo {"text": "ok"}"#);
}
