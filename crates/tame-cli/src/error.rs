//! The errors of the `tame` commands, each naming what failed and where.

use std::path::PathBuf;

/// A command's failure. Printed by [`crate::Out::error`] in the human or
/// JSON format; never a backtrace.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A policy failed to compile. `rendered` holds every diagnostic with
    /// carets; `diagnostics` the same as JSON objects.
    #[error("{rendered}")]
    Policy {
        path: PathBuf,
        rendered: String,
        diagnostics: Vec<serde_json::Value>,
    },
    /// The server could not be reached at all.
    #[error("cannot reach the tame server at {url}: {reason} (is `tame serve` running there?)")]
    ServerDown { url: String, reason: String },
    /// The server answered with an error status.
    #[error("the tame server at {url} answered {status}: {detail}")]
    Server { url: String, status: u16, detail: String },
    /// Bad input on the command line or in a file.
    #[error("{0}")]
    Input(String),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// A short machine name for `--error-format json`.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Read { .. } => "read",
            CliError::Policy { .. } => "policy",
            CliError::ServerDown { .. } => "server_down",
            CliError::Server { .. } => "server",
            CliError::Input(_) => "input",
            CliError::Other(_) => "other",
        }
    }

    /// The error as one JSON object (`--error-format json`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::json!({
            "error": self.to_string(),
            "kind": self.kind(),
        });
        match self {
            CliError::Policy { path, diagnostics, .. } => {
                crate::output::set(&mut obj, "file", path.display().to_string());
                crate::output::set(&mut obj, "diagnostics", diagnostics.clone());
            }
            CliError::Read { path, .. } => {
                crate::output::set(&mut obj, "file", path.display().to_string());
            }
            CliError::ServerDown { url, .. } => {
                crate::output::set(&mut obj, "url", url.clone());
            }
            CliError::Server { url, status, .. } => {
                crate::output::set(&mut obj, "url", url.clone());
                crate::output::set(&mut obj, "status", *status);
            }
            CliError::Input(_) | CliError::Other(_) => {}
        }
        obj
    }
}
