//! Every route but enforce: results, sessions, policy, approvals, audit,
//! health, metrics and the OpenAPI document.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tame_engine::{Diagnostic, Policy, PolicyError, Request, Severity};
use tame_store::{ApprovalState, SessionQuery};

use crate::auth::{AgentKey, InputKey, Role};
use crate::error::{AppError, JsonBody, typed};
use crate::state::ReloadOutcome;
use crate::{AppState, openapi_document};

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(q: Params) -> Result<HashMap<String, String>, AppError> {
    q.map(|Query(m)| m)
        .map_err(|e| AppError::bad_request(format!("invalid query string: {e}")))
}

fn num_param(p: &HashMap<String, String>, name: &str, default: u64, max: u64) -> Result<u64, AppError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(
                AppError::unprocessable(format!("{name}: expected a whole number from 1 to {max}, found `{v}`"))
                    .with("field", Value::String(name.into())),
            ),
        },
    }
}

/// Runs a blocking store read off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, tame_store::StoreError> + Send + 'static,
) -> Result<T, AppError> {
    Ok(crate::service::blocking(f).await?)
}

pub async fn not_found() -> AppError {
    AppError::not_found("no such route")
}

// ------------------------------------------------------------ results

pub async fn record_result(
    State(state): State<AppState>,
    AgentKey(role): AgentKey,
    Path(session_id): Path<String>,
    q: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let p = params(q)?;
    let log_id = p
        .get("log_id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::unprocessable("log_id: missing query parameter").with("field", json!("log_id")))?;
    // Who saw the result is the key's to say (a proxy key: the MCP
    // proxy), never the body's.
    let source = role.result_source();
    let recorded = crate::service::record_result(&state, &session_id, log_id, body, source).await?;
    Ok(axum::Json(json!({
        "status": "updated",
        "log_id": recorded.log_id,
        "safe_response": recorded.filtered.safe_response,
        "stripped_fields": recorded.filtered.stripped_fields,
        "labels": recorded.labels,
    }))
    .into_response())
}

// ------------------------------------------------------------ sessions

/// `POST /api/v1/sessions/{session_id}/inputs` `{"text": ...}`: a user's
/// input, with an input (or admin) key. 201 once committed.
pub async fn record_input(
    State(state): State<AppState>,
    _key: InputKey,
    Path(session_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let recorded = crate::service::record_input(&state, &session_id, &body).await?;
    Ok((StatusCode::CREATED, axum::Json(recorded)).into_response())
}

pub async fn list_sessions(State(state): State<AppState>, headers: HeaderMap, q: Params) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let p = params(q)?;
    let query = SessionQuery {
        page: num_param(&p, "page", 1, u64::from(u32::MAX))?,
        page_size: num_param(&p, "page_size", 50, 1000)?,
        // Stored ids have their secrets replaced: so have the filters.
        agent_id: p.get("agent_id").map(|a| state.redactor().id(a).into_owned()),
        user_id: p.get("user_id").map(|u| state.redactor().id(u).into_owned()),
    };
    let (page, page_size) = (query.page, query.page_size);
    let store = state.store().clone();
    let result = blocking(move || store.sessions(&query)).await?;
    Ok(axum::Json(json!({
        "sessions": result.sessions,
        "total_count": result.total_count,
        "page": page,
        "page_size": page_size,
    }))
    .into_response())
}

pub async fn session_log(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let store = state.store().clone();
    let sid = state.redactor().id(&id).into_owned();
    match blocking(move || store.session_log(&sid)).await? {
        Some(entries) => Ok(axum::Json(entries).into_response()),
        None => Err(AppError::not_found(format!("session `{id}` not found"))),
    }
}

pub async fn session_summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let store = state.store().clone();
    let sid = state.redactor().id(&id).into_owned();
    match blocking(move || store.session_summary(&sid)).await? {
        Some(summary) => Ok(axum::Json(summary).into_response()),
        None => Err(AppError::not_found(format!("session `{id}` not found"))),
    }
}

// ------------------------------------------------------------ policy

/// A policy error with one unlocated diagnostic (I/O and the like).
pub(crate) fn plain_policy_error(message: &str) -> PolicyError {
    PolicyError {
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            message: message.to_string(),
            file: String::new(),
            line: 0,
            column: 0,
            rule: None,
            help: None,
            rendered: format!("error: {message}"),
        }],
    }
}

