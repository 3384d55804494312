//! The records the enforcement path hands to persistence (a decision to
//! append, a result, an approval's verdict) and the approvals it reads
//! back. Every backend (SQLite, PostgreSQL, [`crate::MemoryStore`]) takes
//! and returns these same types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tame_engine::Action;

/// A decision to append to the audit log: built by
/// [`crate::Enforcer::decide`], secrets already redacted.
#[derive(Debug, Clone)]
pub struct NewDecision {
    pub log_id: String,
    pub session_id: String,
    pub timestamp: jiff::Timestamp,
    pub tool_name: String,
    pub tool_args: Value,
    pub agent_id: Option<String>,
    pub user_id: Option<String>,
    pub metadata: Value,
    pub decision: Action,
    pub rule_name: Option<String>,
    pub reason: String,
    pub policy_version: String,
    /// For an `approve` decision: the pending approval to create.
    pub new_approval: Option<NewApproval>,
    /// For a call released by an approval: that approval, marked used in the
    /// same transaction (the write fails if it was used already).
    pub release_of: Option<Release>,
    /// The state the call was decided on ([`crate::SessionState::state_version`],
    /// set by a server deciding over a store other servers share): the
    /// store refuses the decision when the session has records the state
    /// did not hold, or the state holds a decision the store refused, and
    /// the server decides again on the session as stored. `None`: not
    /// checked.
    pub session_version: Option<StateVersion>,
}

/// Which session state a decision was made on: the state (`epoch`, unique
/// among its store's states) and how many of the session's records it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateVersion {
    pub epoch: u64,
    pub records: u64,
}

/// A pending approval created with an `approve` decision.
#[derive(Debug, Clone)]
pub struct NewApproval {
    pub id: String,
    /// [`crate::canonical::call_hash`] of the call.
    pub call_hash: String,
    pub expires_at: jiff::Timestamp,
}

/// The approval a released call consumes.
#[derive(Debug, Clone)]
pub struct Release {
    pub approval_id: String,
    pub call_hash: String,
}

/// What a committed decision got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionReceipt {
    /// The audit sequence number of the decision record.
    pub seq: u64,
}

/// A tool's result for a logged decision.
#[derive(Debug, Clone)]
pub struct NewResult {
    pub session_id: String,
    pub log_id: String,
    pub timestamp: jiff::Timestamp,
    /// The result object as posted (`status`, `duration_ms`,
    /// `error_message` are read; other keys are kept), secrets redacted.
    pub result: Value,
    /// Session labels the result revealed (`secret`, `pii`, ...). They are
    /// stored in the same chained record as the result, so they count again
    /// when the session's state is read back from the log (after a
    /// restart, or after the session left memory). The caller still adds
    /// them to the session state once the write is committed.
    pub labels: Vec<String>,
    /// Who reported it: the MCP proxy, the tool runner or the agent.
    pub source: crate::ResultSource,
}

/// A user's input to a session (what the trusted principal asked for).
#[derive(Debug, Clone)]
pub struct NewInput {
    /// The input's id.
    pub input_id: String,
    pub session_id: String,
    pub timestamp: jiff::Timestamp,
    /// The text, secrets redacted.
    pub text: String,
}

