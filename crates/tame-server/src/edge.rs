//! The server's edge: what every request must pass before a route reads
//! it, so that a web page the operator happens to visit cannot drive the
//! server (cross-site requests, DNS rebinding), keyed or not.
//!
//! In this order, each refusal answered in the API's error shape:
//!
//! 1. **Host** (every route, `/health` and `/metrics` too): the `Host`
//!    header (and a reverse proxy's `X-Forwarded-Host`, and an absolute
//!    request target's authority) must name this server: a loopback
//!    address or `localhost` (any port), the address it listens on (any
//!    port), or an `allowed_hosts` entry; else `421 Misdirected Request`.
//!    Listening on `0.0.0.0` or `::`, any IP address literal passes: a
//!    page can rebind a *name* to this machine, never an address, and the
//!    addresses that reach a server (its interfaces, a pod IP that
//!    Kubernetes probes use, a NAT or Service address) cannot all be
//!    listed. Names other than `localhost` must be configured
//!    (`allowed_hosts`, `TAME_ALLOWED_HOSTS`, `--allowed-host`); a `*`
//!    entry turns the check off. A request without `Host` (HTTP/1.0, or
//!    an in-process call) passes: browsers always send one.
//! 2. **JSON** (the API's POST routes): the body must be declared
//!    `application/json` (parameters allowed, `application/*+json` too);
//!    else 415. A POST without a body and without a `Content-Type` passes
//!    (`reload`, `approve` and `reject` take an empty body). What a page
//!    can send cross-site without a CORS preflight (a form, a simple
//!    `fetch`) declares a non-JSON type or none, and an empty one carries
//!    an `Origin`.
//! 3. **Origin** (every route): a request whose `Origin` is not this
//!    server's own (the scheme and authority of its `Host` or
//!    `X-Forwarded-Host`) is refused with 403. Browsers send `Origin` on
//!    every cross-site request that can change something; the CLI and
//!    the SDKs send none and pass. Checked before the key, so that a
//!    page cannot spend the operator's failed-authentication budget.
//! 4. **Key** (the API's routes, by the role [`crate::ROUTES`] gives
//!    them): checked from the headers before any handler runs, hence
//!    before any body is read (401/403; counted by the failed
//!    authentication limit around this layer). A valid key is remembered
//!    in the request ([`crate::auth::Verified`]) so extractors need not
//!    hash it again.
//!
//! The dashboard's routes are not API routes: their forms post
//! `application/x-www-form-urlencoded`, and they check their own login,
//! CSRF token and origin besides.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::HttpBody as _;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::{Role, Verified};
use crate::error::AppError;

/// One `allowed_hosts` entry: a host name or an IP address, with or
/// without a port (without: any port), or `*` (any host at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    /// `*`: the Host check is off.
    Any,
    /// A host name, lowercase, without a trailing dot.
    Name { name: Box<str>, port: Option<u16> },
    /// An IP address (IPv6 written in brackets when a port follows).
    Ip { ip: IpAddr, port: Option<u16> },
}

