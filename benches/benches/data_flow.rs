//! Session memory and data flow: recording results (and what indexing
//! them costs), provenance checks against a long session, and a decision
//! that reads no session fact, with and without a long history.
//!
//! The session: 1,000 calls over 8 tools, each with a result of about
//! 10 KB (10 MB in all) of generated transactions, e-mails and pages
//! (IBANs, e-mail addresses, URLs, amounts and prose from a vocabulary of
//! a few thousand words), plus three user inputs.
//!
//! `cargo bench -p tame-benches --bench data_flow`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use tame_enforce::{CallStep, Enforcer, ResultSource, SessionState};
use tame_engine::{Action, Policy, Provenance, Request, SessionFacts, ToolPattern};

/// A small deterministic generator (no dependency, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn word(&mut self) -> String {
        const SYLLABLES: [&str; 24] = [
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "an", "el", "is", "or", "ba", "de", "fu", "go", "hi", "ju",
            "pe", "qu", "ze", "ya", "wo", "xi",
        ];
        let n = 1 + self.below(3);
        (0..n).map(|_| SYLLABLES[self.below(24) as usize]).collect()
    }

    fn prose(&mut self, words: usize) -> String {
        (0..words).map(|_| self.word()).collect::<Vec<_>>().join(" ")
    }

    fn iban(&mut self) -> String {
        format!(
            "DE{:02}{:018}",
            self.below(100),
            self.next() * 1_000 + self.below(1_000)
        )
    }

    fn email(&mut self) -> String {
        format!("{}.{}@{}.example", self.word(), self.word(), self.word())
    }
}

const TOOLS: [&str; 8] = [
    "get_transactions",
    "read_email",
    "get_webpage",
    "read_file",
    "search_hotels",
    "read_channel",
    "get_user_info",
    "list_events",
];

/// A result of about `bytes` bytes for `tool`.
fn result_for(rng: &mut Lcg, tool: &str, bytes: usize) -> Value {
    let mut items = Vec::new();
    let mut size = 0;
    while size < bytes {
        let item = match tool {
            "get_transactions" => json!({
                "id": rng.next(), "recipient": rng.iban(), "amount": rng.below(100_000) as f64 / 100.0,
                "subject": rng.prose(6), "date": "2026-11-30",
            }),
            "read_email" | "read_channel" => json!({
                "from": rng.email(), "subject": rng.prose(5), "body": rng.prose(60),
            }),
            "get_webpage" => json!({
                "url": format!("https://{}.example/{}", rng.word(), rng.word()), "text": rng.prose(120),
            }),
            _ => json!({"name": rng.prose(2), "note": rng.prose(30), "contact": rng.email()}),
        };
        size += item.to_string().len();
        items.push(item);
    }
    Value::Array(items)
}

fn request(tool: &str, args: Value) -> Request {
    Request::from_call_json(&json!({"tool_name": tool, "tool_args": args, "session_id": "s1"}))
        .unwrap_or_else(|e| panic!("{e}"))
}

const POLICY: &str = r#"
version: "bench"
rules:
  - name: payee_from_user
    action: allow
    tools: ["send_money"]
    condition: 'from_input(args.recipient)'
  - name: payee_from_results
    action: deny
    tools: ["send_money"]
    condition: 'from_results(args.recipient, "get_*")'
  - name: exfiltration
    action: deny
    tools: ["send_email"]
    condition: 'carries_from_results(args.body)'
  - name: big_reads
    action: approve
    tools: ["read_file"]
    condition: 'args.path.startsWith("/etc/") || args.size > 1000000'
  - name: reads
    action: allow
    tools: ["read_*", "get_*", "list_*", "search_*"]
    condition: '!args.path.matches("(?i)secret")'
  - name: rest
    action: approve
"#;

