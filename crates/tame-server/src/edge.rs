//! The server's edge: what every request must pass before a route reads
//! it, so that a web page the operator happens to visit cannot drive the
//! server (cross-site requests, DNS rebinding), keyed or not. The Host,
//! JSON and Origin checks are `tame_edge`'s, shared with every other
//! Tame HTTP listener; the key check by route is the server's own.
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

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use tame_edge::EdgeFuture;
pub use tame_edge::{AllowedHost, Hosts};

use crate::AppState;
use crate::auth::{Role, Verified};
use crate::error::AppError;

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
        tame_edge::check_host(&self.hosts, req.headers(), req.uri())?;
        let route = route_of(req);
        if route.is_some_and(|r| r.method != "get") {
            tame_edge::check_json(req)?;
        }
        tame_edge::check_origin(req.headers(), req.uri())?;
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
            Ok(()) => EdgeFuture::inner(self.inner.call(req)),
            Err(refused) => EdgeFuture::refused(refused.into_response()),
        }
    }
}
