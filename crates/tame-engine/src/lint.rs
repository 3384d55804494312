//! Lints: warnings about policies that load but probably do not say what
//! their author meant.

use crate::compile::{CondSpec, is_glob, tool_glob};
use crate::diag::{Diagnostic, Reporter, Severity};
use crate::load::Loaded;
use crate::locate::{self, YNode};

pub(crate) fn lints(r: &Reporter<'_>, loaded: &Loaded) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let tree = locate::parse(r.text).ok().flatten();
    let rule_node = |name: &str| -> Option<&YNode> {
        tree.as_ref()?
            .get("rules")?
            .items()
            .iter()
            .find(|n| n.get("name").and_then(YNode::as_str) == Some(name))
    };
    let rules = &loaded.rules;

    // Rules shadowed by an earlier unconditional rule covering their tools.
    for (j, later) in rules.iter().enumerate() {
        let shadow = rules.iter().take(j).find(|earlier| {
            if !matches!(earlier.condition, CondSpec::Always) {
                return false;
            }
            if earlier.tools.is_empty() {
                return true;
            }
            if later.tools.is_empty() {
                return false;
            }
            later.tools.iter().all(|p| {
                earlier.tools.iter().any(|q| {
                    q == p || (!is_glob(p) && is_glob(q) && tool_glob(q).is_ok_and(|g| g.compile_matcher().is_match(p)))
                })
            })
        });
        if let Some(earlier) = shadow {
            let span = rule_node(&later.name).and_then(|n| n.get("name")).map(YNode::span);
            out.push(r.make(
                Severity::Warning,
                format!(
                    "rule `{}` can never match: rule `{}` before it matches every call to its tools unconditionally",
                    later.name, earlier.name
                ),
                span,
                None,
                Some(&later.name),
                Some(format!("move `{}` above `{}`, or give `{}` a condition", later.name, earlier.name, earlier.name)),
            ));
        }
    }

    // Globs matching no tool named anywhere in the policy (rules or tests).
    let mut named: Vec<String> = rules.iter().flat_map(|r| r.tools.iter()).filter(|t| !is_glob(t)).cloned().collect();
    named.extend(loaded.tests.iter().filter_map(|t| t.call.get("tool_name")?.as_str().map(str::to_owned)));
    for rule in rules {
        for (i, pattern) in rule.tools.iter().enumerate() {
            if !is_glob(pattern) {
                continue;
            }
            let Ok(glob) = tool_glob(pattern) else { continue };
            let m = glob.compile_matcher();
            if named.iter().any(|n| m.is_match(n)) {
                continue;
            }
            let span = rule_node(&rule.name).and_then(|n| n.get("tools")).map(|t| t.items().get(i).map_or_else(|| t.span(), YNode::span));
            out.push(r.make(
                Severity::Warning,
                format!("tool pattern `{pattern}` matches no tool named in this policy"),
                span,
                None,
                Some(&rule.name),
                Some("check the pattern for typos, or add a test calling a tool it should match".into()),
            ));
        }
    }
    out
}
