//! Who may see the dashboard: admin-key logins kept as random session
//! tokens in memory, the session cookie, CSRF checks on every POST, and
//! the loopback-only open mode of a server without keys.
//!
//! The cookie holds a random token, never the key; the server keeps only
//! the token's sha256 with the operator's name, a CSRF token and an
//! expiry. Every state-changing POST needs the cookie, the session's CSRF
//! token in the form and a same-origin `Origin` (or `Referer`). Without
//! keys the dashboard is open, but only to requests whose `Host` is a
//! loopback name, so a web page that rebinds its name to 127.0.0.1 cannot
//! read or drive it. Wrong login keys count against the client's
//! failed-authentication budget, shared with the API's (see
//! [`crate::ratelimit`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::views;
use crate::AppState;
use crate::ratelimit::{ClientKey, Precheck};

/// The session cookie's name.
pub const COOKIE: &str = "tame_dashboard";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);
/// Logins kept at most; past it the oldest is dropped.
const MAX_LOGINS: usize = 1024;
/// Longest operator name kept (characters).
const MAX_NAME: usize = 64;

/// One logged-in operator.
#[derive(Debug, Clone)]
struct Login {
    name: String,
    csrf: String,
    expires: Timestamp,
}

/// The dashboard's logins, keyed by the sha256 of their cookie token.
#[derive(Debug, Default)]
pub struct Logins {
    by_digest: Mutex<HashMap<[u8; 32], Login>>,
    /// The CSRF token of the open (keyless) dashboard, made on first use.
    open_csrf: OnceLock<String>,
}

/// A random 256-bit token, hex encoded.
pub fn random_token() -> Result<String, views::PageError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| views::PageError::internal(format!("no randomness for a token: {e}")))?;
    Ok(hex::encode(bytes))
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal strings, compared in constant time (for equal lengths).
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Logins {
    fn table(&self) -> MutexGuard<'_, HashMap<[u8; 32], Login>> {
        // A panic elsewhere cannot leave a half-written login behind: every
        // change is a single insert or remove.
        self.by_digest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a login for `name`; returns the cookie token.
    fn start(&self, name: String, now: Timestamp) -> Result<String, views::PageError> {
        let token = random_token()?;
        let login = Login {
            name,
            csrf: random_token()?,
            expires: now + SESSION_TTL,
        };
        let mut table = self.table();
        table.retain(|_, l| l.expires > now);
        while table.len() >= MAX_LOGINS {
            let oldest = table.iter().min_by_key(|(_, l)| l.expires).map(|(k, _)| *k);
            match oldest {
                Some(k) => table.remove(&k),
                None => break,
            };
        }
        table.insert(token_digest(&token), login);
        Ok(token)
    }

    fn find(&self, token: &str, now: Timestamp) -> Option<Login> {
        let digest = token_digest(token);
        let mut table = self.table();
        match table.get(&digest) {
            Some(l) if l.expires > now => Some(l.clone()),
            Some(_) => {
                table.remove(&digest);
                None
            }
            None => None,
        }
    }

    fn end(&self, token: &str) {
        self.table().remove(&token_digest(token));
    }

    fn open_csrf(&self) -> Result<String, views::PageError> {
        if let Some(t) = self.open_csrf.get() {
            return Ok(t.clone());
        }
        let made = random_token()?;
        // Another request may have won the race: use whichever was set.
        Ok(self.open_csrf.get_or_init(|| made).clone())
    }
}

// ------------------------------------------------------------ hosts and origins

// The Host and Origin rules are the edge's (`tame_edge`), which every
// request passed before it got here; the dashboard adds that a POST must
// name its origin (or referer) and that an open dashboard is loopback's.

/// The authority the request was sent to (`Host`, or the URI's for HTTP/2).
fn request_host<'r>(headers: &'r HeaderMap, uri: &'r Uri) -> Option<&'r str> {
    let [host, target, _forwarded] = tame_edge::own_authorities(headers, uri);
    host.or(target)
}

/// Whether the request was sent to this machine's loopback by name or address.
fn on_loopback(headers: &HeaderMap, uri: &Uri) -> bool {
    request_host(headers, uri).is_some_and(tame_edge::is_loopback)
}

/// `scheme://authority` split from an origin or URL; `None` if neither http nor https.
fn scheme_and_authority(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    Some((scheme, authority))
}

