//! [`Enforcer`]: decides a call against a session's state and an approval,
//! and builds what is to be stored, without any I/O.
//!
//! One call's life cycle, in the order every frontend follows (the server's
//! service layer with its store, [`crate::MemoryStore`] for the CLI, the
//! Python engine and the MCP proxy's embedded guard):
//!
//! 1. read the call ([`crate::Call::from_json`]);
//! 2. load the session's state and, for a call that comes back with an
//!    approval, that approval ([`Enforcer::session_key`] names the
//!    session as stored);
//! 3. under the session's lock: [`Enforcer::evaluate`] (the policy, then
//!    the approval-release rule) and [`crate::SessionState::record`] of
//!    the decided call (the counts-as-run rule);
//! 4. [`Enforcer::finish`]: the audit record with secrets redacted, the
//!    approval to create or to consume;
//! 5. append the record, and answer only once it is committed.

use std::borrow::Cow;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;
use tame_engine::{Action, Decision, Policy, RequestError, value_to_json};

use crate::approval::released;
use crate::call::{Call, id_text};
use crate::canonical::call_hash;
use crate::provenance::{Extract, IndexKey};
use crate::records::{Approval, ApprovalState, NewApproval, NewDecision, NewInput, NewResult, Release};
use crate::redact::{Redactor, redact_secrets, redacted_values};
use crate::session::ResultSource;
use crate::session::{CallStep, SessionState};

/// How long an approval stays open by default.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why a call that comes back with an approval is not decided at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("approval `{0}` not found")]
    ApprovalNotFound(String),
    #[error("approval `{0}` was granted for a different call (tool, arguments and session must match)")]
    ApprovalMismatch(String),
    #[error("approval `{id}` is still pending")]
    ApprovalPending { id: String, expires_at: String },
    #[error("approval `{0}` was already used to release a call")]
    ApprovalUsed(String),
}

impl Refusal {
    /// The HTTP status the server answers it with: 404 for an unknown
    /// approval, 403 for another call's, 409 for a pending or used one.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::ApprovalNotFound(_) => 404,
            Refusal::ApprovalMismatch(_) => 403,
            Refusal::ApprovalPending { .. } | Refusal::ApprovalUsed(_) => 409,
        }
    }
}

/// The policy's decision for a call, before its record is built (what
/// [`Enforcer::evaluate`] returns under the session's lock).
#[derive(Debug, Clone)]
pub struct Decided {
    pub decision: Decision,
    /// The call as the session's history keeps it.
    pub step: CallStep,
    /// The approval this call uses up (a release).
    release: Option<String>,
    /// The call's hash, when an approval is involved.
    hash: Option<String>,
}

/// What to create or use up with a decision's record.
#[derive(Debug, Clone, Copy)]
pub enum ApprovalStep<'a> {
    None,
    /// An `approve` decision: a pending approval.
    Create(&'a NewApproval),
    /// A released call: the approval it uses up.
    Consume(&'a Release),
}

/// A decided call, ready to store and answer.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The decision as the caller sees it (its reason as the rule expanded
    /// it; what is stored has secrets replaced).
    pub decision: Decision,
    /// The session as the caller knows it (as sent, or generated).
    pub session_id: String,
    pub log_id: String,
    pub timestamp: Timestamp,
    /// With `payload: {secrets|pii: redact}` in the policy: the arguments
    /// to run the tool with.
    pub sanitized_args: Option<Value>,
    /// The call as the session's history keeps it.
    pub step: CallStep,
    /// The audit record to append: secrets redacted, the approval to
    /// create or to consume included.
    pub record: NewDecision,
}

impl Outcome {
    /// The approval the record creates or uses up.
    pub fn approval(&self) -> ApprovalStep<'_> {
        match (&self.record.new_approval, &self.record.release_of) {
            (Some(a), _) => ApprovalStep::Create(a),
            (None, Some(r)) => ApprovalStep::Consume(r),
            (None, None) => ApprovalStep::None,
        }
    }

    /// The id of the pending approval an `approve` decision created.
    pub fn approval_id(&self) -> Option<&str> {
        self.record.new_approval.as_ref().map(|a| a.id.as_str())
    }
}

