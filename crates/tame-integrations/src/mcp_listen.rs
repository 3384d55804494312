//! The proxy as a Streamable HTTP MCP server (`tame mcp-proxy --listen`):
//! MCP clients reach it at `http://ADDR/mcp` (MCP 2025-03-26 and later),
//! each MCP session relayed ([`crate::mcp`]) to a server connection of its
//! own (a child process, or a session at `--url`), with a Tame session of
//! its own.
//!
//! - `POST /mcp`: one JSON-RPC message or a batch. An `initialize` request
//!   (alone, without `Mcp-Session-Id`) opens a session, named by the
//!   `Mcp-Session-Id` of the answer; every later message carries it
//!   (missing: 400; unknown or ended: 404). Notifications and responses
//!   are answered 202; requests with an SSE stream (`text/event-stream`)
//!   carrying their answers, and the server's requests and notifications
//!   while no `GET` stream is open, or with one JSON answer when the
//!   client accepts only `application/json`.
//! - `GET /mcp`: the stream of the server's requests and notifications
//!   (one per session; a new one replaces the old).
//! - `DELETE /mcp`: ends the session (the server connection is shut down as
//!   when a stdio client goes away).
//!
//! Every request passes the edge first ([`EdgeRules::check`], the checks of
//! every Tame listener from `tame_edge`): the `Host` must name this listener
//! (DNS rebinding: 421), a POST must declare `application/json` (415), and a
//! browser's `Origin` must be the listener's own or an `--allowed-origin`
//! (403).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::mcp::{Ended, INCOMING_QUEUE, Incoming, MAX_MESSAGE_BYTES, McpProxyOptions, Out, Shared, codes};
use crate::mcp_upstream::{Connected, SESSION_HEADER, Upstream};
use tame_edge::{AllowedHost, Hosts, Refusal};

/// Where the listener serves MCP.
pub const MCP_PATH: &str = "/mcp";
/// The most MCP sessions open at once; more `initialize`s get 503.
pub const MAX_SESSIONS: usize = 64;
/// A session without any request or open stream for this long is ended.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How many server messages wait for a stream to carry them.
const BACKLOG: usize = 1000;

/// Serves MCP over Streamable HTTP on `listener` until `shutdown`
/// resolves, then ends every session.
pub async fn serve<G, F>(
    guard: Arc<G>,
    opts: McpProxyOptions,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> Result<()>
where
    G: Guard + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr().map_err(|source| Error::Io {
        what: "cannot read the listening address".into(),
        source,
    })?;
    let (app, sessions) = router(guard, opts, addr)?;
    eprintln!("tame mcp-proxy: serving MCP (Streamable HTTP) at http://{addr}{MCP_PATH}");
    let sweeper = tokio::spawn(sweep(Arc::clone(&sessions)));
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    sweeper.abort();
    sessions.close_all().await;
    served.map_err(|source| Error::Io {
        what: format!("mcp listener on {addr} failed"),
        source,
    })
}

/// The listener's routes over `guard`, for a server at `addr`, and its
/// sessions (to end them when the listener stops). Fails on an
/// `--allowed-host` that does not parse.
pub fn router<G: Guard + 'static>(
    guard: Arc<G>,
    opts: McpProxyOptions,
    addr: SocketAddr,
) -> Result<(Router, Arc<Sessions>)> {
    let rules = Arc::new(EdgeRules::new(addr, &opts.allowed_hosts, &opts.allowed_origins)?);
    let sessions = Arc::new(Sessions::default());
    let state = Arc::new(Listener {
        guard,
        opts,
        sessions: Arc::clone(&sessions),
    });
    let limit = usize::try_from(MAX_MESSAGE_BYTES).unwrap_or(usize::MAX);
    let app = Router::new()
        .route(MCP_PATH, get(open_stream::<G>).post(post::<G>).delete(end_session::<G>))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(rules, edge))
        .with_state(state);
    Ok((app, sessions))
}

struct Listener<G> {
    guard: Arc<G>,
    opts: McpProxyOptions,
    sessions: Arc<Sessions>,
}

