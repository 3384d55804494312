//! Lints: warnings about policies that load but probably do not say what
//! their author meant.

use globset::{GlobSet, GlobSetBuilder};
use rustc_hash::FxHashMap;
use tame_lang::{Expr, ExprKind, Literal};

use crate::compile::{CondSpec, is_glob, tool_glob};
use crate::diag::{Diagnostic, Reporter, Severity};
use crate::load::Loaded;
use crate::locate::{self, YNode};

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
        .chain(loaded.tests.iter().flat_map(crate::policy::PolicyTest::tools))
        .chain(declared_tools(loaded));
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

    // Session facts about tools no rule, test or `tools:` entry names
    // (`session.called("get_*")` for a policy whose tools are `fetch_*`
    // is silently never true).
    let mentioned: Vec<&str> = rules
        .iter()
        .flat_map(|r| r.tools.iter().map(String::as_str))
        .chain(loaded.tests.iter().flat_map(crate::policy::PolicyTest::tools))
        .chain(declared_tools(loaded))
        .collect();
    let mentioned_globs: Vec<globset::GlobMatcher> = mentioned
        .iter()
        .filter(|t| is_glob(t))
        .filter_map(|t| tool_glob(t).ok().map(|g| g.compile_matcher()))
        .collect();
    // A rule for every tool mentions every tool; a `tools_file:` names
    // tools this file does not show.
    let every_tool = rules.iter().any(|r| r.tools.is_empty()) || tree.is_some_and(|t| t.get("tools_file").is_some());
    if !every_tool && !mentioned.is_empty() {
        for rule in rules {
            let CondSpec::Cel(expr) = &rule.condition else { continue };
            let cond_node = nodes.get(&*rule.name).and_then(|n| n.get("condition"));
            for (function, pattern, span) in session_tool_patterns(expr) {
                let known = if is_glob(&pattern) {
                    let Ok(g) = tool_glob(&pattern) else { continue };
                    let g = g.compile_matcher();
                    mentioned
                        .iter()
                        .any(|m| *m == pattern || (!is_glob(m) && g.is_match(m)))
                } else {
                    mentioned.iter().any(|m| *m == pattern) || mentioned_globs.iter().any(|g| g.is_match(&pattern))
                };
                if known {
                    continue;
                }
                let span = cond_node.map(|n| in_condition(r, n, span));
                out.push(r.make(
                    Severity::Warning,
                    format!("`{function}` names tool `{pattern}`, which no rule, test or `tools:` entry of this policy names"),
                    span,
                    Some("never matches a call of this policy's tools".into()),
                    Some(&rule.name),
                    Some("check the name for typos, or name the tool in a rule's `tools:`".into()),
                ));
            }
        }
    }

    // Paths compared by prefix or glob before `..` is resolved.
    for rule in rules {
        let CondSpec::Cel(expr) = &rule.condition else { continue };
        let cond_node = nodes.get(&*rule.name).and_then(|n| n.get("condition"));
        for found in unclean_path_tests(expr) {
            let span = cond_node.map(|n| in_condition(r, n, found.span));
            out.push(r.make(
                Severity::Warning,
                format!(
                    "path `{}` is compared with `{}` before `..` is resolved: `/tmp/../etc/shadow` starts with `/tmp/`",
                    found.subject, found.function
                ),
                span,
                Some("compares the raw path".into()),
                Some(&rule.name),
                Some(found.help),
            ));
        }
    }
    out
}

/// Every call in `expr`: the call, its target, function and arguments.
fn calls(expr: &Expr) -> Vec<(&Expr, Option<&Expr>, &str, &[Expr])> {
    let mut found = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        e.for_each_child(|c| stack.push(c));
        if let ExprKind::Call { target, function, args } = &e.kind {
            found.push((e, target.as_deref(), function.as_str(), args.as_slice()));
        }
    }
    found
}

/// The byte range in the policy text of `span`, a span of the condition
/// held by the YAML scalar `node`.
fn in_condition(r: &Reporter<'_>, node: &YNode, span: tame_lang::Span) -> std::ops::Range<usize> {
    let at = |o: u32| locate::scalar_offset(r.text(), node, o as usize);
    at(span.start)..at(span.end).max(at(span.start))
}

/// Tool names of the policy's `tools:` section.
fn declared_tools(loaded: &Loaded) -> impl Iterator<Item = &str> {
    loaded
        .tree
        .as_ref()
        .and_then(|t| t.get("tools"))
        .map(|t| t.items())
        .unwrap_or_default()
        .iter()
        .filter_map(|item| item.get("name").and_then(YNode::as_str))
}

