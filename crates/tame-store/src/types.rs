//! The records the store keeps and returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tame_engine::Action;

/// A decision to append to the log.
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
    /// `error_message` are read; other keys are kept).
    pub result: Value,
    /// Session labels the result revealed (`secret`, `pii`, ...). They are
    /// stored in the same chained record as the result, so they count again
    /// when the session's facts are read back from the log (after a
    /// restart, or after the session left memory). The caller still adds
    /// them to the in-memory facts once the write is committed.
    pub labels: Vec<String>,
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

/// A policy version to store.
#[derive(Debug, Clone)]
pub struct NewPolicyVersion {
    pub version: String,
    pub hash: String,
    pub origin: String,
    pub source: String,
    pub loaded_at: jiff::Timestamp,
}

/// A stored policy version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyVersion {
    pub id: u64,
    pub version: String,
    pub hash: String,
    pub origin: String,
    pub loaded_at: String,
    pub source: String,
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

/// Filter and page of the session list (`page` starts at 1).
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub page: u64,
    pub page_size: u64,
    pub agent_id: Option<String>,
    pub user_id: Option<String>,
}

/// One page of sessions.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionPage {
    pub sessions: Vec<SessionSummary>,
    pub total_count: u64,
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

/// What went wrong in the chain, at which record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainProblemKind {
    /// The record's content or hash does not match its HMAC, or it does
    /// not link to the record before it.
    Edited,
    /// A sequence number is missing: the record was deleted.
    Missing,
    /// Records at the end of the log were deleted: the log is shorter than
    /// its recorded or witnessed head.
    Truncated,
    /// The record at a witnessed sequence number is not the witnessed one:
    /// the log was cut and written anew from there, or replaced.
    Diverged,
    /// The checkpoint file that witnesses the chain's head was missing,
    /// unreadable or not signed with the audit secret.
    Witness,
    /// A row of the approvals table does not match the approval's records
    /// in the chain (a forged or altered approval).
    ApprovalMismatch,
}

/// One problem found in the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainProblem {
    pub kind: ChainProblemKind,
    /// The sequence number of the edited or missing record (for an
    /// approval mismatch, of the approval's latest record; `0` when none).
    pub seq: u64,
    /// The record's reference (log id, approval id, policy hash) when known.
    pub ref_id: Option<String>,
    pub message: String,
}

/// Outcome of an audit chain check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub valid: bool,
    /// Records checked.
    pub records: u64,
    /// Hash of the last record (hex), when there is one.
    pub head_hash: Option<String>,
    /// The first of `problems` (kept for clients of the first format).
    pub first_problem: Option<ChainProblem>,
    /// Every problem found, in the order found (at most
    /// [`crate::MAX_REPORTED_PROBLEMS`]; `more_problems` counts the rest).
    pub problems: Vec<ChainProblem>,
    /// Problems found beyond those listed.
    pub more_problems: u64,
    /// The newest checkpoint of the chain's head the check held the log
    /// against, if any (see `SqliteOptions::checkpoints`).
    pub checkpoint: Option<Checkpoint>,
}

/// A signed statement of the audit chain's head: chain `chain` had `seq`
/// records, the last one hashing to `head`, at `at`. `mac` is an
/// HMAC-SHA256 of those fields under the audit secret. Written to the
/// checkpoint file and the JSON log, outside the database it witnesses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub chain: String,
    pub seq: u64,
    pub head: String,
    pub at: String,
    pub mac: String,
}

/// Decisions counted over every session, for an overview.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DecisionTotals {
    /// Sessions with at least one record.
    pub sessions: u64,
    /// Decisions of every kind.
    pub total: u64,
    pub allowed: u64,
    pub denied: u64,
    pub approved: u64,
}

/// One page of a session's log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogPage {
    /// The page's entries in log order (oldest first), each with its result.
    pub entries: Vec<LogEntry>,
    /// Entries in the whole session's log (its decisions).
    pub total: u64,
}