impl AllowedHost {
    /// Parses `host`, `host:port`, `1.2.3.4[:port]`, `[::1][:port]` or `*`.
    pub fn parse(s: &str) -> Result<AllowedHost, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(AllowedHost::Any);
        }
        if s.contains('*') {
            return Err(format!(
                "`{s}`: a wildcard is only allowed alone (`*`, which turns the Host check off); list each name"
            ));
        }
        let bad = || {
            format!(
                "`{s}` is not a host name or address with an optional port (e.g. `tame.example.com`, `tame.internal:8000`, `10.0.0.5`)"
            )
        };
        if s.contains(['/', '@', '?', '#', ' ']) {
            return Err(bad());
        }
        // A bare IPv6 address (no brackets, so no port).
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Ok(AllowedHost::Ip {
                ip: IpAddr::V6(ip),
                port: None,
            });
        }
        let authority = split_authority(s).ok_or_else(bad)?;
        match authority.ip() {
            Some(ip) => Ok(AllowedHost::Ip {
                ip,
                port: authority.port,
            }),
            None if authority.bracketed || !is_host_name(authority.host) => Err(bad()),
            None => Ok(AllowedHost::Name {
                name: trim_dot(authority.host).to_ascii_lowercase().into(),
                port: authority.port,
            }),
        }
    }

    fn permits(&self, host: Host<'_>, port: Option<u16>) -> bool {
        let (matched, wanted) = match (self, host) {
            (AllowedHost::Any, _) => return true,
            (AllowedHost::Name { name, port }, Host::Name(n)) => (name.eq_ignore_ascii_case(n), port),
            (AllowedHost::Ip { ip, port }, Host::Ip(i)) => (*ip == i, port),
            _ => return false,
        };
        matched && wanted.is_none_or(|w| Some(w) == port)
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: &Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        match self {
            AllowedHost::Any => f.write_str("*"),
            AllowedHost::Name { name, port: p } => write!(f, "{name}{}", port(p)),
            AllowedHost::Ip {
                ip: IpAddr::V6(ip),
                port: p,
            } if p.is_some() => write!(f, "[{ip}]{}", port(p)),
            AllowedHost::Ip { ip, port: p } => write!(f, "{ip}{}", port(p)),
        }
    }
}

impl std::str::FromStr for AllowedHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        AllowedHost::parse(s)
    }
}

/// Letters, digits, `-`, `_` and dots: what a DNS name (or a name from
/// `/etc/hosts`) is made of.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn trim_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// The host part of an authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host<'a> {
    Ip(IpAddr),
    /// Without its trailing dot, in the case it was sent.
    Name(&'a str),
}

/// `host[:port]` taken apart (no allocation: this runs on every request).
#[derive(Debug, Clone, Copy)]
struct Authority<'a> {
    host: &'a str,
    bracketed: bool,
    port: Option<u16>,
}

impl<'a> Authority<'a> {
    fn ip(&self) -> Option<IpAddr> {
        if self.bracketed {
            self.host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            self.host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        }
    }

    fn host(&self) -> Host<'a> {
        match self.ip() {
            Some(ip) => Host::Ip(ip.to_canonical()),
            None => Host::Name(trim_dot(self.host)),
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets); `None` when malformed: empty,
/// user info, a bad port, or an IPv6 address without brackets.
fn split_authority(s: &str) -> Option<Authority<'_>> {
    let s = s.trim();
    if s.is_empty() || s.contains('@') {
        return None;
    }
    let port = |p: &str| -> Option<Option<u16>> {
        match p {
            "" => Some(None),
            p if p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok().map(Some),
            _ => None,
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            after => port(after.strip_prefix(':')?)?,
        };
        return Some(Authority {
            host,
            bracketed: true,
            port,
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, p)) => (host, port(p)?),
        None => (s, None),
    };
    if host.is_empty() || host.contains(':') {
        return None;
    }
    Some(Authority {
        host,
        bracketed: false,
        port,
    })
}

/// The hosts a request may name: loopback and `localhost` always, the
/// listen address (any IP literal when listening on all addresses), and
/// the configured `allowed_hosts`.
#[derive(Debug, Clone)]
pub struct Hosts {
    listen: IpAddr,
    allowed: Vec<AllowedHost>,
    any: bool,
}

impl Default for Hosts {
    /// A server on `127.0.0.1` with no `allowed_hosts`: loopback only.
    fn default() -> Self {
        Hosts::new(SocketAddr::from(([127, 0, 0, 1], 0)), &[])
    }
}

impl Hosts {
    /// The hosts of a server listening on `listen` with `allowed` configured.
    pub fn new(listen: SocketAddr, allowed: &[AllowedHost]) -> Hosts {
        Hosts {
            listen: listen.ip().to_canonical(),
            allowed: allowed.to_vec(),
            any: allowed.contains(&AllowedHost::Any),
        }
    }

