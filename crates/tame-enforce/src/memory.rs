//! [`MemoryStore`]: sessions, approvals and a bounded audit log in memory,
//! for the frontends that run without a database: `tame eval` and
//! `tame test`, the Python package's embedded engine and the MCP proxy's
//! embedded guard. It implements the same persistence traits as the
//! SQLite and PostgreSQL stores and follows the same approval rules, and
//! [`MemoryStore::enforce`] is the one call those frontends make per call.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use jiff::Timestamp;
use serde_json::Value;
use tame_engine::RequestError;

use crate::approval::{ApprovalError, check_release, effective_state, verdict_state};
use crate::call::Call;
use crate::enforcer::{Enforcer, InputOutcome, Outcome, Refusal, ResultOutcome};
use crate::persist::{ApprovalSource, AuditSink, SessionSource};
use crate::records::{
    Approval, ApprovalDecision, ApprovalState, DecisionReceipt, LogEntry, NewDecision, NewInput, NewResult,
    SessionSummary,
};
use crate::redact::Redactor;
use crate::session::{ResultSource, SessionCell, SessionHandle, SessionState};
use crate::timestamp::format_timestamp;

/// How many log entries a [`MemoryStore`] keeps by default (the newest).
pub const DEFAULT_LOG_CAPACITY: usize = 10_000;
/// Approvals kept before the decided and expired ones are dropped.
pub const MAX_APPROVALS: usize = 10_000;

/// What the in-memory store refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("log entry `{0}` not found")]
    LogNotFound(String),
    #[error("log entry `{log_id}` belongs to another session than `{session_id}`")]
    SessionMismatch { log_id: String, session_id: String },
    #[error(transparent)]
    Approval(#[from] ApprovalError),
}

/// Why a call or a result was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnforceError {
    /// The call or result cannot be read (the error names the JSON path).
    #[error("{0}")]
    Call(#[from] RequestError),
    /// The call came back with an approval that cannot release it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] MemoryError),
}

impl MemoryError {
    /// The HTTP status the server answers it with.
    pub fn status(&self) -> u16 {
        match self {
            MemoryError::LogNotFound(_) => 404,
            MemoryError::SessionMismatch { .. } => 403,
            MemoryError::Approval(e) => e.status(),
        }
    }
}

impl EnforceError {
    /// The HTTP status the server answers it with (422 for a call or
    /// result that cannot be read).
    pub fn status(&self) -> u16 {
        match self {
            EnforceError::Call(_) => 422,
            EnforceError::Refused(r) => r.status(),
            EnforceError::Store(e) => e.status(),
        }
    }
}

#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<LogEntry>,
    summaries: HashMap<String, SessionSummary>,
    seq: u64,
}

