//! Store throughput: appends decisions from several threads with many
//! writes in flight and reports records/s (group commit at work).
//!
//! `cargo run --release -p tame-store --example throughput -- [records] [durability full|normal]`

use std::sync::Arc;
use std::time::Instant;

use tame_store::testing::{read_decision, sqlite_store};
use tame_store::{Durability, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let durability = match args.next().as_deref() {
        Some("normal") => Durability::Normal,
        _ => Durability::Full,
    };
    let dir = tempfile::tempdir()?;
    let store = Arc::new(sqlite_store(dir.path().join("t.db"), durability)?);
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut inflight = std::collections::VecDeque::new();
                for i in 0..total / 4 {
                    let log_id = uuid::Uuid::now_v7().to_string();
                    let session = format!("s{}", (t * 1000 + i / 50) % 2000);
                    inflight.push_back(store.record_decision(read_decision(&log_id, &session, i as u64)));
                    if inflight.len() >= 64
                        && let Some(t) = inflight.pop_front()
                    {
                        t.wait().map_err(|e| e.to_string())?;
                    }
                }
                for t in inflight {
                    t.wait().map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "writer thread panicked")??;
    }
    let elapsed = started.elapsed();
    println!(
        "{total} decisions in {:.2} s: {:.0} records/s ({durability:?})",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    let verify = Instant::now();
    let report = store.verify()?;
    println!(
        "verify: {} records in {:.2} s, valid: {}",
        report.records,
        verify.elapsed().as_secs_f64(),
        report.valid
    );
    Ok(())
}
