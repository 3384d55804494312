//! `tame interactive`: a line-editing shell (rustyline) over the server
//! commands, like the TameSDK CLI's interactive mode.

use std::io::IsTerminal;

use rustyline::error::ReadlineError;

use crate::Exit;
use crate::client::{self, ServerOpts};
use crate::error::CliError;
use crate::output::{Out, bold, dim};
use crate::remote;

const HELP: &str = "\
commands:
  help                      this text
  status                    check the connection to the server
  policy                    show the server's current policy
  test TOOL [ARGS]          dry-run a call; ARGS is JSON or key=value,key=value
  enforce TOOL [ARGS]       enforce a call (it is logged)
  approvals                 list pending approvals
  sessions                  list the latest sessions
  config                    show the server URL and whether an API key is set
  quit                      leave (also: exit, Ctrl-D)";

/// One parsed REPL line.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    Empty,
    Help,
    Status,
    Policy,
    Test { tool: &'a str, args: &'a str },
    Enforce { tool: &'a str, args: &'a str },
    Approvals,
    Sessions,
    Config,
    Quit,
    Unknown(&'a str),
}

/// Splits `WORD REST` at the first whitespace.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (text, ""),
    }
}

fn parse(line: &str) -> Line<'_> {
    let (word, rest) = split_word(line);
    match word {
        "" => Line::Empty,
        "help" | "?" => Line::Help,
        "status" => Line::Status,
        "policy" => Line::Policy,
        "config" => Line::Config,
        "approvals" => Line::Approvals,
        "sessions" => Line::Sessions,
        "quit" | "exit" | "q" => Line::Quit,
        "test" => {
            let (tool, args) = split_word(rest);
            Line::Test { tool, args }
        }
        "enforce" => {
            let (tool, args) = split_word(rest);
            Line::Enforce { tool, args }
        }
        other => Line::Unknown(other),
    }
}

/// Runs one line; `Ok(false)` means quit.
fn execute(line: &str, opts: &ServerOpts, out: &Out) -> Result<bool, CliError> {
    match parse(line) {
        Line::Empty => {}
        Line::Help => out.line(HELP),
        Line::Status => {
            remote::status(opts, out)?;
        }
        Line::Policy => {
            remote::policy(opts, out)?;
        }
        Line::Approvals => {
            let args = crate::cli::ApprovalsArgs {
                action: crate::cli::ApprovalsAction::List,
            };
            remote::approvals(&args, opts, out)?;
        }
        Line::Sessions => {
            let args = crate::cli::SessionsArgs {
                action: None,
                agent_id: None,
                user_id: None,
                page: 1,
                page_size: 20,
            };
            remote::sessions(&args, opts, out)?;
        }
        Line::Config => {
            out.line(format!("  api url: {}", opts.url));
            out.line(format!(
                "  api key: {}",
                if opts.key.is_some() { "set" } else { "not set" }
            ));
            out.line(format!("  timeout: {} s", opts.timeout_secs));
        }
        Line::Test { tool, args } | Line::Enforce { tool, args } if tool.is_empty() => {
            let _ = args;
            return Err(CliError::Input(String::from(
                "name a tool: test TOOL {\"key\": \"value\"}",
            )));
        }
        Line::Test { tool, args } => {
            let args = client::parse_loose_args(args)?;
            remote::test_call(tool, args, opts, out)?;
        }
        Line::Enforce { tool, args } => {
            let args = client::parse_loose_args(args)?;
            let c = client::Client::new(opts)?;
            let decision = c.post(
                "/api/v1/enforce",
                &remote::enforce_body(tool, args, None, None, None, None),
            )?;
            remote::print_decision(&decision, out);
        }
        Line::Quit => return Ok(false),
        Line::Unknown(word) => {
            return Err(CliError::Input(format!("unknown command `{word}` (type `help`)")));
        }
    }
    Ok(true)
}

/// `tame interactive`.
pub fn interactive(opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let mut editor =
        rustyline::DefaultEditor::new().map_err(|e| CliError::Other(format!("cannot start the line editor: {e}")))?;
    // History lives in ~/.tame_history, only for people at a terminal
    // (piped sessions and tests leave no trace).
    let history = std::io::stdin()
        .is_terminal()
        .then(|| std::env::var_os("HOME"))
        .flatten()
        .map(|home| std::path::PathBuf::from(home).join(".tame_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    out.line(format!(
        "{} interactive mode, server {} {}",
        bold("tame"),
        opts.url,
        dim("(type `help`, `quit` to leave)")
    ));
    loop {
        match editor.readline("tame> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                match execute(&line, opts, out) {
                    Ok(true) => {}
                    Ok(false) => break,
                    // Errors are shown and the shell goes on.
                    Err(err) => out.error(&err),
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(CliError::Other(format!("cannot read input: {e}"))),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_to_commands() {
        assert_eq!(parse("  "), Line::Empty);
        assert_eq!(parse("help"), Line::Help);
        assert_eq!(parse("quit"), Line::Quit);
        assert_eq!(parse("sessions"), Line::Sessions);
        assert_eq!(
            parse("test read_file {\"path\": \"/tmp/test.txt\"}"),
            Line::Test {
                tool: "read_file",
                args: "{\"path\": \"/tmp/test.txt\"}"
            }
        );
        assert_eq!(
            parse("test api_call url=https://example.com,method=GET"),
            Line::Test {
                tool: "api_call",
                args: "url=https://example.com,method=GET"
            }
        );
        assert_eq!(parse("frobnicate x"), Line::Unknown("frobnicate"));
    }

    #[test]
    fn test_without_tool_is_an_error() {
        let opts = ServerOpts {
            url: "http://127.0.0.1:9".into(),
            key: None,
            timeout_secs: 1,
        };
        let out = Out::new(false, crate::ErrorFormat::Human);
        let err = execute("test", &opts, &out).unwrap_err().to_string();
        assert!(err.contains("name a tool"), "{err}");
        assert!(!execute("quit", &opts, &out).unwrap());
    }
}
