//! `tame serve`: starts the Tame server (`tame_server::run_until`), mapping
//! the flags onto its configuration.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use crate::Exit;
use crate::cli::ServeArgs;
use crate::error::CliError;

/// Builds the server configuration: defaults, config file, `TAME_*`
/// environment, then flags.
pub fn config(args: &ServeArgs) -> Result<tame_server::ServerConfig, CliError> {
    let mut config =
        tame_server::ServerConfig::load(args.config.as_deref()).map_err(|e| CliError::Input(format!("{e:#}")))?;
    if let Some(policy) = &args.policy {
        config.policy_path = policy.clone();
    }
    if let Some(addr) = &args.addr {
        config.addr = addr.parse::<SocketAddr>().map_err(|_| {
            CliError::Input(format!(
                "--addr: `{addr}` is not a HOST:PORT address (e.g. 127.0.0.1:8000)"
            ))
        })?;
    }
    if let Some(db) = &args.db {
        config.db_path = db.into();
    }
    if !args.agent_keys.is_empty() {
        config.agent_keys = args.agent_keys.clone();
    }
    if !args.admin_keys.is_empty() {
        config.admin_keys = args.admin_keys.clone();
    }
    config.allow_insecure_bind |= args.allow_insecure_bind;
    if let Some(secs) = args.approval_timeout {
        config.approval_timeout = Duration::from_secs(secs);
    }
    if let Some(d) = &args.durability {
        config
            .apply_env([("TAME_DURABILITY".to_string(), d.clone())])
            .map_err(|e| CliError::Input(format!("--durability: {e:#}")))?;
    }
    if args.no_watch {
        config.watch_policy = false;
    }
    if let Some(tools) = &args.tools_file {
        config.tools_file = Some(tools.clone());
    }
    Ok(config)
}

/// Starts the server; returns when it shuts down (SIGINT, SIGTERM).
pub fn serve(args: &ServeArgs) -> Result<Exit, CliError> {
    let config = config(args)?;
    // Logs go to stderr; stdout keeps the one `listening on` line.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TAME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(tame_server::run_until(config, tame_server::shutdown_signal(), |addr| {
            println!("listening on http://{addr}")
        }))
        .map_err(|e| CliError::Other(format!("{e:#}")))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    #[test]
    fn tools_file_flag_reaches_the_server_config() {
        let cli =
            Cli::try_parse_from(["tame", "serve", "--policy", "p.yml", "--tools-file", "conf/tools.yaml"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let config = super::config(&args).unwrap();
        assert_eq!(config.tools_file, Some(std::path::PathBuf::from("conf/tools.yaml")));
        let cli = Cli::try_parse_from(["tame", "serve", "--policy", "p.yml"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            super::config(&args).unwrap().tools_file,
            std::env::var_os("TAME_TOOLS_FILE").map(Into::into)
        );
    }
}