fn error_strings(e: &PolicyError) -> Vec<String> {
    e.errors()
        .map(|d| {
            if d.line > 0 {
                format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message)
            } else {
                d.message.clone()
            }
        })
        .collect()
}

fn policy_rejected(e: &PolicyError) -> AppError {
    let errors = error_strings(e);
    let first = errors.first().cloned().unwrap_or_default();
    AppError::unprocessable(format!(
        "the policy does not compile; the running policy stays: {first}"
    ))
    .with("errors", json!(errors))
    .with("diagnostics", json!(e.diagnostics))
}

pub async fn policy_current(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Agent)?;
    let loaded = state.policy();
    let info = loaded.policy.info();
    let rules: Vec<Value> = info
        .rules
        .iter()
        .map(|r| json!({"name": r.name, "action": r.action, "tools": r.tools, "description": r.description, "condition": r.condition}))
        .collect();
    Ok(axum::Json(json!({
        "version": info.version,
        "description": info.description,
        "hash": info.hash,
        "rules_count": info.rules.len(),
        "rules": rules,
        "last_updated": tame_store::format_timestamp(loaded.loaded_at),
        "active": true,
        "default": info.default,
        "legacy": info.legacy,
        "origin": loaded.origin,
        "warnings": loaded.policy.lints(),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct ValidateBody {
    policy_content: String,
    #[allow(dead_code)]
    description: Option<String>,
}

pub async fn policy_validate(_key: AgentKey, JsonBody(body): JsonBody) -> Result<Response, AppError> {
    let body: ValidateBody = typed(body)?;
    let compiled = tokio::task::spawn_blocking(move || Policy::from_yaml(&body.policy_content, "policy_content"))
        .await
        .map_err(AppError::internal)?;
    let out = match compiled {
        Ok(p) => json!({
            "is_valid": true,
            "errors": [],
            "warnings": p.lints(),
            "rules_count": p.info().rules.len(),
            "version": p.info().version,
            "hash": p.info().hash,
        }),
        Err(e) => json!({
            "is_valid": false,
            "errors": error_strings(&e),
            "diagnostics": e.diagnostics,
            "rules_count": 0,
            "version": Value::Null,
        }),
    };
    Ok(axum::Json(out).into_response())
}

#[derive(Deserialize, Default)]
struct ReloadBody {
    policy_content: Option<String>,
}

pub async fn policy_reload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let limits = state.limits();
    if body.len() > limits.body_bytes {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is too large",
        ));
    }
    let body: ReloadBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadBody::default()
    } else {
        typed(crate::error::parse_json(&body, limits.json_depth)?)?
    };
    let outcome = match body.policy_content {
        Some(source) => state.reload_from_source(source, "api:policy_content".into()).await,
        None => state.reload_from_file().await,
    };
    match outcome {
        Ok(ReloadOutcome::Loaded(p)) => Ok(axum::Json(reload_json("reloaded", &p)).into_response()),
        Ok(ReloadOutcome::Unchanged(p)) => Ok(axum::Json(reload_json("unchanged", &p)).into_response()),
        Err(e) => Err(policy_rejected(&e)),
    }
}

fn reload_json(status: &str, p: &crate::LoadedPolicy) -> Value {
    let info = p.policy.info();
    json!({"status": status, "version": info.version, "hash": info.hash, "rules_count": info.rules.len(), "origin": p.origin})
}

async fn dry_run(state: &AppState, call: Value) -> Result<Response, AppError> {
    let req = Request::from_call_json(&call)
        .map_err(|e| AppError::unprocessable(e.to_string()).with("field", Value::String(e.path.clone())))?;
    let loaded = state.policy();
    let (decision, explanation) = match req.session_id.as_deref() {
        Some(sid) => {
            let key = state.redactor().id(sid).into_owned();
            let facts = crate::service::session_state(state, &key, false).await?;
            let guard = facts.lock();
            let view = guard.view(req.now);
            (loaded.policy.evaluate(&req, &view), loaded.policy.explain(&req, &view))
        }
        None => {
            let facts = tame_engine::NoFacts;
            (
                loaded.policy.evaluate(&req, &facts),
                loaded.policy.explain(&req, &facts),
            )
        }
    };
    Ok(axum::Json(json!({
        "decision": {
            "action": decision.action,
            "rule_name": decision.rule_name.as_deref(),
            "reason": decision.reason.to_string(),
            "policy_version": decision.policy_version.to_string(),
        },
        "explanation": explanation,
        "logged": false,
    }))
    .into_response())
}

