//! The MCP stdio proxy: spawns the real MCP server, relays newline-delimited
//! JSON-RPC 2.0 both ways unchanged, and enforces every `tools/call` from the
//! client before it reaches the server.
//!
//! - deny: the client gets a tool result `{"content": [{"type": "text",
//!   "text": reason}], "isError": true}` and the server never sees the call;
//! - approve: the proxy waits (bounded) for the approval through the guard,
//!   then forwards or answers with an error result naming the pending
//!   approval id;
//! - allow: the call is forwarded and its result recorded when it returns.
//!
//! Robustness: a line from the client that is not JSON gets a `-32700` parse
//! error and the proxy carries on; when the server dies, every request still
//! waiting for it gets an error and the proxy exits non-zero; when the client
//! closes stdin, the server's stdin is closed and it is given a grace period
//! to exit before it is killed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use serde_json::{Map, Value, json};
use tame_engine::Action;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::process::{Child, Command};
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
    /// The MCP server command and its arguments.
    pub command: Vec<String>,
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
        }
    }
}

/// Runs the proxy on this process's stdin/stdout until the client or the
/// server goes away. Returns the process exit code: 0 after a clean
/// client-initiated shutdown, non-zero when the server died.
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
    run_mcp_proxy_with(Arc::new(guard), &opts, tokio::io::stdin(), tokio::io::stdout()).await
}

async fn load_remote_hidden(remote: &RemoteGuard) {
    if let Err(err) = remote.load_hidden().await {
        eprintln!("tame mcp-proxy: cannot read the server's policy for --hide-denied, hiding nothing: {err:#}");
    }
}

/// Something for the client or server writer task.
#[derive(Debug)]
enum Out {
    Line(String),
    /// Write everything queued before this, flush, then acknowledge.
    Flush(oneshot::Sender<()>),
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

struct Shared<G> {
    guard: Arc<G>,
    session_id: String,
    agent_id: Option<String>,
    user_id: Option<String>,
    hide_denied: bool,
    approval_timeout: Duration,
    to_client: mpsc::UnboundedSender<Out>,
    to_server: mpsc::UnboundedSender<Out>,
    table: Mutex<Table>,
}

impl<G> Shared<G> {
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

/// The proxy's core over any client streams: `client_in` carries the
/// client's messages, `client_out` receives everything for the client.
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
    let (program, args) = opts
        .command
        .split_first()
        .ok_or_else(|| Error::Config("no mcp server command given (put it after `--`)".into()))?;
    let shown = opts.command.join(" ");
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

    let (to_client, client_rx) = mpsc::unbounded_channel();
    let (to_server, server_rx) = mpsc::unbounded_channel();
    let client_writer = tokio::spawn(write_lines(client_out, client_rx));
    let server_writer = tokio::spawn(write_lines(server_in, server_rx));

    let shared = Arc::new(Shared {
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
    });

    let mut server_reader = tokio::spawn(read_server(Arc::clone(&shared), server_out));
    let mut client_reader = tokio::spawn(read_client(Arc::clone(&shared), client_in));

    let code = tokio::select! {
        _ = &mut client_reader => {
            // The client is gone: close the server's stdin (the MCP stdio
            // shutdown), give it a grace period, then kill it.
            drop_server_input(&shared, server_writer).await;
            let status = wait_or_kill(&mut child, opts.shutdown_grace).await;
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut server_reader).await;
            tracing::debug!(?status, "mcp server stopped after the client disconnected");
            0
        }
        _ = &mut server_reader => {
            client_reader.abort();
            let status = wait_or_kill(&mut child, Duration::from_secs(2)).await;
            let answered = fail_pending(&shared);
            let status_text = status.map_or_else(|| "unknown exit status".to_owned(), |s| s.to_string());
            eprintln!(
                "tame mcp-proxy: mcp server `{shown}` exited unexpectedly ({status_text}); \
                 {answered} pending request(s) answered with an error"
            );
            status.and_then(|s| s.code()).filter(|c| *c != 0).unwrap_or(1)
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

/// Closes the server's stdin once everything queued for it was written.
async fn drop_server_input<G>(shared: &Shared<G>, server_writer: tokio::task::JoinHandle<()>) {
    let (ack, acked) = oneshot::channel();
    if shared.to_server.send(Out::Flush(ack)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), acked).await;
    }
    // Aborting the writer drops the pipe: the server sees EOF.
    server_writer.abort();
    let _ = server_writer.await;
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

/// Answers every request still waiting for the (dead) server with an error.
fn fail_pending<G>(shared: &Shared<G>) -> usize {
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

async fn write_lines<W: AsyncWrite + Unpin>(mut out: W, mut rx: mpsc::UnboundedReceiver<Out>) {
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

async fn read_client<G, R>(shared: Arc<Shared<G>>, client_in: R)
where
    G: Guard + 'static,
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::new(client_in);
    let mut buf = Vec::new();
    let mut calls = JoinSet::new();
    loop {
        let line = match next_line(&mut reader, &mut buf).await {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(problem))) => {
                // Not UTF-8, or too long: a parse error, and go on.
                shared.send_client(&error_response(
                    &Value::Null,
                    codes::PARSE_ERROR,
                    &format!("parse error: {problem}"),
                ));
                continue;
            }
            Ok(None) => break,
            Err(err) => {
                eprintln!("tame mcp-proxy: cannot read from the client: {err}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
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
                    handle_client_message(&shared, &mut calls, message, text).await;
                }
            }
            Ok(message) => handle_client_message(&shared, &mut calls, message, line).await,
        }
        // Reap finished enforcement tasks as we go.
        while calls.try_join_next().is_some() {}
    }
    // Let calls under enforcement reach the server before it is shut down.
    while calls.join_next().await.is_some() {}
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

async fn read_server<G, R>(shared: Arc<Shared<G>>, server_out: R)
where
    G: Guard + 'static,
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::new(server_out);
    let mut buf = Vec::new();
    let mut records = JoinSet::new();
    loop {
        let line = match next_line(&mut reader, &mut buf).await {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(problem))) => {
                // Not ours to fix: say so and relay what can be relayed.
                eprintln!("tame mcp-proxy: the mcp server wrote a bad line: {problem}");
                if !buf.is_empty() {
                    let _ = shared
                        .to_client
                        .send(Out::Line(String::from_utf8_lossy(&buf).trim_end().to_owned()));
                }
                continue;
            }
            Ok(None) | Err(_) => break,
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
                let shared = Arc::clone(&shared);
                records.spawn(async move {
                    if let Err(err) = shared.guard.record(&verdict, &call, &outcome).await {
                        eprintln!(
                            "tame mcp-proxy: cannot record the result of `{}`: {err:#}",
                            call.tool_name
                        );
                    }
                });
            }
            Some(Pending::Plain) | None => {}
        }
        let _ = shared.to_client.send(Out::Line(line));
        while records.try_join_next().is_some() {}
    }
    while records.join_next().await.is_some() {}
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
