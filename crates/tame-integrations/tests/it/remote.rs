//! The proxy and the tool runner deciding through a real Tame server
//! (tame-server over SQLite on 127.0.0.1): results recorded there, approvals
//! granted by an admin over HTTP and released before the call runs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tame_integrations::run::exit;
use tame_integrations::{
    CallContext, Guard, McpProxyOptions, RemoteGuard, RunnerSpec, TlsRoots, ToolBinding, ToolRunner, run_guarded,
    run_mcp_proxy_with,
};
use tame_server::{AppState, Auth, Limits, LoadedPolicy};
use tame_store::{SqliteOptions, SqliteStore, Store};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::common::fixture;

struct Server {
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = fixture("policy.yml");
        let source = std::fs::read_to_string(&path).unwrap();
        let store = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let loaded = LoadedPolicy {
            policy: tame_engine::Policy::from_yaml(&source, "policy.yml").unwrap(),
            source,
            origin: path.display().to_string(),
            loaded_at: jiff::Timestamp::now(),
        };
        let state = AppState::new(loaded, None, store, Auth::default(), Limits::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, tame_server::app(state)).await.unwrap() });
        Server {
            url,
            http: TlsRoots::system().http_client(reqwest::Client::builder()).unwrap(),
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Approves the first pending approval once one shows up.
    async fn approve_next(&self, reason: &str) -> String {
        for _ in 0..200 {
            let list = self.get("/api/v1/approvals").await;
            if let Some(id) = list["approvals"][0]["approval_id"].as_str() {
                let url = format!("{}/api/v1/approvals/{id}/approve", self.url);
                let answer = self
                    .http
                    .post(url)
                    .json(&json!({"reason": reason, "by": "tester"}))
                    .send()
                    .await
                    .unwrap();
                assert!(answer.status().is_success(), "{answer:?}");
                return id.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no approval showed up");
    }
}

fn call(id: i64, tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
}

#[tokio::test]
async fn the_proxy_decides_records_and_releases_approvals_through_the_server() {
    let server = Server::start().await;
    let guard = RemoteGuard::new(&server.url, None).unwrap();
    guard.load_hidden().await.unwrap();
    assert!(guard.denies_unconditionally("delete_file"));
    assert!(!guard.denies_unconditionally("read_file"));

    let opts = McpProxyOptions {
        command: vec!["python3".into(), fixture("mini_server.py").display().to_string()],
        session_id: Some("remote-session".into()),
        agent_id: Some("remote-agent".into()),
        approval_timeout: Duration::from_secs(20),
        ..McpProxyOptions::default()
    };
    let (mut client_tx, proxy_in) = tokio::io::duplex(1 << 16);
    let (proxy_out, client_rx) = tokio::io::duplex(1 << 16);
    let proxy = tokio::spawn(async move { run_mcp_proxy_with(Arc::new(guard), &opts, proxy_in, proxy_out).await });
    let mut replies = BufReader::new(client_rx).lines();
    let mut ask = async move |line: String| -> Value {
        client_tx.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(30), replies.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str(&reply).unwrap()
    };

    let echo = ask(call(1, "echo", json!({"text": "hi"}))).await;
    assert_eq!(echo["result"]["content"][0]["text"], r#"ran echo {"text": "hi"}"#);
    let denied = ask(call(2, "read_file", json!({"path": "/etc/shadow"}))).await;
    assert_eq!(denied["result"]["isError"], true);
    assert_eq!(
        denied["result"]["content"][0]["text"],
        "System paths are off limits (/etc/shadow)"
    );

    // An admin approves while the proxy waits; the call then runs.
    let (paid, approval_id) = tokio::join!(
        ask(call(3, "pay", json!({"amount": 7}))),
        server.approve_next("looks fine")
    );
    assert_eq!(
        paid["result"]["content"][0]["text"], r#"ran pay {"amount": 7}"#,
        "{paid:#}"
    );

    drop(ask);
    assert_eq!(proxy.await.unwrap().unwrap(), 0);

    // The server's log: decisions, the release, and the recorded results.
    let log = server.get("/api/v1/sessions/remote-session").await;
    let entries = log.as_array().unwrap_or_else(|| panic!("{log:#}"));
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["tool_name"].as_str().unwrap(),
                e["policy_decision"].as_str().unwrap(),
                e["execution_status"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("echo", "allow", "success"),
            ("read_file", "deny", "-"),
            ("pay", "approve", "-"),
            ("pay", "allow", "success")
        ],
        "{entries:#?}"
    );
    assert!(entries.iter().all(|e| e["agent_id"] == "remote-agent"));
    let approval = server.get(&format!("/api/v1/approvals/{approval_id}")).await;
    assert_eq!(approval["state"], "approved");
}

#[tokio::test]
async fn the_tool_runner_records_trace_fields_on_the_server() {
    let server = Server::start().await;
    let guard = RemoteGuard::new(&server.url, None).unwrap();
    let runner = ToolRunner::default();
    let greet = ToolBinding {
        name: "greet".into(),
        runner: RunnerSpec::Local {
            entry: "sample_tool:greet".into(),
            python: None,
            python_path: vec![fixture("tools")],
            cwd: None,
            sandbox: false,
        },
        timeout_seconds: Some(5.0),
    };
    let ctx = CallContext {
        session_id: Some("runner-session".into()),
        ..CallContext::default()
    };
    let report = run_guarded(
        &guard,
        &runner,
        &greet,
        &json!({"name": "Ann"}),
        &ctx,
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(report.exit_code(), exit::OK, "{report:#?}");

    let pay = ToolBinding {
        name: "pay".into(),
        ..greet.clone()
    };
    let report = run_guarded(&guard, &runner, &pay, &json!({}), &ctx, Duration::from_millis(300)).await;
    assert_eq!(report.exit_code(), exit::PENDING_APPROVAL, "{report:#?}");
    assert!(report.approval_id.is_some());

    let log = server.get("/api/v1/sessions/runner-session").await;
    let first = &log[0];
    assert_eq!(first["tool_name"], "greet");
    assert_eq!(first["execution_status"], "success");
    let result = &first["tool_result"];
    assert_eq!(result["trace"]["runner"], "local", "{first:#}");
    assert_eq!(result["trace"]["timeout_ms"], 5000);
    assert_eq!(result["trace"]["protocol_version"], 1);
    assert_eq!(log[1]["policy_decision"], "approve");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let guard = RemoteGuard::new("http://127.0.0.1:1", None).unwrap();
    let err = guard
        .enforce(&tame_integrations::ToolCall::new("echo", json!({}), "s"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("cannot reach the tame server"), "{err:#}");
    let report = run_guarded(
        &guard,
        &ToolRunner::default(),
        &ToolBinding {
            name: "greet".into(),
            runner: RunnerSpec::Service {
                url: "http://127.0.0.1:1/run".into(),
                entry: None,
                kind: None,
                required_guarantees: Default::default(),
            },
            timeout_seconds: None,
        },
        &json!({}),
        &CallContext::default(),
        Duration::from_secs(1),
    )
    .await;
    assert!(!report.executed);
    assert_eq!(report.error.as_ref().unwrap().kind, "PolicyUnavailable");
    assert_eq!(
        report.exit_code(),
        exit::TOOL_FAILED,
        "no decision is an error, not a deny"
    );
    let err = RemoteGuard::new("not a url", None).unwrap_err();
    assert!(err.to_string().contains("invalid api url `not a url`"), "{err}");
}
