//! The serde model of `policies.yml`, current and legacy formats.
//!
//! Rules and tests are first read as plain YAML values so that one bad rule
//! does not hide the errors of the others; each is then read into its own
//! typed model. Unknown keys are errors everywhere.
//!
//! Reading every rule into a `serde_yaml::Value` first is slow on large
//! files, so the loader first tries [`FastRule`]s straight from the text;
//! the value path runs only when that fails, and reports the errors.

use serde::Deserialize;

/// The top level of a policy file.
///
/// `R` is how rules are read: `serde_yaml::Value` (one bad rule does not
/// hide the others) or [`FastRule`] (typed, straight from the text).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "R: Deserialize<'de>"))]
pub(crate) struct FileModel<R = serde_yaml::Value> {
    #[serde(default)]
    pub version: Option<serde_yaml::Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub rules: Option<Vec<R>>,
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

impl<R> FileModel<R> {
    /// The same file with each rule turned into `S`.
    pub fn map_rules<S>(self, f: impl FnMut(R) -> S) -> FileModel<S> {
        FileModel {
            version: self.version,
            description: self.description,
            default: self.default,
            rules: self.rules.map(|v| v.into_iter().map(f).collect()),
            tests: self.tests,
            tools: self.tools,
            tools_file: self.tools_file,
            tool_contracts: self.tool_contracts,
            agents: self.agents,
            payload: self.payload,
        }
    }
}

/// A string read the way a `serde_yaml::Value` reads it: only scalars YAML
/// resolves to strings (not `123`, `true` or `~`), so a typed read accepts
/// exactly what reading through a `Value` accepts.
#[derive(Debug)]
pub(crate) struct StrictString(pub String);

impl<'de> Deserialize<'de> for StrictString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StrictString;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrictString, E> {
                Ok(StrictString(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StrictString, E> {
                Ok(StrictString(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// [`Tools`] without the buffering of an untagged enum: a string or a
/// sequence of strings, as [`StrictString`] reads them.
#[derive(Debug)]
pub(crate) struct FastTools(Tools);

impl<'de> Deserialize<'de> for FastTools {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FastTools;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a tool glob or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FastTools, E> {
                Ok(FastTools(Tools::One(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<FastTools, E> {
                Ok(FastTools(Tools::One(v)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<FastTools, A::Error> {
                let mut out = Vec::new();
                while let Some(StrictString(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(FastTools(Tools::Many(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// [`ConditionText`] without the buffering of an untagged enum.
#[derive(Debug)]
pub(crate) struct FastCondition(ConditionText);

impl<'de> Deserialize<'de> for FastCondition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FastCondition;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a condition string or a boolean")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<FastCondition, E> {
                Ok(FastCondition(ConditionText::Bool(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FastCondition, E> {
                Ok(FastCondition(ConditionText::Text(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<FastCondition, E> {
                Ok(FastCondition(ConditionText::Text(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A current-format rule read straight from the text. Anything this does
/// not accept (legacy keys, odd types, tags) sends the loader down the
/// `Value` path, which reports it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FastRule {
    name: StrictString,
    action: StrictString,
    #[serde(default)]
    tools: Option<FastTools>,
    #[serde(default)]
    condition: Option<FastCondition>,
    #[serde(default)]
    reason: Option<StrictString>,
    #[serde(default)]
    description: Option<StrictString>,
}

impl From<FastRule> for RuleModel {
    fn from(r: FastRule) -> Self {
        RuleModel {
            name: r.name.0,
            action: r.action.0,
            tools: r.tools.map(|t| t.0),
            condition: r.condition.map(|c| c.0),
            reason: r.reason.map(|s| s.0),
            description: r.description.map(|s| s.0),
        }
    }
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
    /// Read by `crate::legacy::read_conditions`, as the original server
    /// read it (YAML 1.1 values, its errors).
    #[serde(default)]
    pub conditions: Option<serde_yaml::Value>,
    #[serde(default)]
    pub description: Option<String>,
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
