//! Tame's store: the hash-chained audit log, sessions, approvals, policy
//! versions and session facts, behind one [`Store`] trait.
//!
//! The default backend is [`SqliteStore`]: an embedded SQLite database in
//! WAL mode whose single writer thread group-commits records and answers
//! each one only after its transaction is committed. [`PgStore`] keeps the
//! same records in PostgreSQL (`tame serve --db postgres://...`), with the
//! same chain, one writer per database (an advisory lock) and all its I/O
//! on its own threads. Session facts live in memory and are read by the
//! evaluator without I/O.
//!
//! Every change (decision, tool result, user input, approval step, policy
//! load) is one row of the `audit` table. Each row holds an HMAC-SHA256,
//! keyed with the server's secret, over its own fields and the previous
//! row's hash, so [`Store::verify`] finds an edited or a deleted row and
//! names it. Rows
//! deleted from the end of the log leave no gap: the chain's head is also
//! witnessed outside the database, in signed checkpoints written to a file
//! (beside a SQLite database by default) and to the JSON log, and `verify`
//! holds the log against them (see `checkpoint.rs`). Approval state
//! changes are records of the chain too, and an approval is only ever
//! used as its records tell it, whatever its row in the approvals table
//! says. A SQLite database has one store at a time: a second open of the
//! same file, in this process or another, is refused (`lock.rs`).

mod checkpoint;
mod jobs;
mod lock;
mod postgres;
mod reads;
mod record;
mod schema;
mod secret;
mod sqlite;
#[doc(hidden)]
pub mod testing;
mod types;
mod walvfs;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Canonical JSON and the call hash: the enforcement path's.
pub use tame_enforce::canonical;
pub use tame_enforce::format_timestamp;
/// Session state: the enforcement path's one type.
pub use tame_enforce::{FactsView, MAX_TIMES_PER_TOOL, SessionCell, SessionState};
/// A shared handle on one session's state.
pub type FactsHandle = tame_enforce::SessionHandle;
pub use postgres::{MAX_NODE_ID, PG_SCHEMA_VERSION, PgOptions, PgStore, is_postgres_url, node_id, redact_url};
pub use secret::load_or_create_secret;
pub use sqlite::{Durability, SqliteOptions, SqliteStore};
pub use types::*;

/// What a store shared by several servers tells each of them of the
/// others' writes ([`Store::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// Approval `id` was decided, expired or used, on some server.
    Approval(String),
    /// Some server stored a policy version.
    Policy,
    /// Events may have been missed (the store's listener reconnected):
    /// whatever waits on them should look again.
    Missed,
}

/// Called with each [`StoreEvent`], on the store's own thread.
pub type EventHandler = Arc<dyn Fn(StoreEvent) + Send + Sync>;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("i/o error at `{path}`: {message}")]
    Io { path: String, message: String },
    #[error("log entry `{0}` not found")]
    LogNotFound(String),
    #[error("log entry `{log_id}` belongs to another session than `{session_id}`")]
    SessionMismatch { log_id: String, session_id: String },
    #[error("approval `{0}` not found")]
    ApprovalNotFound(String),
    #[error("approval `{id}` is {state}, not {expected}")]
    ApprovalState {
        id: String,
        state: ApprovalState,
        expected: &'static str,
    },
    #[error("approval `{0}` was already used to release a call")]
    ApprovalUsed(String),
    #[error("approval `{0}` was granted for a different call")]
    ApprovalMismatch(String),
    /// The approvals table says something the approval's chained records
    /// do not: the row was forged or altered, and is not acted on.
    #[error("approval `{id}` does not match its audit records ({detail}): refusing to use it")]
    ApprovalForged { id: String, detail: String },
    /// A record of a session's history was edited, deleted or moved outside
    /// tame: the session's state cannot be rebuilt, and no call of the
    /// session is decided on a history that may have been shortened.
    #[error(
        "session `{session_id}`'s history is damaged at audit record {seq}: {detail}; refusing to decide \
         its calls (run `tame audit verify`)"
    )]
    SessionDamaged {
        session_id: String,
        seq: u64,
        detail: String,
    },
    /// A stored policy version does not match its record in the audit
    /// chain: it was written or altered outside tame and is not served.
    #[error("stored policy version {id} does not match its audit record ({detail}): refusing to serve it")]
    PolicyForged { id: u64, detail: String },
    /// Another server recorded to the session after the state the decision
    /// was made on: nothing was written; decide again on the stored session.
    #[error(
        "session `{session_id}` moved on while the call was decided (another server recorded to it): \
         decide it again"
    )]
    SessionMoved { session_id: String },
    /// Another store (in this process or another) has the SQLite database open.
    #[error(
        "another tame server has the SQLite database `{path}` open (it holds the lock on `{lock}`): \
         only one server per database file (several servers need PostgreSQL)"
    )]
    Locked { path: String, lock: String },
    #[error("invalid audit secret: {0}")]
    Secret(String),
    #[error("the store's writer has stopped")]
    WriterGone,
}

