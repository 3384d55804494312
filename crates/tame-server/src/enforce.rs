//! `POST /api/v1/enforce`: evaluate a call against the running policy with
//! the session's facts, store the decision, answer once it is committed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use tame_engine::{Action, Decision, Request};
use tame_store::canonical::call_hash;
use tame_store::{ApprovalState, NewApproval, NewDecision, Release, format_timestamp};

use crate::AppState;
use crate::auth::AgentKey;
use crate::error::{AppError, JsonBody};
use crate::metrics::DecisionLabels;

/// The answer, in the original server's shape plus `approval_id`. It
/// carries what the client sent (its session id, the reason as the rule
/// expanded it); what is stored has secrets replaced (see
/// [`crate::redact`]).
#[derive(Debug, Serialize)]
pub(crate) struct Enforced {
    pub session_id: String,
    pub decision: Action,
    /// The policy's own strings (shared, not copied per decision).
    pub rule_name: Option<Arc<str>>,
    pub reason: Arc<str>,
    pub policy_version: Arc<str>,
    pub log_id: String,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// With `payload: {secrets|pii: redact}` in the policy: the arguments to
    /// run the tool with (detected values replaced by `[REDACTED:kind]`);
    /// absent when nothing was redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sanitized_args: Option<Value>,
}

fn approval_id_of(body: &Value) -> Result<Option<String>, AppError> {
    let top = body.get("approval_id");
    let meta = body.get("metadata").and_then(|m| m.get("approval_id"));
    match top.or(meta) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(AppError::unprocessable("approval_id: expected a non-empty string")
            .with("field", Value::String("approval_id".into()))),
    }
}

pub async fn enforce(
    State(state): State<AppState>,
    _key: AgentKey,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let enforced = decide(&state, body).await?;
    // Written into a buffer sized for the usual answer (axum's `Json`
    // starts at 128 bytes and grows).
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, &enforced).map_err(AppError::internal)?;
    let json = axum::http::HeaderValue::from_static("application/json");
    Ok(([(axum::http::header::CONTENT_TYPE, json)], out).into_response())
}

/// Decides the call in `body` (an enforce request), stores the decision and
/// returns the answer once committed. The caller has checked the key; the
/// enforce handler and the tool runner (`POST /api/v1/tools/run`) share it.
pub(crate) async fn decide(state: &AppState, body: Value) -> Result<Enforced, AppError> {
    let started = Instant::now();
    let mut req = Request::from_call_json(&body)
        .map_err(|e| AppError::unprocessable(e.to_string()).with("field", Value::String(e.path.clone())))?;
    let approval_id = approval_id_of(&body)?;
    let fresh_session = req.session_id.is_none();
    let session_id = match &req.session_id {
        Some(s) => s.to_string(),
        None => {
            let fresh = id_text(uuid::Uuid::new_v4());
            req.session_id = Some(Arc::from(fresh.as_str()));
            fresh
        }
    };
    // The session as stored: a secret in the id replaced by a stable
    // marker, so the facts, the log and the summaries all know it by the
    // same id (an id just generated holds none).
    let redactor = state.redactor();
    let stored_session = if fresh_session {
        session_id.clone()
    } else {
        redactor.id(&session_id).into_owned()
    };
    let now = req.now;
    let mut body = body;
    let mut take = |key: &str| match body.as_object_mut().and_then(|o| o.remove(key)) {
        Some(Value::Null) | None => Value::Object(serde_json::Map::new()),
        Some(v) => v,
    };
    let mut tool_args = take("tool_args");
    let mut metadata = take("metadata");
    let policy = state.policy();
    // The call's hash binds an approval to it: needed only to release one
    // or to create one (computed below, before the arguments are redacted).
    let mut hash = approval_id
        .is_some()
        .then(|| call_hash(&req.tool, &tool_args, &session_id));

    // The approval a release refers to, read before taking the session lock.
    let approval = match &approval_id {
        Some(id) => {
            let store = state.store().clone();
            let id = id.clone();
            let found = tokio::task::spawn_blocking(move || store.approval(&id, now))
                .await
                .map_err(AppError::internal)??;
            let found = found.ok_or_else(|| {
                AppError::not_found(format!(
                    "approval `{}` not found",
                    approval_id.as_deref().unwrap_or_default()
                ))
            })?;
            if hash.as_deref() != Some(found.call_hash.as_str()) {
                return Err(AppError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    format!(
                        "approval `{}` was granted for a different call (tool, arguments and session must match)",
                        found.approval_id
                    ),
                ));
            }
            if found.state == ApprovalState::Pending {
                return Err(AppError::new(
                    axum::http::StatusCode::CONFLICT,
                    format!("approval `{}` is still pending", found.approval_id),
                )
                .with("approval_id", Value::String(found.approval_id.clone()))
                .with("expires_at", Value::String(found.expires_at.clone())));
            }
            Some(found)
        }
        None => None,
    };

    let facts = if fresh_session {
        state.store().fresh_session_facts(&stored_session)
    } else {
        state.store().session_facts(&stored_session)?
    };
    let (decision, new_approval, release) = {
        let mut guard = facts.lock();
        let evaluated = policy.policy.evaluate(&req, &guard.view(now));
        let (decision, new_approval, release) = match &approval {
            None => {
                let new_approval = (evaluated.action == Action::Approve).then(|| NewApproval {
                    id: id_text(uuid::Uuid::now_v7()),
                    call_hash: hash
                        .get_or_insert_with(|| call_hash(&req.tool, &tool_args, &session_id))
                        .clone(),
                    expires_at: now
                        .checked_add(state.limits().approval_timeout)
                        .unwrap_or(Timestamp::MAX),
                });
                (evaluated, new_approval, None)
            }
            Some(a) => released(evaluated, a),
        };
        guard.note_decision(&req.tool, now, decision.action);
        (decision, new_approval, release)
    };

    // Time-ordered ids keep the audit log's id index append-only.
    let log_id = id_text(uuid::Uuid::now_v7());
    let sanitized_args = policy.policy.sanitize_args(&req);
    if let Some(clean) = &sanitized_args {
        // What the policy says to redact is not logged either.
        tool_args = clean.clone();
    }
    // Secrets never reach the audit log (the call hash above is of the
    // original arguments, so a release still matches).
    let args_changed = redact_secrets(&mut tool_args) || sanitized_args.is_some();
    let metadata_changed = redact_secrets(&mut metadata);
    // The reason may quote the arguments (`{args.path}`): what was redacted
    // there is redacted in it too, then whatever else it holds.
    let mut redacted = Vec::new();
    if args_changed {
        crate::redact::redacted_values(&tame_engine::value_to_json(&req.args), &tool_args, &mut redacted);
    }
    if metadata_changed {
        crate::redact::redacted_values(&tame_engine::value_to_json(&req.metadata), &metadata, &mut redacted);
    }
    let reason = redactor.reason(&decision.reason, &mut redacted);
    let timestamp = format_timestamp(now);
    let approval_out = new_approval.as_ref().map(|a| a.id.clone());
    let record = NewDecision {
        log_id: log_id.clone(),
        session_id: stored_session,
        timestamp: now,
        tool_name: redactor.id(&req.tool).into_owned(),
        tool_args,
        agent_id: req.agent_id.as_deref().map(|a| redactor.id(a).into_owned()),
        user_id: req.user_id.as_deref().map(|u| redactor.id(u).into_owned()),
        metadata,
        decision: decision.action,
        rule_name: decision.rule_name.as_deref().map(str::to_string),
        reason,
        policy_version: decision.policy_version.to_string(),
        new_approval,
        release_of: release.map(|approval_id| Release {
            approval_id,
            call_hash: hash.unwrap_or_default(),
        }),
    };
    state.store().record_decision(record).await?;
    if let Some(used) = &approval {
        state.notify_approval(&used.approval_id);
    }

    let metrics = state.metrics();
    metrics
        .decisions
        .get_or_create(&DecisionLabels {
            action: decision.action.as_str(),
            rule: decision.rule_name.clone(),
        })
        .inc();
    metrics.enforce_seconds.observe(started.elapsed().as_secs_f64());

    Ok(Enforced {
        session_id,
        decision: decision.action,
        rule_name: decision.rule_name,
        reason: decision.reason,
        policy_version: decision.policy_version,
        log_id,
        timestamp,
        approval_id: approval_out,
        sanitized_args,
    })
}