/// The open MCP sessions, by `Mcp-Session-Id`.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Arc<HttpSession>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("open", &self.len()).finish()
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<HttpSession>>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, id: &str) -> Option<Arc<HttpSession>> {
        self.lock().get(id).cloned()
    }

    /// Ends session `id`: its relay sees the client leave and shuts the
    /// server connection down. Returns whether it was open.
    fn end(&self, id: &str) -> Option<Arc<HttpSession>> {
        let session = self.lock().remove(id)?;
        session.hang_up();
        Some(session)
    }

    /// Ends every session and waits (bounded) for their servers to stop.
    pub async fn close_all(&self) {
        let all: Vec<_> = self.lock().drain().map(|(_, s)| s).collect();
        for session in &all {
            session.hang_up();
        }
        for session in all {
            let done = session
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(done) = done {
                let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
            }
        }
    }
}

/// Ends the sessions idle for longer than [`IDLE_TIMEOUT`].
async fn sweep(sessions: Arc<Sessions>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let idle: Vec<String> = sessions
            .lock()
            .iter()
            .filter(|(_, s)| s.idle_for() > IDLE_TIMEOUT)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            tracing::info!("ending idle mcp session");
            sessions.end(&id);
        }
    }
}

/// One MCP session of an HTTP client.
struct HttpSession {
    /// The relay's input; `None` once the session is ended.
    to_relay: Mutex<Option<mpsc::Sender<Incoming>>>,
    routes: Mutex<Routes>,
    last_used: Mutex<Instant>,
    /// Resolves when the relay and the server connection have stopped.
    done: Mutex<Option<oneshot::Receiver<()>>>,
}

impl HttpSession {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sender(&self) -> Option<mpsc::Sender<Incoming>> {
        *self.last_used.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        self.to_relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn hang_up(&self) {
        self.to_relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    fn idle_for(&self) -> Duration {
        if self.routes().busy() {
            return Duration::ZERO;
        }
        self.last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }
}

/// Where each message for the client goes: a response to the stream of the
/// POST that carried its request; anything else to the GET stream, else the
/// newest POST stream, else a backlog for the next GET stream.
#[derive(Default)]
struct Routes {
    waiting: HashMap<String, (u64, mpsc::UnboundedSender<String>)>,
    /// Open POST streams that may carry the server's own messages.
    streams: Vec<(u64, mpsc::UnboundedSender<String>)>,
    standalone: Option<(u64, mpsc::UnboundedSender<String>)>,
    backlog: VecDeque<String>,
    next: u64,
}

impl Routes {
    fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.standalone.is_some()
    }

    fn next_id(&mut self) -> u64 {
        self.next = self.next.wrapping_add(1);
        self.next
    }

    fn route(&mut self, text: String) {
        if let Some(key) = response_key(&text)
            && let Some((_, tx)) = self.waiting.remove(&key)
        {
            let _ = tx.send(text);
            return;
        }
        let mut text = text;
        if let Some((_, tx)) = &self.standalone {
            match tx.send(text) {
                Ok(()) => return,
                Err(back) => {
                    text = back.0;
                    self.standalone = None;
                }
            }
        }
        while let Some((_, tx)) = self.streams.last() {
            match tx.send(text) {
                Ok(()) => return,
                Err(back) => {
                    text = back.0;
                    self.streams.pop();
                }
            }
        }
        if self.backlog.len() >= BACKLOG {
            self.backlog.pop_front();
        }
        self.backlog.push_back(text);
    }

