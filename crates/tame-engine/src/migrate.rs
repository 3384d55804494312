//! `tame migrate`: a policy of the original tame server's format rewritten
//! in the current format, each rule's legacy checks lowered to a
//! `condition` that decides every call as the legacy rule does.
//!
//! The checks are read by `crate::legacy`, exactly as the loader reads
//! them (YAML 1.1 values, tool patterns as regexes), and lowered here:
//!
//! - `arg_contains: {k: v}`: `"k" in args && <equal>`; `"*"`: `"k" in args`;
//! - `arg_not_contains: {k: v}`: `!("k" in args) || !(<equal>)`;
//! - `session_context: {k: v}`: the metadata's `k` when the call's metadata
//!   has it, else for `agent_id`, `user_id`, `session_id` the call's id;
//! - tool patterns the original read as regexes: `tool.matches(...)` with
//!   the very regex the loader compiles; `tools: []`: `false`.
//!
//! `<equal>` is Python's `==` (what the original used) in the condition
//! language, whose `==` already compares int, uint and double by value and
//! calls values of other types unequal: only booleans need more, since
//! Python has `True == 1` and `False == 0`. Values whose comparison the
//! language cannot say exactly (lists or maps holding numbers or booleans,
//! integers beyond 64 bits) are refused with the rule's name.

use std::fmt::Write as _;

use crate::legacy::{Expected, LegacyCheck, LegacyKey, PyValue, ToolsRead};
use crate::locate::YNode;
use crate::model::{FileModel, LegacyRuleModel};

/// Why a policy could not be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file does not load (its diagnostics).
    #[error("{0}")]
    Policy(#[from] crate::PolicyError),
    #[error("`{0}` is not in the original tame server's format (it has no legacy `conditions`, or has a `default`)")]
    NotLegacy(String),
    #[error("rule `{rule}`: {what}; write its condition by hand")]
    Unsupported { rule: String, what: String },
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !tame_lang::is_reserved(s)
}

/// `root.key` or `root["key"]`.
fn member(root: &str, key: &str) -> String {
    if is_ident(key) {
        format!("{root}.{key}")
    } else {
        format!("{root}[{}]", quoted(key))
    }
}

/// A number as a literal of the language.
fn int_literal(i: i128) -> Option<String> {
    if let Ok(i) = i64::try_from(i) {
        Some(i.to_string())
    } else {
        u64::try_from(i).ok().map(|u| format!("{u}u"))
    }
}

fn double_literal(bits: u64) -> String {
    let f = f64::from_bits(bits);
    if f.is_nan() {
        String::from("double(\"NaN\")")
    } else if f.is_infinite() {
        String::from(if f > 0.0 {
            "double(\"Infinity\")"
        } else {
            "double(\"-Infinity\")"
        })
    } else {
        let text = format!("{f:?}");
        if text.contains(['.', 'e', 'E']) {
            text
        } else {
            format!("{text}.0")
        }
    }
}

/// A literal for a value compared as a whole (inside a list or map): only
/// values the language's `==` compares as Python does.
fn plain_literal(v: &PyValue) -> Option<String> {
    match v {
        PyValue::None => Some("null".into()),
        PyValue::Str(s) => Some(quoted(s)),
        PyValue::List(items) => Some(format!(
            "[{}]",
            items.iter().map(plain_literal).collect::<Option<Vec<_>>>()?.join(", ")
        )),
        PyValue::Dict(entries) => {
            let mut parts = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let PyValue::Str(k) = k else { return None };
                parts.push(format!("{}: {}", quoted(k), plain_literal(v)?));
            }
            Some(format!("{{{}}}", parts.join(", ")))
        }
        _ => None,
    }
}

/// `x` equals `v` as Python's `==` says, in the condition language.
fn equal(x: &str, v: &PyValue) -> Result<String, String> {
    // Python: True == 1 == 1.0, False == 0 == 0.0.
    let with_bool = |literal: String, one: bool, zero: bool| {
        if one {
            format!("({x} == {literal} || {x} == true)")
        } else if zero {
            format!("({x} == {literal} || {x} == false)")
        } else {
            format!("{x} == {literal}")
        }
    };
    Ok(match v {
        PyValue::None => format!("{x} == null"),
        PyValue::Bool(true) => format!("({x} == true || {x} == 1)"),
        PyValue::Bool(false) => format!("({x} == false || {x} == 0)"),
        PyValue::Int(i) => {
            let literal = int_literal(*i).ok_or_else(|| format!("the integer {i} is beyond 64 bits"))?;
            with_bool(literal, *i == 1, *i == 0)
        }
        PyValue::Float(bits) => {
            let f = f64::from_bits(*bits);
            with_bool(double_literal(*bits), f == 1.0, f == 0.0)
        }
        PyValue::Str(s) => format!("{x} == {}", quoted(s)),
        PyValue::BigInt { text, .. } => return Err(format!("the integer {text} is beyond 64 bits")),
        // A date or the like: no call value equals it.
        PyValue::Opaque(_) => String::from("false"),
        PyValue::List(_) | PyValue::Dict(_) => match plain_literal(v) {
            Some(literal) => format!("{x} == {literal}"),
            None => {
                return Err(format!(
                    "the value {v} holds numbers or booleans, which Python and the condition language compare differently inside lists and maps"
                ));
            }
        },
    })
}

