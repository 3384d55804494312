//! The Tame HTTP server: the original tame server's API over the engine
//! facade and the store, plus approvals, audit, metrics and OpenAPI.
//!
//! [`app`] builds the router (tests drive it with tower's `oneshot`);
//! [`run`] serves it with signals, policy file watching, the approval
//! expiry sweeper and graceful shutdown. The server holds no policy logic:
//! every decision comes from [`tame_engine::Policy::evaluate`].
//!
//! ## Releasing an approved call
//!
//! `POST /api/v1/enforce` answers `approve` with an `approval_id`. The
//! caller waits (`GET /api/v1/approvals/{id}/wait`, a long poll of at most
//! 50 s) until an admin approves or rejects it, then POSTs the same call to
//! `/api/v1/enforce` again with `"approval_id": ID` in the body (or in
//! `metadata`). The call must be identical (tool, arguments, session: the
//! approval is bound to their hash). It is evaluated again against the
//! current policy: `deny` still denies; otherwise the answer is `allow`
//! and the approval is used up. A rejected or expired approval answers
//! `deny`.
//!
//! ## Running tools (tool protocol v1)
//!
//! With a tools file (`tools_file` in the config, `TAME_TOOLS_FILE`, `tame
//! serve --tools-file`; a `tools.yaml` of `tame-integrations`), `POST
//! /api/v1/tools/run` `{tool_name, payload, session_id?, agent_id?,
//! user_id?, metadata?, trace_id?}` runs a registered tool with the agent
//! key: the call is decided and logged exactly as by `POST /api/v1/enforce`,
//! an `approve` is waited for (at most the long-poll cap) and released, the
//! tool runs only on `allow`, and its outcome (with the protocol's trace) is
//! recorded as by the result endpoint. The answer is the run report (200
//! whatever the decision); unknown tools, and every tool without a tools
//! file, get 404.
//!
//! ## Session memory: inputs and results
//!
//! Policies can relate a call to what its session has seen (`from_input`,
//! `from_results`, `carries_from_results`, `session.calls`,
//! `session.inputs`). What the user asked arrives through `POST
//! /api/v1/sessions/{id}/inputs` `{"text": ...}` (201 `{recorded:
//! "input", session_id, input_id}`), which needs an **input key**
//! (`input_keys`, `TAME_INPUT_KEYS`, `--input-key`) or an admin key: the
//! integration holds it, outside the model's reach, and an agent key alone
//! cannot say what the user asked (with no keys at all, the keyless local
//! rules apply; the edge's Host, Origin and content-type checks apply as on
//! every route). Results arrive through the result endpoint and are
//! recorded with who saw them, decided by the key, never by the body:
//! `agent` for an agent key, `proxy` for a **proxy key** (`proxy_keys`,
//! `TAME_PROXY_KEYS`, `--proxy-key`: an agent key for the remote MCP
//! proxy), `runner` for `POST /api/v1/tools/run`. Both are chained audit
//! records (`input`, and `result` with its `source`), so a session read
//! back from the log after a restart holds the same history and
//! provenance. A call that ran and whose result is not reported yet makes
//! provenance checks over its tool fail closed.
//!
//! ## Audit log and durability
//!
//! Every decision goes to the store's writer thread, which group-commits
//! whatever is queued in one SQLite transaction and chains each record's
//! HMAC to the previous one; the HTTP answer is sent only after the commit
//! (`durability: full`, the default: the commit also syncs the WAL, so the
//! decision survives a power cut; `normal`: once committed to the WAL,
//! which survives a crash or SIGKILL of the server). Secrets in arguments,
//! metadata and results are redacted before storage.
//!
//! ## Configuration
//!
//! [`ServerConfig`] has plain fields; [`ServerConfig::load`] reads a YAML
//! config file and `TAME_*` environment variables, the caller applies its
//! flags last. With no API keys the server refuses non-loopback addresses
//! unless `allow_insecure_bind` is set.
//!
//! ## Failed authentications
//!
//! Wrong or missing API keys and wrong dashboard login keys count against
//! their client address (the socket peer, or `X-Forwarded-For` from a
//! trusted proxy; IPv6 by /64): after `burst` of them (10) the client is
//! answered 429 with `Retry-After` until one more refills (every 6 s),
//! whatever key it sends, valid or not, so that a guess cannot be confirmed
//! meanwhile. Valid keys never reach the limiter; `burst: 0` turns it off.
//! See [`FailureLimit`] and the `ratelimit` module; counted in `/metrics` as
//! `tame_auth_failures_total` and `tame_auth_limited_total` by surface.
//!
//! ## The HTTP edge
//!
//! Before any route reads a request, the `edge` module checks that its
//! `Host` names this server (421 otherwise: DNS rebinding), that its
//! `Origin`, if any, is this server's own (403: cross-site requests), the
//! API key its route needs (401/403, before the body is read), and that
//! the API's POST routes get `application/json` (415). `allowed_hosts`
//! (`TAME_ALLOWED_HOSTS`, `--allowed-host`) lists the names besides
//! loopback, `localhost` and the listen address. The `conn` module serves
//! the connections: a cap on open ones (`max_connections`), a timeout for
//! a request's head (`header_timeout`, 10 s) and one for idle keep-alive
//! connections (`idle_timeout`, 75 s).
//!
//! ## Speed
//!
//! `cargo run --release -p tame-server --example load -- --seconds 3
//! --rounds 2 [--connections 64] [--durability normal]` (or `cargo xtask
//! load ...`) drives `/health` and `/api/v1/enforce` of one server and
//! prints requests/s, p50, p99 and the ratio of the two; the README's
//! Speed section has the numbers.