/// A session of 1,000 calls with about 10 MB of results, and the values
/// probes will look for (one from an input, one from a result).
fn long_session(enforcer: &Enforcer<'_>) -> (SessionState, String, String) {
    let mut rng = Lcg(42);
    let mut state = SessionState::new();
    let key = enforcer.redactor().index_key();
    state.set_index_key(key);
    let user_iban = rng.iban();
    for text in [
        format!("Please pay my rent to {user_iban}, 900 EUR"),
        "and book the hotel we talked about for the 12th".to_owned(),
        format!("send the minutes to {}", rng.email()),
    ] {
        let outcome = enforcer
            .input("s1", &json!({ "text": text }), jiff::Timestamp::now())
            .unwrap_or_else(|e| panic!("{e}"));
        state.apply_input(&outcome);
    }
    let mut seen_iban = String::new();
    for i in 0..1_000 {
        let tool = TOOLS[i % TOOLS.len()];
        let req = request(tool, json!({"path": format!("/home/u/{i}"), "size": 10}));
        let mut step = CallStep::new(tool, Action::Allow, Some("reads"), false, req.now);
        step.args = req.args.clone();
        let log_id = format!("log-{i}");
        step.log_id = Some(log_id.as_str().into());
        state.record(step);
        let value = result_for(&mut rng, tool, 10_000);
        if tool == "get_transactions" && seen_iban.is_empty() {
            seen_iban = value[0]["recipient"].as_str().unwrap_or_default().to_owned();
        }
        let outcome = enforcer
            .result_from(
                "s1",
                &log_id,
                json!({"status": "success", "result": value}),
                ResultSource::Proxy,
                jiff::Timestamp::now(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        state.apply_result(&outcome);
    }
    (state, user_iban, seen_iban)
}

fn data_flow(c: &mut Criterion) {
    let policy = Policy::from_yaml(POLICY, "bench.yml").unwrap_or_else(|e| panic!("{e}"));
    let enforcer = Enforcer::with_policy(&policy);
    let mut rng = Lcg(7);
    let big = json!({"status": "success", "result": result_for(&mut rng, "read_email", 100_000)});
    let mut g = c.benchmark_group("data_flow");

    // Recording a 100 KB result: reading and indexing it (outside the
    // session's lock), then adding it to the session (under it).
    g.bench_function("result_100kb/read_and_index", |b| {
        b.iter(|| {
            black_box(
                enforcer
                    .result_from(
                        "s1",
                        "log-1",
                        black_box(big.clone()),
                        ResultSource::Proxy,
                        jiff::Timestamp::now(),
                    )
                    .is_ok(),
            )
        })
    });
    let key = enforcer.redactor().index_key();
    let output = big["result"].clone();
    g.bench_function("result_100kb/index_only", |b| {
        b.iter(|| black_box(tame_enforce::provenance::Extract::json(&key, black_box(&output), true)))
    });
    g.bench_function("result_100kb/index_without_copies", |b| {
        b.iter(|| black_box(tame_enforce::provenance::Extract::json(&key, black_box(&output), false)))
    });
    let flat = output.to_string();
    g.bench_function("result_100kb/one_text/carried", |b| {
        b.iter(|| black_box(tame_enforce::provenance::carried(&key, black_box(&flat))))
    });
    g.bench_function("result_100kb/one_text/index_without_copies", |b| {
        b.iter(|| black_box(tame_enforce::provenance::Extract::text(&key, black_box(&flat), false)))
    });
    g.bench_function("result_100kb/secret_scan_only", |b| {
        b.iter(|| black_box(tame_engine::Scanner::global().scan(black_box(&big))))
    });
    g.bench_function("result_100kb/to_value_only", |b| {
        b.iter(|| black_box(tame_engine::json_to_value(black_box(&output))))
    });
    let outcome = enforcer
        .result_from("s1", "log-1", big.clone(), ResultSource::Proxy, jiff::Timestamp::now())
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("result_100kb/apply", |b| {
        b.iter_batched(
            || {
                let mut s = SessionState::new();
                let mut step = CallStep::new("read_email", Action::Allow, None, false, jiff::Timestamp::now());
                step.log_id = Some("log-1".into());
                s.record(step);
                s
            },
            |mut s| black_box(s.apply_result(&outcome)),
            BatchSize::SmallInput,
        )
    });

    let (state, user_iban, seen_iban) = long_session(&enforcer);
    eprintln!(
        "long session: {} calls in history, about {:.1} MiB held",
        state.history().len(),
        state.memory_bytes() as f64 / (1 << 20) as f64
    );
    let now = jiff::Timestamp::now();
    let view = state.view(now);
    let gets = ToolPattern::new("get_*").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(view.provenance(Provenance::Input(&user_iban)), Ok(true));
    assert_eq!(view.provenance(Provenance::Results(&seen_iban, Some(&gets))), Ok(true));
    g.bench_function("long_session/from_input_hit", |b| {
        b.iter(|| black_box(view.provenance(Provenance::Input(black_box(&user_iban)))))
    });
    g.bench_function("long_session/from_input_miss", |b| {
        b.iter(|| black_box(view.provenance(Provenance::Input(black_box("FR7630006000011234567890189")))))
    });
    g.bench_function("long_session/from_results_hit", |b| {
        b.iter(|| black_box(view.provenance(Provenance::Results(black_box(&seen_iban), Some(&gets)))))
    });
    g.bench_function("long_session/from_results_miss", |b| {
        b.iter(|| black_box(view.provenance(Provenance::Results(black_box("FR7630006000011234567890189"), None))))
    });
    let body = "Hi Ana, the minutes of today's meeting are attached; the next one is on Tuesday at ten.";
    g.bench_function("long_session/carries_from_results_90_chars", |b| {
        b.iter(|| black_box(view.provenance(Provenance::Carries(black_box(body), None))))
    });

    // Decisions: with provenance conditions, and without any session
    // condition (with an empty and with the long session).
    let pay = request("send_money", json!({"recipient": seen_iban, "amount": 10}));
    assert_eq!(policy.evaluate(&pay, &view).action, Action::Deny);
    g.bench_function("decide/provenance_rules_long_session", |b| {
        b.iter(|| black_box(policy.evaluate(black_box(&pay), &view)))
    });
    let reads: Vec<Request> = (0..1_000)
        .map(|i| {
            request(
                TOOLS[i % TOOLS.len()],
                json!({"path": format!("/srv/data/{i}.txt"), "size": i * 37}),
            )
        })
        .collect();
    let empty = SessionState::new();
    let empty_view = empty.view(now);
    g.bench_function("decide/no_session_condition/1000_calls_empty_session", |b| {
        b.iter(|| {
            for r in &reads {
                black_box(policy.evaluate(black_box(r), &empty_view));
            }
        })
    });
    g.bench_function("decide/no_session_condition/1000_calls_long_session", |b| {
        b.iter(|| {
            for r in &reads {
                black_box(policy.evaluate(black_box(r), &view));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, data_flow);
criterion_main!(benches);