    /// Whether `authority` (a `Host` header's value) names this server.
    pub fn permits(&self, authority: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(authority) = split_authority(authority) else {
            return false;
        };
        let host = authority.host();
        let ours = match host {
            Host::Ip(ip) => ip.is_loopback() || self.listen.is_unspecified() || ip == self.listen,
            Host::Name(name) => is_localhost(name),
        };
        ours || self.allowed.iter().any(|a| a.permits(host, authority.port))
    }
}

/// `localhost` and its subdomains (RFC 6761: browsers resolve them to
/// loopback themselves, so no page can rebind them).
fn is_localhost(name: &str) -> bool {
    let suffix = name.len().checked_sub(".localhost".len()).and_then(|at| name.get(at..));
    name.eq_ignore_ascii_case("localhost") || suffix.is_some_and(|s| s.eq_ignore_ascii_case(".localhost"))
}

// ------------------------------------------------------------ the checks

/// At most this much of a refused header's value is quoted back.
const QUOTED: usize = 100;

fn quoted(value: &str) -> String {
    value.chars().take(QUOTED).collect()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &header::HeaderName) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The first value of a reverse proxy's `X-Forwarded-Host`.
fn forwarded_host(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, &X_FORWARDED_HOST).map(|v| v.split(',').next().unwrap_or(v).trim())
}

static X_FORWARDED_HOST: header::HeaderName = header::HeaderName::from_static("x-forwarded-host");

fn check_host(hosts: &Hosts, req: &Request) -> Result<(), AppError> {
    let named = [
        header_str(req.headers(), &header::HOST),
        req.uri().authority().map(|a| a.as_str()),
        forwarded_host(req.headers()),
    ];
    for authority in named.into_iter().flatten() {
        if !hosts.permits(authority) {
            return Err(AppError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server does not answer to the host `{}`: it answers to loopback addresses, \
                     `localhost`, the address it listens on and the names in `allowed_hosts` \
                     (TAME_ALLOWED_HOSTS, --allowed-host); add this name there if it is the server's own",
                    quoted(authority)
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of one of the
/// authorities the request was sent to. Ports default by the origin's
/// scheme on both sides.
fn same_origin<'a>(origin: &str, own: impl IntoIterator<Item = Option<&'a str>>) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        return false;
    };
    let Some(theirs) = split_authority(rest) else {
        return false;
    };
    fn key(a: Authority<'_>, default_port: u16) -> (Host<'_>, u16) {
        (a.host(), a.port.unwrap_or(default_port))
    }
    let theirs = key(theirs, default_port);
    own.into_iter()
        .flatten()
        .filter_map(split_authority)
        .any(|ours| match (key(ours, default_port), theirs) {
            ((Host::Name(a), p), (Host::Name(b), q)) => p == q && a.eq_ignore_ascii_case(b),
            (ours, theirs) => ours == theirs,
        })
}

fn check_origin(req: &Request) -> Result<(), AppError> {
    let headers = req.headers();
    let Some(origin) = header_str(headers, &header::ORIGIN) else {
        return Ok(());
    };
    let own = [
        header_str(headers, &header::HOST),
        req.uri().authority().map(|a| a.as_str()),
        forwarded_host(headers),
    ];
    if same_origin(origin, own) {
        return Ok(());
    }
    Err(AppError::new(
        StatusCode::FORBIDDEN,
        format!(
            "cross-site request refused: its Origin `{}` is not this server's own; \
             pages of other sites may not call this server (clients that are not browsers send no Origin)",
            quoted(origin)
        ),
    ))
}

/// Whether a media type is JSON: `application/json` or
/// `application/*+json`, with any parameters.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(mime) = content_type.to_str().unwrap_or("").parse::<mime::Mime>() else {
        return false;
    };
    mime.type_() == mime::APPLICATION && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

/// Whether the request carries no body: hyper knows (no `Content-Length`
/// and no chunked encoding, or a length of 0), as does an in-process
/// request built with an empty body.
fn has_no_body(req: &Request) -> bool {
    req.body().is_end_stream()
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
}