mod api;
mod auth;
mod config;
mod conn;
mod dashboard;
mod edge;
mod enforce;
mod error;
mod logging;
mod metrics;
mod openapi;
mod ratelimit;
mod ready;
mod redact;
mod serve;
mod service;
mod state;
mod tools;

pub use auth::{Auth, Role};
pub use config::{
    AuthFailureArgs, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, EdgeArgs, MAX_WAIT_CAP, ServeFlags, ServerConfig,
    config_json_schema,
};
pub use conn::{DEFAULT_MAX_CONNECTIONS, connection_cap};
pub use edge::{AllowedHost, Hosts};
pub use error::AppError;
pub use logging::{ACCESS_TARGET, LogFormat, MAX_REQUEST_ID, init_logging, log_subscriber};
pub use openapi::{ROUTES, RouteDoc, openapi_document};
pub use ratelimit::{ClientKey, FailureLimit, FailureLimiter, parse_period_secs, parse_proxy};
pub use ready::{MAX_PROBES_IN_FLIGHT, STORE_PROBE_TIMEOUT};
pub use serve::{open_store, run, run_until, shutdown_signal};
pub use state::{AppState, Limits, LoadedPolicy, ReloadOutcome};

use axum::Router;
use axum::routing::{MethodRouter, get, post};

/// The router of every route in [`ROUTES`], with its state, for a server
/// on loopback ([`Hosts::default`]). The OpenAPI document is generated
/// from the same table.
pub fn app(state: AppState) -> Router {
    app_with(state, Hosts::default())
}

/// [`app`] answering to `hosts` (a server's listen address and its
/// `allowed_hosts`).
pub fn app_with(state: AppState, hosts: Hosts) -> Router {
    let mut router = Router::new();
    for (path, handler) in handlers() {
        router = router.route(path, handler);
    }
    // Refused API keys count against their client; a client over its
    // budget is answered 429 (the dashboard's login form counts in
    // `login`). Inside it the edge checks Host, Origin, the route's key
    // and its content type, so the keys it refuses count too. One layer
    // with the trace layer: axum boxes each layer's future, so stacking
    // them costs no allocation of its own. The access log is outermost, so
    // every answer, refusals included, is logged with its request id.
    let layers = tower::ServiceBuilder::new()
        .layer(logging::AccessLogLayer)
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(redact::request_span))
        .layer(ratelimit::AuthLimitLayer::new(state.clone()))
        .layer(edge::EdgeLayer::new(state.clone(), hosts));
    // The dashboard (HTML, not API) is not in ROUTES nor the OpenAPI document.
    router
        .merge(dashboard::router())
        .fallback(api::not_found)
        .layer(layers)
        .with_state(state)
}

/// One method router per path, in the order of [`ROUTES`].
fn handlers() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/api/v1/enforce", post(enforce::enforce)),
        ("/api/v1/enforce/{session_id}/result", post(api::record_result)),
        ("/api/v1/tools/run", post(tools::run_tool)),
        ("/api/v1/sessions", get(api::list_sessions)),
        ("/api/v1/sessions/{session_id}", get(api::session_log)),
        ("/api/v1/sessions/{session_id}/summary", get(api::session_summary)),
        ("/api/v1/sessions/{session_id}/inputs", post(api::record_input)),
        ("/api/v1/policy/current", get(api::policy_current)),
        ("/api/v1/policy/validate", post(api::policy_validate)),
        ("/api/v1/policy/reload", post(api::policy_reload)),
        (
            "/api/v1/policy/test",
            get(api::policy_test_get).post(api::policy_test_post),
        ),
        ("/api/v1/policy/versions", get(api::policy_versions)),
        ("/api/v1/approvals", get(api::list_approvals)),
        ("/api/v1/approvals/{approval_id}", get(api::get_approval)),
        ("/api/v1/approvals/{approval_id}/approve", post(api::approve)),
        ("/api/v1/approvals/{approval_id}/reject", post(api::reject)),
        ("/api/v1/approvals/{approval_id}/wait", get(api::wait_approval)),
        ("/api/v1/audit/verify", get(api::audit_verify)),
        ("/api/v1/audit/export", get(api::audit_export)),
        ("/health", get(api::health)),
        ("/ready", get(ready::ready)),
        ("/metrics", get(api::metrics)),
        ("/openapi.json", get(api::openapi)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_table_and_route_docs_agree() {
        let handled: Vec<&str> = handlers().into_iter().map(|(p, _)| p).collect();
        let mut documented: Vec<&str> = ROUTES.iter().map(|r| r.path).collect();
        documented.dedup();
        assert_eq!(handled, documented);
    }
}
