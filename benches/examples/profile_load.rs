//! Loads a generated policy in a loop for profiling:
//! `cargo run --release -p tame-benches --example profile_load -- 10000 5`.

use std::hint::black_box;

use tame_benches::policy_yaml;
use tame_engine::Policy;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let iters: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let yaml = policy_yaml(n);
    let start = std::time::Instant::now();
    for _ in 0..iters {
        black_box(Policy::from_yaml(black_box(&yaml), "bench.yml").is_ok());
    }
    println!("{n} rules: {:?} per load", start.elapsed() / iters);
}
