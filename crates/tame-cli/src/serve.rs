//! `tame serve`: starts the Tame server (`tame_server::run_until`), mapping
//! the flags onto its configuration.

use crate::Exit;
use crate::cli::ServeArgs;
use crate::error::CliError;

/// Builds the server configuration: defaults, config file, `TAME_*`
/// environment, then flags (see [`tame_server::ServeFlags::config`]).
pub fn config(args: &ServeArgs) -> Result<tame_server::ServerConfig, CliError> {
    args.config().map_err(|e| CliError::Input(format!("{e:#}")))
}

/// Starts the server; returns when it shuts down (SIGINT, SIGTERM).
pub fn serve(args: &ServeArgs) -> Result<Exit, CliError> {
    let config = config(args)?;
    // Logs go to stderr; stdout keeps the one `listening on` line.
    tame_server::init_logging(args.log_format).map_err(|e| CliError::Input(format!("{e:#}")))?;
    let runtime = config
        .runtime()
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

    fn serve_args(extra: &[&str]) -> Result<crate::cli::ServeArgs, clap::Error> {
        let args = ["tame", "serve", "--policy", "p.yml"].iter().chain(extra);
        match Cli::try_parse_from(args)?.command {
            Command::Serve(args) => Ok(args),
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn auth_failure_flags_reach_the_server_config() {
        let args = serve_args(&[
            "--auth-failure-burst",
            "3",
            "--auth-failure-period",
            "0.25",
            "--trusted-proxy",
            "10.1.2.3/8,192.0.2.1",
            "--trusted-proxy",
            "fd00::/8",
        ])
        .unwrap();
        let limit = super::config(&args).unwrap().auth_failures;
        assert_eq!(limit.burst, 3);
        assert_eq!(limit.period, std::time::Duration::from_millis(250));
        let proxies: Vec<String> = limit.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.1/32", "fd00::/8"]);
        // Burst 0 turns the limit off.
        let args = serve_args(&["--auth-failure-burst", "0"]).unwrap();
        assert!(!super::config(&args).unwrap().auth_failures.is_on());
    }

    #[test]
    fn auth_failure_flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(
            &file,
            "auth_failure_burst: 7\nauth_failure_period_secs: 2\ntrusted_proxies: [10.0.0.1]\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let from_file = super::config(&serve_args(&["--config", file]).unwrap()).unwrap();
        let flagged = serve_args(&[
            "--config",
            file,
            "--auth-failure-burst",
            "4",
            "--auth-failure-period",
            "9",
            "--trusted-proxy",
            "::1",
        ])
        .unwrap();
        let flagged = super::config(&flagged).unwrap();
        // The process environment sits between file and flags: only compare
        // the file's values when the test runs without those variables.
        if std::env::var_os("TAME_AUTH_FAILURE_BURST").is_none() {
            assert_eq!(from_file.auth_failures.burst, 7);
        }
        assert_eq!(flagged.auth_failures.burst, 4);
        assert_eq!(flagged.auth_failures.period, std::time::Duration::from_secs(9));
        let proxies: Vec<String> = flagged
            .auth_failures
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["::1/128"]);
    }

    #[test]
    fn edge_flags_reach_the_server_config() {
        let args = serve_args(&[
            "--allowed-host",
            "tame.internal,tame.example.com:443",
            "--allowed-host",
            "10.0.0.5",
            "--header-timeout",
            "2.5",
            "--idle-timeout",
            "30",
            "--max-connections",
            "64",
        ])
        .unwrap();
        let config = super::config(&args).unwrap();
        let hosts: Vec<String> = config.allowed_hosts.iter().map(ToString::to_string).collect();
        assert_eq!(hosts, ["tame.internal", "tame.example.com:443", "10.0.0.5"]);
        assert_eq!(config.header_timeout, std::time::Duration::from_millis(2500));
        assert_eq!(config.idle_timeout, std::time::Duration::from_secs(30));
        assert_eq!(config.max_connections, std::num::NonZeroUsize::new(64));
        for (flag, value, says) in [
            ("--allowed-host", "*.example.com", "wildcard"),
            ("--allowed-host", "http://x", "is not a host name"),
            ("--header-timeout", "0", "above zero"),
            ("--idle-timeout", "-1", "above zero"),
            ("--idle-timeout", "soon", "is not a number of seconds"),
            ("--max-connections", "0", "0"),
        ] {
            let arg = format!("{flag}={value}");
            let err = serve_args(&[&arg]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{arg}");
            let text = err.to_string();
            assert!(text.contains(flag) && text.contains(says), "{arg}: {text}");
        }
    }

    #[test]
    fn bad_auth_failure_values_are_usage_errors_naming_the_flag() {
        for (flag, value, says) in [
            ("--auth-failure-burst", "lots", "invalid digit"),
            ("--auth-failure-burst", "4294967296", "is not in 0..=4294967295"),
            ("--auth-failure-period", "0", "above zero"),
            ("--auth-failure-period", "-2", "above zero"),
            ("--auth-failure-period", "NaN", "above zero"),
            ("--auth-failure-period", "soon", "is not a number of seconds"),
            ("--trusted-proxy", "10.0.0.0/33", "not an IP address or a CIDR network"),
            ("--trusted-proxy", "10.0.0.1,proxy.local", "`proxy.local`"),
        ] {
            let arg = format!("{flag}={value}");
            let err = serve_args(&[&arg]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{arg}");
            let text = err.to_string();
            assert!(text.contains(flag), "{arg}: {text}");
            assert!(text.contains(says), "{arg}: {text}");
        }
    }
}
