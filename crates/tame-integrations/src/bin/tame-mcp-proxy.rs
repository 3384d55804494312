//! `tame-mcp-proxy`: the MCP stdio proxy as its own binary (the same as
//! `tame mcp-proxy`), so the proxy can be used and tested without the CLI.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tame_integrations::{Launcher, McpProxyOptions, McpTransportArgs, client_config, run_mcp_proxy};

/// Guard an MCP server: enforce every `tools/call` with a Tame policy.
#[derive(Debug, Parser)]
#[command(name = "tame-mcp-proxy", version)]
struct Args {
    /// The policies.yml to decide with (embedded engine).
    #[arg(long, required_unless_present = "api_url")]
    policy: Option<PathBuf>,
    /// Decide through this Tame server instead, e.g. http://127.0.0.1:8000
    /// or https://tame.example.com (its certificate checked against the
    /// system's trusted roots; SSL_CERT_FILE names another bundle).
    #[arg(long, env = "TAME_API_URL")]
    api_url: Option<String>,
    /// The server's API key.
    #[arg(long, env = "TAME_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[arg(long)]
    agent_id: Option<String>,
    #[arg(long)]
    user_id: Option<String>,
    /// The session id of this run (default: a fresh UUID).
    #[arg(long)]
    session_id: Option<String>,
    /// Remove from tools/list the tools the policy always denies.
    #[arg(long)]
    hide_denied: bool,
    /// Seconds to wait for a human approval (at most 55).
    #[arg(long, default_value_t = 30.0)]
    approval_timeout: f64,
    /// Append decisions and results to this JSON-lines file (embedded engine).
    #[arg(long)]
    journal: Option<PathBuf>,
    #[command(flatten)]
    transport: McpTransportArgs,
    /// The MCP server command, after `--` (or --url).
    #[arg(last = true, required_unless_present = "url", num_args = 1..)]
    command: Vec<String>,
}

fn main() {
    let args = Args::parse();
    let approval_timeout =
        Duration::try_from_secs_f64(args.approval_timeout.max(0.0)).unwrap_or(Duration::from_secs(30));
    let mut opts = McpProxyOptions {
        policy: args.policy,
        api_url: args.api_url,
        api_key: args.api_key,
        agent_id: args.agent_id,
        user_id: args.user_id,
        session_id: args.session_id,
        hide_denied: args.hide_denied,
        approval_timeout,
        journal: args.journal,
        command: args.command,
        ..McpProxyOptions::default()
    };
    if let Err(err) = args.transport.apply(&mut opts) {
        eprintln!("tame mcp-proxy: {err}");
        std::process::exit(2);
    }
    if let Some(kind) = args.transport.print_config {
        let config = Launcher::current(&[])
            .and_then(|launcher| client_config(kind, &launcher, &opts, args.transport.name.as_deref()));
        match config.and_then(|c| Ok(serde_json::to_string_pretty(&c)?)) {
            Ok(text) => println!("{text}"),
            Err(err) => {
                eprintln!("tame mcp-proxy: {err}");
                std::process::exit(2);
            }
        }
        return;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tame mcp-proxy: cannot start the async runtime: {err}");
            std::process::exit(2);
        }
    };
    let code = match runtime.block_on(run_mcp_proxy(opts)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tame mcp-proxy: {err:#}");
            2
        }
    };
    // stdin is read on a blocking thread: dropping the runtime would wait
    // for that read (until the client closes stdin). Exit right away.
    runtime.shutdown_background();
    std::process::exit(code);
}
