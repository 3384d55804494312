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
use tame_enforce::Action;

use crate::canonical::call_hash;
use crate::{
    ApprovalDecision, DecisionReceipt, DecisionTotals, Durability, NewApproval, NewDecision, NewResult, PgOptions,
    PgStore, Release, SessionQuery, SqliteOptions, SqliteStore, Store, StoreResult,
};

// ---------------------------------------------------------------- data flow

/// A policy over session memory, shared by the store's and the server's
/// data-flow tests: money goes only to an account the user named
/// (`from_input`); a payee found in what a tool returned is denied first
/// (`from_results`); text copied from a result does not leave by e-mail
/// (`carries_from_results`).
pub const FLOW_POLICY: &str = r#"
version: "flow-1"
default: deny
rules:
  - name: payee_from_results
    action: deny
    tools: [send_money]
    condition: 'from_results(args.iban) && !from_input(args.iban)'
  - name: payee_from_user
    action: allow
    tools: [send_money]
    condition: 'from_input(args.iban)'
  - name: copied_text
    action: deny
    tools: [send_email]
    condition: 'carries_from_results(args.body)'
  - name: reads
    action: allow
    tools: [read_email, get_page, send_email]
"#;

/// The user's account in the data-flow tests (as a person writes it).
pub const USER_IBAN: &str = "DE89 3704 0044 0532 0130 00";
/// The account an injected e-mail names.
pub const ATTACKER_IBAN: &str = "GB33BUKB20201555555555";

/// Decides `call` as the server's service layer does, synchronously: under
/// the session's lock the decision, its record built and the call recorded
/// in the state with its log id (a call that ran waits for its result);
/// then the record committed. Errors say which step failed.
pub fn enforce_call(
    store: &dyn Store,
    enforcer: &tame_enforce::Enforcer<'_>,
    call: tame_enforce::Call,
) -> Result<tame_enforce::Outcome, String> {
    let cell = store
        .session_facts(&enforcer.session_key(&call))
        .map_err(|e| format!("session state: {e}"))?;
    let outcome = {
        let mut state = cell.lock();
        let decided = enforcer
            .evaluate(&call, &state, None)
            .map_err(|e| format!("refused: {e}"))?;
        let outcome = enforcer.finish(call, decided);
        state.apply(&outcome);
        outcome
    };
    store
        .record_decision(outcome.record.clone())
        .wait()
        .map_err(|e| format!("the decision was not recorded: {e}"))?;
    Ok(outcome)
}

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
    let args = json!({"path": "/tmp/x", "n": 1});
    allowed(log_id, session_id, T0, "t", args, "agent-1", "r1").policy_version("v1")
}

/// The decision the benchmarks and the throughput example append:
/// `read_file` of `/home/u/{n}.txt`, allowed by rule `allow_reads` of
/// policy version `1` for agent `bench`, made now. Built without
/// [`decision`]'s setters, which would build its values only to drop them.
pub fn read_decision(log_id: &str, session_id: &str, n: u64) -> NewDecision {
    let args = json!({"path": format!("/home/u/{n}.txt")});
    let now = Timestamp::now();
    allowed(log_id, session_id, now, "read_file", args, "bench", "allow_reads")
}