/// Where the browser says the request comes from: the `Origin` header, or
/// the `Referer` when there is no `Origin`.
fn request_origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
}

/// Whether a POST comes from a page of this same host: its `Origin` (or,
/// without one, its `Referer`) names the authority the request was sent to
/// (`Host`, or a reverse proxy's `X-Forwarded-Host`: a cross-site form
/// cannot set either). A request that names neither is refused.
pub fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(url) = request_origin(headers) else {
        return false;
    };
    let Some((scheme, authority)) = scheme_and_authority(url) else {
        return false;
    };
    tame_edge::same_origin(
        &format!("{scheme}://{authority}"),
        tame_edge::own_authorities(headers, uri),
    )
}

/// Whether the browser reached us over https (its origin's scheme, or a
/// TLS proxy's `X-Forwarded-Proto`).
fn over_https(headers: &HeaderMap) -> bool {
    let proxy = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    proxy
        || request_origin(headers)
            .and_then(scheme_and_authority)
            .is_some_and(|(s, _)| s.eq_ignore_ascii_case("https"))
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

fn session_cookie(value: String, secure: bool, max_age: Duration) -> String {
    Cookie::build((COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(0),
        ))
        .build()
        .to_string()
}

// ------------------------------------------------------------ the viewer

/// Who is looking at the dashboard.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// No keys are configured: the dashboard is open on loopback.
    pub open: bool,
    /// The operator's name as given at login (`local` when open).
    pub name: String,
    /// The token every form of this viewer carries.
    pub csrf: String,
    /// The cookie token of the login (none when open).
    token: Option<String>,
}

impl Viewer {
    /// Who the audit log names for this viewer's approvals.
    pub fn audit_name(&self) -> String {
        format!("dashboard:{}", self.name)
    }

    /// Checks a state-changing POST: same origin, and the form's CSRF token.
    pub fn check_post(&self, headers: &HeaderMap, uri: &Uri, form_csrf: Option<&str>) -> Result<(), views::PageError> {
        if !same_origin(headers, uri) {
            return Err(views::PageError::new(
                StatusCode::FORBIDDEN,
                "this form was not sent from a page of this dashboard (its Origin or Referer names another site, or is missing); reload the page and try again",
            ));
        }
        match form_csrf {
            Some(t) if same_secret(t, &self.csrf) => Ok(()),
            _ => Err(views::PageError::new(
                StatusCode::FORBIDDEN,
                "the form's security token is missing or stale; reload the page and try again",
            )),
        }
    }
}

fn resolve(parts: &Parts, state: &AppState) -> Result<Option<Viewer>, views::PageError> {
    if state.auth().is_open() {
        if !on_loopback(&parts.headers, &parts.uri) {
            return Err(views::PageError::new(
                StatusCode::FORBIDDEN,
                "no API keys are configured, so the dashboard is served only on loopback (localhost, 127.0.0.1, [::1]); configure an admin key to open it from elsewhere",
            ));
        }
        return Ok(Some(Viewer {
            open: true,
            name: "local".into(),
            csrf: state.dashboard().logins.open_csrf()?,
            token: None,
        }));
    }
    let Some(token) = cookie_token(&parts.headers) else {
        return Ok(None);
    };
    Ok(state
        .dashboard()
        .logins
        .find(&token, Timestamp::now())
        .map(|login| Viewer {
            open: false,
            name: login.name,
            csrf: login.csrf,
            token: Some(token),
        }))
}

/// The login page's address that comes back to `uri` afterwards.
fn login_redirect(uri: &Uri) -> Response {
    let back = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/dashboard");
    let target = format!("/dashboard/login?next={}", views::query_value(back));
    Redirect::to(&target).into_response()
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    /// A logged-in operator (or the open dashboard). Without a login a GET
    /// is sent to the login page and anything else gets 401.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match resolve(parts, state) {
            Ok(Some(v)) => Ok(v),
            Ok(None) if parts.method == Method::GET || parts.method == Method::HEAD => Err(login_redirect(&parts.uri)),
            Ok(None) => Err(views::PageError::new(
                StatusCode::UNAUTHORIZED,
                "log in with an admin key first (your session may have expired)",
            )
            .into_response()),
            Err(e) => Err(e.into_response()),
        }
    }
}

impl OptionalFromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    /// The viewer if there is one; errors only where the dashboard is closed.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        resolve(parts, state).map_err(IntoResponse::into_response)
    }
}

