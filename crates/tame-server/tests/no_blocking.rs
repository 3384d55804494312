//! No blocking I/O on async workers: a session's state read back from the
//! database (a cache miss) runs on the blocking pool, so a slow read does
//! not stall the other tasks of the worker that took the request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use common::{Hooked, harness_on};
use serde_json::json;
use tame_server::{Auth, Limits};
use tame_store::{SqliteOptions, SqliteStore};

/// How long a session read takes (a slow database).
const READ: Duration = Duration::from_millis(400);

/// Runs `request` on a one-thread runtime beside a task ticking every
/// 10 ms; returns how many ticks happened while the request ran.
fn ticks_during(request: impl std::future::Future<Output = ()>) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Let the ticker start.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let before = ticks.load(Ordering::SeqCst);
        request.await;
        let during = ticks.load(Ordering::SeqCst) - before;
        ticker.abort();
        during
    })
}

#[test]
fn a_slow_session_read_does_not_stall_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
    // Session reads block for READ, and every read is a miss.
    let mut slow = Hooked::new(inner);
    slow.session_read_delay = READ;
    let h = harness_on(dir, Arc::new(slow), Auth::default(), Limits::default());
    // Enforce: the named session is read back (a miss).
    let ticks = ticks_during(async {
        let r = h
            .enforce(json!({"tool_name": "send_email", "tool_args": {}, "session_id": "s-slow"}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    });
    // 400 ms at one tick per 10 ms: the ticker ran meanwhile.
    assert!(ticks >= 10, "the worker stalled during the session read: {ticks} ticks");
    // A tool's result that labels the session, and a dry run of a call in
    // that session, read the session too.
    let logged = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(h.enforce(json!({"tool_name": "read_file", "tool_args": {"path": "/x"}, "session_id": "s-slow"})));
    let log_id = logged.json["log_id"].as_str().unwrap().to_owned();
    let token = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
    let ticks = ticks_during(async {
        let r = h
            .post(
                &format!("/api/v1/enforce/s-slow/result?log_id={log_id}"),
                json!({"status": "success", "result": {"key": token}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.json["labels"].as_array().is_some_and(|l| !l.is_empty()), "{}", r.text);
    });
    assert!(
        ticks >= 10,
        "the worker stalled while labelling the session: {ticks} ticks"
    );
    let ticks = ticks_during(async {
        let r = h
            .get("/api/v1/policy/test?tool_name=send_email&session_id=s-slow")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    });
    assert!(
        ticks >= 10,
        "the worker stalled during a dry run's session read: {ticks} ticks"
    );
}
