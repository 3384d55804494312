//! The shipped policies against path traversal: `/tmp/../etc/shadow`
//! starts with `/tmp/`, so paths are compared after `..` is resolved
//! (`within`, `clean_path`), and the linter finds none compared raw.
use std::path::{Path, PathBuf};

use serde_json::json;
use tame_engine::*;

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn load(name: &str) -> Policy {
    Policy::from_file(&policies_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn decide(p: &Policy, tool: &str, args: serde_json::Value) -> Decision {
    let call = json!({"tool_name": tool, "tool_args": args});
    p.evaluate(&Request::from_call_json(&call).unwrap(), &NoFacts)
}

#[test]
fn the_example_policy_denies_system_files_reached_through_tmp() {
    let p = load("example.yml");
    for (tool, path) in [
        ("read_file", "/tmp/../etc/shadow"),
        ("write_file", "/tmp/../etc/cron.d/x"),
        ("read_file", "/tmp//..//etc/./passwd"),
        ("delete_file", "/tmp/a/../../root/.ssh/authorized_keys"),
    ] {
        let d = decide(&p, tool, json!({"path": path, "content": "x"}));
        assert_eq!(d.action, Action::Deny, "{tool} {path}: {d:?}");
        assert_eq!(d.rule_name.as_deref(), Some("block_system_files"), "{tool} {path}");
    }
    // Writes stay inside /tmp: out of it through `..`, or next to it, is the default.
    for path in ["/tmp/x/../../home/u/.bashrc", "/tmpx/out.txt", "/tmp/.."] {
        let d = decide(&p, "write_file", json!({"path": path, "content": "x"}));
        assert_eq!((d.action, d.rule_name.as_deref()), (Action::Deny, None), "{path}");
    }
    let d = decide(&p, "write_file", json!({"path": "/tmp/a/../out.txt", "content": "x"}));
    assert_eq!(d.rule_name.as_deref(), Some("allow_writes_in_tmp"));
}

#[test]
fn no_shipped_policy_compares_a_raw_path_and_all_their_tests_pass() {
    let mut checked = 0;
    for entry in std::fs::read_dir(policies_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yml") || name.ends_with(".tests.yml") {
            continue;
        }
        let p = Policy::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let raw: Vec<&Diagnostic> = p
            .lints()
            .iter()
            .filter(|d| d.message.contains("before `..` is resolved"))
            .collect();
        assert!(raw.is_empty(), "{name}: {raw:#?}");
        for outcome in p.run_tests() {
            assert!(outcome.passed, "{name}: {outcome:?}");
        }
        checked += 1;
    }
    assert!(checked >= 8, "{checked} policies");
}
