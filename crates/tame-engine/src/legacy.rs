//! The legacy rule conditions of the original tame server.
//!
//! A legacy rule's `conditions` map holds up to three checks, all of which
//! must hold for the rule to match (a rule without `conditions` matches
//! every call to its tools):
//!
//! - `arg_contains: {key: needle}`: the argument `key` is present and its
//!   text contains `needle` as a substring. The text of a string argument
//!   is the string itself; any other argument is written as compact JSON
//!   (`42`, `true`, `["a","b"]`). A list of needles matches when any of
//!   them is contained. So `{arg_contains: {path: "/etc"}}` matches
//!   `{"path": "/etc/hosts"}` and `{"path": "/home/etc"}`, but not
//!   `{"file": "/etc/hosts"}`.
//! - `arg_not_contains: {key: needle}`: the argument is absent, or its text
//!   contains none of the needles.
//! - `session_context: {key: value}`: the session context, which is
//!   `{session_id, agent_id, user_id}` merged with the call's `metadata`
//!   (metadata wins on a clash), has `key` equal to `value` (numbers compare
//!   by value, `1 == 1.0`; strings exactly). The value `"*"` means "present":
//!   the key exists and is not null.
//!
//! Values are compared as written: `">50"` is the text `>50`, not a range.
//! The linter points such values out and shows the equivalent `condition`.

use std::sync::Arc;

use tame_lang::{Key, Value};

use crate::facade::Request;
use crate::request::value_to_json;

/// One legacy check; each is one atom of the decision DAG.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LegacyCheck {
    ArgContains {
        key: Arc<str>,
        needles: Vec<String>,
    },
    ArgNotContains {
        key: Arc<str>,
        needles: Vec<String>,
    },
    /// `expected` is `None` for `"*"` (present).
    ContextEquals {
        key: Arc<str>,
        expected: Option<LegacyScalar>,
    },
}

/// A YAML scalar to compare a context value with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LegacyScalar {
    Str(String),
    /// Numbers keep their text; compared numerically.
    Num(String),
    Bool(bool),
    Null,
}

impl LegacyCheck {
    /// A short description for explain traces and DOT labels.
    pub fn describe(&self) -> String {
        match self {
            LegacyCheck::ArgContains { key, needles } => format!("arg_contains {key} {needles:?}"),
            LegacyCheck::ArgNotContains { key, needles } => format!("arg_not_contains {key} {needles:?}"),
            LegacyCheck::ContextEquals { key, expected: None } => format!("session_context {key} present"),
            LegacyCheck::ContextEquals { key, expected: Some(v) } => format!("session_context {key} == {v:?}"),
        }
    }

    pub fn eval(&self, req: &Request) -> bool {
        match self {
            LegacyCheck::ArgContains { key, needles } => {
                arg_text(req, key).is_some_and(|t| needles.iter().any(|n| t.contains(n.as_str())))
            }
            LegacyCheck::ArgNotContains { key, needles } => {
                arg_text(req, key).is_none_or(|t| !needles.iter().any(|n| t.contains(n.as_str())))
            }
            LegacyCheck::ContextEquals { key, expected } => match context_value(req, key) {
                None | Some(Value::Null) => false,
                Some(v) => match expected {
                    None => true,
                    Some(e) => scalar_equals(&v, e),
                },
            },
        }
    }
}

/// The text of argument `key`: strings as-is, anything else as JSON.
fn arg_text<'r>(req: &'r Request, key: &str) -> Option<std::borrow::Cow<'r, str>> {
    let Value::Map(m) = &req.args else { return None };
    match m.get(&Key::String(Arc::from(key)))? {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        other => Some(std::borrow::Cow::Owned(value_to_json(other).to_string())),
    }
}

fn context_value(req: &Request, key: &str) -> Option<Value> {
    if let Value::Map(m) = &req.metadata
        && let Some(v) = m.get(&Key::String(Arc::from(key)))
    {
        return Some(v.clone());
    }
    let id = |s: &Option<Arc<str>>| Some(s.as_ref().map_or(Value::Null, |s| Value::String(s.clone())));
    match key {
        "session_id" => id(&req.session_id),
        "agent_id" => id(&req.agent_id),
        "user_id" => id(&req.user_id),
        _ => None,
    }
}

