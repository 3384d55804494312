//! The loader: `policies.yml` text to validated rule specs, collecting
//! every error of the file with its line, column, rule and a caret.

use std::collections::HashMap;

use serde::Deserialize;
use std::ops::Range;
use std::sync::Arc;

use crate::compile::{CondSpec, RuleSpec, is_glob, tool_glob};
use crate::diag::{Reporter, Severity};
use crate::facade::Action;
use crate::legacy;
use crate::locate::{self, YNode};
use crate::model::{ConditionText, FastRule, FileModel, LegacyRuleModel, RuleModel, TestModel, scalar_text};
use crate::policy::{PolicyTest, RuleInfo};
use crate::template::{Template, unescape_static};

/// The reason used when no rule matched and the default applies (the
/// original tame server's text).
pub(crate) const NO_MATCH_REASON: &str = "No matching policy rule found";

/// Everything read from a file, before compilation.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub version: Option<String>,
    pub description: Option<String>,
    pub default: Action,
    pub legacy: bool,
    pub rules: Vec<RuleSpec>,
    pub infos: Vec<RuleInfo>,
    pub tests: Vec<PolicyTest>,
    /// Byte span of each rule's mapping (for diagnostics after loading).
    pub rule_spans: Vec<Option<Range<usize>>>,
    /// The located YAML tree (for diagnostics after loading).
    pub tree: Option<YNode>,
    pub warnings: Vec<crate::diag::Diagnostic>,
    /// Payload safety sections, compiled by `crate::safety::load`.
    pub safety: crate::safety::Sections,
    /// `lists:` as one map of name to value (`lists.NAME`).
    pub lists: Option<tame_lang::Value>,
}

/// Reads `lists:`: a mapping of names (identifiers) to lists or maps.
fn read_lists(r: &mut Reporter<'_>, tree: &YNode, lists: Option<&serde_yaml::Value>) -> Option<tame_lang::Value> {
    let lists = lists?;
    let node = tree.get("lists");
    let span = node.map(YNode::span);
    let Some(map) = lists.as_mapping() else {
        if !lists.is_null() {
            r.error(
                "`lists` must be a mapping of names to lists or maps".into(),
                span,
                None,
                Some("e.g. `lists: {trusted_domains: [example.com, example.org]}`".into()),
            );
        }
        return None;
    };
    let mut out = tame_lang::ValueMap::default();
    for (k, v) in map {
        let name = k.as_str().unwrap_or_default();
        let entry_span = node.and_then(|n| n.entry(name)).map(|(k, _)| k.span()).or(span.clone());
        let ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            r.error(
                format!(
                    "list name `{}` is not a name conditions can use",
                    serde_yaml::to_string(k).unwrap_or_default().trim()
                ),
                entry_span,
                None,
                Some("use letters, digits and `_`, starting with a letter, e.g. `trusted_domains`".into()),
            );
            continue;
        }
        if !(v.is_sequence() || v.is_mapping()) {
            r.error(
                format!("list `{name}` must be a list or a map"),
                entry_span,
                None,
                Some(format!("e.g. `{name}: [a, b]`")),
            );
            continue;
        }
        match serde_json::to_value(v) {
            Ok(json) => {
                out.insert(tame_lang::Key::from(name), crate::request::json_to_value(&json));
            }
            Err(e) => r.error(format!("list `{name}`: {e}"), entry_span, None, None),
        }
    }
    Some(tame_lang::Value::Map(std::sync::Arc::new(out)))
}

pub(crate) fn parse_action(s: &str) -> Option<Action> {
    match s {
        "allow" => Some(Action::Allow),
        "deny" => Some(Action::Deny),
        "approve" => Some(Action::Approve),
        _ => None,
    }
}

const ACTION_HELP: &str = "expected one of `allow`, `deny`, `approve`";

