//! Parses (and checks) every `expr:` of the CEL conformance files.
//!
//! Skips cleanly when `../shared/conformance/cel` is absent. Expressions
//! that construct protobuf messages (`Msg{...}`) or need a container are
//! outside Tame's dialect and are listed as expected failures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::load_cases;

/// Conformance tests whose parse failure is expected: protobuf message
/// construction, and tests that expect a parse error.
fn expected_parse_failure(case: &common::Case) -> bool {
    let e = &case.expr;
    let constructs_message = e.contains("TestAllTypes{")
        || e.contains("NestedMessage{")
        || e.contains("Value{")
        || e.contains("Any{")
        || e.contains("Duration{")
        || e.contains("Timestamp{")
        || e.contains("Struct{")
        || e.contains("ListValue{")
        || e.contains("Wrapper{");
    constructs_message || case.disable_macros
}

#[test]
fn conformance_expressions_parse() {
    let cases = load_cases();
    if cases.is_empty() {
        eprintln!("conformance files not found: skipped");
        return;
    }
    let mut ok = 0;
    let mut expected = Vec::new();
    let mut bugs = Vec::new();
    for case in &cases {
        match tame_lang::parse(&case.expr) {
            Ok(e) => {
                ok += 1;
                // Whatever parses must print and re-parse to the same tree.
                let printed = e.to_string();
                match tame_lang::parse(&printed) {
                    Ok(again) => assert_eq!(
                        again, e,
                        "{}: `{}` printed as `{printed}`",
                        case.name, case.expr
                    ),
                    Err(err) => panic!(
                        "{}: `{}` printed as `{printed}` which fails: {err}",
                        case.name, case.expr
                    ),
                }
            }
            Err(err) if expected_parse_failure(case) => expected.push((case, err)),
            Err(err) => bugs.push((case, err)),
        }
    }
    eprintln!(
        "parsed {ok} of {} conformance expressions; {} expected failures",
        cases.len(),
        expected.len()
    );
    for (case, err) in &expected {
        eprintln!(
            "  expected: {}/{}: `{}`: {err}",
            case.file, case.name, case.expr
        );
    }
    for (case, err) in &bugs {
        eprintln!(
            "  FAILED: {}/{}: `{}`: {err} at {:?}",
            case.file, case.name, case.expr, err.span
        );
    }
    assert!(
        bugs.is_empty(),
        "{} conformance expressions failed to parse",
        bugs.len()
    );
}
