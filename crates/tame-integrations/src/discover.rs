//! Asks an MCP server which tools it has (`tools/list`), for `tame init`.
//!
//! The server command is started as the proxy starts it (stdin and stdout
//! piped, stderr inherited), then spoken to in newline-delimited JSON-RPC
//! 2.0: `initialize`, the `notifications/initialized` notification, and
//! `tools/list` page by page (`nextCursor`). Requests the server sends
//! meanwhile get a "method not found" error (a `ping` an empty result). The
//! whole exchange has one deadline; the server's stdin is then closed and
//! it is killed if it has not exited shortly after.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Fails with an [`Error::Mcp`] built like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err(Error::Mcp(format!($($arg)*)))
    };
}
use serde_json::{Value, json};

/// The MCP protocol version `tame init` asks for.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// Pages of `tools/list` read at most (a server that always returns a
/// cursor cannot keep `tame init` going).
const MAX_PAGES: usize = 100;

/// One tool as an MCP server describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct McpTool {
    pub name: String,
    pub description: Option<String>,
    /// `inputSchema`: the JSON Schema of the arguments.
    pub input_schema: Option<Value>,
    /// `annotations.readOnlyHint`.
    pub read_only: Option<bool>,
    /// `annotations.destructiveHint`.
    pub destructive: Option<bool>,
}

impl McpTool {
    /// Reads one entry of a `tools/list` result (also the shape of a saved
    /// `tools/list` answer).
    pub fn from_json(value: &Value) -> Result<McpTool> {
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::Mcp("a tool without a `name`".into()))?;
        let hint = |key: &str| {
            value
                .get("annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_bool)
        };
        Ok(McpTool {
            name: name.to_owned(),
            description: value.get("description").and_then(Value::as_str).map(str::to_owned),
            input_schema: value.get("inputSchema").cloned(),
            read_only: hint("readOnlyHint"),
            destructive: hint("destructiveHint"),
        })
    }
}

/// The child process, killed when dropped.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    shown: String,
}

impl Server {
    fn send(&mut self, message: &Value) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::Mcp("the mcp server's stdin is closed".into()))?;
        let mut line = message.to_string();
        line.push('\n');
        if let Err(e) = stdin.write_all(line.as_bytes()).and_then(|()| stdin.flush()) {
            let status = self.exit_note();
            bail!(
                "the mcp server `{}` stopped reading its input before answering{status}: {e}",
                self.shown
            );
        }
        Ok(())
    }

    /// ` (exit status: N)` when the server has exited (waiting briefly).
    fn exit_note(&mut self) -> String {
        let until = Instant::now() + Duration::from_millis(200);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!(" ({status})");
            }
            if Instant::now() >= until {
                return String::new();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing stdin asks the server to exit; then a short grace period.
        drop(self.stdin.take());
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the answer to request `id`, answering the server's own
/// requests meanwhile.
fn answer(server: &mut Server, lines: &mpsc::Receiver<String>, id: u64, deadline: Instant) -> Result<Value> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!("the mcp server `{}` did not answer in time", server.shown)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.exit_note();
                bail!(
                    "the mcp server `{}` closed its output before answering{status}",
                    server.shown
                )
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            // Servers that log to stdout: not a message, skip it.
            continue;
        };
        if message.get("method").is_some() {
            if let Some(request_id) = message.get("id") {
                let reply = if message.get("method").and_then(Value::as_str) == Some("ping") {
                    json!({"jsonrpc": "2.0", "id": request_id, "result": {}})
                } else {
                    json!({"jsonrpc": "2.0", "id": request_id,
                           "error": {"code": -32601, "message": "method not found"}})
                };
                server.send(&reply)?;
            }
            continue;
        }
        if message.get("id").and_then(Value::as_u64) != Some(id) {
            continue;
        }
        if let Some(error) = message.get("error") {
            let text = error.get("message").and_then(Value::as_str).unwrap_or("no message");
            bail!("the mcp server `{}` answered with an error: {text}", server.shown);
        }
        return message
            .get("result")
            .cloned()
            .ok_or_else(|| Error::Mcp(format!("the mcp server `{}` answered without a result", server.shown)));
    }
}

/// Starts `command` (the program and its arguments) and lists its tools.
pub fn list_mcp_tools(command: &[String], timeout: Duration) -> Result<Vec<McpTool>> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::Config("no mcp server command given (put it after `--`)".into()))?;
    let shown = command.join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| Error::Io {
            what: format!("cannot start mcp server `{shown}`"),
            source,
        })?;
    let stdout = child.stdout.take();
    let stdin = child.stdin.take();
    let mut server = Server { child, stdin, shown };
    let stdout = stdout.ok_or_else(|| Error::Mcp("the mcp server's stdout is not piped".into()))?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    server.send(&json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "tame-init", "version": env!("CARGO_PKG_VERSION")}
        }
    }))?;
    answer(&mut server, &lines, 1, deadline)?;
    server.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
    let mut tools = Vec::new();
    let mut cursor: Option<Value> = None;
    for page in 0..MAX_PAGES {
        let id = 2 + page as u64;
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        server.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params}))?;
        let result = answer(&mut server, &lines, id, deadline)?;
        let list = result.get("tools").and_then(Value::as_array).ok_or_else(|| {
            Error::Mcp(format!(
                "the mcp server `{}` answered tools/list without `tools`",
                server.shown
            ))
        })?;
        for (i, tool) in list.iter().enumerate() {
            tools.push(McpTool::from_json(tool).map_err(|e| Error::Mcp(format!("tools/list item {i}: {e}")))?);
        }
        cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
        if cursor.is_none() {
            return Ok(tools);
        }
    }
    bail!(
        "the mcp server `{}` kept paging tools/list past {MAX_PAGES} pages",
        server.shown
    )
}