impl From<tame_enforce::ApprovalError> for StoreError {
    fn from(e: tame_enforce::ApprovalError) -> Self {
        use tame_enforce::ApprovalError as E;
        match e {
            E::NotFound(id) => StoreError::ApprovalNotFound(id),
            E::State { id, state, expected } => StoreError::ApprovalState { id, state, expected },
            E::Used(id) => StoreError::ApprovalUsed(id),
            E::Mismatch(id) => StoreError::ApprovalMismatch(id),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// Result type of the store.
pub type StoreResult<T> = Result<T, StoreError>;

/// Most entries [`Store::recent_decisions`] returns.
pub const MAX_RECENT_DECISIONS: u64 = 1000;
/// Most entries in one [`Store::session_log_page`].
pub const MAX_LOG_PAGE: u64 = 1000;
/// Most approvals [`Store::decided_approvals`] returns.
pub const MAX_DECIDED_APPROVALS: u64 = 1000;
/// Most problems a [`VerifyReport`] lists (the rest are counted).
pub const MAX_REPORTED_PROBLEMS: usize = 1000;

/// The acknowledgement of a write: resolves once the record is committed
/// (or failed). Await it from async code or call [`Ticket::wait`] from a
/// plain thread.
#[derive(Debug)]
pub struct Ticket<T>(TicketInner<T>);

#[derive(Debug)]
enum TicketInner<T> {
    Waiting(tokio::sync::oneshot::Receiver<StoreResult<T>>),
    Ready(Option<StoreResult<T>>),
}

impl<T> Ticket<T> {
    pub(crate) fn new(rx: tokio::sync::oneshot::Receiver<StoreResult<T>>) -> Self {
        Ticket(TicketInner::Waiting(rx))
    }

    /// A ticket that is already resolved (e.g. with an error).
    pub fn ready(result: StoreResult<T>) -> Self {
        Ticket(TicketInner::Ready(Some(result)))
    }

    /// Blocks the current thread until the write is committed. Await the
    /// ticket in async code instead: this would hold up the executor's
    /// thread meanwhile (it never panics there, though).
    pub fn wait(self) -> StoreResult<T> {
        pollster::block_on(self)
    }
}

// The ticket never pins its contents: it holds a receiver (Unpin) or a
// finished result it moves out.
impl<T> Unpin for Ticket<T> {}

impl<T> Future for Ticket<T> {
    type Output = StoreResult<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            TicketInner::Waiting(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or(Err(StoreError::WriterGone))),
            TicketInner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(StoreError::WriterGone))),
        }
    }
}

