//! Bounded reads for the dashboard, on both backends: decision totals over
//! every session (right after writes too, before SQLite's lazy summaries
//! are written), the newest decisions of the whole log, and pages of one
//! session's log, each checked against what the unbounded reads
//! (`sessions`, `session_log`) say.

use super::*;

/// Writes `calls` as `(log_id, session, action)` decisions, all in flight
/// together (one group commit), and waits for them.
fn write_all(store: &dyn Store, calls: &[(String, String, Action)]) {
    let decisions = calls
        .iter()
        .map(|(log, session, action)| decision(log, session).args(json!({"log": log})).action(*action));
    record_all(store, decisions).unwrap();
}

/// Totals summed over the session list, page by page (what the dashboard
/// used to do).
fn summed_over_sessions(store: &dyn Store) -> DecisionTotals {
    tame_store::testing::totals_by_paging(store).unwrap()
}

/// `session_log` as the reference for the bounded reads. It applies any
/// record naming a log id to the entry, so the `approval_created` record
/// after an `approve` decision leaves `tool_result: Some(null)` there (the
/// same JSON as `None`); the bounded reads attach `result` records only.
fn reference_log(store: &dyn Store, session: &str) -> Option<Vec<LogEntry>> {
    let mut log = store.session_log(session).unwrap()?;
    for e in &mut log {
        if e.tool_result == Some(serde_json::Value::Null) {
            e.tool_result = None;
        }
    }
    Some(log)
}

/// Every session's log, merged newest first (the reference for
/// `recent_decisions`).
fn all_entries_newest_first(store: &dyn Store) -> Vec<LogEntry> {
    let sessions = store.sessions(&sessions_page(1, 1000)).unwrap();
    let mut all: Vec<LogEntry> = sessions
        .sessions
        .iter()
        .flat_map(|s| reference_log(store, &s.session_id).unwrap())
        .collect();
    all.sort_by_key(|e| std::cmp::Reverse(e.seq));
    all
}

fn totals_count_every_session_right_after_writes(db: &TestDb) {
    let store = db.open();
    assert_eq!(store.decision_totals().unwrap(), DecisionTotals::default());

    // 7 sessions, 60 decisions: allow, deny, approve in turn.
    let actions = [Action::Allow, Action::Deny, Action::Approve];
    let calls: Vec<(String, String, Action)> = (0..60)
        .map(|i| (format!("l{i}"), format!("s{}", i % 7), actions[i % 3]))
        .collect();
    write_all(&*store, &calls);
    // Read at once: SQLite has not written these summaries yet (it does
    // so at most every 250 ms); the read must not miss them.
    let totals = store.decision_totals().unwrap();
    assert_eq!(
        totals,
        DecisionTotals {
            sessions: 7,
            total: 60,
            allowed: 20,
            denied: 20,
            approved: 20,
        }
    );
    assert_eq!(totals, summed_over_sessions(&*store));

    // More decisions, to known and new sessions, and a result (which is
    // not a decision and changes no count).
    write_all(
        &*store,
        &[
            ("m1".into(), "s0".into(), Action::Allow),
            ("m2".into(), "new".into(), Action::Deny),
        ],
    );
    store.record_result(labelled_result("s0", "m1", &[])).wait().unwrap();
    let totals = store.decision_totals().unwrap();
    assert_eq!(
        (
            totals.sessions,
            totals.total,
            totals.allowed,
            totals.denied,
            totals.approved
        ),
        (8, 62, 21, 21, 20)
    );
    drop(store);

    // Read back by a new store, and equal to the per-session sums.
    let store = db.open();
    assert_eq!(store.decision_totals().unwrap(), totals);
    assert_eq!(summed_over_sessions(&*store), totals);
}

