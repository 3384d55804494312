//! Integration tests of the engine facade: loading, diagnostics, legacy
//! policies, the decision DAG, evaluation and explain.
use serde_json::json;
use tame_engine::*;

#[test]
fn design_example() {
    let src = r#"
version: "2026-11"
description: "Coding agent guardrails"
default: deny
rules:
  - name: block_system_files
    action: deny
    tools: ["read_file", "write_*"]
    condition: 'args.path.startsWith("/etc/") or glob(args.path, "/root/**")'
    reason: "System paths are off limits ({args.path})"
  - name: rate_limit_email
    action: deny
    tools: ["send_email"]
    condition: 'session.count("send_email", duration("1h")) >= 20'
  - name: prod_db_needs_approval
    action: approve
    tools: ["query_database"]
    condition: 'args.database == "production" and not args.query.matches("(?i)^\\s*select")'
  - name: allow_reads
    action: allow
    tools: ["read_*", "list_*", "search_*"]
"#;
    let p = Policy::from_yaml(src, "policies.yml").unwrap_or_else(|e| panic!("{e}"));
    let ev = |c: serde_json::Value| p.evaluate(&Request::from_call_json(&c).unwrap(), &NoFacts);
    let d = ev(json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}}));
    assert_eq!(d.action, Action::Deny);
    assert_eq!(&*d.reason, "System paths are off limits (/etc/passwd)");
    let d = ev(json!({"tool_name": "read_file", "tool_args": {"path": "/home/x"}}));
    assert_eq!(d.action, Action::Allow, "{d:?}");
    let d = ev(json!({"tool_name": "write_file", "tool_args": {"path": "/root/a/b"}}));
    assert_eq!(d.action, Action::Deny, "{d:?}");
    let d =
        ev(json!({"tool_name": "query_database", "tool_args": {"database": "production", "query": "DROP TABLE x"}}));
    assert_eq!(d.action, Action::Approve, "{d:?}");
    let d = ev(json!({"tool_name": "list_dir", "tool_args": {}}));
    assert_eq!(d.action, Action::Allow, "{d:?}");
    let d = ev(json!({"tool_name": "rm", "tool_args": {}}));
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.rule_name, None);
    println!("{}", p.to_dot());
    println!("{:?}", p.stats());
}

#[test]
fn payload_checks_use_the_scanner() {
    let src = r#"
rules:
  - name: no_secrets
    action: deny
    condition: 'has_secret(args)'
  - name: pii_needs_approval
    action: approve
    condition: 'has_pii(args) && size(secrets(args)) == 0'
  - name: rest
    action: allow
"#;
    let p = Policy::from_yaml(src, "p.yml").unwrap_or_else(|e| panic!("{e}"));
    let ev = |c: serde_json::Value| p.evaluate(&Request::from_call_json(&c).unwrap(), &NoFacts);
    let d = ev(json!({"tool_name": "http", "tool_args": {"body": "key AKIAIOSFODNN7EXAMPLE"}}));
    assert_eq!(d.rule_name.as_deref(), Some("no_secrets"), "{d:?}");
    let d = ev(json!({"tool_name": "mail", "tool_args": {"to": "jane.doe@example.com"}}));
    assert_eq!(d.rule_name.as_deref(), Some("pii_needs_approval"), "{d:?}");
    let d = ev(json!({"tool_name": "mail", "tool_args": {"to": "nobody"}}));
    assert_eq!(d.action, Action::Allow, "{d:?}");
}

