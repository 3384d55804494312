//! Criterion benches of the condition language: parse, check and print.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tame_lang::{CheckEnv, Registry, check, parse};

const TYPICAL: &str = r#"args.path.startsWith("/etc/") or glob(args.path, "/root/**") or session.count("read_file", duration("1h")) > 50"#;

fn long_condition() -> String {
    (0..40)
        .map(|i| format!(r#"(tool == "tool_{i}" && args.amount > {i}00 && !args.to.endsWith("@corp{i}.example"))"#))
        .collect::<Vec<_>>()
        .join(" || ")
}

fn benches(c: &mut Criterion) {
    let long = long_condition();
    let registry = Registry::builtins();
    let env = CheckEnv::policy(&registry);
    let typical = parse(TYPICAL).unwrap();
    let long_ast = parse(&long).unwrap();

    c.bench_function("parse/typical", |b| b.iter(|| parse(black_box(TYPICAL)).unwrap()));
    c.bench_function(&format!("parse/long_{}_bytes", long.len()), |b| {
        b.iter(|| parse(black_box(&long)).unwrap())
    });
    c.bench_function("check/typical", |b| {
        b.iter(|| check(black_box(&typical), &env).unwrap())
    });
    c.bench_function("check/long", |b| b.iter(|| check(black_box(&long_ast), &env).unwrap()));
    c.bench_function("print/typical", |b| b.iter(|| black_box(&typical).to_string()));
}

criterion_group!(lang, benches);
criterion_main!(lang);
