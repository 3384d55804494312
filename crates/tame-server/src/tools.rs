//! `POST /api/v1/tools/run`: the tool protocol v1 runner of
//! `tame-integrations`, guarded by this server's own enforce path (the same
//! decision, audit record and approvals as `POST /api/v1/enforce`, the result
//! recorded as by `POST /api/v1/enforce/{session_id}/result`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tame_integrations::run::{RunToolRequest, run_tool_handler};
use tame_integrations::{ApprovalOutcome, CallOutcome, Guard, ToolCall, ToolRunner, ToolsFile, ToolsService, Verdict};

use crate::AppState;
use crate::auth::{AgentKey, Role};
use crate::error::{AppError, JsonBody};

/// The registered tools and the runner (built once, at start).
#[derive(Debug)]
pub(crate) struct ToolsSetup {
    tools: ToolsFile,
    runner: ToolRunner,
}

impl ToolsSetup {
    pub(crate) fn new(tools: ToolsFile) -> Self {
        ToolsSetup {
            tools,
            runner: ToolRunner::default(),
        }
    }
}

/// The handler: the agent key first, then the runner (404 for a tool the
/// tools file does not register, or when the server has no tools file).
pub async fn run_tool(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<RunToolRequest>, JsonRejection>,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Agent)?;
    let Some(setup) = state.tools().cloned() else {
        return Err(AppError::not_found(
            "no tools file is configured: set `tools_file` (or TAME_TOOLS_FILE, --tools-file)",
        ));
    };
    let approval_timeout = state.limits().max_wait;
    let service = ToolsService {
        guard: ServerGuard { state, headers },
        tools: setup.tools.clone(),
        runner: setup.runner.clone(),
        approval_timeout,
    };
    Ok(run_tool_handler(State(Arc::new(service)), body).await)
}

/// Decides through the server's enforce path, with the caller's headers for
/// the handlers it reuses.
#[derive(Debug)]
struct ServerGuard {
    state: AppState,
    headers: HeaderMap,
}

/// Reads a reused handler's answer: its JSON body on success, else an
/// error with the status and detail.
async fn answer(response: Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the answer of {what}: {e}"))?;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = body.get("detail").and_then(Value::as_str).unwrap_or("no detail");
        anyhow::bail!("{what} answered {status}: {detail}");
    }
    Ok(body)
}

impl ServerGuard {
    async fn decide(&self, call: &ToolCall, approval_id: Option<&str>) -> anyhow::Result<Verdict> {
        let mut body = serde_json::to_value(call)?;
        if let (Some(id), Value::Object(fields)) = (approval_id, &mut body) {
            fields.insert("approval_id".to_owned(), Value::String(id.to_owned()));
        }
        let enforced = crate::enforce::decide(&self.state, body)
            .await
            .map_err(|e| anyhow::anyhow!("enforce of `{}` failed ({}): {}", call.tool_name, e.status, e.detail))?;
        Ok(Verdict {
            decision: enforced.decision,
            rule_name: enforced.rule_name.as_deref().map(str::to_owned),
            reason: enforced.reason.to_string(),
            policy_version: enforced.policy_version.to_string(),
            log_id: Some(enforced.log_id),
            approval_id: enforced.approval_id,
            session_id: enforced.session_id,
        })
    }
}

impl Guard for ServerGuard {
    async fn enforce(&self, call: &ToolCall) -> anyhow::Result<Verdict> {
        self.decide(call, None).await
    }

    async fn release(&self, call: &ToolCall, approval_id: &str) -> anyhow::Result<Verdict> {
        self.decide(call, Some(approval_id)).await
    }

    async fn record(&self, verdict: &Verdict, _call: &ToolCall, outcome: &CallOutcome) -> anyhow::Result<()> {
        let Some(log_id) = verdict.log_id.clone() else {
            anyhow::bail!("cannot record a result: the decision has no log id");
        };
        let query = HashMap::from([("log_id".to_owned(), log_id)]);
        let response = crate::api::record_result(
            State(self.state.clone()),
            AgentKey::check(&self.state, &self.headers).map_err(|e| anyhow::anyhow!("{}: {}", e.status, e.detail))?,
            Path(verdict.session_id.clone()),
            Ok(Query(query)),
            JsonBody(serde_json::to_value(outcome)?),
        )
        .await
        .into_response();
        answer(response, "the result record").await.map(drop)
    }

    async fn wait_approval(&self, approval_id: &str, timeout: Duration) -> anyhow::Result<ApprovalOutcome> {
        let seconds = timeout
            .as_secs()
            .clamp(1, self.state.limits().max_wait.as_secs().max(1));
        let query = HashMap::from([("timeout".to_owned(), seconds.to_string())]);
        let response = crate::api::wait_approval(
            State(self.state.clone()),
            self.headers.clone(),
            Path(approval_id.to_owned()),
            Ok(Query(query)),
        )
        .await
        .into_response();
        let body = answer(response, "the approval wait").await?;
        let approval = body.get("approval").unwrap_or(&Value::Null);
        match body.get("state").and_then(Value::as_str).unwrap_or_default() {
            "approved" => Ok(ApprovalOutcome::Approved),
            "rejected" => Ok(ApprovalOutcome::Rejected(
                approval
                    .get("decision_reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )),
            "expired" => Ok(ApprovalOutcome::Rejected(Some(format!(
                "approval {approval_id} expired"
            )))),
            _ => Ok(ApprovalOutcome::Pending),
        }
    }

    fn denies_unconditionally(&self, tool: &str) -> bool {
        tame_integrations::hide::denies_unconditionally(&self.state.policy().policy, tool)
    }
}
