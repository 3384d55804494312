//! Integration tests of the stores: the log, results, approvals, session
//! facts across restarts, the audit chain and its tamper checks. Each test
//! runs against SQLite (`sqlite::`) and PostgreSQL (`pg::`, on the server
//! named by `TAME_TEST_DATABASE_URL`: run them with `scripts/pg-test.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::json;
use tame_enforce::SessionFacts;
use tame_store::Action;
use tame_store::testing::{DecisionExt, T0, decision, record_all, result, sessions_page, sqlite_store, verdict};
use tame_store::*;

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn open_sqlite(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap()
}

/// One backend's database for a test: a SQLite file in a temporary
/// directory, or a fresh PostgreSQL database (with a temporary directory
/// for its checkpoint file).
enum TestDb {
    Sqlite(tempfile::TempDir),
    Pg(String, tempfile::TempDir),
}

/// The audit secret of the PostgreSQL tests.
const PG_SECRET: [u8; 32] = [7; 32];

impl TestDb {
    fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().unwrap())
    }

    /// `None` (after saying so) when no PostgreSQL server is configured
    /// outside CI; in CI a missing server fails the test.
    fn pg(label: &str) -> Option<TestDb> {
        tame_store::testing::database_or_skip(label)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|url| TestDb::Pg(url, tempfile::tempdir().unwrap()))
    }

    /// The checkpoint file that witnesses the chain's head.
    fn checkpoints(&self) -> std::path::PathBuf {
        match self {
            TestDb::Sqlite(dir) => dir.path().join("tame.db.checkpoint"),
            TestDb::Pg(_, dir) => dir.path().join("pg.checkpoint"),
        }
    }

    /// Opens (or reopens) the store with its usual secret.
    fn open(&self) -> std::sync::Arc<dyn Store> {
        match self {
            TestDb::Sqlite(dir) => std::sync::Arc::new(open_sqlite(dir)),
            TestDb::Pg(..) => std::sync::Arc::from(self.open_with_secret(PG_SECRET.to_vec()).unwrap()),
        }
    }

    /// Opens the store with the given audit secret.
    fn open_with_secret(&self, secret: Vec<u8>) -> StoreResult<Box<dyn Store>> {
        Ok(match self {
            TestDb::Sqlite(dir) => Box::new(SqliteStore::open(
                dir.path().join("tame.db"),
                SqliteOptions {
                    secret: Some(secret),
                    ..Default::default()
                },
            )?),
            TestDb::Pg(url, _) => Box::new(PgStore::open(
                url,
                PgOptions {
                    checkpoints: Some(self.checkpoints()),
                    ..PgOptions::new(secret)
                },
            )?),
        })
    }

    /// Runs SQL on the database directly (an attacker's view); returns the
    /// rows changed.
    fn exec(&self, sql: &str) -> u64 {
        match self {
            TestDb::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("tame.db"))
                .unwrap()
                .execute(sql, [])
                .unwrap() as u64,
            TestDb::Pg(url, _) => tame_store::testing::execute(url, sql).unwrap(),
        }
    }
}

/// Instantiates each test of `both` once per backend (`sqlite::NAME` and
/// `pg::NAME`) and each test of `pg_only` as `pg::NAME`.
macro_rules! tests_by_backend {
    (both: [$($name:ident),* $(,)?], pg_only: [$($pg:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::TestDb::sqlite()) })*
        }
        mod pg {
            $(#[test] fn $name() {
                if let Some(db) = super::TestDb::pg(stringify!($name)) { super::$name(&db) }
            })*
            $(#[test] fn $pg() {
                if let Some(db) = super::TestDb::pg(stringify!($pg)) { super::$pg(&db) }
            })*
        }
    };
}

fn decisions_and_results_round_trip(db: &TestDb) {
    let store = db.open();
    let r1 = store
        .record_decision(decision("l1", "s1").tool("read_file"))
        .wait()
        .unwrap();
    let denied = decision("l2", "s1").tool("delete_file").action(Action::Deny);
    let r2 = store
        .record_decision(denied.at(ts("2026-11-21T06:00:01Z")))
        .wait()
        .unwrap();
    assert!(r2.seq > r1.seq);
    store
        .record_result(result(
            "s1",
            "l1",
            ts("2026-11-21T06:00:02Z"),
            json!({"status": "success", "duration_ms": 12.5, "execution_time_ms": 12}),
        ))
        .wait()
        .unwrap();
    let log = store.session_log("s1").unwrap().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].id, "l1");
    assert_eq!(log[0].policy_decision, Action::Allow);
    assert_eq!(log[0].execution_status.as_deref(), Some("success"));
    assert_eq!(log[0].execution_duration_ms, Some(12.5));
    assert_eq!(log[0].tool_result.as_ref().unwrap()["execution_time_ms"], 12);
    assert_eq!(log[0].timestamp, "2026-11-21T06:00:00.000000Z");
    assert_eq!(log[1].policy_decision, Action::Deny);
    assert!(log[1].tool_result.is_none());
    assert!(store.session_log("nope").unwrap().is_none());

    let summary = store.session_summary("s1").unwrap().unwrap();
    assert_eq!(
        (summary.total_calls, summary.allowed_calls, summary.denied_calls),
        (2, 1, 1)
    );
    assert_eq!(summary.agent_id.as_deref(), Some("agent-1"));
    assert_eq!(summary.end_time.as_deref(), Some("2026-11-21T06:00:01.000000Z"));
}

