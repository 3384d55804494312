//! The `tame` command-line tool: author, check, test, explain and benchmark
//! policies offline, and drive a running Tame server.
//!
//! `main.rs` only calls [`main_entry`]; every command lives in this library
//! so tests can reach it. The CLI holds no policy logic: local commands call
//! the `tame_engine` facade, server commands speak the HTTP API.

mod bench;
mod cli;
mod client;
#[cfg(test)]
mod container_tests;
mod contract;
mod error;
mod fmt;
mod health;
mod init;
mod integrations;
mod local;
mod migrate;
mod output;
mod remote;
mod repl;
mod replay;
mod schema;
mod serve;
mod steps;
mod testing;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub use cli::{Cli, Command};
pub use error::CliError;
pub use output::{ErrorFormat, Out};

/// How `tame` exits. Deny is not an error: scripts tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The call is allowed, or the command succeeded.
    Ok = 0,
    /// The command failed (bad input, unreachable server, failing tests).
    Error = 1,
    /// The call is denied.
    Deny = 2,
    /// The call needs a human's approval first.
    Approve = 3,
}

impl Exit {
    /// The exit code for a decision (`allow`, `deny`, `approve`).
    pub fn for_action(action: tame_engine::Action) -> Exit {
        match action {
            tame_engine::Action::Allow => Exit::Ok,
            tame_engine::Action::Deny => Exit::Deny,
            tame_engine::Action::Approve => Exit::Approve,
        }
    }

    /// The exit code for a decision spelled as a string by a server.
    pub fn for_decision_str(decision: &str) -> Exit {
        match decision {
            "allow" => Exit::Ok,
            "deny" => Exit::Deny,
            "approve" => Exit::Approve,
            _ => Exit::Error,
        }
    }

    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Parses the process arguments, runs the command and reports errors in the
/// format asked for. Never panics on bad input.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout with code 0, usage errors
            // to stderr with code 2; usage errors are errors (1) here so that
            // 2 keeps meaning "deny".
            let code = if err.use_stderr() { Exit::Error } else { Exit::Ok };
            if err.use_stderr() && wants_json_errors(std::env::args()) {
                let text = err.render().to_string();
                let message = text.lines().next().unwrap_or("").trim_start_matches("error: ");
                eprintln!(
                    "{}",
                    serde_json::json!({"error": message, "kind": "usage", "usage": text.trim_end()})
                );
            } else {
                let _ = err.print();
            }
            return code.into();
        }
    };
    run(cli).into()
}

/// Whether the raw arguments ask for JSON errors (used when clap itself
/// rejects the command line, before the flag could be parsed).
fn wants_json_errors(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().any(|a| a == "--error-format=json")
        || args
            .windows(2)
            .any(|w| matches!(w, [flag, value] if flag == "--error-format" && value == "json"))
}

/// Runs a parsed command line, printing its output and its errors.
pub fn run(cli: Cli) -> Exit {
    cli.color.apply();
    let out = Out::new(cli.json, cli.error_format);
    match dispatch(&cli, &out) {
        Ok(exit) => exit,
        Err(err) => {
            out.error(&err);
            Exit::Error
        }
    }
}

fn dispatch(cli: &Cli, out: &Out) -> Result<Exit, CliError> {
    let server = client::ServerOpts {
        url: cli.api_url.clone(),
        key: cli.api_key.clone(),
        timeout_secs: cli.timeout,
    };
    match &cli.command {
        Command::Check(args) => local::check(args, out),
        Command::Eval(args) => local::eval(args, out),
        Command::Graph(args) => local::graph(args, out),
        Command::Fmt(args) => fmt::fmt(args, out),
        Command::Init(args) => init::init(args, out),
        Command::Replay(args) => replay::replay(args, out),
        Command::Schema(args) => schema::schema_command(args, out),
        Command::Migrate(args) => migrate::migrate(args, out),
        Command::Explain(args) => local::explain(args, out),
        Command::Test(args) => testing::test_command(args, &server, out),
        Command::Bench(args) => bench::bench(args, out),
        Command::Serve(args) => serve::serve(args),
        Command::Status => remote::status(&server, out),
        Command::Health(args) => health::health(args, &server, out),
        Command::Policy(args) => match &args.action {
            Some(cli::PolicyAction::Graph(graph)) => local::graph(graph, out),
            Some(cli::PolicyAction::Check(check)) => local::check(check, out),
            Some(cli::PolicyAction::Test(test)) => testing::test_command(test, &server, out),
            action => remote::policy_command(action.as_ref(), &server, out),
        },
        Command::Enforce(args) => remote::enforce(args, &server, out),
        Command::Interactive => repl::interactive(&server, out),
        Command::Approvals(args) => remote::approvals(args, &server, out),
        Command::Audit(args) => remote::audit(args, &server, out),
        Command::Sessions(args) => remote::sessions(args, &server, out),
        Command::Contract(args) => contract::contract(args, out),
        Command::McpProxy(args) => integrations::mcp_proxy(args, cli),
        Command::RunTool(args) => integrations::run_tool(args, cli, out),
        Command::Completions(args) => {
            let mut cmd = Cli::command();
            let mut stdout = std::io::stdout().lock();
            clap_complete::generate(args.shell, &mut cmd, "tame", &mut stdout);
            stdout
                .flush()
                .map_err(|e| CliError::Other(format!("cannot write completions: {e}")))?;
            Ok(Exit::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn json_errors_are_detected_in_raw_arguments() {
        assert!(wants_json_errors(args(&["tame", "--error-format", "json", "chek"])));
        assert!(wants_json_errors(args(&["tame", "chek", "--error-format=json"])));
        assert!(!wants_json_errors(args(&["tame", "--error-format", "human"])));
        assert!(!wants_json_errors(args(&["tame", "json"])));
    }

    #[test]
    fn exit_codes_match_the_tamesdk_cli() {
        assert_eq!(Exit::for_decision_str("allow").code(), 0);
        assert_eq!(Exit::for_decision_str("deny").code(), 2);
        assert_eq!(Exit::for_decision_str("approve").code(), 3);
        assert_eq!(Exit::for_decision_str("maybe").code(), 1);
        assert_eq!(Exit::for_action(tame_engine::Action::Deny), Exit::Deny);
    }
}