fn scalar_equals(v: &Value, e: &LegacyScalar) -> bool {
    let num = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Uint(u) => Some(*u as f64),
        Value::Double(d) => Some(*d),
        _ => None,
    };
    match (v, e) {
        (Value::String(s), LegacyScalar::Str(e)) => &**s == e,
        (Value::Bool(b), LegacyScalar::Bool(e)) => b == e,
        (Value::Null, LegacyScalar::Null) => true,
        (v, LegacyScalar::Num(text)) => match (num(v), text.parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        },
        _ => false,
    }
}

/// Needles of an `arg_contains` value: a scalar or a list of scalars.
pub(crate) fn needles(v: &serde_yaml::Value) -> Result<Vec<String>, String> {
    match v {
        serde_yaml::Value::Sequence(items) => items.iter().map(needle).collect(),
        other => Ok(vec![needle(other)?]),
    }
}

fn needle(v: &serde_yaml::Value) -> Result<String, String> {
    match v {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        serde_yaml::Value::Null => Ok("null".into()),
        _ => Err("expected a string or a list of strings".into()),
    }
}

/// A `session_context` value.
pub(crate) fn context_scalar(v: &serde_yaml::Value) -> Result<Option<LegacyScalar>, String> {
    match v {
        serde_yaml::Value::String(s) if s == "*" => Ok(None),
        serde_yaml::Value::String(s) => Ok(Some(LegacyScalar::Str(s.clone()))),
        serde_yaml::Value::Number(n) => Ok(Some(LegacyScalar::Num(n.to_string()))),
        serde_yaml::Value::Bool(b) => Ok(Some(LegacyScalar::Bool(*b))),
        serde_yaml::Value::Null => Ok(Some(LegacyScalar::Null)),
        _ => Err("expected a string, number, boolean or `\"*\"`".into()),
    }
}

/// If a legacy value looks like it meant a regex, a range or a time window,
/// the message and the equivalent `condition`.
pub(crate) fn suspicious(kind: &str, key: &str, value: &str) -> Option<(String, String)> {
    let lhs = if kind == "session_context" {
        format!("metadata.{key}")
    } else {
        format!("args.{key}")
    };
    let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let v = value.trim();
    // Ranges: >50, >= 10, <3, <=7.5, 10-20 / 10..20
    for op in [">=", "<=", ">", "<"] {
        if let Some(num) = v.strip_prefix(op)
            && num.trim().parse::<f64>().is_ok()
        {
            return Some((
                format!("legacy value `{value}` is compared as text, not as a range"),
                format!("condition: '{lhs} {op} {}'", num.trim()),
            ));
        }
    }
    let time = |s: &str| {
        let s = s.trim();
        let (h, m) = s.split_once(':').unwrap_or((s, "00"));
        let ok = h.len() <= 2
            && m.len() == 2
            && h.parse::<u8>().is_ok_and(|h| h < 24)
            && m.parse::<u8>().is_ok_and(|m| m < 60);
        ok && s.contains(':')
    };
    if let Some((a, b)) = v.split_once('-') {
        if time(a) && time(b) {
            return Some((
                format!("legacy value `{value}` is compared as text, not as a time window"),
                format!(
                    "condition: 'now.getHours(\"UTC\") * 60 + now.getMinutes(\"UTC\") >= {} and now.getHours(\"UTC\") * 60 + now.getMinutes(\"UTC\") < {}'",
                    minutes(a),
                    minutes(b)
                ),
            ));
        }
        if a.trim().parse::<f64>().is_ok() && b.trim().parse::<f64>().is_ok() {
            return Some((
                format!("legacy value `{value}` is compared as text, not as a range"),
                format!("condition: '{lhs} >= {} and {lhs} <= {}'", a.trim(), b.trim()),
            ));
        }
    }
    let regexy = v.starts_with('^')
        || v.ends_with('$')
        || v.contains(".*")
        || v.contains(".+")
        || v.contains("\\d")
        || v.contains("\\w")
        || v.contains("\\s")
        || v.contains("\\.")
        || (v.contains('[') && v.contains(']'))
        || (v.contains('(') && v.contains('|') && v.contains(')'));
    if regexy && regex::Regex::new(v).is_ok() {
        let cond = if kind == "arg_not_contains" {
            format!("condition: '!{lhs}.matches({})'", quoted(v))
        } else {
            format!("condition: '{lhs}.matches({})'", quoted(v))
        };
        return Some((
            format!("legacy value `{value}` looks like a regex but is compared as text"),
            cond,
        ));
    }
    None
}