fn results_for_unknown_or_foreign_logs_fail_and_write_nothing(db: &TestDb) {
    let store = db.open();
    store.record_decision(decision("l1", "s1")).wait().unwrap();
    let at = ts("2026-11-21T06:00:01Z");
    let missing = store.record_result(result("s1", "nope", at, json!({}))).wait();
    assert!(matches!(missing, Err(StoreError::LogNotFound(id)) if id == "nope"));
    let foreign = store.record_result(result("s2", "l1", at, json!({}))).wait();
    assert!(matches!(foreign, Err(StoreError::SessionMismatch { .. })));
    let report = store.verify().unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.records, 1);
}

fn many_concurrent_writers_get_a_contiguous_verified_chain(db: &TestDb) {
    let store = db.open();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let decisions = (0..250).map(|i| decision(&format!("l{t}-{i}"), &format!("s{t}")));
                let receipts = record_all(&*store, decisions).unwrap();
                receipts.into_iter().map(|r| r.seq).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    let report = store.verify().unwrap();
    assert!(report.valid);
    assert_eq!(report.records, 1000);
}

fn editing_a_record_is_found_and_named(db: &TestDb) {
    let store = db.open();
    for i in 0..5 {
        let d = decision(&format!("l{i}"), "s1").action(Action::Deny);
        store.record_decision(d).wait().unwrap();
    }
    assert!(store.verify().unwrap().valid);
    assert_eq!(
        db.exec("UPDATE audit SET body = replace(body, '\"deny\"', '\"allow\"') WHERE seq = 3"),
        1
    );
    let report = store.verify().unwrap();
    assert!(!report.valid);
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, ChainProblemKind::Edited);
    assert_eq!(problem.seq, 3);
    assert_eq!(problem.ref_id.as_deref(), Some("l2"));
    assert!(problem.message.contains("record 3"), "{}", problem.message);
}

fn deleting_a_record_names_the_gap_and_truncation_is_found(db: &TestDb) {
    let store = db.open();
    for i in 0..6 {
        store.record_decision(decision(&format!("l{i}"), "s1")).wait().unwrap();
    }
    db.exec("DELETE FROM audit WHERE seq = 6");
    let report = store.verify().unwrap();
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, ChainProblemKind::Truncated);
    assert_eq!(problem.seq, 6);
    db.exec("DELETE FROM audit WHERE seq = 2");
    let problem = store.verify().unwrap().first_problem.unwrap();
    assert_eq!(problem.kind, ChainProblemKind::Missing);
    assert_eq!(problem.seq, 2);
    // PostgreSQL's records are in the server's chain, and named so.
    let named = problem.message.contains("record 2 is missing")
        || problem.message.contains("record 2 of chain `") && problem.message.contains("` is missing");
    assert!(named, "{}", problem.message);
}

fn a_different_secret_fails_verification(db: &TestDb) {
    {
        let store = db.open_with_secret(vec![7; 32]).unwrap();
        store.record_decision(decision("l1", "s1")).wait().unwrap();
        assert!(store.verify().unwrap().valid);
    }
    let store = db.open_with_secret(vec![8; 32]).unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.first_problem.unwrap().seq, 1);
    drop(store);
    assert!(matches!(db.open_with_secret(vec![1; 4]), Err(StoreError::Secret(_))));
}

#[test]
fn the_secret_file_is_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_sqlite(&dir);
        store.record_decision(decision("l1", "s1")).wait().unwrap();
    }
    let secret = std::fs::read_to_string(dir.path().join("tame.db.secret")).unwrap();
    assert_eq!(secret.len(), 64);
    let store = open_sqlite(&dir);
    assert!(store.verify().unwrap().valid);
}

fn session_facts_survive_a_restart(db: &TestDb) {
    {
        let store = db.open();
        for (i, (tool, action)) in [
            ("send_email", Action::Allow),
            ("send_email", Action::Deny),
            ("read_secret", Action::Allow),
        ]
        .into_iter()
        .enumerate()
        {
            let facts = store.session_facts("s1").unwrap();
            facts
                .lock()
                .record(tame_enforce::CallStep::new(tool, action, None, false, T0));
            let d = decision(&format!("l{i}"), "s1").tool(tool).action(action);
            store.record_decision(d).wait().unwrap();
        }
        let cell = store.session_facts("s1").unwrap();
        let guard = cell.lock();
        assert_eq!(guard.view(ts("2026-11-21T06:30:00Z")).calls(), 2);
    }
    let store = db.open();
    let cell = store.session_facts("s1").unwrap();
    let guard = cell.lock();
    let now = ts("2026-11-21T06:30:00Z");
    assert_eq!(guard.view(now).calls(), 2, "denied calls do not count");
    assert_eq!(guard.count("send_email", None, now), 1);
    assert_eq!(
        guard.count("send_email", Some(jiff::SignedDuration::from_mins(10)), now),
        0
    );
    assert_eq!(
        guard.count("send_email", Some(jiff::SignedDuration::from_hours(1)), now),
        1
    );
    assert_eq!(guard.count("read_secret", None, now), 1);
    let fresh = store.session_facts("new-session").unwrap();
    assert_eq!(fresh.lock().calls(), 0);
}

