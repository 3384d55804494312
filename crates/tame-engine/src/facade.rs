//! The public types of the engine shared by all frontends: actions,
//! requests and decisions.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tame_lang::Value;

/// What the policy says about a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    /// A human must approve first.
    Approve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Approve => "approve",
        }
    }
}

/// One tool call, converted for the evaluator.
#[derive(Clone, Debug)]
pub struct Request {
    pub tool: Arc<str>,
    /// The tool's arguments: a map (from a JSON object).
    pub args: Value,
    pub session_id: Option<Arc<str>>,
    pub agent_id: Option<Arc<str>>,
    pub user_id: Option<Arc<str>>,
    /// Free-form metadata (`metadata`, alias `context`): a map.
    pub metadata: Value,
    /// The time the call is evaluated at (`now`).
    pub now: jiff::Timestamp,
}

/// The engine's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    /// The matching rule, `None` when the policy's default applied.
    pub rule_name: Option<Arc<str>>,
    /// Why: the rule's reason (rendered template), `Matched rule: <name>`,
    /// or the default's reason. An `Arc` so that a static reason costs no
    /// allocation per decision.
    pub reason: Arc<str>,
    pub policy_version: Arc<str>,
}
