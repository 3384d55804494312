//! Guarded tool runs: the policy decides first (deny: not run; approve: wait,
//! bounded), then the tool protocol runner executes and the outcome is
//! recorded with the protocol's trace fields. Entry points for `tame
//! run-tool` ([`run_tool`]) and for the server ([`tools_router`], `POST
//! /api/v1/tools/run`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tame_engine::Action;

use crate::guard::{AnyGuard, ApprovalOutcome, CallOutcome, CallStatus, Guard, ToolCall};
use crate::mcp::MAX_APPROVAL_WAIT;
use crate::protocol::{PROTOCOL_VERSION, RunnerSpec, ToolBinding, ToolError, ToolRunner, ToolsFile, Trace};

/// Who is calling, for the policy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CallContext {
    /// A fresh UUID when absent.
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    /// A JSON object; `{}` when absent.
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub trace_id: Option<String>,
}

/// The report of one guarded run.
#[derive(Clone, Debug, Serialize)]
pub struct ToolRunReport {
    pub tool: String,
    pub session_id: String,
    pub decision: Action,
    pub rule_name: Option<String>,
    pub reason: String,
    pub policy_version: String,
    pub log_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Whether the tool ran at all.
    pub executed: bool,
    /// Whether it ran and succeeded.
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ToolError>,
    pub trace: Trace,
}

/// Exit codes of `tame run-tool`, as the `tame` CLI's (deny is not an
/// error).
pub mod exit {
    /// The tool ran and succeeded.
    pub const OK: i32 = 0;
    /// The tool ran and failed (error, crash, timeout), or bad usage.
    pub const TOOL_FAILED: i32 = 1;
    /// The policy denied the call (or an approval was rejected).
    pub const DENIED: i32 = 2;
    /// The call waits for an approval.
    pub const PENDING_APPROVAL: i32 = 3;
}

impl ToolRunReport {
    /// The process exit code for this report (see [`exit`]).
    pub fn exit_code(&self) -> i32 {
        let kind = self.error.as_ref().map(|e| e.kind.as_str());
        if self.ok {
            exit::OK
        } else if self.executed || kind == Some("PolicyUnavailable") {
            exit::TOOL_FAILED
        } else if self.decision == Action::Approve && kind == Some("ApprovalPending") {
            exit::PENDING_APPROVAL
        } else {
            exit::DENIED
        }
    }
}

