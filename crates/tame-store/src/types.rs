//! The records the store keeps and returns.

use serde::{Deserialize, Serialize};

/// The records the enforcement path hands to persistence, and the
/// approvals and log entries it reads back: one set of types for every
/// backend (see `tame_enforce`).
pub use tame_enforce::{
    Action, Approval, ApprovalDecision, ApprovalState, DecisionReceipt, LogEntry, NewApproval, NewDecision, NewInput,
    NewResult, Release, ResultSource, SessionSummary, StateVersion,
};

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
