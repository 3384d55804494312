//! The edge checks every Tame HTTP listener applies (the server, the MCP
//! proxy's HTTP side), so that a web page the operator happens to visit
//! cannot drive a listener on their machine (cross-site requests, DNS
//! rebinding), keyed or not. Pure functions over a request's head, and a
//! tower layer ([`EdgeLayer`]) that applies them in front of a router.
//!
//! In this order, each refusal a [`Refusal`] (`{"detail": ...}`):
//!
//! 1. **Host** ([`check_host`]): the `Host` header (and a reverse proxy's
//!    `X-Forwarded-Host`, and an absolute request target's authority)
//!    must name this listener: a loopback address or `localhost` (any
//!    port), the address it listens on (any port), or an allowed host
//!    ([`Hosts`]); else `421 Misdirected Request`. Listening on `0.0.0.0`
//!    or `::`, any IP address literal passes: a page can rebind a *name*
//!    to this machine, never an address, and the addresses that reach a
//!    server (its interfaces, a pod IP, a NAT or Service address) cannot
//!    all be listed. Names other than `localhost` must be configured; a
//!    `*` entry turns the check off. A request without `Host` (HTTP/1.0,
//!    or an in-process call) passes: browsers always send one.
//! 2. **JSON** ([`check_json`], on the routes that take a JSON body): the
//!    body must be declared `application/json` (parameters allowed,
//!    `application/*+json` too); else 415. A request without a body and
//!    without a `Content-Type` passes. What a page can send cross-site
//!    without a CORS preflight (a form, a simple `fetch`) declares a
//!    non-JSON type or none, and an empty one carries an `Origin`.
//! 3. **Origin** ([`check_origin`]): a request whose `Origin` is not the
//!    listener's own (the scheme and authority of its `Host` or
//!    `X-Forwarded-Host`) is refused with 403. Browsers send `Origin` on
//!    every cross-site request that can change something; CLIs and SDKs
//!    send none and pass.
//!
//! The server adds its API keys after these (`tame-server`'s `edge.rs`);
//! [`EdgeLayer`] is the three checks alone, for listeners without keys of
//! their own.

mod hosts;
mod layer;

use axum::body::HttpBody;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

pub use hosts::{AllowedHost, Hosts, is_loopback};
pub use layer::{Edge, EdgeFuture, EdgeLayer};

use hosts::{Authority, Host, split_authority};

/// A request the edge refuses: the status and a message for the client
/// (user input quoted in backticks, cut to 100 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub detail: String,
}

impl Refusal {
    fn new(status: StatusCode, detail: String) -> Refusal {
        Refusal { status, detail }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl std::error::Error for Refusal {}

impl IntoResponse for Refusal {
    /// The API's error shape: `{"detail": ...}` with the refusal's status.
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "detail": self.detail }))).into_response()
    }
}

/// At most this much of a refused header's value is quoted back.
const QUOTED: usize = 100;

fn quoted(value: &str) -> String {
    value.chars().take(QUOTED).collect()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The first value of a reverse proxy's `X-Forwarded-Host`.
fn forwarded_host(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, &X_FORWARDED_HOST).map(|v| v.split(',').next().unwrap_or(v).trim())
}

/// The authorities a request says it was sent to: its `Host`, its
/// absolute target's authority (HTTP/2, proxies) and a reverse proxy's
/// `X-Forwarded-Host`, each when present.
pub fn own_authorities<'r>(headers: &'r HeaderMap, uri: &'r Uri) -> [Option<&'r str>; 3] {
    [
        header_str(headers, &header::HOST),
        uri.authority().map(|a| a.as_str()),
        forwarded_host(headers),
    ]
}

/// Refuses (421) a request that names a host `hosts` does not permit.
pub fn check_host(hosts: &Hosts, headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
    for authority in own_authorities(headers, uri).into_iter().flatten() {
        if !hosts.permits(authority) {
            return Err(Refusal::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server does not answer to the host `{}`: it answers to loopback addresses, \
                     `localhost`, the address it listens on and the names in {}; \
                     add this name there if it is the server's own",
                    quoted(authority),
                    hosts.configured_where()
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`, an http or https origin) is
/// the origin of one of the authorities in `own`. Ports default by the
/// origin's scheme on both sides; host names compare without case.
pub fn same_origin<'a>(origin: &str, own: impl IntoIterator<Item = Option<&'a str>>) -> bool {
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

/// Refuses (403) a request whose `Origin` is not the listener's own; a
/// request without `Origin` passes.
pub fn check_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), Refusal> {
    let Some(origin) = header_str(headers, &header::ORIGIN) else {
        return Ok(());
    };
    if same_origin(origin, own_authorities(headers, uri)) {
        return Ok(());
    }
    Err(Refusal::new(
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
pub fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(mime) = content_type.to_str().unwrap_or("").parse::<mime::Mime>() else {
        return false;
    };
    mime.type_() == mime::APPLICATION && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
}

/// Whether the request carries no body: hyper knows (no `Content-Length`
/// and no chunked encoding, or a length of 0), as does an in-process
/// request built with an empty body.
fn has_no_body<B: HttpBody>(req: &Request<B>) -> bool {
    req.body().is_end_stream()
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
}

/// Refuses (415) a request whose body is not declared JSON; one without
/// a body and without a `Content-Type` passes.
pub fn check_json<B: HttpBody>(req: &Request<B>) -> Result<(), Refusal> {
    let detail = match req.headers().get(header::CONTENT_TYPE) {
        Some(ct) if is_json(ct) => return Ok(()),
        None if has_no_body(req) => return Ok(()),
        None => "the request body has no Content-Type: send it as `Content-Type: application/json`".to_owned(),
        Some(ct) => format!(
            "`{}` is not JSON: this route takes a body sent as `Content-Type: application/json`",
            quoted(ct.to_str().unwrap_or("\u{fffd}"))
        ),
    };
    Err(Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

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