    /// Forgets stream `stream` (its POST ended or its client went away).
    fn drop_stream(&mut self, stream: u64) {
        self.waiting.retain(|_, (s, _)| *s != stream);
        self.streams.retain(|(s, _)| *s != stream);
        if self.standalone.as_ref().is_some_and(|(s, _)| *s == stream) {
            self.standalone = None;
        }
    }
}

/// The id key of a JSON-RPC response, `None` for anything else.
fn response_key(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let object = value.as_object()?;
    if object.contains_key("method") || !(object.contains_key("result") || object.contains_key("error")) {
        return None;
    }
    object.get("id").map(Value::to_string)
}

/// Moves what the relay sends the client into the session's routes.
async fn route_out(session: Arc<HttpSession>, mut rx: mpsc::UnboundedReceiver<Out>) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Line(text) => session.routes().route(text),
            Out::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

/// A refusal of the edge or of the transport: an HTTP status with a
/// JSON-RPC error (id null) as its body.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    code: i64,
    message: String,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": self.code, "message": self.message}});
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

fn refuse(status: StatusCode, code: i64, message: &str) -> Refused {
    Refused {
        status,
        code,
        message: message.to_owned(),
    }
}

/// The checks every request of the listener passes before it is read: the
/// edge of every Tame listener (`tame_edge`: Host, a JSON body, Origin),
/// with the origins given by `--allowed-origin` let through besides the
/// listener's own.
#[derive(Debug, Clone)]
pub struct EdgeRules {
    hosts: Arc<Hosts>,
    /// Lowercase origins allowed besides the listener's own.
    origins: Vec<String>,
}

impl EdgeRules {
    /// The rules for a listener on `listen` answering to `allowed_hosts`
    /// (besides loopback addresses, `localhost` and `listen`) and called
    /// from `allowed_origins` (besides its own).
    pub fn new(listen: SocketAddr, allowed_hosts: &[String], allowed_origins: &[String]) -> Result<EdgeRules> {
        let hosts = allowed_hosts
            .iter()
            .map(|h| AllowedHost::parse(h).map_err(|e| Error::Config(format!("invalid --allowed-host `{h}`: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(EdgeRules {
            hosts: Arc::new(Hosts::new(listen, &hosts).configured_in("--allowed-host")),
            origins: allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        })
    }

    /// Host (DNS rebinding: 421), a JSON body (415), Origin (403).
    pub fn check<B: axum::body::HttpBody>(&self, req: &axum::http::Request<B>) -> Result<(), Refusal> {
        tame_edge::check_host(&self.hosts, req.headers(), req.uri())?;
        if req.method() == axum::http::Method::POST {
            tame_edge::check_json(req)?;
        }
        tame_edge::check_origin(req.headers(), req.uri()).or_else(|refusal| {
            let origin = req
                .headers()
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase());
            match origin {
                Some(origin) if self.origins.contains(&origin) => Ok(()),
                _ => Err(refusal),
            }
        })
    }
}

/// The edge in front of every route.
async fn edge(
    State(rules): State<Arc<EdgeRules>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match rules.check(&req) {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn session_id_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

/// The session a request names: 400 without the header, 404 if unknown.
fn session_of<G>(state: &Listener<G>, headers: &HeaderMap) -> Result<Arc<HttpSession>, Refused> {
    let Some(id) = session_id_of(headers) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            codes::INVALID_REQUEST,
            "missing `mcp-session-id`: send `initialize` first",
        ));
    };
    state.sessions.get(id).ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            codes::INVALID_REQUEST,
            "unknown or ended mcp session: send `initialize` again",
        )
    })
}

/// What a POST body holds, checked.
struct Posted {
    /// Each message's text, in order.
    texts: Vec<String>,
    /// The id keys of its requests.
    requests: Vec<String>,
    initialize: bool,
}

fn read_posted(body: &[u8]) -> Result<Posted, Refused> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        refuse(
            StatusCode::BAD_REQUEST,
            codes::PARSE_ERROR,
            &format!("parse error: {err}"),
        )
    })?;
    let messages = match value {
        Value::Array(batch) if batch.is_empty() => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                "invalid request: empty batch",
            ));
        }
        Value::Array(batch) => batch,
        message => vec![message],
    };
    let mut posted = Posted {
        texts: Vec::with_capacity(messages.len()),
        requests: Vec::new(),
        initialize: false,
    };
    let single = messages.len() == 1;
    for message in messages {
        let Value::Object(object) = &message else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                "invalid request: a json-rpc message must be an object",
            ));
        };
        let method = object.get("method");
        match (method, object.get("id")) {
            (Some(Value::String(method)), Some(id)) => {
                if method == "initialize" {
                    if !single {
                        return Err(refuse(
                            StatusCode::BAD_REQUEST,
                            codes::INVALID_REQUEST,
                            "invalid request: `initialize` must be sent alone",
                        ));
                    }
                    posted.initialize = true;
                }
                let key = id.to_string();
                if posted.requests.contains(&key) {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        codes::INVALID_REQUEST,
                        &format!("invalid request: request id {key} is used twice"),
                    ));
                }
                posted.requests.push(key);
            }
            (Some(Value::String(_)), None) => {}
            (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {}
            _ => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    codes::INVALID_REQUEST,
                    "invalid request: expected a `method` string, or a `result` or `error` with an `id`",
                ));
            }
        }
        posted.texts.push(message.to_string());
    }
    Ok(posted)
}

