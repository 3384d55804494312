//! Converting tool calls between JSON and the evaluator's values.

use std::sync::Arc;

use tame_lang::{Key, Value, ValueMap};

use crate::facade::Request;

/// A call payload that cannot be turned into a [`Request`]. The message
/// starts with the JSON path of the offending field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{path}: {message}")]
pub struct RequestError {
    /// JSON path of the field, e.g. `tool_args` or `$` for the whole call.
    pub path: String,
    pub message: String,
}

impl RequestError {
    fn new(path: &str, message: &str) -> Self {
        RequestError {
            path: path.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// Converts JSON to a condition value: integers written without a fraction
/// or exponent become `int` (`uint` above the `int` range), other numbers
/// `double`, objects maps (keys in document order), arrays lists.
pub fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::Uint(u)
            } else {
                Value::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::from(s.as_str())),
        serde_json::Value::Array(items) => Value::List(items.iter().map(json_to_value).collect()),
        serde_json::Value::Object(obj) => Value::Map(Arc::new(object_to_map(obj))),
    }
}

fn object_to_map(obj: &serde_json::Map<String, serde_json::Value>) -> ValueMap {
    let mut map = ValueMap::with_capacity_and_hasher(obj.len(), Default::default());
    for (k, v) in obj {
        map.insert(Key::String(Arc::from(k.as_str())), json_to_value(v));
    }
    map
}

/// Converts a value back to JSON: bytes as their (lossy) UTF-8 text,
/// timestamps as RFC 3339, durations as `1h2m3s`, types by name, and
/// non-finite doubles as `null` (JSON has no NaN).
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Uint(u) => J::from(*u),
        Value::Double(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(items) => J::Array(items.iter().map(value_to_json).collect()),
        Value::Map(m) => {
            let mut obj = serde_json::Map::with_capacity(m.len());
            for (k, v) in m.iter() {
                obj.insert(key_to_string(k), value_to_json(v));
            }
            J::Object(obj)
        }
        Value::Timestamp(t) => J::String(t.to_string()),
        Value::Duration(d) => J::String(format!("{d:#}")),
        Value::Type(t) => J::String(t.name()),
        // An optional is its value, or nothing.
        Value::Optional(Some(v)) => value_to_json(v),
        Value::Optional(None) => J::Null,
    }
}

pub(crate) fn key_to_string(k: &Key) -> String {
    match k {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => s.to_string(),
    }
}

fn opt_string(
    call: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<Arc<str>>, RequestError> {
    match call.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(Arc::from(s.as_str()))),
        Some(other) => Err(RequestError::new(
            field,
            &format!("expected a string, found {}", json_kind(other)),
        )),
    }
}

fn opt_object(call: &serde_json::Map<String, serde_json::Value>, field: &str) -> Result<Value, RequestError> {
    match call.get(field) {
        None | Some(serde_json::Value::Null) => Ok(empty_map()),
        Some(serde_json::Value::Object(obj)) => Ok(Value::Map(Arc::new(object_to_map(obj)))),
        Some(other) => Err(RequestError::new(
            field,
            &format!("expected an object, found {}", json_kind(other)),
        )),
    }
}

pub(crate) fn empty_map() -> Value {
    Value::Map(Arc::new(ValueMap::default()))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl Request {
    /// A request for `tool` with the given arguments (a map value) and no
    /// ids or metadata, evaluated now.
    pub fn new(tool: &str, args: Value) -> Request {
        Request {
            tool: Arc::from(tool),
            args,
            session_id: None,
            agent_id: None,
            user_id: None,
            metadata: empty_map(),
            now: jiff::Timestamp::now(),
        }
    }

    /// Reads a call in the original tame server's shape: `{tool_name,
    /// tool_args, session_id?, agent_id?, user_id?, metadata?}`. Errors name
    /// the field (`tool_args: expected an object, found a string`). A missing
    /// or `null` `tool_args`/`metadata` is an empty object. `now` is the
    /// current time.
    pub fn from_call_json(call: &serde_json::Value) -> Result<Request, RequestError> {
        let serde_json::Value::Object(obj) = call else {
            return Err(RequestError::new(
                "$",
                &format!("expected a call object, found {}", json_kind(call)),
            ));
        };
        let tool = match obj.get("tool_name") {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Arc::from(s.as_str()),
            Some(serde_json::Value::String(_)) => return Err(RequestError::new("tool_name", "must not be empty")),
            Some(other) => {
                return Err(RequestError::new(
                    "tool_name",
                    &format!("expected a string, found {}", json_kind(other)),
                ));
            }
            None => return Err(RequestError::new("tool_name", "missing")),
        };
        Ok(Request {
            tool,
            args: opt_object(obj, "tool_args")?,
            session_id: opt_string(obj, "session_id")?,
            agent_id: opt_string(obj, "agent_id")?,
            user_id: opt_string(obj, "user_id")?,
            metadata: opt_object(obj, "metadata")?,
            now: jiff::Timestamp::now(),
        })
    }

    /// The call back in the server's JSON shape.
    pub fn to_call_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("tool_name".into(), serde_json::Value::String(self.tool.to_string()));
        obj.insert("tool_args".into(), value_to_json(&self.args));
        let ids = [
            ("session_id", &self.session_id),
            ("agent_id", &self.agent_id),
            ("user_id", &self.user_id),
        ];
        for (name, v) in ids {
            if let Some(v) = v {
                obj.insert(name.into(), serde_json::Value::String(v.to_string()));
            }
        }
        obj.insert("metadata".into(), value_to_json(&self.metadata));
        serde_json::Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_follow_the_json_rules() {
        assert!(matches!(json_to_value(&json!(3)), Value::Int(3)));
        assert!(matches!(json_to_value(&json!(-3)), Value::Int(-3)));
        assert!(matches!(
            json_to_value(&json!(18446744073709551615u64)),
            Value::Uint(u64::MAX)
        ));
        assert!(matches!(json_to_value(&json!(3.0)), Value::Double(d) if d == 3.0));
        let v: serde_json::Value = serde_json::from_str("1e3").unwrap_or_default();
        assert!(matches!(json_to_value(&v), Value::Double(d) if d == 1000.0));
    }

    #[test]
    fn objects_and_arrays_round_trip() {
        let j = json!({"path": "/etc/x", "n": [1, 2.5, true, null], "o": {"k": "v"}});
        assert_eq!(value_to_json(&json_to_value(&j)), j);
    }

    #[test]
    fn call_fields_are_read_and_errors_name_the_path() {
        let r =
            Request::from_call_json(&json!({"tool_name": "read_file", "tool_args": {"path": "/x"}, "agent_id": "a1"}))
                .unwrap();
        assert_eq!(&*r.tool, "read_file");
        assert_eq!(r.agent_id.as_deref(), Some("a1"));
        assert_eq!(r.user_id, None);
        let e = Request::from_call_json(&json!({"tool_name": "x", "tool_args": "nope"})).unwrap_err();
        assert_eq!(e.to_string(), "tool_args: expected an object, found a string");
        let e = Request::from_call_json(&json!({"tool_args": {}})).unwrap_err();
        assert_eq!(e.to_string(), "tool_name: missing");
        let e = Request::from_call_json(&json!({"tool_name": "x", "user_id": 5})).unwrap_err();
        assert_eq!(e.to_string(), "user_id: expected a string, found a number");
        let e = Request::from_call_json(&json!([1])).unwrap_err();
        assert_eq!(e.path, "$");
    }
}
