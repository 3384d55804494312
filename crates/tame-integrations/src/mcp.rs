//! The MCP proxy: relays JSON-RPC 2.0 between an MCP client and the real
//! MCP server both ways unchanged, and enforces every `tools/call` from the
//! client before it reaches the server.
//!
//! - deny: the client gets a tool result `{"content": [{"type": "text",
//!   "text": reason}], "isError": true}` and the server never sees the call;
//! - approve: the proxy waits (bounded) for the approval through the guard,
//!   then forwards or answers with an error result naming the pending
//!   approval id;
//! - allow: the call is forwarded and its result recorded when it returns.
//!
//! This module is the relay of one session over message queues, whatever
//! the transports: the server is a child over stdio or a Streamable HTTP
//! endpoint ([`crate::mcp_upstream`]); the client speaks over stdio
//! ([`run_mcp_proxy_with`]) or Streamable HTTP ([`crate::mcp_listen`], one
//! relay per MCP session).
//!
//! Robustness: a line from the client that is not JSON gets a `-32700` parse
//! error and the proxy carries on; when the server dies, every request still
//! waiting for it gets an error and the proxy exits non-zero; when the client
//! closes stdin, the server's stdin is closed and it is given a grace period
//! to exit before it is killed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mcp_upstream::{Connected, Upstream};
use serde_json::{Map, Value, json};
use tame_engine::Action;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::guard::{AnyGuard, ApprovalOutcome, CallOutcome, CallStatus, Guard, RemoteGuard, ToolCall, Verdict};

/// JSON-RPC error codes used by the proxy.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
}

/// The longest the proxy waits for a human approval (MCP clients commonly
/// time out a request after 60 s).
pub const MAX_APPROVAL_WAIT: Duration = Duration::from_secs(55);

/// Options of `tame mcp-proxy`.
#[derive(Clone, Debug)]
pub struct McpProxyOptions {
    /// Decide with the embedded engine and this policies.yml.
    pub policy: Option<PathBuf>,
    /// Decide through this Tame server instead (wins over `policy`).
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    pub agent_id: Option<String>,
    pub user_id: Option<String>,
    /// One session per proxy run; a fresh UUID when `None`.
    pub session_id: Option<String>,
    /// Remove from `tools/list` answers the tools the policy always denies.
    pub hide_denied: bool,
    /// How long to wait for an approval (capped at [`MAX_APPROVAL_WAIT`]).
    pub approval_timeout: Duration,
    /// How long the server gets to exit after the client went away.
    pub shutdown_grace: Duration,
    /// Embedded engine only: append decisions and results to this
    /// JSON-lines file.
    pub journal: Option<PathBuf>,
    /// The MCP server command and its arguments (run as a child, over
    /// stdio).
    pub command: Vec<String>,
    /// Instead of `command`: the MCP server's Streamable HTTP endpoint
    /// (`http://` or `https://`).
    pub url: Option<String>,
    /// HTTP headers sent to the server at `url` (e.g. its `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Serve MCP clients over Streamable HTTP on this address (at
    /// [`crate::mcp_listen::MCP_PATH`]) instead of stdin/stdout: one
    /// server connection and one Tame session per MCP session.
    pub listen: Option<SocketAddr>,
    /// Host names (besides loopback addresses, `localhost` and the listen
    /// address) the HTTP listener answers to; `*` for any.
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`scheme://host[:port]`) allowed to call the HTTP
    /// listener besides its own.
    pub allowed_origins: Vec<String>,
}

