//! Rules are read typed straight from the text when the file allows it and
//! through YAML values otherwise; both paths must accept and reject the same
//! files, with the same diagnostics.
use serde_json::json;
use tame_engine::*;

fn errors(src: &str) -> Vec<Diagnostic> {
    match Policy::from_yaml(src, "p.yml") {
        Ok(_) => panic!("policy loaded:\n{src}"),
        Err(e) => e.errors().cloned().collect(),
    }
}

#[test]
fn non_string_scalars_are_errors_at_their_rule() {
    for (name, action, what) in [
        ("123", "deny", "integer"),
        ("true", "deny", "boolean"),
        ("ok", "1.5", "floating point"),
    ] {
        let src = format!("rules:\n  - name: fine\n    action: allow\n  - name: {name}\n    action: {action}\n");
        let errs = errors(&src);
        assert_eq!(errs.len(), 1, "{src}: {errs:?}");
        assert!(
            errs[0].message.contains("invalid type") && errs[0].message.contains(what),
            "{errs:?}"
        );
        assert_eq!(errs[0].line, 4, "{errs:?}");
    }
    let errs = errors("rules:\n  - name: a\n    action: allow\n    tools: [read, 7]\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].line, 2, "{errs:?}");
}

#[test]
fn every_bad_rule_is_reported_not_just_the_first() {
    let src = "rules:\n  - name: a\n    action: allow\n    colour: red\n  - name: b\n    action: deny\n  - name: c\n    action: deny\n    size: 3\n";
    let errs = errors(src);
    let lines: Vec<_> = errs.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(lines, vec![(4, 5), (9, 5)], "{errs:?}");
    assert!(errs[0].message.contains("unknown field `colour`"), "{errs:?}");
}

#[test]
fn typed_forms_of_tools_and_conditions_load() {
    let src = r#"
default: deny
rules:
  - name: one_tool
    action: allow
    tools: read_file
    condition: true
  - name: never
    action: allow
    condition: false
  - name: quoted_true
    action: approve
    tools: ["write_*"]
    condition: "true"
    reason: ~
"#;
    let p = Policy::from_yaml(src, "p.yml").unwrap_or_else(|e| panic!("{e}"));
    let ev = |c: serde_json::Value| p.evaluate(&Request::from_call_json(&c).unwrap(), &NoFacts).action;
    assert_eq!(ev(json!({"tool_name": "read_file", "tool_args": {}})), Action::Allow);
    assert_eq!(ev(json!({"tool_name": "write_x", "tool_args": {}})), Action::Approve);
    assert_eq!(ev(json!({"tool_name": "other", "tool_args": {}})), Action::Deny);
}
