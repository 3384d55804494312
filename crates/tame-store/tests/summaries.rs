//! The SQLite store writes session summaries lazily (at most every
//! quarter second, not in every batch): these tests show that reads never
//! see them stale and that a crash that lost them is repaired from the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::json;
use tame_store::Action;
use tame_store::testing::{DecisionExt, record_all, session_log_ids, sessions_page};
use tame_store::*;

/// A `send_email` decision by agent `agent-{session}` of user `u1`, which
/// no rule matched.
fn decision(log_id: &str, session: &str, action: Action, at: &str) -> NewDecision {
    tame_store::testing::decision(log_id, session)
        .tool("send_email")
        .args(json!({"n": log_id}))
        .action(action)
        .at(at.parse().unwrap())
        .agent(Some(&format!("agent-{session}")))
        .user(Some("u1"))
        .no_rule("r")
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap()
}

fn sql(dir: &tempfile::TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join("tame.db")).unwrap()
}

/// `(total, allowed, denied, approved)` of a session's summary.
fn counts(store: &dyn Store, session: &str) -> (u64, u64, u64, u64) {
    let s = store.session_summary(session).unwrap().unwrap();
    (s.total_calls, s.allowed_calls, s.denied_calls, s.approved_calls)
}

/// Writes `calls` as `(log_id, session, action)` decisions a second apart,
/// all in flight together, and waits for them.
fn write(store: &dyn Store, calls: &[(&str, &str, Action)]) {
    let decisions = calls.iter().enumerate().map(|(i, (log, session, action))| {
        decision(log, session, *action, &format!("2026-11-21T06:00:{:02}Z", i % 60))
    });
    record_all(store, decisions).unwrap();
}

#[test]
fn reads_right_after_a_write_see_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    write(&store, &[("l1", "s1", Action::Allow), ("l2", "s1", Action::Deny)]);
    // Facts of a session this store instance never held in memory, read
    // before any summary is written: found through the published tail.
    assert_eq!(store.session_facts("s1").unwrap().lock().calls(), 1);
    assert_eq!(counts(&store, "s1"), (2, 1, 1, 0));
    assert_eq!(store.session_log("s1").unwrap().unwrap().len(), 2);
    let page = store.sessions(&sessions_page(1, 50)).unwrap();
    assert_eq!(page.total_count, 1);
}

#[test]
fn summaries_a_crash_lost_are_rebuilt_from_the_log_without_double_counting() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        write(
            &store,
            &[
                ("l1", "a", Action::Allow),
                ("l2", "a", Action::Deny),
                ("l3", "b", Action::Allow),
            ],
        );
    }
    // What the summaries looked like after the first writes.
    let first: String = {
        let c = sql(&dir);
        c.execute_batch("CREATE TABLE saved AS SELECT * FROM sessions").unwrap();
        c.query_row("SELECT value FROM meta WHERE key = 'summaries_seq'", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(first, "3");
    {
        let store = open(&dir);
        write(
            &store,
            &[
                ("l4", "a", Action::Approve),
                ("l5", "c", Action::Allow),
                ("l6", "b", Action::Deny),
            ],
        );
    }
    // A crash before the later summaries were written: the table and the
    // mark go back to the first state, the records stay.
    sql(&dir)
        .execute_batch(&format!(
            "DELETE FROM sessions; INSERT INTO sessions SELECT * FROM saved; DROP TABLE saved;
             UPDATE meta SET value = '{first}' WHERE key = 'summaries_seq';"
        ))
        .unwrap();

    let store = open(&dir);
    assert_eq!(counts(&store, "a"), (3, 1, 1, 1));
    assert_eq!(counts(&store, "b"), (2, 1, 1, 0));
    assert_eq!(counts(&store, "c"), (1, 1, 0, 0));
    assert_eq!(
        store.session_summary("c").unwrap().unwrap().agent_id.as_deref(),
        Some("agent-c")
    );
    // Tails were rebuilt too: the logs are whole, and new records link on.
    assert_eq!(store.session_log("a").unwrap().unwrap().len(), 3);
    write(&store, &[("l7", "a", Action::Allow)]);
    assert_eq!(session_log_ids(&store, "a").unwrap(), ["l1", "l2", "l4", "l7"]);
    assert_eq!(store.session_facts("a").unwrap().lock().calls(), 2);
    assert_eq!(store.sessions(&sessions_page(1, 50)).unwrap().total_count, 3);
    assert!(store.verify().unwrap().valid);
}

#[test]
fn summaries_are_written_when_the_writer_goes_idle() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    write(&store, &[("l1", "s1", Action::Allow)]);
    // No read asks for them: the idle writer writes them on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n: i64 = sql(&dir)
            .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        if n == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "summaries never written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test]
async fn summary_reads_inside_a_runtime_do_not_panic() {
    // A single-threaded runtime: the read blocks this thread on the writer
    // (tokio's own blocking receive would panic here).
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .record_decision(decision("l1", "s1", Action::Allow, "2026-11-21T06:00:00Z"))
        .await
        .unwrap();
    assert_eq!(counts(&store, "s1"), (1, 1, 0, 0));
    assert_eq!(store.session_log("s1").unwrap().unwrap().len(), 1);
    store.flush().wait().unwrap();
}