impl Default for McpProxyOptions {
    fn default() -> Self {
        McpProxyOptions {
            policy: None,
            api_url: None,
            api_key: None,
            agent_id: None,
            user_id: None,
            session_id: None,
            hide_denied: false,
            approval_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            journal: None,
            command: Vec::new(),
            url: None,
            headers: Vec::new(),
            listen: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Runs the proxy until the client or the server goes away. The client
/// speaks over this process's stdin/stdout, or, with `listen`, over
/// Streamable HTTP (see [`crate::mcp_listen`]); the server is the `command`
/// run as a child, or the Streamable HTTP endpoint at `url`. Returns the
/// process exit code: 0 after a clean client-initiated shutdown, non-zero
/// when the server died.
///
/// Reading stdin blocks a runtime thread: after this returns, a binary
/// should `std::process::exit` with the code rather than wait for the
/// runtime to shut down.
pub async fn run_mcp_proxy(opts: McpProxyOptions) -> Result<i32> {
    let guard = AnyGuard::open(
        opts.policy.as_deref(),
        opts.api_url.as_deref(),
        opts.api_key.clone(),
        opts.journal.as_deref(),
    )?;
    if opts.hide_denied
        && let AnyGuard::Remote(remote) = &guard
    {
        load_remote_hidden(remote).await;
    }
    if let Some(addr) = opts.listen {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Io {
            what: format!("cannot listen on {addr}"),
            source,
        })?;
        crate::mcp_listen::serve(Arc::new(guard), opts, listener, shutdown_signal()).await?;
        return Ok(0);
    }
    run_mcp_proxy_with(Arc::new(guard), &opts, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Resolves on Ctrl-C (or SIGTERM on unix).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn load_remote_hidden(remote: &RemoteGuard) {
    if let Err(err) = remote.load_hidden().await {
        eprintln!("tame mcp-proxy: cannot read the server's policy for --hide-denied, hiding nothing: {err:#}");
    }
}

/// Something for the client or server writer task.
#[derive(Debug)]
pub(crate) enum Out {
    Line(String),
    /// Write everything queued before this, flush, then acknowledge.
    Flush(oneshot::Sender<()>),
}

/// One message read from a side of the proxy.
#[derive(Debug)]
pub(crate) enum Incoming {
    Text(String),
    /// A message that could not be read as text (not UTF-8, too long):
    /// what was wrong, and its bytes as far as they can be shown.
    Bad {
        problem: String,
        lossy: String,
    },
}

/// A request forwarded to the server whose response has not come back.
#[derive(Debug)]
enum Pending {
    Plain,
    ToolsList,
    ToolCall(Box<ForwardedCall>),
}

/// An allowed `tools/call` on its way to the server.
#[derive(Debug)]
struct ForwardedCall {
    call: ToolCall,
    verdict: Verdict,
    started: Instant,
}

#[derive(Debug, Default)]
struct Table {
    pending: HashMap<String, Pending>,
    /// Set once the server is gone: nothing more is forwarded.
    closed: bool,
}

/// One proxied MCP session: its guard, its Tame session, both sides'
/// outgoing queues and the requests in flight.
pub(crate) struct Shared<G> {
    guard: Arc<G>,
    session_id: String,
    agent_id: Option<String>,
    user_id: Option<String>,
    hide_denied: bool,
    approval_timeout: Duration,
    pub(crate) to_client: mpsc::UnboundedSender<Out>,
    pub(crate) to_server: mpsc::UnboundedSender<Out>,
    table: Mutex<Table>,
}

impl<G> Shared<G> {
    /// A session deciding with `guard` under `opts` (its Tame session id,
    /// or a fresh one).
    pub(crate) fn new(
        guard: Arc<G>,
        opts: &McpProxyOptions,
        to_client: mpsc::UnboundedSender<Out>,
        to_server: mpsc::UnboundedSender<Out>,
    ) -> Self {
        Shared {
            guard,
            session_id: opts
                .session_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            agent_id: opts.agent_id.clone(),
            user_id: opts.user_id.clone(),
            hide_denied: opts.hide_denied,
            approval_timeout: opts.approval_timeout.min(MAX_APPROVAL_WAIT),
            to_client,
            to_server,
            table: Mutex::new(Table::default()),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A poisoned table still holds consistent entries (every update is a
        // single insert or remove): keep going rather than drop requests.
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn send_client(&self, message: &Value) {
        // The writer only stops when the process is exiting.
        let _ = self.to_client.send(Out::Line(message.to_string()));
    }

    /// Forwards a client request to the server, remembering it so its
    /// response can be matched (and errored if the server dies first).
    fn forward_request(&self, id: &Value, line: String, pending: Pending) {
        let mut table = self.table();
        if table.closed {
            drop(table);
            self.send_client(&error_response(
                id,
                codes::INTERNAL_ERROR,
                "the mcp server is no longer running",
            ));
            return;
        }
        table.pending.insert(id_key(id), pending);
        let _ = self.to_server.send(Out::Line(line));
    }
}

/// Which side ended a proxied session.
pub(crate) enum Ended {
    /// The client is gone; the server reader still runs (to deliver and
    /// record what the server still answers).
    ClientLeft(tokio::task::JoinHandle<()>),
    /// The server is gone.
    ServerLeft,
}

/// Relays one session until a side goes away: `client_in` carries the
/// client's messages, `server_in` the server's; what is for either side goes
/// to `shared`'s queues.
pub(crate) async fn relay<G: Guard + 'static>(
    shared: &Arc<Shared<G>>,
    client_in: mpsc::Receiver<Incoming>,
    server_in: mpsc::Receiver<Incoming>,
) -> Ended {
    let mut server_reader = tokio::spawn(read_server(Arc::clone(shared), server_in));
    let mut client_reader = tokio::spawn(read_client(Arc::clone(shared), client_in));
    tokio::select! {
        _ = &mut client_reader => Ended::ClientLeft(server_reader),
        _ = &mut server_reader => {
            client_reader.abort();
            Ended::ServerLeft
        }
    }
}

/// How many messages read from a side may wait for the proxy.
pub(crate) const INCOMING_QUEUE: usize = 64;

/// Reads newline-delimited messages from `input` into `tx` until the end of
/// the stream (or `tx`'s receiver is gone). `side` names the peer in errors.
pub(crate) async fn read_lines<R: AsyncRead + Unpin>(input: R, tx: mpsc::Sender<Incoming>, side: &'static str) {
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    loop {
        let item = match next_line(&mut reader, &mut buf).await {
            Ok(Some(Ok(line))) => Incoming::Text(line),
            Ok(Some(Err(problem))) => Incoming::Bad {
                problem,
                lossy: String::from_utf8_lossy(&buf).trim_end().to_owned(),
            },
            Ok(None) => break,
            Err(err) => {
                eprintln!("tame mcp-proxy: cannot read from the {side}: {err}");
                break;
            }
        };
        if tx.send(item).await.is_err() {
            break;
        }
    }
}

/// The proxy's core over any client streams: `client_in` carries the
/// client's newline-delimited messages, `client_out` receives everything
/// for the client. The server is `opts.command` (a child over stdio) or
/// `opts.url` (Streamable HTTP).
pub async fn run_mcp_proxy_with<G, R, W>(
    guard: Arc<G>,
    opts: &McpProxyOptions,
    client_in: R,
    client_out: W,
) -> Result<i32>
where
    G: Guard + 'static,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Connected {
        upstream,
        to_server,
        from_server,
    } = Upstream::connect(opts).await?;

    let (to_client, client_rx) = mpsc::unbounded_channel();
    let client_writer = tokio::spawn(write_lines(client_out, client_rx));
    let (client_tx, client_msgs) = mpsc::channel(INCOMING_QUEUE);
    let client_reader = tokio::spawn(read_lines(client_in, client_tx, "client"));

    let shared = Arc::new(Shared::new(guard, opts, to_client, to_server));
    let code = match relay(&shared, client_msgs, from_server).await {
        Ended::ClientLeft(server_reader) => {
            // The client is gone: shut the server down (stdio: close its
            // stdin, a grace period, then kill it; HTTP: end the session).
            upstream.close(&shared.to_server, opts.shutdown_grace).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), server_reader).await;
            0
        }
        Ended::ServerLeft => {
            client_reader.abort();
            let shown = upstream.shown().to_owned();
            let (code, status) = upstream.exited().await;
            let answered = fail_pending(&shared);
            eprintln!(
                "tame mcp-proxy: mcp server `{}` exited unexpectedly ({status}); \
                 {answered} pending request(s) answered with an error",
                shown
            );
            code
        }
    };

    // Deliver whatever is queued for the client before returning.
    let (ack, acked) = oneshot::channel();
    if shared.to_client.send(Out::Flush(ack)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), acked).await;
    }
    client_writer.abort();
    Ok(code)
}

