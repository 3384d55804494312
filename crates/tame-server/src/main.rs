//! `tame-server`: the server alone (the `tame serve` command of the CLI
//! runs the same [`tame_server::run`]). Flags override `TAME_*` variables,
//! which override the config file.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "tame-server", version, about = "Serve the Tame HTTP API")]
struct Args {
    /// YAML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The policies.yml file.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Listen address (HOST:PORT).
    #[arg(long)]
    addr: Option<std::net::SocketAddr>,
    /// SQLite database file, or a postgres:// URL (then set TAME_AUDIT_SECRET).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Agent API key (repeatable).
    #[arg(long = "agent-key")]
    agent_keys: Vec<String>,
    /// Admin API key (repeatable).
    #[arg(long = "admin-key")]
    admin_keys: Vec<String>,
    /// Listen on a non-loopback address without API keys.
    #[arg(long)]
    allow_insecure_bind: bool,
    /// Seconds before a pending approval expires.
    #[arg(long)]
    approval_timeout: Option<u64>,
    /// `full` (survives power loss) or `normal` (survives crashes).
    #[arg(long)]
    durability: Option<String>,
    /// Do not watch the policy file.
    #[arg(long)]
    no_watch: bool,
    /// Threads serving requests (default: one per CPU core).
    #[arg(long)]
    workers: Option<std::num::NonZeroUsize>,
    #[command(flatten)]
    auth_failures: tame_server::AuthFailureArgs,
}

// The same allocator as the `tame` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TAME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = tame_server::ServerConfig::load(args.config.as_deref())?;
    if let Some(p) = args.policy {
        config.policy_path = p;
    }
    if let Some(a) = args.addr {
        config.addr = a;
    }
    if let Some(d) = args.db {
        config.db_path = d;
    }
    if !args.agent_keys.is_empty() {
        config.agent_keys = args.agent_keys;
    }
    if !args.admin_keys.is_empty() {
        config.admin_keys = args.admin_keys;
    }
    config.allow_insecure_bind |= args.allow_insecure_bind;
    if let Some(s) = args.approval_timeout {
        config.approval_timeout = Duration::from_secs(s);
    }
    if let Some(d) = args.durability {
        config.apply_env([("TAME_DURABILITY".to_string(), d)])?;
    }
    if args.no_watch {
        config.watch_policy = false;
    }
    if let Some(n) = args.workers {
        config.workers = Some(n);
    }
    args.auth_failures.apply(&mut config);
    let runtime = config.runtime()?;
    runtime.block_on(tame_server::run_until(config, tame_server::shutdown_signal(), |addr| {
        // Machine-readable line for scripts and tests.
        println!("listening on http://{addr}");
    }))
}
