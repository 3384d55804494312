//! The serde model of `policies.yml`, current and legacy formats.
//!
//! Rules and tests are first read as plain YAML values so that one bad rule
//! does not hide the errors of the others; each is then read into its own
//! typed model. Unknown keys are errors everywhere.

use indexmap::IndexMap;
use serde::Deserialize;

/// The top level of a policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileModel {
    #[serde(default)]
    pub version: Option<serde_yaml::Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub rules: Option<Vec<serde_yaml::Value>>,
    #[serde(default)]
    pub tests: Option<Vec<serde_yaml::Value>>,
    /// Payload safety sections (see `crate::safety`), read there.
    #[serde(default)]
    pub tools: Option<serde_yaml::Value>,
    #[serde(default)]
    pub tools_file: Option<serde_yaml::Value>,
    #[serde(default)]
    pub tool_contracts: Option<serde_yaml::Value>,
    #[serde(default)]
    pub agents: Option<serde_yaml::Value>,
    #[serde(default)]
    pub payload: Option<serde_yaml::Value>,
}

/// `tools:` as a list of globs, or a single glob.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Tools {
    One(String),
    Many(Vec<String>),
}

impl Tools {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Tools::One(s) => vec![s],
            Tools::Many(v) => v,
        }
    }
}

/// A condition: a string, or a YAML boolean (`condition: true`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ConditionText {
    Bool(bool),
    Text(String),
}

/// A rule of the current format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleModel {
    pub name: String,
    pub action: String,
    #[serde(default)]
    pub tools: Option<Tools>,
    #[serde(default)]
    pub condition: Option<ConditionText>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A rule of the original tame server's format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LegacyRuleModel {
    pub name: String,
    pub action: String,
    #[serde(default)]
    pub tools: Option<Tools>,
    #[serde(default)]
    pub conditions: Option<LegacyConditionsModel>,
    #[serde(default)]
    pub description: Option<String>,
}

/// The legacy `conditions:` map.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LegacyConditionsModel {
    #[serde(default)]
    pub arg_contains: Option<IndexMap<String, serde_yaml::Value>>,
    #[serde(default)]
    pub arg_not_contains: Option<IndexMap<String, serde_yaml::Value>>,
    #[serde(default)]
    pub session_context: Option<IndexMap<String, serde_yaml::Value>>,
}

/// A test case kept in the policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestModel {
    #[serde(default)]
    pub name: Option<String>,
    pub call: serde_json::Value,
    pub expect: String,
    #[serde(default)]
    pub rule: Option<String>,
}

/// The YAML value as text, for versions written as numbers (`1.0`).
pub(crate) fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