/// A tool's result, read and ready to store.
#[derive(Debug, Clone)]
pub struct ResultOutcome {
    /// The record to append (secrets redacted; the session as stored).
    pub record: NewResult,
    /// What the result revealed, as session labels (scanned before
    /// redaction: the agent saw it all).
    pub labels: Vec<String>,
    /// The tool's output as the session's history keeps it (in memory:
    /// not redacted): the body's `result`, or the whole body without one.
    pub value: tame_lang::Value,
    /// Its provenance hashes (of the output and `error_message`, before
    /// redaction), under [`ResultOutcome::key`].
    pub extract: Extract,
    pub key: IndexKey,
}

/// A user's input, read and ready to store.
#[derive(Debug, Clone)]
pub struct InputOutcome {
    /// The record to append (secrets redacted; the session as stored).
    pub record: NewInput,
    /// The text as the session keeps it in memory.
    pub text: String,
    /// Its provenance hashes, under [`InputOutcome::key`].
    pub extract: Extract,
    pub key: IndexKey,
}

/// What a result body (as posted to the result endpoint) gives the
/// session: the tool's output (the body's `result`, or the whole body
/// without one) as the history keeps it, and its provenance hashes under
/// `key` (of the output, and of `error_message` beside a `result`). The
/// stores rebuild a session from its stored result records with it too.
pub fn result_provenance(key: &IndexKey, body: &Value) -> (tame_lang::Value, Extract) {
    let output = body.get("result").unwrap_or(body);
    let mut extract = Extract::json(key, output, true);
    if body.get("result").is_some()
        && let Some(Value::String(message)) = body.get("error_message")
    {
        let more = Extract::text(key, message, true);
        extract.values.extend(more.values);
        extract.entities.extend(more.entities);
        extract.copies.extend(more.copies);
    }
    (tame_engine::json_to_value(output), extract)
}

/// The longest user input read, in bytes.
pub const MAX_INPUT_TEXT: usize = 256 * 1024;

/// Decides calls with one policy. Cheap to build per call.
#[derive(Debug, Clone, Copy)]
pub struct Enforcer<'a> {
    policy: &'a Policy,
    redactor: &'a Redactor,
    approval_timeout: Duration,
}

impl<'a> Enforcer<'a> {
    /// An enforcer of `policy`, redacting stored identifiers with
    /// `redactor`, opening approvals for `approval_timeout`.
    pub fn new(policy: &'a Policy, redactor: &'a Redactor, approval_timeout: Duration) -> Self {
        Enforcer {
            policy,
            redactor,
            approval_timeout,
        }
    }

    /// An enforcer with the unkeyed redactor and the default approval timeout.
    pub fn with_policy(policy: &'a Policy) -> Self {
        Enforcer::new(policy, Redactor::unkeyed(), DEFAULT_APPROVAL_TIMEOUT)
    }