fn labelled_result(session: &str, log_id: &str, labels: &[&str]) -> NewResult {
    NewResult {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        ..result(
            session,
            log_id,
            ts("2026-11-21T06:00:05Z"),
            json!({"status": "success", "result": {"content": "[REDACTED:aws_access_key_id]"}}),
        )
    }
}

fn labels_of(store: &dyn Store, session: &str) -> Vec<String> {
    let cell = store.session_facts(session).unwrap();
    let guard = cell.lock();
    let mut labels: Vec<String> = guard
        .view(ts("2026-11-21T07:00:00Z"))
        .labels()
        .iter()
        .map(|l| l.to_string())
        .collect();
    labels.sort();
    labels
}

fn result_labels_survive_reopening_the_store(db: &TestDb) {
    {
        let store = db.open();
        for (log_id, session) in [("l1", "s1"), ("l2", "s1"), ("l3", "s2"), ("l4", "s3")] {
            let d = decision(log_id, session).tool("read_file");
            store.record_decision(d).wait().unwrap();
        }
        store
            .record_result(labelled_result("s1", "l1", &["secret", "secret.aws_access_key_id"]))
            .wait()
            .unwrap();
        // A second result repeats one label and adds another: kept once each.
        store
            .record_result(labelled_result("s1", "l2", &["secret", "pii"]))
            .wait()
            .unwrap();
        store.record_result(labelled_result("s2", "l3", &[])).wait().unwrap();
        // A result that fails its check stores no labels either.
        let foreign = store.record_result(labelled_result("s3", "l1", &["secret"])).wait();
        assert!(matches!(foreign, Err(StoreError::SessionMismatch { .. })));
    }
    let store = db.open();
    assert_eq!(labels_of(&*store, "s1"), ["pii", "secret", "secret.aws_access_key_id"]);
    assert!(labels_of(&*store, "s2").is_empty());
    assert!(labels_of(&*store, "s3").is_empty());
    // The labels are part of the chained records and of the export.
    assert!(store.verify().unwrap().valid);
    let mut out = Vec::new();
    store.export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let result = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "result" && v["ref_id"] == "l1")
        .unwrap();
    assert_eq!(
        result["record"]["labels"],
        json!(["secret", "secret.aws_access_key_id"])
    );
    // An unlabelled result keeps the old record shape.
    assert!(
        !text
            .lines()
            .any(|l| l.contains("\"ref_id\":\"l3\"") && l.contains("\"labels\""))
    );
    // Log entries are unchanged: the labels are not part of the tool's result.
    let log = store.session_log("s1").unwrap().unwrap();
    assert!(log[0].tool_result.as_ref().unwrap().get("labels").is_none());
}

fn editing_stored_labels_breaks_the_chain(db: &TestDb) {
    let store = db.open();
    store
        .record_decision(decision("l1", "s1").tool("read_file"))
        .wait()
        .unwrap();
    let seq = store
        .record_result(labelled_result("s1", "l1", &["secret"]))
        .wait()
        .unwrap();
    let denied = decision("l2", "s1").tool("send_email").action(Action::Deny);
    store
        .record_decision(denied.at(ts("2026-11-21T06:00:06Z")))
        .wait()
        .unwrap();
    assert!(store.verify().unwrap().valid);
    // Dropping the label to get past a flow rule is found and named.
    assert_eq!(
        db.exec(&format!(
            "UPDATE audit SET body = replace(body, '\"secret\"', '\"public\"') WHERE seq = {seq}"
        )),
        1
    );
    let problem = store.verify().unwrap().first_problem.unwrap();
    assert_eq!(problem.kind, ChainProblemKind::Edited);
    assert_eq!(problem.seq, seq);
    assert_eq!(problem.ref_id.as_deref(), Some("l1"));
}

/// An `approve` decision of `query_database` in session `s1` creating
/// approval `approval_id`, pending until `expires`.
fn approve_decision(store: &dyn Store, log_id: &str, approval_id: &str, expires: &str) {
    let d = decision(log_id, "s1")
        .tool("query_database")
        .approval(approval_id, ts(expires));
    store.record_decision(d).wait().unwrap();
}

