//! Failed-authentication limiting through the router (tower `oneshot`, the
//! client address given as a `ConnectInfo` extension) and once over a real
//! socket: the burst, the 429 with `Retry-After`, clients kept apart, a
//! limited client refused whatever its key, the dashboard's login form on
//! the same budget, the metrics, trusted proxies and the limit turned off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::*;
use serde_json::{Value, json};
use tame_server::{Auth, FailureLimit, Limits, parse_proxy};
use tower::ServiceExt;

const AGENT: &str = "agent-key-4567";
const ADMIN: &str = "admin-key-0123";
const HOST: &str = "127.0.0.1:8000";
const ORIGIN: &str = "http://127.0.0.1:8000";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn retry_after(&self) -> Option<u64> {
        self.headers
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }
}

fn keyed(limit: FailureLimit) -> Harness {
    harness_with(
        Auth::new(&[AGENT.into()], &[ADMIN.into()]).with_failure_limit(limit),
        Limits::default(),
    )
}

fn peer(ip: &str) -> Option<SocketAddr> {
    Some(SocketAddr::new(ip.parse().unwrap(), 51234))
}

async fn send(h: &Harness, mut req: Request<Body>, from: Option<SocketAddr>) -> Reply {
    if let Some(addr) = from {
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let resp = tame_server::app(h.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).to_string(),
    }
}

fn enforce_request(key: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/api/v1/enforce").header(header::CONTENT_TYPE, "application/json");
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let body = json!({"tool_name": "read_file", "tool_args": {"path": "/tmp/x"}, "session_id": "s1"});
    req.body(Body::from(body.to_string())).unwrap()
}

async fn enforce(h: &Harness, key: Option<&str>, from: Option<SocketAddr>) -> Reply {
    send(h, enforce_request(key), from).await
}

async fn login(h: &Harness, key: &str, from: Option<SocketAddr>) -> Reply {
    let body = format!("key={key}&name=ann&next=%2Fdashboard");
    let req = Request::post("/dashboard/login")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(h, req, from).await
}

async fn metrics(h: &Harness) -> String {
    send(h, Request::get("/metrics").body(Body::empty()).unwrap(), None)
        .await
        .text
}

/// The value of one sample line of the Prometheus text (0 when absent).
fn sample(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

fn assert_limited_api(r: &Reply) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let secs = r.retry_after().expect("a Retry-After header");
    assert!((1..=6).contains(&secs), "Retry-After {secs}");
    let body = r.json();
    assert_eq!(body["retry_after"], json!(secs));
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("too many failed authentications"), "{detail}");
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn the_eleventh_wrong_key_gets_429_and_other_clients_do_not() {
    let h = keyed(FailureLimit::default());
    let attacker = peer("203.0.113.7");
    for i in 0..10 {
        let r = enforce(&h, Some("guess"), attacker).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}: {}", r.text);
        assert_eq!(r.json()["detail"], "invalid API key");
        assert!(r.retry_after().is_none());
    }
    let r = enforce(&h, Some("guess"), attacker).await;
    assert_limited_api(&r);
    // Refused before the key is looked at: any key, any keyed route.
    assert_limited_api(&enforce(&h, Some(AGENT), attacker).await);
    assert_limited_api(&enforce(&h, None, attacker).await);
    let sessions = Request::get("/api/v1/sessions")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    assert_limited_api(&send(&h, sessions, attacker).await);
    // Public routes stay open to it.
    let health = send(&h, Request::get("/health").body(Body::empty()).unwrap(), attacker).await;
    assert_eq!(health.status, StatusCode::OK);

    // Another address (and the IPv6 /64 next door) is not affected.
    let agent = peer("198.51.100.20");
    assert_eq!(enforce(&h, Some(AGENT), agent).await.status, StatusCode::OK);
    assert_eq!(enforce(&h, Some("typo"), agent).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        enforce(&h, Some(AGENT), peer("2001:db8:0:1::5")).await.status,
        StatusCode::OK
    );

    let m = metrics(&h).await;
    assert_eq!(sample(&m, r#"tame_auth_failures_total{surface="api"}"#), 11, "{m}");
    assert_eq!(sample(&m, r#"tame_auth_limited_total{surface="api"}"#), 4, "{m}");
    assert_eq!(h.state.auth().limiter().limited_clients(), 1);
}

#[tokio::test]
async fn missing_keys_count_and_refused_roles_do_not() {
    let h = keyed(FailureLimit {
        burst: 3,
        ..FailureLimit::default()
    });
    let from = peer("192.0.2.1");
    // An agent key on an admin route is a valid key: 403, never limited.
    for _ in 0..20 {
        let req = Request::post("/api/v1/policy/reload")
            .header("x-api-key", AGENT)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&h, req, from).await.status, StatusCode::FORBIDDEN);
    }
    for _ in 0..3 {
        let r = enforce(&h, None, from).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.json()["detail"].as_str().unwrap().contains("missing API key"));
    }
    assert_limited_api(&enforce(&h, None, from).await);
}