/// An id as text (`8-4-4-4-12` lower-case hex), written straight into a
/// string of its length (`to_string` goes through the formatter).
fn id_text(id: uuid::Uuid) -> String {
    id.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// Replaces credentials (keys, tokens, passwords) in `value` with
/// `[REDACTED:kind]`; personal data is kept (policies may need it).
/// Returns whether anything was replaced.
pub(crate) fn redact_secrets(value: &mut Value) -> bool {
    let findings =
        tame_engine::Scanner::global().redact_where(value, |kind| kind.category() == tame_engine::Category::Secret);
    if !findings.is_empty() {
        tracing::debug!(count = findings.len(), "secrets redacted before storage");
    }
    !findings.is_empty()
}

/// The decision for a call that comes back with a decided approval: the
/// current policy's `deny` still denies; a rejected or expired approval
/// denies; otherwise the call is allowed and the approval used.
fn released(evaluated: Decision, approval: &tame_store::Approval) -> (Decision, Option<NewApproval>, Option<String>) {
    let id = &approval.approval_id;
    let deny = |reason: String| Decision {
        action: Action::Deny,
        rule_name: evaluated.rule_name.clone(),
        reason: reason.into(),
        policy_version: evaluated.policy_version.clone(),
    };
    match approval.state {
        ApprovalState::Rejected => {
            let why = approval
                .decision_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            (deny(format!("approval {id} was rejected{why}")), None, None)
        }
        ApprovalState::Expired | ApprovalState::Pending => (deny(format!("approval {id} expired")), None, None),
        ApprovalState::Approved if evaluated.action == Action::Deny => {
            let reason = format!(
                "{} (approval {id} does not override a deny of the current policy)",
                evaluated.reason
            );
            (deny(reason), None, None)
        }
        ApprovalState::Approved => {
            let by = approval.decided_by.as_deref().unwrap_or("an admin");
            let why = approval
                .decision_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let decision = Decision {
                action: Action::Allow,
                rule_name: evaluated.rule_name.clone(),
                reason: format!("approved by {by}{why} (approval {id})").into(),
                policy_version: evaluated.policy_version.clone(),
            };
            (decision, None, Some(id.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_uuid_displays_them() {
        for id in [
            uuid::Uuid::nil(),
            uuid::Uuid::max(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::new_v4(),
        ] {
            assert_eq!(id_text(id), id.to_string());
        }
    }
}