fn load(src: &str) -> Policy {
    Policy::from_yaml(src, "policies.yml").unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(src: &str) -> PolicyError {
    match Policy::from_yaml(src, "policies.yml") {
        Ok(_) => panic!("policy should not load"),
        Err(e) => e,
    }
}

fn call(tool: &str, args: serde_json::Value) -> Request {
    Request::from_call_json(&json!({"tool_name": tool, "tool_args": args})).unwrap()
}

#[test]
fn syntax_error_names_file_line_column_rule_with_caret() {
    let src = "version: \"1\"\nrules:\n  - name: ok\n    action: allow\n  - name: broken\n    action: deny\n    condition: 'args.path.startsWith(\"/etc/\") and )'\n";
    let e = load_err(src);
    let d = e.errors().next().unwrap();
    assert_eq!(d.rule.as_deref(), Some("broken"));
    assert_eq!(d.file, "policies.yml");
    assert_eq!(d.line, 7);
    // The caret is on the `)` inside the quoted condition.
    let col_of_paren = src.lines().nth(6).unwrap().find("and )").unwrap() + 5;
    assert_eq!(d.column, col_of_paren, "{}", d.rendered);
    assert!(
        d.rendered.contains(&format!("policies.yml:7:{col_of_paren}")),
        "{}",
        d.rendered
    );
    assert!(d.rendered.contains("condition: 'args.path"), "{}", d.rendered);
    assert!(e.to_string().contains("broken"));
}

#[test]
fn unknown_root_is_reported_at_its_span_inside_double_quotes() {
    let src = "rules:\n  - name: r1\n    action: deny\n    condition: \"argz.path == \\\"x\\\"\"\n";
    let e = load_err(src);
    let d = e.errors().next().unwrap();
    assert_eq!((d.line, d.column), (4, 17), "{}", d.rendered);
    assert!(d.message.contains("argz"), "{}", d.message);
    assert_eq!(d.rule.as_deref(), Some("r1"));
}

#[test]
fn all_errors_of_a_file_are_collected() {
    let src = r#"
rules:
  - name: a
    action: allow
    condtion: 'true'
  - name: b
    action: allw
  - name: a
    action: deny
  - name: c
    action: deny
    condition: '1 +'
"#;
    let e = load_err(src);
    let msgs: Vec<String> = e
        .errors()
        .map(|d| format!("{}|{:?}|{}", d.message, d.rule, d.line))
        .collect();
    assert_eq!(msgs.len(), 4, "{msgs:#?}");
    assert!(
        msgs[0].starts_with("unknown field `condtion`") && msgs[0].ends_with("|5"),
        "{msgs:#?}"
    );
    assert!(
        msgs[1].contains("unknown action `allw`") && msgs[1].ends_with("|7"),
        "{msgs:#?}"
    );
    assert!(
        msgs[2].contains("duplicate rule name `a`") && msgs[2].ends_with("|8"),
        "{msgs:#?}"
    );
    assert!(msgs[3].contains("Some(\"c\")") && msgs[3].ends_with("|12"), "{msgs:#?}");
    let dup = e.errors().nth(2).unwrap();
    assert!(dup.help.as_deref().unwrap_or("").contains("line 3"), "{dup:?}");
}

#[test]
fn unknown_top_level_keys_and_bad_defaults_are_errors() {
    let e = load_err("rules: []\nrulez: []\n");
    let d = e.errors().next().unwrap();
    assert!(d.message.contains("unknown field `rulez`"), "{}", d.message);
    assert_eq!((d.line, d.column), (2, 1));
    let e = load_err("default: maybe\nrules: []\n");
    assert!(
        e.errors()
            .next()
            .unwrap()
            .message
            .contains("unknown default action `maybe`")
    );
    let e = load_err("");
    assert!(e.errors().next().unwrap().message.contains("empty"));
    let e = load_err("rules: [\n");
    assert!(e.errors().next().unwrap().message.contains("invalid YAML"));
}

#[test]
fn reason_templates_render_and_their_errors_point_inside() {
    let p = load(
        r#"
rules:
  - name: r
    action: deny
    reason: "no {args.path} for {agent} ({tool})"
"#,
    );
    let mut req = call("read_file", json!({"path": "/etc"}));
    req.agent_id = Some("bot".into());
    assert_eq!(&*p.evaluate(&req, &NoFacts).reason, "no /etc for bot (read_file)");
    let e = load_err("rules:\n  - name: r\n    action: deny\n    reason: \"bad {argz.x}\"\n");
    let d = e.errors().next().unwrap();
    assert_eq!((d.line, d.column), (4, 19), "{}", d.rendered);
}

#[test]
fn default_reason_and_rule_reason_follow_the_original_server() {
    let p = load("rules:\n  - name: only_reads\n    action: allow\n    tools: [read_file]\n");
    let d = p.evaluate(&call("read_file", json!({})), &NoFacts);
    assert_eq!(&*d.reason, "Matched rule: only_reads");
    let d = p.evaluate(&call("write_file", json!({})), &NoFacts);
    assert_eq!(
        (d.action, d.rule_name.clone(), &*d.reason),
        (Action::Deny, None, "No matching policy rule found")
    );
    assert_eq!(&*d.policy_version, p.info().version);
}

#[test]
fn legacy_format_loads_unchanged_and_decides_as_before() {
    // Values are compared for equality (`tests/legacy.rs` has the full
    // semantics, checked against the original's Python).
    let src = r#"
version: "1.0"
description: legacy
rules:
  - name: block_etc
    description: no system files
    action: deny
    tools: ["read_file", "write_file"]
    conditions:
      arg_contains:
        path: "/etc/passwd"
  - name: admin_deletes
    action: allow
    tools: ["delete_file"]
    conditions:
      session_context:
        user_role: admin
        user_id: "*"
  - name: safe_writes
    action: allow
    tools: ["write_file"]
    conditions:
      arg_not_contains:
        mode: overwrite
  - name: reads
    action: allow
    tools: ["read_file"]
"#;
    let p = load(src);
    assert!(p.info().legacy);
    assert_eq!(p.info().version, "1.0");
    let ev = |c: serde_json::Value| p.evaluate(&Request::from_call_json(&c).unwrap(), &NoFacts);
    let d = ev(json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}}));
    assert_eq!((d.action, &*d.reason), (Action::Deny, "Matched rule: block_etc"));
    // Equality, not a substring test.
    let d = ev(json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd.bak"}}));
    assert_eq!(d.rule_name.as_deref(), Some("reads"));
    let d =
        ev(json!({"tool_name": "delete_file", "tool_args": {}, "user_id": "u1", "metadata": {"user_role": "admin"}}));
    assert_eq!(d.action, Action::Allow);
    // The original's session context always had `user_id` (null here).
    let d = ev(json!({"tool_name": "delete_file", "tool_args": {}, "metadata": {"user_role": "admin"}}));
    assert_eq!(d.rule_name.as_deref(), Some("admin_deletes"));
    let d = ev(json!({"tool_name": "delete_file", "tool_args": {}, "metadata": {"user_role": "dev"}}));
    assert_eq!((d.action, &*d.reason), (Action::Deny, "No matching policy rule found"));
    let d = ev(json!({"tool_name": "write_file", "tool_args": {"path": "x", "mode": "overwrite"}}));
    assert_eq!((d.action, d.rule_name.as_deref()), (Action::Deny, None));
    let d = ev(json!({"tool_name": "write_file", "tool_args": {"path": "x", "mode": "append"}}));
    assert_eq!(d.rule_name.as_deref(), Some("safe_writes"));
}