fn check_json(req: &Request) -> Result<(), AppError> {
    let detail = match req.headers().get(header::CONTENT_TYPE) {
        Some(ct) if is_json(ct) => return Ok(()),
        None if has_no_body(req) => return Ok(()),
        None => "the request body has no Content-Type: send it as `Content-Type: application/json`".to_owned(),
        Some(ct) => format!(
            "`{}` is not JSON: this route takes a body sent as `Content-Type: application/json`",
            quoted(ct.to_str().unwrap_or("\u{fffd}"))
        ),
    };
    Err(AppError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, detail))
}

/// The documented route a request matched (HEAD as GET), if any.
fn route_of(req: &Request) -> Option<&'static crate::RouteDoc> {
    let path = req.extensions().get::<MatchedPath>()?.as_str();
    let method = if req.method() == Method::HEAD {
        "get"
    } else {
        req.method().as_str()
    };
    crate::ROUTES
        .iter()
        .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
}

// ------------------------------------------------------------ the layer

/// Applies the edge checks in front of every route (see the module docs).
/// Inside the failed-authentication limit, so refused keys count.
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    state: AppState,
    hosts: Arc<Hosts>,
}

impl EdgeLayer {
    pub fn new(state: AppState, hosts: Hosts) -> Self {
        EdgeLayer {
            state,
            hosts: Arc::new(hosts),
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            state: self.state.clone(),
            hosts: self.hosts.clone(),
        }
    }
}

/// The service of [`EdgeLayer`].
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    state: AppState,
    hosts: Arc<Hosts>,
}

impl<S> Edge<S> {
    fn check(&self, req: &mut Request) -> Result<(), AppError> {
        check_host(&self.hosts, req)?;
        let route = route_of(req);
        if route.is_some_and(|r| r.method != "get") {
            check_json(req)?;
        }
        check_origin(req)?;
        if let Some(route) = route
            && route.role != Role::Public
        {
            let role = self.state.auth().check(req.headers(), route.role)?;
            req.extensions_mut().insert(Verified(role));
        }
        Ok(())
    }
}

