//! `POST /api/v1/policy/validate` with a condition over 64 KiB: the
//! diagnostics' renderer used to panic (a 500); it is a 200 whose error
//! names the rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_condition_over_64_kib_is_reported_not_a_500() {
    let h = harness();
    let policy = format!(
        "version: \"1\"\nrules:\n  - name: huge_rule\n    action: deny\n    condition: 'args.x == \"{}\"'\n",
        "a".repeat(70_000)
    );
    let r = h
        .post("/api/v1/policy/validate", json!({"policy_content": policy}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["is_valid"], false);
    let d = &r.json["diagnostics"][0];
    assert_eq!(d["rule"], "huge_rule", "{d}");
    assert!(d["message"].as_str().unwrap().contains("is too long"), "{d}");
    assert!(d["rendered"].as_str().unwrap().len() < 2_000, "{d}");
}