pub async fn policy_test_post(
    State(state): State<AppState>,
    _key: AgentKey,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let mut body = body;
    // The SDK's test_policy sends `session_context`: treat it as metadata.
    if let Some(obj) = body.as_object_mut()
        && !obj.contains_key("metadata")
        && let Some(ctx) = obj.remove("session_context")
    {
        obj.insert("metadata".into(), ctx);
    }
    dry_run(&state, body).await
}

pub async fn policy_test_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Agent)?;
    let p = params(q)?;
    let mut call = serde_json::Map::new();
    for (key, v) in &p {
        let value = match key.as_str() {
            "tool_args" | "metadata" | "session_context" => serde_json::from_str(v)
                .map_err(|e| AppError::bad_request(format!("{key}: not valid JSON: {e}")).with("field", json!(key)))?,
            _ => Value::String(v.clone()),
        };
        let key = if key == "session_context" {
            "metadata".to_string()
        } else {
            key.clone()
        };
        call.insert(key, value);
    }
    dry_run(&state, Value::Object(call)).await
}

pub async fn policy_versions(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let store = state.store().clone();
    let versions = blocking(move || store.policy_versions()).await?;
    let current = state.policy().policy.info().hash.clone();
    let list: Vec<Value> = versions
        .iter()
        .map(|v| json!({"id": v.id, "version": v.version, "hash": v.hash, "origin": v.origin, "loaded_at": v.loaded_at, "active": v.hash == current}))
        .collect();
    Ok(axum::Json(json!({"versions": list, "current_hash": current})).into_response())
}

// ------------------------------------------------------------ approvals

pub async fn list_approvals(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let p = params(q)?;
    let filter = match p.get("state").map(String::as_str) {
        None => Some(ApprovalState::Pending),
        Some("all") => None,
        Some(s) => Some(ApprovalState::parse(s).ok_or_else(|| {
            AppError::unprocessable(format!(
                "state: expected pending, approved, rejected, expired or all, found `{s}`"
            ))
            .with("field", json!("state"))
        })?),
    };
    let store = state.store().clone();
    let list = blocking(move || store.approvals(filter, Timestamp::now())).await?;
    Ok(axum::Json(json!({"approvals": list, "total_count": list.len()})).into_response())
}

pub async fn get_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Agent)?;
    Ok(axum::Json(crate::service::approval(&state, &id).await?).into_response())
}

#[derive(Deserialize, Default)]
struct VerdictBody {
    reason: Option<String>,
    by: Option<String>,
}

async fn decide(
    state: AppState,
    headers: HeaderMap,
    id: String,
    body: axum::body::Bytes,
    approve: bool,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let limits = state.limits();
    let body: VerdictBody = if body.iter().all(u8::is_ascii_whitespace) {
        VerdictBody::default()
    } else {
        typed(crate::error::parse_json(&body, limits.json_depth)?)?
    };
    let by = body.by.unwrap_or_else(|| "admin".into());
    let approval = crate::service::decide_approval(&state, id, approve, by, body.reason).await?;
    Ok(axum::Json(approval).into_response())
}

pub async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    decide(state, headers, id, body, true).await
}

pub async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    decide(state, headers, id, body, false).await
}

pub async fn wait_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Agent)?;
    let p = params(q)?;
    let cap = state.limits().max_wait.as_secs().max(1);
    let timeout = Duration::from_secs(num_param(&p, "timeout", cap, cap)?);
    let waited = crate::service::wait_approval(&state, &id, timeout).await?;
    let approval_state = waited.approval.state;
    Ok(
        axum::Json(json!({"approval": waited.approval, "timed_out": waited.timed_out, "state": approval_state}))
            .into_response(),
    )
}

// ------------------------------------------------------------ audit

pub async fn audit_verify(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let store = state.store().clone();
    let report = blocking(move || store.verify()).await?;
    Ok(axum::Json(report).into_response())
}

pub async fn audit_export(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    state.auth().check(&headers, Role::Admin)?;
    let store = state.store().clone();
    let bytes = blocking(move || {
        let mut out = Vec::new();
        store.export(&mut out)?;
        Ok(out)
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], bytes).into_response())
}

// ------------------------------------------------------------ operations

pub async fn health(State(state): State<AppState>) -> Response {
    let loaded = state.policy();
    axum::Json(json!({"status": "healthy", "version": env!("CARGO_PKG_VERSION"), "policy_version": loaded.policy.info().version}))
        .into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

pub async fn openapi() -> Response {
    axum::Json(openapi_document()).into_response()
}