// ------------------------------------------------------------ login and logout

/// The login form's fields.
#[derive(Debug, serde::Deserialize, Default)]
pub struct LoginForm {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub next: String,
}

/// Where to go after logging in: only a dashboard page of this site.
pub fn safe_next(next: &str) -> String {
    let ok = next == "/dashboard"
        || (next.starts_with("/dashboard/") || next.starts_with("/dashboard?"))
            && !next.contains(['\\', '\r', '\n', '\t'])
            && !next.starts_with("/dashboard/login")
            && !next.starts_with("/dashboard/logout");
    if ok { next.to_owned() } else { "/dashboard".to_owned() }
}

/// A name fit for the audit log: printable, trimmed, at most 64 characters.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect::<String>()
        .trim()
        .to_owned();
    if cleaned.is_empty() {
        "admin".to_owned()
    } else {
        cleaned
    }
}

fn login_failed(status: StatusCode, message: &str, form: &LoginForm) -> Response {
    (
        status,
        views::login_page(Some(message), &safe_next(&form.next), &form.name),
    )
        .into_response()
}

/// The login page again, answered 429 with `Retry-After`: `client` spent
/// its failed-authentication budget.
fn login_limited(state: &AppState, wait: Duration, form: &LoginForm) -> Response {
    crate::ratelimit::count(state, "dashboard", crate::ratelimit::Counted::Limited);
    let secs = crate::ratelimit::retry_after_secs(wait);
    let message = format!("too many failed logins from your address: try again in {secs} s (the key was not checked)");
    let mut resp = login_failed(StatusCode::TOO_MANY_REQUESTS, &message, form);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    resp
}