/// Sessions, approvals and the newest log entries, in memory.
#[derive(Debug)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<String, SessionHandle>>,
    approvals: Mutex<HashMap<String, Approval>>,
    /// Woken when an approval changes.
    changed: Condvar,
    log: Mutex<Log>,
    capacity: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_log_capacity(DEFAULT_LOG_CAPACITY)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change below leaves the maps consistent: a panicking holder
    // cannot leave half a change behind.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store keeping at most `capacity` log entries (the newest; `0`
    /// keeps none, for a run that only prints its decisions).
    pub fn with_log_capacity(capacity: usize) -> Self {
        MemoryStore {
            sessions: Mutex::new(HashMap::default()),
            approvals: Mutex::new(HashMap::default()),
            changed: Condvar::new(),
            log: Mutex::new(Log::default()),
            capacity,
        }
    }

    /// The key a session id is stored under (secrets in it replaced, as
    /// [`Enforcer::session_key`] does with the unkeyed redactor).
    pub fn key(session_id: &str) -> std::borrow::Cow<'_, str> {
        Redactor::unkeyed().id(session_id)
    }

    /// Decides `call` with `enforcer`: the session's state and the approval
    /// the call comes back with are read, the decision made and recorded
    /// in the state under the session's lock, and the record appended
    /// (its approval created or used up) before the answer.
    pub fn enforce(&self, enforcer: &Enforcer<'_>, call: Call) -> Result<Outcome, EnforceError> {
        self.enforce_with(enforcer, call, SessionCell::lock)
    }

    /// [`MemoryStore::enforce`], taking the session's lock with `lock`
    /// (the Python engine waits for it without holding the interpreter's
    /// lock, which a host function running in another thread may need).
    pub fn enforce_with(
        &self,
        enforcer: &Enforcer<'_>,
        call: Call,
        lock: impl FnOnce(&SessionCell) -> MutexGuard<'_, SessionState>,
    ) -> Result<Outcome, EnforceError> {
        let approval = match &call.approval_id {
            Some(id) => self.load_approval(id, call.request.now)?,
            None => None,
        };
        let cell = self.session_state(&enforcer.session_key(&call), call.fresh_session)?;
        let mut state = lock(&cell);
        let decided = enforcer.evaluate(&call, &state, approval.as_ref())?;
        let outcome = enforcer.finish(call, decided);
        // Appended under the session's lock: a second release of the same
        // approval in this session sees the first one used.
        self.append(&outcome.record)?;
        state.record(outcome.step.clone());
        Ok(outcome)
    }

    /// Records a tool's result for log entry `log_id` of `session_id` (as
    /// the caller knows it), reported by the agent: see
    /// [`MemoryStore::record_result_from`].
    pub fn record_result(
        &self,
        enforcer: &Enforcer<'_>,
        session_id: &str,
        log_id: &str,
        body: Value,
    ) -> Result<ResultOutcome, EnforceError> {
        self.record_result_from(enforcer, session_id, log_id, body, ResultSource::Agent)
    }

    /// Records a tool's result for log entry `log_id` of `session_id` (as
    /// the caller knows it), reported by `source`: stored, then its labels,
    /// value and provenance added to the session's state.
    pub fn record_result_from(
        &self,
        enforcer: &Enforcer<'_>,
        session_id: &str,
        log_id: &str,
        body: Value,
        source: ResultSource,
    ) -> Result<ResultOutcome, EnforceError> {
        let outcome = enforcer.result_from(session_id, log_id, body, source, Timestamp::now())?;
        self.append_result(outcome.record.clone())?;
        let cell = self.session_state(&outcome.record.session_id, false)?;
        cell.lock().apply_result(&outcome);
        Ok(outcome)
    }

    /// Records a user's input (`{"text": ...}`) to `session_id` (as the
    /// caller knows it).
    pub fn record_input(
        &self,
        enforcer: &Enforcer<'_>,
        session_id: &str,
        body: &Value,
    ) -> Result<InputOutcome, EnforceError> {
        let outcome = enforcer.input(session_id, body, Timestamp::now())?;
        self.append_input(outcome.record.clone())?;
        let cell = self.session_state(&outcome.record.session_id, false)?;
        cell.lock().apply_input(&outcome);
        Ok(outcome)
    }

    /// Approves or rejects a pending approval and wakes its waiters.
    pub fn decide_approval(&self, verdict: ApprovalDecision) -> Result<Approval, MemoryError> {
        let mut approvals = lock(&self.approvals);
        let found = approvals
            .get_mut(&verdict.id)
            .ok_or_else(|| ApprovalError::NotFound(verdict.id.clone()))?;
        let effective = effective_of(found, verdict.at);
        found.state = verdict_state(&verdict.id, effective, verdict.approve)?;
        found.decided_by = verdict.by;
        found.decision_reason = verdict.reason;
        found.decided_at = Some(format_timestamp(verdict.at));
        let out = found.clone();
        drop(approvals);
        self.changed.notify_all();
        Ok(out)
    }

    /// Approval `id` as seen at `now` (`None` when there is none).
    pub fn approval(&self, id: &str, now: Timestamp) -> Option<Approval> {
        lock(&self.approvals).get(id).map(|a| seen_at(a, now))
    }

    /// The approvals (only those in `state` when given), newest first.
    pub fn approvals(&self, state: Option<ApprovalState>, now: Timestamp) -> Vec<Approval> {
        let mut out: Vec<Approval> = lock(&self.approvals)
            .values()
            .map(|a| seen_at(a, now))
            .filter(|a| state.is_none_or(|s| a.state == s))
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.approval_id.cmp(&a.approval_id)));
        out
    }

    /// Waits at most `timeout` for approval `id` to leave `pending`;
    /// returns it as it then stands (`None` when there is none).
    pub fn wait_approval(&self, id: &str, timeout: Duration) -> Option<Approval> {
        let deadline = Instant::now() + timeout;
        let mut approvals = lock(&self.approvals);
        loop {
            let now = Timestamp::now();
            let found = seen_at(approvals.get(id)?, now);
            let left = deadline.saturating_duration_since(Instant::now());
            if found.state != ApprovalState::Pending || left.is_zero() {
                return Some(found);
            }
            approvals = self
                .changed
                .wait_timeout(approvals, left)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Replaces session `key`'s state (a policy test's or an eval line's
    /// fixed facts).
    pub fn seed_session(&self, key: &str, state: SessionState) {
        lock(&self.sessions).insert(key.to_owned(), SessionHandle::new(SessionCell::new(state)));
    }

    /// The state of session `key`, if it has one.
    pub fn session(&self, key: &str) -> Option<SessionHandle> {
        lock(&self.sessions).get(key).cloned()
    }

    /// Forgets session `key`'s state.
    pub fn reset_session(&self, key: &str) {
        lock(&self.sessions).remove(key);
    }

    /// The ids of the sessions with a state, sorted.
    pub fn session_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.sessions).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The kept log entries, oldest first.
    pub fn log(&self) -> Vec<LogEntry> {
        lock(&self.log).entries.iter().cloned().collect()
    }

    /// One log entry, if it is still kept.
    pub fn log_entry(&self, log_id: &str) -> Option<LogEntry> {
        lock(&self.log).entries.iter().rev().find(|e| e.id == log_id).cloned()
    }

    /// A session's kept log entries, oldest first; `None` for a session
    /// that has logged nothing.
    pub fn session_log(&self, key: &str) -> Option<Vec<LogEntry>> {
        let log = lock(&self.log);
        log.summaries.get(key)?;
        Some(log.entries.iter().filter(|e| e.session_id == key).cloned().collect())
    }

    /// One session's summary.
    pub fn session_summary(&self, key: &str) -> Option<SessionSummary> {
        lock(&self.log).summaries.get(key).cloned()
    }

    /// Every session's summary, latest activity first.
    pub fn session_summaries(&self) -> Vec<SessionSummary> {
        let mut out: Vec<SessionSummary> = lock(&self.log).summaries.values().cloned().collect();
        out.sort_by(|a, b| b.end_time.cmp(&a.end_time).then(a.session_id.cmp(&b.session_id)));
        out
    }

    /// Appends a decision record: creates its approval or uses up the one
    /// it releases (refused when that is no longer possible).
    fn append(&self, record: &NewDecision) -> Result<DecisionReceipt, MemoryError> {
        let ts = format_timestamp(record.timestamp);
        if let Some(release) = &record.release_of {
            let mut approvals = lock(&self.approvals);
            let found = approvals
                .get_mut(&release.approval_id)
                .ok_or_else(|| ApprovalError::NotFound(release.approval_id.clone()))?;
            let used = found.released_log_id.is_some();
            let effective = effective_state(found.state, expires_at(found), used, record.timestamp);
            check_release(release, effective, &found.call_hash, used)?;
            found.released_log_id = Some(record.log_id.clone());
        }
        if let Some(new) = &record.new_approval {
            let approval = Approval {
                approval_id: new.id.clone(),
                log_id: record.log_id.clone(),
                session_id: record.session_id.clone(),
                tool_name: record.tool_name.clone(),
                tool_args: record.tool_args.clone(),
                agent_id: record.agent_id.clone(),
                user_id: record.user_id.clone(),
                call_hash: new.call_hash.clone(),
                policy_version: record.policy_version.clone(),
                rule_name: record.rule_name.clone(),
                reason: record.reason.clone(),
                state: ApprovalState::Pending,
                decided_by: None,
                decision_reason: None,
                created_at: ts.clone(),
                decided_at: None,
                expires_at: format_timestamp(new.expires_at),
                released_log_id: None,
            };
            let mut approvals = lock(&self.approvals);
            if approvals.len() >= MAX_APPROVALS {
                // Keep memory bounded: decided and expired approvals go
                // first (pending ones stay until they expire).
                let now = record.timestamp;
                approvals.retain(|_, a| effective_of(a, now) == ApprovalState::Pending);
            }
            approvals.insert(new.id.clone(), approval);
        }
        let mut log = lock(&self.log);
        log.seq += 1;
        let seq = log.seq;
        log.summaries
            .entry(record.session_id.clone())
            .or_insert_with(|| SessionSummary::start(record, &ts))
            .count(record, &ts);
        if self.capacity > 0 {
            if log.entries.len() >= self.capacity {
                log.entries.pop_front();
            }
            log.entries.push_back(LogEntry::of_decision(record, seq));
        }
        Ok(DecisionReceipt { seq })
    }
}

