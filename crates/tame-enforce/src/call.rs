//! Reading a call: the enforce request's JSON (`{tool_name, tool_args,
//! session_id?, agent_id?, user_id?, metadata?, approval_id?}`) into the
//! engine's [`Request`] plus what the record needs (the arguments and
//! metadata as sent, the approval the call comes back with).

use std::sync::Arc;

use serde_json::Value;
use tame_engine::{Request, RequestError};

/// One call to decide. Errors reading it name the JSON path.
#[derive(Debug, Clone)]
pub struct Call {
    /// What the policy evaluates (`request.now` is the call's time).
    pub request: Request,
    /// The arguments as sent (an object; `{}` when absent).
    pub tool_args: Value,
    /// The metadata as sent (an object; `{}` when absent).
    pub metadata: Value,
    /// The session: as sent, or a fresh id when none was sent.
    pub session_id: String,
    /// True when `session_id` was generated here: the session is new and
    /// has no stored history to read.
    pub fresh_session: bool,
    /// The approval the call comes back with (`approval_id`, or
    /// `metadata.approval_id`), to be released by it.
    pub approval_id: Option<String>,
}

impl Call {
    /// Reads an enforce request body. A missing `session_id` gets a fresh
    /// UUID (v4). `now` is the current time.
    pub fn from_json(body: Value) -> Result<Call, RequestError> {
        let mut request = Request::from_call_json(&body)?;
        let approval_id = approval_id_of(&body)?;
        let Value::Object(mut fields) = body else {
            // `from_call_json` accepted it, so it is an object.
            return Err(RequestError {
                path: "$".into(),
                message: "expected a call object".into(),
            });
        };
        let mut take = |key: &str| match fields.remove(key) {
            Some(Value::Null) | None => Value::Object(serde_json::Map::new()),
            Some(v) => v,
        };
        let tool_args = take("tool_args");
        let metadata = take("metadata");
        let (session_id, fresh_session) = match &request.session_id {
            Some(s) => (s.to_string(), false),
            None => {
                let fresh = id_text(uuid::Uuid::new_v4());
                request.session_id = Some(Arc::from(fresh.as_str()));
                (fresh, true)
            }
        };
        Ok(Call {
            request,
            tool_args,
            metadata,
            session_id,
            fresh_session,
            approval_id,
        })
    }

    /// A call from its parts (embedded frontends that already hold them):
    /// the same as [`Call::from_json`] of the equivalent body.
    pub fn new(tool: &str, tool_args: Value, session_id: &str) -> Result<Call, RequestError> {
        Call::from_json(serde_json::json!({"tool_name": tool, "tool_args": tool_args, "session_id": session_id}))
    }

    /// The tool's name.
    pub fn tool(&self) -> &str {
        &self.request.tool
    }

    /// Sets the call's time (a replayed call's own time; windows end there).
    pub fn at(mut self, now: jiff::Timestamp) -> Call {
        self.request.now = now;
        self
    }
}

/// The approval a call comes back with: `approval_id`, or
/// `metadata.approval_id` (the original SDK's place for it).
fn approval_id_of(body: &Value) -> Result<Option<String>, RequestError> {
    let top = body.get("approval_id");
    let meta = body.get("metadata").and_then(|m| m.get("approval_id"));
    let (path, found) = match (top, meta) {
        (Some(v), _) if !v.is_null() => ("approval_id", v),
        (_, Some(v)) => ("metadata.approval_id", v),
        _ => return Ok(None),
    };
    match found {
        Value::Null => Ok(None),
        Value::String(s) if !s.is_empty() => Ok(Some(s.clone())),
        _ => Err(RequestError {
            path: path.into(),
            message: "expected a non-empty string".into(),
        }),
    }
}

/// An id as text (`8-4-4-4-12` lower-case hex), written straight into a
/// string of its length (`to_string` goes through the formatter).
pub fn id_text(id: uuid::Uuid) -> String {
    id.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_field_and_keeps_args_as_sent() {
        let call = Call::from_json(json!({
            "tool_name": "send_email", "tool_args": {"to": "a@b.c", "n": 1.0},
            "session_id": "s1", "agent_id": "a", "metadata": {"approval_id": "ap-1"}
        }))
        .unwrap();
        assert_eq!(call.tool(), "send_email");
        assert_eq!(call.session_id, "s1");
        assert!(!call.fresh_session);
        assert_eq!(call.approval_id.as_deref(), Some("ap-1"));
        assert_eq!(call.tool_args, json!({"to": "a@b.c", "n": 1.0}));
        assert_eq!(call.request.agent_id.as_deref(), Some("a"));
    }

    #[test]
    fn a_missing_session_gets_a_fresh_id() {
        let a = Call::from_json(json!({"tool_name": "t"})).unwrap();
        let b = Call::from_json(json!({"tool_name": "t"})).unwrap();
        assert!(a.fresh_session);
        assert_ne!(a.session_id, b.session_id);
        assert_eq!(a.request.session_id.as_deref(), Some(a.session_id.as_str()));
        assert_eq!(a.tool_args, json!({}));
    }

    #[test]
    fn errors_name_the_path() {
        let e = Call::from_json(json!({"tool_name": "t", "tool_args": []})).unwrap_err();
        assert_eq!(e.path, "tool_args");
        let e = Call::from_json(json!({"tool_name": "t", "approval_id": 5})).unwrap_err();
        assert_eq!(e.path, "approval_id");
        let e = Call::from_json(json!({"tool_name": "t", "metadata": {"approval_id": ""}})).unwrap_err();
        assert_eq!(e.path, "metadata.approval_id");
        let e = Call::from_json(json!("x")).unwrap_err();
        assert_eq!(e.path, "$");
    }

    #[test]
    fn ids_are_written_as_uuid_displays_them() {
        for id in [
            uuid::Uuid::nil(),
            uuid::Uuid::max(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::new_v4(),
        ] {
            assert_eq!(id_text(id), id.to_string());
        }
    }
}
