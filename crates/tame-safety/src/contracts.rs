//! Tool contracts (seed 004) and agent identity binding.
//!
//! ```yaml
//! tool_contracts:
//!   send_email:
//!     allowed_request_tags: [personal.pii.email, personal.pii.name]
//!     allowed_response_fields: [status, message_id]
//!   "*":                      # optional: contract for tools without their own
//!     allowed_request_tags: [public]
//!     allowed_response_fields: [result]
//! agents:
//!   support_bot:
//!     allowed_tools: ["send_email", "search_*"]   # globs
//!   "*":                      # optional: any other agent, or a call without agent id
//!     allowed_tools: ["search_*"]
//! ```
//!
//! Decisions (documented behaviour):
//! - **Tag hierarchy**: tags are dot-separated paths; an allowed tag allows
//!   itself and everything below it. `personal.pii` allows `personal.pii.email`;
//!   `personal.pii.email` does *not* allow `personal.pii` (the parent is broader),
//!   and `personal.pii` does not allow `personal.piix`.
//! - **Tools without a contract** (and no `"*"` contract): requests are not
//!   restricted by tags and responses pass unchanged; the policy's rules still
//!   apply. With a contract, responses are deny-by-default: only listed
//!   top-level fields survive, and a response that is not a JSON object is
//!   withheld entirely (`safe_response: null`, `stripped_fields: ["$"]`).
//! - **Agents**: without an `agents:` section any agent may call any tool.
//!   With one, binding is deny-by-default: an agent not listed (or a call with
//!   no agent id) may only call what the `"*"` entry allows, nothing without it.
//! - **Payload scan** in [`Contracts::intercept_tool_request`]: any secret
//!   blocks the request; personal data whose tag ([`Kind::data_tag`]) the
//!   tool's contract does not allow is redacted from the sanitized payload;
//!   a payload too deep or too large to scan completely is blocked.

use globset::{Glob, GlobSet, GlobSetBuilder};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scan::{Category, Finding, Kind, Scanner};

/// What one tool may receive and emit (seed 004's contract format).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolContract {
    /// Data tags this tool may receive.
    #[serde(default)]
    pub allowed_request_tags: Vec<String>,
    /// Top-level response fields the agent may see.
    #[serde(default)]
    pub allowed_response_fields: Vec<String>,
}

impl ToolContract {
    /// True when `tag` is one of the allowed tags or below one of them.
    #[must_use]
    pub fn allows_tag(&self, tag: &str) -> bool {
        self.allowed_request_tags.iter().any(|a| tag_within(tag, a))
    }
}

/// Which tools one agent may call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBinding {
    /// Tool name globs (`*` within a name, `?`, `[abc]`, `{a,b}`).
    #[serde(default)]
    pub allowed_tools: Vec<String>,
}

/// True when `tag` equals `allowed` or is a descendant (`allowed.` prefix).
#[must_use]
pub fn tag_within(tag: &str, allowed: &str) -> bool {
    tag == allowed
        || (tag.len() > allowed.len() && tag.starts_with(allowed) && tag.as_bytes().get(allowed.len()) == Some(&b'.'))
}

/// Answer of [`Contracts::validate_tool_request`] and [`Contracts::validate_agent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestValidation {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why, e.g. `Tag 'personal.financial' not in allowed_request_tags for send_email`.
    pub reason: String,
}

impl RequestValidation {
    fn allow(reason: String) -> Self {
        RequestValidation { allowed: true, reason }
    }
    fn deny(reason: String) -> Self {
        RequestValidation { allowed: false, reason }
    }
}

/// `allow` or `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterceptAction {
    /// Run the tool with the sanitized payload.
    Allow,
    /// Do not run the tool.
    Block,
}

/// Answer of [`Contracts::intercept_tool_request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInterception {
    /// `allow` or `block`.
    pub action: InterceptAction,
    /// The payload to pass on: personal data the contract does not allow is
    /// redacted; when blocked, every finding is redacted (safe to log).
    pub payload: Value,
    /// Why.
    pub reason: String,
    /// Everything the scan found (byte ranges refer to the original payload).
    pub findings: Vec<Finding>,
    /// Tags implied by the findings, e.g. `personal.pii.email`.
    pub detected_tags: Vec<String>,
}

/// Answer of [`Contracts::intercept_tool_response`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseInterception {
    /// The response with only the allowed top-level fields.
    pub safe_response: Value,
    /// Names of the removed top-level fields, in response order (`$` when a
    /// non-object response was withheld).
    pub stripped_fields: Vec<String>,
    /// Secrets and personal data in `safe_response` (to label the session).
    pub findings: Vec<Finding>,
}

