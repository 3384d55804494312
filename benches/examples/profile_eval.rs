//! Runs `evaluate` in a loop for profiling (`perf record`):
//! `cargo run --release -p tame-benches --example profile_eval -- 1000 5000000`.

use std::hint::black_box;

use tame_benches::{policy_yaml, typical_call};
use tame_engine::{MemoryFacts, Policy, Request};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let iters: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000_000);
    let policy = match Policy::from_yaml(&policy_yaml(n), "bench.yml") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let Ok(req) = Request::from_call_json(&typical_call(n)) else {
        return;
    };
    let facts = MemoryFacts::default();
    let start = std::time::Instant::now();
    for _ in 0..iters {
        black_box(policy.evaluate(black_box(&req), &facts));
    }
    let per = start.elapsed().as_nanos() as f64 / iters as f64;
    println!("{n} rules: {per:.1} ns per evaluate ({:?})", policy.stats());
}