fn approvals_are_decided_once_released_once_and_survive_restart(db: &TestDb) {
    let now = ts("2026-11-21T06:01:00Z");
    {
        let store = db.open();
        approve_decision(&*store, "l1", "a1", "2026-11-21T07:00:00Z");
    }
    let store = db.open();
    let pending = store.approvals(Some(ApprovalState::Pending), now).unwrap();
    assert_eq!(pending.len(), 1);
    let a = &pending[0];
    assert_eq!(a.approval_id, "a1");
    assert_eq!(a.tool_name, "query_database");
    assert_eq!(a.policy_version, "v1");
    assert_eq!(a.created_at, "2026-11-21T06:00:00.000000Z");

    // Releasing before approval fails.
    let release = decision("l2", "s1")
        .tool("query_database")
        .at(ts("2026-11-21T06:02:00Z"))
        .release("a1", &a.call_hash);
    assert!(matches!(
        store.record_decision(release.clone()).wait(),
        Err(StoreError::ApprovalState { .. })
    ));

    let decided = store
        .decide_approval(ApprovalDecision {
            by: Some("admin".into()),
            reason: Some("looks fine".into()),
            ..verdict("a1", true, now)
        })
        .wait()
        .unwrap();
    assert_eq!(decided.state, ApprovalState::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("admin"));
    // Deciding twice fails.
    let again = store.decide_approval(verdict("a1", false, now)).wait();
    assert!(matches!(
        again,
        Err(StoreError::ApprovalState {
            state: ApprovalState::Approved,
            ..
        })
    ));

    // A different call cannot use the approval.
    let mut wrong = release.clone().release("a1", "other");
    wrong.log_id = "l3".into();
    assert!(matches!(
        store.record_decision(wrong).wait(),
        Err(StoreError::ApprovalMismatch(_))
    ));
    store.record_decision(release.clone()).wait().unwrap();
    let mut twice = release;
    twice.log_id = "l4".into();
    assert!(matches!(
        store.record_decision(twice).wait(),
        Err(StoreError::ApprovalUsed(_))
    ));
    assert_eq!(
        store.approval("a1", now).unwrap().unwrap().released_log_id.as_deref(),
        Some("l2")
    );
    assert!(store.log_entry("l3").unwrap().is_none());
    let report = store.verify().unwrap();
    assert!(report.valid, "{report:?}");
}

fn approvals_expire_and_then_cannot_be_approved(db: &TestDb) {
    let store = db.open();
    approve_decision(&*store, "l1", "a1", "2026-11-21T06:05:00Z");
    approve_decision(&*store, "l2", "a2", "2026-11-21T08:00:00Z");
    let later = ts("2026-11-21T06:10:00Z");
    assert_eq!(
        store.approval("a1", later).unwrap().unwrap().state,
        ApprovalState::Expired
    );
    let late = store.decide_approval(verdict("a1", true, later)).wait();
    assert!(matches!(
        late,
        Err(StoreError::ApprovalState {
            state: ApprovalState::Expired,
            ..
        })
    ));
    let expired = store.expire_approvals(later).wait().unwrap();
    assert_eq!(expired, vec!["a1".to_string()]);
    assert_eq!(store.approvals(Some(ApprovalState::Pending), later).unwrap().len(), 1);
    let mut export = Vec::new();
    store.export(&mut export).unwrap();
    let text = String::from_utf8(export).unwrap();
    assert!(text.lines().any(|l| l.contains("\"kind\":\"approval_expired\"")));
    assert!(matches!(
        store.decide_approval(verdict("zz", true, later)).wait(),
        Err(StoreError::ApprovalNotFound(_))
    ));
}

/// Version `version` of `policies.yml` (its source is just its version),
/// loaded at `loaded_at`.
fn policy(version: &str, hash: &str, loaded_at: jiff::Timestamp) -> NewPolicyVersion {
    NewPolicyVersion {
        version: version.into(),
        hash: hash.into(),
        origin: "policies.yml".into(),
        source: format!("version: \"{version}\""),
        loaded_at,
    }
}

fn policy_versions_and_export(db: &TestDb) {
    let store = db.open();
    for v in ["1", "2"] {
        store.record_policy(policy(v, &format!("hash{v}"), T0)).wait().unwrap();
    }
    store.record_decision(decision("l1", "s1")).wait().unwrap();
    store.flush().wait().unwrap();
    let versions = store.policy_versions().unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(),
        ["1", "2"]
    );
    let mut out = Vec::new();
    assert_eq!(store.export(&mut out).unwrap(), 3);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[2]["record"]["tool_name"], "t");
    assert_eq!(lines[1]["hash"], lines[2]["prev_hash"]);
}

fn sessions_are_paged_and_filtered(db: &TestDb) {
    let store = db.open();
    for i in 0..5 {
        let d = decision(&format!("l{i}"), &format!("s{i}")).user(Some(if i % 2 == 0 { "even" } else { "odd" }));
        store.record_decision(d).wait().unwrap();
    }
    let page = store.sessions(&sessions_page(1, 2)).unwrap();
    assert_eq!(page.total_count, 5);
    assert_eq!(
        page.sessions.iter().map(|s| s.session_id.as_str()).collect::<Vec<_>>(),
        ["s4", "s3"]
    );
    let page3 = store.sessions(&sessions_page(3, 2)).unwrap();
    assert_eq!(page3.sessions.len(), 1);
    let odd = store
        .sessions(&SessionQuery {
            user_id: Some("odd".into()),
            ..sessions_page(1, 10)
        })
        .unwrap();
    assert_eq!(odd.total_count, 2);
}