/// The constant tool patterns of session facts in `expr`:
/// `session.count/called/denied/results("p"...)` and the glob of
/// `from_results(x, "p")` / `carries_from_results(x, "p")`, with the
/// function's name and the pattern's span.
fn session_tool_patterns(expr: &Expr) -> Vec<(String, String, tame_lang::Span)> {
    let mut found = Vec::new();
    for (_, target, function, args) in calls(expr) {
        let on_session = matches!(target.map(|t| &t.kind), Some(ExprKind::Ident(n)) if n == "session");
        let pattern = match (on_session, function, target.is_none(), args) {
            (true, "count" | "called" | "denied" | "results", _, [p, ..]) => p,
            (false, "from_results" | "carries_from_results", true, [_, p]) => p,
            _ => continue,
        };
        if let ExprKind::Literal(Literal::String(p)) = &pattern.kind {
            let name = if on_session {
                format!("session.{function}")
            } else {
                function.to_owned()
            };
            found.push((name, p.clone(), pattern.span));
        }
    }
    found
}

/// Words of an argument name that say it holds a path.
const PATH_WORDS: &[&str] = &[
    "path",
    "paths",
    "file",
    "files",
    "filename",
    "filepath",
    "dir",
    "dirs",
    "directory",
    "folder",
    "dest",
    "destination",
    "src",
    "source",
    "target",
    "cwd",
    "workdir",
];

/// A `startsWith` or `glob` test of a path that is not `clean_path(...)`.
#[derive(Debug)]
struct UncleanPath {
    /// The tested expression, as source.
    subject: String,
    function: &'static str,
    span: tame_lang::Span,
    help: String,
}

