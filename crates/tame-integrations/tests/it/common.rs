//! Shared helpers: fixture paths and a scripted guard.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tame_engine::Action;
use tame_integrations::{ApprovalOutcome, CallOutcome, Guard, ToolCall, Verdict};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A guard whose decisions are scripted per tool; records everything.
#[derive(Debug, Default)]
pub struct ScriptedGuard {
    pub decisions: Vec<(String, Action)>,
    pub approval: Option<ApprovalOutcome>,
    pub hidden: Vec<String>,
    pub fail: bool,
    /// The policy denies a call when it comes back approved.
    pub deny_on_release: bool,
    /// How long recording a result takes (a slow server).
    pub record_delay: Duration,
    pub calls: Mutex<Vec<ToolCall>>,
    pub records: Mutex<Vec<(Verdict, CallOutcome)>>,
    pub waited: Mutex<Vec<(String, Duration)>>,
}

impl ScriptedGuard {
    pub fn new(decisions: &[(&str, Action)]) -> Self {
        ScriptedGuard {
            decisions: decisions.iter().map(|(t, a)| ((*t).to_owned(), *a)).collect(),
            ..ScriptedGuard::default()
        }
    }

    pub fn records(&self) -> Vec<(Verdict, CallOutcome)> {
        self.records.lock().unwrap().clone()
    }

    pub fn calls(&self) -> Vec<ToolCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl Guard for ScriptedGuard {
    async fn enforce(&self, call: &ToolCall) -> tame_integrations::Result<Verdict> {
        self.calls.lock().unwrap().push(call.clone());
        if self.fail {
            return Err(tame_integrations::Error::Unreachable(
                "policy server unreachable".into(),
            ));
        }
        let decision = self
            .decisions
            .iter()
            .find(|(tool, _)| tool == &call.tool_name)
            .map_or(Action::Deny, |(_, a)| *a);
        let n = self.calls.lock().unwrap().len();
        Ok(Verdict {
            decision,
            rule_name: Some(format!("rule_for_{}", call.tool_name)),
            reason: format!("scripted {} of {}", decision.as_str(), call.tool_name),
            policy_version: "test".to_owned(),
            log_id: Some(format!("log-{n}")),
            approval_id: (decision == Action::Approve).then(|| format!("appr-{n}")),
            session_id: call.session_id.clone(),
        })
    }

    async fn release(&self, call: &ToolCall, approval_id: &str) -> tame_integrations::Result<Verdict> {
        let decision = if self.deny_on_release {
            Action::Deny
        } else {
            Action::Allow
        };
        Ok(Verdict {
            decision,
            rule_name: Some(format!("rule_for_{}", call.tool_name)),
            reason: format!("released {approval_id}"),
            policy_version: "test".to_owned(),
            log_id: Some(format!("released-{approval_id}")),
            approval_id: None,
            session_id: call.session_id.clone(),
        })
    }

    async fn record(
        &self,
        verdict: &Verdict,
        _call: &ToolCall,
        outcome: &CallOutcome,
    ) -> tame_integrations::Result<()> {
        tokio::time::sleep(self.record_delay).await;
        self.records.lock().unwrap().push((verdict.clone(), outcome.clone()));
        Ok(())
    }

    async fn wait_approval(&self, approval_id: &str, timeout: Duration) -> tame_integrations::Result<ApprovalOutcome> {
        self.waited.lock().unwrap().push((approval_id.to_owned(), timeout));
        Ok(self.approval.clone().unwrap_or(ApprovalOutcome::Pending))
    }

    fn denies_unconditionally(&self, tool: &str) -> bool {
        self.hidden.iter().any(|h| h == tool)
    }
}

/// Parses each non-empty line as JSON.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not json: {l:?}: {e}")))
        .collect()
}

/// The message with JSON-RPC id `id`.
pub fn by_id(messages: &[Value], id: i64) -> Value {
    messages
        .iter()
        .find(|m| m.get("id") == Some(&Value::from(id)))
        .unwrap_or_else(|| panic!("no message with id {id} in {messages:#?}"))
        .clone()
}
