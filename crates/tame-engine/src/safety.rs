//! Payload safety in policies.yml: argument schemas (`tools:` /
//! `tools_file:`, seed 002), tool contracts (`tool_contracts:`, seed 004),
//! agent identity binding (`agents:`) and the payload scan choice
//! (`payload:`), checked before any rule runs.
//!
//! ```yaml
//! tools:                        # or `tools_file: tools.yml` (relative to the policy file;
//!   - name: send_email          #  a list, or a document with a `tools:` key)
//!     description: Send an e-mail
//!     input_schema: {type: object, required: [to], properties: {to: {type: string}}}
//! tool_contracts:
//!   send_email:
//!     allowed_request_tags: [personal.pii.email]
//!     allowed_response_fields: [status, message_id]
//! agents:
//!   support_bot: {allowed_tools: ["send_email", "search_*"]}
//! payload:
//!   secrets: deny               # deny | redact | allow (default allow)
//!   pii: redact                 # deny | redact | allow (default allow)
//! ```
//!
//! Evaluation order (each denial names a fixed built-in rule, shown by
//! `evaluate` and `explain` as `rule_name`):
//! 1. [`RULE_AGENT_BINDING`]: with `agents:`, the call's `agent_id` must be
//!    allowed to call the tool.
//! 2. [`RULE_TOOL_SCHEMA`]: the arguments must satisfy the tool's
//!    `input_schema`; the reason names the JSON path of the first failure.
//! 3. [`RULE_TOOL_CONTRACT`]: the call's data tags, read from
//!    `metadata.data_tags` (a list of strings), must be allowed by the tool's
//!    contract (seed 004's reason, e.g. `Tag 'personal.financial' not in
//!    allowed_request_tags for send_email`).
//! 4. [`RULE_PAYLOAD_SECRETS`] / [`RULE_PAYLOAD_PII`]: with `payload.secrets:
//!    deny` (or `pii: deny`), arguments holding a secret (personal data) are
//!    denied. With `redact`, the call goes on to the rules and
//!    [`crate::Policy::sanitize_args`] gives the arguments to pass on instead.
//!    With `allow` (the default), conditions decide (`has_secret(args)`,
//!    `has_pii(args)`).
//!
//! Then the rules. A policy with none of these sections costs one boolean
//! check per call.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tame_safety::{Category, Contracts, RequestValidation, Scanner, ToolSchemas};

use crate::diag::Reporter;
use crate::facade::{Action, Decision, Request};
use crate::locate::YNode;
use crate::request::value_to_json;

/// Built-in rule name: the agent may not call the tool (`agents:`).
pub const RULE_AGENT_BINDING: &str = "agent_binding";
/// Built-in rule name: the arguments fail the tool's `input_schema` (`tools:`).
pub const RULE_TOOL_SCHEMA: &str = "tool_schema";
/// Built-in rule name: a data tag the tool's contract does not allow (`tool_contracts:`).
pub const RULE_TOOL_CONTRACT: &str = "tool_contract";
/// Built-in rule name: a secret in the arguments with `payload.secrets: deny`.
pub const RULE_PAYLOAD_SECRETS: &str = "payload_secrets";
/// Built-in rule name: personal data in the arguments with `payload.pii: deny`.
pub const RULE_PAYLOAD_PII: &str = "payload_pii";

/// Every built-in rule name (tests in the file may expect them).
pub const BUILTIN_RULES: [&str; 5] = [
    RULE_AGENT_BINDING,
    RULE_TOOL_SCHEMA,
    RULE_TOOL_CONTRACT,
    RULE_PAYLOAD_SECRETS,
    RULE_PAYLOAD_PII,
];

pub(crate) fn is_builtin_rule(name: &str) -> bool {
    BUILTIN_RULES.contains(&name)
}

/// What to do with secrets or personal data found in a call's arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PayloadMode {
    /// Leave it to the rules' conditions (the default).
    #[default]
    Allow,
    /// Deny the call before any rule runs.
    Deny,
    /// Let the rules decide, and pass on redacted arguments ([`crate::Policy::sanitize_args`]).
    Redact,
}