/// The store behind the server and the CLI. Writes return a [`Ticket`] that
/// resolves after the commit; reads are plain calls that may block briefly
/// on the database (call them off the async executor).
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The in-memory facts of a session, read back from the log when the
    /// session is not in memory (after a restart, or after it sat idle):
    /// its decided calls, its results (value, source, labels and
    /// provenance under [`Store::redactor`]'s index key) and its user
    /// inputs, in the order they were recorded.
    fn session_facts(&self, session_id: &str) -> StoreResult<FactsHandle>;
    /// The facts of a session known to be new (e.g. an id just generated):
    /// never reads the database.
    fn fresh_session_facts(&self, session_id: &str) -> FactsHandle;
    /// The facts of a session when they are in memory; never reads the
    /// database (`None`: call [`Store::session_facts`] off the executor).
    fn cached_session_facts(&self, _session_id: &str) -> Option<FactsHandle> {
        None
    }
    /// Drops the session's facts from memory (after a
    /// [`StoreError::SessionMoved`]): the next [`Store::session_facts`]
    /// reads the session as stored.
    fn forget_session_facts(&self, _session_id: &str) {}
    /// Whether the store checks a decision's
    /// [`NewDecision::session_version`] (it is shared by several servers)
    /// and may refuse it with [`StoreError::SessionMoved`].
    fn checks_session_versions(&self) -> bool {
        false
    }
    /// Calls `on` with what other servers sharing the store do (approvals
    /// they decide, policies they store), as it is committed. A store no
    /// other server can write to has nothing to tell.
    fn subscribe(&self, _on: EventHandler) {}

    /// Appends a decision (and, for `approve`, its pending approval; for a
    /// release, marks the approval used, with an `approval_released`
    /// record) to the log. A release is checked against the approval's
    /// records in the chain, not only its row: a row that does not match
    /// them fails with [`StoreError::ApprovalForged`], and an approval not
    /// used before its expiry has expired.
    fn record_decision(&self, decision: NewDecision) -> Ticket<DecisionReceipt>;
    /// Records a tool's result, and the session labels it revealed, for a
    /// logged decision of the same session.
    fn record_result(&self, result: NewResult) -> Ticket<u64>;
    /// Records a user's input to a session (an `input` record; the session
    /// need not have logged anything yet).
    fn record_input(&self, input: NewInput) -> Ticket<u64>;
    /// The redactor keyed with this store's audit secret: the key of the
    /// provenance hashes of the session states it reads back from the log
    /// ([`tame_enforce::Redactor::index_key`]). A server deciding over this
    /// store must redact and index with the same key (the same secret), or
    /// a session read back from the log does not find its own results.
    fn redactor(&self) -> &tame_enforce::Redactor {
        tame_enforce::Redactor::unkeyed()
    }
    /// Approves or rejects a pending approval.
    fn decide_approval(&self, decision: ApprovalDecision) -> Ticket<Approval>;
    /// Marks approvals whose time ran out unused (pending, or approved and
    /// not used) as expired; returns their ids.
    fn expire_approvals(&self, now: jiff::Timestamp) -> Ticket<Vec<String>>;
    /// Stores a loaded policy version (source text and hash).
    fn record_policy(&self, policy: NewPolicyVersion) -> Ticket<u64>;
    /// Resolves once everything queued before it is committed.
    fn flush(&self) -> Ticket<()>;

    /// Sessions, newest first, filtered and paged.
    fn sessions(&self, query: &SessionQuery) -> StoreResult<SessionPage>;
    /// One session's summary.
    fn session_summary(&self, session_id: &str) -> StoreResult<Option<SessionSummary>>;
    /// One session's log entries in order, `None` for an unknown session.
    fn session_log(&self, session_id: &str) -> StoreResult<Option<Vec<LogEntry>>>;
    /// One log entry.
    fn log_entry(&self, log_id: &str) -> StoreResult<Option<LogEntry>>;
    /// Sessions and their decisions (allowed, denied, approved) summed
    /// over every session by the database, in one query over the session
    /// summaries.
    fn decision_totals(&self) -> StoreResult<DecisionTotals>;
    /// The newest `limit` decisions of all sessions (at most
    /// [`MAX_RECENT_DECISIONS`]), newest first, each with its result. Reads
    /// the end of the log backwards: the work grows with `limit`, not with
    /// the log.
    fn recent_decisions(&self, limit: u64) -> StoreResult<Vec<LogEntry>>;
    /// One page of a session's log: the entries `offset..offset + limit` of
    /// [`Store::session_log`] (oldest first; `limit` at most
    /// [`MAX_LOG_PAGE`]) and the number of entries in the whole log; `None`
    /// for an unknown session. Reads the bodies of the page's entries
    /// only. A session's records are linked backwards from its newest
    /// one, so the link columns of the records after the page are walked:
    /// the newest pages cost the least.
    fn session_log_page(&self, session_id: &str, offset: u64, limit: u64) -> StoreResult<Option<LogPage>>;
    /// Approvals, newest first, optionally only those in `state`. Only
    /// the pending ones (unexpired at `now`) are found through an index
    /// alone: the others grow with the history.
    fn approvals(&self, state: Option<ApprovalState>, now: jiff::Timestamp) -> StoreResult<Vec<Approval>>;
    /// The newest `limit` approvals (at most [`MAX_DECIDED_APPROVALS`]) no
    /// longer pending at `now` (approved, rejected or expired), newest
    /// first, as [`Store::approvals`] orders them.
    fn decided_approvals(&self, limit: u64, now: jiff::Timestamp) -> StoreResult<Vec<Approval>>;
    /// One approval, as its records in the chain tell it (a row that says
    /// otherwise is logged, and one without records is not returned); a
    /// pending or unused approved one past its expiry reads as expired.
    fn approval(&self, id: &str, now: jiff::Timestamp) -> StoreResult<Option<Approval>>;
    /// Every stored policy version, oldest first.
    fn policy_versions(&self) -> StoreResult<Vec<PolicyVersion>>;
    /// The newest stored policy version, once its row is shown to be the
    /// one its `policy_loaded` record in the chain names (a row written
    /// outside tame is [`StoreError::PolicyForged`]): what a server sharing
    /// the store adopts from the others.
    fn newest_policy_version(&self) -> StoreResult<Option<PolicyVersion>> {
        Ok(self.policy_versions()?.into_iter().max_by_key(|v| v.id))
    }
    /// Checks the audit chain and lists every problem found: edited,
    /// missing or unlinked records, a log shorter than its recorded or
    /// witnessed head, a record that is not the witnessed one, problems of
    /// the checkpoint file, and approvals whose rows do not match their
    /// records.
    fn verify(&self) -> StoreResult<VerifyReport>;
    /// Writes the audit log as JSON lines; returns the number of records.
    fn export(&self, out: &mut dyn std::io::Write) -> StoreResult<u64>;
}

// The enforcement path's persistence traits, over any store: session
// history and approvals in, audit records out.

impl tame_enforce::SessionSource for dyn Store {
    type Error = StoreError;

    fn session_state(&self, key: &str, fresh: bool) -> StoreResult<FactsHandle> {
        if fresh {
            Ok(self.fresh_session_facts(key))
        } else {
            self.session_facts(key)
        }
    }
}

impl tame_enforce::ApprovalSource for dyn Store {
    type Error = StoreError;

    fn load_approval(&self, id: &str, now: jiff::Timestamp) -> StoreResult<Option<Approval>> {
        self.approval(id, now)
    }
}

impl tame_enforce::AuditSink for dyn Store {
    type Ack<T> = Ticket<T>;

    fn append_decision(&self, record: NewDecision) -> Ticket<DecisionReceipt> {
        self.record_decision(record)
    }

    fn append_result(&self, record: NewResult) -> Ticket<u64> {
        self.record_result(record)
    }

    fn append_input(&self, record: NewInput) -> Ticket<u64> {
        self.record_input(record)
    }

    fn append_verdict(&self, verdict: ApprovalDecision) -> Ticket<Approval> {
        self.decide_approval(verdict)
    }
}
