//! Dashboard tests through the router (tower `oneshot`): login and its
//! failures, agent keys refused, cookie and CSRF checks, approve and reject
//! through the API's own path, escaping of agent-supplied text, empty
//! stores, pagination, the open loopback mode and the security headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use common::*;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tame_server::{Auth, Limits};
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:8000";
const ORIGIN: &str = "http://127.0.0.1:8000";
const ADMIN: &str = "admin-key-0123";
const AGENT: &str = "agent-key-4567";

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn set_cookie(&self) -> Option<&str> {
        self.headers.get(header::SET_COOKIE).map(|v| v.to_str().unwrap())
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> String {
        let at = self
            .text
            .find(r#"name="csrf" value=""#)
            .expect("a form with a csrf token");
        let rest = &self.text[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

fn keyed() -> Harness {
    harness_with(Auth::new(&[AGENT.into()], &[ADMIN.into()]), Limits::default())
}

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn send(h: &Harness, req: Request<Body>) -> Page {
    // The name the login tests reach the server by is configured.
    let hosts = tame_server::Hosts::new(
        "127.0.0.1:8000".parse().unwrap(),
        &["tame.example.com".parse().unwrap()],
    );
    let resp = tame_server::app_with(h.state.clone(), hosts)
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Page {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).to_string(),
    }
}

async fn get(h: &Harness, uri: &str, cookie: Option<&str>) -> Page {
    let mut req = Request::get(uri).header(header::HOST, HOST);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    send(h, req.body(Body::empty()).unwrap()).await
}

/// A form POST as a browser on the dashboard's own page sends it.
async fn post(h: &Harness, uri: &str, fields: &[(&str, &str)], cookie: Option<&str>) -> Page {
    post_with(h, uri, fields, cookie, &[(header::ORIGIN.as_str(), ORIGIN)]).await
}

async fn post_with(
    h: &Harness,
    uri: &str,
    fields: &[(&str, &str)],
    cookie: Option<&str>,
    extra: &[(&str, &str)],
) -> Page {
    let mut req = Request::post(uri)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    send(h, req.body(Body::from(form_body(fields))).unwrap()).await
}

/// Logs in as `name`; returns the `Cookie` header value.
async fn login(h: &Harness, name: &str) -> String {
    let r = post(
        h,
        "/dashboard/login",
        &[("key", ADMIN), ("name", name), ("next", "/dashboard")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = r.set_cookie().expect("a session cookie");
    set.split(';').next().unwrap().to_string()
}

async fn pending_approval(h: &Harness, args: Value, session: &str) -> String {
    let body = json!({"tool_name": "query_database", "tool_args": args, "session_id": session, "agent_id": "agent-7"});
    let r = h
        .call("POST", "/api/v1/enforce", Some(&body.to_string()), Some(AGENT))
        .await;
    assert_eq!(r.json["decision"], "approve", "{}", r.text);
    r.json["approval_id"].as_str().unwrap().to_string()
}

fn prod_args() -> Value {
    json!({"database": "production", "query": "DELETE FROM users WHERE id = 7"})
}

#[tokio::test]
async fn login_sets_a_random_session_cookie_and_refuses_bad_and_agent_keys() {
    let h = keyed();
    // Not logged in: pages send the browser to the login form, and back.
    let r = get(&h, "/dashboard/sessions?page=2", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/dashboard/login?next=%2Fdashboard%2Fsessions%3Fpage%3D2");
    let form = get(&h, r.location(), None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text.contains(r#"type="password" name="key""#), "{}", form.text);
    assert!(form.text.contains(r#"value="/dashboard/sessions?page=2""#));

    let wrong = post(&h, "/dashboard/login", &[("key", "guess")], None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("invalid key"));
    assert!(wrong.set_cookie().is_none());
    let empty = post(&h, "/dashboard/login", &[("key", "  ")], None).await;
    assert_eq!(empty.status, StatusCode::UNAUTHORIZED);
    assert!(empty.text.contains("enter an admin key"));

    let agent = post(&h, "/dashboard/login", &[("key", AGENT)], None).await;
    assert_eq!(agent.status, StatusCode::FORBIDDEN);
    assert!(agent.text.contains("agent key"), "{}", agent.text);
    assert!(agent.set_cookie().is_none());

    let ok = post(
        &h,
        "/dashboard/login",
        &[("key", ADMIN), ("name", "ann"), ("next", "/dashboard/sessions?page=2")],
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/dashboard/sessions?page=2");
    let set = ok.set_cookie().unwrap();
    for part in ["tame_dashboard=", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http on loopback: {set}");
    assert!(!set.contains(ADMIN), "the cookie never holds the key");
    let cookie = set.split(';').next().unwrap();
    let value = cookie.trim_start_matches("tame_dashboard=");
    assert_eq!(value.len(), 64);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));

    let page = get(&h, "/dashboard", Some(cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("signed in as <strong>ann</strong>"));
    assert!(!page.text.contains("No API keys are configured"));
    // Two logins get two different tokens.
    assert_ne!(login(&h, "ann").await, cookie);
    // An open redirect is not followed.
    let out = post(
        &h,
        "/dashboard/login",
        &[("key", ADMIN), ("next", "https://evil.example/")],
        None,
    )
    .await;
    assert_eq!(out.location(), "/dashboard");
}

#[tokio::test]
async fn api_keys_and_forged_cookies_do_not_open_pages() {
    let h = keyed();
    for auth in [format!("Bearer {ADMIN}"), format!("Bearer {AGENT}")] {
        let req = Request::get("/dashboard")
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap();
        let r = send(&h, req).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "only a login opens the dashboard");
    }
    let forged = format!("tame_dashboard={}", "ab".repeat(32));
    assert_eq!(get(&h, "/dashboard", Some(&forged)).await.status, StatusCode::SEE_OTHER);
    let key_as_cookie = format!("tame_dashboard={ADMIN}");
    assert_eq!(
        get(&h, "/dashboard/policy", Some(&key_as_cookie)).await.status,
        StatusCode::SEE_OTHER
    );
    // A POST without a login is refused outright, not redirected.
    let id = pending_approval(&h, prod_args(), "s1").await;
    let r = post(
        &h,
        &format!("/dashboard/approvals/{id}/approve"),
        &[("csrf", "x")],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("log in"));
    let a = h
        .call("GET", &format!("/api/v1/approvals/{id}"), None, Some(ADMIN))
        .await;
    assert_eq!(a.json["state"], "pending");
}

#[tokio::test]
async fn posts_need_the_csrf_token_and_the_same_origin() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    let id = pending_approval(&h, prod_args(), "s1").await;
    let csrf = get(&h, "/dashboard/approvals", Some(&cookie)).await.csrf();
    let url = format!("/dashboard/approvals/{id}/approve");

    let no_token = post(&h, &url, &[("reason", "ok")], Some(&cookie)).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(no_token.text.contains("security token"), "{}", no_token.text);
    let wrong = post(&h, &url, &[("csrf", &"0".repeat(64))], Some(&cookie)).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let foreign = post_with(
        &h,
        &url,
        &[("csrf", &csrf)],
        Some(&cookie),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    assert!(foreign.text.contains("Origin"));
    let no_origin = post_with(&h, &url, &[("csrf", &csrf)], Some(&cookie), &[]).await;
    assert_eq!(no_origin.status, StatusCode::FORBIDDEN);
    // Another login's token does not fit this login.
    let other = login(&h, "bob").await;
    let other_csrf = get(&h, "/dashboard/approvals", Some(&other)).await.csrf();
    assert_ne!(other_csrf, csrf);
    let crossed = post(&h, &url, &[("csrf", &other_csrf)], Some(&cookie)).await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);

    let a = h
        .call("GET", &format!("/api/v1/approvals/{id}"), None, Some(ADMIN))
        .await;
    // Only approve and reject are verdicts.
    let unknown = post(
        &h,
        &format!("/dashboard/approvals/{id}/delete"),
        &[("csrf", &csrf)],
        Some(&cookie),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert_eq!(a.json["state"], "pending", "nothing refused changed the approval");

    // A same-origin Referer stands in for a missing Origin.
    let referred = post_with(
        &h,
        &url,
        &[("csrf", &csrf)],
        Some(&cookie),
        &[("referer", "http://127.0.0.1:8000/dashboard/approvals")],
    )
    .await;
    assert_eq!(referred.status, StatusCode::SEE_OTHER, "{}", referred.text);
}

#[tokio::test]
async fn approve_from_the_dashboard_is_audited_and_releases_the_call() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    let id = pending_approval(&h, prod_args(), "s-approve").await;
    let page = get(&h, "/dashboard/approvals", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    for shown in [
        "query_database",
        "prod_db",
        "agent-7",
        "s-approve",
        id.as_str(),
        // The arguments, pretty-printed.
        "  &quot;database&quot;: &quot;production&quot;",
    ] {
        assert!(page.text.contains(shown), "approvals page lacks {shown}: {}", page.text);
    }
    assert!(
        page.text.contains(r#"<span class="count">1</span>"#),
        "pending count in the nav"
    );

    let r = post(
        &h,
        &format!("/dashboard/approvals/{id}/approve"),
        &[("csrf", &page.csrf()), ("reason", "checked with the DBA")],
        Some(&cookie),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.location(), format!("/dashboard/approvals?flash=approved&id={id}"));
    let after = get(&h, r.location(), Some(&cookie)).await;
    assert!(after.text.contains("Approved query_database"), "{}", after.text);
    assert!(after.text.contains("No call is waiting"));
    assert!(after.text.contains("dashboard:ann"), "recently decided lists who");

    // Same state as through the API: who and why are stored and audited.
    let a = h
        .call("GET", &format!("/api/v1/approvals/{id}"), None, Some(ADMIN))
        .await;
    assert_eq!(a.json["state"], "approved");
    assert_eq!(a.json["decided_by"], "dashboard:ann");
    assert_eq!(a.json["decision_reason"], "checked with the DBA");
    let export = h.call("GET", "/api/v1/audit/export", None, Some(ADMIN)).await.text;
    let record = export
        .lines()
        .find(|l| l.contains(&id) && l.contains("dashboard:ann"))
        .expect("the approval is in the audit log");
    assert!(record.contains("checked with the DBA"), "{record}");
    assert_eq!(
        h.call("GET", "/api/v1/audit/verify", None, Some(ADMIN)).await.json["valid"],
        true
    );

    // The approved call is released to the agent.
    let release = h
        .call(
            "POST",
            "/api/v1/enforce",
            Some(
                &json!({"tool_name": "query_database", "tool_args": prod_args(), "session_id": "s-approve", "approval_id": id})
                    .to_string(),
            ),
            Some(AGENT),
        )
        .await;
    assert_eq!(release.json["decision"], "allow", "{}", release.text);

    // Deciding again changes nothing and says so.
    let again = post(
        &h,
        &format!("/dashboard/approvals/{id}/reject"),
        &[("csrf", &page.csrf())],
        Some(&cookie),
    )
    .await;
    assert_eq!(again.location(), format!("/dashboard/approvals?flash=conflict&id={id}"));
    let shown = get(&h, again.location(), Some(&cookie)).await;
    assert!(shown.text.contains("already decided"));
    let missing = post(
        &h,
        "/dashboard/approvals/no-such-id/approve",
        &[("csrf", &page.csrf())],
        Some(&cookie),
    )
    .await;
    assert_eq!(missing.location(), "/dashboard/approvals?flash=missing&id=no-such-id");
}

#[tokio::test]
async fn reject_from_the_dashboard_denies_the_call() {
    let h = keyed();
    let cookie = login(&h, "bob").await;
    let id = pending_approval(&h, prod_args(), "s-reject").await;
    let csrf = get(&h, "/dashboard/approvals", Some(&cookie)).await.csrf();
    let r = post(
        &h,
        &format!("/dashboard/approvals/{id}/reject"),
        &[("csrf", &csrf), ("reason", "  not during business hours ")],
        Some(&cookie),
    )
    .await;
    assert_eq!(r.location(), format!("/dashboard/approvals?flash=rejected&id={id}"));
    let a = h
        .call("GET", &format!("/api/v1/approvals/{id}"), None, Some(ADMIN))
        .await;
    assert_eq!(a.json["state"], "rejected");
    assert_eq!(a.json["decided_by"], "dashboard:bob");
    assert_eq!(a.json["decision_reason"], "not during business hours");
    let release = h
        .call(
            "POST",
            "/api/v1/enforce",
            Some(
                &json!({"tool_name": "query_database", "tool_args": prod_args(), "session_id": "s-reject", "approval_id": id})
                    .to_string(),
            ),
            Some(AGENT),
        )
        .await;
    assert_eq!(release.json["decision"], "deny");
    // The session page shows the log with both decisions.
    let s = get(&h, "/dashboard/sessions/s-reject", Some(&cookie)).await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(s.text.contains(r#"<span class="badge approve">approve</span>"#));
    assert!(s.text.contains(r#"<span class="badge deny">deny</span>"#));
}

#[tokio::test]
async fn logout_ends_the_session() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    let csrf = get(&h, "/dashboard", Some(&cookie)).await.csrf();
    let bad = post(&h, "/dashboard/logout", &[("csrf", "nope")], Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&h, "/dashboard", Some(&cookie)).await.status, StatusCode::OK);
    let out = post(&h, "/dashboard/logout", &[("csrf", &csrf)], Some(&cookie)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/dashboard/login");
    assert!(out.set_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(get(&h, "/dashboard", Some(&cookie)).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn login_needs_the_same_origin_and_https_off_loopback() {
    let h = keyed();
    let no_origin = post_with(&h, "/dashboard/login", &[("key", ADMIN)], None, &[]).await;
    assert_eq!(no_origin.status, StatusCode::FORBIDDEN);
    assert!(no_origin.set_cookie().is_none());

    // Plain http to a non-loopback name: a Secure cookie would not stick.
    let req = |proto: Option<&str>, origin: &str| {
        let mut b = Request::post("/dashboard/login")
            .header(header::HOST, "tame.example.com")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(p) = proto {
            b = b.header("x-forwarded-proto", p);
        }
        b.body(Body::from(form_body(&[("key", ADMIN)]))).unwrap()
    };
    let plain = send(&h, req(None, "http://tame.example.com")).await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST);
    assert!(plain.text.contains("HTTPS"), "{}", plain.text);
    let tls = send(&h, req(Some("https"), "https://tame.example.com")).await;
    assert_eq!(tls.status, StatusCode::SEE_OTHER, "{}", tls.text);
    assert!(tls.set_cookie().unwrap().contains("Secure"));

    // A TLS proxy on this machine that forwards to loopback: the browser
    // used https, so the cookie is Secure, and POSTs match the public name.
    let proxied = |uri: &str, body: String, cookie: Option<&str>| {
        let mut b = Request::post(uri)
            .header(header::HOST, HOST)
            .header("x-forwarded-host", "tame.example.com")
            .header("x-forwarded-proto", "https")
            .header(header::ORIGIN, "https://tame.example.com")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::from(body)).unwrap()
    };
    let r = send(&h, proxied("/dashboard/login", form_body(&[("key", ADMIN)]), None)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = r.set_cookie().unwrap();
    assert!(set.contains("Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let id = pending_approval(&h, prod_args(), "s-proxy").await;
    let csrf = get(&h, "/dashboard/approvals", Some(&cookie)).await.csrf();
    let url = format!("/dashboard/approvals/{id}/approve");
    let ok = send(&h, proxied(&url, form_body(&[("csrf", &csrf)]), Some(&cookie))).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    assert!(ok.location().contains("flash=approved"));
}

#[tokio::test]
async fn agent_supplied_text_is_escaped_everywhere() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    let evil = "<script>alert(1)</script>";
    let session = "<script>alert('s')</script>";
    // A denied call with a hostile tool name (reason and arguments too).
    h.call(
        "POST",
        "/api/v1/enforce",
        Some(&json!({"tool_name": evil, "tool_args": {"x": evil}, "session_id": session, "agent_id": evil, "user_id": evil}).to_string()),
        Some(AGENT),
    )
    .await;
    // An approval whose arguments, session and agent are hostile.
    let r = h
        .call(
            "POST",
            "/api/v1/enforce",
            Some(
                &json!({"tool_name": "query_database", "tool_args": {"database": "production", "query": evil}, "session_id": session, "agent_id": evil})
                    .to_string(),
            ),
            Some(AGENT),
        )
        .await;
    assert_eq!(r.json["decision"], "approve");
    let r = h
        .call(
            "POST",
            "/api/v1/enforce",
            Some(&json!({"tool_name": "read_file", "tool_args": {"path": format!("/etc/{evil}")}, "session_id": session}).to_string()),
            Some(AGENT),
        )
        .await;
    assert_eq!(r.json["decision"], "deny");
    let log_id = r.json["log_id"].as_str().unwrap();
    let result = json!({"status": evil, "error_message": evil, "output": evil}).to_string();
    let encoded_sid = utf8_percent_encode(session, NON_ALPHANUMERIC).to_string();
    h.call(
        "POST",
        &format!("/api/v1/enforce/{encoded_sid}/result?log_id={log_id}"),
        Some(&result),
        Some(AGENT),
    )
    .await;

    let session_page = format!("/dashboard/sessions/{encoded_sid}");
    for uri in [
        "/dashboard",
        "/dashboard/approvals",
        "/dashboard/sessions",
        session_page.as_str(),
    ] {
        let p = get(&h, uri, Some(&cookie)).await;
        assert_eq!(p.status, StatusCode::OK, "{uri}: {}", p.text);
        assert!(!p.text.contains("<script>alert"), "{uri} shows agent text unescaped");
        assert!(p.text.contains("&lt;script&gt;alert"), "{uri} shows the escaped text");
    }
    // Links to the session percent-encode its id.
    let list = get(&h, "/dashboard/sessions", Some(&cookie)).await;
    assert!(list.text.contains(&format!(
        r#"href="/dashboard/sessions/{}""#,
        "%3Cscript%3Ealert%28%27s%27%29%3C%2Fscript%3E"
    )));
    let p = get(&h, &session_page, Some(&cookie)).await;
    assert!(p.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The denial's reason quotes the path: escaped too.
    assert!(p.text.contains("/etc/&lt;script&gt;"));
}

#[tokio::test]
async fn pages_of_an_empty_store() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    let overview = get(&h, "/dashboard", Some(&cookie)).await;
    assert_eq!(overview.status, StatusCode::OK);
    for shown in ["No decisions yet", "intact", "t1", "None waiting"] {
        assert!(overview.text.contains(shown), "overview lacks {shown}");
    }
    let approvals = get(&h, "/dashboard/approvals", Some(&cookie)).await;
    assert!(approvals.text.contains("No call is waiting"));
    let sessions = get(&h, "/dashboard/sessions", Some(&cookie)).await;
    assert!(sessions.text.contains("No sessions yet"));
    assert!(sessions.text.contains("page 1 of 1"));
    let policy = get(&h, "/dashboard/policy", Some(&cookie)).await;
    assert!(policy.text.contains("No version is stored yet"));
    // `tame serve` stores the running version at start.
    h.state.record_version(&h.state.policy()).await;
    let policy = get(&h, "/dashboard/policy", Some(&cookie)).await;
    assert_eq!(policy.status, StatusCode::OK);
    for shown in ["block_etc", "rate_limit_email", "prod_db", "allow_rest", "running"] {
        assert!(policy.text.contains(shown), "policy page lacks {shown}");
    }
    let hash = h.state.policy().policy.info().hash.clone();
    assert!(policy.text.contains(&hash), "the running policy's hash");
    assert!(
        policy.text.contains("args.path.startsWith(&quot;/etc/&quot;)"),
        "conditions, escaped"
    );

    let unknown = get(&h, "/dashboard/sessions/nope", Some(&cookie)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.text.contains("session `nope` not found"));
    let nothing = get(&h, "/dashboard/nothing/here", Some(&cookie)).await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    assert!(nothing.text.contains("<!DOCTYPE html>"));
}

#[tokio::test]
async fn overview_counts_decisions_and_shows_a_broken_chain() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    for (i, path) in ["/tmp/a", "/etc/passwd", "/tmp/b", "/etc/shadow", "/tmp/c"]
        .iter()
        .enumerate()
    {
        let body = json!({"tool_name": "read_file", "tool_args": {"path": path}, "session_id": format!("s{}", i % 2)});
        h.call("POST", "/api/v1/enforce", Some(&body.to_string()), Some(AGENT))
            .await;
    }
    pending_approval(&h, prod_args(), "s9").await;
    let o = get(&h, "/dashboard", Some(&cookie)).await;
    let text = &o.text;
    assert!(text.contains("3 sessions"), "{text}");
    assert!(
        text.contains(r#"<td class="num">3</td><td class="num">50.0 %</td>"#),
        "3 of 6 allowed: {text}"
    );
    assert!(
        text.contains(r#"<td class="num">2</td><td class="num">33.3 %</td>"#),
        "2 of 6 denied"
    );
    assert!(
        text.contains(r#"<td class="num">1</td><td class="num">16.7 %</td>"#),
        "1 of 6 approval"
    );
    assert!(
        text.contains("/tmp/c") || text.contains("read_file"),
        "recent decisions"
    );
    assert!(text.contains("intact"));
    // The newest decision comes first.
    let first_prod = text.find("query_database").unwrap();
    let first_read = text.find(r#"<td class="mono">read_file"#).unwrap();
    assert!(first_prod < first_read);

    let db = rusqlite::Connection::open(h.dir.path().join("tame.db")).unwrap();
    db.execute(
        "UPDATE audit SET body = replace(body, '/tmp/b', '/tmp/X') WHERE seq = 3",
        [],
    )
    .unwrap();
    // The check is reused for a minute, unless asked for anew.
    let cached = get(&h, "/dashboard", Some(&cookie)).await;
    assert!(cached.text.contains("intact"));
    let o = get(&h, "/dashboard?verify=now", Some(&cookie)).await;
    assert!(o.text.contains("broken"), "{}", o.text);
    assert!(o.text.contains("record 3"));
    let after = get(&h, "/dashboard", Some(&cookie)).await;
    assert!(after.text.contains("broken"), "the new check replaces the cached one");
}

#[tokio::test]
async fn sessions_are_paged_and_filtered() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    for i in 0..30 {
        let agent = if i % 3 == 0 { "a-three" } else { "a-other" };
        let body = json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}, "session_id": format!("sess-{i:02}"), "agent_id": agent});
        h.call("POST", "/api/v1/enforce", Some(&body.to_string()), Some(AGENT))
            .await;
    }
    let rows = |p: &Page| p.text.matches(r#"<a class="mono" href="/dashboard/sessions/"#).count();
    let first = get(&h, "/dashboard/sessions", Some(&cookie)).await;
    assert_eq!(rows(&first), 25);
    assert!(first.text.contains("page 1 of 2"));
    assert!(first.text.contains("30 in all"));
    assert!(first.text.contains(r#"href="/dashboard/sessions?page=2""#));
    assert!(
        first.text.contains(r#"rel="next">Older →</a>"#),
        "the newest sessions come first"
    );
    assert!(first.text.contains("sess-29"), "newest first");
    let second = get(&h, "/dashboard/sessions?page=2", Some(&cookie)).await;
    assert_eq!(rows(&second), 5);
    assert!(second.text.contains("sess-00"));
    assert!(second.text.contains(r#"href="/dashboard/sessions?page=1""#));
    let beyond = get(&h, "/dashboard/sessions?page=9", Some(&cookie)).await;
    assert_eq!(rows(&beyond), 0);
    assert!(beyond.text.contains("Nothing on this page"));
    let bad = get(&h, "/dashboard/sessions?page=zero", Some(&cookie)).await;
    assert_eq!(rows(&bad), 25, "an unreadable page number shows the first page");

    let filtered = get(&h, "/dashboard/sessions?agent_id=a-three&page_size=4", Some(&cookie)).await;
    assert_eq!(rows(&filtered), 4);
    assert!(filtered.text.contains("10 in all"));
    assert!(
        filtered
            .text
            .contains(r#"href="/dashboard/sessions?page=2&amp;agent_id=a-three""#)
    );
    assert!(
        filtered.text.contains(r#"value="a-three""#),
        "the filter stays in the form"
    );

    // A long session's log is paged too.
    for i in 0..105 {
        let body = json!({"tool_name": "read_file", "tool_args": {"path": format!("/tmp/{i}")}, "session_id": "long"});
        h.call("POST", "/api/v1/enforce", Some(&body.to_string()), Some(AGENT))
            .await;
    }
    let entries = |p: &Page| p.text.matches("<summary>arguments</summary>").count();
    let log1 = get(&h, "/dashboard/sessions/long", Some(&cookie)).await;
    assert_eq!(entries(&log1), 100);
    assert!(log1.text.contains("page 1 of 2"));
    let log2 = get(&h, "/dashboard/sessions/long?page=2", Some(&cookie)).await;
    assert_eq!(entries(&log2), 5);
    assert!(log2.text.contains("/tmp/104"));
}

#[tokio::test]
async fn open_mode_is_loopback_only_and_says_so() {
    let h = harness();
    let root = get(&h, "/", None).await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.location(), "/dashboard");
    let page = get(&h, "/dashboard", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("No API keys are configured"));
    // The login form is not needed.
    assert_eq!(get(&h, "/dashboard/login", None).await.location(), "/dashboard");

    // A page that rebinds its own name to 127.0.0.1 cannot read it (the
    // server's edge refuses the name), nor a configured name off loopback.
    let req = Request::get("/dashboard")
        .header(header::HOST, "evil.example:8000")
        .body(Body::empty())
        .unwrap();
    let r = send(&h, req).await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
    let req = Request::get("/dashboard")
        .header(header::HOST, "tame.example.com")
        .body(Body::empty())
        .unwrap();
    let r = send(&h, req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("loopback"));

    // Approving still needs the page's token and the same origin.
    let id = pending_approval(&h, prod_args(), "s-open").await;
    let csrf = get(&h, "/dashboard/approvals", None).await.csrf();
    let url = format!("/dashboard/approvals/{id}/approve");
    let forged = post_with(&h, &url, &[("csrf", &csrf)], None, &[("origin", "http://evil.example")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let tokenless = post(&h, &url, &[], None).await;
    assert_eq!(tokenless.status, StatusCode::FORBIDDEN);
    let ok = post(&h, &url, &[("csrf", &csrf), ("reason", "local check")], None).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let a = h.get(&format!("/api/v1/approvals/{id}")).await;
    assert_eq!(a.json["state"], "approved");
    assert_eq!(a.json["decided_by"], "dashboard:local");
}

#[tokio::test]
async fn pages_carry_security_headers_matching_their_inline_assets() {
    let h = harness();
    let p = get(&h, "/dashboard/approvals", None).await;
    let csp = p.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"));
    for tag in ["style", "script"] {
        let open = format!("<{tag}>");
        let start = p.text.find(&open).unwrap_or_else(|| panic!("an inline {tag}")) + open.len();
        let end = start + p.text[start..].find(&format!("</{tag}>")).unwrap();
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&p.text.as_bytes()[start..end]));
        assert!(
            csp.contains(&format!("'sha256-{digest}'")),
            "{tag} hash missing from {csp}"
        );
    }
    assert_eq!(p.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(p.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(p.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        p.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "HTML"
    );
    // Nothing is loaded from elsewhere.
    assert!(
        !p.text.contains("http://") && !p.text.contains("https://"),
        "{}",
        p.text
    );
    // The API keeps its JSON 404.
    let api = h.get("/api/v1/nothing").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json["detail"], "no such route");
}

#[tokio::test]
async fn pending_approvals_come_soonest_expiry_first() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    let first = pending_approval(
        &h,
        json!({"database": "production", "query": "DROP TABLE first_one"}),
        "s-a",
    )
    .await;
    let second = pending_approval(
        &h,
        json!({"database": "production", "query": "DROP TABLE second_one"}),
        "s-b",
    )
    .await;
    let page = get(&h, "/dashboard/approvals", Some(&cookie)).await;
    let (a, b) = (page.text.find(&first).unwrap(), page.text.find(&second).unwrap());
    assert!(a < b, "the older approval expires first and comes first");
    assert!(page.text.contains(r#"<span class="count">2</span>"#));
    assert_eq!(
        page.text.matches(r#"value="Approve""#).count() + page.text.matches(">Approve<").count(),
        2
    );
}

/// A request over a real socket to a spawned `tame-server`.
async fn over_socket(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Page {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(axum::body::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_flow_over_a_real_socket() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policies.yml"), POLICY).unwrap();
    /// Kills the server however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tame-server"))
        .arg("--policy")
        .arg(dir.path().join("policies.yml"))
        .arg("--db")
        .arg(dir.path().join("tame.db"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--no-watch",
            "--admin-key",
            ADMIN,
            "--agent-key",
            AGENT,
        ])
        .env("TAME_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Killed(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .parse()
        .unwrap();
    let origin = format!("http://{addr}");
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", origin.as_str()),
    ];

    let first = over_socket(addr, "GET", "/", &[], String::new()).await;
    assert_eq!(first.location(), "/dashboard");
    let closed = over_socket(addr, "GET", "/dashboard", &[], String::new()).await;
    assert_eq!(closed.status, StatusCode::SEE_OTHER);
    assert!(closed.location().starts_with("/dashboard/login"));

    let login = over_socket(
        addr,
        "POST",
        "/dashboard/login",
        &form,
        form_body(&[("key", ADMIN), ("name", "carol")]),
    )
    .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text);
    let cookie = login.set_cookie().unwrap().split(';').next().unwrap().to_string();

    let call = json!({"tool_name": "query_database", "tool_args": prod_args(), "session_id": "sock"}).to_string();
    let bearer = format!("Bearer {AGENT}");
    let decided = over_socket(
        addr,
        "POST",
        "/api/v1/enforce",
        &[("content-type", "application/json"), ("authorization", &bearer)],
        call,
    )
    .await;
    let id = serde_json::from_str::<Value>(&decided.text).unwrap()["approval_id"]
        .as_str()
        .unwrap()
        .to_string();

    let page = over_socket(
        addr,
        "GET",
        "/dashboard/approvals",
        &[("cookie", &cookie)],
        String::new(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(&id));
    let mut with_cookie = form.to_vec();
    with_cookie.push(("cookie", &cookie));
    let done = over_socket(
        addr,
        "POST",
        &format!("/dashboard/approvals/{id}/reject"),
        &with_cookie,
        form_body(&[("csrf", &page.csrf()), ("reason", "over the wire")]),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let admin = format!("Bearer {ADMIN}");
    let a = over_socket(
        addr,
        "GET",
        &format!("/api/v1/approvals/{id}"),
        &[("authorization", &admin)],
        String::new(),
    )
    .await;
    let a: Value = serde_json::from_str(&a.text).unwrap();
    assert_eq!(a["state"], "rejected");
    assert_eq!(a["decided_by"], "dashboard:carol");
}

#[tokio::test]
async fn expired_approvals_cannot_be_approved_from_the_dashboard() {
    let h = harness_with(Auth::new(&[AGENT.into()], &[ADMIN.into()]), short_approvals());
    let cookie = login(&h, "ann").await;
    let id = pending_approval(&h, prod_args(), "s-late").await;
    let csrf = get(&h, "/dashboard/approvals", Some(&cookie)).await.csrf();
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let page = get(&h, "/dashboard/approvals", Some(&cookie)).await;
    assert!(page.text.contains("No call is waiting"), "{}", page.text);
    assert!(page.text.contains(r#"<span class="badge expired">expired</span>"#));
    let late = post(
        &h,
        &format!("/dashboard/approvals/{id}/approve"),
        &[("csrf", &csrf)],
        Some(&cookie),
    )
    .await;
    assert_eq!(late.location(), format!("/dashboard/approvals?flash=conflict&id={id}"));
    let a = h
        .call("GET", &format!("/api/v1/approvals/{id}"), None, Some(ADMIN))
        .await;
    assert_eq!(a.json["state"], "expired");
}

#[tokio::test]
async fn attribute_values_and_the_login_form_are_escaped_too() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    // An id built to break out of an attribute.
    let sid = r#"x" onmouseover="alert(1)"#;
    h.call(
        "POST",
        "/api/v1/enforce",
        Some(&json!({"tool_name": "read_file", "tool_args": {"path": "/tmp"}, "session_id": sid}).to_string()),
        Some(AGENT),
    )
    .await;
    let list = get(&h, "/dashboard/sessions", Some(&cookie)).await;
    assert!(!list.text.contains(r#"" onmouseover=""#), "{}", list.text);
    assert!(list.text.contains(r#"title="x&quot; onmouseover=&quot;alert(1)""#));
    // A failed login shows the name it was given, escaped.
    let failed = post(
        &h,
        "/dashboard/login",
        &[("key", "wrong"), ("name", r#""><script>alert(3)</script>"#)],
        None,
    )
    .await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    assert!(!failed.text.contains("<script>alert(3)"));
    assert!(failed.text.contains("&quot;&gt;&lt;script&gt;alert(3)"));
    // The name in the header after login is escaped as well.
    let r = post(&h, "/dashboard/login", &[("key", ADMIN), ("name", "<i>eve</i>")], None).await;
    let eve = r.set_cookie().unwrap().split(';').next().unwrap().to_string();
    let page = get(&h, "/dashboard", Some(&eve)).await;
    assert!(
        page.text
            .contains("signed in as <strong>&lt;i&gt;eve&lt;/i&gt;</strong>")
    );
}

/// Enforces `read_file` on `/tmp/e{i:03}` in `session`; returns the log id.
async fn read_call(h: &Harness, session: &str, i: usize) -> String {
    let body = json!({"tool_name": "read_file", "tool_args": {"path": format!("/tmp/e{i:03}")}, "session_id": session});
    let r = h
        .call("POST", "/api/v1/enforce", Some(&body.to_string()), Some(AGENT))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json["log_id"].as_str().unwrap().to_string()
}

/// The numbers `NNN` of the `{prefix}NNN{suffix}` a page shows, in page order.
fn numbers_after(p: &Page, prefix: &str, suffix: &str) -> Vec<usize> {
    p.text
        .match_indices(prefix)
        .filter_map(|(at, _)| {
            let rest = &p.text[at + prefix.len()..];
            let digits = rest.get(..3)?;
            rest[3..].starts_with(suffix).then(|| digits.parse().ok())?
        })
        .collect()
}

/// The `/tmp/eNNN` calls a page shows (in their arguments), in page order.
fn calls_shown(p: &Page) -> Vec<usize> {
    numbers_after(p, "/tmp/e", "&quot;")
}

#[tokio::test]
async fn a_session_page_shows_its_own_slice_of_the_log() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    // `long` gets calls 0..250, `other` every fifth call besides.
    let mut logs = Vec::new();
    for i in 0..250 {
        logs.push(read_call(&h, "long", i).await);
        if i % 5 == 0 {
            read_call(&h, "other", 500 + i).await;
        }
    }
    // A result for the first entry of page 2.
    let r = h
        .call(
            "POST",
            &format!("/api/v1/enforce/long/result?log_id={}", logs[100]),
            Some(&json!({"status": "success", "duration_ms": 42}).to_string()),
            Some(AGENT),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let first = get(&h, "/dashboard/sessions/long", Some(&cookie)).await;
    assert_eq!(calls_shown(&first), (0..100).collect::<Vec<_>>());
    assert!(first.text.contains("page 1 of 3"));
    let second = get(&h, "/dashboard/sessions/long?page=2", Some(&cookie)).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(calls_shown(&second), (100..200).collect::<Vec<_>>());
    assert!(second.text.contains("page 2 of 3"));
    assert!(second.text.contains(r#"href="/dashboard/sessions/long?page=1""#));
    assert!(second.text.contains(r#"href="/dashboard/sessions/long?page=3""#));
    // Page 1 is the start of the log: the later entries come next.
    assert!(second.text.contains(r#"rel="prev">← Earlier</a>"#), "{}", second.text);
    assert!(second.text.contains(r#"rel="next">Later →</a>"#));
    assert_eq!(second.text.matches("<summary>result</summary>").count(), 1);
    assert!(second.text.contains("42 ms"), "the result of entry 100");
    let third = get(&h, "/dashboard/sessions/long?page=3", Some(&cookie)).await;
    assert_eq!(calls_shown(&third), (200..250).collect::<Vec<_>>());
    assert!(!third.text.contains(r#"rel="next""#), "the last page");
    let beyond = get(&h, "/dashboard/sessions/long?page=4", Some(&cookie)).await;
    assert_eq!(beyond.status, StatusCode::OK);
    assert!(calls_shown(&beyond).is_empty());
    let other = get(&h, "/dashboard/sessions/other", Some(&cookie)).await;
    assert_eq!(calls_shown(&other), (0..50).map(|i| 500 + 5 * i).collect::<Vec<_>>());
    assert!(other.text.contains("page 1 of 1"));
}

#[tokio::test]
async fn the_overview_lists_the_newest_decisions_of_all_sessions() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    for i in 0..40 {
        // `read_NNN` tools are allowed; every fourth call is to a tool no
        // rule names (denied by default).
        let tool = if i % 4 == 3 {
            format!("drop_{i:03}")
        } else {
            format!("read_{i:03}")
        };
        let body = json!({"tool_name": tool, "tool_args": {}, "session_id": format!("s{}", i % 5)});
        h.call("POST", "/api/v1/enforce", Some(&body.to_string()), Some(AGENT))
            .await;
    }
    let o = get(&h, "/dashboard", Some(&cookie)).await;
    assert_eq!(o.status, StatusCode::OK);
    // The 15 newest decisions of all sessions, newest first.
    let shown = numbers_after(&o, "_", "</td>");
    assert_eq!(shown, (25..40).rev().collect::<Vec<_>>());
    assert!(o.text.contains("5 sessions"));
    assert!(o.text.contains(r#"<strong>40</strong>"#), "40 decisions in all");
    assert!(
        o.text.contains(r#"<td class="num">30</td><td class="num">75.0 %</td>"#),
        "30 of 40 allowed"
    );
    assert!(
        o.text.contains(r#"<td class="num">10</td><td class="num">25.0 %</td>"#),
        "10 of 40 denied"
    );
}

#[tokio::test]
async fn the_approvals_page_lists_the_twenty_newest_decided() {
    let h = keyed();
    let cookie = login(&h, "ann").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let args = json!({"database": "production", "query": format!("DELETE FROM t{i:03}")});
        ids.push(pending_approval(&h, args, &format!("s-{i}")).await);
    }
    // All but the last two are rejected, each with its number as the reason.
    for (i, id) in ids.iter().enumerate().take(23) {
        let r = h
            .call(
                "POST",
                &format!("/api/v1/approvals/{id}/reject"),
                Some(&json!({"reason": format!("no {i:03}")}).to_string()),
                Some(ADMIN),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let page = get(&h, "/dashboard/approvals", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    // The 20 newest decided, newest first; the three oldest are left out.
    let reasons = numbers_after(&page, "<td>no ", "</td>");
    assert_eq!(reasons, (3..23).rev().collect::<Vec<_>>());
    // The two pending ones are shown above, with the count in the nav.
    for id in &ids[23..] {
        assert!(page.text.contains(&format!("/dashboard/approvals/{id}/approve")));
    }
    assert!(page.text.contains(r#"<span class="count">2</span>"#));
}