#[tokio::test]
async fn valid_keys_never_touch_the_limiter() {
    let h = keyed(FailureLimit::default());
    for i in 0..200u8 {
        let r = enforce(&h, Some(AGENT), peer(&format!("10.9.{i}.1"))).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let limiter = h.state.auth().limiter();
    assert_eq!(limiter.tracked_clients(), 0, "successes keep no per-client state");
    assert_eq!(limiter.limited_clients(), 0);
    let m = metrics(&h).await;
    assert_eq!(sample(&m, r#"tame_auth_failures_total{surface="api"}"#), 0);
}

#[tokio::test]
async fn requests_without_a_socket_peer_share_one_budget() {
    let h = keyed(FailureLimit {
        burst: 2,
        ..FailureLimit::default()
    });
    assert_eq!(enforce(&h, Some("a"), None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(enforce(&h, Some("b"), None).await.status, StatusCode::UNAUTHORIZED);
    assert_limited_api(&enforce(&h, Some("c"), None).await);
    // A real peer is a different client.
    assert_eq!(enforce(&h, Some(AGENT), peer("192.0.2.9")).await.status, StatusCode::OK);
}

fn assert_limited_login(r: &Reply) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.retry_after().is_some_and(|s| (1..=6).contains(&s)), "{:?}", r.headers);
    assert!(
        r.text.contains("too many failed logins from your address"),
        "{}",
        r.text
    );
    assert!(r.text.contains(r#"action="/dashboard/login""#), "the login form again");
    assert!(r.headers.get(header::SET_COOKIE).is_none(), "no session");
}

#[tokio::test]
async fn the_dashboard_login_form_is_limited_too() {
    let h = keyed(FailureLimit::default());
    let attacker = peer("203.0.113.8");
    for _ in 0..10 {
        let r = login(&h, "guess", attacker).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.text.contains("invalid key"));
    }
    assert_limited_login(&login(&h, "guess", attacker).await);
    // The right key from the limited address is refused as well.
    assert_limited_login(&login(&h, ADMIN, attacker).await);
    // An empty key is not a guess: it is not checked nor counted.
    let r = login(&h, "", attacker).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("enter an admin key"));

    // Another address logs in.
    let r = login(&h, ADMIN, peer("198.51.100.30")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("tame_dashboard=")
    );

    let m = metrics(&h).await;
    assert_eq!(
        sample(&m, r#"tame_auth_failures_total{surface="dashboard"}"#),
        10,
        "{m}"
    );
    assert_eq!(sample(&m, r#"tame_auth_limited_total{surface="dashboard"}"#), 2, "{m}");
}

#[tokio::test]
async fn dashboard_pages_without_a_login_are_not_failures() {
    let h = keyed(FailureLimit {
        burst: 2,
        ..FailureLimit::default()
    });
    let from = peer("203.0.113.12");
    for _ in 0..10 {
        let req = Request::post("/dashboard/approvals/a1/approve")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&h, req, from).await.status, StatusCode::UNAUTHORIZED);
        let req = Request::get("/dashboard")
            .header(header::HOST, HOST)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&h, req, from).await.status, StatusCode::SEE_OTHER);
    }
    assert_eq!(enforce(&h, Some("typo"), from).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.state.auth().limiter().limited_clients(), 0);
    let m = metrics(&h).await;
    assert_eq!(sample(&m, r#"tame_auth_failures_total{surface="api"}"#), 1, "{m}");
}

#[tokio::test]
async fn the_api_and_the_login_form_share_one_budget() {
    let h = keyed(FailureLimit {
        burst: 4,
        ..FailureLimit::default()
    });
    let from = peer("203.0.113.9");
    for _ in 0..2 {
        assert_eq!(enforce(&h, Some("guess"), from).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(login(&h, "guess", from).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_limited_login(&login(&h, "guess", from).await);
    assert_limited_api(&enforce(&h, Some("guess"), from).await);
}

#[tokio::test]
async fn with_the_limit_off_nothing_is_limited() {
    let h = keyed(FailureLimit::off());
    let from = peer("203.0.113.10");
    for _ in 0..40 {
        assert_eq!(enforce(&h, Some("guess"), from).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(login(&h, "guess", from).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(enforce(&h, Some(AGENT), from).await.status, StatusCode::OK);
    assert_eq!(login(&h, ADMIN, from).await.status, StatusCode::SEE_OTHER);
    assert_eq!(h.state.auth().limiter().tracked_clients(), 0);
    let m = metrics(&h).await;
    assert_eq!(sample(&m, r#"tame_auth_limited_total{surface="api"}"#), 0);
    // Failures are still counted for the operator.
    assert_eq!(sample(&m, r#"tame_auth_failures_total{surface="api"}"#), 40);
}

#[tokio::test]
async fn an_open_api_has_nothing_to_limit() {
    let h = harness();
    let from = peer("127.0.0.1");
    for _ in 0..30 {
        assert_eq!(enforce(&h, Some("anything"), from).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn forwarded_for_tells_clients_apart_only_behind_a_trusted_proxy() {
    let limit = |proxies: &[&str]| FailureLimit {
        burst: 2,
        trusted_proxies: proxies.iter().map(|p| parse_proxy(p).unwrap()).collect(),
        ..FailureLimit::default()
    };
    let via = |client: &str, key: &str| {
        let mut req = enforce_request(Some(key));
        req.headers_mut().insert("x-forwarded-for", client.parse().unwrap());
        req
    };
    let proxy = peer("10.0.0.2");

    let h = keyed(limit(&["10.0.0.0/24"]));
    for _ in 0..2 {
        assert_eq!(
            send(&h, via("203.0.113.1", "guess"), proxy).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_limited_api(&send(&h, via("203.0.113.1", "guess"), proxy).await);
    // Another client behind the same proxy is not limited, and a limited
    // one cannot escape by prepending an address of its choice.
    let other = send(&h, via("198.51.100.1", AGENT), proxy).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text);
    assert_limited_api(&send(&h, via("1.2.3.4, 203.0.113.1", "guess"), proxy).await);

    // Without trusting the proxy, everyone behind it is one client.
    let h = keyed(limit(&[]));
    for _ in 0..2 {
        assert_eq!(
            send(&h, via("203.0.113.1", "guess"), proxy).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_limited_api(&send(&h, via("198.51.100.1", AGENT), proxy).await);
}

/// Log lines written while a test runs (a `MakeWriter` over a shared buffer).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
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

#[tokio::test]
async fn a_limited_client_is_logged_once_with_its_address_and_never_the_key() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = keyed(FailureLimit {
        burst: 3,
        ..FailureLimit::default()
    });
    let secret_guess = "guess-7f3a9c";
    for _ in 0..20 {
        enforce(&h, Some(secret_guess), peer("203.0.113.44")).await;
        login(&h, secret_guess, peer("203.0.113.44")).await;
    }
    assert_limited_api(&enforce(&h, Some(AGENT), peer("203.0.113.44")).await);
    for _ in 0..5 {
        enforce(&h, Some(secret_guess), peer("2001:db8:5:6::1")).await;
    }

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warns: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warns.len(), 2, "one line per limited client: {text}");
    assert!(warns[0].contains("client=203.0.113.44"), "{text}");
    assert!(warns[1].contains("client=2001:db8:5:6::/64"), "{text}");
    assert!(warns[0].contains("too many failed authentications"), "{text}");
    assert!(
        !text.contains(secret_guess) && !text.contains(AGENT),
        "no key is logged: {text}"
    );
}

/// One HTTP/1.1 request over a fresh connection; the status and headers.
fn raw_request(addr: SocketAddr, key: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let body = r#"{"tool_name":"read_file","tool_args":{"path":"/tmp/x"}}"#;
    write!(
        stream,
        "POST /api/v1/enforce HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_socket_the_peer_address_is_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policies.yml");
    std::fs::write(&policy, POLICY).unwrap();
    let config = tame_server::ServerConfig {
        policy_path: policy,
        db_path: dir.path().join("tame.db"),
        addr: "127.0.0.1:0".parse().unwrap(),
        agent_keys: vec![AGENT.into()],
        watch_policy: false,
        durability: tame_store::Durability::Normal,
        auth_failures: FailureLimit {
            burst: 3,
            ..FailureLimit::default()
        },
        ..tame_server::ServerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = tokio::spawn(tame_server::run_until(
        config,
        async {
            let _ = stopped.await;
        },
        move |addr| ready_tx.send(addr).unwrap(),
    ));
    let addr = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(std::time::Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the server starts");

    let statuses = tokio::task::spawn_blocking(move || {
        let mut out: Vec<(u16, String)> = (0..3).map(|_| raw_request(addr, "guess")).collect();
        out.push(raw_request(addr, "guess"));
        out.push(raw_request(addr, AGENT));
        out
    })
    .await
    .unwrap();
    for (status, text) in &statuses[..3] {
        assert_eq!(*status, 401, "{text}");
    }
    let (status, text) = &statuses[3];
    assert_eq!(*status, 429, "{text}");
    assert!(text.to_ascii_lowercase().contains("\r\nretry-after: "), "{text}");
    // Loopback is limited like any address: the right key waits too.
    assert_eq!(statuses[4].0, 429, "{}", statuses[4].1);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