/// Decisions in three sessions with results, approvals (created, decided,
/// expired) and a policy record between them: records the recent and page
/// reads must skip or attach.
fn a_busy_log(store: &dyn Store) {
    record_policy_1(store);
    let actions = [Action::Allow, Action::Deny];
    let calls: Vec<(String, String, Action)> = (0..30)
        .map(|i| (format!("l{i}"), format!("s{}", i % 3), actions[i % 2]))
        .collect();
    write_all(store, &calls);
    for i in [0, 3, 29] {
        let done = json!({"status": "success", "duration_ms": i});
        let r = result(
            &format!("s{}", i % 3),
            &format!("l{i}"),
            ts("2026-11-21T06:00:05Z"),
            done,
        );
        store.record_result(r).wait().unwrap();
    }
    // These approvals are in `s1`.
    rejected_and_expired_approvals(store);
    // A result for an early decision, written last.
    let late = json!({"status": "error", "error_message": "late"});
    store
        .record_result(result("s1", "l1", ts("2026-11-21T06:20:00Z"), late))
        .wait()
        .unwrap();
}

fn recent_decisions_are_the_newest_decisions_only(db: &TestDb) {
    let store = db.open();
    assert!(store.recent_decisions(10).unwrap().is_empty());
    a_busy_log(&*store);
    let reference = all_entries_newest_first(&*store);
    assert_eq!(reference.len(), 32);

    let recent = store.recent_decisions(100).unwrap();
    assert_eq!(recent, reference, "every decision, newest first, results attached");
    assert_eq!(recent[0].id, "l-b");
    assert_eq!(recent[1].id, "l-a");
    assert!(recent.windows(2).all(|w| w[0].seq > w[1].seq));
    // Results are attached, however late they came.
    let l1 = recent.iter().find(|e| e.id == "l1").unwrap();
    assert_eq!(l1.error_message.as_deref(), Some("late"));
    let l29 = recent.iter().find(|e| e.id == "l29").unwrap();
    assert_eq!(l29.execution_status.as_deref(), Some("success"));

    for limit in [1u64, 2, 5, 31] {
        let recent = store.recent_decisions(limit).unwrap();
        assert_eq!(recent.len() as u64, limit);
        assert_eq!(recent[..], reference[..limit as usize], "limit {limit}");
    }
    assert!(store.recent_decisions(0).unwrap().is_empty());
    // Records after the newest decision (a result, an expiry) are skipped.
    store.record_result(labelled_result("s0", "l0", &[])).wait().unwrap();
    assert_eq!(store.recent_decisions(1).unwrap()[0].id, "l-b");
}

fn recent_decisions_are_capped(db: &TestDb) {
    let store = db.open();
    let n = MAX_RECENT_DECISIONS + 5;
    let calls: Vec<(String, String, Action)> = (0..n)
        .map(|i| (format!("l{i}"), format!("s{}", i % 10), Action::Allow))
        .collect();
    write_all(&*store, &calls);
    let recent = store.recent_decisions(u64::MAX).unwrap();
    assert_eq!(recent.len() as u64, MAX_RECENT_DECISIONS);
    assert_eq!(recent[0].id, format!("l{}", n - 1));
    assert_eq!(recent.last().unwrap().id, "l5");
}

/// `session_log_page` against a slice of the whole log.
fn check_page(store: &dyn Store, session: &str, offset: u64, limit: u64) -> LogPage {
    // The page first: a read right after writes must not need the
    // reference's read to bring the summaries up to date.
    let page = store.session_log_page(session, offset, limit).unwrap().unwrap();
    let whole = reference_log(store, session).unwrap();
    let cap = limit.min(MAX_LOG_PAGE) as usize;
    let expected: Vec<LogEntry> = whole
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(cap)
        .cloned()
        .collect();
    assert_eq!(page.total, whole.len() as u64, "{session} total");
    assert_eq!(page.entries, expected, "{session} offset {offset} limit {limit}");
    page
}

