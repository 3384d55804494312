//! `tame health [--ready]`: one probe of a server, for container health
//! checks and scripts (exit 0 when it answers 2xx, 1 otherwise). No key is
//! sent: `/health` and `/ready` are public, and a key refused here would
//! count against the probing address's failed-authentication budget.

use crate::Exit;
use crate::cli::HealthArgs;
use crate::client::{Client, ServerOpts};
use crate::error::CliError;
use crate::output::{Out, bold};

pub fn health(args: &HealthArgs, opts: &ServerOpts, out: &Out) -> Result<Exit, CliError> {
    let opts = ServerOpts {
        key: None,
        ..opts.clone()
    };
    let client = Client::new(&opts)?;
    let path = if args.ready { "/ready" } else { "/health" };
    let answer = client.get(path, &[])?;
    if out.json {
        out.json_pretty(&answer);
    } else {
        let url = format!("{}{path}", client.url());
        out.line(format!("{} {}", crate::output::pass_word(true), bold(&url)));
    }
    Ok(Exit::Ok)
}
