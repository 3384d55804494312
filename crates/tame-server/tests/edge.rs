//! The HTTP edge: cross-site requests and DNS rebinding refused (Host,
//! Origin, content type; keys before bodies), and the connection limits
//! (header and idle timeouts, a cap on open connections) over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use common::{Harness, POLICY, harness, harness_with};
use serde_json::{Value, json};
use tame_server::{AllowedHost, Auth, FailureLimit, Hosts, Limits, ROUTES, Role, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:8000";
const EVIL: &str = "http://evil.example";
const AGENT: &str = "agent-key-0123";
const ADMIN: &str = "admin-key-0123";
/// The README quickstart attack's body: a policy that allows everything.
const ALLOW_ALL: &str = "{\"policy_content\":\"version: x\\ndefault: allow\\nrules: []\\n\"}";

struct Reply {
    status: StatusCode,
    json: Value,
}

async fn send_to(router: axum::Router, req: Request<Body>) -> Reply {
    let resp = tokio::time::timeout(Duration::from_secs(5), router.oneshot(req))
        .await
        .expect("the server answered within 5 s")
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Reply {
        status,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn send(h: &Harness, req: Request<Body>) -> Reply {
    send_to(tame_server::app(h.state.clone()), req).await
}

/// A request as a browser or a client sends it: `Host` always, then the
/// given headers.
fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: Body) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri).header("host", HOST);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap()
}

async fn policy_version(h: &Harness) -> Value {
    send(h, request("GET", "/api/v1/policy/current", &[], Body::empty()))
        .await
        .json["version"]
        .clone()
}

async fn pending_approval(h: &Harness, session: &str) -> String {
    let body = json!({"tool_name": "query_database", "tool_args": {"database": "production"}, "session_id": session});
    let r = send(
        h,
        request(
            "POST",
            "/api/v1/enforce",
            &[("content-type", "application/json"), ("x-api-key", AGENT)],
            Body::from(body.to_string()),
        ),
    )
    .await;
    assert_eq!(r.json["decision"], "approve", "{}", r.json);
    r.json["approval_id"].as_str().unwrap().to_owned()
}

async fn approval_state(h: &Harness, id: &str) -> Value {
    let r = send(
        h,
        request(
            "GET",
            &format!("/api/v1/approvals/{id}"),
            &[("x-api-key", ADMIN)],
            Body::empty(),
        ),
    )
    .await;
    r.json["state"].clone()
}

