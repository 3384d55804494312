//! `GET /api/v1/approvals/{id}/wait`: a change of one approval wakes only
//! its own waiters (counted as the store reads of approvals they make),
//! waiters leave nothing behind, and a decision made right after a
//! waiter's first read is not missed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Harness, Hooked, harness_on};
use serde_json::{Value, json};
use tame_server::{AppState, Auth, Limits};
use tame_store::{Approval, ApprovalState, SqliteOptions, SqliteStore};
use tower::ServiceExt;

fn counting_harness(limits: Limits) -> (Harness, Arc<Hooked>) {
    let dir = tempfile::tempdir().unwrap();
    let inner = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
    let store = Arc::new(Hooked::new(inner));
    (harness_on(dir, store.clone(), Auth::default(), limits), store)
}

/// A pending approval of session `session`.
async fn pending(h: &Harness, session: &str) -> String {
    let made = h
        .enforce(json!({"tool_name": "query_database", "tool_args": {"database": "production"}, "session_id": session}))
        .await;
    assert_eq!(made.json["decision"], "approve", "{}", made.text);
    made.json["approval_id"].as_str().unwrap().to_string()
}

async fn wait_once(state: AppState, id: String, timeout_s: u64) -> (StatusCode, Value) {
    let req = Request::get(format!("/api/v1/approvals/{id}/wait?timeout={timeout_s}"))
        .body(Body::empty())
        .unwrap();
    let resp = tame_server::app(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn spawn_waiter(state: &AppState, id: &str, timeout_s: u64) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    tokio::spawn(wait_once(state.clone(), id.to_owned(), timeout_s))
}

/// Waits (a few seconds at most) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_wakes_only_the_waiters_of_its_approval() {
    const N: u64 = 200;
    let (h, store) = counting_harness(Limits::default());
    let a = pending(&h, "sa").await;
    let b = pending(&h, "sb").await;
    let base = store.approval_reads.load(Ordering::SeqCst);
    let reads = || store.approval_reads.load(Ordering::SeqCst) - base;

    let a_waiters: Vec<_> = (0..N).map(|_| spawn_waiter(&h.state, &a, 30)).collect();
    // Each waiter registers, then reads its approval once.
    until("A's waiters to read", || reads() == N).await;
    let b_waiter = spawn_waiter(&h.state, &b, 30);
    until("B's waiter to read", || reads() == N + 1).await;
    assert_eq!(h.state.waited_approvals(), 2);

    let decided = h.post(&format!("/api/v1/approvals/{b}/approve"), json!({})).await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.text);
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), b_waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "approved", "{body}");
    assert_eq!(body["timed_out"], false);
    // Give wrongly woken waiters time to read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reads(), N + 2, "deciding B woke waiters of A");
    assert!(a_waiters.iter().all(|w| !w.is_finished()));
    assert_eq!(h.state.waited_approvals(), 1);

    let started = Instant::now();
    let decided = h
        .post(&format!("/api/v1/approvals/{a}/reject"), json!({"reason": "no"}))
        .await;
    assert_eq!(decided.status, StatusCode::OK, "{}", decided.text);
    for w in a_waiters {
        let (status, body) = tokio::time::timeout(Duration::from_secs(5), w).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["state"], "rejected", "{body}");
        assert_eq!(body["timed_out"], false);
    }
    println!("{N} waiters of A released in {:?}", started.elapsed());
    assert_eq!(reads(), 2 * N + 2);
    assert_eq!(h.state.waited_approvals(), 0);
}

#[tokio::test]
async fn waiters_that_leave_leave_no_entries() {
    let (h, _store) = counting_harness(Limits::default());
    let a = pending(&h, "sa").await;
    // Timed out.
    let timed: Vec<_> = (0..20).map(|_| spawn_waiter(&h.state, &a, 1)).collect();
    // An unknown approval: 404 at once.
    let unknown = spawn_waiter(&h.state, "no-such-approval", 1);
    // A client that goes away (the request's future dropped).
    let gone = spawn_waiter(&h.state, &a, 30);
    until("the waiters to register", || h.state.waited_approvals() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    let (status, _) = unknown.await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    for w in timed {
        let (status, body) = w.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["timed_out"], true, "{body}");
    }
    assert_eq!(h.state.waited_approvals(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_right_after_the_first_read_is_not_missed() {
    let (h, store) = counting_harness(Limits::default());
    let a = pending(&h, "sa").await;
    // Right after the waiter's first read (which found it pending), the
    // approval is decided and its waiters notified, before the waiter
    // starts to wait.
    let state = h.state.clone();
    let runtime = tokio::runtime::Handle::current();
    let fired = Arc::new(AtomicU64::new(0));
    let once = fired.clone();
    *store.after_approval.lock().unwrap() = Some(Box::new(move |approval: &Approval| {
        if approval.state == ApprovalState::Pending && once.fetch_add(1, Ordering::SeqCst) == 0 {
            let req = Request::post(format!("/api/v1/approvals/{}/approve", approval.approval_id))
                .body(Body::empty())
                .unwrap();
            // A blocking thread of the runtime (the store is read there).
            let resp = runtime.block_on(tame_server::app(state.clone()).oneshot(req)).unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }));
    let started = Instant::now();
    let (status, body) = wait_once(h.state.clone(), a, 20).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "approved", "{body}");
    assert_eq!(body["timed_out"], false);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the waiter slept through the decision"
    );
    assert_eq!(fired.load(Ordering::SeqCst), 1);
}
