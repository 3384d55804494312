//! The JSON Schema of policies.yml, derived from the loader's model types
//! ([`crate::model::FileModel`]) with schemars. The types here only
//! describe, for the schema, what the loader reads as plain YAML values
//! and checks by hand (actions, versions, legacy conditions); nothing
//! is ever deserialized into them.

use schemars::JsonSchema;

/// A decision.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[expect(dead_code, reason = "describes a string for the schema; never built")]
pub(crate) enum ActionName {
    Allow,
    Deny,
    Approve,
}

/// A version: any text (a number is read as its text).
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "describes a YAML scalar for the schema; never built")]
pub(crate) enum VersionText {
    Text(String),
    Number(f64),
}

/// A rule of either format.
#[derive(JsonSchema)]
#[serde(untagged)]
#[expect(
    dead_code,
    reason = "describes a rule for the schema; the loader tells the formats apart"
)]
pub(crate) enum AnyRule {
    Current(crate::model::RuleModel),
    Legacy(crate::model::LegacyRuleModel),
}

/// The legacy `conditions:` map (read by `crate::legacy`).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "describes the legacy map for the schema; never built")]
pub(crate) struct LegacyConditions {
    /// Arguments that must be present and equal to the value (`"*"`: present, any value).
    arg_contains: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Arguments that must be absent or not equal to the value.
    arg_not_contains: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Entries of `{session_id, agent_id, user_id}` merged with the metadata that must equal the value
    /// (`"*"`: present).
    session_context: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// A call as the API and `tame eval` take it.
#[derive(JsonSchema)]
#[expect(
    dead_code,
    reason = "describes a call for the schema; requests are read by `Request`"
)]
pub(crate) struct CallSchema {
    /// The tool's name.
    tool_name: String,
    /// The tool's arguments.
    #[serde(default)]
    tool_args: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Offline session facts: `{calls, counts, called, labels}`.
    #[serde(default)]
    session: Option<serde_json::Map<String, serde_json::Value>>,
    /// The time of the call (RFC 3339).
    #[serde(default)]
    now: Option<String>,
}

/// A step of a session test: exactly one of `call` (with `expect`, and
/// optionally `rule` and `reason`), `input` or `result`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Test step")]
#[expect(dead_code, reason = "describes a test step for the schema; `tame test` reads steps")]
pub(crate) struct StepSchema {
    /// A call of the test's session.
    call: Option<CallSchema>,
    /// The call's expected decision.
    expect: Option<ActionName>,
    /// The rule expected to decide the call (`null`: the default).
    rule: Option<String>,
    /// A text the call's reason must contain.
    reason: Option<String>,
    /// What the user asked (a user input of the session).
    input: Option<String>,
    /// What the previous call returned (it must have run).
    result: Option<serde_json::Value>,
}

/// The JSON Schema of a policy file (`tame schema policy`).
pub fn policy_json_schema() -> serde_json::Value {
    schemars::schema_for!(crate::model::FileModel).to_value()
}