fn a_session_log_links_across_restarts_and_batches(db: &TestDb) {
    {
        let store = db.open();
        let decisions = (0..50).map(|i| decision(&format!("l{i}"), if i % 2 == 0 { "even" } else { "odd" }));
        record_all(&*store, decisions).unwrap();
        store
            .record_result(result(
                "odd",
                "l1",
                ts("2026-11-21T06:00:01Z"),
                json!({"status": "error", "error_message": "boom"}),
            ))
            .wait()
            .unwrap();
    }
    let store = db.open();
    store
        .record_decision(
            decision("l-after", "even")
                .action(Action::Deny)
                .at(ts("2026-11-21T07:00:00Z")),
        )
        .wait()
        .unwrap();
    let even = store.session_log("even").unwrap().unwrap();
    assert_eq!(even.len(), 26);
    assert_eq!(even.first().unwrap().id, "l0");
    assert_eq!(even.last().unwrap().id, "l-after");
    assert!(even.windows(2).all(|w| w[0].seq < w[1].seq));
    let odd = store.session_log("odd").unwrap().unwrap();
    assert_eq!(odd.len(), 25);
    assert_eq!(odd[0].error_message.as_deref(), Some("boom"));
    let summary = store.session_summary("even").unwrap().unwrap();
    assert_eq!((summary.total_calls, summary.denied_calls), (26, 1));
    assert!(store.verify().unwrap().valid);
}

fn editing_a_session_link_is_found(db: &TestDb) {
    let store = db.open();
    for i in 0..3 {
        store.record_decision(decision(&format!("l{i}"), "s1")).wait().unwrap();
    }
    db.exec("UPDATE audit SET session_prev = NULL WHERE seq = 3");
    let problem = store.verify().unwrap().first_problem.unwrap();
    assert_eq!((problem.kind, problem.seq), (ChainProblemKind::Edited, 3));
}

#[test]
fn both_durability_modes_acknowledge_committed_records() {
    for durability in [Durability::Full, Durability::Normal] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        {
            let store = sqlite_store(&path, durability).unwrap();
            record_all(&store, (0..20).map(|i| decision(&format!("l{i}"), "s"))).unwrap();
            store.flush().wait().unwrap();
        }
        let store = sqlite_store(&path, durability).unwrap();
        let report = store.verify().unwrap();
        assert!(report.valid, "{durability:?}");
        assert_eq!(report.records, 20, "{durability:?}");
    }
}

fn a_known_session_is_read_back_and_a_fresh_one_is_empty(db: &TestDb) {
    {
        let store = db.open();
        store
            .record_decision(decision("l1", "known").tool("send_email"))
            .wait()
            .unwrap();
    }
    let store = db.open();
    assert_eq!(store.session_facts("known").unwrap().lock().calls(), 1);
    assert_eq!(store.fresh_session_facts("brand-new").lock().calls(), 0);
    // The same cell comes back while it is in memory.
    let a = store.session_facts("known").unwrap();
    let b = store.session_facts("known").unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

// ---------------------------------------------------------------- PostgreSQL only

fn pg_url(db: &TestDb) -> &str {
    match db {
        TestDb::Pg(url, _) => url,
        TestDb::Sqlite(_) => panic!("a PostgreSQL test got a SQLite database"),
    }
}

/// The node id of a PostgreSQL store opened by [`TestDb::open`].
fn pg_node(_store: &dyn Store) -> String {
    node_id(None).unwrap()
}

fn a_second_store_on_the_same_database_is_refused(db: &TestDb) {
    let first = db.open();
    let mut options = PgOptions::new(PG_SECRET.to_vec());
    options.lock_wait = std::time::Duration::from_millis(300);
    let second = PgStore::open(pg_url(db), options).unwrap_err();
    let message = second.to_string();
    let node = node_id(None).unwrap();
    assert!(
        message.contains(&format!("another tame server is writing chain `{node}`")),
        "{message}"
    );
    assert!(message.contains("give each server its own node id"), "{message}");
    first.record_decision(decision("l1", "s1")).wait().unwrap();
    // Closing the first store releases the lock.
    drop(first);
    let reopened = db.open();
    assert_eq!(reopened.verify().unwrap().records, 1);
}

fn the_store_is_used_and_dropped_inside_an_async_runtime(db: &TestDb) {
    let url = pg_url(db).to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Opened, read, written, awaited and dropped on a runtime worker, as
        // the server does: no I/O of the store runs on this thread.
        let store = PgStore::open(&url, PgOptions::new(PG_SECRET.to_vec())).unwrap();
        assert_eq!(store.session_facts("s1").unwrap().lock().calls(), 0);
        let receipt = store
            .record_decision(decision("l1", "s1").tool("read_file"))
            .await
            .unwrap();
        assert_eq!(receipt.seq, 1);
        assert_eq!(store.session_log("s1").unwrap().unwrap().len(), 1);
        assert!(store.verify().unwrap().valid);
        drop(store);
        let store = PgStore::open(&url, PgOptions::new(PG_SECRET.to_vec())).unwrap();
        assert_eq!(store.session_facts("s1").unwrap().lock().calls(), 1);
    });
}

