//! An OpenAI-style function-calling loop guarded by Tame, with a fake model.
//!
//! The loop speaks the chat-completions message shapes: the assistant
//! answers with `tool_calls` whose `function.arguments` is a JSON *string*,
//! and each call's outcome goes back as a `{"role": "tool", "tool_call_id",
//! "content"}` message. Before a function runs, Tame decides: denied calls
//! and unapproved ones return an error object as the tool message, so the
//! model can explain or try something else. The model is a scripted fake,
//! so the example runs in CI.
//!
//! Run: `cargo run -p tame-integrations --example openai_loop`

#![expect(
    clippy::indexing_slicing,
    reason = "serde_json's `value[key]` gives Null for a missing key, it never panics"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tame_engine::{Action, Policy};
use tame_integrations::{ApprovalOutcome, CallOutcome, CallStatus, EmbeddedGuard, Guard, ToolCall, Verdict};

const POLICY: &str = r#"
version: "2026-11"
description: "assistant with a wallet"
default: deny
rules:
  - name: no_system_files
    action: deny
    tools: ["delete_file"]
    condition: 'args.path.startsWith("/etc/")'
    reason: "System files are off limits ({args.path})"
  - name: transfers_need_approval
    action: approve
    tools: ["transfer_money"]
    reason: "Every transfer needs a human"
  - name: assistant_tools
    action: allow
    tools: ["get_weather", "delete_file"]
"#;

/// The fake model: first asks for four tools at once, then summarizes the
/// tool messages it got back.
fn fake_model(messages: &[Value]) -> Value {
    let results: Vec<&Value> = messages.iter().filter(|m| m["role"] == "tool").collect();
    if results.is_empty() {
        let call = |id: &str, name: &str, args: Value| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}});
        return json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [
                call("call_1", "get_weather", json!({"city": "Paris"})),
                call("call_2", "delete_file", json!({"path": "/etc/passwd"})),
                call("call_3", "transfer_money", json!({"to": "bob", "amount": 40})),
                call("call_4", "transfer_money", json!({"to": "mallory", "amount": 5000})),
                {"id": "call_5", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}},
            ]
        });
    }
    let failed = results
        .iter()
        .filter(|m| m["content"].as_str().is_some_and(|c| c.contains("\"error\"")))
        .count();
    json!({"role": "assistant", "content": format!("{} tool calls ran, {failed} were refused.", results.len() - failed)})
}

fn run_function(name: &str, args: &Value) -> Result<Value, String> {
    match name {
        "get_weather" => Ok(json!({"city": args["city"], "forecast": "sunny", "celsius": 21})),
        "delete_file" => Ok(json!({"deleted": args["path"]})),
        "transfer_money" => Ok(json!({"sent": args["amount"], "to": args["to"]})),
        other => Err(format!("no function `{other}`")),
    }
}

/// A human who approves small transfers only.
fn approver(call: &ToolCall, _verdict: &Verdict) -> ApprovalOutcome {
    if call.tool_args["amount"].as_i64().is_some_and(|a| a <= 100) {
        ApprovalOutcome::Approved
    } else {
        ApprovalOutcome::Rejected(Some("too much money".into()))
    }
}

/// Handles one `tool_calls` entry; returns the tool message's content.
async fn handle_call<G: Guard>(guard: &G, session: &str, tool_call: &Value) -> String {
    let name = tool_call["function"]["name"].as_str().unwrap_or_default();
    let raw = tool_call["function"]["arguments"].as_str().unwrap_or("{}");
    let args: Value = match serde_json::from_str(raw) {
        Ok(args @ Value::Object(_)) => args,
        _ => {
            return json!({"error": "invalid_arguments", "detail": format!("arguments are not a json object: {raw}")})
                .to_string();
        }
    };
    let call = ToolCall::new(name, args.clone(), session);
    let mut verdict = match guard.enforce(&call).await {
        Ok(v) => v,
        Err(err) => {
            return json!({"error": "policy_unavailable", "detail": format!("{err:#}")}).to_string();
        }
    };
    match verdict.decision {
        Action::Deny => {
            return json!({"error": "denied", "rule": verdict.rule_name, "reason": verdict.reason}).to_string();
        }
        Action::Approve => {
            let id = verdict.approval_id.clone().unwrap_or_default();
            match guard.wait_approval(&id, Duration::from_secs(30)).await {
                Ok(ApprovalOutcome::Approved) => {
                    // Use the approval: the same call, asked again.
                    match guard.release(&call, &id).await {
                        Ok(released) if released.decision == Action::Allow => verdict = released,
                        Ok(released) => {
                            return json!({"error": "denied", "rule": released.rule_name, "reason": released.reason})
                                .to_string();
                        }
                        Err(err) => return format!("Tool error: {err:#}"),
                    }
                }
                Ok(ApprovalOutcome::Rejected(why)) => {
                    return json!({"error": "approval_rejected", "approval_id": id, "reason": why}).to_string();
                }
                Ok(ApprovalOutcome::Pending) | Err(_) => {
                    return json!({"error": "approval_pending", "approval_id": id, "reason": verdict.reason})
                        .to_string();
                }
            }
        }
        Action::Allow => {}
    }
    let started = Instant::now();
    let output = run_function(name, &args);
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
    if let Err(err) = guard.record(&verdict, &call, &outcome).await {
        eprintln!("could not record the result: {err:#}");
    }
    match output {
        Ok(value) => value.to_string(),
        Err(message) => json!({"error": "function_failed", "detail": message}).to_string(),
    }
}

/// Runs the loop; returns the final message list.
pub async fn run() -> anyhow::Result<Vec<Value>> {
    let policy = Policy::from_yaml(POLICY, "openai_loop.rs").map_err(|e| anyhow::anyhow!("{e}"))?;
    let guard = EmbeddedGuard::new(Arc::new(policy)).with_approver(Arc::new(approver));
    let session = "oa-session-1";
    let mut messages = vec![
        json!({"role": "system", "content": "You are a helpful assistant."}),
        json!({"role": "user", "content": "Check the weather, clean up, and pay my friends."}),
    ];
    for _ in 0..8 {
        let reply = fake_model(&messages);
        let calls = reply["tool_calls"].as_array().cloned().unwrap_or_default();
        messages.push(reply);
        if calls.is_empty() {
            return Ok(messages);
        }
        for tool_call in &calls {
            let content = handle_call(&guard, session, tool_call).await;
            messages.push(json!({"role": "tool", "tool_call_id": tool_call["id"], "content": content}));
        }
    }
    anyhow::bail!("the model kept calling tools")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    for message in run().await? {
        println!("{message}");
    }
    Ok(())
}
