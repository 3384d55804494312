//! The proxy's side towards the real MCP server: a child process spoken to
//! over stdio (newline-delimited JSON-RPC), or a remote endpoint spoken to
//! over Streamable HTTP (MCP 2025-03-26 and later: every message a `POST`,
//! answered with JSON or an SSE stream; the session named by the
//! `Mcp-Session-Id` the server gives to `initialize`; server-initiated
//! messages on an optional `GET` stream; `DELETE` ends the session).
//!
//! Either way the relay sees two queues: what it sends ([`Out`]) and what
//! the server says ([`Incoming`]). An HTTP exchange that fails (the server
//! unreachable, an HTTP error, a stream closed before the answer) comes
//! back as the JSON-RPC error response of the request it carried, so the
//! relay answers the client and records the call's outcome as for any
//! other error.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::mcp::{INCOMING_QUEUE, Incoming, MAX_MESSAGE_BYTES, McpProxyOptions, Out, codes, read_lines, write_lines};
use crate::tls::TlsRoots;

/// The header naming a Streamable HTTP session.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The header carrying the negotiated protocol version after `initialize`.
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";

/// A connected server and the relay's queues to and from it.
pub(crate) struct Connected {
    pub upstream: Upstream,
    pub to_server: mpsc::UnboundedSender<Out>,
    pub from_server: mpsc::Receiver<Incoming>,
}

/// The real MCP server behind the proxy.
pub(crate) enum Upstream {
    Child {
        child: Box<Child>,
        writer: JoinHandle<()>,
        shown: String,
    },
    Http(HttpUpstream),
}

impl Upstream {
    /// Starts `opts.command`, or opens the Streamable HTTP client of
    /// `opts.url` (no request is sent before the client's first).
    pub async fn connect(opts: &McpProxyOptions) -> Result<Connected> {
        match (&opts.url, opts.command.is_empty()) {
            (Some(_), false) => Err(Error::Config(
                "give the mcp server either as a command (after `--`) or as --url, not both".into(),
            )),
            (Some(url), true) => HttpUpstream::connect(url, &opts.headers),
            (None, _) => Self::spawn(&opts.command),
        }
    }

    fn spawn(command: &[String]) -> Result<Connected> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| Error::Config("no mcp server command given (put it after `--`, or give --url)".into()))?;
        let shown = command.join(" ");
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Io {
                what: format!("cannot start mcp server `{shown}`"),
                source,
            })?;
        let server_in = child
            .stdin
            .take()
            .ok_or_else(|| Error::Mcp("the mcp server's stdin is not piped".into()))?;
        let server_out = child
            .stdout
            .take()
            .ok_or_else(|| Error::Mcp("the mcp server's stdout is not piped".into()))?;
        let (to_server, server_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_lines(server_in, server_rx));
        let (tx, from_server) = mpsc::channel(INCOMING_QUEUE);
        tokio::spawn(read_lines(server_out, tx, "mcp server"));
        Ok(Connected {
            upstream: Upstream::Child {
                child: Box::new(child),
                writer,
                shown,
            },
            to_server,
            from_server,
        })
    }

    /// The server as the user named it (its command, its URL).
    pub fn shown(&self) -> &str {
        match self {
            Upstream::Child { shown, .. } => shown,
            Upstream::Http(http) => http.state.url.as_str(),
        }
    }

    /// The client went away: the MCP shutdown. A child gets EOF on its
    /// stdin, `grace` to exit, then SIGTERM and SIGKILL; an HTTP session is
    /// ended with `DELETE`.
    pub async fn close(self, to_server: &mpsc::UnboundedSender<Out>, grace: Duration) {
        // Let everything queued for the server go out first.
        let (ack, acked) = oneshot::channel();
        if to_server.send(Out::Flush(ack)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), acked).await;
        }
        match self {
            Upstream::Child { mut child, writer, .. } => {
                // Aborting the writer drops the pipe: the server sees EOF.
                writer.abort();
                let _ = writer.await;
                let status = wait_or_kill(&mut child, grace).await;
                tracing::debug!(?status, "mcp server stopped after the client disconnected");
            }
            Upstream::Http(http) => http.close().await,
        }
    }

    /// The server is gone (its output ended): its exit code (non-zero) and
    /// status, for the proxy's own exit.
    pub async fn exited(self) -> (i32, String) {
        match self {
            Upstream::Child { mut child, .. } => {
                let status = wait_or_kill(&mut child, Duration::from_secs(2)).await;
                let text = status.map_or_else(|| "unknown exit status".to_owned(), |s| s.to_string());
                (status.and_then(|s| s.code()).filter(|c| *c != 0).unwrap_or(1), text)
            }
            Upstream::Http(http) => {
                http.close().await;
                (1, "its connection ended".to_owned())
            }
        }
    }
}

async fn wait_or_kill(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status.ok();
    }
    // As the MCP stdio transport asks: SIGTERM first, then SIGKILL.
    if terminate(child) {
        eprintln!("tame mcp-proxy: mcp server did not exit within {grace:?}; sent SIGTERM");
        if let Ok(status) = tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
            return status.ok();
        }
    }
    eprintln!("tame mcp-proxy: killing the mcp server");
    let _ = child.start_kill();
    child.wait().await.ok()
}