/// One legacy check as a condition.
fn lower(check: &LegacyCheck) -> Result<String, String> {
    Ok(match check {
        LegacyCheck::ArgContains { key, expected } => {
            let LegacyKey::Str(k) = key else {
                return Ok("false".into());
            };
            let present = format!("{} in args", quoted(k));
            match expected {
                Expected::Present => present,
                Expected::Equal(v) => format!("({present} && {})", equal(&member("args", k), v)?),
            }
        }
        LegacyCheck::ArgNotContains { key, forbidden } => {
            let LegacyKey::Str(k) = key else {
                return Ok("true".into());
            };
            format!(
                "(!({} in args) || !({}))",
                quoted(k),
                equal(&member("args", k), forbidden)?
            )
        }
        LegacyCheck::SessionContext { key, expected } => {
            let LegacyKey::Str(k) = key else {
                return Ok("false".into());
            };
            let in_metadata = format!("{} in metadata", quoted(k));
            let id = match &**k {
                "agent_id" => Some("agent"),
                "user_id" => Some("user"),
                "session_id" => Some("session.id"),
                _ => None,
            };
            match (expected, id) {
                (Expected::Present, Some(_)) => "true".into(),
                (Expected::Present, None) => in_metadata,
                (Expected::Equal(v), None) => format!("({in_metadata} && {})", equal(&member("metadata", k), v)?),
                (Expected::Equal(v), Some(id)) => {
                    // The call's ids are text or null (a made-up session id
                    // equals nothing a policy holds).
                    let id_equal = match v {
                        PyValue::Str(s) => format!("{id} == {}", quoted(s)),
                        PyValue::None if id != "session.id" => format!("{id} == null"),
                        _ => "false".into(),
                    };
                    format!("({in_metadata} ? {} : {id_equal})", equal(&member("metadata", k), v)?)
                }
            }
        }
        LegacyCheck::ToolMatches(patterns) => {
            let parts: Vec<String> = patterns
                .regex_sources()
                .map(|r| format!("tool.matches({})", quoted(r)))
                .collect();
            if parts.len() == 1 {
                parts.concat()
            } else {
                format!("({})", parts.join(" || "))
            }
        }
        LegacyCheck::NoTool => "false".into(),
    })
}

/// Rewrites a legacy policy in the current format.
pub fn migrate_legacy(source: &str, origin: &str) -> Result<String, MigrateError> {
    let policy = crate::Policy::from_yaml(source, origin)?;
    if !policy.info().legacy {
        return Err(MigrateError::NotLegacy(origin.to_owned()));
    }
    let plain = |message: String| MigrateError::Policy(crate::PolicyError::plain(origin, message));
    let file: FileModel = serde_yaml::from_str(source).map_err(|e| plain(e.to_string()))?;
    let tree = crate::locate::parse(source).map_err(|(m, _)| plain(m))?;
    let rule_nodes: &[YNode] = tree.as_ref().and_then(|t| t.get("rules")).map_or(&[], YNode::items);
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Migrated by `tame migrate` from {origin} (the original tame server's format).\n\
         # Each rule decides every call as the legacy rule did: its checks became\n\
         # the `condition` (see docs/language.md)."
    );
    let version = file.version.as_ref().and_then(crate::model::scalar_text);
    if let Some(v) = version {
        let _ = writeln!(y, "version: {}", quoted(&v));
    }
    if let Some(d) = &file.description {
        let _ = writeln!(y, "description: {}", quoted(d));
    }
    y.push_str("default: deny\nrules:\n");
    for (i, value) in file.rules.unwrap_or_default().into_iter().enumerate() {
        let node = rule_nodes.get(i);
        let m: LegacyRuleModel = serde_yaml::from_value(value).map_err(|e| plain(e.to_string()))?;
        let unsupported = |what: String| MigrateError::Unsupported {
            rule: m.name.clone(),
            what,
        };
        let mut checks = Vec::new();
        let mut tools = None;
        match crate::legacy::read_tools(node.and_then(|n| n.get("tools"))) {
            ToolsRead::Switch => tools = m.tools.map(crate::model::Tools::into_vec),
            ToolsRead::Check(check) => checks.push(check),
            ToolsRead::Error(e) => return Err(unsupported(e.message)),
        }
        let conds = crate::legacy::read_conditions(node.and_then(|n| n.get("conditions")), m.conditions.as_ref());
        if let Some(e) = conds.errors.into_iter().next() {
            return Err(unsupported(e.message));
        }
        checks.extend(conds.checks);
        let parts = checks
            .iter()
            .map(lower)
            .collect::<Result<Vec<_>, _>>()
            .map_err(unsupported)?;
        let _ = writeln!(y, "  - name: {}", quoted(&m.name));
        if let Some(d) = &m.description {
            let _ = writeln!(y, "    description: {}", quoted(d));
        }
        let _ = writeln!(y, "    action: {}", m.action);
        if let Some(tools) = tools {
            let list: Vec<String> = tools.iter().map(|t| quoted(t)).collect();
            let _ = writeln!(y, "    tools: [{}]", list.join(", "));
        }
        if !parts.is_empty() {
            let condition = parts.join(" && ");
            let _ = writeln!(y, "    condition: '{}'", condition.replace('\'', "''"));
        }
        // The original's reason for a match.
        let _ = writeln!(y, "    reason: {}", quoted(&format!("Matched rule: {}", m.name)));
    }
    if let Some(tests) = file.tests.filter(|t| !t.is_empty()) {
        let text = serde_yaml::to_string(&serde_yaml::Value::Mapping(
            [(
                serde_yaml::Value::String("tests".into()),
                serde_yaml::Value::Sequence(tests),
            )]
            .into_iter()
            .collect(),
        ))
        .map_err(|e| plain(e.to_string()))?;
        y.push_str(&text);
    }
    // What is written must load in the current format.
    let migrated = crate::Policy::from_yaml(&y, origin)?;
    if migrated.info().legacy {
        return Err(plain(String::from(
            "internal error: the migrated policy reads as legacy",
        )));
    }
    Ok(y)
}
