//! `tame schema`: the JSON Schemas of policies.yml, of `*.tests.yml` and of
//! the server's config file, each derived from the Rust types that read
//! those files (schemars). The same schemas are shipped in `schema/` (a
//! test keeps them equal), so editors can complete and check the files:
//! each example policy starts with `# yaml-language-server:
//! $schema=../schema/policy.schema.json`.

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::Exit;
use crate::error::CliError;
use crate::output::Out;

/// Which file's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// policies.yml
    Policy,
    /// NAME.tests.yml, read by `tame test`
    Tests,
    /// the config file of `tame serve --config`
    Config,
}

impl SchemaKind {
    /// The file name under `schema/` in the repository.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Policy => "policy.schema.json",
            SchemaKind::Tests => "tests.schema.json",
            SchemaKind::Config => "config.schema.json",
        }
    }
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The file whose schema to print
    #[arg(value_enum)]
    pub kind: SchemaKind,
}

/// The schema as JSON.
pub fn schema(kind: SchemaKind) -> Value {
    match kind {
        SchemaKind::Policy => tame_engine::policy_json_schema(),
        SchemaKind::Tests => schemars::schema_for!(crate::testing::TestFile).to_value(),
        SchemaKind::Config => tame_server::config_json_schema(),
    }
}

/// The schema as the shipped file holds it (pretty, a final newline).
pub fn schema_text(kind: SchemaKind) -> String {
    let mut text = serde_json::to_string_pretty(&schema(kind)).unwrap_or_default();
    text.push('\n');
    text
}

/// `tame schema KIND`.
pub fn schema_command(args: &SchemaArgs, out: &Out) -> Result<Exit, CliError> {
    out.line(schema_text(args.kind).trim_end());
    Ok(Exit::Ok)
}
