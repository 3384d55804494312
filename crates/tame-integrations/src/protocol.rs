//! Tool protocol v1: run a Python tool `module:function` in a subprocess
//! (stdin/stdout JSON) or through an HTTP service (with the capability
//! handshake first), with timeouts, and describe each run with the
//! protocol's trace fields.
//!
//! This module only executes; [`crate::run`] puts the policy in front.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use crate::tls::{TlsRoots, error_chain};

/// The protocol version spoken by this runner.
pub const PROTOCOL_VERSION: u32 = 1;

/// The default time a tool may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Python side of the local runner, run with `python3 -c`.
pub const SHIM: &str = include_str!("shim.py");

/// How stderr of a crashed tool is cut in error messages.
const STDERR_TAIL: usize = 2000;

/// Where a tool runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "runner", rename_all = "lowercase")]
pub enum RunnerSpec {
    /// A Python subprocess running `entry` (`module:function`).
    Local {
        entry: String,
        /// The interpreter; `python3` when absent.
        #[serde(default)]
        python: Option<PathBuf>,
        /// Directories put first on `PYTHONPATH`.
        #[serde(default)]
        python_path: Vec<PathBuf>,
        /// The working directory (also importable); the current one when absent.
        #[serde(default)]
        cwd: Option<PathBuf>,
        #[serde(default)]
        sandbox: bool,
    },
    /// An HTTP service that takes the protocol's POST.
    Service {
        url: String,
        /// The entry the service should run, passed through.
        #[serde(default)]
        entry: Option<String>,
        /// The tool kind, passed through (`python` when absent).
        #[serde(default)]
        kind: Option<String>,
        /// Guarantees the service must enforce (sent in the handshake).
        #[serde(default)]
        required_guarantees: Map<String, Value>,
    },
}

/// A tool bound to a runner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolBinding {
    pub name: String,
    #[serde(flatten)]
    pub runner: RunnerSpec,
    /// This tool's timeout; the runner's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
}

/// Why a run produced no result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolError {
    /// `ValueError`, `ToolCrashed`, `ToolTimeout`, `ProtocolError`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
}

impl ToolError {
    fn new(kind: &str, message: impl Into<String>, reason_code: &str) -> Self {
        ToolError {
            kind: kind.to_owned(),
            message: message.into(),
            reason_code: Some(reason_code.to_owned()),
        }
    }
}

/// The trace fields of one run (seed 003's names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub runner: String,
    pub resolved_source: String,
    pub timeout_ms: u64,
    pub duration_ms: u64,
    pub protocol_version: u32,
    pub trace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deps_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_handshake: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement_level: Option<String>,
}

/// What one execution gave.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Execution {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ToolError>,
    pub trace: Trace,
}

/// Runs tools; holds the default timeout and an HTTP client (built once,
/// with its TLS config, for every service call).
#[derive(Clone, Debug)]
pub struct ToolRunner {
    default_timeout: Duration,
    tls: TlsRoots,
    /// The client, or why none could be built (every service call then
    /// fails with that reason).
    http: Result<reqwest::Client, Arc<str>>,
}

impl Default for ToolRunner {
    fn default() -> Self {
        ToolRunner::new(DEFAULT_TIMEOUT)
    }
}

impl ToolRunner {
    /// A runner whose https services are checked against the system's
    /// trusted roots ([`TlsRoots::system`]).
    pub fn new(default_timeout: Duration) -> Self {
        ToolRunner::with_tls_roots(default_timeout, TlsRoots::system())
    }

    /// A runner trusting exactly `roots` for `https://` services (a private
    /// CA); plain `http://` services work whatever `roots` holds.
    pub fn with_tls_roots(default_timeout: Duration, roots: TlsRoots) -> Self {
        let http = roots
            .http_client(reqwest::Client::builder())
            .map_err(|err| Arc::from(format!("{err:#}")));
        ToolRunner {
            default_timeout,
            tls: roots,
            http,
        }
    }

    /// The timeout that applies to `binding`.
    pub fn timeout_for(&self, binding: &ToolBinding) -> Duration {
        binding
            .timeout_seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(self.default_timeout)
    }