/// The `payload:` section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayloadPolicy {
    #[serde(default)]
    pub secrets: PayloadMode,
    #[serde(default)]
    pub pii: PayloadMode,
}

/// The raw sections as read from the file.
#[derive(Debug, Default)]
pub(crate) struct Sections {
    pub tools: Option<serde_yaml::Value>,
    pub tools_file: Option<serde_yaml::Value>,
    pub tool_contracts: Option<serde_yaml::Value>,
    pub agents: Option<serde_yaml::Value>,
    pub payload: Option<serde_yaml::Value>,
}

/// The compiled sections.
#[derive(Debug)]
pub(crate) struct Safety {
    pub schemas: ToolSchemas,
    pub contracts: Contracts,
    pub payload: PayloadPolicy,
    /// False when nothing is declared: `evaluate` skips everything here.
    pub active: bool,
}

fn span_of(node: Option<&YNode>) -> Option<std::ops::Range<usize>> {
    node.map(YNode::span)
}

/// Compiles the sections, reporting errors with their location.
pub(crate) fn load(r: &mut Reporter<'_>, origin: &str, tree: Option<&YNode>, sections: Sections) -> Safety {
    let section_node = |key: &str| tree.and_then(|t| t.get(key));
    let mut schemas = ToolSchemas::empty();
    let tools_json = match (&sections.tools, &sections.tools_file) {
        (Some(_), Some(_)) => {
            r.error(
                "`tools` and `tools_file` cannot both be given".into(),
                span_of(section_node("tools_file")),
                None,
                Some("declare the tools in one place".into()),
            );
            None
        }
        (Some(t), None) => match serde_json::to_value(t) {
            Ok(v) => Some((v, None)),
            Err(e) => {
                r.error(
                    format!("invalid `tools` section: {e}"),
                    span_of(section_node("tools")),
                    None,
                    None,
                );
                None
            }
        },
        (None, Some(f)) => read_tools_file(r, origin, f, section_node("tools_file")).map(|(v, p)| (v, Some(p))),
        (None, None) => None,
    };
    if let Some((json, file)) = tools_json {
        match ToolSchemas::from_json(&json) {
            Ok(s) => schemas = s,
            Err(e) => {
                for err in e.errors {
                    let (span, prefix) = match &file {
                        // Errors in another file point at `tools_file:` and name the file.
                        Some(path) => (span_of(section_node("tools_file")), format!("{path}: ")),
                        None => {
                            let list = section_node("tools");
                            let item = list.and_then(|n| n.items().get(err.index));
                            (span_of(item.or(list)), String::new())
                        }
                    };
                    let name = if err.tool.is_empty() {
                        format!("tools[{}]", err.index)
                    } else {
                        format!("tool `{}` (tools[{}])", err.tool, err.index)
                    };
                    r.error(format!("{prefix}{name}: {}", err.message), span, None, None);
                }
            }
        }
    }
    let contracts = match Contracts::from_yaml_sections(sections.tool_contracts.as_ref(), sections.agents.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            for err in e.errors {
                let node = section_node(&err.section);
                let span = node
                    .and_then(|n| n.entry(&err.name))
                    .map(|(k, _)| k.span())
                    .or_else(|| span_of(node));
                let what = if err.name.is_empty() {
                    format!("`{}`", err.section)
                } else if err.section == "agents" {
                    format!("agent `{}` in `agents`", err.name)
                } else {
                    format!("tool `{}` in `{}`", err.name, err.section)
                };
                r.error(format!("{what}: {}", err.message), span, None, None);
            }
            Contracts::empty()
        }
    };
    let payload = match &sections.payload {
        None | Some(serde_yaml::Value::Null) => PayloadPolicy::default(),
        Some(v) => match PayloadPolicy::deserialize(v) {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                r.error(
                    format!("invalid `payload` section: {msg}"),
                    span_of(section_node("payload")),
                    None,
                    Some("expected `payload: {secrets: deny|redact|allow, pii: deny|redact|allow}`".into()),
                );
                PayloadPolicy::default()
            }
        },
    };
    let active = !schemas.is_empty() || !contracts.is_empty() || payload != PayloadPolicy::default();
    Safety {
        schemas,
        contracts,
        payload,
        active,
    }
}