fn minutes(t: &str) -> u32 {
    let (h, m) = t.trim().split_once(':').unwrap_or((t, "0"));
    h.parse::<u32>().unwrap_or(0) * 60 + m.parse::<u32>().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(args: serde_json::Value, meta: serde_json::Value) -> Request {
        Request::from_call_json(&json!({"tool_name": "t", "tool_args": args, "metadata": meta, "agent_id": "a1"}))
            .unwrap()
    }

    #[test]
    fn arg_contains_is_a_substring_of_the_argument_text() {
        let c = LegacyCheck::ArgContains {
            key: "path".into(),
            needles: vec!["/etc".into()],
        };
        assert!(c.eval(&req(json!({"path": "/etc/hosts"}), json!({}))));
        assert!(c.eval(&req(json!({"path": "/home/etc"}), json!({}))));
        assert!(!c.eval(&req(json!({"file": "/etc/hosts"}), json!({}))));
        assert!(!c.eval(&req(json!({"path": "/usr"}), json!({}))));
        let n = LegacyCheck::ArgContains {
            key: "n".into(),
            needles: vec!["42".into()],
        };
        assert!(n.eval(&req(json!({"n": 1422}), json!({}))));
        let any = LegacyCheck::ArgContains {
            key: "p".into(),
            needles: vec!["a".into(), "z".into()],
        };
        assert!(any.eval(&req(json!({"p": "xyz"}), json!({}))));
    }

    #[test]
    fn arg_not_contains_holds_for_missing_args() {
        let c = LegacyCheck::ArgNotContains {
            key: "path".into(),
            needles: vec!["/etc".into()],
        };
        assert!(c.eval(&req(json!({}), json!({}))));
        assert!(c.eval(&req(json!({"path": "/usr"}), json!({}))));
        assert!(!c.eval(&req(json!({"path": "/etc/x"}), json!({}))));
    }

    #[test]
    fn session_context_merges_ids_and_metadata() {
        let role = LegacyCheck::ContextEquals {
            key: "user_role".into(),
            expected: Some(LegacyScalar::Str("admin".into())),
        };
        assert!(role.eval(&req(json!({}), json!({"user_role": "admin"}))));
        assert!(!role.eval(&req(json!({}), json!({"user_role": "dev"}))));
        assert!(!role.eval(&req(json!({}), json!({}))));
        let agent = LegacyCheck::ContextEquals {
            key: "agent_id".into(),
            expected: None,
        };
        assert!(agent.eval(&req(json!({}), json!({}))));
        let user = LegacyCheck::ContextEquals {
            key: "user_id".into(),
            expected: None,
        };
        assert!(!user.eval(&req(json!({}), json!({}))));
        let level = LegacyCheck::ContextEquals {
            key: "level".into(),
            expected: Some(LegacyScalar::Num("3".into())),
        };
        assert!(level.eval(&req(json!({}), json!({"level": 3.0}))));
        assert!(!level.eval(&req(json!({}), json!({"level": "3"}))));
    }

    #[test]
    fn suspicious_values_get_an_equivalent_condition() {
        let (m, c) = suspicious("arg_contains", "amount", ">50").unwrap();
        assert!(m.contains("range"));
        assert_eq!(c, "condition: 'args.amount > 50'");
        let (_, c) = suspicious("arg_contains", "path", "^/etc/.*").unwrap();
        assert_eq!(c, "condition: 'args.path.matches(\"^/etc/.*\")'");
        let (m, _) = suspicious("session_context", "hours", "09:00-17:00").unwrap();
        assert!(m.contains("time window"));
        assert!(suspicious("arg_contains", "path", "/etc").is_none());
        assert!(suspicious("arg_contains", "path", "file.txt").is_none());
    }
}