/// The same calls through a store of either backend.
fn same_story(store: &dyn Store) {
    record_policy_1(store);
    for i in 0..6 {
        let action = [Action::Allow, Action::Deny][i % 2];
        let d = decision(&format!("l{i}"), &format!("s{}", i % 3)).action(action);
        store.record_decision(d).wait().unwrap();
    }
    store
        .record_result(labelled_result("s0", "l0", &["secret"]))
        .wait()
        .unwrap();
    rejected_and_expired_approvals(store);
}

/// Policy version `1` (hash `h1`), loaded before the tests' decisions.
fn record_policy_1(store: &dyn Store) {
    store
        .record_policy(policy("1", "h1", ts("2026-11-21T05:59:00Z")))
        .wait()
        .unwrap();
}

/// Two `approve` decisions in `s1`: `l-a`, whose approval `a1` an admin
/// rejects, and `l-b`, whose approval `a2` expires and is marked so.
fn rejected_and_expired_approvals(store: &dyn Store) {
    approve_decision(store, "l-a", "a1", "2026-11-21T07:00:00Z");
    store
        .decide_approval(ApprovalDecision {
            by: Some("admin".into()),
            reason: Some("no".into()),
            ..verdict("a1", false, ts("2026-11-21T06:01:00Z"))
        })
        .wait()
        .unwrap();
    approve_decision(store, "l-b", "a2", "2026-11-21T06:05:00Z");
    store.expire_approvals(ts("2026-11-21T06:10:00Z")).wait().unwrap();
}

fn both_backends_write_the_same_records_and_chain(db: &TestDb) {
    let sqlite_db = TestDb::sqlite();
    let lite = sqlite_db.open_with_secret(PG_SECRET.to_vec()).unwrap();
    let pg = db.open_with_secret(PG_SECRET.to_vec()).unwrap();
    same_story(&*lite);
    same_story(&*pg);
    // The same records and links, in the same order; PostgreSQL's are in
    // the server's own chain (named, so hashed with its name and place).
    let (mut a, mut b) = (Vec::new(), Vec::new());
    assert_eq!(lite.export(&mut a).unwrap(), pg.export(&mut b).unwrap());
    let lines = |out: Vec<u8>| -> Vec<serde_json::Value> {
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, mut b) = (lines(a), lines(b));
    let node = pg_node(&*pg);
    for (i, line) in b.iter_mut().enumerate() {
        let line = line.as_object_mut().unwrap();
        assert_eq!(line.remove("chain"), Some(json!(node)));
        assert_eq!(line.remove("chain_seq"), Some(json!(i + 1)));
        for hashed in ["hash", "prev_hash"] {
            line.remove(hashed);
        }
    }
    let a: Vec<serde_json::Value> = a
        .into_iter()
        .map(|mut l| {
            let o = l.as_object_mut().unwrap();
            assert!(o.get("chain").is_none());
            o.remove("hash");
            o.remove("prev_hash");
            l
        })
        .collect();
    assert_eq!(a, b);
    let (mut va, mut vb) = (lite.verify().unwrap(), pg.verify().unwrap());
    assert!(va.valid && vb.valid);
    // Both witness a head at the same place, of chains of their own.
    let seq = |v: &VerifyReport| v.checkpoint.as_ref().map(|c| c.seq);
    assert_eq!(seq(&va), seq(&vb));
    assert!(seq(&va).is_some());
    assert!(vb.checkpoint.as_ref().unwrap().chain.ends_with(&format!("/{node}")));
    (va.checkpoint, vb.checkpoint) = (None, None);
    (va.head_hash, vb.head_hash) = (None, None);
    assert_eq!(va, vb);
    let now = ts("2026-11-21T06:20:00Z");
    assert_eq!(lite.approvals(None, now).unwrap(), pg.approvals(None, now).unwrap());
    for s in ["s0", "s1", "s2", "nope"] {
        assert_eq!(lite.session_log(s).unwrap(), pg.session_log(s).unwrap());
        assert_eq!(lite.session_summary(s).unwrap(), pg.session_summary(s).unwrap());
    }
    let q = sessions_page(1, 10);
    assert_eq!(lite.sessions(&q).unwrap(), pg.sessions(&q).unwrap());
    assert_eq!(lite.policy_versions().unwrap(), pg.policy_versions().unwrap());
}