/// Sends SIGTERM to the child; `false` when that is not possible.
#[cfg(unix)]
fn terminate(child: &Child) -> bool {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .is_some_and(|pid| kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok())
}

#[cfg(not(unix))]
fn terminate(_child: &Child) -> bool {
    false
}

/// The Streamable HTTP client of one MCP session.
pub(crate) struct HttpUpstream {
    state: Arc<HttpState>,
    dispatcher: JoinHandle<()>,
}

struct HttpState {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    /// Given by the server with its answer to `initialize`.
    session: Mutex<Option<HeaderValue>>,
    /// The protocol version the server chose in `initialize`.
    protocol: Mutex<Option<HeaderValue>>,
    from_server: mpsc::Sender<Incoming>,
    get_stream: Mutex<Option<JoinHandle<()>>>,
}

/// What kind of JSON-RPC message a text is, as far as sending it goes.
struct Sent {
    /// The id of a request (answered on its POST).
    id: Option<Value>,
    method: Option<String>,
}

impl Sent {
    fn of(text: &str) -> Sent {
        let value = serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        let method = value.get("method").and_then(Value::as_str).map(str::to_owned);
        let id = value.get("id").filter(|_| method.is_some()).cloned();
        Sent { id, method }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HttpUpstream {
    fn connect(url: &str, headers: &[(String, String)]) -> Result<Connected> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Error::Config(format!("invalid --url `{url}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "invalid --url `{url}`: the mcp server must be reached over http:// or https://"
            )));
        }
        let mut extra = HeaderMap::new();
        for (name, value) in headers {
            let header = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| Error::Config(format!("invalid header name `{name}`: {e}")))?;
            let mut value = HeaderValue::from_str(value.trim())
                .map_err(|e| Error::Config(format!("invalid value of header `{name}`: {e}")))?;
            value.set_sensitive(true);
            extra.append(header, value);
        }
        // No overall timeout: an answer may be an SSE stream that lasts as
        // long as the tool runs.
        let client = TlsRoots::system().http_client(
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none()),
        )?;
        let (to_server, rx) = mpsc::unbounded_channel();
        let (tx, from_server) = mpsc::channel(INCOMING_QUEUE);
        let state = Arc::new(HttpState {
            client,
            url: parsed,
            headers: extra,
            session: Mutex::new(None),
            protocol: Mutex::new(None),
            from_server: tx,
            get_stream: Mutex::new(None),
        });
        let dispatcher = tokio::spawn(dispatch(Arc::clone(&state), rx));
        Ok(Connected {
            upstream: Upstream::Http(HttpUpstream { state, dispatcher }),
            to_server,
            from_server,
        })
    }

    async fn close(self) {
        self.dispatcher.abort();
        if let Some(stream) = lock(&self.state.get_stream).take() {
            stream.abort();
        }
        let session = lock(&self.state.session).clone();
        if session.is_some() {
            let request = self.state.request(reqwest::Method::DELETE);
            // A server may refuse (405) to end sessions on request: fine.
            if let Err(err) = tokio::time::timeout(Duration::from_secs(5), request.send()).await {
                tracing::debug!("ending the mcp session timed out: {err}");
            }
        }
    }
}

/// Sends each message the relay queues: `initialize` alone and awaited (its
/// answer names the session every later message needs), the rest each on
/// its own POST, concurrently.
async fn dispatch(state: Arc<HttpState>, mut rx: mpsc::UnboundedReceiver<Out>) {
    while let Some(out) = rx.recv().await {
        let text = match out {
            Out::Line(text) => text,
            Out::Flush(ack) => {
                let _ = ack.send(());
                continue;
            }
        };
        let sent = Sent::of(&text);
        if sent.method.as_deref() == Some("initialize") {
            state.post(text, sent).await;
        } else {
            let state = Arc::clone(&state);
            tokio::spawn(async move { state.post(text, sent).await });
        }
    }
}