/// Answers every request still waiting for the (dead) server with an error.
pub(crate) fn fail_pending<G>(shared: &Shared<G>) -> usize {
    let pending = {
        let mut table = shared.table();
        table.closed = true;
        std::mem::take(&mut table.pending)
    };
    for key in pending.keys() {
        let id = serde_json::from_str::<Value>(key).unwrap_or(Value::Null);
        shared.send_client(&error_response(
            &id,
            codes::INTERNAL_ERROR,
            "the mcp server exited before answering",
        ));
    }
    pending.len()
}

pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(mut out: W, mut rx: mpsc::UnboundedReceiver<Out>) {
    while let Some(item) = rx.recv().await {
        match item {
            Out::Line(mut line) => {
                line.push('\n');
                if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                    break;
                }
            }
            Out::Flush(ack) => {
                let _ = out.flush().await;
                let _ = ack.send(());
            }
        }
    }
    let _ = out.shutdown().await;
}

/// The longest message accepted on either side (MCP messages may carry
/// base64 images, so this is generous).
pub const MAX_MESSAGE_BYTES: u64 = 64 << 20;

/// Reads one newline-delimited message. `Ok(None)` at end of stream;
/// `Ok(Some(Err(problem)))` for a line that is not UTF-8 (its bytes are left
/// in `buf`) or longer than [`MAX_MESSAGE_BYTES`] (skipped, `buf` empty).
async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Result<String, String>>> {
    buf.clear();
    let n = (&mut *reader).take(MAX_MESSAGE_BYTES).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && u64::try_from(n).is_ok_and(|n| n >= MAX_MESSAGE_BYTES) {
        // Skip the rest of the oversized line.
        loop {
            buf.clear();
            let more = (&mut *reader).take(MAX_MESSAGE_BYTES).read_until(b'\n', buf).await?;
            if more == 0 || buf.last() == Some(&b'\n') {
                break;
            }
        }
        buf.clear();
        return Ok(Some(Err(format!("message longer than {MAX_MESSAGE_BYTES} bytes"))));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    match std::str::from_utf8(buf) {
        Ok(text) => Ok(Some(Ok(text.to_owned()))),
        Err(err) => Ok(Some(Err(format!("message is not utf-8: {err}")))),
    }
}

/// A key for a JSON-RPC id (numbers and strings are distinct ids).
fn id_key(id: &Value) -> String {
    id.to_string()
}

fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The tool result the client gets for a call that did not run.
fn refusal(id: &Value, text: &str, meta: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "content": [{"type": "text", "text": text}],
            "isError": true,
            "_meta": {"tame": meta}
        }
    })
}

