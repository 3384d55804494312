//! Tame's enforcement path: a call's life cycle in one place, for every
//! frontend.
//!
//! The engine (`tame_engine`) decides a request against session facts; this
//! crate owns everything around that decision, without any I/O:
//!
//! - reading a call ([`Call::from_json`], `approval_id` included; errors
//!   name the JSON path);
//! - the one session-state type ([`SessionState`]: history, windowed
//!   per-tool counts, caps) and the counts-as-run rule
//!   ([`SessionState::record`]);
//! - the approval rules: expiry, verdicts, and the approval-release rule
//!   ([`approval`]);
//! - redaction before storage ([`redact`]);
//! - the typed outcome ([`Enforcer::evaluate`], [`Enforcer::finish`]): the
//!   decision, the audit record to append, the approval to create or to
//!   consume.
//!
//! Persistence sits behind narrow traits ([`SessionSource`],
//! [`ApprovalSource`], [`AuditSink`]) implemented by the SQLite and
//! PostgreSQL stores and by [`MemoryStore`], which `tame eval`/`tame test`,
//! the Python engine and the MCP proxy's embedded guard use. No frontend
//! keeps a session map of its own or restates one of these rules.
//!
//! ```
//! use tame_enforce::{Call, Enforcer, MemoryStore};
//! use tame_engine::{Action, Policy};
//!
//! let policy = Policy::from_yaml(
//!     r#"
//! version: "1"
//! rules:
//!   - name: one_email
//!     action: deny
//!     tools: ["send_email"]
//!     condition: 'session.count("send_email") >= 1'
//!   - name: rest
//!     action: allow
//! "#,
//!     "policies.yml",
//! )
//! .unwrap();
//! let store = MemoryStore::new();
//! let enforcer = Enforcer::with_policy(&policy);
//! let call = || Call::new("send_email", serde_json::json!({"to": "a@b.c"}), "s1").unwrap();
//! assert_eq!(store.enforce(&enforcer, call()).unwrap().decision.action, Action::Allow);
//! assert_eq!(store.enforce(&enforcer, call()).unwrap().decision.action, Action::Deny);
//! ```

pub mod approval;
mod call;
pub mod canonical;
mod enforcer;
mod memory;
mod persist;
pub mod provenance;
mod records;
pub mod redact;
mod session;
mod timestamp;

pub use approval::ApprovalError;
pub use call::{Call, id_text};
pub use enforcer::{
    ApprovalStep, DEFAULT_APPROVAL_TIMEOUT, Decided, Enforcer, InputOutcome, MAX_INPUT_TEXT, Outcome, Refusal,
    ResultOutcome, result_provenance,
};
pub use memory::{DEFAULT_LOG_CAPACITY, EnforceError, MemoryError, MemoryStore};
pub use persist::{ApprovalSource, AuditSink, SessionSource};
pub use records::{
    Approval, ApprovalDecision, ApprovalState, DecisionReceipt, LogEntry, NewApproval, NewDecision, NewInput,
    NewResult, Release, SessionSummary, StateVersion,
};
pub use redact::Redactor;
pub use session::{
    CallStep, FactsView, MAX_HISTORY, MAX_HISTORY_BYTES, MAX_INPUT_BYTES, MAX_PENDING, MAX_RESULT_BYTES,
    MAX_TIMES_PER_TOOL, ResultSlot, ResultSource, SessionCell, SessionHandle, SessionState, approx_bytes,
};
pub use tame_engine::{Action, Decision, RequestError, SessionFacts, json_to_value};
pub use timestamp::format_timestamp;