    pub fn policy(&self) -> &'a Policy {
        self.policy
    }

    pub fn redactor(&self) -> &'a Redactor {
        self.redactor
    }

    /// The session as stored (and keyed in memory): a secret in the id
    /// replaced by a stable marker, so the state, the log and the summaries
    /// all know it by the same id (an id just generated holds none).
    pub fn session_key<'c>(&self, call: &'c Call) -> Cow<'c, str> {
        if call.fresh_session {
            Cow::Borrowed(call.session_id.as_str())
        } else {
            self.redactor.id(&call.session_id)
        }
    }

    /// The session as stored, for a session id sent with a result, a
    /// session read or an input.
    pub fn stored_session<'s>(&self, session_id: &'s str) -> Cow<'s, str> {
        self.redactor.id(session_id)
    }

    /// Checks the approval a call comes back with (`approval`: what the
    /// store holds under `call.approval_id`, `None` when nothing): it must
    /// exist, be bound to this call, be decided and unused.
    pub fn check_approval(&self, call: &Call, approval: Option<&Approval>) -> Result<Option<String>, Refusal> {
        let Some(id) = &call.approval_id else {
            return Ok(None);
        };
        let Some(found) = approval else {
            return Err(Refusal::ApprovalNotFound(id.clone()));
        };
        let hash = call_hash(call.tool(), &call.tool_args, &call.session_id);
        if found.call_hash != hash {
            return Err(Refusal::ApprovalMismatch(found.approval_id.clone()));
        }
        if found.state == ApprovalState::Pending {
            return Err(Refusal::ApprovalPending {
                id: found.approval_id.clone(),
                expires_at: found.expires_at.clone(),
            });
        }
        if found.state == ApprovalState::Approved && found.released_log_id.is_some() {
            return Err(Refusal::ApprovalUsed(found.approval_id.clone()));
        }
        Ok(Some(hash))
    }

    /// Decides `call` against the session's state (call it under the
    /// session's lock, then record the returned step in the state): the
    /// policy's decision, then, for a call that comes back with an
    /// approval, the approval-release rule.
    pub fn evaluate(&self, call: &Call, state: &SessionState, approval: Option<&Approval>) -> Result<Decided, Refusal> {
        let hash = self.check_approval(call, approval)?;
        let now = call.request.now;
        let evaluated = self.policy.evaluate(&call.request, &state.view(now));
        let (decision, release) = match (approval, &call.approval_id) {
            (Some(a), Some(_)) => {
                let (decision, consumed) = released(evaluated, a);
                (decision, consumed.then(|| a.approval_id.clone()))
            }
            _ => (evaluated, None),
        };
        let mut step = CallStep::decided(&call.request, &decision);
        step.released = release.is_some();
        Ok(Decided {
            decision,
            step,
            release,
            hash,
        })
    }

    /// The record of a decided call: arguments, metadata, identifiers and
    /// the reason with secrets redacted (and what the policy says to
    /// redact), the approval to create or to consume.
    pub fn finish(&self, call: Call, decided: Decided) -> Outcome {
        let Decided {
            decision,
            step,
            release,
            mut hash,
        } = decided;
        let stored_session = self.session_key(&call).into_owned();
        let Call {
            request,
            mut tool_args,
            mut metadata,
            session_id,
            ..
        } = call;
        let now = request.now;
        // The call's hash binds an approval to it (computed before the
        // arguments are redacted, so a release still matches).
        let new_approval = (decision.action == Action::Approve && release.is_none()).then(|| NewApproval {
            // Time-ordered ids keep the indexes append-only.
            id: id_text(uuid::Uuid::now_v7()),
            call_hash: hash
                .get_or_insert_with(|| call_hash(&request.tool, &tool_args, &session_id))
                .clone(),
            expires_at: now.checked_add(self.approval_timeout).unwrap_or(Timestamp::MAX),
        });
        let log_id = id_text(uuid::Uuid::now_v7());
        let mut step = step;
        step.log_id = Some(std::sync::Arc::from(log_id.as_str()));
        let sanitized_args = self.policy.sanitize_args(&request);
        if let Some(clean) = &sanitized_args {
            // What the policy says to redact is not stored either.
            tool_args = clean.clone();
        }
        let args_changed = redact_secrets(&mut tool_args) || sanitized_args.is_some();
        let metadata_changed = redact_secrets(&mut metadata);
        // The reason may quote the arguments (`{args.path}`): what was
        // redacted there is redacted in it too, then whatever else it holds.
        let mut redacted = Vec::new();
        if args_changed {
            redacted_values(&value_to_json(&request.args), &tool_args, &mut redacted);
        }
        if metadata_changed {
            redacted_values(&value_to_json(&request.metadata), &metadata, &mut redacted);
        }
        let reason = self.redactor.reason(&decision.reason, &mut redacted);
        let record = NewDecision {
            log_id: log_id.clone(),
            session_id: stored_session,
            timestamp: now,
            tool_name: self.redactor.id(&request.tool).into_owned(),
            tool_args,
            agent_id: request.agent_id.as_deref().map(|a| self.redactor.id(a).into_owned()),
            user_id: request.user_id.as_deref().map(|u| self.redactor.id(u).into_owned()),
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
            session_version: None,
        };
        Outcome {
            decision,
            session_id,
            log_id,
            timestamp: now,
            sanitized_args,
            step,
            record,
        }
    }

    /// [`Enforcer::evaluate`] then [`Enforcer::finish`], for callers that
    /// hold the state already (a test, a one-off decision).
    pub fn decide(&self, call: Call, state: &SessionState, approval: Option<&Approval>) -> Result<Outcome, Refusal> {
        let decided = self.evaluate(&call, state, approval)?;
        Ok(self.finish(call, decided))
    }

    /// Reads a tool's result reported for log entry `log_id` of
    /// `session_id` (the session as the caller knows it): the body must be
    /// an object whose `status` and `error_message` are text and
    /// `duration_ms` a number, when present. Errors name the field.
    pub fn result(
        &self,
        session_id: &str,
        log_id: &str,
        body: Value,
        now: Timestamp,
    ) -> Result<ResultOutcome, RequestError> {
        self.result_from(session_id, log_id, body, ResultSource::Agent, now)
    }

    /// [`Enforcer::result`] reported by `source` (the MCP proxy, the tool
    /// runner, or the agent: the frontend that saw it says which, never
    /// the body).
    pub fn result_from(
        &self,
        session_id: &str,
        log_id: &str,
        body: Value,
        source: ResultSource,
        now: Timestamp,
    ) -> Result<ResultOutcome, RequestError> {
        let err = |path: &str, message: &str| RequestError {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        if log_id.is_empty() {
            return Err(err("log_id", "missing"));
        }
        if !body.is_object() {
            return Err(err("body", "expected the result object"));
        }
        for (field, ok) in [
            (
                "status",
                body.get("status").is_none_or(|v| v.is_string() || v.is_null()),
            ),
            (
                "duration_ms",
                body.get("duration_ms").is_none_or(|v| v.is_number() || v.is_null()),
            ),
            (
                "error_message",
                body.get("error_message").is_none_or(|v| v.is_string() || v.is_null()),
            ),
        ] {
            if !ok {
                return Err(err(field, "wrong type"));
            }
        }
        // What the result reveals labels the session (scanned before
        // redaction).
        let labels = tame_engine::labels(&tame_engine::Scanner::global().scan(&body));
        // What the tool returned, indexed before redaction (the agent saw
        // it all).
        let key = self.redactor.index_key();
        let (value, extract) = result_provenance(&key, &body);
        let mut result = body;
        redact_secrets(&mut result);
        Ok(ResultOutcome {
            record: NewResult {
                session_id: self.stored_session(session_id).into_owned(),
                log_id: log_id.to_owned(),
                timestamp: now,
                result,
                labels: labels.clone(),
                source,
            },
            labels,
            value,
            extract,
            key,
        })
    }

    /// Reads a user's input to `session_id` (the session as the caller
    /// knows it): `{"text": "..."}`, a non-empty text of at most
    /// [`MAX_INPUT_TEXT`] bytes. Errors name the field.
    pub fn input(&self, session_id: &str, body: &Value, now: Timestamp) -> Result<InputOutcome, RequestError> {
        let err = |path: &str, message: &str| RequestError {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        if session_id.is_empty() {
            return Err(err("session_id", "missing"));
        }
        let Some(fields) = body.as_object() else {
            return Err(err("$", "expected an object with `text`"));
        };
        if let Some(other) = fields.keys().find(|k| k.as_str() != "text") {
            return Err(err(other, "unknown field, expected `text`"));
        }
        let text = match fields.get("text") {
            Some(Value::String(t)) if t.trim().is_empty() => return Err(err("text", "empty")),
            Some(Value::String(t)) if t.len() > MAX_INPUT_TEXT => {
                return Err(err("text", &format!("longer than {MAX_INPUT_TEXT} bytes")));
            }
            Some(Value::String(t)) => t.clone(),
            Some(_) => return Err(err("text", "expected a string")),
            None => return Err(err("text", "missing")),
        };
        let key = self.redactor.index_key();
        let extract = Extract::text(&key, &text, false);
        Ok(InputOutcome {
            record: NewInput {
                input_id: id_text(uuid::Uuid::now_v7()),
                session_id: self.stored_session(session_id).into_owned(),
                timestamp: now,
                text: self.redactor.text(&text).into_owned(),
            },
            text,
            extract,
            key,
        })
    }
}
