//! The legacy format decides as the original tame server did.
//!
//! `legacy/expected.json` holds the original's decisions, computed by
//! `legacy/oracle.py` under the real PyYAML and Python `==`: for two of its
//! own policies (`legacy/original_policies.yml`, `legacy/test_strict.yml`)
//! and for every pair of a YAML value and a JSON value in each condition
//! kind. The property test checks the same against a reference of Python's
//! equality written here (canonical forms rather than pairwise comparison).
use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use tame_engine::{Action, Diagnostic, NoFacts, Policy, Request, Severity};

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/legacy").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected() -> Json {
    serde_json::from_str(&data("expected.json")).unwrap()
}

fn load(src: &str) -> Policy {
    Policy::from_yaml(src, "legacy.yml").unwrap_or_else(|e| panic!("{e}\n{src}"))
}

fn decide(p: &Policy, call: &Json) -> (Action, Option<String>, String) {
    let d = p.evaluate(&Request::from_call_json(call).unwrap(), &NoFacts);
    (d.action, d.rule_name.map(|r| r.to_string()), d.reason.to_string())
}

/// A policy of one allow rule for tool `t` with `conditions: {kind: {v: value}}`.
fn one_condition(kind: &str, value: &str) -> String {
    format!(
        "rules:\n  - name: r\n    action: allow\n    tools: [t]\n    conditions:\n      {kind}:\n        v: {value}\n"
    )
}

/// A call to `t` with `v` (absent when `None`) as an argument, or for
/// `session_context` as a metadata entry.
fn call_with(kind: &str, v: Option<Json>) -> Json {
    let entry = v.map_or_else(|| json!({}), |v| json!({"v": v}));
    if kind == "session_context" {
        json!({"tool_name": "t", "tool_args": {}, "session_id": "s1", "metadata": entry})
    } else {
        json!({"tool_name": "t", "tool_args": entry})
    }
}

fn holds(p: &Policy, call: &Json) -> bool {
    decide(p, call).0 == Action::Allow
}

#[test]
fn the_original_servers_policies_decide_as_it_did() {
    let expected = expected();
    for (name, cases) in expected["fixtures"].as_object().unwrap() {
        let p = load(&data(&format!("{name}.yml")));
        assert!(p.info().legacy, "{name}");
        for case in cases.as_array().unwrap() {
            let want = &case["expect"];
            let (action, rule, reason) = decide(&p, &case["call"]);
            assert_eq!(
                (action.as_str(), rule.as_deref(), reason.as_str()),
                (
                    want["decision"].as_str().unwrap(),
                    want["rule_name"].as_str(),
                    want["reason"].as_str().unwrap()
                ),
                "{name}: {}",
                case["call"]
            );
        }
    }
}