/// An admin's verdict on a pending approval.
#[derive(Debug, Clone)]
pub struct ApprovalDecision {
    pub id: String,
    /// `true` approves, `false` rejects.
    pub approve: bool,
    pub by: Option<String>,
    pub reason: Option<String>,
    pub at: jiff::Timestamp,
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    /// Ran out of time: counts as denied.
    Expired,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalState> {
        match s {
            "pending" => Some(ApprovalState::Pending),
            "approved" => Some(ApprovalState::Approved),
            "rejected" => Some(ApprovalState::Rejected),
            "expired" => Some(ApprovalState::Expired),
            _ => None,
        }
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approval and the call it is bound to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Approval {
    pub approval_id: String,
    /// The log entry of the `approve` decision.
    pub log_id: String,
    pub session_id: String,
    pub tool_name: String,
    pub tool_args: Value,
    pub agent_id: Option<String>,
    pub user_id: Option<String>,
    pub call_hash: String,
    pub policy_version: String,
    pub rule_name: Option<String>,
    /// The policy's reason for asking.
    pub reason: String,
    pub state: ApprovalState,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
    pub expires_at: String,
    /// The log entry of the call this approval released, once used.
    pub released_log_id: Option<String>,
}

/// One log entry as the original server returned it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub id: String,
    pub session_id: String,
    pub timestamp: String,
    pub tool_name: String,
    pub tool_args: Value,
    pub tool_result: Option<Value>,
    pub policy_version: String,
    pub policy_decision: Action,
    pub policy_rule: Option<String>,
    pub reason: String,
    pub execution_status: Option<String>,
    pub execution_duration_ms: Option<f64>,
    pub error_message: Option<String>,
    pub agent_id: Option<String>,
    pub user_id: Option<String>,
    pub metadata: Value,
    pub approval_id: Option<String>,
    /// Audit sequence number of the decision record.
    pub seq: u64,
}

impl LogEntry {
    /// The entry of a decision record appended as number `seq`.
    pub fn of_decision(d: &NewDecision, seq: u64) -> LogEntry {
        LogEntry {
            id: d.log_id.clone(),
            session_id: d.session_id.clone(),
            timestamp: crate::format_timestamp(d.timestamp),
            tool_name: d.tool_name.clone(),
            tool_args: d.tool_args.clone(),
            tool_result: None,
            policy_version: d.policy_version.clone(),
            policy_decision: d.decision,
            policy_rule: d.rule_name.clone(),
            reason: d.reason.clone(),
            execution_status: None,
            execution_duration_ms: None,
            error_message: None,
            agent_id: d.agent_id.clone(),
            user_id: d.user_id.clone(),
            metadata: d.metadata.clone(),
            approval_id: d.new_approval.as_ref().map(|a| a.id.clone()),
            seq,
        }
    }

    /// Fills in the tool's result (`status`, `duration_ms` or
    /// `execution_time_ms`, `error_message` read from it).
    pub fn apply_result(&mut self, result: Value) {
        let text = |key: &str| result.get(key).and_then(Value::as_str).map(str::to_string);
        self.execution_status = text("status");
        self.execution_duration_ms = result
            .get("duration_ms")
            .or_else(|| result.get("execution_time_ms"))
            .and_then(Value::as_f64);
        self.error_message = text("error_message");
        self.tool_result = Some(result);
    }
}

/// A session's summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionSummary {
    pub session_id: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub total_calls: u64,
    pub allowed_calls: u64,
    pub denied_calls: u64,
    pub approved_calls: u64,
    pub agent_id: Option<String>,
    pub user_id: Option<String>,
}

impl SessionSummary {
    /// The summary of a session whose first decision is `d`, counting nothing yet.
    pub fn start(d: &NewDecision, ts: &str) -> SessionSummary {
        SessionSummary {
            session_id: d.session_id.clone(),
            start_time: ts.to_owned(),
            end_time: None,
            total_calls: 0,
            allowed_calls: 0,
            denied_calls: 0,
            approved_calls: 0,
            agent_id: None,
            user_id: None,
        }
    }

    /// Counts decision `d`, made at `ts`.
    pub fn count(&mut self, d: &NewDecision, ts: &str) {
        self.end_time = Some(ts.to_owned());
        self.total_calls += 1;
        match d.decision {
            Action::Allow => self.allowed_calls += 1,
            Action::Deny => self.denied_calls += 1,
            Action::Approve => self.approved_calls += 1,
        }
        if self.agent_id.is_none() {
            self.agent_id.clone_from(&d.agent_id);
        }
        if self.user_id.is_none() {
            self.user_id.clone_from(&d.user_id);
        }
    }
}
