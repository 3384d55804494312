//! The serde model of `policies.yml`, current and legacy formats.
//!
//! Rules and tests are first read as plain YAML values so that one bad rule
//! does not hide the errors of the others; each is then read into its own
//! typed model. Unknown keys are errors everywhere.
//!
//! Reading every rule into a `serde_yaml::Value` first is slow on large
//! files, so the loader first tries [`FastRule`]s straight from the text;
//! the value path runs only when that fails, and reports the errors.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::schema::{ActionName, AnyRule, LegacyConditions, VersionText};

/// The top level of a policy file.
///
/// `R` is how rules are read: `serde_yaml::Value` (one bad rule does not
/// hide the others) or [`FastRule`] (typed, straight from the text).
///
/// Its JSON Schema (`tame schema policy`, [`crate::policy_json_schema`]) is
/// derived from this type; fields read as plain YAML values name the type
/// they are read into with `schemars(with)`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, bound(deserialize = "R: Deserialize<'de>"))]
#[schemars(
    bound = "",
    title = "Tame policy (policies.yml)",
    description = "A Tame policy: rules deciding allow, deny or approve for AI agents' tool calls. \
                   The language reference is docs/language.md."
)]
pub(crate) struct FileModel<R = serde_yaml::Value> {
    /// The policy's version, reported with every decision.
    #[serde(default)]
    #[schemars(with = "Option<VersionText>")]
    pub version: Option<serde_yaml::Value>,
    /// What the policy is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The decision when no rule matches (`deny` unless given).
    #[serde(default)]
    #[schemars(with = "Option<ActionName>")]
    pub default: Option<String>,
    /// The rules, first match wins, in file order.
    #[serde(default)]
    #[schemars(with = "Option<Vec<AnyRule>>")]
    pub rules: Option<Vec<R>>,
    /// Test cases (`tame test`).
    #[serde(default)]
    #[schemars(with = "Option<Vec<TestModel>>")]
    pub tests: Option<Vec<serde_yaml::Value>>,
    /// Payload safety sections (see `crate::safety`), read there.
    #[serde(default)]
    #[schemars(
        with = "Option<Vec<tame_safety::ToolSpec>>",
        description = "The tools and the JSON Schema of their arguments, checked before any rule."
    )]
    pub tools: Option<serde_yaml::Value>,
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        description = "A file declaring the tools instead of `tools:` (relative to the policy file)."
    )]
    pub tools_file: Option<serde_yaml::Value>,
    #[serde(default)]
    #[schemars(
        with = "Option<std::collections::BTreeMap<String, tame_safety::ToolContract>>",
        description = "Per tool: the data tags it may receive, the response fields the agent may see."
    )]
    pub tool_contracts: Option<serde_yaml::Value>,
    #[serde(default)]
    #[schemars(
        with = "Option<std::collections::BTreeMap<String, tame_safety::AgentBinding>>",
        description = "Per agent id: the tools it may call (globs)."
    )]
    pub agents: Option<serde_yaml::Value>,
    #[serde(default)]
    #[schemars(
        with = "Option<crate::PayloadPolicy>",
        description = "What to do with secrets and personal data in arguments."
    )]
    pub payload: Option<serde_yaml::Value>,
    /// Named constants conditions read as `lists.NAME`: lists or maps
    /// (allow-listed domains, known payees, ...).
    #[serde(default)]
    #[schemars(with = "Option<std::collections::BTreeMap<String, ListValue>>")]
    pub lists: Option<serde_yaml::Value>,
}

/// A named constant of `lists:`: a list or a map (of strings, numbers,
/// booleans, lists and maps).
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub(crate) enum ListValue {
    List(Vec<serde_json::Value>),
    Map(std::collections::BTreeMap<String, serde_json::Value>),
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
            lists: self.lists,
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
#[derive(Debug, Deserialize, JsonSchema)]
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
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum ConditionText {
    Bool(bool),
    Text(String),
}

/// A rule of the current format.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Rule")]
pub(crate) struct RuleModel {
    /// The rule's name, unique in the file.
    pub name: String,
    /// What the rule decides when it matches.
    #[schemars(with = "ActionName")]
    pub action: String,
    /// The tools it applies to: names or globs (`read_*`); all tools when absent.
    #[serde(default)]
    pub tools: Option<Tools>,
    /// A condition of the policy language (docs/language.md) that must hold for the rule to match.
    #[serde(default)]
    pub condition: Option<ConditionText>,
    /// The reason given with the decision; `{args.path}` and the like are filled in.
    #[serde(default)]
    pub reason: Option<String>,
    /// What the rule is for.
    #[serde(default)]
    pub description: Option<String>,
}

/// A rule of the original tame server's format.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Legacy rule",
    description = "A rule of the original tame server's format (`tame migrate` rewrites it)."
)]
pub(crate) struct LegacyRuleModel {
    pub name: String,
    #[schemars(with = "ActionName")]
    pub action: String,
    #[serde(default)]
    pub tools: Option<Tools>,
    /// Read by `crate::legacy::read_conditions`, as the original server
    /// read it (YAML 1.1 values, its errors).
    #[serde(default)]
    #[schemars(with = "Option<LegacyConditions>", description = "Checks that must all hold.")]
    pub conditions: Option<serde_yaml::Value>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A test case kept in the policy file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Test")]
pub(crate) struct TestModel {
    #[serde(default)]
    pub name: Option<String>,
    /// The call: `{tool_name, tool_args, session_id?, agent_id?, user_id?, metadata?, session?}`.
    #[serde(default)]
    #[schemars(with = "Option<crate::schema::CallSchema>")]
    pub call: Option<serde_json::Value>,
    /// The expected decision (of `call`).
    #[serde(default)]
    #[schemars(with = "Option<ActionName>")]
    pub expect: Option<String>,
    /// The rule expected to decide.
    #[serde(default)]
    pub rule: Option<String>,
    /// A whole session instead of `call` and `expect`, run by `tame test`
    /// in one fresh session: each step a call with its expectation, a user
    /// `input`, or the `result` of the previous call.
    #[serde(default)]
    #[schemars(with = "Option<Vec<crate::schema::StepSchema>>")]
    pub steps: Option<Vec<serde_json::Value>>,
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
