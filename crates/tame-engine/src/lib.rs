//! Tame's policy engine: loads `policies.yml`, compiles its rules into one
//! decision DAG and evaluates tool calls against it.
//!
//! This is the one API every frontend (server, CLI, Python) uses. It knows
//! nothing of HTTP, SQL or Python, and evaluation does no I/O.
//!
//! ```
//! use tame_engine::{Action, NoFacts, Policy, Request};
//!
//! let policy = Policy::from_yaml(
//!     r#"
//! version: "1"
//! rules:
//!   - name: block_etc
//!     action: deny
//!     tools: ["read_file"]
//!     condition: 'args.path.startsWith("/etc/")'
//!     reason: "System paths are off limits ({args.path})"
//!   - name: allow_reads
//!     action: allow
//!     tools: ["read_*"]
//! "#,
//!     "policies.yml",
//! )
//! .unwrap();
//! let call = serde_json::json!({"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}});
//! let d = policy.evaluate(&Request::from_call_json(&call).unwrap(), &NoFacts);
//! assert_eq!(d.action, Action::Deny);
//! assert_eq!(&*d.reason, "System paths are off limits (/etc/passwd)");
//! ```

mod compile;
mod cond;
mod diag;
mod eval;
mod facade;
mod facts;
mod legacy;
mod lint;
mod load;
mod locate;
mod migrate;
mod model;
mod policy;
mod request;
mod safety;
mod schema;
mod template;

pub use diag::{Diagnostic, PolicyError, Severity, line_col};
pub use eval::{AtomTrace, Explanation, RuleOutcome, RuleTrace, ToolMatch};
pub use facade::*;
pub use facts::MemoryFacts;
pub use migrate::{MigrateError, migrate_legacy};
pub use policy::{Policy, PolicyInfo, PolicyTest, Registry, RuleInfo, Stats, TestOutcome};
pub use request::{RequestError, json_to_value, value_to_json};
pub use safety::{
    BUILTIN_RULES, PayloadMode, PayloadPolicy, RULE_AGENT_BINDING, RULE_PAYLOAD_PII, RULE_PAYLOAD_SECRETS,
    RULE_TOOL_CONTRACT, RULE_TOOL_SCHEMA,
};
pub use schema::policy_json_schema;
/// Payload safety types frontends need (they do not depend on `tame-safety` directly).
pub use tame_safety::{
    AgentBinding, Category, ContractError, Contracts, Finding, InterceptAction, Kind, RequestInterception,
    RequestValidation, ResponseInterception, Scanner, SchemaViolation, ToolContract, ToolSchemas, ToolSpec, labels,
};
/// What [`Policy::filter_response`] returns: `safe_response`, `stripped_fields`, `findings`.
pub type ResponseFilter = tame_safety::ResponseInterception;
pub use tame_interp::{NoFacts, Provenance, SessionFacts, ToolPattern};
pub use tame_lang::{HostFn, Type, Value};