/// Reads and validates a policy file. Condition syntax and checking happen
/// here too, through `check`; compilation is the caller's.
pub(crate) fn load(
    r: &mut Reporter<'_>,
    source: &str,
    check: &dyn Fn(&tame_lang::Expr) -> Result<(), Vec<tame_lang::CheckError>>,
) -> Option<Loaded> {
    let tree = match locate::parse(source) {
        Ok(t) => t,
        Err((message, at)) => {
            r.error(format!("invalid YAML: {message}"), Some(at..at), None, None);
            return None;
        }
    };
    if source.trim().is_empty() || tree.is_none() {
        r.error(
            "policy file is empty".into(),
            None,
            None,
            Some("a policy needs at least `rules:`".into()),
        );
        return None;
    }
    // Typed rules straight from the text when the whole file reads that
    // way; otherwise through `Value`s, which find and report every error.
    let fast = serde_yaml::from_str::<FileModel<FastRule>>(source)
        .ok()
        .map(|f| f.map_rules(|r| RuleSrc::Typed(r.into())));
    let parsed = match fast {
        Some(f) => Ok(f),
        None => serde_yaml::from_str::<FileModel>(source).map(|f| f.map_rules(RuleSrc::Value)),
    };
    let file = match parsed {
        Ok(f) => f,
        Err(e) => {
            let span = e.location().map(|l| {
                let at = offset_of(source, l.line(), l.column());
                at..at
            });
            // Point at the offending key for unknown top-level keys.
            let span = backticked(&e.to_string())
                .and_then(|k| tree.as_ref().and_then(|t| t.entry(&k)).map(|(k, _)| k.span()))
                .or(span);
            r.error(clean_serde_message(&e.to_string()), span, None, None);
            return None;
        }
    };
    let tree = tree?;
    let default = match file.default.as_deref() {
        None => Action::Deny,
        Some(d) => parse_action(d).unwrap_or_else(|| {
            let span = tree.get("default").map(YNode::span);
            r.error(
                format!("unknown default action `{d}`"),
                span,
                None,
                Some(ACTION_HELP.into()),
            );
            Action::Deny
        }),
    };
    let rules_node = tree.get("rules");
    let rule_values = file.rules.unwrap_or_default();
    let has_key = |v: &RuleSrc, k: &str| match v {
        RuleSrc::Value(v) => v.as_mapping().is_some_and(|m| m.contains_key(k)),
        // Typed rules only come from files without legacy rules, where
        // these counts decide nothing.
        RuleSrc::Typed(_) => false,
    };
    let legacy_count = rule_values.iter().filter(|v| has_key(v, "conditions")).count();
    let new_count = rule_values
        .iter()
        .filter(|v| has_key(v, "condition") || has_key(v, "reason"))
        .count();
    let legacy = legacy_count > 0 && new_count == 0 && file.default.is_none();
    if legacy_count > 0 && !legacy {
        // Mixed: report the legacy rules.
        for (i, v) in rule_values.iter().enumerate() {
            if has_key(v, "conditions") {
                let node = rules_node.and_then(|n| n.items().get(i));
                let span = node.and_then(|n| n.entry("conditions")).map(|(k, _)| k.span());
                r.error(
                    "legacy `conditions` in a policy that uses the current format".into(),
                    span,
                    rule_name(v).as_deref(),
                    Some("write a `condition` expression, e.g. `condition: 'args.path.contains(\"/etc\")'`".into()),
                );
            }
        }
    }

    // Identical condition texts are parsed and checked once.
    let mut parsed_conditions: HashMap<String, tame_lang::Expr> = HashMap::new();
    let mut rules = Vec::new();
    let mut infos = Vec::new();
    let mut rule_spans = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    // Duplicates are found on the raw names, so a broken first rule still
    // makes a second one with its name an error.
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut duplicate = vec![false; rule_values.len()];
    for (i, v) in rule_values.iter().enumerate() {
        let Some(name) = rule_name(v) else { continue };
        match first_line.get(&name) {
            Some(&first) => {
                if let Some(d) = duplicate.get_mut(i) {
                    *d = true;
                }
                let node = rules_node.and_then(|n| n.items().get(i));
                let span = node.and_then(|n| n.get("name")).map(YNode::span);
                r.error(
                    format!("duplicate rule name `{name}`"),
                    span,
                    Some(&name),
                    Some(format!(
                        "the first rule with this name is at line {}; rule names must be unique",
                        rules_node
                            .and_then(|n| n.items().get(first))
                            .map_or(0, |n| r.line_col(n.span().start).0)
                    )),
                );
            }
            None => {
                first_line.insert(name, i);
            }
        }
    }
    let mut warnings = Vec::new();
    let mut keep = |i: usize, spec: RuleSpec, info: RuleInfo, rule_span: Option<Range<usize>>| {
        if duplicate.get(i).copied().unwrap_or(false) || names.contains_key(&*spec.name) {
            return;
        }
        names.insert(spec.name.to_string(), rule_spans.len());
        rules.push(spec);
        infos.push(info);
        rule_spans.push(rule_span);
    };
    for (i, value) in rule_values.into_iter().enumerate() {
        let node = rules_node.and_then(|n| n.items().get(i));
        let name_hint = rule_name(&value);
        let rule_span = node.map(YNode::span);
        let fallback_span = || rule_span.clone().map(|s| s.start..s.start);
        let value = match value {
            RuleSrc::Typed(m) => {
                if let Some((spec, info)) = current_rule(r, source, m, node, check, &mut parsed_conditions) {
                    keep(i, spec, info, rule_span);
                }
                continue;
            }
            RuleSrc::Value(v) => v,
        };
        let spec = if legacy {
            match LegacyRuleModel::deserialize(&value) {
                Ok(m) => legacy_rule(r, m, node, &mut warnings),
                Err(e) => {
                    report_serde(r, &e, node, name_hint.as_deref(), fallback_span());
                    None
                }
            }
        } else {
            match RuleModel::deserialize(&value) {
                Ok(m) => current_rule(r, source, m, node, check, &mut parsed_conditions),
                Err(e) => {
                    if !(legacy_count > 0 && value.get("conditions").is_some()) {
                        report_serde(r, &e, node, name_hint.as_deref(), fallback_span());
                    }
                    None
                }
            }
        };
        if let Some((spec, info)) = spec {
            keep(i, spec, info, rule_span);
        }
    }

    let tests_node = tree.get("tests");
    let mut tests = Vec::new();
    for (i, value) in file.tests.unwrap_or_default().into_iter().enumerate() {
        let node = tests_node.and_then(|n| n.items().get(i));
        let span = node.map(|n| n.span().start..n.span().start);
        let line = span.as_ref().map_or(0, |s| r.line_col(s.start).0);
        match serde_yaml::from_value::<TestModel>(value) {
            Ok(t) => {
                let at = |key: &str| node.and_then(|n| n.get(key)).map(YNode::span).or(span.clone());
                let unknown_rule = |rule: &str, s: Option<std::ops::Range<usize>>, r: &mut Reporter<'_>| {
                    if !names.contains_key(rule) && !crate::safety::is_builtin_rule(rule) {
                        r.error(format!("test {} expects unknown rule `{rule}`", i + 1), s, None, None);
                    }
                };
                if let Some(steps) = t.steps {
                    // A session test: `tame test` reads its steps (and names
                    // a bad one); here only what needs the policy.
                    if t.call.is_some() || t.expect.is_some() || t.rule.is_some() {
                        r.error(
                            format!("test {}: `steps` replaces `call`, `expect` and `rule`", i + 1),
                            at("steps"),
                            None,
                            Some("put each call's `expect` and `rule` in its step".into()),
                        );
                        continue;
                    }
                    for (j, step) in steps.iter().enumerate() {
                        let s = node
                            .and_then(|n| n.get("steps"))
                            .and_then(|n| n.items().get(j))
                            .map(YNode::span)
                            .or(span.clone());
                        if !step.is_object() {
                            r.error(
                                format!(
                                    "test {} step {}: a step is a mapping (`call`, `input` or `result`)",
                                    i + 1,
                                    j + 1
                                ),
                                s,
                                None,
                                None,
                            );
                        } else if let Some(rule) = step.get("rule").and_then(serde_json::Value::as_str) {
                            unknown_rule(rule, s, r);
                        }
                    }
                    tests.push(PolicyTest {
                        name: t.name.unwrap_or_else(|| format!("test {}", i + 1)),
                        call: serde_json::Value::Null,
                        session: None,
                        expect: None,
                        rule: None,
                        line,
                        steps: Some(steps),
                    });
                    continue;
                }
                let expect_text = t.expect.unwrap_or_default();
                let Some(expect) = parse_action(&expect_text) else {
                    let message = if expect_text.is_empty() {
                        format!("test {}: `expect` is missing (allow, deny or approve)", i + 1)
                    } else {
                        format!("unknown expected decision `{expect_text}` in test {}", i + 1)
                    };
                    r.error(message, at("expect"), None, Some(ACTION_HELP.into()));
                    continue;
                };
                let Some(serde_json::Value::Object(mut call)) = t.call else {
                    r.error(
                        format!(
                            "test {}: `call` must be a mapping with `tool_name` and `tool_args` (or the test a session: `steps`)",
                            i + 1
                        ),
                        at("call"),
                        None,
                        None,
                    );
                    continue;
                };
                let session = call.remove("session");
                if let Some(rule) = &t.rule {
                    unknown_rule(rule, at("rule"), r);
                }
                tests.push(PolicyTest {
                    name: t.name.unwrap_or_else(|| format!("test {}", i + 1)),
                    call: serde_json::Value::Object(call),
                    session,
                    expect: Some(expect),
                    rule: t.rule,
                    line,
                    steps: None,
                });
            }
            Err(e) => report_serde(r, &e, node, None, span),
        }
    }

    let version = file.version.as_ref().and_then(scalar_text);
    let lists = read_lists(r, &tree, file.lists.as_ref());
    Some(Loaded {
        version,
        description: file.description,
        default,
        legacy,
        rules,
        infos,
        tests,
        rule_spans,
        tree: Some(tree),
        warnings,
        lists,
        safety: crate::safety::Sections {
            tools: file.tools,
            tools_file: file.tools_file,
            tool_contracts: file.tool_contracts,
            agents: file.agents,
            payload: file.payload,
        },
    })
}

