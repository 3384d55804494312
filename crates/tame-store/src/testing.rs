//! Test support shared by this crate's tests, benches and examples and the
//! server's tests: builders for the store's inputs with the defaults the
//! tests share, and a fresh PostgreSQL database per test on the server
//! named by `TAME_TEST_DATABASE_URL` (see `scripts/pg-test.sh`). Not part
//! of the store's API.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use postgres::{Client, NoTls};
use serde_json::{Value, json};
use tame_engine::Action;

use crate::canonical::call_hash;
use crate::{
    ApprovalDecision, DecisionReceipt, Durability, NewApproval, NewDecision, NewResult, PgOptions, PgStore, Release,
    SessionQuery, SqliteOptions, SqliteStore, Store, StoreResult,
};

// ---------------------------------------------------------------- inputs

/// When the tests' decisions are made unless they say otherwise:
/// 2026-11-21T06:00:00Z.
pub const T0: Timestamp = Timestamp::constant(1_795_240_800, 0);

/// A test decision: `allow` of tool `t` with arguments
/// `{"path": "/tmp/x", "n": 1}` at [`T0`], by agent `agent-1` and no user,
/// matched by rule `r1` (reason `Matched rule: r1`) of policy version `v1`,
/// creating or releasing no approval. Change what a test needs with the
/// [`DecisionExt`] setters or by setting fields.
pub fn decision(log_id: &str, session_id: &str) -> NewDecision {
    NewDecision {
        log_id: log_id.into(),
        session_id: session_id.into(),
        timestamp: T0,
        tool_name: "t".into(),
        tool_args: json!({"path": "/tmp/x", "n": 1}),
        agent_id: Some("agent-1".into()),
        user_id: None,
        metadata: json!({}),
        decision: Action::Allow,
        rule_name: Some("r1".into()),
        reason: "Matched rule: r1".into(),
        policy_version: "v1".into(),
        new_approval: None,
        release_of: None,
    }
}

/// The decision the benchmarks and the throughput example append:
/// `read_file` of `/home/u/{n}.txt`, allowed by rule `allow_reads` of
/// policy version `1` for agent `bench`, made now.
pub fn read_decision(log_id: &str, session_id: &str, n: u64) -> NewDecision {
    decision(log_id, session_id)
        .tool("read_file")
        .args(json!({"path": format!("/home/u/{n}.txt")}))
        .agent(Some("bench"))
        .rule("allow_reads")
        .policy_version("1")
        .at(Timestamp::now())
}

/// Chainable setters for [`NewDecision`] in tests.
pub trait DecisionExt: Sized {
    /// The tool called.
    fn tool(self, name: &str) -> Self;
    /// The call's arguments.
    fn args(self, args: Value) -> Self;
    /// The decision's action.
    fn action(self, action: Action) -> Self;
    /// When the decision was made.
    fn at(self, at: Timestamp) -> Self;
    /// The calling agent.
    fn agent(self, agent: Option<&str>) -> Self;
    /// The calling user.
    fn user(self, user: Option<&str>) -> Self;
    /// Matched by rule `name`, with the reason `Matched rule: {name}`.
    fn rule(self, name: &str) -> Self;
    /// Matched by no rule (the policy's default), for `reason`.
    fn no_rule(self, reason: &str) -> Self;
    /// The policy version that decided.
    fn policy_version(self, version: &str) -> Self;
    /// An `approve` decision creating approval `id`, pending until
    /// `expires_at`, for this call (its hash is taken from the tool,
    /// arguments and session set so far: set those first).
    fn approval(self, id: &str, expires_at: Timestamp) -> Self;
    /// A call released by approval `approval_id` with call hash `call_hash`.
    fn release(self, approval_id: &str, call_hash: &str) -> Self;
}

impl DecisionExt for NewDecision {
    fn tool(mut self, name: &str) -> Self {
        self.tool_name = name.into();
        self
    }

    fn args(mut self, args: Value) -> Self {
        self.tool_args = args;
        self
    }

    fn action(mut self, action: Action) -> Self {
        self.decision = action;
        self
    }

    fn at(mut self, at: Timestamp) -> Self {
        self.timestamp = at;
        self
    }

    fn agent(mut self, agent: Option<&str>) -> Self {
        self.agent_id = agent.map(Into::into);
        self
    }

    fn user(mut self, user: Option<&str>) -> Self {
        self.user_id = user.map(Into::into);
        self
    }

    fn rule(mut self, name: &str) -> Self {
        self.rule_name = Some(name.into());
        self.reason = format!("Matched rule: {name}");
        self
    }

    fn no_rule(mut self, reason: &str) -> Self {
        self.rule_name = None;
        self.reason = reason.into();
        self
    }

    fn policy_version(mut self, version: &str) -> Self {
        self.policy_version = version.into();
        self
    }

    fn approval(mut self, id: &str, expires_at: Timestamp) -> Self {
        self.decision = Action::Approve;
        self.new_approval = Some(NewApproval {
            id: id.into(),
            call_hash: call_hash(&self.tool_name, &self.tool_args, &self.session_id),
            expires_at,
        });
        self
    }

    fn release(mut self, approval_id: &str, call_hash: &str) -> Self {
        self.release_of = Some(Release {
            approval_id: approval_id.into(),
            call_hash: call_hash.into(),
        });
        self
    }
}

/// A tool's result `result` for decision `log_id` of `session_id`,
/// revealing no labels.
pub fn result(session_id: &str, log_id: &str, at: Timestamp, result: Value) -> NewResult {
    NewResult {
        session_id: session_id.into(),
        log_id: log_id.into(),
        timestamp: at,
        result,
        labels: Vec::new(),
    }
}

