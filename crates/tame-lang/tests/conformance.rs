//! Parses (and checks) every `expr:` of the CEL conformance files
//! (`$TAME_CEL_CONFORMANCE`, else `../shared/conformance/cel`).
//!
//! Skips cleanly when the folder is absent. Expressions
//! that construct protobuf messages (`Msg{...}`) or need a container are
//! outside Tame's dialect and are listed as expected failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

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
                    Ok(again) => assert_eq!(again, e, "{}: `{}` printed as `{printed}`", case.name, case.expr),
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
        eprintln!("  expected: {}/{}: `{}`: {err}", case.file, case.name, case.expr);
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

/// The messages of a test's expected errors, if it expects one.
fn expected_error(case: &common::Case) -> Option<String> {
    let err = common::get(&case.fields, "eval_error")?;
    let msgs: Vec<String> = common::all(err.msg(), "errors")
        .filter_map(|e| common::string(e.msg(), "message"))
        .collect();
    Some(msgs.join("; "))
}

#[test]
fn conformance_expressions_check_with_dyn_variables() {
    let cases = load_cases();
    if cases.is_empty() {
        eprintln!("conformance files not found: skipped");
        return;
    }
    let registry = tame_lang::Registry::builtins();
    let mut checked = 0;
    let mut total = 0;
    let mut expected = Vec::new();
    let mut bugs = Vec::new();
    for case in &cases {
        let Ok(expr) = tame_lang::parse(&case.expr) else {
            continue;
        };
        total += 1;
        let mut env = tame_lang::CheckEnv::new(&registry);
        for name in &case.idents {
            env.declare(name.clone(), tame_lang::Type::Dyn);
        }
        match tame_lang::check(&expr, &env) {
            Ok(_) => checked += 1,
            Err(errs) => {
                let msg: Vec<String> = errs.iter().map(ToString::to_string).collect();
                let msg = msg.join("; ");
                // Tests that skip the checker or expect an error may fail here.
                if case.disable_check || expected_error(case).is_some() {
                    expected.push((case, msg));
                } else {
                    bugs.push((case, msg));
                }
            }
        }
    }
    eprintln!(
        "checked {checked} of {total} parsed conformance expressions; {} expected failures",
        expected.len()
    );
    for (case, msg) in &expected {
        eprintln!(
            "  expected: {}/{}: `{}`: {msg} (wants {:?})",
            case.file,
            case.name,
            case.expr,
            expected_error(case)
        );
    }
    for (case, msg) in &bugs {
        eprintln!("  FAILED: {}/{}: `{}`: {msg}", case.file, case.name, case.expr);
    }
    assert!(
        bugs.is_empty(),
        "{} conformance expressions failed to check",
        bugs.len()
    );
}
