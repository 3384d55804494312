//! `POST /api/v1/tools/run`: HTTP glue for the tool protocol v1 runner of
//! `tame-integrations`, guarded by this server's service layer (the same
//! decision, audit record and approvals as `POST /api/v1/enforce`, the result
//! recorded as by `POST /api/v1/enforce/{session_id}/result`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use tame_integrations::run::{RunToolRequest, run_tool_handler};
use tame_integrations::{ApprovalOutcome, CallOutcome, Guard, ToolCall, ToolRunner, ToolsFile, ToolsService, Verdict};

use tame_enforce::ResultSource;
use tame_store::ApprovalState;

use crate::AppState;
use crate::auth::Role;
use crate::error::AppError;
use crate::service;

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
        guard: ServerGuard { state },
        tools: setup.tools.clone(),
        runner: setup.runner.clone(),
        approval_timeout,
    };
    Ok(run_tool_handler(State(Arc::new(service)), body).await)
}

/// Decides through the server's service layer: the same decision, audit
/// record and approvals as `POST /api/v1/enforce`, the result recorded as
/// by the result endpoint, approvals waited on as by the wait endpoint.
#[derive(Debug)]
struct ServerGuard {
    state: AppState,
}

/// A service error as the runner sees it: the status the API would answer
/// and its detail.
fn refused(e: service::ServiceError, what: &str) -> tame_integrations::Error {
    let e = AppError::from(e);
    tame_integrations::Error::Server {
        status: e.status.as_u16(),
        what: what.to_owned(),
        detail: e.detail,
    }
}

impl ServerGuard {
    async fn decide(&self, call: &ToolCall, approval_id: Option<&str>) -> tame_integrations::Result<Verdict> {
        let mut body = serde_json::to_value(call)?;
        if let (Some(id), Value::Object(fields)) = (approval_id, &mut body) {
            fields.insert("approval_id".to_owned(), Value::String(id.to_owned()));
        }
        let enforced = service::enforce(&self.state, body)
            .await
            .map_err(|e| refused(e, &format!("the enforce of `{}`", call.tool_name)))?;
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
    async fn enforce(&self, call: &ToolCall) -> tame_integrations::Result<Verdict> {
        self.decide(call, None).await
    }

    async fn release(&self, call: &ToolCall, approval_id: &str) -> tame_integrations::Result<Verdict> {
        self.decide(call, Some(approval_id)).await
    }

    async fn record(
        &self,
        verdict: &Verdict,
        _call: &ToolCall,
        outcome: &CallOutcome,
    ) -> tame_integrations::Result<()> {
        let Some(log_id) = verdict.log_id.as_deref() else {
            return Err(tame_integrations::Error::NotFound(
                "cannot record a result: the decision has no log id".into(),
            ));
        };
        // The runner ran the tool: its result is the runner's.
        let body = serde_json::to_value(outcome)?;
        service::record_result(&self.state, &verdict.session_id, log_id, body, ResultSource::Runner)
            .await
            .map(drop)
            .map_err(|e| refused(e, "the result record"))
    }

    async fn wait_approval(&self, approval_id: &str, timeout: Duration) -> tame_integrations::Result<ApprovalOutcome> {
        let timeout = timeout.clamp(
            Duration::from_secs(1),
            self.state.limits().max_wait.max(Duration::from_secs(1)),
        );
        let waited = service::wait_approval(&self.state, approval_id, timeout)
            .await
            .map_err(|e| refused(e, "the approval wait"))?;
        Ok(match waited.approval.state {
            ApprovalState::Approved => ApprovalOutcome::Approved,
            ApprovalState::Rejected => ApprovalOutcome::Rejected(waited.approval.decision_reason),
            ApprovalState::Expired => ApprovalOutcome::Rejected(Some(format!("approval {approval_id} expired"))),
            ApprovalState::Pending => ApprovalOutcome::Pending,
        })
    }

    fn denies_unconditionally(&self, tool: &str) -> bool {
        tame_integrations::hide::denies_unconditionally(&self.state.policy().policy, tool)
    }
}
