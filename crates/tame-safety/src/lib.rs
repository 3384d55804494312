//! Payload safety for Tame: secret and personal-data detectors over JSON
//! payloads ([`scan`]), JSON-Schema argument validation ([`schema`]) and tool
//! contracts with agent identity binding ([`contracts`]).
//!
//! This crate knows nothing about policies' rules; the engine calls it:
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