/// `POST /dashboard/login`: checks the key and starts a session. A wrong
/// key counts against `client`'s failed-authentication budget; once it is
/// spent the form answers 429 without checking the key, right or wrong
/// (see [`crate::ratelimit`]).
pub fn login(state: &AppState, headers: &HeaderMap, uri: &Uri, form: &LoginForm, client: ClientKey) -> Response {
    if state.auth().is_open() {
        return Redirect::to("/dashboard").into_response();
    }
    if !same_origin(headers, uri) {
        return login_failed(
            StatusCode::FORBIDDEN,
            "this login form was not sent from this dashboard's own page (Origin or Referer missing or foreign)",
            form,
        );
    }
    // Secure whenever the browser came over https; off loopback it must have.
    let https = over_https(headers);
    let secure = https || !on_loopback(headers, uri);
    if secure && !https {
        return login_failed(
            StatusCode::BAD_REQUEST,
            "off loopback the session cookie is Secure: open the dashboard over HTTPS (a TLS proxy in front of tame) or on localhost",
            form,
        );
    }
    let key = form.key.trim();
    if key.is_empty() {
        return login_failed(StatusCode::UNAUTHORIZED, "enter an admin key", form);
    }
    let limiter = state.auth().limiter();
    let prepaid = match limiter.precheck(client) {
        Precheck::Pass => false,
        Precheck::Prepaid => true,
        Precheck::Limited(wait) => return login_limited(state, wait, form),
    };
    match state.auth().role_of_key(key) {
        Some(crate::Role::Admin) => {}
        Some(_) => {
            return login_failed(
                StatusCode::FORBIDDEN,
                "this is an agent key: the dashboard needs an admin key",
                form,
            );
        }
        None => {
            crate::ratelimit::count(state, "dashboard", crate::ratelimit::Counted::Failure);
            return match limiter.record_failure(client, prepaid) {
                Some(wait) => login_limited(state, wait, form),
                None => login_failed(StatusCode::UNAUTHORIZED, "invalid key", form),
            };
        }
    }
    let token = match state.dashboard().logins.start(clean_name(&form.name), Timestamp::now()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    tracing::info!(name = %clean_name(&form.name), "dashboard login");
    let mut resp = Redirect::to(&safe_next(&form.next)).into_response();
    if let Ok(v) = session_cookie(token, secure, SESSION_TTL).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /dashboard/logout`: ends the session and clears the cookie.
pub fn logout(viewer: &Viewer, headers: &HeaderMap, uri: &Uri, form_csrf: Option<&str>, state: &AppState) -> Response {
    if let Err(e) = viewer.check_post(headers, uri, form_csrf) {
        return e.into_response();
    }
    if viewer.open {
        return Redirect::to("/dashboard").into_response();
    }
    if let Some(token) = &viewer.token {
        state.dashboard().logins.end(token);
    }
    let secure = over_https(headers) || !on_loopback(headers, uri);
    let mut resp = Redirect::to("/dashboard/login").into_response();
    if let Ok(v) = session_cookie(String::new(), secure, Duration::ZERO).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_hosts() {
        let uri: Uri = "/dashboard".parse().unwrap();
        for h in [
            "localhost",
            "localhost:8000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:8000",
            "[::1]",
            "app.localhost",
        ] {
            assert!(on_loopback(&headers(&[("host", h)]), &uri), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1:8000",
            "[::2]:1",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "[::1",
            "",
        ] {
            assert!(!on_loopback(&headers(&[("host", h)]), &uri), "{h}");
        }
    }

    #[test]
    fn same_origin_compares_authorities() {
        let uri: Uri = "/dashboard".parse().unwrap();
        let h = headers(&[("host", "127.0.0.1:8000"), ("origin", "http://127.0.0.1:8000")]);
        assert!(same_origin(&h, &uri));
        let h = headers(&[("host", "127.0.0.1:8000"), ("origin", "http://evil.example")]);
        assert!(!same_origin(&h, &uri));
        let h = headers(&[("host", "127.0.0.1:8000"), ("origin", "null")]);
        assert!(!same_origin(&h, &uri));
        let h = headers(&[
            ("host", "127.0.0.1:8000"),
            ("referer", "http://127.0.0.1:8000/dashboard/x?y"),
        ]);
        assert!(same_origin(&h, &uri));
        let h = headers(&[("host", "127.0.0.1:8000"), ("referer", "http://127.0.0.1:8000.evil/x")]);
        assert!(!same_origin(&h, &uri));
        let h = headers(&[("host", "127.0.0.1:8000")]);
        assert!(!same_origin(&h, &uri), "neither Origin nor Referer");
        // Behind a reverse proxy that keeps the public name in X-Forwarded-Host.
        let h = headers(&[
            ("host", "127.0.0.1:8000"),
            ("x-forwarded-host", "tame.example.com"),
            ("origin", "https://tame.example.com"),
        ]);
        assert!(same_origin(&h, &uri));
        let h = headers(&[
            ("host", "127.0.0.1:8000"),
            ("x-forwarded-host", "tame.example.com"),
            ("origin", "https://evil.example"),
        ]);
        assert!(!same_origin(&h, &uri));
        // Compared as the edge compares origins: a scheme's default port
        // is that port, names without case.
        let h = headers(&[("host", "Tame.Example.com:443"), ("origin", "https://tame.example.com")]);
        assert!(same_origin(&h, &uri));
        let h = headers(&[("host", "tame.example.com:80"), ("origin", "https://tame.example.com")]);
        assert!(!same_origin(&h, &uri));
    }

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(safe_next("/dashboard/sessions?page=2"), "/dashboard/sessions?page=2");
        assert_eq!(safe_next("https://evil.example/"), "/dashboard");
        assert_eq!(safe_next("//evil.example/dashboard"), "/dashboard");
        assert_eq!(safe_next("/dashboardx"), "/dashboard");
        assert_eq!(safe_next("/dashboard/login"), "/dashboard");
        assert_eq!(safe_next("/dashboard/\\evil"), "/dashboard");
    }

    #[test]
    fn logins_expire_and_end() {
        let logins = Logins::default();
        let now = Timestamp::now();
        let token = logins.start("ann".into(), now).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(logins.find(&token, now).unwrap().name, "ann");
        assert!(logins.find("other", now).is_none());
        assert!(logins.find(&token, now + SESSION_TTL).is_none(), "expired");
        assert!(logins.table().is_empty(), "an expired login is dropped when seen");
        let token = logins.start("bob".into(), now).unwrap();
        logins.end(&token);
        assert!(logins.find(&token, now).is_none());
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  ann \n"), "ann");
        assert_eq!(clean_name("\u{7}"), "admin");
        assert_eq!(clean_name(&"x".repeat(200)).len(), MAX_NAME);
    }

    #[test]
    fn cookie_attributes() {
        let c = session_cookie("tok".into(), true, SESSION_TTL);
        for part in [
            "tame_dashboard=tok",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Secure",
            "Max-Age=28800",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!session_cookie("tok".into(), false, SESSION_TTL).contains("Secure"));
    }
}
