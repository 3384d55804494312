//! Criterion benchmark of the audit writer: appending 1,000 decisions with
//! all of them in flight (group commit), in both durability modes, and
//! verifying the chain; the same against PostgreSQL when
//! `TAME_TEST_DATABASE_URL` names a server (`scripts/pg-test.sh cargo bench
//! -p tame-store --bench append -- pg_`).

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tame_store::testing::{pg_store, read_decision, record_all, sqlite_store};
use tame_store::{Durability, NewDecision, Store};

/// The `i`-th decision: a fresh log id, one of 200 sessions.
fn decision(i: u64) -> NewDecision {
    read_decision(&uuid::Uuid::now_v7().to_string(), &format!("s{}", i % 200), i)
}

/// The audit secret of the PostgreSQL stores.
const PG_SECRET: [u8; 32] = [7; 32];

/// Batches of 1000 decisions appended to `store`, each batch waited for.
fn bench_appends(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, store: &dyn Store) {
    let mut i = 0u64;
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter(|| {
            let batch = (0..1000).map(|_| {
                i += 1;
                decision(i)
            });
            record_all(store, batch).map_or(0, |receipts| receipts.len())
        });
    });
}

/// Fills `store` with 10,000 decisions and measures verifying its chain,
/// in group `group_name`.
fn bench_verify(c: &mut Criterion, group_name: &str, store: &dyn Store) {
    let _ = record_all(store, (0..10_000).map(decision));
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(10);
    group.bench_function("10000_records", |b| b.iter(|| store.verify().map(|r| r.valid)));
    group.finish();
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_1000");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let Ok(dir) = tempfile::tempdir() else { return };
        let Ok(store) = sqlite_store(dir.path().join("b.db"), durability) else {
            return;
        };
        bench_appends(&mut group, name, &store);
    }
    group.finish();
}

fn verify(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(store) = sqlite_store(dir.path().join("v.db"), Durability::default()) else {
        return;
    };
    bench_verify(c, "verify", &store);
}

/// Appending and verifying through the PostgreSQL store, each durability
/// mode in a fresh database. Skipped without `TAME_TEST_DATABASE_URL`.
fn pg(c: &mut Criterion) {
    if !tame_store::testing::pg_benches_enabled() {
        return;
    }
    let mut group = c.benchmark_group("pg_append_1000");
    group.throughput(Throughput::Elements(1000));
    group.sample_size(20);
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let Ok(url) = tame_store::testing::fresh_database(&format!("bench_{name}")) else {
            return;
        };
        let Ok(store) = pg_store(&url, PG_SECRET.to_vec(), durability) else {
            return;
        };
        bench_appends(&mut group, name, &store);
    }
    group.finish();

    let Ok(url) = tame_store::testing::fresh_database("bench_verify") else {
        return;
    };
    let Ok(store) = pg_store(&url, PG_SECRET.to_vec(), Durability::default()) else {
        return;
    };
    bench_verify(c, "pg_verify", &store);
}

criterion_group!(benches, append, verify, pg);
criterion_main!(benches);