/// Whether the client takes an SSE stream (else one JSON answer).
fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

async fn post<G: Guard + 'static>(State(state): State<Arc<Listener<G>>>, headers: HeaderMap, body: Bytes) -> Response {
    let posted = match read_posted(&body) {
        Ok(posted) => posted,
        Err(refused) => return refused.into_response(),
    };
    let (session_id, session) = if posted.initialize && session_id_of(&headers).is_none() {
        match open_session(&state).await {
            Ok(opened) => opened,
            Err(refused) => return refused.into_response(),
        }
    } else {
        match session_of(&state, &headers) {
            Ok(session) => (None, session),
            Err(refused) => return refused.into_response(),
        }
    };
    let Some(to_relay) = session.sender() else {
        return refuse(
            StatusCode::NOT_FOUND,
            codes::INVALID_REQUEST,
            "the mcp session has ended",
        )
        .into_response();
    };

    let sse = accepts_sse(&headers);
    let (tx, rx) = mpsc::unbounded_channel();
    let stream_id = {
        let mut routes = session.routes();
        if let Some(used) = posted.requests.iter().find(|key| routes.waiting.contains_key(*key)) {
            return refuse(
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                &format!("invalid request: request id {used} is still in flight"),
            )
            .into_response();
        }
        let stream = routes.next_id();
        for key in &posted.requests {
            routes.waiting.insert(key.clone(), (stream, tx.clone()));
        }
        if sse && !posted.requests.is_empty() {
            routes.streams.push((stream, tx.clone()));
        }
        stream
    };
    drop(tx);
    let subscription = Subscription {
        session: Arc::clone(&session),
        stream: stream_id,
    };
    for text in posted.texts {
        if to_relay.send(Incoming::Text(text)).await.is_err() {
            return refuse(
                StatusCode::NOT_FOUND,
                codes::INVALID_REQUEST,
                "the mcp session has ended",
            )
            .into_response();
        }
    }
    drop(to_relay);
    if posted.requests.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }

    let mut response = if sse {
        let stream = answers(rx, posted.requests, subscription);
        Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
    } else {
        json_answer(rx, posted.requests.len(), subscription).await
    };
    if let Some(id) = session_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response.headers_mut().insert(SESSION_HEADER, id);
    }
    response
}

/// Forgets a POST's or GET's stream in the routes when it is dropped.
struct Subscription {
    session: Arc<HttpSession>,
    stream: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.session.routes().drop_stream(self.stream);
    }
}