fn read_tools_file(
    r: &mut Reporter<'_>,
    origin: &str,
    value: &serde_yaml::Value,
    node: Option<&YNode>,
) -> Option<(serde_json::Value, String)> {
    let Some(rel) = value.as_str() else {
        r.error("`tools_file` must be a path".into(), span_of(node), None, None);
        return None;
    };
    let path = Path::new(origin)
        .parent()
        .map_or_else(|| Path::new(rel).to_path_buf(), |dir| dir.join(rel));
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            r.error(
                format!("cannot read tools file {shown}: {e}"),
                span_of(node),
                None,
                None,
            );
            return None;
        }
    };
    let doc: serde_json::Value = match serde_yaml::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            r.error(format!("{shown}: invalid YAML: {e}"), span_of(node), None, None);
            return None;
        }
    };
    let list = match doc {
        serde_json::Value::Object(mut m) if m.contains_key("tools") => m.remove("tools").unwrap_or_default(),
        other => other,
    };
    Some((list, shown))
}

fn deny(rule: &'static str, reason: String, version: &Arc<str>) -> Decision {
    Decision {
        action: Action::Deny,
        rule_name: Some(Arc::from(rule)),
        reason: Arc::from(reason),
        policy_version: version.clone(),
    }
}

/// `metadata.data_tags` of a call: its strings (other items are ignored).
pub(crate) fn data_tags(req: &Request) -> Vec<String> {
    match value_to_json(&req.metadata).get("data_tags") {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

impl Safety {
    /// The built-in checks, in order; `Some` is a denial.
    pub(crate) fn precheck(&self, req: &Request, version: &Arc<str>) -> Option<Decision> {
        let tool = &*req.tool;
        if !self.contracts.is_empty() {
            let v = self.contracts.validate_agent(req.agent_id.as_deref(), tool);
            if !v.allowed {
                return Some(deny(RULE_AGENT_BINDING, v.reason, version));
            }
        }
        let scan = self.payload.secrets == PayloadMode::Deny || self.payload.pii == PayloadMode::Deny;
        let needs_json = self.schemas.has_schema(tool) || scan;
        let args = needs_json.then(|| value_to_json(&req.args));
        if let Some(args) = &args
            && let Err(v) = self.schemas.validate_args(tool, args)
        {
            return Some(deny(RULE_TOOL_SCHEMA, v.to_string(), version));
        }
        if self.contracts.contract(tool).is_some() {
            let v = self.contracts.validate_tool_request(tool, &data_tags(req));
            if !v.allowed {
                return Some(deny(RULE_TOOL_CONTRACT, v.reason, version));
            }
        }
        if let Some(args) = &args
            && scan
        {
            for f in Scanner::global().scan(args) {
                let (mode, rule, what) = match f.category {
                    Category::Secret => (self.payload.secrets, RULE_PAYLOAD_SECRETS, "a secret"),
                    Category::Pii => (self.payload.pii, RULE_PAYLOAD_PII, "personal data"),
                };
                if mode == PayloadMode::Deny {
                    let reason = format!(
                        "arguments of `{tool}` contain {what} ({} at {})",
                        f.kind.as_str(),
                        f.path
                    );
                    return Some(deny(rule, reason, version));
                }
            }
        }
        None
    }

    /// Arguments with what `payload:` says to redact replaced by
    /// `[REDACTED:kind]`; `None` when nothing is to be redacted.
    pub(crate) fn sanitize_args(&self, req: &Request) -> Option<serde_json::Value> {
        let secrets = self.payload.secrets == PayloadMode::Redact;
        let pii = self.payload.pii == PayloadMode::Redact;
        if !secrets && !pii {
            return None;
        }
        let mut args = value_to_json(&req.args);
        let found = Scanner::global().redact_where(&mut args, |k| match k.category() {
            Category::Secret => secrets,
            Category::Pii => pii,
        });
        (!found.is_empty()).then_some(args)
    }

    pub(crate) fn validate_tool_request<S: AsRef<str>>(&self, tool: &str, tags: &[S]) -> RequestValidation {
        self.contracts.validate_tool_request(tool, tags)
    }
}
