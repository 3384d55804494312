//! Snapshots of rendered diagnostics: a caret under the offending text,
//! placed inside the YAML file the condition came from.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use tame_lang::{CheckEnv, Registry, check, parse};

const FILE: &str =
    "version: \"2026-11\"\nrules:\n  - name: block_system_files\n    action: deny\n    condition: 'CONDITION'\n";

/// The policy file with `cond` in place, and the byte offset of `cond`.
fn file_with(cond: &str) -> (String, usize) {
    let offset = FILE.find("CONDITION").unwrap();
    (FILE.replace("CONDITION", cond), offset)
}

fn render_parse(cond: &str) -> String {
    let (file, offset) = file_with(cond);
    parse(cond).unwrap_err().render("policies.yml", &file, offset)
}

fn render_check(cond: &str) -> String {
    let (file, offset) = file_with(cond);
    let registry = Registry::builtins();
    let errors = check(&parse(cond).unwrap(), &CheckEnv::policy(&registry)).unwrap_err();
    errors
        .iter()
        .map(|e| e.render("policies.yml", &file, offset))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn syntax_error_in_a_policy_file() {
    insta::assert_snapshot!(render_parse(
        r#"args.path.startsWith("/etc/") or glob(args.path, "/root/**""#
    ));
}

#[test]
fn bad_escape_in_a_policy_file() {
    insta::assert_snapshot!(render_parse(r#"args.path == "C:\qa""#));
}

#[test]
fn check_errors_in_a_policy_file() {
    insta::assert_snapshot!(render_check(r#"argz.path.startswith("/etc/") || size(tool, 1) > 2"#));
}

#[test]
fn plain_shape_serializes() {
    let cond = "tool == 'a' &&";
    let (file, offset) = file_with(cond);
    let plain = parse(cond).unwrap_err().plain(&file, offset);
    let json = serde_json::to_value(&plain).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "message": "unexpected end of condition",
            "line": 5,
            "column": 31,
            "end_line": 5,
            "end_column": 31,
            "label": "expected an expression",
        })
    );
}
