//! [`EdgeLayer`]: the Host, JSON and Origin checks in front of a router,
//! for a listener without API keys of its own (the MCP proxy's HTTP side).
//!
//! ```no_run
//! # async fn mount(router: axum::Router, listen: std::net::SocketAddr) {
//! use tame_edge::{EdgeLayer, Hosts};
//! let router = router.layer(EdgeLayer::new(Hosts::new(listen, &[])));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::HttpBody;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::{Hosts, Refusal, check_host, check_json, check_origin};

/// Applies [`check_host`], then [`check_json`] (to every request but
/// `GET`, `HEAD` and `OPTIONS`: a request without a body and without a
/// `Content-Type` still passes), then [`check_origin`]; a refusal is
/// answered at once, before the inner service sees the request.
#[derive(Debug, Clone)]
pub struct EdgeLayer {
    hosts: Arc<Hosts>,
}

impl EdgeLayer {
    /// The checks for a listener answering to `hosts`.
    pub fn new(hosts: Hosts) -> EdgeLayer {
        EdgeLayer { hosts: Arc::new(hosts) }
    }

    /// The three checks on one request, as the layer applies them.
    pub fn check<B: HttpBody>(&self, req: &Request<B>) -> Result<(), Refusal> {
        check_host(&self.hosts, req.headers(), req.uri())?;
        if ![Method::GET, Method::HEAD, Method::OPTIONS].contains(req.method()) {
            check_json(req)?;
        }
        check_origin(req.headers(), req.uri())
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            edge: self.clone(),
        }
    }
}

/// The service of [`EdgeLayer`].
#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    edge: EdgeLayer,
}

impl<S, B> tower::Service<Request<B>> for Edge<S>
where
    S: tower::Service<Request<B>, Response = Response>,
    B: HttpBody,
{
    type Response = Response;
    type Error = S::Error;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.edge.check(&req) {
            Ok(()) => EdgeFuture::inner(self.inner.call(req)),
            Err(refused) => EdgeFuture::refused(refused.into_response()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an edge layer: its refusal, or the inner service's
    /// answer.
    #[project = EdgeProj]
    pub enum EdgeFuture<F> {
        Refused { response: Option<Response> },
        Inner { #[pin] inner: F },
    }
}

impl<F> EdgeFuture<F> {
    /// The inner service's answer.
    pub fn inner(inner: F) -> Self {
        EdgeFuture::Inner { inner }
    }

    /// A refusal, answered without calling the inner service.
    pub fn refused(response: Response) -> Self {
        EdgeFuture::Refused {
            response: Some(response),
        }
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