/// Approves (`approve`) or rejects approval `id` at `at`, by no one named,
/// for no reason given.
pub fn verdict(id: &str, approve: bool, at: Timestamp) -> ApprovalDecision {
    ApprovalDecision {
        id: id.into(),
        approve,
        by: None,
        reason: None,
        at,
    }
}

/// Page `page` (from 1) of `page_size` sessions, unfiltered.
pub fn sessions_page(page: u64, page_size: u64) -> SessionQuery {
    SessionQuery {
        page,
        page_size,
        ..Default::default()
    }
}

// ---------------------------------------------------------------- stores

/// A SQLite store at `path` with the given durability and the secret file
/// beside it.
pub fn sqlite_store(path: impl AsRef<Path>, durability: Durability) -> StoreResult<SqliteStore> {
    SqliteStore::open(
        path,
        SqliteOptions {
            durability,
            ..Default::default()
        },
    )
}

/// A PostgreSQL store at `url` with the given audit secret and durability.
pub fn pg_store(url: &str, secret: Vec<u8>, durability: Durability) -> StoreResult<PgStore> {
    PgStore::open(
        url,
        PgOptions {
            durability,
            ..PgOptions::new(secret)
        },
    )
}

/// Sends all `decisions` to `store` together (in flight at once, so the
/// writer group-commits them), then waits for every one; returns their
/// receipts in order, or the first error.
pub fn record_all(
    store: &dyn Store,
    decisions: impl IntoIterator<Item = NewDecision>,
) -> StoreResult<Vec<DecisionReceipt>> {
    let tickets: Vec<_> = decisions.into_iter().map(|d| store.record_decision(d)).collect();
    let mut receipts = Vec::with_capacity(tickets.len());
    let mut first_error = None;
    for ticket in tickets {
        match ticket.wait() {
            Ok(receipt) => receipts.push(receipt),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(receipts),
    }
}

// ---------------------------------------------------------------- PostgreSQL

/// The variable naming the PostgreSQL server for tests.
pub const TEST_DATABASE_URL: &str = "TAME_TEST_DATABASE_URL";

/// Why a PostgreSQL test cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    /// No server configured, outside CI: the caller skips the test.
    #[error("{TEST_DATABASE_URL} is not set")]
    NotConfigured,
    #[error(
        "{TEST_DATABASE_URL} is not set but CI is: the PostgreSQL tests must run in CI \
         (run them through scripts/pg-test.sh)"
    )]
    MissingInCi,
    #[error("cannot create a test database on `{url}`: {message}")]
    Create { url: String, message: String },
}

/// Creates an empty database named after `label` (plus a unique suffix) on
/// the test server and returns its URL. `Err(NotConfigured)` when
/// `TAME_TEST_DATABASE_URL` is unset and `CI` is not; `Err(MissingInCi)`
/// when it is unset in CI, where a skipped test would hide a failure.
pub fn fresh_database(label: &str) -> Result<String, TestDbError> {
    let base = match std::env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.trim().is_empty() => url,
        _ if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => return Err(TestDbError::MissingInCi),
        _ => return Err(TestDbError::NotConfigured),
    };
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!(
        "t_{clean}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        jiff::Timestamp::now().as_microsecond() % 1_000_000_000
    );
    let shown = crate::redact_url(&base);
    let create = |e: String| TestDbError::Create {
        url: shown.clone(),
        message: e,
    };
    // Runs on a plain thread: the synchronous client must not run inside
    // the caller's async runtime (server tests are async).
    let sql = format!("CREATE DATABASE \"{name}\"");
    let admin_url = base.clone();
    std::thread::spawn(move || -> Result<(), String> {
        let mut admin = Client::connect(&admin_url, NoTls).map_err(|e| e.to_string())?;
        admin.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| create("the setup thread panicked".into()))?
    .map_err(create)?;
    Ok(with_database(&base, &name))
}

/// [`fresh_database`] for a test that skips itself without a server:
/// `Ok(None)` (after saying so on stderr) when none is configured outside
/// CI; in CI, or when the database cannot be made, the error.
pub fn database_or_skip(label: &str) -> Result<Option<String>, TestDbError> {
    match fresh_database(label) {
        Ok(url) => Ok(Some(url)),
        Err(TestDbError::NotConfigured) => {
            eprintln!("skipped: {TEST_DATABASE_URL} is not set (run scripts/pg-test.sh)");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `url` pointing at database `name` instead of its own.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let query_at = rest.find('?').unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    let host_end = before_query.rfind('@').map_or(0, |at| at + 1);
    let (userhost_head, after_user) = before_query.split_at(host_end);
    let authority = match after_user.find('/') {
        Some(slash) => after_user.split_at(slash).0,
        None => after_user,
    };
    format!("{scheme}{userhost_head}{authority}/{name}{query}")
}

/// Runs SQL on the database at `url` (e.g. to tamper with the log in a
/// test), on a plain thread; returns the rows the last statement changed.
pub fn execute(url: &str, sql: &str) -> Result<u64, String> {
    let url = url.to_string();
    let sql = sql.to_string();
    std::thread::spawn(move || -> Result<u64, String> {
        let mut client = Client::connect(&url, NoTls).map_err(|e| e.to_string())?;
        client.execute(sql.as_str(), &[]).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the sql thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_swapped_in_the_url() {
        assert_eq!(
            with_database("postgres://tame@127.0.0.1:5432/tame_test", "t_x"),
            "postgres://tame@127.0.0.1:5432/t_x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "n"),
            "postgresql://u:p@h/n?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "n"), "postgres://h:1/n");
    }
}