fn sse_event(text: &str) -> Event {
    // A raw CR in JSON text is whitespace; SSE data may not carry it.
    let text = if text.contains('\r') {
        std::borrow::Cow::Owned(text.replace('\r', " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    Event::default().event("message").data(text)
}

/// The SSE stream of a POST: every message routed to it, until each of its
/// requests is answered.
fn answers(
    rx: mpsc::UnboundedReceiver<String>,
    requests: Vec<String>,
    subscription: Subscription,
) -> impl Stream<Item = std::result::Result<Event, std::convert::Infallible>> + Send {
    futures_util::stream::unfold(
        (rx, requests, subscription),
        |(mut rx, mut requests, subscription)| async move {
            if requests.is_empty() {
                return None;
            }
            let text = rx.recv().await?;
            if let Some(key) = response_key(&text) {
                requests.retain(|k| *k != key);
            }
            Some((Ok(sse_event(&text)), (rx, requests, subscription)))
        },
    )
}

/// The JSON answer of a POST: its requests' responses (one, or an array).
async fn json_answer(mut rx: mpsc::UnboundedReceiver<String>, count: usize, subscription: Subscription) -> Response {
    let mut answers = Vec::with_capacity(count);
    while answers.len() < count {
        let Some(text) = rx.recv().await else { break };
        if response_key(&text).is_some() {
            answers.push(serde_json::from_str::<Value>(&text).unwrap_or(Value::Null));
        }
    }
    drop(subscription);
    let body = match answers.len() {
        1 => answers.pop().unwrap_or(Value::Null),
        _ => Value::Array(answers),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Opens a session: connects the server and starts the relay.
async fn open_session<G: Guard + 'static>(
    state: &Arc<Listener<G>>,
) -> Result<(Option<String>, Arc<HttpSession>), Refused> {
    if state.sessions.len() >= MAX_SESSIONS {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::INTERNAL_ERROR,
            &format!("too many mcp sessions open (at most {MAX_SESSIONS})"),
        ));
    }
    let Connected {
        upstream,
        to_server,
        from_server,
    } = Upstream::connect(&state.opts).await.map_err(|err| {
        eprintln!("tame mcp-proxy: cannot open a session: {err:#}");
        refuse(
            StatusCode::BAD_GATEWAY,
            codes::INTERNAL_ERROR,
            &format!("cannot reach the mcp server: {err}"),
        )
    })?;
    let (to_client, client_rx) = mpsc::unbounded_channel();
    let (to_relay, client_in) = mpsc::channel(INCOMING_QUEUE);
    let (finished, done) = oneshot::channel();
    let session = Arc::new(HttpSession {
        to_relay: Mutex::new(Some(to_relay)),
        routes: Mutex::new(Routes::default()),
        last_used: Mutex::new(Instant::now()),
        done: Mutex::new(Some(done)),
    });
    let id = uuid::Uuid::new_v4().simple().to_string();
    state.sessions.lock().insert(id.clone(), Arc::clone(&session));

    let shared = Arc::new(Shared::new(Arc::clone(&state.guard), &state.opts, to_client, to_server));
    tokio::spawn(route_out(Arc::clone(&session), client_rx));
    let sessions = Arc::clone(&state.sessions);
    let grace = state.opts.shutdown_grace;
    let key = id.clone();
    tokio::spawn(async move {
        match crate::mcp::relay(&shared, client_in, from_server).await {
            Ended::ClientLeft(server_reader) => {
                upstream.close(&shared.to_server, grace).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), server_reader).await;
            }
            Ended::ServerLeft => {
                let shown = upstream.shown().to_owned();
                let (_, status) = upstream.exited().await;
                let answered = crate::mcp::fail_pending(&shared);
                eprintln!(
                    "tame mcp-proxy: mcp server `{shown}` of a session exited ({status}); \
                     {answered} pending request(s) answered with an error"
                );
                sessions.end(&key);
            }
        }
        let _ = finished.send(());
    });
    Ok((Some(id), session))
}

async fn open_stream<G: Guard + 'static>(State(state): State<Arc<Listener<G>>>, headers: HeaderMap) -> Response {
    if !accepts_sse(&headers) {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            codes::INVALID_REQUEST,
            "the stream of server messages is `text/event-stream`",
        )
        .into_response();
    }
    let session = match session_of(&state, &headers) {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let _ = session.sender();
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = {
        let mut routes = session.routes();
        let stream = routes.next_id();
        for text in routes.backlog.drain(..) {
            let _ = tx.send(text);
        }
        routes.standalone = Some((stream, tx));
        stream
    };
    let subscription = Subscription { session, stream };
    let events = futures_util::stream::unfold((rx, subscription), |(mut rx, subscription)| async move {
        let text = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(sse_event(&text)), (rx, subscription)))
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

async fn end_session<G: Guard + 'static>(State(state): State<Arc<Listener<G>>>, headers: HeaderMap) -> Response {
    let Some(id) = session_id_of(&headers) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            codes::INVALID_REQUEST,
            "missing `mcp-session-id`",
        )
        .into_response();
    };
    match state.sessions.end(id) {
        Some(_) => StatusCode::OK.into_response(),
        None => refuse(
            StatusCode::NOT_FOUND,
            codes::INVALID_REQUEST,
            "unknown or ended mcp session",
        )
        .into_response(),
    }
}