fn a_newer_schema_is_refused(db: &TestDb) {
    drop(db.open());
    assert_eq!(db.exec("UPDATE meta SET value = '99' WHERE key = 'schema_version'"), 1);
    let e = PgStore::open(pg_url(db), PgOptions::new(PG_SECRET.to_vec()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("schema version 99"), "{e}");
}

/// A decision made on a session state that does not hold every stored
/// record of the session (another server recorded to it) is refused and
/// writes nothing; one made on the stored version is recorded. Results and
/// inputs move the version on; a state read back holds the stored version.
fn a_decision_on_a_stale_session_is_refused(db: &TestDb) {
    let store = db.open();
    assert!(store.checks_session_versions());
    // Each decision on a state of its own (as after a reload), unless said.
    let epoch = std::cell::Cell::new(1 << 40);
    let at = |log_id: &str, records: u64| {
        let mut d = decision(log_id, "s1");
        epoch.set(epoch.get() + 1);
        d.session_version = Some(StateVersion {
            epoch: epoch.get(),
            records,
        });
        d
    };
    store.record_decision(at("l0", 0)).wait().unwrap();
    // Made on the state before `l0`: refused, nothing written.
    let refused = store.record_decision(at("l1", 0)).wait().unwrap_err();
    assert!(
        matches!(&refused, StoreError::SessionMoved { session_id } if session_id == "s1"),
        "{refused}"
    );
    assert_eq!(store.verify().unwrap().records, 1);
    store.record_decision(at("l1", 1)).wait().unwrap();
    store
        .record_result(result("s1", "l1", jiff::Timestamp::now(), json!({"status": "success"})))
        .wait()
        .unwrap();
    // The result moved the version on: a state without it is stale.
    assert!(matches!(
        store.record_decision(at("l2", 2)).wait(),
        Err(StoreError::SessionMoved { .. })
    ));
    // Unchecked decisions (no version) are recorded as before.
    store.record_decision(decision("l3", "s1")).wait().unwrap();
    // Another server's record, as far as this store can tell: the stored
    // version moves on under it, and its cached state is refused.
    assert_eq!(
        db.exec("UPDATE sessions SET version = version + 1 WHERE session_id = 's1'"),
        1
    );
    assert!(matches!(
        store.record_decision(at("l4", 4)).wait(),
        Err(StoreError::SessionMoved { .. })
    ));
    store.record_decision(at("l4", 5)).wait().unwrap();
    // A state read back holds the stored version.
    store.forget_session_facts("s1");
    assert_eq!(store.session_facts("s1").unwrap().lock().version(), 6);
    // Another session is not affected.
    store
        .record_decision({
            let mut d = decision("m0", "s2");
            d.session_version = Some(StateVersion {
                epoch: 1 << 41,
                records: 0,
            });
            d
        })
        .wait()
        .unwrap();
}

/// A database written at schema version 1 (before session versions) is
/// migrated when a store opens it: each session's version is the count of
/// its decisions, results and inputs, and decisions are checked against it.
fn a_version_1_database_is_migrated(db: &TestDb) {
    {
        let store = db.open();
        for i in 0..3 {
            store.record_decision(decision(&format!("l{i}"), "s1")).wait().unwrap();
        }
        store
            .record_result(result("s1", "l0", jiff::Timestamp::now(), json!({"status": "success"})))
            .wait()
            .unwrap();
        store.record_decision(decision("m0", "s2")).wait().unwrap();
    }
    // Back to what version 1 wrote.
    db.exec("ALTER TABLE sessions DROP COLUMN version");
    assert_eq!(db.exec("UPDATE meta SET value = '1' WHERE key = 'schema_version'"), 1);
    let store = db.open();
    assert!(store.verify().unwrap().valid);
    assert_eq!(store.session_facts("s1").unwrap().lock().version(), 4);
    assert_eq!(store.session_facts("s2").unwrap().lock().version(), 1);
    let mut stale = decision("l9", "s1");
    stale.session_version = Some(StateVersion {
        epoch: 1 << 41,
        records: 3,
    });
    assert!(matches!(
        stale_answer(&*store, stale),
        Err(StoreError::SessionMoved { .. })
    ));
    let mut current = decision("l9", "s1");
    current.session_version = Some(StateVersion {
        epoch: (1 << 41) + 1,
        records: 4,
    });
    store.record_decision(current).wait().unwrap();
    drop(store);
    let current = format!("SELECT 1 FROM meta WHERE key = 'schema_version' AND value = '{PG_SCHEMA_VERSION}'");
    assert_eq!(db.exec(&current), 1);
}

/// A database the release before schema version 2 wrote (a dump kept in
/// `tests/fixtures`, made by that release's server: an input, a call and
/// its result, a denied call, an approval decided and used) opens with
/// this release, migrates, verifies, reads its sessions back with their
/// versions, and goes on: new records continue the sessions, in the
/// server's own chain, and the whole log still verifies.
fn a_database_of_the_previous_release_migrates_and_verifies(db: &TestDb) {
    let url = pg_url(db);
    tame_store::testing::execute_batch(url, include_str!("fixtures/pg-schema-1.sql")).unwrap();
    let open = || PgStore::open(url, PgOptions::new(b"v1-fixture-audit-secret-0123456789".to_vec())).unwrap();
    let store = open();
    let report = store.verify().unwrap();
    assert!(report.valid, "{report:?}");
    let written = report.records;
    assert!(written >= 9, "{report:?}");
    // s1: the input, a call, its result, a denied call; s2: a call, an
    // approve decision and the call it released.
    let s1 = store.session_facts("s1").unwrap().lock().state_version();
    assert_eq!(s1.records, 4);
    assert_eq!(store.session_facts("s1").unwrap().lock().inputs().count(), 1);
    assert_eq!(store.session_facts("s2").unwrap().lock().state_version().records, 3);
    let approvals = store.approvals(None, jiff::Timestamp::now()).unwrap();
    assert_eq!(approvals.len(), 1);
    assert!(approvals[0].released_log_id.is_some(), "{approvals:?}");
    let mut next = decision("after-upgrade", "s1");
    next.session_version = Some(s1);
    store.record_decision(next).wait().unwrap();
    let report = store.verify().unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.records, written + 1);
    let lines: Vec<serde_json::Value> = {
        let mut out = Vec::new();
        store.export(&mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (last, old) = lines.split_last().unwrap();
    assert!(old.iter().all(|l| l.get("chain").is_none()));
    assert_eq!(last["chain"], json!(node_id(None).unwrap()));
    let log = store.session_log("s1").unwrap().unwrap();
    assert_eq!(log.last().unwrap().id, "after-upgrade");
    // And again after a restart.
    drop(store);
    assert!(open().verify().unwrap().valid);
}

fn stale_answer(store: &dyn Store, d: NewDecision) -> StoreResult<DecisionReceipt> {
    store.record_decision(d).wait()
}

fn the_store_reconnects_after_its_connections_are_killed(db: &TestDb) {
    let store = db.open();
    store.record_decision(decision("l0", "s1")).wait().unwrap();
    // Every connection of the store is closed by the server (an admin's
    // pg_terminate_backend, a failover, a restart).
    let killed = db.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    assert!(killed >= 1, "{killed}");
    // A write in flight at that moment may fail (and says so); the next
    // ones go through on new connections.
    let mut written = 1;
    let mut failures = 0;
    for i in 1..=5 {
        match store
            .record_decision(decision(&format!("l{i}"), "s1").at(ts("2026-11-21T06:00:01Z")))
            .wait()
        {
            Ok(_) => written += 1,
            Err(e) => {
                failures += 1;
                let e = e.to_string();
                assert!(
                    e.contains("not committed") || e.contains("cannot make the audit log durable"),
                    "{e}"
                );
            }
        }
    }
    assert!(failures <= 2, "{failures} writes failed");
    let mut report = store.verify();
    if report.is_err() {
        // A reader may also meet its dead connection once.
        report = store.verify();
    }
    let report = report.unwrap();
    assert!(report.valid, "{report:?}");
    // A write that failed only at the durability step may still be there.
    assert!(report.records >= written, "{report:?}");
    assert_eq!(store.session_log("s1").unwrap().unwrap().len() as u64, report.records);
}

tests_by_backend!(
    both: [
        decisions_and_results_round_trip,
        results_for_unknown_or_foreign_logs_fail_and_write_nothing,
        many_concurrent_writers_get_a_contiguous_verified_chain,
        editing_a_record_is_found_and_named,
        deleting_a_record_names_the_gap_and_truncation_is_found,
        a_different_secret_fails_verification,
        session_facts_survive_a_restart,
        result_labels_survive_reopening_the_store,
        editing_stored_labels_breaks_the_chain,
        approvals_are_decided_once_released_once_and_survive_restart,
        approvals_expire_and_then_cannot_be_approved,
        policy_versions_and_export,
        sessions_are_paged_and_filtered,
        a_session_log_links_across_restarts_and_batches,
        editing_a_session_link_is_found,
        a_known_session_is_read_back_and_a_fresh_one_is_empty,
    ],
    pg_only: [
        a_second_store_on_the_same_database_is_refused,
        the_store_is_used_and_dropped_inside_an_async_runtime,
        both_backends_write_the_same_records_and_chain,
        a_newer_schema_is_refused,
        the_store_reconnects_after_its_connections_are_killed,
        a_decision_on_a_stale_session_is_refused,
        a_version_1_database_is_migrated,
        a_database_of_the_previous_release_migrates_and_verifies,
    ],
);

// The bounded reads' tests (`reads::sqlite::*`, `reads::pg::*`).
mod reads;

// Audit integrity: the witnessed head, every problem listed, forged
// approvals, one store per SQLite file (`integrity::sqlite::*`,
// `integrity::pg::*`).
mod integrity;

// Session memory and data flow: inputs, result sources, provenance read
// back from the log (`flow::sqlite::*`, `flow::pg::*`).
mod flow;

// Several servers on one PostgreSQL database (`nodes::pg::*`).
mod nodes;
