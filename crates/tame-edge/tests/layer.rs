//! `EdgeLayer` in front of a router, as a listener without keys of its
//! own mounts it (the MCP proxy's HTTP side): the attacks a web page can
//! make on a listener on the operator's machine are refused before the
//! route runs, and clients that are not browsers pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use tame_edge::{AllowedHost, EdgeLayer, Hosts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const LISTEN: &str = "127.0.0.1:8765";

/// A router whose POST route counts the calls that reached it.
fn app(hosts: Hosts) -> (Router, Arc<AtomicUsize>) {
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let router = Router::new()
        .route(
            "/mcp",
            post(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "{}" }
            }),
        )
        .route("/mcp/stream", get(|| async { "events" }))
        .layer(EdgeLayer::new(hosts));
    (router, reached)
}

fn loopback() -> Hosts {
    Hosts::new(LISTEN.parse().unwrap(), &[])
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn post_json(host: &str, origin: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/mcp")
        .header("host", host)
        .header("content-type", "application/json");
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.body(Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#))
        .unwrap()
}

#[tokio::test]
async fn a_cross_site_post_is_refused_before_the_route() {
    let (router, reached) = app(loopback());
    let (status, body) = send(&router, post_json(LISTEN, Some("http://evil.example"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("cross-site request refused"), "{body}");
    assert!(body.contains("`http://evil.example`"), "{body}");
    // Another port of localhost is another site too.
    let (status, _) = send(&router, post_json(LISTEN, Some("http://127.0.0.1:3000"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(reached.load(Ordering::SeqCst), 0, "the route never ran");
}

#[tokio::test]
async fn a_rebound_host_is_refused_on_every_method() {
    let (router, reached) = app(loopback());
    // DNS rebinding: the page's own name now resolves to 127.0.0.1, so the
    // browser sends its name as Host and its own origin, which matches it.
    let (status, body) = send(
        &router,
        post_json("evil.example:8765", Some("http://evil.example:8765")),
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{body}");
    assert!(body.contains("`evil.example:8765`"), "{body}");
    let get = Request::get("/mcp/stream")
        .header("host", "evil.example:8765")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, get).await.0, StatusCode::MISDIRECTED_REQUEST);
    let forwarded = Request::get("/mcp/stream")
        .header("host", LISTEN)
        .header("x-forwarded-host", "evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, forwarded).await.0, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused() {
    let (router, reached) = app(loopback());
    // A form or a simple fetch needs no CORS preflight: text/plain.
    let req = Request::post("/mcp")
        .header("host", LISTEN)
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#))
        .unwrap();
    let (status, body) = send(&router, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let untyped = Request::post("/mcp")
        .header("host", LISTEN)
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&router, untyped).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn clients_and_same_origin_pages_pass() {
    let (router, reached) = app(loopback());
    for (host, origin) in [
        (LISTEN, None),
        ("localhost:8765", None),
        (LISTEN, Some("http://127.0.0.1:8765")),
        ("localhost:8765", Some("http://localhost:8765")),
    ] {
        let (status, body) = send(&router, post_json(host, origin)).await;
        assert_eq!(status, StatusCode::OK, "{host} {origin:?}: {body}");
    }
    let stream = Request::get("/mcp/stream")
        .header("host", LISTEN)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&router, stream).await.0, StatusCode::OK);
    assert_eq!(reached.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn allowed_hosts_open_a_name_and_say_where_they_are_configured() {
    let allowed = [AllowedHost::parse("mcp.internal").unwrap()];
    let hosts = Hosts::new(LISTEN.parse().unwrap(), &allowed).configured_in("`--allowed-host`");
    let (router, _) = app(hosts);
    assert_eq!(
        send(&router, post_json("mcp.internal:8765", None)).await.0,
        StatusCode::OK
    );
    let (status, body) = send(&router, post_json("other.internal:8765", None)).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(body.contains("the names in `--allowed-host`"), "{body}");
}

/// Sends raw HTTP/1.1 and returns the status line.
async fn raw(addr: SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn over_a_socket_the_attacks_are_refused_and_clients_served() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (router, reached) = app(Hosts::new(addr, &[]));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let request = |host: &str, origin: &str, ct: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nhost: {host}\r\n{origin}content-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let own = addr.to_string();
    let cross = raw(
        addr,
        request(&own, "origin: http://evil.example\r\n", "application/json"),
    )
    .await;
    assert!(cross.contains(" 403 "), "{cross}");
    let rebound = raw(addr, request("evil.example", "", "application/json")).await;
    assert!(rebound.contains(" 421 "), "{rebound}");
    let form = raw(addr, request(&own, "", "text/plain")).await;
    assert!(form.contains(" 415 "), "{form}");
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    let client = raw(addr, request(&own, "", "application/json")).await;
    assert!(client.contains(" 200 "), "{client}");
    assert_eq!(reached.load(Ordering::SeqCst), 1);
}
