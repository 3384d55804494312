//! Differential property test: the compiled decision DAG decides exactly
//! like a plain tree-walking reference (first match over the rules, each
//! whole condition evaluated by tame-interp directly), on random policies
//! and random requests. Also: the loader never panics on arbitrary text.
use proptest::prelude::*;
use serde_json::json;
use tame_engine::{Action, NoFacts, Policy, Request};
use tame_interp::{Activation, Env, roots};
use tame_lang::Value;

#[derive(Clone, Debug)]
struct Rule {
    name: String,
    action: Action,
    tools: Vec<&'static str>,
    condition: Option<String>,
}

const TOOLS: [&str; 4] = ["alpha", "beta", "d_*", "*_x"];
const CALL_TOOLS: [&str; 6] = ["alpha", "beta", "d_one", "d_x", "gamma", "beta_x"];

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        (0i64..6).prop_map(|n| format!("args.x > {n}")),
        (0i64..6).prop_map(|n| format!("args.x == {n}")),
        prop_oneof![Just("p"), Just("q"), Just("")].prop_map(|p| format!("args.y.startsWith(\"{p}\")")),
        Just("args.y == \"pq\"".to_string()),
        Just("args.z".to_string()),
        Just("has(args.w)".to_string()),
        Just("args.w > 1".to_string()),
        Just("10 / args.x > 2".to_string()),
        Just("tool == \"beta\"".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
    ]
}

fn condition() -> impl Strategy<Value = String> {
    atom().prop_recursive(4, 16, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, a, b)| format!("({c} ? {a} : {b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a} and not ({b}))")),
        ]
    })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![Just(Action::Allow), Just(Action::Deny), Just(Action::Approve)]
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(
        (
            action(),
            prop::sample::subsequence(TOOLS.to_vec(), 0..3),
            prop::option::weighted(0.85, condition()),
        ),
        1..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (action, tools, condition))| Rule {
                name: format!("r{i}"),
                action,
                tools,
                condition,
            })
            .collect()
    })
}

fn arg_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        (-2i64..8).prop_map(|n| json!(n)),
        prop_oneof![Just("pq"), Just("qp"), Just("x"), Just("")].prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(json!(2.5)),
        Just(serde_json::Value::Null),
    ]
}

fn request() -> impl Strategy<Value = serde_json::Value> {
    (
        prop::sample::select(CALL_TOOLS.to_vec()),
        prop::option::of(arg_value()),
        prop::option::of(arg_value()),
        prop::option::of(arg_value()),
        prop::option::of(arg_value()),
    )
        .prop_map(|(tool, x, y, z, w)| {
            let mut args = serde_json::Map::new();
            for (k, v) in [("x", x), ("y", y), ("z", z), ("w", w)] {
                if let Some(v) = v {
                    args.insert(k.into(), v);
                }
            }
            json!({"tool_name": tool, "tool_args": args})
        })
}

fn yaml(rules: &[Rule]) -> String {
    let mut y = String::from("default: deny\nrules:\n");
    for r in rules {
        y.push_str(&format!("  - name: {}\n    action: {}\n", r.name, r.action.as_str()));
        if !r.tools.is_empty() {
            let tools: Vec<String> = r.tools.iter().map(|t| format!("\"{t}\"")).collect();
            y.push_str(&format!("    tools: [{}]\n", tools.join(", ")));
        }
        if let Some(c) = &r.condition {
            y.push_str(&format!("    condition: '{c}'\n"));
        }
    }
    y
}

/// A deliberately naive glob: `*` at either end only.
fn tool_matches(pattern: &str, tool: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        tool.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        tool.ends_with(suffix)
    } else {
        pattern == tool
    }
}

/// The reference: first match, whole conditions through tame-interp.
fn reference(rules: &[Rule], req: &Request) -> (Action, Option<String>) {
    let env = Env::policy();
    let mut vars = vec![Value::Null; roots::COUNT];
    vars[roots::TOOL] = Value::String(req.tool.clone());
    vars[roots::ARGS] = req.args.clone();
    vars[roots::METADATA] = req.metadata.clone();
    for r in rules {
        if !r.tools.is_empty() && !r.tools.iter().any(|p| tool_matches(p, &req.tool)) {
            continue;
        }
        let matched = match &r.condition {
            None => true,
            Some(c) => {
                let expr = tame_lang::parse(c).expect("generated conditions parse");
                let program = tame_interp::compile(&expr, &env).expect("generated conditions compile");
                match program.eval_bool(&Activation::new(&vars, &NoFacts, req.now)) {
                    Ok(b) => b,
                    Err(_) => r.action != Action::Allow,
                }
            }
        };
        if matched {
            return (r.action, Some(r.name.clone()));
        }
    }
    (Action::Deny, None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn dag_decides_like_the_reference(rules in rules(), calls in prop::collection::vec(request(), 1..6)) {
        let text = yaml(&rules);
        let policy = Policy::from_yaml(&text, "random.yml").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        for call in calls {
            let req = Request::from_call_json(&call).expect("generated calls convert");
            let d = policy.evaluate(&req, &NoFacts);
            let expected = reference(&rules, &req);
            prop_assert_eq!((d.action, d.rule_name.as_deref().map(str::to_owned)), expected, "policy:\n{}\ncall: {}", text, call);
            // explain agrees with evaluate.
            let ex = policy.explain(&req, &NoFacts);
            prop_assert_eq!(&ex.decision, &d);
        }
    }

    #[test]
    fn loader_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        let _ = Policy::from_yaml(&text, "fuzz.yml");
    }

    #[test]
    fn loader_never_panics_on_yaml_shaped_text(
        lines in prop::collection::vec(
            prop_oneof![
                Just("rules:".to_string()),
                Just("  - name: a".to_string()),
                Just("    action: deny".to_string()),
                Just("    action: nope".to_string()),
                Just("    tools: [\"x*\", \"[\"]".to_string()),
                Just("    conditions: {arg_contains: {p: \">5\"}}".to_string()),
                Just("default: allow".to_string()),
                Just("tests:".to_string()),
                Just("  - call: {tool_name: x}".to_string()),
                "    condition: '[^']{0,20}'",
                "    reason: \"[^\"]{0,20}\"",
                "[ -~]{0,20}",
            ],
            0..14,
        )
    ) {
        let text = lines.join("\n");
        let _ = Policy::from_yaml(&text, "fuzz.yml");
    }
}
