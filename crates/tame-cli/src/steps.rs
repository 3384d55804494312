//! One line format for a session's steps (see "One line format" in the
//! design): a line with `tool_name` is a call; `{"session_id": S, "input":
//! "text"}` records what the user asked; `{"session_id": S, "result":
//! VALUE}` records what the session's latest call returned. `tame eval`
//! reads these lines, policy tests (`steps:`) hold them and `tame replay`
//! reads them; each is recorded through the enforcement path's
//! [`MemoryStore`] (a result reported offline comes from the agent).

use serde_json::{Map, Value, json};
use tame_enforce::{Enforcer, MemoryStore, ResultSource};

/// One step of a session, as a line holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A call: the line as it is (read by [`crate::local::enforce_call`]).
    Call(Value),
    /// What the user asked (`input`).
    Input { session_id: String, text: String },
    /// What the session's latest call returned (`result`).
    Result { session_id: String, value: Value },
}

/// A line that is not a step: the field at fault and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct StepError {
    pub field: String,
    pub message: String,
}

fn error(field: &str, message: impl Into<String>) -> StepError {
    StepError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Reads one line (already parsed as JSON) as a step.
pub fn parse_step(line: &Value) -> Result<Step, StepError> {
    let Some(fields) = line.as_object() else {
        return Err(error("$", "a line must be a JSON object"));
    };
    if fields.contains_key("tool_name") {
        return Ok(Step::Call(line.clone()));
    }
    let kind = match (fields.contains_key("input"), fields.contains_key("result")) {
        (true, true) => return Err(error("result", "a line is one step: `input` or `result`, not both")),
        (true, false) => "input",
        (false, true) => "result",
        // Neither step: read as a call, so that it is refused with the
        // message every frontend gives a call without `tool_name`.
        (false, false) => return Ok(Step::Call(line.clone())),
    };
    if let Some(other) = fields.keys().find(|k| k.as_str() != kind && k.as_str() != "session_id") {
        return Err(error(
            other,
            format!("unknown field of an `{kind}` step (it has `session_id` and `{kind}`)"),
        ));
    }
    let session_id = session_of(fields)?;
    match kind {
        "input" => match fields.get("input") {
            Some(Value::String(text)) => Ok(Step::Input {
                session_id,
                text: text.clone(),
            }),
            Some(_) => Err(error("input", "expected the user's text (a string)")),
            None => Err(error("input", "missing")),
        },
        _ => Ok(Step::Result {
            session_id,
            value: fields.get("result").cloned().unwrap_or(Value::Null),
        }),
    }
}

fn session_of(fields: &Map<String, Value>) -> Result<String, StepError> {
    match fields.get("session_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(error("session_id", "empty")),
        Some(_) => Err(error("session_id", "expected a string")),
        None => Err(error("session_id", "missing: a step belongs to a session")),
    }
}

/// Records a user's input to `session_id` (as the caller knows it).
pub fn record_input(
    store: &MemoryStore,
    enforcer: &Enforcer<'_>,
    session_id: &str,
    text: &str,
) -> Result<(), StepError> {
    store
        .record_input(enforcer, session_id, &json!({ "text": text }))
        .map(drop)
        .map_err(|e| match e {
            // The body is built here: its `text` is the line's `input`.
            tame_enforce::EnforceError::Call(e) if e.path == "text" => error("input", e.message),
            other => error("input", other.to_string()),
        })
}

/// Records `value` as the result of `session_id`'s latest call, which must
/// have run (reported by the agent, as `POST
/// /api/v1/enforce/{session}/result` does).
pub fn record_result(
    store: &MemoryStore,
    enforcer: &Enforcer<'_>,
    session_id: &str,
    value: Value,
) -> Result<(), StepError> {
    let key = enforcer.stored_session(session_id);
    let no_call = || error("result", format!("session `{session_id}` has no call to give it to"));
    let cell = store.session(&key).ok_or_else(no_call)?;
    let log_id = {
        let state = cell.lock();
        let last = state.last_call().ok_or_else(no_call)?;
        if !last.ran() {
            return Err(error(
                "result",
                format!(
                    "the latest call of session `{session_id}` (`{}`, {}) did not run: it has no result",
                    last.tool,
                    last.decision.as_str()
                ),
            ));
        }
        last.log_id.clone().ok_or_else(no_call)?
    };
    store
        .record_result_from(
            enforcer,
            session_id,
            &log_id,
            json!({ "result": value }),
            ResultSource::Agent,
        )
        .map(drop)
        .map_err(|e| error("result", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_calls_inputs_or_results() {
        let call = json!({"tool_name": "t", "session_id": "s"});
        assert_eq!(parse_step(&call), Ok(Step::Call(call.clone())));
        assert_eq!(
            parse_step(&json!({"session_id": "s", "input": "pay Bob"})),
            Ok(Step::Input {
                session_id: "s".into(),
                text: "pay Bob".into()
            })
        );
        assert_eq!(
            parse_step(&json!({"session_id": "s", "result": {"a": [1]}})),
            Ok(Step::Result {
                session_id: "s".into(),
                value: json!({"a": [1]})
            })
        );
        // A result may be null.
        assert!(matches!(
            parse_step(&json!({"session_id": "s", "result": null})),
            Ok(Step::Result { .. })
        ));
    }

    #[test]
    fn malformed_steps_name_the_field() {
        let field = |v: Value| parse_step(&v).unwrap_err().field;
        assert_eq!(field(json!({"input": "x"})), "session_id");
        assert_eq!(field(json!({"session_id": 3, "input": "x"})), "session_id");
        assert_eq!(field(json!({"session_id": "s", "input": 5})), "input");
        assert_eq!(field(json!({"session_id": "s", "input": "x", "now": "t"})), "now");
        assert_eq!(field(json!({"session_id": "s", "input": "x", "result": 1})), "result");
        assert_eq!(field(json!([1])), "$");
        // Neither a call nor a step: read as a call, refused as every
        // frontend refuses a call without `tool_name`.
        assert!(matches!(parse_step(&json!({"session_id": "s"})), Ok(Step::Call(_))));
    }
}