#[test]
fn legacy_regex_and_range_values_are_linted() {
    let p = load(
        r#"
rules:
  - name: big
    action: deny
    tools: ["pay"]
    conditions:
      arg_contains:
        amount: ">50"
        path: "^/etc/.*"
"#,
    );
    let lints: Vec<&Diagnostic> = p.lints().iter().collect();
    assert_eq!(lints.len(), 2, "{lints:#?}");
    assert!(
        lints
            .iter()
            .all(|d| d.severity == Severity::Warning && d.rule.as_deref() == Some("big"))
    );
    assert!(
        lints[0].help.as_deref().unwrap_or("").contains("args.amount > 50"),
        "{:?}",
        lints[0]
    );
    assert_eq!(lints[0].line, 8);
    assert!(
        lints[1].help.as_deref().unwrap_or("").contains("args.path.matches("),
        "{:?}",
        lints[1]
    );
}

#[test]
fn mixing_legacy_and_current_rules_is_an_error() {
    let e = load_err(
        "rules:\n  - name: a\n    action: deny\n    condition: 'true'\n  - name: b\n    action: deny\n    conditions: {arg_contains: {p: x}}\n",
    );
    let d = e.errors().next().unwrap();
    assert_eq!(d.rule.as_deref(), Some("b"));
    assert_eq!(d.line, 7);
}