/// A rule as read by serde: typed already, or a value to read.
enum RuleSrc {
    Typed(RuleModel),
    Value(serde_yaml::Value),
}

fn rule_name(v: &RuleSrc) -> Option<String> {
    match v {
        RuleSrc::Typed(m) => Some(m.name.clone()),
        RuleSrc::Value(v) => v.get("name").and_then(serde_yaml::Value::as_str).map(str::to_owned),
    }
}

/// The first backticked word of a serde message (`unknown field `x``).
fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg.get(start..)?.find('`')?;
    msg.get(start..start + len).map(str::to_owned)
}

/// serde_yaml appends " at line L column C"; our rendering shows that.
fn clean_serde_message(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg),
        None => msg,
    };
    msg.trim_end_matches('.').to_owned()
}

fn report_serde(
    r: &mut Reporter<'_>,
    e: &serde_yaml::Error,
    node: Option<&YNode>,
    rule: Option<&str>,
    fallback: Option<Range<usize>>,
) {
    let msg = clean_serde_message(&e.to_string());
    let span = if msg.starts_with("unknown field") {
        backticked(&msg).and_then(|k| node.and_then(|n| n.entry(&k)).map(|(k, _)| k.span()))
    } else {
        // "invalid type ... for key `tools`"-style messages rarely name the
        // key; try each key mentioned anyway.
        backticked(&msg).and_then(|k| node.and_then(|n| n.get(&k)).map(YNode::span))
    };
    r.error(msg, span.or(fallback), rule, None);
}