/// When an approval runs out (an unreadable time: now, never later).
fn expires_at(a: &Approval) -> Timestamp {
    a.expires_at.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn effective_of(a: &Approval, now: Timestamp) -> ApprovalState {
    effective_state(a.state, expires_at(a), a.released_log_id.is_some(), now)
}

/// An approval as seen at `now` (expired when its time ran out unused).
fn seen_at(a: &Approval, now: Timestamp) -> Approval {
    let mut out = a.clone();
    out.state = effective_of(a, now);
    out
}

impl SessionSource for MemoryStore {
    type Error = MemoryError;

    fn session_state(&self, key: &str, _fresh: bool) -> Result<SessionHandle, MemoryError> {
        let mut sessions = lock(&self.sessions);
        if let Some(cell) = sessions.get(key) {
            return Ok(SessionHandle::clone(cell));
        }
        let cell = SessionHandle::default();
        sessions.insert(key.to_owned(), SessionHandle::clone(&cell));
        Ok(cell)
    }
}

impl ApprovalSource for MemoryStore {
    type Error = MemoryError;

    fn load_approval(&self, id: &str, now: Timestamp) -> Result<Option<Approval>, MemoryError> {
        Ok(self.approval(id, now))
    }
}

impl AuditSink for MemoryStore {
    type Ack<T> = Result<T, MemoryError>;

    fn append_decision(&self, record: NewDecision) -> Result<DecisionReceipt, MemoryError> {
        self.append(&record)
    }

    fn append_result(&self, record: NewResult) -> Result<u64, MemoryError> {
        let mut log = lock(&self.log);
        let owner = log.summaries.contains_key(&record.session_id);
        let entry = log.entries.iter_mut().rev().find(|e| e.id == record.log_id);
        match entry {
            Some(entry) if entry.session_id != record.session_id => Err(MemoryError::SessionMismatch {
                log_id: record.log_id,
                session_id: record.session_id,
            }),
            Some(entry) => {
                entry.apply_result(record.result);
                log.seq += 1;
                Ok(log.seq)
            }
            // An entry the capacity dropped: its session is known, the
            // result is not kept.
            None if owner && self.capacity == 0 => Ok(log.seq),
            None => Err(MemoryError::LogNotFound(record.log_id)),
        }
    }

    fn append_input(&self, _record: NewInput) -> Result<u64, MemoryError> {
        // The input lives in the session's state; the log keeps decisions.
        let mut log = lock(&self.log);
        log.seq += 1;
        Ok(log.seq)
    }

    fn append_verdict(&self, verdict: ApprovalDecision) -> Result<Approval, MemoryError> {
        self.decide_approval(verdict)
    }
}