    /// Executes `binding` with `payload`. Never fails: every problem is an
    /// `ok: false` execution with an error naming it.
    pub async fn execute(&self, binding: &ToolBinding, payload: &Value, trace_id: &str) -> Execution {
        let timeout = self.timeout_for(binding);
        let mut trace = Trace {
            resolved_source: "binding".to_owned(),
            timeout_ms: millis(timeout),
            protocol_version: PROTOCOL_VERSION,
            trace_id: trace_id.to_owned(),
            ..Trace::default()
        };
        let started = Instant::now();
        let outcome = match &binding.runner {
            RunnerSpec::Local {
                entry,
                python,
                python_path,
                cwd,
                sandbox,
            } => {
                trace.runner = "local".to_owned();
                trace.sandbox = Some(*sandbox);
                let local = Local {
                    entry,
                    python: python.as_deref(),
                    python_path,
                    cwd: cwd.as_deref(),
                    sandbox: *sandbox,
                };
                run_local(&binding.name, &local, payload, trace_id, timeout, &mut trace).await
            }
            RunnerSpec::Service {
                url,
                entry,
                kind,
                required_guarantees,
            } => {
                trace.runner = "service".to_owned();
                trace.service_url = Some(url.clone());
                let service = Service {
                    url,
                    entry: entry.as_deref(),
                    kind: kind.as_deref(),
                    required_guarantees,
                };
                self.run_service(&binding.name, &service, payload, trace_id, timeout, &mut trace)
                    .await
            }
        };
        trace.duration_ms = millis(started.elapsed());
        match outcome {
            Ok(result) => Execution {
                ok: true,
                result: Some(result),
                error: None,
                trace,
            },
            Err(error) => Execution {
                ok: false,
                result: None,
                error: Some(error),
                trace,
            },
        }
    }

    async fn run_service(
        &self,
        tool: &str,
        service: &Service<'_>,
        payload: &Value,
        trace_id: &str,
        timeout: Duration,
        trace: &mut Trace,
    ) -> Result<Value, ToolError> {
        let url = reqwest::Url::parse(service.url).map_err(|err| {
            ToolError::new(
                "ServiceError",
                format!("invalid service url `{}`: {err}", service.url),
                "bad_url",
            )
        })?;
        self.tls
            .check(&url)
            .map_err(|why| ToolError::new("ServiceError", why, "unreachable"))?;
        let handshake_url = url.join("/capabilities/handshake").map_err(|err| {
            ToolError::new(
                "ServiceError",
                format!("invalid service url `{}`: {err}", service.url),
                "bad_url",
            )
        })?;
        let deadline = Instant::now() + timeout;
        let handshake = json!({
            "protocol_version": PROTOCOL_VERSION,
            "tool_name": tool,
            "runner": "service",
            "required_guarantees": service.required_guarantees,
        });
        let answer = self
            .post(handshake_url.as_str(), &handshake, deadline, "handshake")
            .await?;
        let accepted = answer.get("ok").and_then(Value::as_bool).unwrap_or(false);
        trace.service_handshake = Some(if accepted { "ok" } else { "rejected" }.to_owned());
        trace.enforcement_level = answer.get("enforcement").and_then(Value::as_str).map(str::to_owned);
        if !accepted {
            let why = answer
                .get("error")
                .map_or_else(|| "no reason given".to_owned(), describe_error);
            return Err(ToolError::new(
                "ServiceHandshakeError",
                format!("service at `{}` refused the handshake for `{tool}`: {why}", service.url),
                "handshake_rejected",
            ));
        }
        if let Some(supported) = answer.get("supported_guarantees").and_then(Value::as_object) {
            let missing: Vec<&str> = service
                .required_guarantees
                .iter()
                .filter(|(name, wanted)| supported.get(name.as_str()) != Some(*wanted))
                .map(|(name, _)| name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(ToolError::new(
                    "ServiceHandshakeError",
                    format!(
                        "service at `{}` does not guarantee: {}",
                        service.url,
                        missing.join(", ")
                    ),
                    "guarantee_blocked",
                ));
            }
        }
        let request = json!({
            "protocol_version": PROTOCOL_VERSION,
            "tool_name": tool,
            "kind": service.kind.unwrap_or("python"),
            "entry": service.entry,
            "payload": payload,
            "timeout_ms": millis(timeout),
            "trace_id": trace_id,
        });
        let answer = self.post(service.url, &request, deadline, "call").await?;
        parse_response(&answer).map_err(|err| match err.reason_code.as_deref() {
            Some("bad_response") => ToolError {
                message: format!("service at `{}` answered {}", service.url, err.message),
                ..err
            },
            _ => err,
        })
    }

