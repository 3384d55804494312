//! Criterion benchmark of the dashboard's reads on a SQLite store holding
//! 10,000 sessions of 10 decisions and one session of 100,000: the
//! overview's totals and newest decisions, and a page of the long
//! session's log, each next to the unbounded reads the dashboard used
//! before (paging through every session, loading whole logs).
//! `cargo bench -p tame-store --bench reads`; the same on PostgreSQL when
//! `TAME_TEST_DATABASE_URL` names a server (`scripts/pg-test.sh cargo bench
//! -p tame-store --bench reads -- pg_`).

use criterion::{Criterion, criterion_group, criterion_main};
use tame_store::Action;
use tame_store::testing::{
    DecisionExt, pg_store, read_decision, record_all, sessions_page, sqlite_store, totals_by_paging,
};
use tame_store::{Durability, LogEntry, NewDecision, Store, StoreResult};

const SESSIONS: u64 = 10_000;
const PER_SESSION: u64 = 10;
const LONG: u64 = 100_000;
/// Entries on a page of the dashboard's session view.
const PAGE: u64 = 100;
/// Decisions on the overview.
const RECENT: u64 = 15;

fn decision(i: u64, session: &str) -> NewDecision {
    let action = match i % 3 {
        0 => Action::Allow,
        1 => Action::Deny,
        _ => Action::Approve,
    };
    read_decision(&format!("l{i}"), session, i).action(action)
}

/// Writes `n` decisions, 4096 in flight at a time.
fn fill(store: &dyn Store, n: u64, session: impl Fn(u64) -> String) {
    let mut i = 0;
    while i < n {
        let end = (i + 4096).min(n);
        let _ = record_all(store, (i..end).map(|k| decision(k, &session(k))));
        i = end;
    }
}

/// The overview's newest decisions as the dashboard read them before: the
/// whole logs of the most recently active sessions.
fn recent_by_session_logs(store: &dyn Store, n: u64) -> StoreResult<Vec<LogEntry>> {
    let page = store.sessions(&sessions_page(1, n))?;
    let mut all = Vec::new();
    for s in &page.sessions {
        if let Some(log) = store.session_log(&s.session_id)? {
            all.extend(log.into_iter().rev().take(n as usize));
        }
    }
    all.sort_by_key(|e| std::cmp::Reverse(e.seq));
    all.truncate(n as usize);
    Ok(all)
}

/// Fills `store` with the benchmark's sessions and measures its reads.
fn bench_store(c: &mut Criterion, name: &str, store: &dyn Store) {
    fill(store, LONG, |_| "long".to_string());
    fill(store, SESSIONS * PER_SESSION, |k| format!("s{}", k % SESSIONS));
    // The long session is still active: among the most recent sessions,
    // whose whole logs the overview's old read loaded.
    fill(store, 1, |_| "long".to_string());
    let _ = store.flush().wait();

    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.bench_function("totals/decision_totals", |b| b.iter(|| store.decision_totals()));
    // The overview's totals as the dashboard computed them before.
    group.bench_function("totals/paging_sessions", |b| b.iter(|| totals_by_paging(store)));
    group.bench_function("recent_15/recent_decisions", |b| {
        b.iter(|| store.recent_decisions(RECENT))
    });
    group.bench_function("recent_15/session_logs", |b| {
        b.iter(|| recent_by_session_logs(store, RECENT))
    });
    let total = LONG + 1;
    group.bench_function("long_session/page_last", |b| {
        b.iter(|| store.session_log_page("long", total - PAGE, PAGE))
    });
    group.bench_function("long_session/page_first", |b| {
        b.iter(|| store.session_log_page("long", 0, PAGE))
    });
    group.bench_function("long_session/whole_log_sliced", |b| {
        b.iter(|| {
            store
                .session_log("long")
                .map(|log| log.map(|l| l.into_iter().take(PAGE as usize).count()))
        })
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(store) = sqlite_store(dir.path().join("reads.db"), Durability::Normal) else {
        return;
    };
    bench_store(c, "dashboard_reads", &store);
}

/// The same on PostgreSQL. Skipped without `TAME_TEST_DATABASE_URL`.
fn pg(c: &mut Criterion) {
    if !tame_store::testing::pg_benches_enabled() {
        return;
    }
    let Ok(url) = tame_store::testing::fresh_database("bench_reads") else {
        return;
    };
    let Ok(store) = pg_store(&url, vec![7u8; 32], Durability::Normal) else {
        return;
    };
    bench_store(c, "pg_dashboard_reads", &store);
}

criterion_group!(benches, reads, pg);
criterion_main!(benches);
