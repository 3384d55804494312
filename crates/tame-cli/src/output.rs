//! Printing: colours only on a terminal (anstream strips them elsewhere),
//! JSON for machines, errors in the human or JSON format.

use std::fmt::Display;

use clap::ValueEnum;
use owo_colors::OwoColorize;

use crate::error::CliError;

/// Writes one line to stdout through anstream (which strips colours off a
/// terminal). A closed pipe (`tame eval ... | head`) ends the process
/// quietly instead of panicking like `println!`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_line(&mut anstream::stdout(), format_args!($($arg)*))
    };
}

/// Writes one line to stderr; see [`out!`].
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::output::write_line(&mut anstream::stderr(), format_args!($($arg)*))
    };
}

pub(crate) use err;

/// Writes a generated file (`tame init -o`, `tame migrate -o`), refusing
/// to replace one that exists unless `force` (checked as the file is
/// created, so a file appearing meanwhile is not overwritten either).
pub fn write_generated(path: &std::path::Path, text: &str, force: bool) -> Result<(), CliError> {
    use std::io::Write as _;
    let cannot = |e: std::io::Error| CliError::Other(format!("cannot write `{}`: {e}", path.display()));
    let created = if force {
        std::fs::File::create(path)
    } else {
        std::fs::OpenOptions::new().write(true).create_new(true).open(path)
    };
    let mut file = created.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            CliError::Input(format!("`{}` exists; use --force to overwrite it", path.display()))
        }
        _ => cannot(e),
    })?;
    file.write_all(text.as_bytes()).map_err(cannot)
}

/// Writes a line; exits quietly when the reader has gone away.
pub fn write_line(stream: &mut impl std::io::Write, args: std::fmt::Arguments<'_>) {
    let result = stream.write_fmt(args).and_then(|()| stream.write_all(b"\n"));
    if let Err(e) = result
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// How errors are printed on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ErrorFormat {
    /// Readable text with carets under the offending source
    Human,
    /// One JSON object per error
    Json,
}

/// The output settings of one run.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    /// `--json`: machine output on stdout.
    pub json: bool,
    pub error_format: ErrorFormat,
}

impl Out {
    pub fn new(json: bool, error_format: ErrorFormat) -> Out {
        Out { json, error_format }
    }

    /// Prints one line on stdout.
    pub fn line(&self, text: impl Display) {
        out!("{text}");
    }

    /// Prints a JSON value on one line of stdout.
    pub fn json_line(&self, value: &serde_json::Value) {
        out!("{value}");
    }

    /// Prints a JSON value, pretty, on stdout.
    pub fn json_pretty(&self, value: &serde_json::Value) {
        match serde_json::to_string_pretty(value) {
            Ok(text) => out!("{text}"),
            Err(_) => out!("{value}"),
        }
    }

    /// Prints a warning on stderr.
    pub fn warning(&self, text: impl Display) {
        match self.error_format {
            ErrorFormat::Human => {
                err!("{}: {text}", "warning".yellow().bold());
            }
            ErrorFormat::Json => {
                err!("{}", serde_json::json!({"warning": text.to_string()}));
            }
        }
    }

    /// Prints an error on stderr in the chosen format.
    pub fn error(&self, err: &CliError) {
        match self.error_format {
            ErrorFormat::Human => match err {
                // Policy diagnostics are already rendered with their own
                // `error:` headers and carets.
                CliError::Policy { rendered, .. } => err!("{rendered}"),
                other => err!("{}: {other}", "error".red().bold()),
            },
            ErrorFormat::Json => err!("{}", err.to_json()),
        }
    }
}

/// A decision word, coloured by what it means.
pub fn decision_word(decision: &str) -> String {
    match decision {
        "allow" => decision.green().bold().to_string(),
        "deny" => decision.red().bold().to_string(),
        "approve" => decision.yellow().bold().to_string(),
        other => other.to_string(),
    }
}

/// "ok" in green / "FAIL" in red.
pub fn pass_word(pass: bool) -> String {
    if pass {
        "ok".green().bold().to_string()
    } else {
        "FAIL".red().bold().to_string()
    }
}

/// Dimmed text for secondary details.
pub fn dim(text: impl Display) -> String {
    text.dimmed().to_string()
}

/// Bold text for headings and names.
pub fn bold(text: impl Display) -> String {
    text.bold().to_string()
}

/// Green bold text for good news.
pub fn good(text: impl Display) -> String {
    text.green().bold().to_string()
}

/// Red bold text for bad news.
pub fn bad(text: impl Display) -> String {
    text.red().bold().to_string()
}

/// Sets `key` on a JSON object (no-op on other values: never panics).
pub fn set(obj: &mut serde_json::Value, key: &str, value: impl Into<serde_json::Value>) {
    if let serde_json::Value::Object(map) = obj {
        map.insert(key.to_string(), value.into());
    }
}