/// One problem in a `tool_contracts:` or `agents:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{section}.{name}: {message}")]
pub struct ContractItemError {
    /// `tool_contracts` or `agents`.
    pub section: String,
    /// The tool or agent name (empty for the section itself).
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// Why contracts could not be loaded; one entry per problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid contracts: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ContractError {
    /// Every problem found.
    pub errors: Vec<ContractItemError>,
}

#[derive(Debug)]
struct CompiledAgent {
    binding: AgentBinding,
    globs: GlobSet,
}

/// Tool contracts plus agent bindings. `Send + Sync`; compile once.
#[derive(Debug, Default)]
pub struct Contracts {
    tools: IndexMap<String, ToolContract>,
    agents: Option<IndexMap<String, CompiledAgent>>,
}

/// Name of the fallback entry in both sections.
pub const ANY: &str = "*";

impl Contracts {
    /// No contracts and no agent bindings: everything passes (secrets still block
    /// in [`Contracts::intercept_tool_request`]).
    #[must_use]
    pub fn empty() -> Contracts {
        Contracts::default()
    }

    /// Builds from already-typed sections (e.g. fields of the engine's policy
    /// model deserialized with serde). `agents: None` means no agent binding.
    pub fn new(
        tool_contracts: IndexMap<String, ToolContract>,
        agents: Option<IndexMap<String, AgentBinding>>,
    ) -> Result<Contracts, ContractError> {
        build(
            Some(tool_contracts.into_iter().map(|(k, v)| (k, Ok(v))).collect()),
            agents.map(|a| a.into_iter().map(|(k, v)| (k, Ok(v))).collect()),
            Vec::new(),
        )
    }

    /// Loads the `tool_contracts:` and `agents:` sections (either may be absent).
    pub fn from_json(tool_contracts: Option<&Value>, agents: Option<&Value>) -> Result<Contracts, ContractError> {
        let mut errors = Vec::new();
        let tools = json_entries::<ToolContract>("tool_contracts", tool_contracts, &mut errors);
        let agents = json_entries::<AgentBinding>("agents", agents, &mut errors);
        build(tools, agents, errors)
    }

    /// Loads from YAML text holding `tool_contracts:` and/or `agents:` keys
    /// (errors come in file order).
    pub fn from_yaml(source: &str) -> Result<Contracts, ContractError> {
        let doc: serde_yaml::Value = serde_yaml::from_str(source).map_err(|e| ContractError {
            errors: vec![item_error("tool_contracts", "", format!("invalid YAML: {e}"))],
        })?;
        Contracts::from_yaml_sections(doc.get("tool_contracts"), doc.get("agents"))
    }

    /// Loads the two sections from YAML values (order-preserving).
    pub fn from_yaml_sections(
        tool_contracts: Option<&serde_yaml::Value>,
        agents: Option<&serde_yaml::Value>,
    ) -> Result<Contracts, ContractError> {
        let mut errors = Vec::new();
        let tools = yaml_entries::<ToolContract>("tool_contracts", tool_contracts, &mut errors);
        let agents = yaml_entries::<AgentBinding>("agents", agents, &mut errors);
        build(tools, agents, errors)
    }

    /// The contract that applies to `tool`: its own, else the `"*"` one.
    #[must_use]
    pub fn contract(&self, tool: &str) -> Option<&ToolContract> {
        self.tools.get(tool).or_else(|| self.tools.get(ANY))
    }

