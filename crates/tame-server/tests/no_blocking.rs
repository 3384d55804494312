//! No blocking I/O on async workers: a session's state read back from the
//! database (a cache miss) runs on the blocking pool, so a slow read does
//! not stall the other tasks of the worker that took the request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use common::harness_on;
use serde_json::json;
use tame_server::{Auth, Limits};
use tame_store::{
    Approval, ApprovalDecision, ApprovalState, DecisionReceipt, DecisionTotals, FactsHandle, LogEntry, LogPage,
    NewDecision, NewPolicyVersion, NewResult, PolicyVersion, SessionPage, SessionQuery, SessionSummary, SqliteOptions,
    SqliteStore, Store, StoreResult, Ticket, VerifyReport,
};

/// How long a session read takes (a slow database).
const READ: Duration = Duration::from_millis(400);

/// A store whose session reads block the calling thread for [`READ`], and
/// which keeps no session in memory (every read is a miss).
struct Slow {
    inner: SqliteStore,
}

impl std::fmt::Debug for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slow").finish_non_exhaustive()
    }
}

impl Store for Slow {
    fn session_facts(&self, session_id: &str) -> StoreResult<FactsHandle> {
        std::thread::sleep(READ);
        self.inner.session_facts(session_id)
    }
    fn fresh_session_facts(&self, session_id: &str) -> FactsHandle {
        self.inner.fresh_session_facts(session_id)
    }
    fn record_decision(&self, decision: NewDecision) -> Ticket<DecisionReceipt> {
        self.inner.record_decision(decision)
    }
    fn record_result(&self, result: NewResult) -> Ticket<u64> {
        self.inner.record_result(result)
    }
    fn decide_approval(&self, decision: ApprovalDecision) -> Ticket<Approval> {
        self.inner.decide_approval(decision)
    }
    fn expire_approvals(&self, now: jiff::Timestamp) -> Ticket<Vec<String>> {
        self.inner.expire_approvals(now)
    }
    fn record_policy(&self, policy: NewPolicyVersion) -> Ticket<u64> {
        self.inner.record_policy(policy)
    }
    fn flush(&self) -> Ticket<()> {
        self.inner.flush()
    }
    fn sessions(&self, query: &SessionQuery) -> StoreResult<SessionPage> {
        self.inner.sessions(query)
    }
    fn session_summary(&self, session_id: &str) -> StoreResult<Option<SessionSummary>> {
        self.inner.session_summary(session_id)
    }
    fn session_log(&self, session_id: &str) -> StoreResult<Option<Vec<LogEntry>>> {
        self.inner.session_log(session_id)
    }
    fn log_entry(&self, log_id: &str) -> StoreResult<Option<LogEntry>> {
        self.inner.log_entry(log_id)
    }
    fn decision_totals(&self) -> StoreResult<DecisionTotals> {
        self.inner.decision_totals()
    }
    fn recent_decisions(&self, limit: u64) -> StoreResult<Vec<LogEntry>> {
        self.inner.recent_decisions(limit)
    }
    fn session_log_page(&self, session_id: &str, offset: u64, limit: u64) -> StoreResult<Option<LogPage>> {
        self.inner.session_log_page(session_id, offset, limit)
    }
    fn approvals(&self, state: Option<ApprovalState>, now: jiff::Timestamp) -> StoreResult<Vec<Approval>> {
        self.inner.approvals(state, now)
    }
    fn decided_approvals(&self, limit: u64, now: jiff::Timestamp) -> StoreResult<Vec<Approval>> {
        self.inner.decided_approvals(limit, now)
    }
    fn approval(&self, id: &str, now: jiff::Timestamp) -> StoreResult<Option<Approval>> {
        self.inner.approval(id, now)
    }
    fn policy_versions(&self) -> StoreResult<Vec<PolicyVersion>> {
        self.inner.policy_versions()
    }
    fn verify(&self) -> StoreResult<VerifyReport> {
        self.inner.verify()
    }
    fn export(&self, out: &mut dyn std::io::Write) -> StoreResult<u64> {
        self.inner.export(out)
    }
}

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
    let h = harness_on(dir, Arc::new(Slow { inner }), Auth::default(), Limits::default());
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
