//! A LangChain-style tool wrapper guarded by Tame, driven by a fake model.
//!
//! LangChain agents call tools through objects with a `name`, a
//! `description` and `invoke(input) -> str`; errors the agent should see go
//! back as text (LangChain's `handle_tool_error`). [`GuardedTool`] keeps that
//! shape and asks Tame first: a denied call returns the policy's reason as
//! the tool's output, an approval is waited for, an allowed call runs and
//! its result is recorded. The "model" is scripted, like LangChain's
//! `FakeListChatModel`, so the example runs in CI without a network.
//!
//! Run: `cargo run -p tame-integrations --example langchain_tool`

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tame_engine::{Action, Policy};
use tame_integrations::{ApprovalOutcome, CallOutcome, CallStatus, EmbeddedGuard, Guard, ToolCall};

const POLICY: &str = r#"
version: "2026-11"
description: "support agent"
default: deny
rules:
  - name: no_destructive_shell
    action: deny
    tools: ["shell"]
    condition: 'args.command.contains("rm ")'
    reason: "Destructive shell commands are blocked ({args.command})"
  - name: big_refunds_need_approval
    action: approve
    tools: ["refund"]
    condition: "args.amount > 100"
    reason: "Refunds above 100 need a human"
  - name: support_tools
    action: allow
    tools: ["search_orders", "shell", "refund"]
"#;

type ToolFn = Box<dyn Fn(&Value) -> Result<Value, String> + Send + Sync>;

/// A tool as LangChain sees it, with Tame in front.
#[allow(missing_debug_implementations, reason = "holds a closure")]
pub struct GuardedTool<G> {
    pub name: String,
    pub description: String,
    func: ToolFn,
    guard: Arc<G>,
    session_id: String,
}

impl<G: Guard> GuardedTool<G> {
    pub fn new(name: &str, description: &str, guard: Arc<G>, session_id: &str, func: ToolFn) -> Self {
        GuardedTool {
            name: name.into(),
            description: description.into(),
            func,
            guard,
            session_id: session_id.into(),
        }
    }

    /// `invoke` as in LangChain: the text the agent reads back.
    pub async fn invoke(&self, input: Value) -> String {
        let call = ToolCall::new(&self.name, input.clone(), &self.session_id);
        let mut verdict = match self.guard.enforce(&call).await {
            Ok(verdict) => verdict,
            Err(err) => return format!("Tool error: no policy decision ({err:#})"),
        };
        match verdict.decision {
            Action::Deny => return format!("Tool call denied: {}", verdict.reason),
            Action::Approve => {
                let id = verdict.approval_id.clone().unwrap_or_default();
                match self.guard.wait_approval(&id, Duration::from_secs(30)).await {
                    Ok(ApprovalOutcome::Approved) => {
                        // Use the approval: the same call, asked again.
                        match self.guard.release(&call, &id).await {
                            Ok(released) if released.decision == Action::Allow => verdict = released,
                            Ok(released) => {
                                return format!("Tool call denied: {}", released.reason);
                            }
                            Err(err) => return format!("Tool error: {err:#}"),
                        }
                    }
                    Ok(ApprovalOutcome::Rejected(why)) => {
                        return format!("Tool call rejected by a human: {}", why.unwrap_or_default());
                    }
                    Ok(ApprovalOutcome::Pending) | Err(_) => {
                        return format!("Tool call awaits approval {id}: {}", verdict.reason);
                    }
                }
            }
            Action::Allow => {}
        }
        let started = Instant::now();
        let output = (self.func)(&input);
        let outcome = CallOutcome {
            status: if output.is_ok() {
                CallStatus::Success
            } else {
                CallStatus::Error
            },
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error_message: output.as_ref().err().cloned(),
            result: output.clone().unwrap_or(Value::Null),
            extra: Map::new(),
        };
        if let Err(err) = self.guard.record(&verdict, &call, &outcome).await {
            eprintln!("could not record the result: {err:#}");
        }
        match output {
            Ok(value) => value.to_string(),
            Err(message) => format!("Tool error: {message}"),
        }
    }
}

/// One step of the scripted model: call a tool, or answer.
enum Step {
    Call(&'static str, Value),
    Final(&'static str),
}

/// A fake chat model replaying a script (LangChain's `FakeListChatModel`).
struct FakeModel {
    script: VecDeque<Step>,
}

impl FakeModel {
    fn next(&mut self, _observation: Option<&str>) -> Step {
        self.script.pop_front().unwrap_or(Step::Final("(script exhausted)"))
    }
}

/// The human at the approval desk: refunds up to 500 are fine.
fn desk(call: &ToolCall, _verdict: &tame_integrations::Verdict) -> ApprovalOutcome {
    match call.tool_args.get("amount").and_then(Value::as_f64) {
        Some(amount) if amount <= 500.0 => ApprovalOutcome::Approved,
        _ => ApprovalOutcome::Rejected(Some("refunds above 500 go to finance".into())),
    }
}

/// Runs the agent loop; returns the transcript.
pub async fn run() -> anyhow::Result<Vec<String>> {
    let policy = Policy::from_yaml(POLICY, "langchain_tool.rs").map_err(|e| anyhow::anyhow!("{e}"))?;
    let guard = Arc::new(EmbeddedGuard::new(Arc::new(policy)).with_approver(Arc::new(desk)));
    let session = "lc-session-1";
    let tools = [
        GuardedTool::new(
            "search_orders",
            "Find a customer's orders",
            Arc::clone(&guard),
            session,
            Box::new(|input| Ok(json!({"orders": [{"id": 17, "customer": input["customer"], "total": 80}]}))),
        ),
        GuardedTool::new(
            "shell",
            "Run a shell command",
            Arc::clone(&guard),
            session,
            Box::new(|input| {
                Ok(json!(format!(
                    "pretend output of `{}`",
                    input["command"].as_str().unwrap_or_default()
                )))
            }),
        ),
        GuardedTool::new(
            "refund",
            "Refund an order",
            Arc::clone(&guard),
            session,
            Box::new(|input| Ok(json!({"refunded": input["amount"], "order": input["order"]}))),
        ),
    ];
    let mut model = FakeModel {
        script: VecDeque::from([
            Step::Call("search_orders", json!({"customer": "ada"})),
            Step::Call("shell", json!({"command": "ls /var/log"})),
            Step::Call("shell", json!({"command": "rm -rf /var/log"})),
            Step::Call("refund", json!({"order": 17, "amount": 80})),
            Step::Call("refund", json!({"order": 17, "amount": 300})),
            Step::Call("refund", json!({"order": 17, "amount": 900})),
            Step::Final("Refunded what I was allowed to."),
        ]),
    };
    let mut transcript = Vec::new();
    let mut observation: Option<String> = None;
    loop {
        match model.next(observation.as_deref()) {
            Step::Final(answer) => {
                transcript.push(format!("final: {answer}"));
                break;
            }
            Step::Call(name, input) => {
                let Some(tool) = tools.iter().find(|t| t.name == name) else {
                    anyhow::bail!("the model asked for unknown tool `{name}`");
                };
                let output = tool.invoke(input.clone()).await;
                transcript.push(format!("{name} {input} -> {output}"));
                observation = Some(output);
            }
        }
    }
    let log = guard.log();
    transcript.push(format!(
        "audit: {}",
        log.iter()
            .map(|e| e.policy_decision.as_str())
            .collect::<Vec<_>>()
            .join(",")
    ));
    Ok(transcript)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    for line in run().await? {
        println!("{line}");
    }
    Ok(())
}
