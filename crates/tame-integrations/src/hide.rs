//! Which tools a policy denies whatever the call: used by the MCP proxy's
//! `--hide-denied` to filter `tools/list` answers.
//!
//! A tool is hidden only when that is certain: walking the rules in file
//! order (first match wins), a rule that applies to the tool with no
//! condition decides it (hidden if it denies); a conditional `deny` rule is
//! skipped (it can only deny more); a conditional `allow` or `approve` rule
//! that may apply ends the walk with "not hidden"; with no applicable rule
//! left the policy's default decides. A rule whose condition is unknown is
//! treated as conditional.

use globset::GlobBuilder;
use serde_json::Value;
use tame_engine::{Action, Policy};

/// The parts of one rule that matter here.
#[derive(Clone, Debug)]
pub struct RuleShape {
    pub action: Action,
    /// Tool globs; `None` or empty means every tool.
    pub tools: Option<Vec<String>>,
    /// `true` only when the rule is known to have no condition.
    pub unconditional: bool,
}

/// Whether `tool` is denied by every call, given the rules in file order
/// and the policy's default action.
pub fn denied_by_shape(rules: &[RuleShape], default: Action, tool: &str) -> bool {
    for rule in rules {
        let surely = applies(rule, tool, false);
        let maybe = surely || applies(rule, tool, true);
        if !maybe {
            continue;
        }
        match rule.action {
            Action::Deny if surely && rule.unconditional => return true,
            // A deny that may or may not match never opens access.
            Action::Deny => {}
            // An allow or approve that may match: the tool can be reached.
            Action::Allow | Action::Approve => return false,
        }
    }
    default == Action::Deny
}

fn applies(rule: &RuleShape, tool: &str, loosely: bool) -> bool {
    let Some(globs) = rule.tools.as_ref().filter(|globs| !globs.is_empty()) else {
        return true;
    };
    globs.iter().any(|pattern| {
        match GlobBuilder::new(pattern)
            .case_insensitive(loosely)
            .literal_separator(false)
            .build()
        {
            Ok(glob) => glob.compile_matcher().is_match(tool),
            // A pattern we cannot read may match anything (loosely) and is
            // never counted as surely matching.
            Err(_) => loosely,
        }
    })
}

/// Whether the compiled `policy` denies `tool` unconditionally.
pub fn denies_unconditionally(policy: &Policy, tool: &str) -> bool {
    let info = policy.info();
    let rules: Vec<RuleShape> = info
        .rules
        .iter()
        .map(|rule| RuleShape {
            action: rule.action,
            tools: Some(rule.tools.clone()),
            // Legacy rules report no condition text even when they have
            // `conditions`: count them all as conditional.
            unconditional: rule.condition.is_none() && !info.legacy,
        })
        .collect();
    denied_by_shape(&rules, info.default, tool)
}

/// The rules and default of a server's `GET /api/v1/policy/current`
/// answer, for [`denied_by_shape`]. A rule without a `condition` key (or
/// any rule of a legacy policy) counts as conditional, and an action we do
/// not know as one that may open access.
pub fn shapes_from_policy_json(current: &Value) -> (Vec<RuleShape>, Action) {
    let default = match current.get("default").and_then(Value::as_str) {
        Some("allow") => Action::Allow,
        Some("approve") => Action::Approve,
        _ => Action::Deny,
    };
    // Legacy rules report no condition text even when they have `conditions`.
    let legacy = current.get("legacy").and_then(Value::as_bool).unwrap_or(false);
    let rules = current
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let shapes = rules
        .iter()
        .map(|rule| {
            let action = match rule.get("action").and_then(Value::as_str) {
                Some("deny") => Action::Deny,
                Some("approve") => Action::Approve,
                _ => Action::Allow,
            };
            let tools = rule
                .get("tools")
                .and_then(Value::as_array)
                .map(|tools| tools.iter().filter_map(Value::as_str).map(str::to_owned).collect());
            let unconditional = !legacy
                && rule.get("condition").is_some_and(Value::is_null)
                && rule
                    .get("conditions")
                    .is_none_or(|c| c.is_null() || c.as_object().is_some_and(|m| m.is_empty()));
            RuleShape {
                action,
                tools,
                unconditional,
            }
        })
        .collect();
    (shapes, default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: Action, tools: &[&str], unconditional: bool) -> RuleShape {
        RuleShape {
            action,
            tools: Some(tools.iter().map(|t| (*t).to_owned()).collect()),
            unconditional,
        }
    }

    #[test]
    fn unconditional_deny_hides() {
        let rules = [
            rule(Action::Deny, &["delete_*"], true),
            rule(Action::Allow, &["*"], true),
        ];
        assert!(denied_by_shape(&rules, Action::Deny, "delete_file"));
        assert!(!denied_by_shape(&rules, Action::Deny, "read_file"));
    }

    #[test]
    fn conditional_allow_before_deny_keeps_tool() {
        let rules = [
            rule(Action::Allow, &["delete_file"], false),
            rule(Action::Deny, &["delete_*"], true),
        ];
        assert!(!denied_by_shape(&rules, Action::Deny, "delete_file"));
    }

    #[test]
    fn conditional_deny_is_skipped() {
        let rules = [
            rule(Action::Deny, &["*"], false),
            rule(Action::Allow, &["read_*"], true),
        ];
        assert!(!denied_by_shape(&rules, Action::Deny, "read_file"));
        assert!(denied_by_shape(&rules, Action::Deny, "write_file"));
        assert!(!denied_by_shape(&rules, Action::Allow, "write_file"));
    }

    #[test]
    fn case_differences_count_as_maybe() {
        let rules = [rule(Action::Allow, &["Read_*"], true)];
        assert!(!denied_by_shape(&rules, Action::Deny, "read_file"));
    }

    #[test]
    fn approve_keeps_tool_visible() {
        let rules = [rule(Action::Approve, &["pay"], true)];
        assert!(!denied_by_shape(&rules, Action::Deny, "pay"));
    }

    fn hidden(current: &Value, tools: &[&str]) -> Vec<String> {
        let (shapes, default) = shapes_from_policy_json(current);
        tools
            .iter()
            .filter(|t| denied_by_shape(&shapes, default, t))
            .map(|t| (*t).to_owned())
            .collect()
    }

    #[test]
    fn server_json_without_conditions_hides_only_by_default() {
        let current = serde_json::json!({
            "default": "deny",
            "rules": [
                {"name": "no_rm", "action": "deny", "tools": ["rm"]},
                {"name": "reads", "action": "allow", "tools": ["read_*"]},
                {"name": "ask", "action": "approve", "tools": ["pay"]}
            ]
        });
        // `rm`'s deny rule might be conditional (no `condition` key); no
        // later rule may allow it, so the default deny still hides it.
        assert_eq!(hidden(&current, &["rm", "read_x", "pay", "other"]), ["rm", "other"]);
        let with_condition = serde_json::json!({
            "default": "allow",
            "rules": [
                {"action": "deny", "tools": ["rm"], "condition": null},
                {"action": "deny", "tools": ["mv"], "condition": "args.x == 1"},
                {"action": "deny", "tools": ["del_*"], "condition": null}
            ]
        });
        assert_eq!(
            hidden(&with_condition, &["rm", "mv", "del_file", "ls"]),
            ["rm", "del_file"]
        );
        let mut legacy = with_condition.clone();
        legacy["legacy"] = Value::Bool(true);
        assert!(hidden(&legacy, &["rm", "mv", "del_file", "ls"]).is_empty());
    }
}
