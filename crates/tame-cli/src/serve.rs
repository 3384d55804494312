//! `tame serve`: starts the Tame server (the `tame-server` crate).

use crate::Exit;
use crate::cli::ServeArgs;
use crate::error::CliError;

/// Starts the server; returns when it shuts down.
pub fn serve(_args: &ServeArgs) -> Result<Exit, CliError> {
    Err(CliError::Other(String::from(
        "this build of tame has no server yet (the tame-server crate does not expose `run`)",
    )))
}
