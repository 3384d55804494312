//! Redaction replaces every match with `[REDACTED:kind]`, in keys and values,
//! and leaves nothing a rescan would find.

use proptest::prelude::*;
use serde_json::{Value, json};
use tame_safety::{Category, Kind, Scanner};

#[test]
fn redacts_values_and_keys() {
    let mut v = json!({
        "to": "alice@example.com",
        "body": "key AKIAIOSFODNN7EXAMPLE, card 4111 1111 1111 1111.",
        "n": 3,
        "nested": [{"carol@example.com": {"ok": true}}],
    });
    let findings = Scanner::global().redact(&mut v);
    assert_eq!(
        v,
        json!({
            "to": "[REDACTED:email]",
            "body": "key [REDACTED:aws_access_key_id], card [REDACTED:credit_card].",
            "n": 3,
            "nested": [{"[REDACTED:email]": {"ok": true}}],
        })
    );
    let mut kinds: Vec<Kind> = findings.iter().map(|f| f.kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![Kind::AwsAccessKeyId, Kind::Email, Kind::Email, Kind::CreditCard]
    );
    assert!(Scanner::global().scan(&v).is_empty());
}

#[test]
fn redact_where_keeps_unselected_kinds() {
    let mut v = json!({"to": "alice@example.com", "token": "ghp_R7c2Xw9Lk3Pq8Zt1Vb6Nm4Hs0Jd5Fg2Ya8Qe"});
    let findings = Scanner::global().redact_where(&mut v, |k| k.category() == Category::Secret);
    assert_eq!(findings.len(), 1);
    assert_eq!(v["to"], "alice@example.com");
    assert_eq!(v["token"], "[REDACTED:github_token]");
}

#[test]
fn redact_str_returns_text_and_findings() {
    let (text, findings) = Scanner::global().redact_str("ssn 536-22-1234 ok");
    assert_eq!(text, "ssn [REDACTED:us_ssn] ok");
    assert_eq!(findings.len(), 1);
    assert_eq!((findings[0].start, findings[0].end), (4, 15));
}

const FRAGMENTS: &[&str] = &[
    "AKIAIOSFODNN7EXAMPLE",
    "alice@example.com",
    "4111 1111 1111 1111",
    "+44 20 7946 0958",
    "536-22-1234",
    "DE89 3704 0044 0532 0130 00",
    "password=Zq8#kL2!pW9xV4m",
    "postgres://app:Tr0ub4dor3xQ@db.internal/app",
    "ghp_R7c2Xw9Lk3Pq8Zt1Vb6Nm4Hs0Jd5Fg2Ya8Qe",
    "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",
    "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",
    "https://api.telegram.org/bot123456789:AAq3Zk9Lw2Xn7Rb4Tv8Yc1Md6Pf0Gh5Js_E/getMe",
    "client_secret=P3.8Q~Zq2Lw9Xn7Rb4Tv8Yc1Md6Pf0Gh5Js2Ew",
    "hello",
    "Grüße",
    " ",
    ", ",
    "\n",
    "=",
    "@",
    "-",
    "12",
    "x",
];

fn fragment_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After redaction a rescan finds nothing, and every reported range was
    /// a valid slice of the original string.
    #[test]
    fn redaction_is_complete(text in fragment_text()) {
        let scanner = Scanner::global();
        for f in scanner.scan_str(&text) {
            prop_assert!(text.get(f.start..f.end).is_some());
        }
        let mut v = json!({"a": text.clone(), "b": [text.clone()]});
        scanner.redact(&mut v);
        let rescan = scanner.scan(&v);
        prop_assert!(rescan.is_empty(), "{:?} left {:?}", text, rescan);
    }

    /// Arbitrary strings never panic and ranges are char boundaries.
    #[test]
    fn arbitrary_strings_do_not_panic(text in any::<String>()) {
        let scanner = Scanner::global();
        for f in scanner.scan_str(&text) {
            prop_assert!(text.get(f.start..f.end).is_some());
        }
        let mut v = Value::String(text);
        scanner.redact(&mut v);
    }
}

#[test]
fn labels_name_categories_and_tags() {
    let f = Scanner::global().scan(&json!({"a": "AKIAIOSFODNN7EXAMPLE", "b": ["x@example.com", "y@example.com"]}));
    assert_eq!(
        tame_safety::labels(&f),
        vec!["personal.pii.email", "pii", "secret", "secret.aws_access_key_id"]
    );
    assert!(tame_safety::labels(&[]).is_empty());
}

#[test]
fn keys_that_redact_alike_are_both_kept() {
    let mut v = json!({"a@example.com": 1, "b@example.com": 2});
    let f = Scanner::global().redact(&mut v);
    assert_eq!(f.len(), 2);
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2);
    let mut values: Vec<i64> = obj.values().map(|x| x.as_i64().unwrap()).collect();
    values.sort();
    assert_eq!(values, vec![1, 2]);
    assert!(obj.keys().all(|k| k.starts_with("[REDACTED:email]")));
}
