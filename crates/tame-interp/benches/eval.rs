//! Criterion benchmarks of compiling and evaluating typical conditions.
//!
//! Run: `cargo bench -p tame-interp --bench eval`.

// Harness code, not library code: a bad setup may panic loudly.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tame_interp::{Activation, Env, NoFacts, compile, roots};
use tame_lang::{Key, Value, ValueMap};

fn vars() -> Vec<Value> {
    let mut args = ValueMap::default();
    args.insert(Key::from("path"), Value::string("/home/ann/notes/todo.txt"));
    args.insert(Key::from("amount"), Value::Int(1500));
    args.insert(Key::from("to"), Value::string("bob@example.com"));
    args.insert(Key::from("database"), Value::string("production"));
    args.insert(Key::from("query"), Value::string("  SELECT * FROM users WHERE id = 7"));
    let mut v = vec![Value::Null; roots::COUNT];
    v[roots::TOOL] = Value::string("read_file");
    v[roots::ARGS] = Value::Map(Arc::new(args));
    v[roots::AGENT] = Value::string("agent-7");
    v[roots::METADATA] = Value::Map(Arc::new(ValueMap::default()));
    v[roots::SESSION_ID] = Value::string("s-1");
    v
}

const CASES: &[(&str, &str)] = &[
    ("baseline_const", "true"),
    ("slot_only", "tool"),
    ("starts_with", r#"args.path.startsWith("/etc/")"#),
    ("eq_string", r#"args.database == "production""#),
    ("numeric_gt", "args.amount > 1000"),
    ("glob", r#"glob(args.path, "/home/*/**")"#),
    ("regex", r#"args.query.matches("(?i)^\\s*select")"#),
    (
        "in_list",
        r#"tool in ["read_file", "write_file", "list_dir", "search"]"#,
    ),
    (
        "compound",
        r#"args.database == "production" and not args.query.matches("(?i)^\\s*select") or args.path.startsWith("/etc/")"#,
    ),
    (
        "exists",
        r#"["/etc/", "/root/", "/home/"].exists(p, args.path.startsWith(p))"#,
    ),
];

fn bench(c: &mut Criterion) {
    let env = Env::policy();
    let vars = vars();
    let act = Activation::new(&vars, &NoFacts, jiff::Timestamp::UNIX_EPOCH);
    let mut g = c.benchmark_group("eval");
    for (name, src) in CASES {
        let ast = tame_lang::parse(src).unwrap();
        let program = compile(&ast, &env).unwrap();
        assert!(program.eval(&act).is_ok(), "{name}");
        g.bench_function(*name, |b| b.iter(|| black_box(&program).eval(black_box(&act))));
    }
    g.finish();

    let mut g = c.benchmark_group("compile");
    for (name, src) in CASES {
        let ast = tame_lang::parse(src).unwrap();
        g.bench_function(*name, |b| b.iter(|| compile(black_box(&ast), &env)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