#[test]
fn errors_never_widen_access() {
    let p = load(
        r#"
rules:
  - name: big_payments
    action: deny
    tools: [pay]
    condition: 'args.amount > 1000'
  - name: odd_allow
    action: allow
    tools: [pay]
    condition: 'args.amount / 0 == 1'
  - name: payments
    action: allow
    tools: [pay]
"#,
    );
    // A string where a number was expected cannot slip past the deny.
    let d = p.evaluate(&call("pay", json!({"amount": "5000"})), &NoFacts);
    assert_eq!(d.action, Action::Deny);
    assert_eq!(d.rule_name.as_deref(), Some("big_payments"));
    assert!(d.reason.contains("condition error"), "{}", d.reason);
    // A missing key errs too.
    let d = p.evaluate(&call("pay", json!({})), &NoFacts);
    assert_eq!(d.rule_name.as_deref(), Some("big_payments"));
    // An allow rule that errs does not match: the next rule decides.
    let d = p.evaluate(&call("pay", json!({"amount": 10})), &NoFacts);
    assert_eq!(d.rule_name.as_deref(), Some("payments"));
    assert!(!d.reason.contains("error"));
}

#[test]
fn cel_error_absorption_is_kept_by_the_dag() {
    let p = load(
        r#"
rules:
  - name: absorbed_and
    action: deny
    condition: 'args.missing > 1 && false'
  - name: absorbed_or
    action: allow
    condition: 'args.missing > 1 || true'
"#,
    );
    // `error && false` is false; `error || true` is true.
    let d = p.evaluate(&call("t", json!({})), &NoFacts);
    assert_eq!(d.rule_name.as_deref(), Some("absorbed_or"), "{d:?}");
    let p = load(
        r#"
rules:
  - name: and_err
    action: approve
    condition: 'args.missing > 1 && args.x == 1'
"#,
    );
    assert_eq!(
        p.evaluate(&call("t", json!({"x": 1})), &NoFacts).action,
        Action::Approve
    );
    assert_eq!(p.evaluate(&call("t", json!({"x": 2})), &NoFacts).rule_name, None);
}

#[test]
fn tool_switch_handles_exact_names_and_globs() {
    let p = load(
        r#"
rules:
  - name: g1
    action: deny
    tools: ["db_*"]
    condition: 'has(args.drop)'
  - name: exact
    action: approve
    tools: ["db_query"]
  - name: g2
    action: allow
    tools: ["db_*", "fs_?ead"]
  - name: all
    action: deny
    condition: 'tool.size() > 2'
"#,
    );
    let s = p.stats();
    assert_eq!((s.rules, s.tools_indexed, s.globs), (4, 1, 2));
    let d =
        |tool: &str, args: serde_json::Value| p.evaluate(&call(tool, args), &NoFacts).rule_name.map(|r| r.to_string());
    assert_eq!(d("db_query", json!({"drop": true})).as_deref(), Some("g1"));
    assert_eq!(d("db_query", json!({})).as_deref(), Some("exact"));
    assert_eq!(d("db_insert", json!({})).as_deref(), Some("g2"));
    assert_eq!(d("fs_read", json!({})).as_deref(), Some("g2"));
    assert_eq!(d("fs_write", json!({})).as_deref(), Some("all"));
    assert_eq!(d("x", json!({})), None);
    let ex = p.explain(&call("db_insert", json!({})), &NoFacts);
    assert_eq!(ex.tool_match, ToolMatch::Other);
    let ex = p.explain(&call("db_query", json!({})), &NoFacts);
    assert_eq!(ex.tool_match, ToolMatch::Exact);
}

#[test]
fn identical_atoms_are_hash_consed_and_evaluated_once() {
    let p = load(
        r#"
rules:
  - name: a
    action: deny
    condition: 'args.path.startsWith("/etc") && args.n > 3'
  - name: b
    action: deny
    condition: 'args.path.startsWith( "/etc" ) && args.n > 5'
  - name: c
    action: allow
    condition: '!(args.path.startsWith("/etc"))'
"#,
    );
    // startsWith is one atom for all three rules (spaces and parentheses do
    // not matter); `args.n > 3` and `args.n > 5` are two more.
    assert_eq!(p.stats().atoms, 3);
    let ex = p.explain(&call("t", json!({"path": "/etc/x", "n": 1})), &NoFacts);
    let starts: Vec<&AtomTrace> = ex
        .rules
        .iter()
        .flat_map(|r| &r.atoms)
        .filter(|a| a.expr.contains("startsWith"))
        .collect();
    assert_eq!(starts.len(), 3);
    assert!(!starts[0].cached && starts[1].cached && starts[2].cached, "{starts:#?}");
    assert_eq!(ex.decision.action, Action::Deny);
    assert!(ex.defaulted);
}

