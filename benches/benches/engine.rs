//! Engine benchmarks: parse, load+compile, evaluate and JSON conversion
//! over generated policies of 10 to 10,000 rules.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tame_benches::{SIZES, conditions, glob_call, policy_yaml, typical_call};
use tame_engine::{Action, MemoryFacts, Policy, Request};

fn facts() -> MemoryFacts {
    MemoryFacts::from_json(&serde_json::json!({"calls": 12, "counts": {"svc1_write": 3}})).unwrap_or_default()
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_conditions");
    for n in SIZES {
        let conds = conditions(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &conds, |b, conds| {
            b.iter(|| {
                for s in conds {
                    black_box(tame_lang::parse(black_box(s)).is_ok());
                }
            })
        });
    }
    g.finish();
}

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("load_and_compile");
    g.sample_size(10);
    for n in SIZES {
        let yaml = policy_yaml(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &yaml, |b, yaml| {
            b.iter(|| black_box(Policy::from_yaml(black_box(yaml), "bench.yml").is_ok()))
        });
    }
    g.finish();
}

fn evaluate(c: &mut Criterion) {
    let facts = facts();
    let mut g = c.benchmark_group("evaluate");
    for n in SIZES {
        let policy = match Policy::from_yaml(&policy_yaml(n), "bench.yml") {
            Ok(p) => p,
            Err(e) => panic!("fixture policy does not load: {e}"),
        };
        let req = Request::from_call_json(&typical_call(n)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy.evaluate(&req, &facts).action, Action::Allow);
        g.bench_with_input(BenchmarkId::new("typical", n), &req, |b, req| {
            b.iter(|| black_box(policy.evaluate(black_box(req), &facts)))
        });
        let glob_req = Request::from_call_json(&glob_call(n)).unwrap_or_else(|e| panic!("{e}"));
        g.bench_with_input(BenchmarkId::new("glob_tool", n), &glob_req, |b, req| {
            b.iter(|| black_box(policy.evaluate(black_box(req), &facts)))
        });
    }
    g.finish();
}

fn convert(c: &mut Criterion) {
    let call = typical_call(1_000);
    let text = call.to_string();
    let mut g = c.benchmark_group("convert");
    g.bench_function("json_value_to_request", |b| {
        b.iter(|| black_box(Request::from_call_json(black_box(&call)).is_ok()))
    });
    g.bench_function("json_text_to_request", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_str(black_box(&text)).unwrap_or_default();
            black_box(Request::from_call_json(&v).is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, parse, compile, evaluate, convert);
criterion_main!(benches);