#[tokio::test]
async fn the_quickstart_cross_site_reload_is_refused() {
    // No keys, as in the README's quickstart.
    let h = harness();
    let reload = |headers: &[(&str, &str)], body: &str| {
        request("POST", "/api/v1/policy/reload", headers, Body::from(body.to_owned()))
    };
    // The exact attack: a page's `fetch` with a "simple" content type.
    let r = send(
        &h,
        reload(&[("content-type", "text/plain"), ("origin", EVIL)], ALLOW_ALL),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.json);
    assert!(r.json["detail"].as_str().unwrap().contains("`text/plain` is not JSON"));
    // A form, or a body without a type.
    for headers in [
        &[("content-type", "application/x-www-form-urlencoded"), ("origin", EVIL)][..],
        &[("content-type", "multipart/form-data; boundary=x"), ("origin", EVIL)][..],
        &[("origin", EVIL)][..],
        &[][..],
    ] {
        let r = send(&h, reload(headers, ALLOW_ALL)).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{headers:?}");
    }
    // JSON from another site (it would need a CORS preflight, but refuse it anyway).
    let r = send(
        &h,
        reload(&[("content-type", "application/json"), ("origin", EVIL)], ALLOW_ALL),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("Origin `http://evil.example`")
    );
    // An opaque origin (a sandboxed frame, a data: URL) is not ours either.
    let r = send(
        &h,
        reload(&[("content-type", "application/json"), ("origin", "null")], ALLOW_ALL),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another port of this machine is another site.
    let r = send(
        &h,
        reload(
            &[
                ("content-type", "application/json"),
                ("origin", "http://127.0.0.1:3000"),
            ],
            ALLOW_ALL,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(policy_version(&h).await, "t1", "nothing refused replaced the policy");

    // This server's own page, and the CLI and SDKs (no Origin), still reload.
    let r = send(
        &h,
        reload(
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("origin", "http://127.0.0.1:8000"),
            ],
            ALLOW_ALL,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(policy_version(&h).await, "x");
    let r = send(&h, reload(&[("content-type", "application/json")], "{}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // A POST without a body needs no content type (`curl -X POST .../reload`).
    let r = send(&h, reload(&[], "")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(policy_version(&h).await, "t1", "reloaded from the file");
}

#[tokio::test]
async fn cross_site_approve_and_reject_are_refused() {
    for keyed in [false, true] {
        let h = if keyed {
            harness_with(Auth::new(&[AGENT.into()], &[ADMIN.into()]), Limits::default())
        } else {
            harness()
        };
        let id = pending_approval(&h, "s1").await;
        for verdict in ["approve", "reject"] {
            let uri = format!("/api/v1/approvals/{id}/{verdict}");
            let body = || Body::from(r#"{"reason": "ok"}"#);
            for (headers, status) in [
                (
                    &[("content-type", "text/plain"), ("origin", EVIL), ("x-api-key", ADMIN)][..],
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ),
                (
                    &[("content-type", "application/x-www-form-urlencoded"), ("origin", EVIL)][..],
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ),
                (
                    &[
                        ("content-type", "application/json"),
                        ("origin", EVIL),
                        ("x-api-key", ADMIN),
                    ][..],
                    StatusCode::FORBIDDEN,
                ),
            ] {
                let r = send(&h, request("POST", &uri, headers, body())).await;
                assert_eq!(r.status, status, "keyed {keyed}, {verdict}, {headers:?}: {}", r.json);
            }
            // A bodiless `fetch(url, {method: "POST", mode: "no-cors"})`.
            let r = send(&h, request("POST", &uri, &[("origin", EVIL)], Body::empty())).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "keyed {keyed}, {verdict}");
        }
        assert_eq!(approval_state(&h, &id).await, "pending", "keyed {keyed}");

        // The CLI and the SDK: JSON, no Origin.
        let r = send(
            &h,
            request(
                "POST",
                &format!("/api/v1/approvals/{id}/approve"),
                &[("content-type", "application/json"), ("x-api-key", ADMIN)],
                Body::from(r#"{"reason": "checked", "by": "ann"}"#),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(approval_state(&h, &id).await, "approved");
        // `curl -X POST` without a body.
        let other = pending_approval(&h, "s2").await;
        let r = send(
            &h,
            request(
                "POST",
                &format!("/api/v1/approvals/{other}/reject"),
                &[("x-api-key", ADMIN)],
                Body::empty(),
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(approval_state(&h, &other).await, "rejected");
    }
}

#[tokio::test]
async fn a_rebound_host_is_refused_on_every_route() {
    let h = harness();
    let routes = [
        ("GET", "/api/v1/audit/export"),
        ("GET", "/api/v1/sessions"),
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/dashboard"),
        ("GET", "/no/such/route"),
        ("POST", "/api/v1/enforce"),
    ];
    for (method, uri) in routes {
        for (header, value) in [
            ("host", "evil.example:8000"),
            ("host", "evil.example"),
            ("host", "127.0.0.1.evil.example:8000"),
            ("x-forwarded-host", "evil.example"),
        ] {
            let mut b = Request::builder().method(method).uri(uri);
            if header != "host" {
                b = b.header("host", HOST);
            }
            let req = b
                .header(header, value)
                .header("content-type", "application/json")
                .body(Body::from(r#"{"tool_name": "read_file", "tool_args": {}}"#))
                .unwrap();
            let r = send(&h, req).await;
            assert_eq!(
                r.status,
                StatusCode::MISDIRECTED_REQUEST,
                "{method} {uri} {header}: {value}"
            );
            assert!(r.json["detail"].as_str().unwrap().contains("allowed_hosts"));
        }
        // An absolute request target names its host too.
        let req = Request::builder()
            .method(method)
            .uri(format!("http://evil.example:8000{uri}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&h, req).await.status, StatusCode::MISDIRECTED_REQUEST, "{uri}");
    }
    // Loopback, with any port, and localhost.
    for host in [
        "127.0.0.1:8000",
        "127.0.0.1:1234",
        "localhost:8000",
        "localhost",
        "[::1]:8000",
    ] {
        let req = Request::get("/health")
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&h, req).await.status, StatusCode::OK, "{host}");
    }
    // Clients that name no host (HTTP/1.0, in-process) are not browsers.
    let req = Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(send(&h, req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn allowed_hosts_and_the_listen_address_pass() {
    let h = harness();
    let hosts = |listen: &str, allowed: &[&str]| {
        let allowed: Vec<AllowedHost> = allowed.iter().map(|a| a.parse().unwrap()).collect();
        Hosts::new(listen.parse().unwrap(), &allowed)
    };
    let health = |host: &str| {
        Request::get("/health")
            .header("host", host)
            .body(Body::empty())
            .unwrap()
    };
    let status = |hosts: &Hosts, host: &str| {
        let router = tame_server::app_with(h.state.clone(), hosts.clone());
        let req = health(host);
        async move { send_to(router, req).await.status }
    };
    // On all addresses: the names configured, and any address (a pod IP
    // that a Kubernetes probe uses), but no other name.
    let all = hosts("0.0.0.0:8000", &["tame.internal", "tame.example.com:443"]);
    assert_eq!(status(&all, "tame.internal:8000").await, StatusCode::OK);
    assert_eq!(status(&all, "TAME.internal").await, StatusCode::OK);
    assert_eq!(status(&all, "tame.example.com:443").await, StatusCode::OK);
    assert_eq!(
        status(&all, "tame.example.com:80").await,
        StatusCode::MISDIRECTED_REQUEST
    );
    assert_eq!(status(&all, "10.1.2.3:8000").await, StatusCode::OK);
    assert_eq!(status(&all, "evil.example:8000").await, StatusCode::MISDIRECTED_REQUEST);
    // On one address: that one (any port), not another.
    let one = hosts("10.0.0.5:8000", &[]);
    assert_eq!(status(&one, "10.0.0.5:8000").await, StatusCode::OK);
    assert_eq!(status(&one, "10.0.0.6:8000").await, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(status(&one, "localhost:8000").await, StatusCode::OK);
    // `*` turns the check off.
    let any = hosts("10.0.0.5:8000", &["*"]);
    assert_eq!(status(&any, "evil.example:8000").await, StatusCode::OK);
}

#[tokio::test]
async fn json_routes_take_json_types_only() {
    let h = harness();
    let call = r#"{"tool_name": "read_file", "tool_args": {"path": "/tmp/x"}}"#;
    for (ct, status) in [
        ("application/json", StatusCode::OK),
        ("application/json; charset=utf-8", StatusCode::OK),
        ("Application/JSON;charset=UTF-8", StatusCode::OK),
        ("application/vnd.tame+json", StatusCode::OK),
        ("text/json", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("text/plain; charset=utf-8", StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("application/jsonp", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        for uri in ["/api/v1/enforce", "/api/v1/policy/test"] {
            let r = send(&h, request("POST", uri, &[("content-type", ct)], Body::from(call))).await;
            assert_eq!(r.status, status, "{uri} {ct}: {}", r.json);
        }
    }
    // GET routes take no body and need no content type.
    let r = send(&h, request("GET", "/api/v1/policy/current", &[], Body::empty())).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// A request body that never ends: a handler that reads it never answers.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn keys_are_checked_before_any_body_is_read_on_every_route() {
    // No failure limit: every refusal here is a 401 or 403, never a 429.
    let auth = Auth::new(&[AGENT.into()], &[ADMIN.into()]).with_failure_limit(FailureLimit {
        burst: 0,
        ..FailureLimit::default()
    });
    let h = harness_with(auth, Limits::default());
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.role != Role::Public) {
        let uri = route.path.replace("{session_id}", "s1").replace("{approval_id}", "a1");
        let method = route.method.to_ascii_uppercase();
        let keys: &[(Option<&str>, StatusCode)] = match route.role {
            Role::Admin => &[
                (None, StatusCode::UNAUTHORIZED),
                (Some("wrong"), StatusCode::UNAUTHORIZED),
                (Some(AGENT), StatusCode::FORBIDDEN),
            ],
            _ => &[
                (None, StatusCode::UNAUTHORIZED),
                (Some("wrong"), StatusCode::UNAUTHORIZED),
            ],
        };
        for (key, status) in keys {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(k) = key {
                headers.push(("x-api-key", k));
            }
            let body = if method == "POST" {
                Body::new(Endless)
            } else {
                Body::empty()
            };
            // `send` gives up after 5 s: a handler reading the body first hangs.
            let r = send(&h, request(&method, &uri, &headers, body)).await;
            assert_eq!(r.status, *status, "{method} {uri} with {key:?}: {}", r.json);
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");
}

// ------------------------------------------------------------ real sockets

/// A server run in this process on a free port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(adjust: impl FnOnce(&mut ServerConfig)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policies.yml"), POLICY).unwrap();
        let mut config = ServerConfig {
            policy_path: dir.path().join("policies.yml"),
            db_path: dir.path().join("tame.db"),
            addr: "127.0.0.1:0".parse().unwrap(),
            watch_policy: false,
            durability: tame_store::Durability::Normal,
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(tame_server::run_until(
            config,
            async move {
                let _ = stopped.await;
            },
            move |a| {
                let _ = ready.send(a);
            },
        ));
        let addr = tokio::time::timeout(Duration::from_secs(30), addr)
            .await
            .expect("the server started")
            .unwrap();
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the server and waits until it has.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server stopped within 10 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Sends raw bytes on a new connection and reads the answer until the
/// server closes it (the request asks for `Connection: close`).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answered within 5 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> &str {
    answer.get(9..12).unwrap_or(answer)
}

/// Waits until the server closes `s` (EOF or reset), at most `within`;
/// returns how long it took.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => panic!("the server did not close the connection within {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_socket_the_attacks_are_refused_and_clients_served() {
    let server = Server::start(|_| {}).await;
    let p = server.addr.port();
    let body = ALLOW_ALL;
    let attack = |host: &str, ct: &str, origin: &str| {
        format!(
            "POST /api/v1/policy/reload HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ct}\r\nOrigin: {origin}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let own = format!("127.0.0.1:{p}");
    let answer = raw(server.addr, &attack(&own, "text/plain", EVIL)).await;
    assert_eq!(status_of(&answer), "415", "{answer}");
    let answer = raw(server.addr, &attack(&own, "application/json", EVIL)).await;
    assert_eq!(status_of(&answer), "403", "{answer}");
    // DNS rebinding: the page's own name, now pointing here.
    let rebound = format!("evil.example:{p}");
    let answer = raw(
        server.addr,
        &format!("GET /api/v1/audit/export HTTP/1.1\r\nHost: {rebound}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status_of(&answer), "421", "{answer}");
    // The CLI and SDKs: JSON, no Origin.
    let cli = format!(
        "POST /api/v1/policy/validate HTTP/1.1\r\nHost: {own}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(server.addr, &cli).await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    let answer = raw(
        server.addr,
        &format!("GET /health HTTP/1.1\r\nHost: localhost:{p}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    server.stop().await;

    // A configured name is served.
    let server = Server::start(|c| c.allowed_hosts = vec!["tame.test".parse().unwrap()]).await;
    let answer = raw(
        server.addr,
        &format!(
            "GET /health HTTP/1.1\r\nHost: tame.test:{}\r\nConnection: close\r\n\r\n",
            server.addr.port()
        ),
    )
    .await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_do_not_finish_their_head_are_dropped_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let server = Server::start(|c| c.header_timeout = timeout).await;
    let addr = server.addr;
    // Nothing at all, a partial head, and a head trickled a byte at a time.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let trickled = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = trickled.into_split();
    let trickle = tokio::spawn(async move {
        for b in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".iter().cycle() {
            if writer.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    for (what, took) in [
        ("silent", closed_within(&mut silent, Duration::from_secs(5)).await),
        ("partial", closed_within(&mut partial, Duration::from_secs(5)).await),
    ] {
        assert!(took < Duration::from_secs(3), "{what}: {took:?}");
    }
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
        .await
        .expect("the trickled connection was dropped");
    assert!(
        matches!(end, Ok(0) | Err(_)),
        "no answer to an unfinished head: {end:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    trickle.abort();

    // A head sent in time is answered, however slowly it started.
    let mut s = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(timeout / 2).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status_of(&out), "200", "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_new_connections_wait_until_one_closes() {
    let server = Server::start(|c| {
        c.max_connections = std::num::NonZeroUsize::new(2);
        c.header_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = server.addr;
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // Let the server accept both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the third connection was served at a cap of 2: {early:?}"
    );
    // One closes: the third is served.
    drop(first);
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut out))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(status_of(&out), "200", "{out}");
    // And so are the next ones, one at a time.
    for _ in 0..3 {
        let answer = raw(
            addr,
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status_of(&answer), "200", "{answer}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_again_once_stalled_heads_at_the_cap_time_out() {
    let server = Server::start(|c| {
        c.max_connections = std::num::NonZeroUsize::new(4);
        c.header_timeout = Duration::from_millis(500);
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let answer = raw(
        server.addr,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "served before a stalled connection timed out: {waited:?}"
    );
    for s in &mut stalled {
        closed_within(s, Duration::from_secs(5)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let idle = Duration::from_millis(400);
    let server = Server::start(|c| {
        c.idle_timeout = idle;
        c.header_timeout = Duration::from_secs(10);
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    // Two requests on one kept-alive connection, then nothing.
    for _ in 0..2 {
        s.write_all(get("/health").as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), "200");
    }
    let took = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(took >= idle / 2, "closed too early: {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A request that takes longer than the idle timeout (a long poll) is
    // not cut.
    let body = json!({"tool_name": "query_database", "tool_args": {"database": "production"}}).to_string();
    let enforce = format!(
        "POST /api/v1/enforce HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(server.addr, &enforce).await;
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let id = json["approval_id"].as_str().unwrap();
    let started = Instant::now();
    let answer = raw(
        server.addr,
        &format!("GET /api/v1/approvals/{id}/wait?timeout=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status_of(&answer), "200", "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_waits_for_answers() {
    let server = Server::start(|_| {}).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), "200");
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await;
    closed_within(&mut idle, Duration::from_secs(1)).await;
    closed_within(&mut silent, Duration::from_secs(1)).await;
}