fn verdict_meta(verdict: &Verdict) -> Value {
    json!({
        "decision": verdict.decision,
        "rule_name": verdict.rule_name,
        "reason": verdict.reason,
        "policy_version": verdict.policy_version,
        "log_id": verdict.log_id,
        "approval_id": verdict.approval_id,
        "session_id": verdict.session_id,
    })
}

async fn read_client<G>(shared: Arc<Shared<G>>, mut client_in: mpsc::Receiver<Incoming>)
where
    G: Guard + 'static,
{
    let mut calls = JoinSet::new();
    while let Some(item) = client_in.recv().await {
        match item {
            Incoming::Text(line) => handle_client_text(&shared, &mut calls, line).await,
            Incoming::Bad { problem, .. } => {
                // Not UTF-8, or too long: a parse error, and go on.
                shared.send_client(&error_response(
                    &Value::Null,
                    codes::PARSE_ERROR,
                    &format!("parse error: {problem}"),
                ));
            }
        }
        // Reap finished enforcement tasks as we go.
        while calls.try_join_next().is_some() {}
    }
    // Let calls under enforcement reach the server before it is shut down.
    while calls.join_next().await.is_some() {}
}

/// One message (or batch) of the client, as text.
async fn handle_client_text<G: Guard + 'static>(shared: &Arc<Shared<G>>, calls: &mut JoinSet<()>, line: String) {
    if line.trim().is_empty() {
        return;
    }
    match serde_json::from_str::<Value>(&line) {
        Err(err) => shared.send_client(&error_response(
            &Value::Null,
            codes::PARSE_ERROR,
            &format!("parse error: {err}"),
        )),
        Ok(Value::Array(batch)) if batch.is_empty() => shared.send_client(&error_response(
            &Value::Null,
            codes::INVALID_REQUEST,
            "invalid request: empty batch",
        )),
        Ok(Value::Array(batch)) => {
            // Batches are relayed element by element (answers come back
            // one by one), so that every `tools/call` in them is enforced.
            for message in batch {
                let text = message.to_string();
                handle_client_message(shared, calls, message, text).await;
            }
        }
        Ok(message) => handle_client_message(shared, calls, message, line).await,
    }
}

