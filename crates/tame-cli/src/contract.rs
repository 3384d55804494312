//! `tame contract`: seed 004's tool-contract checks against a policy file,
//! offline, printing the seed's result fields as JSON.
//!
//! - `tame contract request POLICY --tool T [--tags a,b] [--payload JSON] [--agent A]`
//!   prints `{action, allowed, reason, payload, detected_tags, findings}`
//!   (`intercept_tool_request`; `allowed` is `validate_tool_request`'s answer
//!   for the tags alone). Exit 0 for `allow`, 2 for `block`.
//! - `tame contract response POLICY --tool T RESPONSE_JSON|-` prints
//!   `{safe_response, stripped_fields, findings}` (`intercept_tool_response`).

use std::io::Read;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tame_engine::InterceptAction;

use crate::Exit;
use crate::error::CliError;
use crate::local::load_policy;
use crate::output::Out;

#[derive(Debug, Args)]
pub struct ContractArgs {
    #[command(subcommand)]
    pub action: ContractAction,
}

#[derive(Debug, Subcommand)]
pub enum ContractAction {
    /// Intercept a request: agent binding, data tags, then a payload scan
    Request(ContractRequestArgs),
    /// Filter a tool's response to its contract's allowed fields
    Response(ContractResponseArgs),
}

#[derive(Debug, Args)]
pub struct ContractRequestArgs {
    /// The policy file (its `tool_contracts:` and `agents:`)
    pub policy: std::path::PathBuf,
    /// The tool called
    #[arg(long)]
    pub tool: String,
    /// Data tags of the request, comma separated
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// The request payload as JSON (default `{}`)
    #[arg(long)]
    pub payload: Option<String>,
    /// The calling agent's id
    #[arg(long)]
    pub agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct ContractResponseArgs {
    /// The policy file (its `tool_contracts:`)
    pub policy: std::path::PathBuf,
    /// The tool that answered
    #[arg(long)]
    pub tool: String,
    /// The response as JSON, or `-` to read standard input
    #[arg(value_name = "RESPONSE_JSON|-")]
    pub response: String,
}

fn parse_json(what: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|e| CliError::Input(format!("{what}: invalid JSON: {e}")))
}

pub fn contract(args: &ContractArgs, out: &Out) -> Result<Exit, CliError> {
    match &args.action {
        ContractAction::Request(a) => request(a, out),
        ContractAction::Response(a) => response(a, out),
    }
}

fn request(args: &ContractRequestArgs, out: &Out) -> Result<Exit, CliError> {
    let policy = load_policy(&args.policy)?;
    let payload = match &args.payload {
        Some(text) => parse_json("--payload", text)?,
        None => json!({}),
    };
    let tags: Vec<&str> = args.tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
    let validation = policy.validate_tool_request(&args.tool, &tags);
    let i = policy.intercept_tool_request(&args.tool, &payload, &tags, args.agent.as_deref());
    out.json_pretty(&json!({
        "tool": args.tool,
        "action": i.action,
        "allowed": validation.allowed,
        "reason": i.reason,
        "payload": i.payload,
        "detected_tags": i.detected_tags,
        "findings": i.findings,
    }));
    Ok(match i.action {
        InterceptAction::Allow => Exit::Ok,
        InterceptAction::Block => Exit::Deny,
    })
}

fn response(args: &ContractResponseArgs, out: &Out) -> Result<Exit, CliError> {
    let policy = load_policy(&args.policy)?;
    let text = if args.response == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::Input(format!("cannot read the response from standard input: {e}")))?;
        s
    } else {
        args.response.clone()
    };
    let raw = parse_json("response", &text)?;
    let f = policy.filter_response(&args.tool, &raw);
    out.json_pretty(&json!({
        "tool": args.tool,
        "safe_response": f.safe_response,
        "stripped_fields": f.stripped_fields,
        "findings": f.findings,
    }));
    Ok(Exit::Ok)
}
