//! Lints: warnings about policies that load but probably do not say what
//! their author meant.

use globset::{GlobSet, GlobSetBuilder};
use rustc_hash::FxHashMap;

use crate::compile::{CondSpec, is_glob, tool_glob};
use crate::diag::{Diagnostic, Reporter, Severity};
use crate::load::Loaded;
use crate::locate::YNode;

pub(crate) fn lints(r: &Reporter<'_>, loaded: &Loaded) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let tree = loaded.tree.as_ref();
    let mut nodes: FxHashMap<&str, &YNode> = FxHashMap::default();
    if let Some(rules) = tree.and_then(|t| t.get("rules")) {
        for n in rules.items() {
            if let Some(name) = n.get("name").and_then(YNode::as_str) {
                nodes.entry(name).or_insert(n);
            }
        }
    }
    let rules = &loaded.rules;

    // Rules shadowed by an earlier unconditional rule covering their tools.
    // First unconditional rule per glob pattern, exact name, and for all tools.
    let mut first_all: Option<usize> = None;
    let mut first_exact: FxHashMap<&str, usize> = FxHashMap::default();
    let mut first_glob: FxHashMap<&str, usize> = FxHashMap::default();
    for (i, rule) in rules.iter().enumerate() {
        if !matches!(rule.condition, CondSpec::Always) {
            continue;
        }
        if rule.tools.is_empty() {
            first_all.get_or_insert(i);
        }
        for t in &rule.tools {
            let map = if is_glob(t) { &mut first_glob } else { &mut first_exact };
            map.entry(t.as_str()).or_insert(i);
        }
    }
    let glob_patterns: Vec<(&str, usize)> = first_glob.iter().map(|(p, i)| (*p, *i)).collect();
    let mut builder = GlobSetBuilder::new();
    for (p, _) in &glob_patterns {
        if let Ok(g) = tool_glob(p) {
            builder.add(g);
        }
    }
    let set = builder.build().unwrap_or_else(|_| GlobSet::empty());
    let mut hits = Vec::new();
    // The earliest unconditional rule covering tool pattern `p`.
    let mut cover = |p: &str| -> Option<usize> {
        let mut best = first_all;
        let mut consider = |i: usize| best = Some(best.map_or(i, |b| b.min(i)));
        if is_glob(p) {
            if let Some(&i) = first_glob.get(p) {
                consider(i);
            }
        } else {
            if let Some(&i) = first_exact.get(p) {
                consider(i);
            }
            hits.clear();
            set.matches_into(p, &mut hits);
            for h in &hits {
                if let Some((_, i)) = glob_patterns.get(*h) {
                    consider(*i);
                }
            }
        }
        best
    };
    for (j, later) in rules.iter().enumerate() {
        let shadow = if later.tools.is_empty() {
            first_all
        } else {
            later
                .tools
                .iter()
                .map(|p| cover(p))
                .try_fold(0usize, |acc, c| c.map(|c| acc.max(c)))
        };
        let Some(shadow) = shadow.filter(|&i| i < j) else {
            continue;
        };
        let Some(earlier) = rules.get(shadow) else { continue };
        let span = nodes.get(&*later.name).and_then(|n| n.get("name")).map(YNode::span);
        out.push(r.make(
            Severity::Warning,
            format!(
                "rule `{}` can never match: rule `{}` before it matches every call to its tools unconditionally",
                later.name, earlier.name
            ),
            span,
            None,
            Some(&later.name),
            Some(format!(
                "move `{}` above `{}`, or give `{}` a condition",
                later.name, earlier.name, earlier.name
            )),
        ));
    }

    // Globs matching no tool named anywhere in the policy (rules or tests).
    let mut all_globs: Vec<&str> = Vec::new();
    let mut seen: FxHashMap<&str, usize> = FxHashMap::default();
    let mut builder = GlobSetBuilder::new();
    for rule in rules {
        for t in rule.tools.iter().filter(|t| is_glob(t)) {
            if !seen.contains_key(t.as_str())
                && let Ok(g) = tool_glob(t)
            {
                seen.insert(t.as_str(), all_globs.len());
                all_globs.push(t.as_str());
                builder.add(g);
            }
        }
    }
    let set = builder.build().unwrap_or_else(|_| GlobSet::empty());
    let mut used = vec![false; all_globs.len()];
    let named = rules
        .iter()
        .flat_map(|r| r.tools.iter().map(String::as_str))
        .filter(|t| !is_glob(t))
        .chain(loaded.tests.iter().filter_map(|t| t.call.get("tool_name")?.as_str()));
    for name in named {
        hits.clear();
        set.matches_into(name, &mut hits);
        for h in &hits {
            if let Some(u) = used.get_mut(*h) {
                *u = true;
            }
        }
    }
    let mut reported: FxHashMap<&str, ()> = FxHashMap::default();
    for rule in rules {
        for (i, pattern) in rule.tools.iter().enumerate() {
            let Some(&gi) = seen.get(pattern.as_str()) else {
                continue;
            };
            if used.get(gi).copied().unwrap_or(true) || reported.insert(pattern.as_str(), ()).is_some() {
                continue;
            }
            let span = nodes
                .get(&*rule.name)
                .and_then(|n| n.get("tools"))
                .map(|t| t.items().get(i).map_or_else(|| t.span(), YNode::span));
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