/// Byte offset of a 1-based line and column (characters).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut off = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return off
                + l.char_indices()
                    .nth(column.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
        }
        off += l.len();
    }
    text.len()
}

fn tools_of(
    r: &mut Reporter<'_>,
    tools: Option<crate::model::Tools>,
    node: Option<&YNode>,
    rule: &str,
) -> Option<Vec<String>> {
    let tools = tools.map(crate::model::Tools::into_vec).unwrap_or_default();
    let tools_node = node.and_then(|n| n.get("tools"));
    let mut ok = true;
    for (i, t) in tools.iter().enumerate() {
        let span = tools_node.map(|n| n.items().get(i).map_or_else(|| n.span(), YNode::span));
        if t.trim().is_empty() {
            r.error("empty tool name".into(), span, Some(rule), None);
            ok = false;
        } else if is_glob(t)
            && let Err(m) = tool_glob(t)
        {
            r.error(m, span, Some(rule), None);
            ok = false;
        }
    }
    ok.then_some(tools)
}

/// The compiler's tool list: empty (every tool) when `*` is listed.
fn every_tool(tools: Option<&[String]>) -> Option<Vec<String>> {
    let tools = tools?;
    Some(if tools.iter().any(|t| t == "*" || t == "**") {
        Vec::new()
    } else {
        tools.to_vec()
    })
}