/// Every `x.startsWith(lit)`, `glob(x, lit)` and `x.glob(lit)` in `expr`
/// whose `x` is an argument named like a path (`args.path`,
/// `args["dest_dir"]`) or whose literal starts with `/` or `~`, unless `x`
/// is `clean_path(...)`.
fn unclean_path_tests(expr: &Expr) -> Vec<UncleanPath> {
    let mut found = Vec::new();
    for (e, target, function, args) in calls(expr) {
        let (function, subject, pattern): (&'static str, &Expr, &Expr) = match (function, target, args) {
            ("startsWith", Some(t), [p]) => ("startsWith", t, p),
            ("glob", Some(t), [p]) | ("glob", None, [t, p]) => ("glob", t, p),
            _ => continue,
        };
        let literal = match &pattern.kind {
            ExprKind::Literal(Literal::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let looks_like_path = is_path_argument(subject) || literal.is_some_and(|l| l.starts_with(['/', '~']));
        if !looks_like_path || is_clean_path_call(subject) {
            continue;
        }
        let cleaned = format!("clean_path({subject})");
        let mut help = match function {
            "glob" => format!("compare the cleaned path: `glob({cleaned}, {pattern})`"),
            _ => format!("compare the cleaned path: `{cleaned}.startsWith({pattern})`"),
        };
        // A plain directory prefix reads best as `within`.
        let dir = literal.and_then(|l| match function {
            "glob" => l.strip_suffix("/**"),
            _ => l.strip_suffix('/'),
        });
        if let Some(dir) = dir.filter(|d| !d.is_empty() && !d.contains(['*', '?', '[', '{', '\\'])) {
            let dir = Expr::new(ExprKind::Literal(Literal::String(dir.to_owned())), pattern.span);
            help.push_str(&format!(", or `within({subject}, {dir})`"));
        }
        found.push(UncleanPath {
            subject: subject.to_string(),
            function,
            span: e.span,
            help,
        });
    }
    found.sort_by_key(|f| f.span.start);
    found
}

fn is_clean_path_call(e: &Expr) -> bool {
    matches!(&e.kind, ExprKind::Call { target: None, function, args } if function == "clean_path" && args.len() == 1)
}

/// `args.<key>`, `tool_args.<key>`, `args["<key>"]` (or deeper, the last
/// key deciding) with a key named like a path.
fn is_path_argument(e: &Expr) -> bool {
    let (operand, key) = match &e.kind {
        ExprKind::Select {
            operand,
            field,
            test: false,
        } => (operand, field.as_str()),
        ExprKind::Index { operand, index } => match &index.kind {
            ExprKind::Literal(Literal::String(k)) => (operand, k.as_str()),
            _ => return false,
        },
        _ => return false,
    };
    path_named(key) && rooted_at_args(operand)
}

fn rooted_at_args(mut e: &Expr) -> bool {
    loop {
        match &e.kind {
            ExprKind::Ident(root) => return root == "args" || root == "tool_args",
            ExprKind::Select { operand, .. } | ExprKind::Index { operand, .. } => e = operand,
            _ => return false,
        }
    }
}

/// Whether a key's words (split at `_`, `-`, `.`, spaces and lower-to-upper
/// case changes) include a [`PATH_WORDS`] word: `path`, `dest_dir`,
/// `targetFile`, but not `pathos` or `compass`.
fn path_named(key: &str) -> bool {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if matches!(c, '_' | '-' | '.' | ' ') || (c.is_uppercase() && prev_lower) {
            words.push(std::mem::take(&mut word));
        }
        if !matches!(c, '_' | '-' | '.' | ' ') {
            word.extend(c.to_lowercase());
        }
        prev_lower = c.is_lowercase();
    }
    words.push(word);
    words.iter().any(|w| PATH_WORDS.contains(&w.as_str()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

    use crate::{Diagnostic, Policy};

    fn lints(condition: &str) -> Vec<Diagnostic> {
        let src = format!(
            "version: \"1\"\nrules:\n  - name: r\n    action: deny\n    tools: [read_file]\n    condition: '{condition}'\ntests:\n  - call: {{tool_name: read_file}}\n    expect: allow\n"
        );
        match Policy::from_yaml(&src, "p.yml") {
            Ok(p) => p.lints().to_vec(),
            Err(e) => panic!("{e}"),
        }
    }

    fn path_lints(condition: &str) -> Vec<Diagnostic> {
        lints(condition)
            .into_iter()
            .filter(|d| d.message.contains("before `..` is resolved"))
            .collect()
    }

    #[test]
    fn raw_path_prefixes_and_globs_are_flagged_with_the_fix() {
        let found = path_lints(r#"args.path.startsWith("/etc/") or glob(args.path, "/root/**")"#);
        assert_eq!(found.len(), 2, "{found:?}");
        let (a, b) = (&found[0], &found[1]);
        assert!(
            a.message.contains("path `args.path` is compared with `startsWith`"),
            "{}",
            a.message
        );
        assert_eq!(a.rule.as_deref(), Some("r"));
        assert_eq!((a.line, a.column), (6, 17), "{}", a.rendered);
        let help = a.help.as_deref().unwrap();
        assert!(
            help.contains(r#"`clean_path(args.path).startsWith("/etc/")`"#),
            "{help}"
        );
        assert!(help.contains(r#"`within(args.path, "/etc")`"#), "{help}");
        assert!(a.rendered.contains("help:"), "{}", a.rendered);
        let help = b.help.as_deref().unwrap();
        assert!(b.message.contains("with `glob`"), "{}", b.message);
        assert!(help.contains(r#"`glob(clean_path(args.path), "/root/**")`"#), "{help}");
        assert!(help.contains(r#"`within(args.path, "/root")`"#), "{help}");
    }

    #[test]
    fn path_like_names_and_literals_are_recognised() {
        for cond in [
            r#"args.dest_dir.startsWith("x/")"#,
            r#"args["targetFile"].startsWith("x")"#,
            r#"tool_args.src.glob("*.rs")"#,
            r#"args.options.filename.startsWith("a")"#,
            r#"args.anything.startsWith("/home/")"#,
            r#"args.anything.startsWith("~/.ssh")"#,
            r#"args.paths.all(p, glob(p, "/tmp/**"))"#,
            r#"lower(args.path).startsWith("/etc")"#,
        ] {
            assert_eq!(path_lints(cond).len(), 1, "{cond}");
        }
    }

    #[test]
    fn cleaned_or_unrelated_comparisons_are_not_flagged() {
        for cond in [
            r#"clean_path(args.path).startsWith("/etc/")"#,
            r#"glob(clean_path(args.path), "/root/**")"#,
            r#"within(args.path, "/etc")"#,
            r#"args.path.endsWith(".pem")"#,
            r#"args.command.startsWith("sudo ")"#,
            r#"args.pathos.startsWith("x")"#,
            r#"args.url.startsWith("https://")"#,
        ] {
            assert!(path_lints(cond).is_empty(), "{cond}: {:?}", path_lints(cond));
        }
    }
}