impl HttpState {
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(method, self.url.clone())
            .headers(self.headers.clone());
        if let Some(session) = lock(&self.session).clone() {
            request = request.header(SESSION_HEADER, session);
        }
        if let Some(protocol) = lock(&self.protocol).clone() {
            request = request.header(PROTOCOL_HEADER, protocol);
        }
        request
    }

    /// Hands a message of the server to the relay.
    async fn deliver(&self, text: String) {
        let _ = self.from_server.send(Incoming::Text(text)).await;
    }

    /// The POST carrying `sent` failed: the request's error response (a
    /// notification or response has nobody to tell but the log).
    async fn fail(&self, sent: &Sent, problem: &str) {
        match &sent.id {
            Some(id) => {
                let message = json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": codes::INTERNAL_ERROR,
                    "message": format!("tame mcp-proxy: {problem}"),
                }});
                self.deliver(message.to_string()).await;
            }
            None => eprintln!("tame mcp-proxy: {problem}"),
        }
    }

    async fn post(self: &Arc<Self>, text: String, sent: Sent) {
        let request = self
            .request(reqwest::Method::POST)
            .header(ACCEPT, "application/json, text/event-stream")
            .header(CONTENT_TYPE, "application/json")
            .body(text);
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                let problem = format!(
                    "cannot reach the mcp server at {}: {}",
                    self.url,
                    crate::tls::error_chain(&err)
                );
                self.fail(&sent, &problem).await;
                return;
            }
        };
        let status = response.status();
        if !status.is_success() {
            let detail = read_limited(response, 4096).await.unwrap_or_default();
            let session = if status == reqwest::StatusCode::NOT_FOUND && lock(&self.session).is_some() {
                " (the server no longer knows this session)"
            } else {
                ""
            };
            let problem = format!(
                "the mcp server at {} answered HTTP {status}{session}: {}",
                self.url,
                detail.trim()
            );
            self.fail(&sent, &problem).await;
            return;
        }
        let initialize = sent.method.as_deref() == Some("initialize");
        if initialize && let Some(session) = response.headers().get(SESSION_HEADER) {
            *lock(&self.session) = Some(session.clone());
        }
        if sent.method.as_deref() == Some("notifications/initialized") {
            self.open_get_stream();
        }
        if sent.id.is_none() {
            // A notification or a response: 202, nothing to read.
            return;
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            if !self.read_events(response, sent.id.as_ref(), initialize).await {
                self.fail(&sent, "the mcp server closed its event stream before answering")
                    .await;
            }
        } else if content_type.starts_with("application/json") {
            match read_limited(response, MAX_MESSAGE_BYTES).await {
                Ok(body) => {
                    if initialize {
                        self.note_protocol(&body);
                    }
                    self.deliver(body).await;
                }
                Err(problem) => self.fail(&sent, &problem).await,
            }
        } else {
            let problem = format!(
                "the mcp server at {} answered a request with `{content_type}`, not json nor an event stream",
                self.url
            );
            self.fail(&sent, &problem).await;
        }
    }

    /// Remembers the protocol version of an `initialize` answer.
    fn note_protocol(&self, text: &str) {
        let version = serde_json::from_str::<Value>(text).ok().and_then(|v| {
            v.pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                .and_then(|s| HeaderValue::from_str(s).ok())
        });
        if version.is_some() {
            *lock(&self.protocol) = version;
        }
    }

    /// Relays the messages of an SSE stream; with `answer_to`, until the
    /// response to that request (`true` once it came).
    async fn read_events(&self, response: reqwest::Response, answer_to: Option<&Value>, initialize: bool) -> bool {
        // Bound each event: the bytes read since the last complete event.
        let unparsed = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&unparsed);
        let bytes = response.bytes_stream().map(move |chunk| {
            let chunk = chunk?;
            let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            counter.fetch_add(len, Ordering::Relaxed);
            Ok::<_, reqwest::Error>(chunk)
        });
        let mut events = bytes.eventsource();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    tracing::debug!("mcp server event stream ended: {err}");
                    return false;
                }
            };
            if unparsed.swap(0, Ordering::Relaxed) > MAX_MESSAGE_BYTES.saturating_add(1 << 16) {
                eprintln!("tame mcp-proxy: the mcp server sent an event longer than {MAX_MESSAGE_BYTES} bytes");
                return false;
            }
            if !(event.event.is_empty() || event.event == "message") || event.data.is_empty() {
                continue;
            }
            let answered = answer_to.is_some_and(|id| {
                serde_json::from_str::<Value>(&event.data).is_ok_and(|m| {
                    m.get("method").is_none()
                        && m.get("id") == Some(id)
                        && (m.get("result").is_some() || m.get("error").is_some())
                })
            });
            if answered && initialize {
                self.note_protocol(&event.data);
            }
            self.deliver(event.data).await;
            if answered {
                return true;
            }
        }
        false
    }

    /// Opens the stream of server-initiated messages (`GET`), if the server
    /// offers one (405: it does not). Reconnects a few times if it drops.
    fn open_get_stream(self: &Arc<Self>) {
        let state = Arc::clone(self);
        let task = tokio::spawn(async move {
            for _ in 0..5 {
                let request = state.request(reqwest::Method::GET).header(ACCEPT, "text/event-stream");
                let Ok(response) = request.send().await else {
                    return;
                };
                if !response.status().is_success() {
                    return;
                }
                state.read_events(response, None, false).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        if let Some(old) = lock(&self.get_stream).replace(task) {
            old.abort();
        }
    }
}

/// The body of `response` as text, at most `limit` bytes.
async fn read_limited(response: reqwest::Response, limit: u64) -> Result<String, String> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|e| format!("cannot read the mcp server's answer: {}", crate::tls::error_chain(&e)))?;
        if u64::try_from(body.len().saturating_add(chunk.len())).unwrap_or(u64::MAX) > limit {
            return Err(format!("the mcp server's answer is longer than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|e| format!("the mcp server's answer is not utf-8: {e}"))
}
