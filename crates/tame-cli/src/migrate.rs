//! `tame migrate`: rewrites a policy of the original tame server's format
//! in the current format (`tame_engine::migrate_legacy` does the work and
//! checks that the result loads).

use std::path::PathBuf;

use clap::Args;

use crate::Exit;
use crate::error::CliError;
use crate::local::{policy_error, read_file};
use crate::output::Out;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The policy in the original tame server's format
    pub policy: PathBuf,
    /// Write the migrated policy to FILE instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite FILE when it exists
    #[arg(long)]
    pub force: bool,
}

/// `tame migrate LEGACY.yml`.
pub fn migrate(args: &MigrateArgs, out: &Out) -> Result<Exit, CliError> {
    let source = read_file(&args.policy)?;
    let origin = args.policy.display().to_string();
    let migrated = tame_engine::migrate_legacy(&source, &origin).map_err(|e| match e {
        tame_engine::MigrateError::Policy(p) => policy_error(&args.policy, &p),
        other => CliError::Input(format!("{origin}: {other}")),
    })?;
    match &args.output {
        Some(path) => {
            crate::output::write_generated(path, &migrated, args.force)?;
            out.line(format!("wrote {}", path.display()));
        }
        None => out.line(migrated.trim_end()),
    }
    Ok(Exit::Ok)
}
