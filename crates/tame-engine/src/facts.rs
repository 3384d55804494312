//! Fixed session facts: what a policy test (`tests:`, a `tame eval`
//! line's `session`) says a session has done, without times. They are
//! the seed of the one session-state type, `tame_enforce::SessionState`,
//! which every frontend records calls in; this type records nothing.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use tame_interp::{SessionFacts, ToolPattern};

use crate::request::RequestError;

/// Fixed session facts, read with [`MemoryFacts::from_json`]: counts
/// without times (they count in every window) and labels.
#[derive(Clone, Debug, Default)]
pub struct MemoryFacts {
    fixed_calls: i64,
    fixed_counts: FxHashMap<Arc<str>, i64>,
    labels: Vec<Arc<str>>,
}

impl MemoryFacts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `{"calls": 3, "counts": {"send_email": 2}, "called": ["x"],
    /// "labels": ["secret_read"]}`; every field is optional. `calls`
    /// defaults to the sum of `counts`; a tool in `called` without a count
    /// counts once.
    pub fn from_json(v: &serde_json::Value) -> Result<MemoryFacts, RequestError> {
        let err = |path: &str, message: &str| RequestError {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        let obj = match v {
            serde_json::Value::Null => return Ok(MemoryFacts::default()),
            serde_json::Value::Object(o) => o,
            _ => return Err(err("session", "expected an object")),
        };
        let mut facts = MemoryFacts::default();
        for key in obj.keys() {
            if !matches!(key.as_str(), "calls" | "counts" | "called" | "labels") {
                return Err(err(
                    &format!("session.{key}"),
                    "unknown field, expected one of `calls`, `counts`, `called`, `labels`",
                ));
            }
        }
        if let Some(counts) = obj.get("counts") {
            let serde_json::Value::Object(counts) = counts else {
                return Err(err("session.counts", "expected an object of tool name to count"));
            };
            for (tool, n) in counts {
                let n = n
                    .as_i64()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| err(&format!("session.counts.{tool}"), "expected a non-negative integer"))?;
                facts.fixed_counts.insert(Arc::from(tool.as_str()), n);
            }
        }
        if let Some(called) = obj.get("called") {
            let serde_json::Value::Array(called) = called else {
                return Err(err("session.called", "expected an array of tool names"));
            };
            for (i, tool) in called.iter().enumerate() {
                let tool = tool
                    .as_str()
                    .ok_or_else(|| err(&format!("session.called[{i}]"), "expected a string"))?;
                facts.fixed_counts.entry(Arc::from(tool)).or_insert(1);
            }
        }
        if let Some(labels) = obj.get("labels") {
            let serde_json::Value::Array(labels) = labels else {
                return Err(err("session.labels", "expected an array of strings"));
            };
            for (i, l) in labels.iter().enumerate() {
                let l = l
                    .as_str()
                    .ok_or_else(|| err(&format!("session.labels[{i}]"), "expected a string"))?;
                facts.labels.push(Arc::from(l));
            }
        }
        facts.fixed_calls = match obj.get("calls") {
            None => facts.fixed_counts.values().sum(),
            Some(n) => n
                .as_i64()
                .filter(|n| *n >= 0)
                .ok_or_else(|| err("session.calls", "expected a non-negative integer"))?,
        };
        Ok(facts)
    }

    /// Attaches a label to the session (e.g. `secret_read`).
    pub fn add_label(&mut self, label: &str) {
        if !self.labels.iter().any(|l| &**l == label) {
            self.labels.push(Arc::from(label));
        }
    }

    /// Has no effect: fixed facts have no times and count in every window.
    /// Kept for callers that pass the evaluation time along.
    pub fn set_now(&mut self, _now: jiff::Timestamp) {}

    /// `session.calls`: the `calls` given, or the sum of the counts.
    pub fn fixed_calls(&self) -> i64 {
        self.fixed_calls
    }

    /// The per-tool counts given (`counts`, and `called` as 1).
    pub fn fixed_counts(&self) -> impl Iterator<Item = (&Arc<str>, i64)> {
        self.fixed_counts.iter().map(|(tool, n)| (tool, *n))
    }

    /// The labels given.
    pub fn fixed_labels(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(|l| &**l)
    }
}

impl SessionFacts for MemoryFacts {
    fn calls(&self) -> i64 {
        self.fixed_calls
    }

    fn count(&self, tool: &ToolPattern, _window: Option<jiff::SignedDuration>) -> i64 {
        match tool.exact() {
            Some(name) => self.fixed_counts.get(name).copied().unwrap_or(0),
            None => self
                .fixed_counts
                .iter()
                .filter(|(t, _)| tool.matches(t))
                .fold(0i64, |sum, (_, n)| sum.saturating_add(*n)),
        }
    }

    fn called(&self, tool: &ToolPattern) -> bool {
        self.count(tool, None) > 0
    }

    fn labels(&self) -> Vec<Arc<str>> {
        self.labels.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_json_reads_every_field() {
        let f = MemoryFacts::from_json(
            &json!({"calls": 3, "counts": {"send_email": 2}, "called": ["x"], "labels": ["secret_read"]}),
        )
        .unwrap();
        let t = |name: &str| ToolPattern::new(name).unwrap();
        assert_eq!(f.calls(), 3);
        assert_eq!(f.count(&t("send_email"), None), 2);
        assert_eq!(f.count(&t("x"), None), 1);
        assert!(f.called(&t("x")));
        assert!(f.called(&t("send_email")));
        assert!(!f.called(&t("y")));
        assert_eq!(f.labels(), vec![Arc::<str>::from("secret_read")]);
        let f = MemoryFacts::from_json(&json!({"counts": {"a": 2, "b": 5}})).unwrap();
        assert_eq!(f.calls(), 7);
    }

    #[test]
    fn from_json_errors_name_the_path() {
        let e = MemoryFacts::from_json(&json!({"counts": {"a": "two"}})).unwrap_err();
        assert_eq!(e.path, "session.counts.a");
        let e = MemoryFacts::from_json(&json!({"called": ["a", 3]})).unwrap_err();
        assert_eq!(e.path, "session.called[1]");
        let e = MemoryFacts::from_json(&json!({"cals": 1})).unwrap_err();
        assert_eq!(e.path, "session.cals");
    }
}