/// Decides, runs and records one call of `binding`.
pub async fn run_guarded<G: Guard>(
    guard: &G,
    runner: &ToolRunner,
    binding: &ToolBinding,
    payload: &Value,
    ctx: &CallContext,
    approval_timeout: Duration,
) -> ToolRunReport {
    let session_id = ctx
        .session_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let trace_id = ctx.trace_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let call = ToolCall {
        tool_name: binding.name.clone(),
        tool_args: payload.clone(),
        session_id: session_id.clone(),
        agent_id: ctx.agent_id.clone(),
        user_id: ctx.user_id.clone(),
        metadata: ctx.metadata.clone().unwrap_or_else(|| Value::Object(Map::new())),
    };
    let planned = planned_trace(runner, binding, &trace_id);
    let mut report = ToolRunReport {
        tool: binding.name.clone(),
        session_id,
        decision: Action::Deny,
        rule_name: None,
        reason: String::new(),
        policy_version: String::new(),
        log_id: None,
        approval_id: None,
        executed: false,
        ok: false,
        result: None,
        error: None,
        trace: planned,
    };
    let mut verdict = match guard.enforce(&call).await {
        Ok(verdict) => verdict,
        Err(err) => {
            report.reason = format!("no policy decision: {err:#}");
            report.error = Some(error("PolicyUnavailable", &report.reason, "policy_unavailable"));
            return report;
        }
    };
    report.decision = verdict.decision;
    report.rule_name.clone_from(&verdict.rule_name);
    report.reason.clone_from(&verdict.reason);
    report.policy_version.clone_from(&verdict.policy_version);
    report.log_id.clone_from(&verdict.log_id);
    report.approval_id.clone_from(&verdict.approval_id);
    report.session_id.clone_from(&verdict.session_id);
    match verdict.decision {
        Action::Allow => {}
        Action::Deny => {
            report.error = Some(error("PolicyDenied", &verdict.reason, "policy_denied"));
            return report;
        }
        Action::Approve => {
            let wait = match verdict.approval_id.as_deref() {
                Some(id) => guard.wait_approval(id, approval_timeout.min(MAX_APPROVAL_WAIT)).await,
                None => Ok(ApprovalOutcome::Pending),
            };
            match wait {
                Ok(ApprovalOutcome::Approved) => {
                    let approval_id = verdict.approval_id.clone().unwrap_or_default();
                    match guard.release(&call, &approval_id).await {
                        Ok(released) if released.decision == Action::Allow => verdict = released,
                        Ok(released) => {
                            report.error = Some(error("PolicyDenied", &released.reason, "policy_denied"));
                            report.decision = released.decision;
                            report.reason = released.reason;
                            report.log_id = released.log_id;
                            return report;
                        }
                        Err(err) => {
                            let text = format!("approval {approval_id} was granted but could not be used: {err:#}");
                            report.error = Some(error("ApprovalPending", &text, "approval_pending"));
                            return report;
                        }
                    }
                    report.decision = verdict.decision;
                    report.reason.clone_from(&verdict.reason);
                    report.log_id.clone_from(&verdict.log_id);
                }
                Ok(ApprovalOutcome::Rejected(why)) => {
                    let text = why.unwrap_or_else(|| "the approval was rejected".to_owned());
                    report.error = Some(error("ApprovalRejected", &text, "approval_rejected"));
                    return report;
                }
                Ok(ApprovalOutcome::Pending) => {
                    let text = match &verdict.approval_id {
                        Some(id) => format!("{}; pending approval id: {id}", verdict.reason),
                        None => verdict.reason.clone(),
                    };
                    report.error = Some(error("ApprovalPending", &text, "approval_pending"));
                    return report;
                }
                Err(err) => {
                    let text = format!("the approval could not be checked: {err:#}");
                    report.error = Some(error("ApprovalPending", &text, "approval_pending"));
                    return report;
                }
            }
        }
    }
    let execution = runner.execute(binding, payload, &trace_id).await;
    report.executed = true;
    report.ok = execution.ok;
    report.result.clone_from(&execution.result);
    report.error.clone_from(&execution.error);
    report.trace = execution.trace;
    let mut extra = Map::new();
    extra.insert("execution_time_ms".to_owned(), json!(report.trace.duration_ms));
    if let Ok(Value::Object(trace)) = serde_json::to_value(&report.trace) {
        extra.insert("trace".to_owned(), Value::Object(trace));
    }
    let outcome = CallOutcome {
        status: if execution.ok {
            CallStatus::Success
        } else {
            CallStatus::Error
        },
        duration_ms: report.trace.duration_ms,
        error_message: execution.error.as_ref().map(|e| format!("{}: {}", e.kind, e.message)),
        result: execution.result.unwrap_or(Value::Null),
        extra,
    };
    if let Err(err) = guard.record(&verdict, &call, &outcome).await {
        tracing::warn!("cannot record the result of `{}`: {err:#}", binding.name);
    }
    report
}

fn error(kind: &str, message: &str, code: &str) -> ToolError {
    ToolError {
        kind: kind.to_owned(),
        message: message.to_owned(),
        reason_code: Some(code.to_owned()),
    }
}

/// The trace of a run that may not happen (denied): what would have run.
fn planned_trace(runner: &ToolRunner, binding: &ToolBinding, trace_id: &str) -> Trace {
    let (name, service_url) = match &binding.runner {
        RunnerSpec::Local { .. } => ("local", None),
        RunnerSpec::Service { url, .. } => ("service", Some(url.clone())),
    };
    Trace {
        runner: name.to_owned(),
        resolved_source: "binding".to_owned(),
        timeout_ms: u64::try_from(runner.timeout_for(binding).as_millis()).unwrap_or(u64::MAX),
        duration_ms: 0,
        protocol_version: PROTOCOL_VERSION,
        trace_id: trace_id.to_owned(),
        service_url,
        ..Trace::default()
    }
}

/// Options of `tame run-tool`.
#[derive(Clone, Debug, Default)]
pub struct RunToolOptions {
    pub policy: Option<PathBuf>,
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    /// Embedded engine only: append the decision and result to this file.
    pub journal: Option<PathBuf>,
    /// Take the tool's binding from this `tools.yaml`.
    pub tools_file: Option<PathBuf>,
    pub tool: String,
    /// Or bind it here: a local `module:function` ...
    pub entry: Option<String>,
    /// ... or a service URL.
    pub service_url: Option<String>,
    pub python: Option<PathBuf>,
    pub python_path: Vec<PathBuf>,
    /// Overrides the binding's timeout.
    pub timeout_seconds: Option<f64>,
    /// The payload (a JSON object).
    pub payload: Value,
    pub context: CallContext,
    /// How long to wait for an approval (default 30 s, at most 55 s).
    pub approval_timeout: Option<Duration>,
}