/// An allowed call by `agent` matched by `rule`, of policy version `1`.
fn allowed(
    log_id: &str,
    session_id: &str,
    at: Timestamp,
    tool: &str,
    args: Value,
    agent: &str,
    rule: &str,
) -> NewDecision {
    NewDecision {
        log_id: log_id.into(),
        session_id: session_id.into(),
        timestamp: at,
        tool_name: tool.into(),
        tool_args: args,
        agent_id: Some(agent.into()),
        user_id: None,
        metadata: json!({}),
        decision: Action::Allow,
        rule_name: Some(rule.into()),
        reason: format!("Matched rule: {rule}"),
        policy_version: "1".into(),
        new_approval: None,
        release_of: None,
        session_version: None,
    }
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
        source: tame_enforce::ResultSource::Agent,
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

/// Decision totals summed over the session list, 1000 sessions a page
/// (what the dashboard did before [`Store::decision_totals`]): the
/// reference the totals are tested and benchmarked against.
pub fn totals_by_paging(store: &dyn Store) -> StoreResult<DecisionTotals> {
    const PAGE_SIZE: u64 = 1000;
    let mut t = DecisionTotals::default();
    for page in 1.. {
        let p = store.sessions(&sessions_page(page, PAGE_SIZE))?;
        t.sessions = p.total_count;
        for s in &p.sessions {
            t.total += s.total_calls;
            t.allowed += s.allowed_calls;
            t.denied += s.denied_calls;
            t.approved += s.approved_calls;
        }
        if p.sessions.is_empty() || page.saturating_mul(PAGE_SIZE) >= p.total_count {
            break;
        }
    }
    Ok(t)
}

/// The ids of a session's log entries, oldest first (empty for an
/// unknown session).
pub fn session_log_ids(store: &dyn Store, session_id: &str) -> StoreResult<Vec<String>> {
    let log = store.session_log(session_id)?.unwrap_or_default();
    Ok(log.into_iter().map(|e| e.id).collect())
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

/// Whether the PostgreSQL benchmarks run: `TAME_TEST_DATABASE_URL` names a
/// server. When it does not, says so on stderr.
pub fn pg_benches_enabled() -> bool {
    let enabled = std::env::var_os(TEST_DATABASE_URL).is_some();
    if !enabled {
        eprintln!("pg benchmarks skipped: {TEST_DATABASE_URL} is not set (run through scripts/pg-test.sh)");
    }
    enabled
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

/// Runs one statement with one text parameter (`$1`) on the database at
/// `url`; returns the rows it changed.
pub fn execute_with(url: &str, sql: &str, param: &str) -> Result<u64, String> {
    let (url, sql, param) = (url.to_string(), sql.to_string(), param.to_string());
    std::thread::spawn(move || -> Result<u64, String> {
        let mut client = Client::connect(&url, NoTls).map_err(|e| e.to_string())?;
        client.execute(sql.as_str(), &[&param]).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the sql thread panicked".to_string())?
}

/// Runs a script of SQL statements (such as a `pg_dump` in plain format,
/// its `\` meta-command lines left out) on the database at `url`.
pub fn execute_batch(url: &str, script: &str) -> Result<(), String> {
    let url = url.to_string();
    let sql: String = script
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n");
    std::thread::spawn(move || -> Result<(), String> {
        let mut client = Client::connect(&url, NoTls).map_err(|e| e.to_string())?;
        client.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the sql thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    #[test]
    fn t0_is_the_tests_usual_instant() {
        assert_eq!(T0, "2026-11-21T06:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(decision("l", "s").timestamp, T0);
    }

    #[test]
    fn the_setters_change_only_their_fields() {
        let base = decision("l1", "s1");
        assert_eq!((base.tool_name.as_str(), base.decision), ("t", Action::Allow));
        assert_eq!(base.rule_name.as_deref(), Some("r1"));
        assert_eq!(base.reason, "Matched rule: r1");
        let at = T0 + jiff::SignedDuration::from_secs(5);
        let d = decision("l1", "s1")
            .tool("send_email")
            .args(json!({"to": "a@b"}))
            .action(Action::Deny)
            .at(at)
            .agent(None)
            .user(Some("u1"))
            .no_rule("default")
            .policy_version("v9");
        assert_eq!((d.log_id.as_str(), d.session_id.as_str()), ("l1", "s1"));
        assert_eq!(d.tool_name, "send_email");
        assert_eq!(d.tool_args, json!({"to": "a@b"}));
        assert_eq!((d.decision, d.timestamp), (Action::Deny, at));
        assert_eq!((d.agent_id.as_deref(), d.user_id.as_deref()), (None, Some("u1")));
        assert_eq!((d.rule_name.as_deref(), d.reason.as_str()), (None, "default"));
        assert_eq!(d.policy_version, "v9");
        assert_eq!(d.metadata, base.metadata);
        let d = d.rule("r2");
        assert_eq!(
            (d.rule_name.as_deref(), d.reason.as_str()),
            (Some("r2"), "Matched rule: r2")
        );
    }

    #[test]
    fn an_approval_is_for_the_call_as_built_so_far() {
        let expires = T0 + jiff::SignedDuration::from_hours(1);
        let d = decision("l1", "s2").tool("query_database").approval("a1", expires);
        assert_eq!(d.decision, Action::Approve);
        let approval = d.new_approval.as_ref().unwrap();
        assert_eq!((approval.id.as_str(), approval.expires_at), ("a1", expires));
        assert_eq!(approval.call_hash, call_hash("query_database", &d.tool_args, "s2"));
        assert_ne!(approval.call_hash, call_hash("t", &d.tool_args, "s2"));
        let r = decision("l2", "s2").release("a1", &approval.call_hash);
        let release = r.release_of.unwrap();
        assert_eq!(
            (release.approval_id, release.call_hash),
            ("a1".into(), approval.call_hash.clone())
        );
    }

    #[test]
    fn record_all_waits_for_every_decision_and_reports_the_first_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path().join("t.db"), Durability::Normal).unwrap();
        let receipts = record_all(&store, (0..3).map(|i| decision(&format!("l{i}"), "s1"))).unwrap();
        assert_eq!(receipts.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        // A release of an approval that does not exist fails; the others
        // around it are still written and waited for.
        let batch = [
            decision("m0", "s1"),
            decision("m1", "s1").release("nope", "h"),
            decision("m2", "s1"),
        ];
        let err = record_all(&store, batch).unwrap_err();
        assert!(
            matches!(err, crate::StoreError::ApprovalNotFound(ref id) if id == "nope"),
            "{err}"
        );
        assert_eq!(session_log_ids(&store, "s1").unwrap(), ["l0", "l1", "l2", "m0", "m2"]);
    }

    #[test]
    fn totals_by_paging_sums_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path().join("t.db"), Durability::Normal).unwrap();
        // 1001 sessions: two pages, the second with one session.
        let decisions = (0..1003u64).map(|i| {
            let action = [Action::Allow, Action::Deny, Action::Approve][(i % 3) as usize];
            decision(&format!("l{i}"), &format!("s{}", i % 1001)).action(action)
        });
        record_all(&store, decisions).unwrap();
        let totals = totals_by_paging(&store).unwrap();
        assert_eq!(
            totals,
            DecisionTotals {
                sessions: 1001,
                total: 1003,
                allowed: 335,
                denied: 334,
                approved: 334,
            }
        );
        assert_eq!(totals, store.decision_totals().unwrap());
    }

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