fn action_of(r: &mut Reporter<'_>, action: &str, node: Option<&YNode>, rule: &str) -> Option<Action> {
    let a = parse_action(action);
    if a.is_none() {
        let span = node.and_then(|n| n.get("action")).map(YNode::span);
        r.error(
            format!("unknown action `{action}`"),
            span,
            Some(rule),
            Some(ACTION_HELP.into()),
        );
    }
    a
}

fn name_ok(r: &mut Reporter<'_>, name: &str, node: Option<&YNode>) -> bool {
    if name.trim().is_empty() {
        let span = node.and_then(|n| n.get("name")).map(YNode::span);
        r.error("rule name is empty".into(), span, None, None);
        return false;
    }
    true
}

fn current_rule(
    r: &mut Reporter<'_>,
    source: &str,
    m: RuleModel,
    node: Option<&YNode>,
    check: &dyn Fn(&tame_lang::Expr) -> Result<(), Vec<tame_lang::CheckError>>,
    cache: &mut HashMap<String, tame_lang::Expr>,
) -> Option<(RuleSpec, RuleInfo)> {
    let name_valid = name_ok(r, &m.name, node);
    let action = action_of(r, &m.action, node, &m.name);
    let tools = tools_of(r, m.tools, node, &m.name);
    let cond_node = node.and_then(|n| n.get("condition"));
    let (condition, condition_text) = match m.condition {
        None => (Some(CondSpec::Always), None),
        Some(ConditionText::Bool(true)) => (Some(CondSpec::Always), Some("true".to_owned())),
        Some(ConditionText::Bool(false)) => (Some(CondSpec::Cel(false_expr())), Some("false".to_owned())),
        Some(ConditionText::Text(text)) => {
            let parsed = match cache.get(&text) {
                Some(expr) => Ok(expr.clone()),
                None => tame_lang::parse(&text),
            };
            let spec = match parsed {
                Ok(expr) if cache.contains_key(&text) => Some(CondSpec::Cel(expr)),
                Ok(expr) => match check(&expr) {
                    Ok(()) => {
                        cache.insert(text.clone(), expr.clone());
                        Some(CondSpec::Cel(expr))
                    }
                    Err(errors) => {
                        for e in errors {
                            lang_error(r, source, cond_node, &m.name, &e.message, e.span, e.label, e.help);
                        }
                        None
                    }
                },
                Err(e) => {
                    lang_error(r, source, cond_node, &m.name, &e.message, e.span, e.label, e.help);
                    None
                }
            };
            (spec, Some(text))
        }
    };
    let (reason, template) = match &m.reason {
        None => (
            Arc::from(
                m.description
                    .clone()
                    .unwrap_or_else(|| format!("Matched rule: {}", m.name)),
            ),
            None,
        ),
        Some(text) => match Template::parse(text) {
            Ok(None) => (Arc::from(unescape_static(text)), None),
            Ok(Some(t)) => (Arc::from(text.as_str()), Some(t)),
            Err(e) => {
                let rn = node.and_then(|n| n.get("reason"));
                let span = rn.map(|n| {
                    locate::scalar_offset(source, n, e.span.start)..locate::scalar_offset(source, n, e.span.end)
                });
                r.error(e.message, span, Some(&m.name), None);
                (Arc::from(""), None)
            }
        },
    };
    let spec = RuleSpec {
        name: Arc::from(m.name.as_str()),
        action: action?,
        tools: every_tool(tools.as_deref())?,
        condition: condition?,
        reason,
        template,
    };
    if !name_valid {
        return None;
    }
    let info = RuleInfo {
        name: m.name,
        action: spec.action,
        tools: tools.unwrap_or_default(),
        description: m.description,
        condition: condition_text,
        reason: m.reason,
    };
    Some((spec, info))
}

