//! Policies with huge conditions and long lines: a clean error naming the
//! rule and a bounded rendering, never a panic in the renderer (miette's
//! underline padding panics past 65,535 columns).
use tame_engine::*;

fn policy_with_condition(cond: &str) -> String {
    format!("version: \"1\"\nrules:\n  - name: huge_rule\n    action: deny\n    condition: '{cond}'\n")
}

/// The only error of `src`, which must fail to load.
fn only_error(src: &str) -> Diagnostic {
    let err = match Policy::from_yaml(src, "policies.yml") {
        Ok(_) => panic!("the policy loaded"),
        Err(e) => e,
    };
    let errors: Vec<&Diagnostic> = err.errors().collect();
    assert_eq!(errors.len(), 1, "{err}");
    errors[0].clone()
}

/// A rendering shows a cropped line, not the whole text.
fn assert_bounded(d: &Diagnostic) {
    assert!(d.rendered.len() < 2_000, "{} bytes:\n{}", d.rendered.len(), d.rendered);
    assert!(d.rendered.contains('…'), "{}", d.rendered);
}

#[test]
fn a_condition_over_64_kib_is_an_error_naming_the_rule() {
    let src = policy_with_condition(&format!("args.x == \"{}\"", "a".repeat(70_000)));
    let d = only_error(&src);
    assert_eq!(d.rule.as_deref(), Some("huge_rule"));
    assert!(d.message.contains("is too long"), "{}", d.message);
    assert!(
        d.message.contains("(70012 bytes, the limit is 65536 bytes)"),
        "{}",
        d.message
    );
    assert!(d.rendered.contains("(rule `huge_rule`)"), "{}", d.rendered);
    assert!(d.rendered.contains("policies.yml:5:"), "{}", d.rendered);
    assert_bounded(&d);
}

#[test]
fn a_condition_of_many_or_terms_over_64_kib_is_an_error() {
    let terms: Vec<String> = (0..6_000).map(|i| format!("args.x == \"{i}\"")).collect();
    let src = policy_with_condition(&terms.join(" or "));
    assert!(src.len() > 64 * 1024);
    let d = only_error(&src);
    assert_eq!(d.rule.as_deref(), Some("huge_rule"));
    assert!(d.message.contains("is too long"), "{}", d.message);
    assert_bounded(&d);
}

#[test]
fn an_error_past_column_65535_of_a_condition_renders() {
    // Under the size limit, but tabs make the error's column pass 65,535
    // on screen (miette expands a tab to 4 columns).
    let cond = format!("{}nosuch == 1", "\t".repeat(20_000));
    let d = only_error(&policy_with_condition(&cond));
    assert!(d.message.contains("unknown identifier `nosuch`"), "{}", d.message);
    assert_eq!((d.line, d.column), (5, 17 + 20_000));
    assert!(d.rendered.contains("policies.yml:5:20017"), "{}", d.rendered);
    assert!(d.rendered.contains("nosuch == 1"), "{}", d.rendered);
    assert_bounded(&d);
}

#[test]
fn an_error_far_along_a_long_yaml_line_renders() {
    let src = format!(
        "version: \"1\"\nrules:\n  - {{name: r, description: \"{}\", action: allw}}\n",
        "d".repeat(70_000)
    );
    let d = only_error(&src);
    assert_eq!(d.message, "unknown action `allw`");
    assert!(d.column > 70_000, "{}", d.column);
    assert!(d.rendered.contains("action: allw}"), "{}", d.rendered);
    assert_bounded(&d);
}

#[test]
fn a_long_check_error_after_many_lines_keeps_its_place() {
    // Line numbers in the gutter are the file's, not the excerpt's.
    let padding = "# comment\n".repeat(200);
    let src = format!(
        "{padding}version: \"1\"\nrules:\n  - name: r\n    action: deny\n    condition: '{} == nosuch'\n",
        "1 + ".repeat(3_000) + "1"
    );
    let d = only_error(&src);
    assert_eq!(d.line, 205);
    assert!(d.rendered.contains(" 205 │ "), "{}", d.rendered);
    assert!(d.rendered.contains(" 204 │ "), "{}", d.rendered);
    assert_bounded(&d);
}

#[test]
fn a_long_rule_name_is_cut_in_each_of_its_diagnostics() {
    // Found by the `diagnostics` fuzz target: a rule name of 32 KiB of
    // tabs was echoed whole in its diagnostic's headline (and in `rule`);
    // with one error per tool, a file multiplied its size in the answer.
    let name = format!("ct on:5'{}nos< 1'", "\t".repeat(32_767));
    let tools = vec!["\"\""; 50].join(", ");
    let src = format!(
        "rules:\n  - name: r\n    cond2e: allow_read_only_queries\n  - name: \"{}\"\n    action: deny\n    tools: [{tools}]\n",
        name.replace('\t', "\\t")
    );
    let err = match Policy::from_yaml(&src, "policies.yml") {
        Ok(_) => panic!("the policy loaded"),
        Err(e) => e,
    };
    let of_rule: Vec<&Diagnostic> = err
        .diagnostics
        .iter()
        .filter(|d| d.rule.as_deref().is_some_and(|r| r.starts_with("ct on:5'")))
        .collect();
    assert_eq!(of_rule.len(), 50, "{err}");
    for d in &of_rule {
        let rule = d.rule.as_deref().unwrap();
        assert_eq!(rule.chars().count(), 65, "{rule:?}");
        assert!(rule.ends_with('…'));
        assert!(d.rendered.len() < 2_000, "{} bytes", d.rendered.len());
        // Tabs and other control characters are not echoed raw.
        assert!(!d.rendered.contains('\t'), "{}", d.rendered);
    }
}

#[test]
fn control_characters_of_a_policy_do_not_reach_the_terminal() {
    let src = "rules:\n  - name: \"evil\\e[2J\\a\"\n    action: \"allw\\e]0;pwned\\a\"\n";
    let d = only_error(src);
    assert!(
        d.message.contains('\u{1b}'),
        "the message keeps the text: {:?}",
        d.message
    );
    assert!(
        !d.rendered.contains('\u{1b}') && !d.rendered.contains('\u{7}'),
        "{:?}",
        d.rendered
    );
    assert!(
        d.rendered.contains("unknown action `allw\u{FFFD}]0;pwned\u{FFFD}`"),
        "{}",
        d.rendered
    );
}