fn session_log_pages_slice_the_log_at_every_edge(db: &TestDb) {
    let store = db.open();
    assert!(store.session_log_page("s1", 0, 10).unwrap().is_none(), "empty store");

    // `long`: 250 decisions, `other` interleaved, results here and there.
    let calls: Vec<(String, String, Action)> = (0..400)
        .map(|i| {
            let session = if i % 8 < 5 { "long" } else { "other" };
            let action = if i % 3 == 0 { Action::Deny } else { Action::Allow };
            (format!("l{i}"), session.to_string(), action)
        })
        .collect();
    write_all(&*store, &calls);
    for i in [0, 7, 100, 399] {
        let session = if i % 8 < 5 { "long" } else { "other" };
        store
            .record_result(labelled_result(session, &format!("l{i}"), &[]))
            .wait()
            .unwrap();
    }
    // Read at once (before SQLite writes the summaries).
    let first = check_page(&*store, "long", 0, 100);
    assert_eq!(first.total, 250);
    assert_eq!(first.entries.len(), 100);
    assert_eq!(first.entries[0].id, "l0");
    assert_eq!(first.entries[0].execution_status.as_deref(), Some("success"));
    assert!(first.entries.iter().any(|e| e.id == "l100" && e.tool_result.is_some()));
    let middle = check_page(&*store, "long", 100, 100);
    assert_eq!(middle.entries.len(), 100);
    assert_eq!(middle.entries[0].id, "l160");
    let last = check_page(&*store, "long", 200, 100);
    assert_eq!(last.entries.len(), 50);
    assert_eq!(last.entries.last().unwrap().id, "l396");
    for (offset, limit) in [(1, 1), (249, 1), (249, 100), (99, 2), (0, 250), (0, 251), (17, 33)] {
        check_page(&*store, "long", offset, limit);
    }
    // Past the end, and empty pages, still say how long the log is.
    for (offset, limit) in [(250, 100), (1000, 10), (u64::MAX, u64::MAX), (0, 0)] {
        let page = check_page(&*store, "long", offset, limit);
        assert!(page.entries.is_empty());
        assert_eq!(page.total, 250);
    }
    // A limit past the cap is capped.
    let all = check_page(&*store, "long", 0, u64::MAX);
    assert_eq!(all.entries.len(), 250);
    let other = check_page(&*store, "other", 140, 100);
    assert_eq!((other.total, other.entries.len()), (150, 10));
    assert_eq!(other.entries.last().unwrap().id, "l399");
    assert_eq!(
        other.entries.last().unwrap().execution_status.as_deref(),
        Some("success")
    );

    assert!(store.session_log_page("nope", 0, 10).unwrap().is_none());
    assert!(store.session_log_page("", 0, 10).unwrap().is_none());

    // Pages keep following the session's links after a restart and new
    // writes.
    drop(store);
    let store = db.open();
    write_all(&*store, &[("after".into(), "long".into(), Action::Deny)]);
    let tail = check_page(&*store, "long", 250, 100);
    assert_eq!(tail.total, 251);
    assert_eq!(tail.entries.len(), 1);
    assert_eq!(tail.entries[0].id, "after");
    check_page(&*store, "long", 0, 100);
}

fn session_log_pages_hold_approvals_and_late_results(db: &TestDb) {
    let store = db.open();
    a_busy_log(&*store);
    // `s1`: l1, l4, ..., l28 (10 decisions), then l-a and l-b, with the
    // approval records and a late result for l1 after them.
    for offset in 0..=12 {
        for limit in [1, 3, 12, 13] {
            check_page(&*store, "s1", offset, limit);
        }
    }
    let first = check_page(&*store, "s1", 0, 1);
    assert_eq!(first.entries[0].error_message.as_deref(), Some("late"));
    let last = check_page(&*store, "s1", 10, 2);
    assert_eq!(
        last.entries
            .iter()
            .map(|e| e.approval_id.as_deref())
            .collect::<Vec<_>>(),
        [Some("a1"), Some("a2")]
    );
}

fn a_damaged_log_gives_a_short_page_not_an_error(db: &TestDb) {
    let store = db.open();
    let calls: Vec<(String, String, Action)> = (0..10)
        .map(|i| (format!("l{i}"), "s1".to_string(), Action::Allow))
        .collect();
    write_all(&*store, &calls);
    // Let the summaries be written, then delete a record mid-session.
    store.session_summary("s1").unwrap();
    assert_eq!(db.exec("DELETE FROM audit WHERE seq = 5"), 1);
    let page = store.session_log_page("s1", 0, 100).unwrap().unwrap();
    assert_eq!(page.total, 10);
    // The walk from the newest record stops at the gap.
    assert_eq!(
        page.entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["l5", "l6", "l7", "l8", "l9"]
    );
    assert_eq!(store.recent_decisions(100).unwrap().len(), 9);
}

