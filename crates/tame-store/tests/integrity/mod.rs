//! Audit integrity against someone who can write the database: records
//! deleted from the end of the log (one, all, or the whole file) are
//! found against the checkpoint file and stay reported after new records
//! chain onto the shortened log; `verify` lists every problem; a forged
//! approvals row never releases a call; an approved approval left unused
//! expires; a second store on one SQLite file is refused.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use tame_store::Action;
use tame_store::testing::{DecisionExt, decision, verdict};
use tame_store::*;

use super::{TestDb, approve_decision, ts};

/// Records `n` decisions `l{from}`.. in session `s1`.
fn write(store: &dyn Store, from: usize, n: usize) {
    for i in from..from + n {
        store
            .record_decision(decision(&format!("l{i}"), "s1").action(Action::Deny))
            .wait()
            .unwrap();
    }
}

/// The problems of a verify, as `(kind, seq)`.
fn kinds(report: &VerifyReport) -> Vec<(ChainProblemKind, u64)> {
    report.problems.iter().map(|p| (p.kind, p.seq)).collect()
}

fn messages(report: &VerifyReport) -> String {
    report
        .problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A writer for the log lines of one thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns what it logged on this thread (the SQLite store
/// checks its log against its checkpoint file on the opening thread).
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let buffer = Captured::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

fn deleting_the_newest_record_is_found_and_stays_found(db: &TestDb) {
    {
        let store = db.open();
        write(&*store, 0, 5);
        assert!(store.verify().unwrap().valid);
    }
    // The server is stopped; the newest record goes.
    assert_eq!(db.exec("DELETE FROM audit WHERE seq = 5"), 1);
    let (store, log) = logged(|| db.open());
    if let TestDb::Sqlite(_) = db {
        assert!(log.contains("ERROR"), "{log}");
        assert!(
            log.contains("log shorter than witnessed head (seq 5, found 4)"),
            "{log}"
        );
    }
    let report = store.verify().unwrap();
    assert!(!report.valid);
    assert!(kinds(&report).contains(&(ChainProblemKind::Truncated, 5)), "{report:?}");
    assert!(
        messages(&report).contains("log shorter than witnessed head (seq 5, found 4)"),
        "{report:?}"
    );
    // New records chain onto the shortened log: the break stays reported,
    // now as a record 5 that is not the witnessed one.
    write(&*store, 10, 3);
    let report = store.verify().unwrap();
    assert!(!report.valid, "{report:?}");
    assert!(kinds(&report).contains(&(ChainProblemKind::Diverged, 5)), "{report:?}");
    drop(store);
    // And across restarts.
    let store = db.open();
    write(&*store, 20, 1);
    let report = store.verify().unwrap();
    assert!(kinds(&report).contains(&(ChainProblemKind::Diverged, 5)), "{report:?}");
    assert_eq!(report.records, 8);
}

fn deleting_every_record_is_found(db: &TestDb) {
    {
        let store = db.open();
        write(&*store, 0, 4);
    }
    // Everything the database says about its chain goes too.
    db.exec("DELETE FROM audit");
    db.exec("DELETE FROM meta");
    db.exec("DELETE FROM sessions");
    let store = db.open();
    let report = store.verify().unwrap();
    assert!(!report.valid);
    assert_eq!(report.records, 0);
    assert_eq!(kinds(&report), [(ChainProblemKind::Truncated, 1)], "{report:?}");
    let message = &report.problems[0].message;
    assert!(
        message.contains("log shorter than witnessed head (seq 4, found 0)"),
        "{message}"
    );
    // The database got a new chain id: it was emptied.
    assert!(message.contains("replaced or emptied"), "{message}");
    write(&*store, 10, 6);
    assert!(!store.verify().unwrap().valid);
}

/// Without the witness this goes unnoticed: the check above is the
/// checkpoint file's doing.
fn without_its_checkpoint_file_a_deleted_head_is_reported_as_such(db: &TestDb) {
    {
        let store = db.open();
        write(&*store, 0, 3);
    }
    std::fs::remove_file(db.checkpoints()).unwrap();
    let (store, log) = logged(|| db.open());
    if let TestDb::Sqlite(_) = db {
        assert!(log.contains("is missing (deleted?)"), "{log}");
    }
    let report = store.verify().unwrap();
    assert_eq!(kinds(&report), [(ChainProblemKind::Witness, 0)], "{report:?}");
    assert!(report.problems[0].message.contains("is missing"), "{report:?}");
    drop(store);
    // An edited file (a lower head, to hide a deletion) is not believed.
    let path = db.checkpoints();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["checkpoint"]["seq"] = serde_json::json!(1);
    std::fs::write(&path, doc.to_string()).unwrap();
    let store = db.open();
    let report = store.verify().unwrap();
    assert!(
        messages(&report).contains("is not signed with this store's audit secret"),
        "{report:?}"
    );
}

fn verify_lists_every_problem(db: &TestDb) {
    let store = db.open();
    write(&*store, 0, 6);
    db.exec("UPDATE audit SET body = replace(body, '\"deny\"', '\"allow\"') WHERE seq = 2");
    db.exec("DELETE FROM audit WHERE seq = 4");
    db.exec("UPDATE audit SET body = replace(body, '\"deny\"', '\"allow\"') WHERE seq = 5");
    let report = store.verify().unwrap();
    assert_eq!(
        kinds(&report),
        [
            (ChainProblemKind::Edited, 2),
            (ChainProblemKind::Missing, 4),
            (ChainProblemKind::Edited, 5),
        ],
        "{report:?}"
    );
    assert_eq!(report.first_problem.as_ref(), report.problems.first());
    assert_eq!(report.records, 5);
    assert_eq!(report.more_problems, 0);
}

fn a_forged_approval_row_never_releases_a_call(db: &TestDb) {
    let store = db.open();
    approve_decision(&*store, "l1", "a1", "2026-11-21T07:00:00Z");
    let now = ts("2026-11-21T06:01:00Z");
    let hash = store.approval("a1", now).unwrap().unwrap().call_hash;
    // Someone with the database approves it.
    assert_eq!(
        db.exec("UPDATE approvals SET state = 'approved', decided_by = 'admin' WHERE id = 'a1'"),
        1
    );
    // Readers show it as its records tell it.
    let shown = store.approval("a1", now).unwrap().unwrap();
    assert_eq!(shown.state, ApprovalState::Pending);
    assert_eq!(shown.decided_by, None);
    let release = decision("l2", "s1").tool("query_database").at(now).release("a1", &hash);
    let refused = store.record_decision(release.clone()).wait();
    assert!(
        matches!(&refused, Err(StoreError::ApprovalForged { id, .. }) if id == "a1"),
        "{refused:?}"
    );
    assert!(store.log_entry("l2").unwrap().is_none());
    let report = store.verify().unwrap();
    assert!(!report.valid);
    let problem = report
        .problems
        .iter()
        .find(|p| p.kind == ChainProblemKind::ApprovalMismatch)
        .unwrap_or_else(|| panic!("{report:?}"));
    assert_eq!(problem.ref_id.as_deref(), Some("a1"));
    assert!(
        problem
            .message
            .contains("state `approved` in the table, `pending` in the chain"),
        "{}",
        problem.message
    );

    // Put back, approved for real, used once: resetting the row to unused
    // does not release a second call.
    db.exec("UPDATE approvals SET state = 'pending', decided_by = NULL WHERE id = 'a1'");
    store.decide_approval(verdict("a1", true, now)).wait().unwrap();
    store.record_decision(release).wait().unwrap();
    assert!(store.verify().unwrap().valid);
    db.exec("UPDATE approvals SET released_log_id = NULL WHERE id = 'a1'");
    let mut again = decision("l3", "s1").tool("query_database").at(now).release("a1", &hash);
    again.log_id = "l3".into();
    let refused = store.record_decision(again).wait();
    assert!(matches!(refused, Err(StoreError::ApprovalForged { .. })), "{refused:?}");
    let report = store.verify().unwrap();
    assert!(
        messages(&report).contains("released call none in the table, `l2` in the chain"),
        "{report:?}"
    );
}

fn an_inserted_approval_row_is_named_and_never_used(db: &TestDb) {
    let store = db.open();
    write(&*store, 0, 1);
    db.exec(
        "INSERT INTO approvals(id, created_seq, log_id, session_id, call_hash, state, expires_micros, expires_at) \
         VALUES ('fake', 1, 'l0', 's1', 'h', 'approved', 9000000000000000, '2255-03-14T16:00:00.000000Z')",
    );
    let now = ts("2026-11-21T06:01:00Z");
    assert_eq!(store.approval("fake", now).unwrap(), None);
    assert!(store.approvals(None, now).unwrap().is_empty());
    let release = decision("l9", "s1").release("fake", "h");
    assert!(matches!(
        store.record_decision(release).wait(),
        Err(StoreError::ApprovalForged { .. })
    ));
    let report = store.verify().unwrap();
    assert_eq!(kinds(&report), [(ChainProblemKind::ApprovalMismatch, 0)], "{report:?}");
    assert!(report.problems[0].message.contains("has no records"), "{report:?}");
}

fn an_approved_approval_unused_before_its_expiry_expires(db: &TestDb) {
    let store = db.open();
    approve_decision(&*store, "l1", "a1", "2026-11-21T06:05:00Z");
    let hash = store
        .approval("a1", ts("2026-11-21T06:01:00Z"))
        .unwrap()
        .unwrap()
        .call_hash;
    store
        .decide_approval(verdict("a1", true, ts("2026-11-21T06:01:00Z")))
        .wait()
        .unwrap();
    let later = ts("2026-11-21T06:10:00Z");
    assert_eq!(
        store.approval("a1", later).unwrap().unwrap().state,
        ApprovalState::Expired
    );
    assert_eq!(store.approvals(Some(ApprovalState::Approved), later).unwrap(), []);
    assert_eq!(store.approvals(Some(ApprovalState::Expired), later).unwrap().len(), 1);
    let late = decision("l2", "s1")
        .tool("query_database")
        .at(later)
        .release("a1", &hash);
    assert!(matches!(
        store.record_decision(late).wait(),
        Err(StoreError::ApprovalState {
            state: ApprovalState::Expired,
            ..
        })
    ));
    assert_eq!(store.expire_approvals(later).wait().unwrap(), ["a1"]);
    let expired = store.approval("a1", later).unwrap().unwrap();
    assert_eq!(expired.state, ApprovalState::Expired);
    assert_eq!(expired.decided_by, None);
    // Nothing left to expire; the chain and the table agree.
    assert!(store.expire_approvals(later).wait().unwrap().is_empty());
    assert!(store.verify().unwrap().valid);
}

// ---------------------------------------------------------------- SQLite only

fn sqlite_dir(db: &TestDb) -> &std::path::Path {
    match db {
        TestDb::Sqlite(dir) => dir.path(),
        TestDb::Pg(..) => panic!("a SQLite test got a PostgreSQL database"),
    }
}

fn a_database_file_truncated_to_nothing_is_found(db: &TestDb) {
    {
        let store = db.open();
        write(&*store, 0, 7);
    }
    let file = sqlite_dir(db).join("tame.db");
    for side in ["tame.db-wal", "tame.db-shm"] {
        let _ = std::fs::remove_file(sqlite_dir(db).join(side));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (store, log) = logged(|| db.open());
    assert!(
        log.contains("log shorter than witnessed head (seq 7, found 0)"),
        "{log}"
    );
    let report = store.verify().unwrap();
    assert_eq!(kinds(&report), [(ChainProblemKind::Truncated, 1)], "{report:?}");
    assert!(report.problems[0].message.contains("replaced or emptied"), "{report:?}");
}

fn a_second_store_on_the_same_sqlite_file_is_refused(db: &TestDb) {
    let first = db.open();
    write(&*first, 0, 1);
    let second = SqliteStore::open(sqlite_dir(db).join("tame.db"), SqliteOptions::default()).unwrap_err();
    assert!(matches!(second, StoreError::Locked { .. }), "{second}");
    let message = second.to_string();
    assert!(
        message.contains("another tame server has the SQLite database"),
        "{message}"
    );
    assert!(message.contains("tame.db.lock"), "{message}");
    // The first store goes on, alone.
    write(&*first, 1, 1);
    drop(first);
    let reopened = db.open();
    let report = reopened.verify().unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.records, 2);
}

/// The environment variable naming the database the child process opens.
const CHILD_DB: &str = "TAME_STORE_TEST_LOCKED_DB";

fn a_second_process_on_the_same_sqlite_file_is_refused(db: &TestDb) {
    let store = db.open();
    write(&*store, 0, 1);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "integrity::open_locked_db_in_a_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD_DB, sqlite_dir(db).join("tame.db"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("child: refused: another tame server has the SQLite database"),
        "{text}"
    );
    drop(store);
}

/// Run by `a_second_process_on_the_same_sqlite_file_is_refused` in a
/// process of its own: opens the database it names, which must fail.
#[test]
#[ignore = "run in a child process by a_second_process_on_the_same_sqlite_file_is_refused"]
fn open_locked_db_in_a_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else { return };
    match SqliteStore::open(path, SqliteOptions::default()) {
        Err(e @ StoreError::Locked { .. }) => {
            println!("child: refused: {e}");
            std::io::stdout().flush().unwrap();
        }
        Err(e) => panic!("child: another error: {e}"),
        Ok(_) => panic!("child: the second process opened the locked database"),
    }
}

tests_by_backend!(
    both: [
        deleting_the_newest_record_is_found_and_stays_found,
        deleting_every_record_is_found,
        without_its_checkpoint_file_a_deleted_head_is_reported_as_such,
        verify_lists_every_problem,
        a_forged_approval_row_never_releases_a_call,
        an_inserted_approval_row_is_named_and_never_used,
        an_approved_approval_unused_before_its_expiry_expires,
    ],
    pg_only: [],
);

mod sqlite_only {
    #[test]
    fn a_database_file_truncated_to_nothing_is_found() {
        super::a_database_file_truncated_to_nothing_is_found(&super::TestDb::sqlite())
    }

    #[test]
    fn a_second_store_on_the_same_sqlite_file_is_refused() {
        super::a_second_store_on_the_same_sqlite_file_is_refused(&super::TestDb::sqlite())
    }

    #[test]
    fn a_second_process_on_the_same_sqlite_file_is_refused() {
        super::a_second_process_on_the_same_sqlite_file_is_refused(&super::TestDb::sqlite())
    }
}