#[test]
fn constants_fold() {
    let p = load(
        "rules:\n  - name: never\n    action: deny\n    condition: 'false && args.x == 1'\n  - name: always\n    action: allow\n    condition: 'true || args.x == 1'\n",
    );
    assert_eq!(p.stats().predicates, 0);
    assert_eq!(
        p.evaluate(&call("t", json!({})), &NoFacts).rule_name.as_deref(),
        Some("always")
    );
}

#[test]
fn explain_lists_every_rule_tried_with_atom_values() {
    let p = load(
        r#"
rules:
  - name: r1
    action: deny
    condition: 'args.n > 10'
  - name: r2
    action: approve
    condition: 'args.s.startsWith("a") || args.n == 1'
  - name: r3
    action: allow
"#,
    );
    let ex = p.explain(&call("t", json!({"n": 1, "s": "b"})), &NoFacts);
    assert_eq!(ex.decision.rule_name.as_deref(), Some("r2"));
    let outcomes: Vec<(&str, RuleOutcome)> = ex.rules.iter().map(|r| (r.rule.as_str(), r.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![("r1", RuleOutcome::NotMatched), ("r2", RuleOutcome::Matched)]
    );
    let values: Vec<&str> = ex.rules[1].atoms.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(values, vec!["false", "true"]);
    assert_eq!(ex.visited.len(), 3);
    let j = serde_json::to_value(&ex).unwrap();
    assert_eq!(j["rules"][0]["outcome"], "not_matched");
    let ex = p.explain(&call("t", json!({"n": "x"})), &NoFacts);
    assert_eq!(ex.rules[0].outcome, RuleOutcome::Error);
    assert!(ex.rules[0].error.is_some());
}

#[test]
fn session_facts_reach_conditions() {
    let p = load(
        r#"
rules:
  - name: rate
    action: deny
    tools: [send_email]
    condition: 'session.count("send_email", duration("1h")) >= 2'
  - name: flow
    action: deny
    condition: 'session.called("read_secret") && tool == "http_post"'
  - name: rest
    action: allow
"#,
    );
    let f = MemoryFacts::from_json(&json!({"counts": {"send_email": 1}})).unwrap();
    assert_eq!(p.evaluate(&call("send_email", json!({})), &f).action, Action::Allow);
    let f = MemoryFacts::from_json(&json!({"counts": {"send_email": 2}})).unwrap();
    assert_eq!(
        p.evaluate(&call("send_email", json!({})), &f).rule_name.as_deref(),
        Some("rate")
    );
    let f = MemoryFacts::from_json(&json!({"called": ["read_secret"]})).unwrap();
    assert_eq!(
        p.evaluate(&call("http_post", json!({})), &f).rule_name.as_deref(),
        Some("flow")
    );
}

#[test]
fn shadowed_rules_and_dead_globs_are_linted() {
    let p = load(
        r#"
rules:
  - name: everything_read
    action: allow
    tools: ["read_*"]
  - name: etc
    action: deny
    tools: ["read_file"]
    condition: 'args.path.startsWith("/etc")'
  - name: typo
    action: deny
    tools: ["wirte_*", "read_file"]
tests:
  - call: {tool_name: read_file, tool_args: {path: /etc/x}}
    expect: allow
"#,
    );
    let lints: Vec<String> = p.lints().iter().map(|d| d.message.clone()).collect();
    assert!(
        lints.iter().any(|m| m.contains("rule `etc` can never match")),
        "{lints:#?}"
    );
    assert!(
        lints.iter().any(|m| m.contains("`wirte_*` matches no tool")),
        "{lints:#?}"
    );
    assert!(!lints.iter().any(|m| m.contains("`read_*`")), "{lints:#?}");
}

#[test]
fn policy_tests_are_kept_and_run() {
    let p = load(
        r#"
rules:
  - name: rate
    action: deny
    tools: [send_email]
    condition: 'session.count("send_email") >= 3'
  - name: rest
    action: allow
tests:
  - name: fourth email
    call: {tool_name: send_email, tool_args: {}, session: {counts: {send_email: 3}}}
    expect: deny
    rule: rate
  - call: {tool_name: send_email, tool_args: {}}
    expect: deny
"#,
    );
    assert_eq!(p.tests().len(), 2);
    assert_eq!(p.tests()[0].name, "fourth email");
    let out = p.run_tests();
    assert!(out[0].passed, "{:?}", out[0]);
    assert!(!out[1].passed);
    assert!(
        out[1]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("expected `deny`, got `allow`")
    );
    let e = load_err("rules: []\ntests:\n  - call: {tool_name: x}\n    expect: nope\n");
    assert!(e.errors().next().unwrap().message.contains("nope"));
}

#[test]
fn info_and_dot_describe_the_policy() {
    let src = "version: 7\ndescription: d\ndefault: allow\nrules:\n  - name: r\n    action: deny\n    tools: [a, \"b*\"]\n    condition: 'args.x == 1'\n    description: rd\n";
    let p = load(src);
    let info = p.info();
    assert_eq!(info.version, "7");
    assert_eq!(info.default, Action::Allow);
    assert_eq!(info.hash.len(), 64);
    assert_eq!(info.rules[0].tools, vec!["a".to_string(), "b*".to_string()]);
    assert_eq!(info.rules[0].condition.as_deref(), Some("args.x == 1"));
    assert!(!info.legacy);
    let dot = p.to_dot();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(
        dot.contains("switch tool") && dot.contains("args.x == 1") && dot.contains("1. r (deny)"),
        "{dot}"
    );
    let d = p.evaluate(&call("zzz", json!({})), &NoFacts);
    assert_eq!(d.action, Action::Allow);
}

#[test]
fn host_functions_are_registered_through_the_registry() {
    let mut reg = Registry::new();
    let f: HostFn = std::sync::Arc::new(|args: &[Value]| match args {
        [Value::String(s)] => Ok(Value::Bool(s.ends_with(".internal"))),
        _ => Err("expected a string".into()),
    });
    reg.register_host("is_internal", vec![Type::String], Type::Bool, f)
        .unwrap();
    let p = Policy::from_yaml_with(
        "rules:\n  - name: r\n    action: allow\n    condition: 'is_internal(args.host)'\n",
        "p.yml",
        &reg,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.evaluate(&call("t", json!({"host": "db.internal"})), &NoFacts).action,
        Action::Allow
    );
    assert_eq!(
        p.evaluate(&call("t", json!({"host": "x.com"})), &NoFacts).action,
        Action::Deny
    );
    assert!(
        Policy::from_yaml(
            "rules:\n  - name: r\n    action: allow\n    condition: 'is_internal(args.host)'\n",
            "p.yml"
        )
        .is_err()
    );
}

#[test]
fn conditions_are_type_checked_with_the_rule_named() {
    let e = load_err(
        "rules:\n  - name: not_bool\n    action: deny\n    condition: 'args.x + 1'\n  - name: unknown_fn\n    action: deny\n    condition: 'frobnicate(args.x)'\n",
    );
    let errs: Vec<&Diagnostic> = e.errors().collect();
    assert_eq!(errs.len(), 2, "{e}");
    assert!(errs[0].message.contains("must be a bool"), "{}", errs[0].message);
    assert_eq!(
        (errs[0].rule.as_deref(), errs[0].line, errs[0].column),
        (Some("not_bool"), 4, 17)
    );
    assert!(errs[1].message.contains("frobnicate"), "{}", errs[1].message);
    assert_eq!(
        (errs[1].rule.as_deref(), errs[1].line, errs[1].column),
        (Some("unknown_fn"), 7, 17)
    );
    let j = serde_json::to_value(&e).unwrap();
    assert_eq!(j["diagnostics"][0]["severity"], "error");
    assert_eq!(j["diagnostics"][1]["rule"], "unknown_fn");
}
