//! Fuzzes the evaluator: input is `policy YAML \0 call JSON`, or just a
//! call JSON against a built-in policy. Evaluation never panics, and
//! `explain` agrees with `evaluate`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tame_engine::{MemoryFacts, Policy, Request};

const POLICY: &str = r#"
default: deny
rules:
  - name: system
    action: deny
    tools: ["read_*", "write_file"]
    condition: 'args.path.startsWith("/etc/") or glob(args.path, "/root/**")'
    reason: "blocked {args.path}"
  - name: money
    action: approve
    tools: [pay]
    condition: 'args.amount > 1000 || args.currency in ["BTC", "XMR"]'
  - name: sql
    action: deny
    condition: 'has(args.query) && args.query.matches("(?i)^\\s*drop")'
  - name: rate
    action: deny
    condition: 'session.count(tool, duration("1h")) > 5 || has_secret(args)'
  - name: rest
    action: allow
    tools: ["read_*", "list_*", "pay"]
"#;

static DEFAULT: LazyLock<Option<Policy>> = LazyLock::new(|| Policy::from_yaml(POLICY, "fuzz.yml").ok());

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (policy_text, call_text) = match text.split_once('\0') {
        Some((p, c)) => (Some(p), c),
        None => (None, text),
    };
    let loaded;
    let policy = match policy_text {
        Some(p) => match Policy::from_yaml(p, "fuzz.yml") {
            Ok(p) => {
                loaded = p;
                &loaded
            }
            Err(_) => return,
        },
        None => match DEFAULT.as_ref() {
            Some(p) => p,
            None => return,
        },
    };
    let Ok(call) = serde_json::from_str::<serde_json::Value>(call_text) else { return };
    let Ok(req) = Request::from_call_json(&call) else { return };
    let facts = call.get("session").and_then(|s| MemoryFacts::from_json(s).ok()).unwrap_or_default();
    let d = policy.evaluate(&req, &facts);
    let e = policy.explain(&req, &facts);
    assert_eq!(d, e.decision);
});
