//! Payload scanning speed: a realistic ~1 MB JSON payload, a small tool call,
//! and compiling the detectors.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tame_safety::Scanner;

/// Deterministic pseudo-random numbers (xorshift) so every run scans the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = (self.next() % items.len() as u64) as usize;
        items.get(i).copied().unwrap_or_default()
    }
}

const WORDS: &[&str] = &[
    "the",
    "deploy",
    "failed",
    "because",
    "service",
    "returned",
    "timeout",
    "after",
    "retry",
    "customer",
    "asked",
    "about",
    "invoice",
    "order",
    "shipping",
    "delayed",
    "warehouse",
    "Berlin",
    "München",
    "café",
    "résumé",
    "latency",
    "p99",
    "12ms",
    "v1.2.3",
    "2026-11-20",
    "10.0.3.7",
    "#4411",
    "$129.99",
    "status=ok",
    "user_id=8812",
    "please",
    "review",
    "the",
    "attached",
    "report",
    "and",
    "confirm",
    "by",
    "Friday",
    "thanks",
    "—",
    "日本語",
    "テスト",
];

const SECRETS: &[&str] = &[
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_R7c2Xw9Lk3Pq8Zt1Vb6Nm4Hs0Jd5Fg2Ya8Qe",
    "postgres://app:Tr0ub4dor3xQ@db.internal/app",
    "alice.smith@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    // Fake keys in the shapes agents hold (OpenAI project key, Hugging Face token).
    "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",
    "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",
];

/// About 1 MB of JSON: a list of ticket-like records with nested objects,
/// free text in several scripts, numbers, and a few secrets and PII.
fn realistic_payload(target_bytes: usize, with_secrets: bool) -> Value {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut records = Vec::new();
    let mut size = 0usize;
    let mut i = 0u64;
    while size < target_bytes {
        let mut text = String::new();
        for w in 0..(40 + rng.next() % 80) {
            if w > 0 {
                text.push(' ');
            }
            text.push_str(rng.pick(WORDS));
        }
        if with_secrets && i.is_multiple_of(97) {
            text.push(' ');
            text.push_str(rng.pick(SECRETS));
        }
        let record = json!({
            "id": i,
            "kind": rng.pick(&["ticket", "comment", "event"]),
            "author": {"name": rng.pick(&["Ana", "Bo", "Chen", "Dara"]), "team": "support", "role": "agent"},
            "body": text,
            "tags": [rng.pick(WORDS), rng.pick(WORDS), "triage"],
            "metrics": {"score": rng.next() % 1000, "ratio": 0.25, "ok": true, "ms": [12, 40, 7]},
            "history": [{"at": "2026-11-20T10:00:00Z", "by": "bot", "note": rng.pick(WORDS)}],
        });
        size += record.to_string().len();
        records.push(record);
        i += 1;
    }
    json!({"tool_name": "bulk_import", "tool_args": {"records": records, "source": "crm"}})
}

fn bench_scan(c: &mut Criterion) {
    let scanner = Scanner::new();
    let payload = realistic_payload(1 << 20, true);
    let clean = realistic_payload(1 << 20, false);
    assert!(!scanner.has_secret(&clean) && !scanner.has_pii(&clean));
    let bytes = payload.to_string().len() as u64;
    let findings = scanner.scan(&payload).len();
    assert!(findings > 0, "the payload carries secrets to find");

    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("scan_1mb_json", |b| b.iter(|| scanner.scan(black_box(&payload))));
    group.bench_function("has_secret_1mb_json", |b| {
        b.iter(|| scanner.has_secret(black_box(&payload)))
    });
    group.bench_function("has_secret_1mb_clean_json", |b| {
        b.iter(|| scanner.has_secret(black_box(&clean)))
    });
    group.bench_function("redact_1mb_json", |b| {
        b.iter_batched(
            || payload.clone(),
            |mut v| scanner.redact(black_box(&mut v)),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();

    let call = json!({
        "to": ["bob@example.com"],
        "subject": "Quarterly report",
        "body": "Hi Bob, the numbers are attached. Revenue was up 12% and churn down to 3.1%. Regards",
        "attachments": [{"name": "q3.pdf", "size": 48213}],
    });
    c.bench_function("scan_tool_call", |b| b.iter(|| scanner.scan(black_box(&call))));
    // What the server scans per decision besides the arguments before it
    // stores them (session, tool, agent, user, expanded reason).
    let fields = [
        "0192f1a4-6f1e-7c3a-9d2b-5e8f7a6b4c3d",
        "read_file",
        "agent-7",
        "alice@example.com",
        "System paths are off limits (/etc/passwd)",
    ];
    c.bench_function("secret_spans_decision_fields", |b| {
        b.iter(|| {
            fields
                .iter()
                .map(|f| scanner.secret_spans(black_box(f)).len())
                .sum::<usize>()
        })
    });
    c.bench_function("has_secret_tool_call", |b| {
        b.iter(|| scanner.has_secret(black_box(&call)))
    });
    c.bench_function("redact_tool_call", |b| {
        b.iter(|| {
            let mut v = call.clone();
            scanner.redact(black_box(&mut v))
        })
    });
}

/// Compiling the detectors (once per process: `Scanner::global`).
fn bench_compile(c: &mut Criterion) {
    c.bench_function("scanner_new", |b| b.iter(Scanner::new));
}

criterion_group!(benches, bench_scan, bench_compile);
criterion_main!(benches);