async fn handle_client_message<G: Guard + 'static>(
    shared: &Arc<Shared<G>>,
    calls: &mut JoinSet<()>,
    message: Value,
    line: String,
) {
    let Value::Object(object) = &message else {
        shared.send_client(&error_response(
            &Value::Null,
            codes::INVALID_REQUEST,
            "invalid request: a json-rpc message must be an object",
        ));
        return;
    };
    let id = object.get("id").cloned();
    let method = object.get("method").map(|m| m.as_str());
    match (method, id) {
        // A request.
        (Some(Some(method)), Some(id)) => {
            if method == "tools/call" {
                let params = object.get("params").cloned().unwrap_or(Value::Null);
                enforce_call(shared, calls, id, params, line).await;
            } else {
                let pending = if method == "tools/list" && shared.hide_denied {
                    Pending::ToolsList
                } else {
                    Pending::Plain
                };
                shared.forward_request(&id, line, pending);
            }
        }
        // A notification. A `tools/call` without an id would run unchecked
        // and has nobody to answer: drop it.
        (Some(Some(method)), None) => {
            if method == "tools/call" {
                eprintln!("tame mcp-proxy: dropped a `tools/call` notification (no id): calls must be requests");
            } else {
                let _ = shared.to_server.send(Out::Line(line));
            }
        }
        // A response to a request of the server (sampling, roots, ...).
        (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
            let _ = shared.to_server.send(Out::Line(line));
        }
        (_, id) => shared.send_client(&error_response(
            &id.unwrap_or(Value::Null),
            codes::INVALID_REQUEST,
            "invalid request: expected a `method` string, or a `result` or `error` with an `id`",
        )),
    }
}

/// Decides a `tools/call` in arrival order (so session facts such as rate
/// limits see calls in the order the client sent them); only the wait for
/// an approval runs in the background.
async fn enforce_call<G: Guard + 'static>(
    shared: &Arc<Shared<G>>,
    calls: &mut JoinSet<()>,
    id: Value,
    params: Value,
    line: String,
) {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        shared.send_client(&error_response(
            &id,
            codes::INVALID_PARAMS,
            "invalid params: `tools/call` needs a string `params.name`",
        ));
        return;
    };
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(args @ Value::Object(_)) => args.clone(),
        Some(_) => {
            shared.send_client(&error_response(
                &id,
                codes::INVALID_PARAMS,
                "invalid params: `params.arguments` must be an object",
            ));
            return;
        }
    };
    let call = ToolCall {
        tool_name: name.to_owned(),
        tool_args: arguments,
        session_id: shared.session_id.clone(),
        agent_id: shared.agent_id.clone(),
        user_id: shared.user_id.clone(),
        metadata: json!({"source": "mcp-proxy"}),
    };
    let verdict = match shared.guard.enforce(&call).await {
        Ok(verdict) => verdict,
        Err(err) => {
            // Fail closed: no decision, no call.
            let text = format!("tame: the call of `{name}` was not run: no policy decision ({err:#})");
            shared.send_client(&refusal(
                &id,
                &text,
                json!({"decision": "deny", "error": format!("{err:#}")}),
            ));
            return;
        }
    };
    match verdict.decision {
        Action::Allow => {
            shared.forward_request(
                &id,
                line,
                Pending::ToolCall(Box::new(ForwardedCall {
                    call,
                    verdict,
                    started: Instant::now(),
                })),
            );
        }
        Action::Deny => shared.send_client(&refusal(&id, &verdict.reason, verdict_meta(&verdict))),
        Action::Approve => {
            let shared = Arc::clone(shared);
            calls.spawn(async move { await_approval(&shared, id, call, verdict, line).await });
        }
    }
}