impl RunToolOptions {
    /// The binding these options name.
    pub fn binding(&self) -> Result<ToolBinding> {
        let mut binding = match (&self.tools_file, &self.entry, &self.service_url) {
            (_, Some(_), Some(_)) => {
                return Err(Error::Config("give either --entry or --service-url, not both".into()));
            }
            (_, Some(entry), None) => ToolBinding {
                name: self.tool.clone(),
                runner: RunnerSpec::Local {
                    entry: entry.clone(),
                    python: self.python.clone(),
                    python_path: self.python_path.clone(),
                    cwd: None,
                    sandbox: false,
                },
                timeout_seconds: None,
            },
            (_, None, Some(url)) => ToolBinding {
                name: self.tool.clone(),
                runner: RunnerSpec::Service {
                    url: url.clone(),
                    entry: None,
                    kind: None,
                    required_guarantees: Map::new(),
                },
                timeout_seconds: None,
            },
            (Some(file), None, None) => ToolsFile::from_file(file)?.binding(&self.tool).ok_or_else(|| {
                Error::Config(format!(
                    "tool `{}` is not in tools file `{}`",
                    self.tool,
                    file.display()
                ))
            })?,
            (None, None, None) => {
                return Err(Error::Config(format!(
                    "tool `{}` has no binding: give --tools, --entry or --service-url",
                    self.tool
                )));
            }
        };
        if let Some(seconds) = self.timeout_seconds {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err(Error::Config(format!(
                    "--timeout-seconds must be a positive number, got {seconds}"
                )));
            }
            binding.timeout_seconds = Some(seconds);
        }
        Ok(binding)
    }
}

/// `tame run-tool` inside a runtime.
pub async fn run_tool_async(opts: RunToolOptions) -> Result<ToolRunReport> {
    if !opts.payload.is_object() {
        return Err(Error::Config("the payload must be a json object".into()));
    }
    let binding = opts.binding()?;
    let guard = AnyGuard::open(
        opts.policy.as_deref(),
        opts.api_url.as_deref(),
        opts.api_key.clone(),
        opts.journal.as_deref(),
    )?
    .with_result_source(tame_enforce::ResultSource::Runner);
    let runner = ToolRunner::default();
    let wait = opts.approval_timeout.unwrap_or(Duration::from_secs(30));
    Ok(run_guarded(&guard, &runner, &binding, &opts.payload, &opts.context, wait).await)
}

/// `tame run-tool`: decides, runs and records one call, on its own runtime.
/// Print the report as JSON and exit with [`ToolRunReport::exit_code`].
/// Inside an async context use [`run_tool_async`].
pub fn run_tool(opts: RunToolOptions) -> Result<ToolRunReport> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::Config(
            "run_tool was called inside an async runtime; use run_tool_async".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "cannot start the async runtime".into(),
            source,
        })?;
    runtime.block_on(run_tool_async(opts))
}

/// The state behind `POST /api/v1/tools/run`: a guard, the registered
/// tools (only these can run: the endpoint never takes an entry point from
/// the request) and the runner.
#[derive(Debug)]
pub struct ToolsService<G> {
    pub guard: G,
    pub tools: ToolsFile,
    pub runner: ToolRunner,
    pub approval_timeout: Duration,
}

/// The body of `POST /api/v1/tools/run`.
#[derive(Clone, Debug, Deserialize)]
pub struct RunToolRequest {
    pub tool_name: String,
    /// The payload; `tool_args` is accepted as an alias.
    #[serde(default, alias = "tool_args")]
    pub payload: Option<Value>,
    #[serde(flatten)]
    pub context: CallContext,
}

/// `POST /api/v1/tools/run` over `service`; answers with a
/// [`ToolRunReport`] (200 whatever the decision), 404 for an unknown tool,
/// 422 for a bad body, errors as `{"detail": ...}`.
pub fn tools_router<G: Guard + 'static>(service: Arc<ToolsService<G>>) -> Router {
    Router::new()
        .route("/api/v1/tools/run", post(run_tool_handler::<G>))
        .with_state(service)
}

/// The handler of `POST /api/v1/tools/run` (mountable on any router whose
/// state is `Arc<ToolsService<G>>`).
pub async fn run_tool_handler<G: Guard + 'static>(
    State(service): State<Arc<ToolsService<G>>>,
    body: Result<Json<RunToolRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return detail(StatusCode::UNPROCESSABLE_ENTITY, &rejection.body_text()),
    };
    let payload = request.payload.unwrap_or_else(|| Value::Object(Map::new()));
    if !payload.is_object() {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "`payload` must be a json object");
    }
    let Some(binding) = service.tools.binding(&request.tool_name) else {
        return detail(StatusCode::NOT_FOUND, &format!("unknown tool `{}`", request.tool_name));
    };
    let report = run_guarded(
        &service.guard,
        &service.runner,
        &binding,
        &payload,
        &request.context,
        service.approval_timeout,
    )
    .await;
    Json(report).into_response()
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({"detail": text}))).into_response()
}