fn false_expr() -> tame_lang::Expr {
    tame_lang::Expr::new(
        tame_lang::ExprKind::Literal(tame_lang::Literal::Bool(false)),
        tame_lang::Span::default(),
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lang_error(
    r: &mut Reporter<'_>,
    source: &str,
    cond_node: Option<&YNode>,
    rule: &str,
    message: &str,
    span: tame_lang::Span,
    label: Option<String>,
    help: Option<String>,
) {
    let file_span = cond_node.map(|n| {
        let s = locate::scalar_offset(source, n, span.start as usize);
        let e = locate::scalar_offset(source, n, span.end as usize).max(s);
        s..e
    });
    let d = r.make(Severity::Error, message.to_owned(), file_span, label, Some(rule), help);
    r.diagnostics.push(d);
}

fn legacy_rule(
    r: &mut Reporter<'_>,
    m: LegacyRuleModel,
    node: Option<&YNode>,
    warnings: &mut Vec<crate::diag::Diagnostic>,
) -> Option<(RuleSpec, RuleInfo)> {
    let name_valid = name_ok(r, &m.name, node);
    let action = action_of(r, &m.action, node, &m.name);
    // The original read tool patterns as regexes: where that differs from
    // the tool switch, a check decides and the rule is for every tool.
    let tools_read = legacy::read_tools(node.and_then(|n| n.get("tools")));
    let tools_checked = !matches!(tools_read, legacy::ToolsRead::Switch);
    let (tools, switch) = match tools_read {
        legacy::ToolsRead::Switch => (tools_of(r, m.tools, node, &m.name), None),
        legacy::ToolsRead::Check(check) => (m.tools.map(crate::model::Tools::into_vec), Some(Ok(check))),
        legacy::ToolsRead::Error(e) => (None, Some(Err(e))),
    };
    let mut conds = legacy::read_conditions(node.and_then(|n| n.get("conditions")), m.conditions.as_ref());
    match switch {
        Some(Ok(check)) => conds.checks.insert(0, check),
        Some(Err(e)) => conds.errors.push(e),
        None => {}
    }
    let ok = conds.errors.is_empty();
    for e in conds.errors {
        r.error(e.message, e.span, Some(&m.name), e.help);
    }
    for lint in conds.lints {
        let d = r.make(
            Severity::Warning,
            lint.message,
            lint.span,
            None,
            Some(&m.name),
            lint.help,
        );
        warnings.push(d);
    }
    let checks = conds.checks;
    let spec = RuleSpec {
        name: Arc::from(m.name.as_str()),
        action: action?,
        tools: if tools_checked {
            Vec::new()
        } else {
            every_tool(tools.as_deref())?
        },
        condition: CondSpec::Legacy(checks),
        reason: Arc::from(format!("Matched rule: {}", m.name)),
        template: None,
    };
    if !ok || !name_valid {
        return None;
    }
    let info = RuleInfo {
        name: m.name,
        action: spec.action,
        tools: tools.unwrap_or_default(),
        description: m.description,
        condition: None,
        reason: None,
    };
    Some((spec, info))
}
