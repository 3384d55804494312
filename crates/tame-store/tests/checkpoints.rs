//! The SQLite store copies its WAL into the database file from a thread of
//! its own, so the writer (and every caller waiting on its batch) is not
//! stalled by checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::json;
use tame_engine::Action;
use tame_store::*;

fn decision(i: usize) -> NewDecision {
    NewDecision {
        log_id: format!("log-{i:05}"),
        session_id: format!("s-{}", i % 7),
        timestamp: "2026-11-21T06:00:00Z".parse().unwrap(),
        tool_name: "read_file".into(),
        tool_args: json!({"path": format!("/home/u/{i}.txt"), "pad": "x".repeat(200)}),
        agent_id: None,
        user_id: None,
        metadata: json!({}),
        decision: Action::Allow,
        rule_name: None,
        reason: "r".into(),
        policy_version: "v1".into(),
        new_approval: None,
        release_of: None,
    }
}

#[test]
fn committed_records_reach_the_database_file_long_before_the_wal_is_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tame.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    // About 150 pages of records: far below the size at which the writer's
    // own automatic checkpoint would copy them.
    let tickets: Vec<_> = (0..1000).map(|i| store.record_decision(decision(i))).collect();
    for t in tickets {
        t.wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let grown = loop {
        let len = std::fs::metadata(&path).unwrap().len();
        if len > before + 300 * 1024 || Instant::now() > deadline {
            break len;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        grown > before + 300 * 1024,
        "the database file stayed at {grown} bytes (it was {before}): nothing was checkpointed"
    );
    // Everything is still there, in order, through the store and after a reopen.
    assert_eq!(store.verify().unwrap().records, 1000);
    drop(store);
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let report = store.verify().unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.records, 1000);
}
