//! Every condition of the example policies in `policies/` parses and
//! checks as a bool with the built-in registry and the policy roots.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use tame_lang::{CheckEnv, Registry, Type, check, parse};

#[test]
fn example_policy_conditions_check_as_bool() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no policies/ directory: skipped");
        return;
    };
    let registry = Registry::builtins();
    let env = CheckEnv::policy(&registry);
    let mut seen = 0;
    let mut failures = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue;
        };
        let Some(rules) = doc.get("rules").and_then(|r| r.as_sequence()) else {
            continue;
        };
        for cond in rules.iter().filter_map(|r| r.get("condition").and_then(|c| c.as_str())) {
            seen += 1;
            let outcome = parse(cond).map_err(|e| vec![e.into()]).and_then(|e| check(&e, &env));
            match outcome {
                Ok(Type::Bool | Type::Dyn) => {}
                Ok(other) => failures.push(format!("{}: `{cond}` is `{}`", path.display(), other.name())),
                Err(errs) => {
                    let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
                    failures.push(format!("{}: `{cond}`: {}", path.display(), msgs.join("; ")));
                }
            }
        }
    }
    eprintln!("checked {seen} conditions");
    assert!(failures.is_empty(), "{failures:#?}");
}
