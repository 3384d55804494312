//! The server's service layer: typed functions over the enforcement path
//! (`tame_enforce`) and the store, called by the HTTP handlers, the
//! dashboard and the tool runner alike. Nothing here knows HTTP; the
//! handlers turn [`ServiceError`] into answers.
//!
//! - [`enforce`]: read the call, load the session's state and the approval
//!   it comes back with, decide and record the call in the state under the
//!   session's lock, append the record, answer once it is committed;
//! - [`record_result`]: a tool's result (with who reported it), the
//!   labels it reveals, its value and provenance in the session's state,
//!   the response filtered by the tool's contract;
//! - [`record_input`]: a user's input to a session, into its state;
//! - [`wait_approval`], [`decide_approval`]: an approval's verdict, and
//!   waiting for one.
//!
//! No blocking I/O on async workers: a session's state found in memory is
//! used at once; reading one from the database, and every other store
//! read, runs on the blocking pool. Writes are awaited as tickets that
//! resolve after the commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use tame_enforce::{Action, Call, Enforcer, Outcome, Refusal, RequestError, ResultSource};
use tame_engine::ResponseFilter;
use tame_store::{Approval, ApprovalDecision, ApprovalState, FactsHandle, StoreError, format_timestamp};

use crate::AppState;
use crate::metrics::DecisionLabels;

/// Why a service call did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// The call or result cannot be read (the error names the field).
    #[error("{0}")]
    Call(#[from] RequestError),
    /// The call came back with an approval that cannot release it.
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such approval.
    #[error("approval `{0}` not found")]
    ApprovalNotFound(String),
    /// A task of the blocking pool failed.
    #[error("{0}")]
    Internal(String),
}

/// Runs a blocking store read off the async executor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("a store read failed: {e}")))?
        .map_err(ServiceError::from)
}

/// The state of session `key` (as stored): from memory when it is there
/// (or `fresh`, an id just generated), else read back from the log on the
/// blocking pool.
pub(crate) async fn session_state(state: &AppState, key: &str, fresh: bool) -> Result<FactsHandle, ServiceError> {
    if fresh {
        return Ok(state.store().fresh_session_facts(key));
    }
    if let Some(cell) = state.store().cached_session_facts(key) {
        return Ok(cell);
    }
    let store = Arc::clone(state.store());
    let key = key.to_owned();
    blocking(move || store.session_facts(&key)).await
}

/// The answer to an enforced call, in the original server's shape plus
/// `approval_id`. It carries what the client sent (its session id, the
/// reason as the rule expanded it); what is stored has secrets replaced.
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

/// How many times a call is decided when the store keeps refusing the
/// decision because other servers record to its session meanwhile.
const MAX_DECIDE_ATTEMPTS: u32 = 4;

/// Decides the call in `body` (an enforce request), stores the decision and
/// returns the answer once committed. The caller has checked the key.
pub(crate) async fn enforce(state: &AppState, body: Value) -> Result<Enforced, ServiceError> {
    let started = Instant::now();
    let call = Call::from_json(body)?;
    let loaded = state.policy();
    let enforcer = Enforcer::new(&loaded.policy, state.redactor(), state.limits().approval_timeout);
    // The approval a release refers to, read before taking the session lock.
    let approval = match &call.approval_id {
        Some(id) => {
            let (store, id, now) = (Arc::clone(state.store()), id.clone(), call.request.now);
            blocking(move || store.approval(&id, now)).await?
        }
        None => None,
    };
    let key = enforcer.session_key(&call).into_owned();
    let store = state.store();
    let mut call = call;
    let mut attempt = 1;
    let (decision, session_id, log_id, timestamp, sanitized_args, approval_id) = loop {
        // A store other servers share may refuse the decision (the session
        // moved on): it is decided again, so the call needs keeping.
        let again = (attempt < MAX_DECIDE_ATTEMPTS && store.checks_session_versions()).then(|| call.clone());
        let cell = session_state(state, &key, call.fresh_session && attempt == 1).await?;
        let (outcome, ticket) = {
            let mut session = cell.lock();
            let decided = enforcer.evaluate(&call, &session, approval.as_ref())?;
            // Finished under the lock (no I/O): the call is recorded with
            // its log id, so a call that ran waits for its result.
            let mut outcome = enforcer.finish(call, decided);
            outcome.record.session_version = Some(session.state_version());
            session.apply(&outcome);
            let Outcome {
                decision,
                session_id,
                log_id,
                timestamp,
                sanitized_args,
                record,
                ..
            } = outcome;
            let approval_id = record.new_approval.as_ref().map(|a| a.id.clone());
            // Queued under the lock: a session's records reach the store
            // in the order its state took them.
            let ticket = store.record_decision(record);
            (
                (decision, session_id, log_id, timestamp, sanitized_args, approval_id),
                ticket,
            )
        };
        match (ticket.await, again) {
            (Ok(_), _) => break outcome,
            (Err(StoreError::SessionMoved { session_id }), Some(next)) => {
                tracing::debug!(session = %session_id, attempt, "the session moved on; deciding the call again");
                store.forget_session_facts(&key);
                call = next;
                attempt += 1;
            }
            (Err(e), _) => {
                // The state holds a decision the store did not record.
                store.forget_session_facts(&key);
                return Err(e.into());
            }
        }
    };
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
        timestamp: format_timestamp(timestamp),
        approval_id,
        sanitized_args,
    })
}

/// A recorded result: the labels it revealed and the response as the
/// tool's contract lets it through.
#[derive(Debug)]
pub(crate) struct RecordedResult {
    pub log_id: String,
    pub labels: Vec<String>,
    pub filtered: ResponseFilter,
}

