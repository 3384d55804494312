//! The server's logs: the subscriber behind `--log-format text|json`, and
//! the access event of every HTTP request.
//!
//! Logs go to stderr (stdout keeps the one `listening on` line). `text` is
//! the human format; `json` writes one object per line with `timestamp`,
//! `level`, `message`, `target` and the event's fields beside them. The
//! filter comes from `TAME_LOG` (an `EnvFilter`, such as `info` or
//! `debug,hyper=info`); without it, `info`.
//!
//! Every request gets an id: the client's `X-Request-Id` when it is a short
//! token (at most [`MAX_REQUEST_ID`] bytes of letters, digits and `-_.:`),
//! else a new UUIDv7; the answer carries it back in `X-Request-Id`. Once the
//! request is answered, an INFO event of target [`ACCESS_TARGET`] says
//! `request_id`, `method`, `route` (the matched route template, such as
//! `/api/v1/sessions/{session_id}`, never the raw path, which can hold a
//! session id; absent for a path no route matched), `status`, `latency_ms`
//! and, for `POST /api/v1/enforce`, the `decision` and `rule`. A request
//! dropped before its answer (the request timeout, or the client gone)
//! logs the same without `status`. In the `json` format these events are
//! on by default; in `text` they are off unless `TAME_LOG` names them
//! (`TAME_LOG=info,tame_server::access=info`), so text logs stay as they
//! were: start, reloads, warnings and errors.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::http::header::HeaderName;
use axum::response::Response;
use tame_engine::Action;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The target of the access events (for `TAME_LOG` directives).
pub const ACCESS_TARGET: &str = "tame_server::access";

/// The longest `X-Request-Id` taken from a client.
pub const MAX_REQUEST_ID: usize = 64;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How the server writes its logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people (the default)
    #[default]
    Text,
    /// One JSON object per line, with an access event per request
    Json,
}

/// The filter of `format` when `TAME_LOG` is not set.
fn default_filter(format: LogFormat) -> EnvFilter {
    match format {
        LogFormat::Json => EnvFilter::new("info"),
        LogFormat::Text => EnvFilter::new(format!("info,{ACCESS_TARGET}=off")),
    }
}

/// A subscriber writing `format` to `writer`, filtered by `filter` (or the
/// format's default: see the module docs). Tests capture the output with
/// their own writer; [`init_logging`] installs one writing to stderr.
pub fn log_subscriber<W>(
    format: LogFormat,
    filter: Option<EnvFilter>,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter.unwrap_or_else(|| default_filter(format));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Installs the process's subscriber: `format` on stderr, filtered by
/// `TAME_LOG` (a bad value is an error naming it). A subscriber installed
/// already (a test, an embedding program) is kept.
pub fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let filter = match std::env::var("TAME_LOG") {
        Ok(directives) => Some(
            EnvFilter::try_new(&directives)
                .map_err(|e| anyhow::anyhow!("TAME_LOG `{directives}` is not a filter: {e}"))?,
        ),
        Err(_) => None,
    };
    let ansi = std::io::stderr().is_terminal();
    // Err only when a subscriber is set already: that one stays.
    let _ = log_subscriber(format, filter, std::io::stderr, ansi).try_init();
    Ok(())
}

// ------------------------------------------------------------ request ids

/// The id of a request, as a request extension (set by [`AccessLogLayer`]).
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub HeaderValue);

impl RequestId {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII ids are made or accepted.
        self.0.to_str().unwrap_or("")
    }
}

/// The client's id if it is a short token, else a new one.
fn request_id(req: &Request) -> HeaderValue {
    if let Some(given) = req.headers().get(&REQUEST_ID)
        && is_token(given.as_bytes())
    {
        return given.clone();
    }
    let id = uuid::Uuid::now_v7();
    let mut buf = uuid::Uuid::encode_buffer();
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf)).unwrap_or(HeaderValue::from_static("-"))
}

fn is_token(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

// ------------------------------------------------------------ decisions

/// What `POST /api/v1/enforce` decided, as a response extension for the
/// access event (the handler sets it).
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    pub decision: Action,
    pub rule: Option<Arc<str>>,
}

// ------------------------------------------------------------ the layer

/// Gives each request its id (request extension and answer header) and
/// logs its access event once answered (see the module docs). The
/// outermost of the router's layers, so refusals of the edge and of the
/// failed-authentication limit are logged too.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AccessLogLayer;

impl<S> tower::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub(crate) struct AccessLog<S> {
    inner: S,
}

impl<S, B> tower::Service<Request> for AccessLog<S>
where
    S: tower::Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = AccessFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = request_id(&req);
        let entry = Entry {
            id: id.clone(),
            method: req.method().clone(),
            route: req.extensions().get::<MatchedPath>().cloned(),
            started: Instant::now(),
        };
        req.extensions_mut().insert(RequestId(id));
        AccessFuture {
            inner: self.inner.call(req),
            pending: Pending(Some(entry)),
        }
    }
}

/// What the access event says of a request besides its answer.
#[derive(Debug)]
struct Entry {
    id: HeaderValue,
    method: axum::http::Method,
    route: Option<MatchedPath>,
    started: Instant,
}

impl Entry {
    fn log<B>(&self, resp: Option<&Response<B>>) {
        let latency_ms = self.started.elapsed().as_micros() as f64 / 1000.0;
        let id = self.id.to_str().unwrap_or("");
        let route = self.route.as_ref().map(MatchedPath::as_str);
        let Some(resp) = resp else {
            tracing::info!(
                target: ACCESS_TARGET,
                request_id = id,
                method = self.method.as_str(),
                route,
                latency_ms,
                "request dropped before its answer (timed out, or the client went away)"
            );
            return;
        };
        let decided = resp.extensions().get::<Decided>();
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = id,
            method = self.method.as_str(),
            route,
            status = resp.status().as_u16(),
            latency_ms,
            decision = decided.map(|d| d.decision.as_str()),
            rule = decided.and_then(|d| d.rule.as_deref()),
            "request answered"
        );
    }
}

/// The entry of a request not answered yet: logged as dropped if the
/// future goes first.
#[derive(Debug)]
struct Pending(Option<Entry>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(entry) = self.0.take() {
            entry.log::<()>(None);
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`AccessLog`].
    #[derive(Debug)]
    pub(crate) struct AccessFuture<F> {
        #[pin]
        inner: F,
        pending: Pending,
    }
}

impl<F, B, E> std::future::Future for AccessFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut out = std::task::ready!(this.inner.poll(cx));
        if let Some(entry) = this.pending.0.take() {
            match &mut out {
                Ok(resp) => {
                    entry.log(Some(resp));
                    resp.headers_mut().insert(REQUEST_ID.clone(), entry.id);
                }
                // The router's services never fail; say so if one did.
                Err(_) => entry.log::<B>(None),
            }
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_they_are_short_tokens() {
        let with = |id: &str| {
            let req = Request::builder()
                .header("x-request-id", id)
                .body(axum::body::Body::empty())
                .unwrap_or_default();
            request_id(&req)
        };
        assert_eq!(with("abc-123_x.y:z"), "abc-123_x.y:z");
        let long = "a".repeat(MAX_REQUEST_ID + 1);
        for refused in ["", "has space", "quote\"d", "{\"json\":1}", long.as_str()] {
            let id = with(refused);
            assert_ne!(id, refused);
            let id = id.to_str().unwrap_or_default();
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{refused:?} -> {id}");
        }
    }
}
