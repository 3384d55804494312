//! Payload safety on the result endpoint: the tool's response filtered by
//! its contract, and session labels from what the result revealed.
//!
//! - **Tool response**: the posted body's `result` member when it has one,
//!   else the whole body. It is filtered with `Policy::filter_response` for
//!   the tool of the logged decision (`log_id`): the answer carries
//!   `safe_response` (only the contract's `allowed_response_fields`) and
//!   `stripped_fields`. Without a contract the response comes back unchanged.
//! - **Labels**: the whole posted body is scanned (before any filtering or
//!   redaction: the agent's runtime saw it) and `tame_engine::labels` of the
//!   findings (`secret`, `secret.<kind>`, `pii`, `personal.pii.<kind>`, ...)
//!   are added to the session, so `"secret" in session.labels` holds for the
//!   session's later calls.

use serde_json::Value;
use tame_engine::{ResponseFilter, Scanner, labels};

use crate::AppState;
use crate::error::AppError;

/// Labels for what a reported result reveals.
pub(crate) fn result_labels(body: &Value) -> Vec<String> {
    labels(&Scanner::global().scan(body))
}

/// Adds labels to the session's facts.
pub(crate) fn add_labels(state: &AppState, session_id: &str, labels: &[String]) -> Result<(), AppError> {
    if labels.is_empty() {
        return Ok(());
    }
    let facts = state.store().session_facts(session_id)?;
    let mut guard = facts.lock();
    for l in labels {
        guard.add_label(l);
    }
    Ok(())
}

/// The tool's response filtered by the tool's contract.
pub(crate) async fn filter_result(state: &AppState, log_id: &str, body: &Value) -> Result<ResponseFilter, AppError> {
    let response = body.get("result").unwrap_or(body);
    let policy = state.policy();
    if policy.policy.contracts().is_empty() {
        return Ok(policy.policy.filter_response("", response));
    }
    let store = state.store().clone();
    let id = log_id.to_owned();
    let entry = tokio::task::spawn_blocking(move || store.log_entry(&id))
        .await
        .map_err(AppError::internal)??;
    let tool = entry.map(|e| e.tool_name).unwrap_or_default();
    Ok(policy.policy.filter_response(&tool, response))
}
