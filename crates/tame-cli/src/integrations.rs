//! `tame mcp-proxy` and `tame run-tool`: thin wrappers over the
//! `tame-integrations` crate (the MCP stdio proxy and the tool protocol v1
//! runner).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tame_integrations::run::exit;
use tame_integrations::{CallContext, Launcher, McpProxyOptions, McpTransportArgs, RunToolOptions};

use crate::Exit;
use crate::cli::Cli;
use crate::error::CliError;
use crate::output::Out;

/// `tame mcp-proxy`.
#[derive(Debug, Args)]
pub struct McpProxyArgs {
    /// Decide with this policies.yml (embedded engine); without it, the
    /// server at --api-url decides
    #[arg(long)]
    pub policy: Option<PathBuf>,
    #[arg(long)]
    pub agent_id: Option<String>,
    #[arg(long)]
    pub user_id: Option<String>,
    /// The session id of this run (default: a fresh UUID)
    #[arg(long)]
    pub session_id: Option<String>,
    /// Remove from tools/list the tools the policy always denies
    #[arg(long)]
    pub hide_denied: bool,
    /// Seconds to wait for a human approval (at most 55)
    #[arg(long, default_value_t = 30.0)]
    pub approval_timeout: f64,
    /// Append decisions and results to this JSON-lines file (embedded engine)
    #[arg(long)]
    pub journal: Option<PathBuf>,
    #[command(flatten)]
    pub transport: McpTransportArgs,
    /// The MCP server command, after `--` (or --url)
    #[arg(last = true, required_unless_present = "url", num_args = 1..)]
    pub command: Vec<String>,
}

/// `tame run-tool`.
#[derive(Debug, Args)]
pub struct RunToolArgs {
    /// The tool's name (as the policy sees it)
    pub tool: String,
    /// Decide with this policies.yml (embedded engine); without it, the
    /// server at --api-url decides
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Take the tool's binding from this tools.yaml
    #[arg(long, conflicts_with_all = ["entry", "service_url"])]
    pub tools: Option<PathBuf>,
    /// Run a local Python tool `module:function`
    #[arg(long, conflicts_with = "service_url")]
    pub entry: Option<String>,
    /// Call a tool service at this URL (handshake first)
    #[arg(long)]
    pub service_url: Option<String>,
    /// The Python interpreter (default: python3)
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// A directory put first on PYTHONPATH (repeatable)
    #[arg(long)]
    pub python_path: Vec<PathBuf>,
    /// The tool's timeout (default: the binding's, else 10 s)
    #[arg(long)]
    pub timeout_seconds: Option<f64>,
    /// The payload, a JSON object
    #[arg(long, default_value = "{}", conflicts_with = "payload_file")]
    pub payload: String,
    /// Read the payload from this file (`-`: stdin)
    #[arg(long)]
    pub payload_file: Option<PathBuf>,
    #[arg(long)]
    pub session_id: Option<String>,
    #[arg(long)]
    pub agent_id: Option<String>,
    #[arg(long)]
    pub user_id: Option<String>,
    /// Seconds to wait for a human approval (at most 55)
    #[arg(long, default_value_t = 30.0)]
    pub approval_timeout: f64,
    /// Append the decision and result to this JSON-lines file (embedded engine)
    #[arg(long)]
    pub journal: Option<PathBuf>,
}

fn seconds(value: f64, what: &str) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| CliError::Input(format!("{what} must be a non-negative number of seconds, got {value}")))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Runtime::new().map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))
}

/// The policy file wins over --api-url (whose default is always set).
fn api_url(cli: &Cli, policy: Option<&PathBuf>) -> Option<String> {
    policy.is_none().then(|| cli.api_url.clone())
}

pub fn mcp_proxy(args: &McpProxyArgs, cli: &Cli) -> Result<Exit, CliError> {
    let mut opts = McpProxyOptions {
        policy: args.policy.clone(),
        api_url: api_url(cli, args.policy.as_ref()),
        api_key: cli.api_key.clone(),
        agent_id: args.agent_id.clone(),
        user_id: args.user_id.clone(),
        session_id: args.session_id.clone(),
        hide_denied: args.hide_denied,
        approval_timeout: seconds(args.approval_timeout, "--approval-timeout")?,
        journal: args.journal.clone(),
        command: args.command.clone(),
        ..McpProxyOptions::default()
    };
    args.transport
        .apply(&mut opts)
        .map_err(|e| CliError::Input(e.to_string()))?;
    if let Some(kind) = args.transport.print_config {
        let config = Launcher::current(&["mcp-proxy"])
            .and_then(|launcher| {
                tame_integrations::client_config(kind, &launcher, &opts, args.transport.name.as_deref())
            })
            .map_err(|e| CliError::Input(e.to_string()))?;
        let text = serde_json::to_string_pretty(&config).map_err(|e| CliError::Other(e.to_string()))?;
        println!("{text}");
        return Ok(Exit::Ok);
    }
    let runtime = runtime()?;
    let result = runtime.block_on(tame_integrations::run_mcp_proxy(opts));
    // stdin is read on a blocking thread that would hold up a normal
    // runtime shutdown until the client closes it.
    runtime.shutdown_background();
    match result {
        Ok(0) => Ok(Exit::Ok),
        Ok(_) => Ok(Exit::Error),
        Err(err) => Err(CliError::Other(format!("{err:#}"))),
    }
}

pub fn run_tool(args: &RunToolArgs, cli: &Cli, out: &Out) -> Result<Exit, CliError> {
    let payload_text = match &args.payload_file {
        Some(path) if path.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::Input(format!("cannot read the payload from stdin: {e}")))?,
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Input(format!("cannot read payload file `{}`: {e}", path.display())))?,
        None => args.payload.clone(),
    };
    let payload: serde_json::Value =
        serde_json::from_str(&payload_text).map_err(|e| CliError::Input(format!("the payload is not json: {e}")))?;
    let opts = RunToolOptions {
        policy: args.policy.clone(),
        api_url: api_url(cli, args.policy.as_ref()),
        api_key: cli.api_key.clone(),
        journal: args.journal.clone(),
        tools_file: args.tools.clone(),
        tool: args.tool.clone(),
        entry: args.entry.clone(),
        service_url: args.service_url.clone(),
        python: args.python.clone(),
        python_path: args.python_path.clone(),
        timeout_seconds: args.timeout_seconds,
        payload,
        context: CallContext {
            session_id: args.session_id.clone(),
            agent_id: args.agent_id.clone(),
            user_id: args.user_id.clone(),
            ..CallContext::default()
        },
        approval_timeout: Some(seconds(args.approval_timeout, "--approval-timeout")?),
    };
    let report = tame_integrations::run_tool(opts).map_err(|e| CliError::Input(format!("{e:#}")))?;
    let value = serde_json::to_value(&report).map_err(|e| CliError::Other(format!("cannot print the report: {e}")))?;
    if cli.json {
        out.json_line(&value);
    } else {
        out.json_pretty(&value);
    }
    Ok(match report.exit_code() {
        exit::OK => Exit::Ok,
        exit::DENIED => Exit::Deny,
        exit::PENDING_APPROVAL => Exit::Approve,
        _ => Exit::Error,
    })
}
