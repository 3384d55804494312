//! Persistence behind narrow traits: session history and approvals in,
//! audit records out. Implemented by the SQLite and PostgreSQL stores
//! (`tame-store`) and by [`crate::MemoryStore`].
//!
//! Reads may block briefly on a database: async callers run them off the
//! executor. Writes return an acknowledgement (`Ack`) that resolves only
//! once the record is committed; nobody is answered before that.

use jiff::Timestamp;

use crate::records::{Approval, ApprovalDecision, DecisionReceipt, NewDecision, NewInput, NewResult};
use crate::session::SessionHandle;

/// Session history in.
pub trait SessionSource {
    type Error;
    /// The state of session `key` (the session as stored, see
    /// [`crate::Enforcer::session_key`]), read back from the log when it
    /// is not in memory. With `fresh` (an id just generated) nothing is
    /// read: the session is new.
    fn session_state(&self, key: &str, fresh: bool) -> Result<SessionHandle, Self::Error>;
}

/// Approvals in.
pub trait ApprovalSource {
    type Error;
    /// Approval `id` as its records tell it, a pending one past its expiry
    /// read as expired (`None` when there is none).
    fn load_approval(&self, id: &str, now: Timestamp) -> Result<Option<Approval>, Self::Error>;
}

/// Audit records out (and approvals' verdicts, which are records too).
pub trait AuditSink {
    /// Resolves once the write is committed (or failed).
    type Ack<T>;
    /// Appends a decision; for `approve`, with its pending approval; for a
    /// release, marking the approval used (refused if it was used already).
    fn append_decision(&self, record: NewDecision) -> Self::Ack<DecisionReceipt>;
    /// Appends a tool's result for a logged decision of the same session.
    fn append_result(&self, record: NewResult) -> Self::Ack<u64>;
    /// Appends a user's input to a session.
    fn append_input(&self, record: NewInput) -> Self::Ack<u64>;
    /// Appends a human's verdict on a pending approval.
    fn append_verdict(&self, verdict: ApprovalDecision) -> Self::Ack<Approval>;
}