    async fn post(&self, url: &str, body: &Value, deadline: Instant, what: &str) -> Result<Value, ToolError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ToolError::new(
                "ToolTimeout",
                format!("service {what} at `{url}` timed out"),
                "timeout",
            ));
        }
        let http = self.http.as_ref().map_err(|why| {
            ToolError::new(
                "ServiceError",
                format!("cannot call service at `{url}` ({what}): {why}"),
                "unreachable",
            )
        })?;
        let response = http.post(url).json(body).timeout(left).send().await.map_err(|err| {
            if err.is_timeout() {
                ToolError::new(
                    "ToolTimeout",
                    format!("service {what} at `{url}` timed out after {} ms", millis(left)),
                    "timeout",
                )
            } else {
                ToolError::new(
                    "ServiceError",
                    format!("cannot reach service at `{url}` ({what}): {}", error_chain(&err)),
                    "unreachable",
                )
            }
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|err| {
            let code = if err.is_timeout() { "timeout" } else { "unreachable" };
            ToolError::new(
                "ServiceError",
                format!("cannot read the {what} answer of `{url}`: {}", error_chain(&err)),
                code,
            )
        })?;
        let value = serde_json::from_str::<Value>(&text);
        match value {
            Ok(value) if status.is_success() || value.get("ok").is_some() => Ok(value),
            _ => Err(ToolError::new(
                "ServiceError",
                format!(
                    "service at `{url}` answered {status} to the {what}: {}",
                    cut(&text, 300)
                ),
                "bad_status",
            )),
        }
    }
}

struct Local<'a> {
    entry: &'a str,
    python: Option<&'a Path>,
    python_path: &'a [PathBuf],
    cwd: Option<&'a Path>,
    sandbox: bool,
}

struct Service<'a> {
    url: &'a str,
    entry: Option<&'a str>,
    kind: Option<&'a str>,
    required_guarantees: &'a Map<String, Value>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn cut(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", text.get(start..).unwrap_or_default())
}

fn describe_error(error: &Value) -> String {
    match (
        error.get("type").and_then(Value::as_str),
        error.get("message").and_then(Value::as_str),
    ) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => message.to_owned(),
        _ => error.to_string(),
    }
}

/// Reads a protocol response `{"ok": true, "result": ...}` or
/// `{"ok": false, "error": {...}}`.
pub fn parse_response(answer: &Value) -> Result<Value, ToolError> {
    match answer.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        Some(false) => {
            let error = answer.get("error").cloned().unwrap_or(Value::Null);
            Err(
                serde_json::from_value::<ToolError>(error.clone()).unwrap_or_else(|_| ToolError {
                    kind: "ToolError".to_owned(),
                    message: describe_error(&error),
                    reason_code: None,
                }),
            )
        }
        None => Err(ToolError::new(
            "ProtocolError",
            format!("a response without a boolean `ok`: {}", cut(&answer.to_string(), 300)),
            "bad_response",
        )),
    }
}