/// Waits (bounded) for the approval of a call, then forwards it or tells
/// the client why it did not run.
async fn await_approval<G: Guard + 'static>(
    shared: &Shared<G>,
    id: Value,
    call: ToolCall,
    verdict: Verdict,
    line: String,
) {
    let name = call.tool_name.clone();
    let Some(approval_id) = verdict.approval_id.clone() else {
        let text = format!(
            "tame: `{name}` needs approval but no approval was created: {}",
            verdict.reason
        );
        shared.send_client(&refusal(&id, &text, verdict_meta(&verdict)));
        return;
    };
    let text = match shared.guard.wait_approval(&approval_id, shared.approval_timeout).await {
        Ok(ApprovalOutcome::Approved) => match shared.guard.release(&call, &approval_id).await {
            Ok(released) if released.decision == Action::Allow => {
                let forwarded = ForwardedCall {
                    call,
                    verdict: released,
                    started: Instant::now(),
                };
                shared.forward_request(&id, line, Pending::ToolCall(Box::new(forwarded)));
                return;
            }
            Ok(released) => {
                let text = format!(
                    "tame: approval {approval_id} for `{name}` was granted but the call is denied: {}",
                    released.reason
                );
                shared.send_client(&refusal(&id, &text, verdict_meta(&released)));
                return;
            }
            Err(err) => format!("tame: approval {approval_id} for `{name}` was granted but could not be used: {err:#}"),
        },
        Ok(ApprovalOutcome::Rejected(Some(why))) if !why.is_empty() => {
            format!("tame: approval {approval_id} for `{name}` was rejected: {why}")
        }
        Ok(ApprovalOutcome::Rejected(_)) => {
            format!("tame: approval {approval_id} for `{name}` was rejected")
        }
        Ok(ApprovalOutcome::Pending) => {
            format!(
                "tame: `{name}` needs approval ({}); pending approval id: {approval_id}",
                verdict.reason
            )
        }
        Err(err) => format!("tame: `{name}` needs approval; approval {approval_id} could not be checked: {err:#}"),
    };
    shared.send_client(&refusal(&id, &text, verdict_meta(&verdict)));
}

/// Relays the server's messages to the client. The result of a call is
/// recorded before the client sees it, so that the session's history holds
/// it when the client's next call (which may use it) is decided; results are
/// recorded in the order the server gave them.
async fn read_server<G>(shared: Arc<Shared<G>>, mut server_in: mpsc::Receiver<Incoming>)
where
    G: Guard + 'static,
{
    while let Some(item) = server_in.recv().await {
        let line = match item {
            Incoming::Text(line) => line,
            Incoming::Bad { problem, lossy } => {
                // Not ours to fix: say so and relay what can be relayed.
                eprintln!("tame mcp-proxy: the mcp server wrote a bad line: {problem}");
                if !lossy.is_empty() {
                    let _ = shared.to_client.send(Out::Line(lossy));
                }
                continue;
            }
        };
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(&line) else {
            // Not ours to judge: relay as is.
            let _ = shared.to_client.send(Out::Line(line));
            continue;
        };
        let is_response =
            !message.contains_key("method") && (message.contains_key("result") || message.contains_key("error"));
        let pending = match message.get("id") {
            Some(id) if is_response => shared.table().pending.remove(&id_key(id)),
            _ => None,
        };
        match pending {
            Some(Pending::ToolsList) => {
                if let Some(Value::Array(tools)) = message.get_mut("result").and_then(|r| r.get_mut("tools")) {
                    tools.retain(|tool| {
                        tool.get("name")
                            .and_then(Value::as_str)
                            .is_none_or(|name| !shared.guard.denies_unconditionally(name))
                    });
                    let _ = shared.to_client.send(Out::Line(Value::Object(message).to_string()));
                    continue;
                }
            }
            Some(Pending::ToolCall(forwarded)) => {
                let ForwardedCall { call, verdict, started } = *forwarded;
                let outcome = call_outcome(&message, started);
                if let Err(err) = shared.guard.record(&verdict, &call, &outcome).await {
                    eprintln!(
                        "tame mcp-proxy: cannot record the result of `{}`: {err:#}",
                        call.tool_name
                    );
                }
            }
            Some(Pending::Plain) | None => {}
        }
        let _ = shared.to_client.send(Out::Line(line));
    }
}

/// The outcome of a forwarded `tools/call` from the server's response.
fn call_outcome(message: &Map<String, Value>, started: Instant) -> CallOutcome {
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Some(error) = message.get("error") {
        let text = error.get("message").and_then(Value::as_str).unwrap_or("json-rpc error");
        return CallOutcome {
            status: CallStatus::Error,
            duration_ms,
            error_message: Some(text.to_owned()),
            result: error.clone(),
            extra: Map::new(),
        };
    }
    let result = message.get("result").cloned().unwrap_or(Value::Null);
    let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let error_message = is_error.then(|| {
        result
            .get("content")
            .and_then(Value::as_array)
            .and_then(|items| items.iter().find_map(|item| item.get("text").and_then(Value::as_str)))
            .unwrap_or("tool reported an error")
            .to_owned()
    });
    CallOutcome {
        status: if is_error {
            CallStatus::Error
        } else {
            CallStatus::Success
        },
        duration_ms,
        error_message,
        result,
        extra: Map::new(),
    }
}
