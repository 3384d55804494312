//! Criterion benchmark of the audit writer: appending 1,000 decisions with
//! all of them in flight (group commit), in both durability modes, and
//! verifying the chain; the same against PostgreSQL when
//! `TAME_TEST_DATABASE_URL` names a server (`scripts/pg-test.sh cargo bench
//! -p tame-store --bench append -- pg_`).

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tame_engine::Action;
use tame_store::{Durability, NewDecision, PgOptions, PgStore, SqliteOptions, SqliteStore, Store};

fn decision(i: u64) -> NewDecision {
    NewDecision {
        log_id: uuid::Uuid::now_v7().to_string(),
        session_id: format!("s{}", i % 200),
        timestamp: jiff::Timestamp::now(),
        tool_name: "read_file".into(),
        tool_args: json!({"path": format!("/home/u/{i}.txt")}),
        agent_id: Some("bench".into()),
        user_id: None,
        metadata: json!({}),
        decision: Action::Allow,
        rule_name: Some("allow_reads".into()),
        reason: "Matched rule: allow_reads".into(),
        policy_version: "1".into(),
        new_approval: None,
        release_of: None,
    }
}

/// Batches of 1000 decisions appended to `store`, each batch waited for.
fn bench_appends(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, store: &dyn Store) {
    let mut i = 0u64;
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter(|| {
            let tickets: Vec<_> = (0..1000)
                .map(|_| {
                    i += 1;
                    store.record_decision(decision(i))
                })
                .collect();
            tickets.into_iter().map(|t| t.wait().is_ok()).filter(|ok| *ok).count()
        });
    });
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_1000");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let Ok(dir) = tempfile::tempdir() else { return };
        let Ok(store) = SqliteStore::open(
            dir.path().join("b.db"),
            SqliteOptions {
                durability,
                ..Default::default()
            },
        ) else {
            return;
        };
        bench_appends(&mut group, name, &store);
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(store) = SqliteStore::open(dir.path().join("v.db"), SqliteOptions::default()) else {
        return;
    };
    let tickets: Vec<_> = (0..10_000).map(|i| store.record_decision(decision(i))).collect();
    for t in tickets {
        let _ = t.wait();
    }
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(10);
    group.bench_function("10000_records", |b| b.iter(|| store.verify().map(|r| r.valid)));
    group.finish();
}

/// Appending and verifying through the PostgreSQL store, each durability
/// mode in a fresh database. Skipped without `TAME_TEST_DATABASE_URL`.
fn pg(c: &mut Criterion) {
    if std::env::var_os(tame_store::testing::TEST_DATABASE_URL).is_none() {
        eprintln!("pg benchmarks skipped: TAME_TEST_DATABASE_URL is not set (run through scripts/pg-test.sh)");
        return;
    }
    let mut group = c.benchmark_group("pg_append_1000");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let Ok(url) = tame_store::testing::fresh_database(&format!("bench_{name}")) else {
            return;
        };
        let options = PgOptions {
            durability,
            ..PgOptions::new(vec![7u8; 32])
        };
        let Ok(store) = PgStore::open(&url, options) else {
            return;
        };
        bench_appends(&mut group, name, &store);
    }
    group.finish();

    let Ok(url) = tame_store::testing::fresh_database("bench_verify") else {
        return;
    };
    let Ok(store) = PgStore::open(&url, PgOptions::new(vec![7u8; 32])) else {
        return;
    };
    let tickets: Vec<_> = (0..10_000).map(|i| store.record_decision(decision(i))).collect();
    for t in tickets {
        let _ = t.wait();
    }
    let mut group = c.benchmark_group("pg_verify");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(10);
    group.bench_function("10000_records", |b| b.iter(|| store.verify().map(|r| r.valid)));
    group.finish();
}

criterion_group!(benches, append, verify, pg);
criterion_main!(benches);