async fn run_local(
    tool: &str,
    local: &Local<'_>,
    payload: &Value,
    trace_id: &str,
    timeout: Duration,
    trace: &mut Trace,
) -> Result<Value, ToolError> {
    let python = local.python.unwrap_or(Path::new("python3"));
    trace.python_env = Some(python.display().to_string());
    trace.deps_source = Some("system".to_owned());
    let mut paths: Vec<PathBuf> = local.python_path.to_vec();
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    let python_path = std::env::join_paths(&paths)
        .map_err(|err| ToolError::new("ToolError", format!("invalid python path: {err}"), "bad_python_path"))?;
    trace.python_path = Some(python_path.to_string_lossy().into_owned());

    let mut command = Command::new(python);
    command
        .arg("-c")
        .arg(SHIM)
        .env("PYTHONPATH", &python_path)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = local.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|err| {
        ToolError::new(
            "ToolError",
            format!("cannot start `{}` for tool `{tool}`: {err}", python.display()),
            "spawn_failed",
        )
    })?;
    let request = json!({
        "protocol_version": PROTOCOL_VERSION,
        "tool": tool,
        "entry": local.entry,
        "payload": payload,
        "sandbox": local.sandbox,
        "trace_id": trace_id,
    });
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ToolError::new(
            "ToolError",
            "the tool's pipes are missing",
            "spawn_failed",
        ));
    };
    let io = async {
        // A tool that never reads its input must not block us: write in
        // parallel with reading the outputs.
        let write = async {
            let _ = stdin.write_all(request.to_string().as_bytes()).await;
            drop(stdin);
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (_, _, _) = tokio::join!(write, stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let status = child.wait().await;
        (status, out, err)
    };
    let (status, out, err) = match tokio::time::timeout(timeout, io).await {
        Ok(done) => done,
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(ToolError::new(
                "ToolTimeout",
                format!(
                    "tool `{tool}` did not finish within {} ms and was killed",
                    millis(timeout)
                ),
                "timeout",
            ));
        }
    };
    let status = status.map_err(|err| {
        ToolError::new(
            "ToolError",
            format!("cannot wait for tool `{tool}`: {err}"),
            "spawn_failed",
        )
    })?;
    trace.exit_code = status.code();
    let stdout_text = String::from_utf8_lossy(&out);
    let stderr_text = String::from_utf8_lossy(&err);
    if !stderr_text.trim().is_empty() {
        tracing::debug!(tool, stderr = %cut(&stderr_text, STDERR_TAIL), "tool stderr");
    }
    let parsed = serde_json::from_str::<Value>(stdout_text.trim());
    if status.success() {
        return match parsed {
            Ok(answer) => parse_response(&answer),
            Err(parse_err) => Err(ToolError::new(
                "ProtocolError",
                format!(
                    "tool `{tool}` exited 0 without a json response ({parse_err}); stdout: {}",
                    cut(&stdout_text, 300)
                ),
                "bad_response",
            )),
        };
    }
    // Non-zero exit: a response written before dying still counts.
    if let Ok(answer) = &parsed
        && answer.get("ok").is_some()
    {
        return parse_response(answer);
    }
    let how = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "a signal".to_owned(),
    };
    Err(ToolError::new(
        "ToolCrashed",
        format!(
            "tool `{tool}` crashed ({how}); stderr: {}",
            cut(&stderr_text, STDERR_TAIL)
        ),
        "crashed",
    ))
}

/// A `tools.yaml` file: bindings by name plus defaults.
///
/// ```yaml
/// defaults:
///   timeout_seconds: 10
/// tools:
///   greeter:
///     runner: local
///     entry: tools.sample_tool:greet
///     python_path: [./tools]
///     timeout_seconds: 2
///   weather:
///     runner: service
///     url: http://127.0.0.1:9000/tools
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolsFile {
    #[serde(default)]
    pub defaults: ToolDefaults,
    #[serde(default)]
    pub tools: IndexMap<String, ToolEntry>,
}

/// Defaults of a `tools.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolDefaults {
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

/// One entry of a `tools.yaml`'s `tools:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolEntry {
    #[serde(flatten)]
    pub runner: RunnerSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
}

impl ToolsFile {
    /// Parses a `tools.yaml`; relative paths are resolved against `base`.
    pub fn from_yaml(text: &str, origin: &str, base: &Path) -> crate::Result<Self> {
        let mut file: ToolsFile = serde_yaml::from_str(text).map_err(|e| crate::Error::ToolsFile {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        for entry in file.tools.values_mut() {
            if let RunnerSpec::Local { python_path, cwd, .. } = &mut entry.runner {
                for dir in python_path.iter_mut() {
                    if dir.is_relative() {
                        *dir = base.join(&*dir);
                    }
                }
                if let Some(dir) = cwd.as_mut().filter(|d| d.is_relative()) {
                    *dir = base.join(&*dir);
                }
            }
        }
        Ok(file)
    }

    /// Reads and parses the `tools.yaml` at `path`.
    pub fn from_file(path: &Path) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| crate::Error::File {
            action: "read tools file",
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, &path.display().to_string(), base)
    }

    /// The binding of `name`, with the file's default timeout applied.
    pub fn binding(&self, name: &str) -> Option<ToolBinding> {
        let entry = self.tools.get(name)?;
        Some(ToolBinding {
            name: name.to_owned(),
            runner: entry.runner.clone(),
            timeout_seconds: entry.timeout_seconds.or(self.defaults.timeout_seconds),
        })
    }
}