    /// True when neither contracts nor agent bindings are declared.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.agents.is_none()
    }

    /// The agent binding for `agent` (its own, else `"*"`), when `agents:` is declared.
    #[must_use]
    pub fn agent_binding(&self, agent: Option<&str>) -> Option<&AgentBinding> {
        let agents = self.agents.as_ref()?;
        agent
            .and_then(|a| agents.get(a))
            .or_else(|| agents.get(ANY))
            .map(|c| &c.binding)
    }

    /// Seed 004's lightweight check: may `tool` receive data with these tags?
    #[must_use]
    pub fn validate_tool_request<S: AsRef<str>>(&self, tool: &str, data_tags: &[S]) -> RequestValidation {
        let Some(contract) = self.contract(tool) else {
            return RequestValidation::allow(format!("No contract for {tool}; request tags are not restricted"));
        };
        for tag in data_tags {
            let tag = tag.as_ref();
            if !contract.allows_tag(tag) {
                return RequestValidation::deny(format!("Tag '{tag}' not in allowed_request_tags for {tool}"));
            }
        }
        RequestValidation::allow(format!("All request tags allowed for {tool}"))
    }

    /// Agent identity binding: may `agent` call `tool`?
    #[must_use]
    pub fn validate_agent(&self, agent: Option<&str>, tool: &str) -> RequestValidation {
        let Some(agents) = &self.agents else {
            return RequestValidation::allow("No agent bindings declared".to_owned());
        };
        let entry = agent.and_then(|a| agents.get(a).map(|c| (a, c)));
        let (label, compiled) = match (entry, agents.get(ANY)) {
            (Some((a, c)), _) => (format!("agent '{a}'"), c),
            (None, Some(c)) => (
                agent.map_or_else(|| "anonymous agent".to_owned(), |a| format!("agent '{a}'")),
                c,
            ),
            (None, None) => {
                return RequestValidation::deny(match agent {
                    Some(a) => format!("Agent '{a}' is not declared in agents"),
                    None => "No agent id given and agents has no '*' entry".to_owned(),
                });
            }
        };
        if compiled.globs.is_match(tool) {
            RequestValidation::allow(format!("Tool '{tool}' allowed for {label}"))
        } else {
            RequestValidation::deny(format!("Tool '{tool}' not in allowed_tools for {label}"))
        }
    }

    /// Full request interception: agent binding, declared tags, then a payload
    /// scan (secrets block; personal data the contract does not allow is redacted).
    #[must_use]
    pub fn intercept_tool_request<S: AsRef<str>>(
        &self,
        tool: &str,
        payload: &Value,
        data_tags: &[S],
        agent: Option<&str>,
    ) -> RequestInterception {
        let scanner = Scanner::global();
        let report = scanner.scan_report(payload);
        let mut detected_tags: Vec<String> = Vec::new();
        for f in &report.findings {
            let tag = f.kind.data_tag();
            if !detected_tags.iter().any(|t| t == tag) {
                detected_tags.push(tag.to_owned());
            }
        }
        let blocked = |reason: String, findings: Vec<Finding>, detected_tags: Vec<String>| {
            let mut redacted = payload.clone();
            let _ = scanner.redact(&mut redacted);
            RequestInterception {
                action: InterceptAction::Block,
                payload: redacted,
                reason,
                findings,
                detected_tags,
            }
        };
        let agent_check = self.validate_agent(agent, tool);
        if !agent_check.allowed {
            return blocked(agent_check.reason, report.findings, detected_tags);
        }
        let tag_check = self.validate_tool_request(tool, data_tags);
        if !tag_check.allowed {
            return blocked(tag_check.reason, report.findings, detected_tags);
        }
        if let Some(secret) = report.findings.iter().find(|f| f.category == Category::Secret) {
            let reason = format!(
                "Payload for {tool} contains a secret ({} at {})",
                secret.kind, secret.path
            );
            return blocked(reason, report.findings, detected_tags);
        }
        if report.incomplete() {
            let reason = format!(
                "Payload for {tool} could not be scanned completely (deeper than {} levels or more than {} findings)",
                scanner.options().max_depth,
                scanner.options().max_findings
            );
            return blocked(reason, report.findings, detected_tags);
        }
        let contract = self.contract(tool);
        let not_allowed = |kind: Kind| contract.is_some_and(|c| !c.allows_tag(kind.data_tag()));
        let mut sanitized = payload.clone();
        let redacted = if report.findings.iter().any(|f| not_allowed(f.kind)) {
            scanner.redact_where(&mut sanitized, not_allowed)
        } else {
            Vec::new()
        };
        let reason = if redacted.is_empty() {
            format!("Request allowed for {tool}")
        } else {
            let first = redacted
                .first()
                .map(|f| format!("{} at {}", f.kind, f.path))
                .unwrap_or_default();
            format!(
                "Request allowed for {tool}; redacted {} finding(s) its contract does not allow (first: {first})",
                redacted.len()
            )
        };
        RequestInterception {
            action: InterceptAction::Allow,
            payload: sanitized,
            reason,
            findings: report.findings,
            detected_tags,
        }
    }

    /// Response interception: keep only the contract's top-level fields.
    #[must_use]
    pub fn intercept_tool_response(&self, tool: &str, response: &Value) -> ResponseInterception {
        let (safe_response, stripped_fields) = match (self.contract(tool), response) {
            (None, _) => (response.clone(), Vec::new()),
            (Some(contract), Value::Object(map)) => {
                let mut kept = serde_json::Map::new();
                let mut stripped = Vec::new();
                for (k, v) in map {
                    if contract.allowed_response_fields.iter().any(|f| f == k) {
                        kept.insert(k.clone(), v.clone());
                    } else {
                        stripped.push(k.clone());
                    }
                }
                (Value::Object(kept), stripped)
            }
            (Some(_), _) => (Value::Null, vec!["$".to_owned()]),
        };
        let findings = Scanner::global().scan(&safe_response);
        ResponseInterception {
            safe_response,
            stripped_fields,
            findings,
        }
    }
}

