//! Evaluates one condition in a tight loop, for profiling with `perf`
//! (`perf stat -e instructions`) when criterion's wall-clock numbers are
//! too noisy. Usage: `eval_loop [iterations] [condition]`.

// Harness code, not library code: a bad setup may panic loudly.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;

use tame_interp::{Activation, Env, NoFacts, compile, roots};
use tame_lang::{Key, Value, ValueMap};

fn main() -> Result<(), String> {
    let mut argv = std::env::args().skip(1);
    let n: u64 = argv.next().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
    let src = argv
        .next()
        .unwrap_or_else(|| r#"args.path.startsWith("/etc/")"#.to_string());
    let mut args = ValueMap::default();
    args.insert(Key::from("path"), Value::string("/home/ann/notes/todo.txt"));
    args.insert(Key::from("amount"), Value::Int(1500));
    args.insert(Key::from("database"), Value::string("production"));
    let mut vars = vec![Value::Null; roots::COUNT];
    vars[roots::TOOL] = Value::string("read_file");
    vars[roots::ARGS] = Value::Map(Arc::new(args));
    let ast = tame_lang::parse(&src).map_err(|e| e.to_string())?;
    let program = compile(&ast, &Env::policy()).map_err(|e| e.to_string())?;
    let act = Activation::new(&vars, &NoFacts, jiff::Timestamp::UNIX_EPOCH);
    let start = std::time::Instant::now();
    let mut t = 0u64;
    for _ in 0..n {
        if let Ok(true) = black_box(&program).eval_bool(black_box(&act)) {
            t += 1;
        }
    }
    let el = start.elapsed();
    println!("{src}: {:.1} ns/eval ({t} true)", el.as_nanos() as f64 / n as f64);
    Ok(())
}
