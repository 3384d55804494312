//! Both HTTP clients over https: the remote guard against a real Tame
//! server and the tool runner against a protocol service, each served in
//! process over TLS with a certificate from a throwaway CA. Trusting that
//! CA, the calls go through; trusting another CA they fail on the
//! certificate, and with no roots at all the https URL is refused up front
//! while http still works.

use std::sync::Arc;

use axum::Json;
use axum::routing::post;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Map, Value, json};
use tame_engine::Action;
use tame_integrations::{
    CallOutcome, CallStatus, Guard, RemoteGuard, RunnerSpec, TlsRoots, ToolBinding, ToolCall, ToolRunner,
};
use tame_server::{AppState, Auth, Limits, LoadedPolicy};
use tame_store::{SqliteOptions, SqliteStore, Store};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

use crate::common::fixture;

/// A throwaway CA and a server certificate it signed for 127.0.0.1.
struct Pki {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (params, key, cert.pem())
}

fn pki() -> Pki {
    let (ca_params, ca_key, ca_pem) = ca("tame test CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem,
        server_chain: vec![cert.der().clone()],
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// Another CA's roots: a certificate of [`pki`] does not lead to them.
fn other_roots() -> TlsRoots {
    TlsRoots::from_pem(ca("some other CA").2.as_bytes()).unwrap()
}

/// Accepts TCP connections and finishes the TLS handshake before handing
/// them to axum; failed handshakes (a client refusing the certificate) are
/// skipped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `app` over TLS on 127.0.0.1; answers `https://127.0.0.1:PORT`.
async fn serve_tls(pki: &Pki, app: axum::Router) -> String {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", tcp.local_addr().unwrap());
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A Tame server (tame-server over SQLite) behind TLS, and its store.
async fn tame_server(pki: &Pki) -> (String, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture("policy.yml");
    let source = std::fs::read_to_string(&path).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap());
    let loaded = LoadedPolicy {
        policy: tame_engine::Policy::from_yaml(&source, "policy.yml").unwrap(),
        source,
        origin: path.display().to_string(),
        loaded_at: jiff::Timestamp::now(),
    };
    let state = AppState::new(loaded, None, store.clone(), Auth::default(), Limits::default());
    let url = serve_tls(pki, tame_server::app(state)).await;
    (url, store, dir)
}

/// A tool protocol service behind TLS: handshake, then a greeting.
async fn tool_service(pki: &Pki) -> String {
    let app = axum::Router::new()
        .route(
            "/capabilities/handshake",
            post(|| async { Json(json!({"ok": true, "enforcement": "enforced", "supported_guarantees": {}})) }),
        )
        .route(
            "/tools/run",
            post(|Json(body): Json<Value>| async move {
                let name = body["payload"]["name"].as_str().unwrap_or("?").to_owned();
                Json(json!({"ok": true, "result": {"message": format!("Hello {name} over tls")}}))
            }),
        );
    format!("{}/tools/run", serve_tls(pki, app).await)
}

fn binding(url: &str) -> ToolBinding {
    ToolBinding {
        name: "greeter".into(),
        runner: RunnerSpec::Service {
            url: url.into(),
            entry: None,
            kind: None,
            required_guarantees: Map::new(),
        },
        timeout_seconds: Some(10.0),
    }
}

#[tokio::test]
async fn the_remote_guard_enforces_and_records_over_https_with_a_trusted_ca() {
    let pki = pki();
    let (url, store, _dir) = tame_server(&pki).await;
    let roots = TlsRoots::from_pem(pki.ca_pem.as_bytes()).unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots.problem(), None);
    let guard = RemoteGuard::with_tls_roots(&url, None, &roots).unwrap();

    let call = ToolCall::new("echo", json!({"text": "hi"}), "tls-session");
    let allowed = guard.enforce(&call).await.unwrap();
    assert_eq!(allowed.decision, Action::Allow, "{allowed:?}");
    assert_eq!(allowed.rule_name.as_deref(), Some("allow_known_tools"));
    let log_id = allowed.log_id.clone().expect("the server names the log entry");

    let outcome = CallOutcome {
        status: CallStatus::Success,
        duration_ms: 3,
        error_message: None,
        result: json!({"echo": "hi"}),
        extra: Map::new(),
    };
    guard.record(&allowed, &call, &outcome).await.unwrap();
    let entry = store.log_entry(&log_id).unwrap().expect("the decision was logged");
    assert_eq!(entry.tool_name, "echo");
    assert_eq!(entry.session_id, "tls-session");
    assert_eq!(entry.execution_status.as_deref(), Some("success"));
    assert_eq!(entry.tool_result.unwrap()["result"], json!({"echo": "hi"}));

    let denied = guard
        .enforce(&ToolCall::new(
            "read_file",
            json!({"path": "/etc/shadow"}),
            "tls-session",
        ))
        .await
        .unwrap();
    assert_eq!(denied.decision, Action::Deny);
    assert_eq!(denied.reason, "System paths are off limits (/etc/shadow)");

    guard.load_hidden().await.unwrap();
    assert!(guard.denies_unconditionally("delete_file"));
    assert!(!guard.denies_unconditionally("echo"));
}

#[tokio::test]
async fn the_remote_guard_refuses_a_server_whose_certificate_it_does_not_trust() {
    let pki = pki();
    let (url, store, _dir) = tame_server(&pki).await;
    let guard = RemoteGuard::with_tls_roots(&url, None, &other_roots()).unwrap();
    let err = guard
        .enforce(&ToolCall::new("echo", json!({}), "untrusted"))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("cannot reach the tame server"), "{text}");
    assert!(text.contains("certificate"), "not a certificate error: {text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    // Nothing reached the server.
    assert_eq!(store.session_log("untrusted").unwrap(), None);
}

#[tokio::test]
async fn the_tool_runner_calls_an_https_service_with_a_trusted_ca() {
    let pki = pki();
    let url = tool_service(&pki).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let roots = TlsRoots::from_pem(pki.ca_pem.as_bytes()).unwrap();
    let runner = ToolRunner::with_tls_roots(std::time::Duration::from_secs(10), roots);
    let run = runner.execute(&binding(&url), &json!({"name": "Ada"}), "tr-tls").await;
    assert!(run.ok, "{run:#?}");
    assert_eq!(run.result, Some(json!({"message": "Hello Ada over tls"})));
    assert_eq!(run.trace.service_handshake.as_deref(), Some("ok"));
    assert_eq!(run.trace.enforcement_level.as_deref(), Some("enforced"));
}

#[tokio::test]
async fn the_tool_runner_refuses_a_service_whose_certificate_it_does_not_trust() {
    let pki = pki();
    let url = tool_service(&pki).await;
    let runner = ToolRunner::with_tls_roots(std::time::Duration::from_secs(10), other_roots());
    let run = runner.execute(&binding(&url), &json!({"name": "Ada"}), "tr-tls").await;
    assert!(!run.ok);
    let error = run.error.unwrap();
    assert_eq!(error.kind, "ServiceError");
    assert_eq!(error.reason_code.as_deref(), Some("unreachable"));
    assert!(error.message.contains("(handshake)"), "{}", error.message);
    assert!(error.message.contains("invalid peer certificate"), "{}", error.message);
    assert!(error.message.contains("UnknownIssuer"), "{}", error.message);
    // The handshake never completed: no handshake answer in the trace.
    assert_eq!(run.trace.service_handshake, None);
}

#[test]
fn pem_bundles_are_read_certificate_by_certificate() {
    let one = ca("first").2;
    let two = ca("second").2;
    let both = TlsRoots::from_pem(format!("{one}{two}").as_bytes()).unwrap();
    assert_eq!(both.len(), 2);
    assert!(!both.is_empty());

    let err = TlsRoots::from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("certificate 1 of the pem bundle"),
        "{err:#}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, &one).unwrap();
    assert_eq!(TlsRoots::from_pem_file(&file).unwrap().len(), 1);
    let err = TlsRoots::from_pem_file(&dir.path().join("missing.pem")).unwrap_err();
    assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");
    let err = TlsRoots::from_pem(b"").unwrap_err();
    assert_eq!(err.to_string(), "the pem bundle holds no certificate");
}

fn tools_call(id: i64, tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
}

/// Runs the proxy binary against `api_url` over the stdlib MCP server, with
/// `SSL_CERT_FILE` set to `cert_file` (the system's roots as this process
/// sees them), sends `lines` and closes its stdin.
async fn proxy_binary(api_url: &str, cert_file: &std::path::Path, lines: &[String]) -> (i32, Vec<Value>, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tame-mcp-proxy"))
        .args(["--api-url", api_url, "--hide-denied", "--session-id", "tls-proxy", "--"])
        .arg("python3")
        .arg(fixture("mini_server.py"))
        .env("SSL_CERT_FILE", cert_file)
        .env_remove("SSL_CERT_DIR")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        crate::common::json_lines(&String::from_utf8_lossy(&out.stdout)),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_binary_trusts_the_bundle_ssl_cert_file_names() {
    let pki = pki();
    let (url, store, dir) = tame_server(&pki).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let lines = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
        tools_call(2, "echo", json!({"text": "tls"})),
        tools_call(3, "delete_file", json!({"path": "x"})),
    ];
    let (code, out, stderr) = proxy_binary(&url, &ca_file, &lines).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("cannot read the server's policy"), "{stderr}");
    // --hide-denied read the rules over https.
    let listed = crate::common::by_id(&out, 1);
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo") && !names.contains(&"delete_file"), "{names:?}");
    assert_eq!(
        crate::common::by_id(&out, 2)["result"]["content"][0]["text"],
        r#"ran echo {"text": "tls"}"#
    );
    let denied = crate::common::by_id(&out, 3);
    assert_eq!(denied["result"]["isError"], true);
    assert_eq!(denied["result"]["content"][0]["text"], "Deleting files is not allowed");
    // Both decisions are in the server's log, and echo's result with them.
    let log = store.session_log("tls-proxy").unwrap().unwrap();
    let tools: Vec<(&str, Option<&str>)> = log
        .iter()
        .map(|e| (e.tool_name.as_str(), e.execution_status.as_deref()))
        .collect();
    assert_eq!(tools, [("echo", Some("success")), ("delete_file", None)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_roots_the_proxy_binary_refuses_https_and_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let (code, out, stderr) = proxy_binary("https://127.0.0.1:9", &empty, &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(out.is_empty(), "{out:?}");
    assert!(stderr.contains("cannot use `https://127.0.0.1:9/`"), "{stderr}");
    assert!(stderr.contains("no trusted root certificates"), "{stderr}");
    assert!(
        stderr.contains("install ca-certificates or set SSL_CERT_FILE"),
        "{stderr}"
    );

    // Plain http is not affected: the proxy starts, and with no server
    // there it fails the call closed instead of refusing to start.
    let (code, out, stderr) = proxy_binary("http://127.0.0.1:9", &empty, &[tools_call(1, "echo", json!({}))]).await;
    assert_eq!(code, 0, "{stderr}");
    let answer = crate::common::by_id(&out, 1);
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(!stderr.contains("no trusted root certificates"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_binary_fails_closed_when_ssl_cert_file_does_not_hold_the_servers_ca() {
    let pki = pki();
    let (url, store, dir) = tame_server(&pki).await;
    let other = dir.path().join("other.pem");
    std::fs::write(&other, ca("some other CA").2).unwrap();
    let (code, out, stderr) = proxy_binary(&url, &other, &[tools_call(1, "echo", json!({"text": "tls"}))]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("cannot read the server's policy for --hide-denied") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    let answer = crate::common::by_id(&out, 1);
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("tame: the call of `echo` was not run: no policy decision"),
        "{text}"
    );
    assert!(text.contains("invalid peer certificate: UnknownIssuer"), "{text}");
    assert_eq!(store.session_log("tls-proxy").unwrap(), None);
}