/// Records a tool's result for log entry `log_id` of `session_id` (as the
/// client knows it), reported by `source` (the frontend says who saw it:
/// the tool runner, the proxy's key, or the agent): stored with secrets
/// redacted; once committed, its labels, value and provenance go into the
/// session's state; the response is filtered by the tool's contract.
pub(crate) async fn record_result(
    state: &AppState,
    session_id: &str,
    log_id: &str,
    body: Value,
    source: ResultSource,
) -> Result<RecordedResult, ServiceError> {
    let loaded = state.policy();
    let enforcer = Enforcer::new(&loaded.policy, state.redactor(), state.limits().approval_timeout);
    // The contract filter reads the result as posted.
    let response = body.get("result").unwrap_or(&body).clone();
    let read = enforcer.result_from(session_id, log_id, body, source, Timestamp::now())?;
    // The state is held before the commit: read back from the log after
    // it, it would hold the result already.
    let cell = session_state(state, &read.record.session_id, false).await?;
    state.store().record_result(read.record.clone()).await?;
    // After the commit: the result is recorded, so what it revealed
    // counts even if filtering it fails.
    cell.lock().apply_result(&read);
    let filtered = filter_result(state, log_id, &response).await?;
    Ok(RecordedResult {
        log_id: log_id.to_owned(),
        labels: read.labels,
        filtered,
    })
}

/// The tool's response filtered by the tool's contract (the tool of the
/// logged decision; without contracts the response comes back unchanged).
async fn filter_result(state: &AppState, log_id: &str, response: &Value) -> Result<ResponseFilter, ServiceError> {
    let policy = state.policy();
    if policy.policy.contracts().is_empty() {
        return Ok(policy.policy.filter_response("", response));
    }
    let (store, id) = (Arc::clone(state.store()), log_id.to_owned());
    let entry = blocking(move || store.log_entry(&id)).await?;
    let tool = entry.map(|e| e.tool_name).unwrap_or_default();
    Ok(policy.policy.filter_response(&tool, response))
}

/// A recorded user input.
#[derive(Debug, Serialize)]
pub(crate) struct RecordedInput {
    pub recorded: &'static str,
    /// The session as the client sent it.
    pub session_id: String,
    pub input_id: String,
}

/// Records a user's input (`{"text": ...}`) to `session_id` (as the client
/// knows it): stored with secrets redacted, then, once committed, in the
/// session's state for `from_input` and `session.inputs`. The caller has
/// checked the key (an input key: never the agent's).
pub(crate) async fn record_input(
    state: &AppState,
    session_id: &str,
    body: &Value,
) -> Result<RecordedInput, ServiceError> {
    let loaded = state.policy();
    let enforcer = Enforcer::new(&loaded.policy, state.redactor(), state.limits().approval_timeout);
    let read = enforcer.input(session_id, body, Timestamp::now())?;
    // Held before the commit, as for a result.
    let cell = session_state(state, &read.record.session_id, false).await?;
    state.store().record_input(read.record.clone()).await?;
    cell.lock().apply_input(&read);
    Ok(RecordedInput {
        recorded: "input",
        session_id: session_id.to_owned(),
        input_id: read.record.input_id,
    })
}

/// Approval `id` as it stands now.
pub(crate) async fn approval(state: &AppState, id: &str) -> Result<Approval, ServiceError> {
    let (store, key) = (Arc::clone(state.store()), id.to_owned());
    blocking(move || store.approval(&key, Timestamp::now()))
        .await?
        .ok_or_else(|| ServiceError::ApprovalNotFound(id.to_owned()))
}

/// Approves or rejects a pending approval (recorded in the audit log with
/// who and why, secrets in them replaced) and wakes its waiters: the one
/// path of the API, the dashboard and the tool runner.
pub(crate) async fn decide_approval(
    state: &AppState,
    id: String,
    approve: bool,
    by: String,
    reason: Option<String>,
) -> Result<Approval, ServiceError> {
    let redactor = state.redactor();
    let approval = state
        .store()
        .decide_approval(ApprovalDecision {
            id,
            approve,
            by: Some(redactor.id_owned(by)),
            reason: reason.map(|r| redactor.text_owned(r)),
            at: Timestamp::now(),
        })
        .await?;
    state.notify_approval(&approval.approval_id);
    Ok(approval)
}

/// An approval after a wait: decided, or still pending at the deadline.
#[derive(Debug)]
pub(crate) struct Waited {
    pub approval: Approval,
    pub timed_out: bool,
}

/// Waits at most `timeout` for approval `id` to be decided (or to expire).
pub(crate) async fn wait_approval(state: &AppState, id: &str, timeout: Duration) -> Result<Waited, ServiceError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Registered before the first read: a decision made after that read
    // still wakes this waiter. Only changes of this approval wake it.
    let mut watch = state.watch_approval(id);
    loop {
        let found = approval(state, id).await?;
        if found.state != ApprovalState::Pending {
            return Ok(Waited {
                approval: found,
                timed_out: false,
            });
        }
        // Wake at the deadline, at the approval's expiry, or on its change.
        let expiry = found
            .expires_at
            .parse::<Timestamp>()
            .ok()
            .and_then(|t| t.duration_since(Timestamp::now()).try_into().ok())
            .map(|d: Duration| tokio::time::Instant::now() + d + Duration::from_millis(5))
            .unwrap_or(deadline);
        let wake = deadline.min(expiry);
        tokio::select! {
            () = watch.changed() => {}
            _ = tokio::time::sleep_until(wake) => {
                if wake >= deadline {
                    let found = approval(state, id).await?;
                    let timed_out = found.state == ApprovalState::Pending;
                    return Ok(Waited { approval: found, timed_out });
                }
            }
        }
    }
}
