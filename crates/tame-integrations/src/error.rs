//! The library's errors, as types: what went wrong and where. Callers can
//! match on the kind (a guard that cannot decide is a deny either way); the
//! binaries print them.

use std::path::PathBuf;

/// What can go wrong in the guards and their set-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy file that does not load (every diagnostic, rendered).
    #[error("cannot load policy `{}`:\n{rendered}", path.display())]
    Policy { path: PathBuf, rendered: String },
    /// A file that cannot be read, created or written.
    #[error("cannot {action} `{}`: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A setting that cannot be used (a URL, missing options).
    #[error("{0}")]
    Config(String),
    /// TLS set-up: certificates, the HTTP client.
    #[error("{0}")]
    Tls(String),
    /// The Tame server could not be reached, or its answer not read (the
    /// cause with its sources).
    #[error("cannot reach the tame server: {0}")]
    Unreachable(String),
    /// The deciding side answered with an error (an HTTP status, or the
    /// status the server's service layer gives it).
    #[error("server answered {status} to {what}: {detail}")]
    Server { status: u16, what: String, detail: String },
    /// The server's answer is not what the API says.
    #[error("server's answer to {what} is not valid: {detail}")]
    BadAnswer { what: String, detail: String },
    /// A call the guard cannot read (the cause names the field).
    #[error("invalid call of `{tool}`: {source}")]
    InvalidCall {
        tool: String,
        #[source]
        source: tame_engine::RequestError,
    },
    /// The enforcement path refused a call, a result or an approval step.
    #[error("{what}: {source}")]
    Enforce {
        what: String,
        #[source]
        source: tame_enforce::EnforceError,
    },
    /// A result that cannot be recorded, an approval that is not there.
    #[error("{0}")]
    NotFound(String),
    /// A tools file (`tools.yaml`) that does not parse.
    #[error("invalid tools file `{origin}`: {message}")]
    ToolsFile { origin: String, message: String },
    /// The MCP server: its command, its process, its answers.
    #[error("{0}")]
    Mcp(String),
    /// Another I/O failure (`what` failed).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Encoding a call or an outcome as JSON.
    #[error("cannot encode as json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result type of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The server could not be reached: `err` and its sources.
    pub(crate) fn unreachable(err: &reqwest::Error) -> Error {
        Error::Unreachable(crate::tls::error_chain(err))
    }
}