fn both_backends_read_the_same_pages_and_totals(db: &TestDb) {
    let sqlite_db = TestDb::sqlite();
    let lite = sqlite_db.open_with_secret(PG_SECRET.to_vec()).unwrap();
    let pg = db.open_with_secret(PG_SECRET.to_vec()).unwrap();
    a_busy_log(&*lite);
    a_busy_log(&*pg);
    assert_eq!(lite.decision_totals().unwrap(), pg.decision_totals().unwrap());
    assert_eq!(lite.recent_decisions(50).unwrap(), pg.recent_decisions(50).unwrap());
    for s in ["s0", "s1", "s2", "nope"] {
        for (offset, limit) in [(0, 5), (3, 4), (9, 100)] {
            assert_eq!(
                lite.session_log_page(s, offset, limit).unwrap(),
                pg.session_log_page(s, offset, limit).unwrap()
            );
        }
    }
}

/// An `approve` decision in session `s1` whose approval expires at `expires`.
fn approval_in(store: &dyn Store, n: usize, expires: &str) {
    approve_decision(store, &format!("l-{n}"), &format!("a{n}"), expires);
}

fn decide(store: &dyn Store, n: usize, approve: bool) {
    store
        .decide_approval(ApprovalDecision {
            by: Some("admin".into()),
            ..verdict(&format!("a{n}"), approve, ts("2026-11-21T06:01:00Z"))
        })
        .wait()
        .unwrap();
}

fn ids(approvals: &[Approval]) -> Vec<&str> {
    approvals.iter().map(|a| a.approval_id.as_str()).collect()
}

fn pending_and_decided_approvals_are_read_by_state(db: &TestDb) {
    let store = db.open();
    let now = ts("2026-11-21T06:30:00Z");
    assert!(store.decided_approvals(20, now).unwrap().is_empty());
    // a0 approved, a1 rejected, a2 marked expired, a3 past its expiry but
    // not marked yet, a4 and a6 pending, a5 rejected.
    for (n, expires) in [
        (0, "2026-11-21T07:00:00Z"),
        (1, "2026-11-21T07:00:00Z"),
        (2, "2026-11-21T06:05:00Z"),
    ] {
        approval_in(&*store, n, expires);
    }
    decide(&*store, 0, true);
    decide(&*store, 1, false);
    store.expire_approvals(ts("2026-11-21T06:10:00Z")).wait().unwrap();
    approval_in(&*store, 3, "2026-11-21T06:20:00Z");
    approval_in(&*store, 4, "2026-11-21T07:00:00Z");
    approval_in(&*store, 5, "2026-11-21T07:00:00Z");
    decide(&*store, 5, false);
    // Exactly at its expiry: no longer pending (as `approval` reads it).
    approval_in(&*store, 6, "2026-11-21T06:30:00Z");
    approval_in(&*store, 7, "2026-11-21T08:00:00Z");

    let all = store.approvals(None, now).unwrap();
    assert_eq!(ids(&all), ["a7", "a6", "a5", "a4", "a3", "a2", "a1", "a0"]);
    let pending = store.approvals(Some(ApprovalState::Pending), now).unwrap();
    assert_eq!(ids(&pending), ["a7", "a4"]);
    assert_eq!(
        store.approval("a6", now).unwrap().unwrap().state,
        ApprovalState::Expired
    );
    let expired = store.approvals(Some(ApprovalState::Expired), now).unwrap();
    assert_eq!(ids(&expired), ["a6", "a3", "a2"]);

    // The decided ones, as the whole list filtered says, newest first.
    let reference: Vec<Approval> = all
        .iter()
        .filter(|a| a.state != ApprovalState::Pending)
        .cloned()
        .collect();
    let decided = store.decided_approvals(20, now).unwrap();
    assert_eq!(decided, reference);
    assert_eq!(ids(&decided), ["a6", "a5", "a3", "a2", "a1", "a0"]);
    assert_eq!(decided[1].state, ApprovalState::Rejected);
    assert_eq!(
        decided[1].tool_name, "query_database",
        "the decision's fields are joined"
    );
    assert_eq!(store.decided_approvals(2, now).unwrap(), reference[..2]);
    assert!(store.decided_approvals(0, now).unwrap().is_empty());
    // Later, the pending ones have expired too.
    let later = ts("2026-11-21T09:00:00Z");
    assert_eq!(store.decided_approvals(20, later).unwrap().len(), 8);
    assert!(store.approvals(Some(ApprovalState::Pending), later).unwrap().is_empty());
}

