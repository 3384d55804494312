//! Payload safety for Tame: secret and personal-data detectors over JSON
//! payloads ([`scan`]), JSON-Schema argument validation ([`schema`]) and tool
//! contracts with agent identity binding ([`contracts`]).
//!
//! This crate knows nothing about policies' rules; the engine calls it.
//!
//! # Integration (for `tame-engine` and the frontends)
//!
//! - **Condition functions**: `has_secret(x)` → [`Scanner::has_secret`],
//!   `has_pii(x)` → [`Scanner::has_pii`], `secrets(x)` → [`Scanner::secrets`]
//!   (each [`Finding`] serializes as `{kind, category, path, location, start,
//!   end, preview}`), all on [`Scanner::global`].
//! - **`tools:` in policies.yml** (seed 002): deserialize the list into
//!   `Vec<`[`ToolSpec`]`>` and call [`ToolSchemas::from_specs`] (or pass the
//!   section to [`ToolSchemas::from_json`]); errors name the tool and its index.
//!   Before any rule runs, [`ToolSchemas::validate_args`]; on `Err(v)` deny with
//!   `v.to_string()` (it names `v.json_path`).
//! - **`tool_contracts:` and `agents:`** (seed 004): [`Contracts::new`] from typed
//!   sections, or [`Contracts::from_yaml_sections`] / [`Contracts::from_json`].
//!   Per call: [`Contracts::validate_agent`], then
//!   [`Contracts::intercept_tool_request`] (`block` → deny with its reason);
//!   on the result endpoint [`Contracts::intercept_tool_response`] and return
//!   `safe_response`.
//! - **Audit log**: store `tool_args` and results after [`Scanner::redact`]
//!   on a clone; a secret is never stored in clear.
//! - **Session labels**: after a result is recorded, add
//!   [`labels`]`(&scanner.scan(&result))` to the session (`"secret"`,
//!   `"secret.aws_access_key_id"`, `"pii"`, `"personal.pii.email"`, ...).
//! - **Limits**: [`Scanner::scan_report`] says when depth or the findings cap
//!   left part of a payload unscanned; [`Contracts::intercept_tool_request`]
//!   blocks such payloads.
//!
//! ```
//! use serde_json::json;
//! use tame_safety::Scanner;
//!
//! let scanner = Scanner::global();
//! let mut args = json!({"body": {"to": ["ops@example.com"], "key": "AKIAIOSFODNN7EXAMPLE"}});
//! assert!(scanner.has_secret(&args));
//! let findings = scanner.redact(&mut args);
//! assert_eq!(findings[0].path, "$.body.key");
//! assert_eq!(args["body"]["key"], "[REDACTED:aws_access_key_id]");
//! ```

pub mod contracts;
pub mod scan;
pub mod schema;

pub use contracts::{
    AgentBinding, ContractError, Contracts, InterceptAction, RequestInterception, RequestValidation,
    ResponseInterception, ToolContract,
};
pub use scan::{Category, Finding, Kind, Location, ScanOptions, ScanReport, Scanner, labels};
pub use schema::{SchemaLoadError, SchemaViolation, ToolSchemaError, ToolSchemas, ToolSpec};
