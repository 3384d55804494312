//! Tame integrations: guard agents' tools where they already run.
//!
//! - [`mcp`]: the MCP proxy (`tame mcp-proxy`) that enforces every
//!   `tools/call` before the real server sees it, over stdio or Streamable
//!   HTTP on either side ([`mcp_upstream`]: the server, a child or a URL;
//!   [`mcp_listen`]: clients over HTTP; [`mcp_config`]: its options and
//!   the client configuration entries it prints);
//! - [`protocol`]: the tool protocol v1 runner (Python subprocess or HTTP
//!   service, with timeouts and trace fields);
//! - [`run`]: guarded tool runs for `tame run-tool` and the server's
//!   `POST /api/v1/tools/run`;
//! - [`discover`]: an MCP server's `tools/list`, for `tame init`;
//! - [`guard`]: where decisions come from (the embedded engine or a server);
//! - [`tls`]: `https://` for the HTTP clients (a remote Tame server, tool
//!   services): rustls (ring), certificates checked against the system's
//!   trusted roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured) or the roots
//!   given to `RemoteGuard::with_tls_roots` / `ToolRunner::with_tls_roots`.
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::json;
//! use tame_engine::{Action, Policy};
//! use tame_integrations::{EmbeddedGuard, Guard, ToolCall};
//!
//! let policy = Policy::from_yaml(
//!     "version: \"1\"\nrules:\n  - name: no_rm\n    action: deny\n    tools: [\"rm\"]\n    reason: \"never\"\n",
//!     "inline.yml",
//! )?;
//! let guard = EmbeddedGuard::new(Arc::new(policy));
//! let verdict = tokio::runtime::Runtime::new()?
//!     .block_on(guard.enforce(&ToolCall::new("rm", json!({"path": "/"}), "session-1")))?;
//! assert_eq!((verdict.decision, verdict.reason.as_str()), (Action::Deny, "never"));
//! assert!(guard.denies_unconditionally("rm"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod discover;
pub mod error;
pub mod guard;
pub mod hide;
pub mod mcp;
pub mod mcp_config;
pub mod mcp_listen;
pub mod mcp_upstream;
pub mod protocol;
pub mod run;
pub mod tls;

pub use discover::{McpTool, list_mcp_tools};
pub use error::{Error, Result};
pub use guard::{
    AnyGuard, ApprovalOutcome, Approver, CallOutcome, CallStatus, EmbeddedGuard, Guard, RemoteGuard, ToolCall, Verdict,
};
pub use mcp::{McpProxyOptions, run_mcp_proxy, run_mcp_proxy_with};
pub use mcp_config::{ClientKind, Launcher, McpTransportArgs, client_config};
pub use protocol::{Execution, RunnerSpec, ToolBinding, ToolError, ToolRunner, ToolsFile, Trace};
pub use run::{
    CallContext, RunToolOptions, ToolRunReport, ToolsService, run_guarded, run_tool, run_tool_async, tools_router,
};
pub use tls::TlsRoots;