/// What a random history does next.
#[derive(Debug, Clone)]
enum Op {
    /// A decision (allow, deny or approve with its approval) in session `0..3`.
    Decide { session: usize, action: usize },
    /// A result for the `pick`-th decision written so far (modulo their number).
    Result { pick: usize },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (0usize..3, 0usize..3).prop_map(|(session, action)| Op::Decide { session, action }),
        1 => any::<usize>().prop_map(|pick| Op::Result { pick }),
    ]
}

/// Model-based: random histories of decisions, approvals and (late)
/// results in three interleaved sessions; every page read equals the
/// slice of the whole log, the newest decisions equal the merged logs, and
/// the totals equal the per-session sums. Each case writes sessions of its
/// own into the same database.
fn random_histories_read_back_like_the_whole_log(db: &TestDb) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let store = db.open();
    let mut runner = TestRunner::new(Config {
        cases: 12,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let strategy = (
        proptest::collection::vec(op(), 0..60),
        proptest::collection::vec((0u64..70, 0u64..70), 1..8),
    );
    runner
        .run(&strategy, |(ops, pages)| {
            let c = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut written: Vec<(String, String)> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::Decide { session, action } => {
                        let (log, sid) = (format!("c{c}-l{i}"), format!("c{c}-s{session}"));
                        let action = [Action::Allow, Action::Deny, Action::Approve][*action];
                        let d = decision(&log, &sid).action(action);
                        let d = if action == Action::Approve {
                            d.approval(&format!("c{c}-a{i}"), ts("2026-11-21T07:00:00Z"))
                        } else {
                            d
                        };
                        store.record_decision(d).wait().unwrap();
                        written.push((log, sid));
                    }
                    Op::Result { pick } if !written.is_empty() => {
                        let (log, sid) = &written[pick % written.len()];
                        let done = json!({"status": "success", "duration_ms": i});
                        let r = result(sid, log, ts("2026-11-21T06:00:09Z"), done);
                        store.record_result(r).wait().unwrap();
                    }
                    Op::Result { .. } => {}
                }
            }
            for session in 0..3 {
                let sid = format!("c{c}-s{session}");
                let page = store.session_log_page(&sid, 0, 0).unwrap();
                let whole = reference_log(&*store, &sid);
                prop_assert_eq!(page.is_some(), whole.is_some(), "{}", sid);
                if whole.is_some() {
                    for &(offset, limit) in &pages {
                        check_page(&*store, &sid, offset, limit);
                    }
                }
            }
            let reference = all_entries_newest_first(&*store);
            prop_assert_eq!(
                store.recent_decisions(25).unwrap(),
                reference.into_iter().take(25).collect::<Vec<_>>()
            );
            prop_assert_eq!(store.decision_totals().unwrap(), summed_over_sessions(&*store));
            Ok(())
        })
        .unwrap();
}

tests_by_backend!(
    both: [
        totals_count_every_session_right_after_writes,
        recent_decisions_are_the_newest_decisions_only,
        recent_decisions_are_capped,
        session_log_pages_slice_the_log_at_every_edge,
        session_log_pages_hold_approvals_and_late_results,
        a_damaged_log_gives_a_short_page_not_an_error,
        random_histories_read_back_like_the_whole_log,
        pending_and_decided_approvals_are_read_by_state,
    ],
    pg_only: [both_backends_read_the_same_pages_and_totals],
);