/// The two rules the issue names, spelled out.
#[test]
fn approve_sensitive_ops_and_allow_basic_info() {
    let original = load(&data("original_policies.yml"));
    let send = |args: Json| decide(&original, &json!({"tool_name": "send_email", "tool_args": args}));
    // `recipient: "*"`: any recipient, even null or the text "*"; none: no match.
    for r in [json!("a@b.example"), json!(null), json!(""), json!("*"), json!(["x"])] {
        assert_eq!(
            send(json!({"recipient": r})).1.as_deref(),
            Some("approve_sensitive_ops"),
            "{r}"
        );
    }
    assert_eq!(send(json!({"to": "a@b.example"})).1.as_deref(), Some("default_deny"));

    let strict = load(&data("test_strict.yml"));
    let search = |q: &str| decide(&strict, &json!({"tool_name": "search_web", "tool_args": {"query": q}}));
    // Compared for equality, not as a regex: only the literal text fails.
    assert_eq!(search("my password").1.as_deref(), Some("allow_basic_info"));
    assert_eq!(
        search("password|secret|token|api_key").1.as_deref(),
        Some("default_deny")
    );
    // Its linter shows what was probably meant.
    let lint = strict
        .lints()
        .iter()
        .find(|d| d.rule.as_deref() == Some("allow_basic_info"))
        .expect("a lint on allow_basic_info");
    assert_eq!(lint.severity, Severity::Warning);
    assert!(lint.message.contains("looks like a regex"), "{lint:?}");
    assert!(
        lint.help
            .as_deref()
            .unwrap()
            .contains(r#"condition: '!has(args.query) || !(args.query.matches("password|secret|token|api_key"))'"#),
        "{lint:?}"
    );
    assert!(
        original
            .lints()
            .iter()
            .all(|d| d.rule.as_deref() != Some("approve_sensitive_ops")),
        "{:?}",
        original.lints()
    );
}

#[test]
fn every_value_pair_compares_as_python_does() {
    let expected = expected();
    let yaml: Vec<&str> = expected["yaml_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let calls: Vec<Option<Json>> = std::iter::once(None)
        .chain(
            expected["json_values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| Some(serde_json::from_str(v.as_str().unwrap()).unwrap())),
        )
        .collect();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (kind, rows) in expected["matrix"].as_object().unwrap() {
        for (y, row) in yaml.iter().zip(rows.as_array().unwrap()) {
            let p = match Policy::from_yaml(&one_condition(kind, y), "legacy.yml") {
                Ok(p) => p,
                Err(e) => {
                    wrong.push(format!("{kind} v: {y} does not load: {e}"));
                    continue;
                }
            };
            for (call, want) in calls.iter().zip(row.as_str().unwrap().chars()) {
                checked += 1;
                if holds(&p, &call_with(kind, call.clone())) != (want == '1') {
                    let shown = call.as_ref().map_or_else(|| "absent".to_owned(), Json::to_string);
                    wrong.push(format!("{kind} v: {y} against {shown}: Python says {want}"));
                }
            }
        }
    }
    assert!(checked > 5000, "only {checked} pairs");
    assert!(
        wrong.is_empty(),
        "{} of {checked} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn values_pyyaml_could_not_build_are_load_errors() {
    let expected = expected();
    let refused = expected["yaml_errors"]
        .as_array()
        .unwrap()
        .iter()
        .chain(expected["tame_refuses"].as_array().unwrap());
    for y in refused {
        let src = one_condition("arg_contains", y.as_str().unwrap());
        let e = Policy::from_yaml(&src, "bad.yml")
            .err()
            .unwrap_or_else(|| panic!("{y} loaded"));
        // At the value (serde_yaml finds some before the rule is read).
        let d = e.errors().next().unwrap();
        assert_eq!((d.line, d.column), (7, 12), "{y}: {d:?}");
    }
}

/// One condition, one call: does it hold?
#[test]
fn condition_table() {
    // (kind, value in the policy, the call's value (None: absent), holds)
    let table: &[(&str, &str, Option<Json>, bool)] = &[
        // arg_contains: present and equal; no substring test
        ("arg_contains", "\"/etc/passwd\"", Some(json!("/etc/passwd")), true),
        ("arg_contains", "\"/etc\"", Some(json!("/etc/passwd")), false),
        ("arg_contains", "\"/etc\"", None, false),
        // "*": present with any value, null included
        ("arg_contains", "\"*\"", Some(json!(null)), true),
        ("arg_contains", "'*'", Some(json!({"a": 1})), true),
        ("arg_contains", "\"*\"", None, false),
        // numbers by value across int, float and bool; text is not a number
        ("arg_contains", "1", Some(json!(1.0)), true),
        ("arg_contains", "1.0", Some(json!(1)), true),
        ("arg_contains", "1", Some(json!(true)), true),
        ("arg_contains", "0", Some(json!(false)), true),
        ("arg_contains", "1", Some(json!("1")), false),
        ("arg_contains", "\"1\"", Some(json!(1)), false),
        ("arg_contains", "2", Some(json!(2.5)), false),
        (
            "arg_contains",
            "9007199254740992.0",
            Some(json!(9_007_199_254_740_993_i64)),
            false,
        ),
        // YAML 1.1: yes is true, 0755 octal, 1:30 base 60, 1e3 text
        ("arg_contains", "yes", Some(json!(true)), true),
        ("arg_contains", "\"yes\"", Some(json!(true)), false),
        ("arg_contains", "0755", Some(json!(493)), true),
        ("arg_contains", "1:30", Some(json!(90)), true),
        ("arg_contains", "1e3", Some(json!("1e3")), true),
        ("arg_contains", "1e3", Some(json!(1000)), false),
        // lists element by element, in order; objects by keys and values
        ("arg_contains", "[1, 2]", Some(json!([1.0, 2])), true),
        ("arg_contains", "[1, 2]", Some(json!([2, 1])), false),
        ("arg_contains", "[a, b]", Some(json!("a")), false),
        ("arg_contains", "{a: 1}", Some(json!({"a": true})), true),
        ("arg_contains", "{a: 1}", Some(json!({"a": 1, "b": 2})), false),
        // null only equals null
        ("arg_contains", "~", Some(json!(null)), true),
        ("arg_contains", "~", Some(json!(0)), false),
        ("arg_contains", "~", None, false),
        // a date equals no JSON value
        ("arg_contains", "2024-01-01", Some(json!("2024-01-01")), false),
        // arg_not_contains: absent or unequal
        ("arg_not_contains", "\"write\"", Some(json!("write")), false),
        ("arg_not_contains", "\"write\"", Some(json!("rewrite")), true),
        ("arg_not_contains", "\"write\"", None, true),
        ("arg_not_contains", "1", Some(json!(1.0)), false),
        ("arg_not_contains", "~", Some(json!(null)), false),
        ("arg_not_contains", "~", None, true),
        // ... where "*" is the text *, not a wildcard
        ("arg_not_contains", "\"*\"", Some(json!("x")), true),
        ("arg_not_contains", "\"*\"", Some(json!("*")), false),
        // session_context: the metadata entry, compared the same way
        ("session_context", "guest", Some(json!("guest")), true),
        ("session_context", "guest", Some(json!("guests")), false),
        ("session_context", "3", Some(json!(3.0)), true),
        ("session_context", "\"*\"", Some(json!(null)), true),
        ("session_context", "\"*\"", None, false),
    ];
    for (kind, value, call, want) in table {
        let p = load(&one_condition(kind, value));
        assert_eq!(
            holds(&p, &call_with(kind, call.clone())),
            *want,
            "{kind} v: {value} against {call:?}"
        );
    }
}

#[test]
fn session_context_always_has_the_three_ids() {
    let p = |cond: &str| {
        load(&format!(
            "rules:\n  - name: r\n    action: allow\n    tools: [t]\n    conditions:\n      session_context: {cond}\n"
        ))
    };
    let ev = |p: &Policy, extra: Json| {
        let mut call = json!({"tool_name": "t", "tool_args": {}});
        call.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        holds(p, &call)
    };
    // The original put user_id in the context even when null: "*" holds.
    let any_user = p("{user_id: '*'}");
    assert!(ev(&any_user, json!({})));
    assert!(ev(&any_user, json!({"user_id": "u1"})));
    let no_agent = p("{agent_id: ~}");
    assert!(ev(&no_agent, json!({})));
    assert!(!ev(&no_agent, json!({"agent_id": "a1"})));
    let agent = p("{agent_id: a1}");
    assert!(ev(&agent, json!({"agent_id": "a1"})));
    assert!(!ev(&agent, json!({})));
    // Metadata is merged over the ids.
    assert!(ev(&agent, json!({"agent_id": "a2", "metadata": {"agent_id": "a1"}})));
    assert!(ev(&no_agent, json!({"agent_id": "a2", "metadata": {"agent_id": null}})));
    // A call without a session gets a fresh id: present, equal to nothing named.
    assert!(ev(&p("{session_id: '*'}"), json!({})));
    assert!(!ev(&p("{session_id: s1}"), json!({})));
    assert!(ev(&p("{session_id: s1}"), json!({"session_id": "s1"})));
    // Other keys come from the metadata only.
    assert!(!ev(&p("{tool_name: '*'}"), json!({})));
}

#[test]
fn all_entries_of_all_sections_must_hold() {
    let p = load(
        "rules:\n  - name: r\n    action: deny\n    tools: [t]\n    conditions:\n      arg_contains: {a: 1, b: '*'}\n      arg_not_contains: {c: x}\n      session_context: {role: guest}\n",
    );
    let ev = |args: Json, role: &str| {
        decide(
            &p,
            &json!({"tool_name": "t", "tool_args": args, "metadata": {"role": role}}),
        )
        .1
    };
    assert_eq!(ev(json!({"a": 1, "b": 0}), "guest").as_deref(), Some("r"));
    assert_eq!(ev(json!({"a": 1, "b": 0, "c": "y"}), "guest").as_deref(), Some("r"));
    assert_eq!(ev(json!({"a": 1, "b": 0, "c": "x"}), "guest"), None);
    assert_eq!(ev(json!({"a": 1}), "guest"), None);
    assert_eq!(ev(json!({"a": 2, "b": 0}), "guest"), None);
    assert_eq!(ev(json!({"a": 1, "b": 0}), "admin"), None);
}

fn errors_of(src: &str) -> Vec<Diagnostic> {
    Policy::from_yaml(src, "bad.yml")
        .err()
        .unwrap_or_else(|| panic!("loaded:\n{src}"))
        .errors()
        .cloned()
        .collect()
}

#[test]
fn conditions_the_original_failed_on_are_load_errors() {
    let rule = |conditions: &str| {
        format!("rules:\n  - name: r\n    action: allow\n    tools: [t]\n    conditions:{conditions}\n")
    };
    for (conditions, says) in [
        ("", "`conditions` must be a mapping, found null"),
        (" [arg_contains]", "`conditions` must be a mapping, found a list"),
        (
            "\n      arg_contains:",
            "`arg_contains` must be a mapping of names to values, found null",
        ),
        (
            "\n      arg_contains: path",
            "`arg_contains` must be a mapping of names to values, found text",
        ),
        ("\n      arg_regex: {path: x}", "unknown legacy condition `arg_regex`"),
    ] {
        let errors = errors_of(&rule(conditions));
        assert_eq!(errors.len(), 1, "{conditions}: {errors:?}");
        assert_eq!(errors[0].message, says);
        assert_eq!(errors[0].rule.as_deref(), Some("r"));
    }
}

#[test]
fn legacy_lints_explain_what_the_original_did() {
    let p = load(concat!(
        "rules:\n",
        "  - name: r\n",
        "    action: allow\n",
        "    tools: [t]\n",
        "    conditions:\n",
        "      arg_contains:\n",
        "        mode: [read, list]\n",
        "        confirm: yes\n",
        "        1: x\n",
        "      arg_not_contains:\n",
        "        path: '*'\n",
    ));
    let lints: Vec<(usize, &str, &str)> = p
        .lints()
        .iter()
        .map(|d| (d.line, d.message.as_str(), d.help.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(lints.len(), 4, "{lints:#?}");
    assert!(lints[0].1.contains("whole list") && lints[0].2.contains(r#"args.mode in ["read", "list"]"#));
    assert_eq!(lints[0].0, 7);
    assert!(lints[1].1.contains("`yes` is read as a boolean (true)"), "{lints:#?}");
    assert!(
        lints[2].1.contains("`1` in `arg_contains` is read as an integer"),
        "{lints:#?}"
    );
    assert!(
        lints[3].1.contains("not a wildcard") && lints[3].2.contains("!has(args.path)"),
        "{lints:#?}"
    );
}

// ---------------------------------------------------------------- model

/// Python's value of a generated YAML term or JSON value, as a canonical
/// form: equal forms are exactly the values Python's `==` calls equal.
#[derive(Clone, Debug, PartialEq)]
enum Canon {
    Null,
    /// An int, bool or integral float, by exact value.
    Int(i128),
    /// A float with a fraction (or beyond i128), by value.
    Frac(u64),
    Str(String),
    List(Vec<Canon>),
    Dict(BTreeMap<String, Canon>),
    /// Equal to no JSON value (a date, NaN, a dict with a non-text key).
    Never,
}

fn canon_float(f: f64) -> Canon {
    if f.is_nan() {
        Canon::Never
    } else if f.fract() == 0.0 && f.abs() < 1e38 {
        Canon::Int(f as i128)
    } else {
        Canon::Frac(f.to_bits())
    }
}

fn canon_json(v: &Json) -> Canon {
    match v {
        Json::Null => Canon::Null,
        Json::Bool(b) => Canon::Int(i128::from(*b)),
        Json::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or(n.as_u64().map(i128::from))
            .map_or_else(|| canon_float(n.as_f64().unwrap()), Canon::Int),
        Json::String(s) => Canon::Str(s.clone()),
        Json::Array(a) => Canon::List(a.iter().map(canon_json).collect()),
        Json::Object(o) => Canon::Dict(o.iter().map(|(k, v)| (k.clone(), canon_json(v))).collect()),
    }
}

/// A YAML term: its text and Python's value of it.
#[derive(Clone, Debug)]
struct Term {
    text: String,
    canon: Canon,
    star: bool,
}

fn leaf() -> impl Strategy<Value = Term> {
    let fixed: Vec<(&str, Canon)> = vec![
        ("1", Canon::Int(1)),
        ("1.0", Canon::Int(1)),
        ("'1'", Canon::Str("1".into())),
        ("0", Canon::Int(0)),
        ("-0.0", Canon::Int(0)),
        ("0.5", Canon::Frac(0.5f64.to_bits())),
        (".5", Canon::Frac(0.5f64.to_bits())),
        ("1e3", Canon::Str("1e3".into())),
        ("1.0e+3", Canon::Int(1000)),
        ("1_000", Canon::Int(1000)),
        ("0x1F", Canon::Int(31)),
        ("017", Canon::Int(15)),
        ("yes", Canon::Int(1)),
        ("Off", Canon::Int(0)),
        ("true", Canon::Int(1)),
        ("'yes'", Canon::Str("yes".into())),
        ("y", Canon::Str("y".into())),
        ("~", Canon::Null),
        ("null", Canon::Null),
        ("'null'", Canon::Str("null".into())),
        ("a", Canon::Str("a".into())),
        ("'*'", Canon::Str("*".into())),
        ("\"\"", Canon::Str(String::new())),
        ("2024-01-01", Canon::Never),
        (".nan", Canon::Never),
        ("9007199254740993", Canon::Int(9_007_199_254_740_993)),
        ("9007199254740992.0", Canon::Int(9_007_199_254_740_992)),
    ];
    prop_oneof![
        4 => proptest::sample::select(fixed).prop_map(|(t, c)| Term { star: t == "'*'", text: t.to_owned(), canon: c }),
        1 => (-3i64..40).prop_map(|i| Term { text: i.to_string(), canon: Canon::Int(i128::from(i)), star: false }),
        1 => ((-3i64..40), (0u32..4)).prop_map(|(i, q)| {
            let f = i as f64 + f64::from(q) / 4.0;
            let text = format!("{:.2}", f);
            Term { canon: canon_float(text.parse().unwrap()), text, star: false }
        }),
        1 => "[a-c1]{0,2}".prop_map(|s| Term { text: format!("'{s}'"), canon: Canon::Str(s), star: false }),
    ]
}

fn term() -> impl Strategy<Value = Term> {
    leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(|items| Term {
                text: format!(
                    "[{}]",
                    items.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(", ")
                ),
                canon: Canon::List(items.into_iter().map(|t| t.canon).collect()),
                star: false,
            }),
            proptest::collection::btree_map(prop_oneof![Just("a"), Just("b"), Just("1")], inner, 0..3).prop_map(
                |entries| {
                    // Unquoted `1` is an int key: no JSON object equals the dict.
                    let non_text = entries.contains_key("1");
                    Term {
                        text: format!(
                            "{{{}}}",
                            entries
                                .iter()
                                .map(|(k, t)| format!("{k}: {}", t.text))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        canon: if non_text {
                            Canon::Never
                        } else {
                            Canon::Dict(entries.into_iter().map(|(k, t)| (k.to_owned(), t.canon)).collect())
                        },
                        star: false,
                    }
                }
            ),
        ]
    })
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Json::from),
        (-3i64..40).prop_map(Json::from),
        ((-3i64..40), (0u32..4)).prop_map(|(i, q)| json!(i as f64 + f64::from(q) / 4.0)),
        proptest::sample::select(vec![
            json!("1"),
            json!("yes"),
            json!("*"),
            json!(""),
            json!("a"),
            json!("1e3"),
            json!("null"),
            json!("2024-01-01"),
            json!(1000),
            json!(31),
            json!(15),
            json!(-0.0),
            json!(9_007_199_254_740_993_i64),
            json!(9_007_199_254_740_992_i64),
            json!(9_007_199_254_740_992.0),
        ]),
        "[a-c1]{0,2}".prop_map(Json::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Json::from),
            proptest::collection::btree_map(
                prop_oneof![Just("a".to_owned()), Just("b".to_owned()), Just("1".to_owned())],
                inner,
                0..3
            )
            .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// The engine against the model: the original's rule for the kind, with
    /// Python's equality as equal canonical forms.
    #[test]
    fn legacy_conditions_match_the_python_model(
        kind in proptest::sample::select(vec!["arg_contains", "arg_not_contains", "session_context"]),
        term in term(),
        value in proptest::option::of(json_value()),
    ) {
        let equal = value.as_ref().is_some_and(|v| canon_json(v) == term.canon);
        let present = value.is_some();
        let model = match kind {
            "arg_not_contains" => !(present && equal),
            _ => present && (term.star || equal),
        };
        let p = load(&one_condition(kind, &term.text));
        prop_assert_eq!(holds(&p, &call_with(kind, value.clone())), model, "{} v: {} against {:?}", kind, term.text, value);
    }
}

#[test]
fn every_hinted_condition_loads_in_the_current_format() {
    let p = load(concat!(
        "rules:\n",
        "  - name: r\n",
        "    action: deny\n",
        "    tools: [t]\n",
        "    conditions:\n",
        "      arg_contains: {amount: '>50', path: '^/etc/.*', file-name: 'a|b', size: '10-20', mode: [read, 1, 2.5, true, ~]}\n",
        "      arg_not_contains: {query: 'password|secret', n: '<=3', other-key: '^x', tag: [a], path2: '*'}\n",
        "      session_context: {hours: '09:00-17:00', tier: '1-3', agent_id: '^a.*', user_id: '[ab]', session_id: '^s'}\n",
    ));
    let hints: Vec<&str> = p
        .lints()
        .iter()
        .filter_map(|d| {
            let help = d.help.as_deref()?;
            let start = help.find("condition: '")? + "condition: '".len();
            Some(&help[start..start + help[start..].find("'`")?])
        })
        .collect();
    assert_eq!(hints.len(), p.lints().len(), "{:#?}", p.lints());
    assert_eq!(hints.len(), 15, "{hints:#?}");
    for cond in hints {
        let src = format!("rules:\n  - name: r\n    action: deny\n    tools: [t]\n    condition: '{cond}'\n");
        Policy::from_yaml(&src, "hint.yml").unwrap_or_else(|e| panic!("{cond}:\n{e}"));
    }
}

#[test]
fn tools_the_original_failed_on_are_load_errors() {
    // (`conditions` makes the file legacy.)
    let rule =
        |tools: &str| format!("rules:\n  - name: r\n    action: allow\n    tools: {tools}\n    conditions: {{}}\n");
    for (tools, says) in [
        ("read_file", "`tools` must be a list of tool names, found text"),
        ("~", "`tools` must be a list of tool names, found null"),
        ("[yes]", "a tool name must be text, found a boolean (true)"),
        ("['read_(']", "tool pattern `read_(` is read as a regex"),
    ] {
        let errors = errors_of(&rule(tools));
        assert_eq!(errors.len(), 1, "{tools}: {errors:?}");
        assert!(errors[0].message.starts_with(says), "{tools}: {errors:?}");
        assert_eq!((errors[0].rule.as_deref(), errors[0].line), (Some("r"), 4));
    }
    // serde_yaml refuses a number among the tools before the rule is read.
    assert_eq!(errors_of(&rule("[1]"))[0].rule.as_deref(), Some("r"));
}