/// One section's entries in file order, each parsed or with its error.
type Entries<T> = Vec<(String, Result<T, String>)>;

fn item_error(section: &str, name: &str, message: String) -> ContractItemError {
    ContractItemError {
        section: section.to_owned(),
        name: name.to_owned(),
        message,
    }
}

fn section_shape_error(section: &str, found: &str) -> ContractItemError {
    let expected = if section == "agents" {
        "a map of agent id to {allowed_tools: [...]}"
    } else {
        "a map of tool name to contract"
    };
    item_error(section, "", format!("must be {expected}, found {found}"))
}

fn json_entries<T: serde::de::DeserializeOwned>(
    section: &str,
    value: Option<&Value>,
    errors: &mut Vec<ContractItemError>,
) -> Option<Entries<T>> {
    match value? {
        Value::Null => None,
        Value::Object(map) => Some(
            map.iter()
                .map(|(k, v)| (k.clone(), T::deserialize(v).map_err(|e| e.to_string())))
                .collect(),
        ),
        other => {
            errors.push(section_shape_error(section, kind_of(other)));
            None
        }
    }
}

fn yaml_entries<T: serde::de::DeserializeOwned>(
    section: &str,
    value: Option<&serde_yaml::Value>,
    errors: &mut Vec<ContractItemError>,
) -> Option<Entries<T>> {
    match value? {
        serde_yaml::Value::Null => None,
        serde_yaml::Value::Mapping(map) => {
            let mut out = Vec::with_capacity(map.len());
            for (k, v) in map {
                let Some(name) = k.as_str() else {
                    errors.push(item_error(
                        section,
                        "",
                        format!("entry names must be strings, found {k:?}"),
                    ));
                    continue;
                };
                out.push((name.to_owned(), T::deserialize(v).map_err(|e| e.to_string())));
            }
            Some(out)
        }
        serde_yaml::Value::Sequence(_) => {
            errors.push(section_shape_error(section, "a list"));
            None
        }
        _ => {
            errors.push(section_shape_error(section, "a scalar"));
            None
        }
    }
}

fn build(
    tools: Option<Entries<ToolContract>>,
    agents: Option<Entries<AgentBinding>>,
    mut errors: Vec<ContractItemError>,
) -> Result<Contracts, ContractError> {
    let mut contracts = IndexMap::new();
    for (name, entry) in tools.unwrap_or_default() {
        let contract = match entry {
            Ok(c) => c,
            Err(m) => {
                errors.push(item_error("tool_contracts", &name, m));
                continue;
            }
        };
        for tag in &contract.allowed_request_tags {
            if let Err(m) = check_tag(tag) {
                errors.push(item_error("tool_contracts", &name, m));
            }
        }
        if contract.allowed_response_fields.iter().any(String::is_empty) {
            errors.push(item_error(
                "tool_contracts",
                &name,
                "empty response field name".to_owned(),
            ));
        }
        contracts.insert(name, contract);
    }
    let compiled_agents = agents.map(|entries| {
        let mut out = IndexMap::new();
        for (name, entry) in entries {
            let binding = match entry {
                Ok(b) => b,
                Err(m) => {
                    errors.push(item_error("agents", &name, m));
                    continue;
                }
            };
            let mut builder = GlobSetBuilder::new();
            let mut ok = true;
            for pattern in &binding.allowed_tools {
                match Glob::new(pattern) {
                    Ok(g) => {
                        builder.add(g);
                    }
                    Err(e) => {
                        ok = false;
                        errors.push(item_error(
                            "agents",
                            &name,
                            format!("invalid tool glob `{pattern}`: {e}"),
                        ));
                    }
                }
            }
            if !ok {
                continue;
            }
            match builder.build() {
                Ok(globs) => {
                    out.insert(name, CompiledAgent { binding, globs });
                }
                Err(e) => errors.push(item_error("agents", &name, format!("invalid tool globs: {e}"))),
            }
        }
        out
    });
    if errors.is_empty() {
        Ok(Contracts {
            tools: contracts,
            agents: compiled_agents,
        })
    } else {
        Err(ContractError { errors })
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag
            .split('.')
            .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid data tag `{tag}` (expected dot-separated names like `personal.pii.email`)"
        ))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_hierarchy() {
        assert!(tag_within("personal.pii.email", "personal.pii"));
        assert!(tag_within("personal.pii", "personal.pii"));
        assert!(!tag_within("personal.pii", "personal.pii.email"));
        assert!(!tag_within("personal.piix", "personal.pii"));
    }

    #[test]
    fn tag_syntax() {
        assert!(check_tag("personal.pii.email").is_ok());
        assert!(check_tag("personal..pii").is_err());
        assert!(check_tag("").is_err());
        assert!(check_tag("a b").is_err());
    }
}