impl<S> tower::Service<Request> for Edge<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match self.check(&mut req) {
            Ok(()) => EdgeFuture::Inner {
                inner: self.inner.call(req),
            },
            Err(refused) => EdgeFuture::Refused {
                response: Some(refused.into_response()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Edge`]: the refusal, or the route's answer.
    #[project = EdgeProj]
    pub enum EdgeFuture<F> {
        Refused { response: Option<Response> },
        Inner { #[pin] inner: F },
    }
}

impl<F, E> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EdgeProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| StatusCode::FORBIDDEN.into_response()))),
            EdgeProj::Inner { inner } => inner.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, allowed: &[&str]) -> Hosts {
        let allowed: Vec<AllowedHost> = allowed.iter().map(|a| AllowedHost::parse(a).unwrap()).collect();
        Hosts::new(listen.parse().unwrap(), &allowed)
    }

    #[test]
    fn loopback_and_localhost_always_pass() {
        let h = hosts("127.0.0.1:8000", &[]);
        for ok in [
            "127.0.0.1:8000",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.5.6.7:9",
            "[::1]:8000",
            "[::1]",
            "[::ffff:127.0.0.1]:80",
            "localhost",
            "LOCALHOST:8000",
            "localhost.:8000",
            "app.localhost:3000",
        ] {
            assert!(h.permits(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "evillocalhost",
            "10.0.0.5:8000",
            "[2001:db8::1]:8000",
            "",
            "127.0.0.1:99999",
            "127.0.0.1:80x",
            "user@127.0.0.1",
            "::1",
            "[::1",
        ] {
            assert!(!h.permits(refused), "{refused}");
        }
    }

    #[test]
    fn the_listen_address_passes_and_all_addresses_mean_any_literal() {
        let h = hosts("10.0.0.5:8000", &[]);
        assert!(h.permits("10.0.0.5:8000"));
        assert!(h.permits("10.0.0.5"));
        assert!(!h.permits("10.0.0.6:8000"));
        assert!(!h.permits("tame.internal:8000"));
        for listen in ["0.0.0.0:8000", "[::]:8000"] {
            let h = hosts(listen, &[]);
            assert!(h.permits("10.1.2.3:8000"), "{listen}: a pod IP");
            assert!(h.permits("[2001:db8::7]:8000"), "{listen}");
            assert!(!h.permits("tame.internal:8000"), "{listen}: names need allowed_hosts");
            assert!(!h.permits("evil.example:8000"), "{listen}");
        }
    }

    #[test]
    fn allowed_hosts_match_names_ports_and_star() {
        let h = hosts(
            "0.0.0.0:8000",
            &["Tame.Example.com", "tame.internal:8443", "[2001:db8::1]:8000"],
        );
        assert!(h.permits("tame.example.com"));
        assert!(h.permits("TAME.example.COM:8000"));
        assert!(h.permits("tame.example.com.:1"));
        assert!(h.permits("tame.internal:8443"));
        assert!(!h.permits("tame.internal:8000"), "the entry names its port");
        assert!(!h.permits("tame.internal"));
        assert!(!h.permits("sub.tame.example.com"));
        let h = hosts("10.0.0.5:8000", &["203.0.113.9"]);
        assert!(h.permits("203.0.113.9:80"));
        assert!(!h.permits("203.0.113.10:80"));
        let h = hosts("10.0.0.5:8000", &["*"]);
        assert!(h.permits("anything.example:1"));
        assert!(h.permits("not even an authority"));
    }

    #[test]
    fn allowed_host_entries_are_checked() {
        for (entry, shown) in [
            ("tame.example.com", "tame.example.com"),
            ("Tame.Example.com.", "tame.example.com"),
            ("tame:8000", "tame:8000"),
            ("10.0.0.5", "10.0.0.5"),
            ("[::1]:8000", "[::1]:8000"),
            ("2001:db8::1", "2001:db8::1"),
            (" * ", "*"),
        ] {
            assert_eq!(AllowedHost::parse(entry).unwrap().to_string(), shown, "{entry}");
        }
        for bad in [
            "",
            "*.example.com",
            "http://tame.example.com",
            "tame.example.com/x",
            "a b",
            "user@host",
            "host:port",
            "host:70000",
            "[not-ip]:80",
        ] {
            let e = AllowedHost::parse(bad).unwrap_err();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let same = |origin: &str, host: &str| same_origin(origin, [Some(host)]);
        assert!(same("http://127.0.0.1:8000", "127.0.0.1:8000"));
        assert!(same("http://LOCALHOST:8000", "localhost:8000"));
        assert!(same("http://tame.example.com", "tame.example.com:80"));
        assert!(same("https://tame.example.com", "tame.example.com"));
        assert!(same("http://[::1]:8000", "[::1]:8000"));
        assert!(!same("http://evil.example", "127.0.0.1:8000"));
        assert!(
            !same("http://localhost:3000", "localhost:8000"),
            "another port is another origin"
        );
        assert!(!same("http://127.0.0.1:8000", "localhost:8000"));
        assert!(!same("https://tame.example.com", "tame.example.com:80"));
        assert!(!same("null", "127.0.0.1:8000"));
        assert!(!same("file://", "127.0.0.1:8000"));
        assert!(!same("chrome-extension://abc", "127.0.0.1:8000"));
        assert!(!same("http://127.0.0.1:8000", ""));
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
            "application/vnd.api+json; charset=UTF-8",
        ] {
            assert!(is_json(&HeaderValue::from_static(ok)), "{ok}");
        }
        for refused in [
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application",
            "",
        ] {
            assert!(!is_json(&HeaderValue::from_static(refused)), "{refused}");
        }
    }
}
