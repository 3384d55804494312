//! `GET /ready`: the readiness probe. 200 only when the store answers a
//! read and a policy is loaded; else 503 naming the check that failed.
//! `/health` stays the liveness probe: it answers as long as the process
//! serves HTTP, whatever the store does.
//!
//! The store check is one indexed read (the log entry of an id no call
//! has: nothing is found, but the database must answer) on the blocking
//! pool, given [`STORE_PROBE_TIMEOUT`]. A read that does not answer in time
//! keeps its blocking thread until it returns, so at most
//! [`MAX_PROBES_IN_FLIGHT`] probes wait on the store at once; a probe
//! beyond them fails at once rather than take another thread. Both checks
//! are public (no key), as `/health` is; the reasons they give are
//! generic, the store's error itself goes to the log.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;

/// How long the store has to answer the probe's read.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes of the store that may wait on it at once (across the process).
pub const MAX_PROBES_IN_FLIGHT: usize = 4;

static PROBES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_PROBES_IN_FLIGHT);

/// A log id no record has (log ids are UUIDs).
const PROBE_ID: &str = "tame-readiness-probe";

pub async fn ready(State(state): State<AppState>) -> Response {
    let store = store_check(&state).await;
    let policy = policy_check(&state);
    let failed: Vec<&str> = [("store", &store), ("policy", &policy)]
        .into_iter()
        .filter(|(_, check)| check["ok"] != Value::Bool(true))
        .map(|(name, _)| name)
        .collect();
    let (status, word) = if failed.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    };
    let body = json!({
        "status": word,
        "failed": failed,
        "checks": {"store": store, "policy": policy},
    });
    (status, axum::Json(body)).into_response()
}

/// Whether the store answers a read in time.
async fn store_check(state: &AppState) -> Value {
    let Ok(permit) = PROBES.try_acquire() else {
        tracing::warn!("readiness: earlier probes of the store have not answered yet");
        return json!({"ok": false, "error": "earlier probes of the store have not answered yet"});
    };
    let store = std::sync::Arc::clone(state.store());
    let read = tokio::task::spawn_blocking(move || {
        let found = store.log_entry(PROBE_ID);
        drop(permit);
        found
    });
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, read).await {
        Ok(Ok(Ok(_))) => json!({"ok": true}),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "readiness: the store failed its probe read");
            json!({"ok": false, "error": "the store failed a read"})
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store's probe read did not finish");
            json!({"ok": false, "error": "the store's probe read did not finish"})
        }
        Err(_) => {
            tracing::warn!(timeout = ?STORE_PROBE_TIMEOUT, "readiness: the store did not answer in time");
            json!({"ok": false, "error": format!("the store did not answer within {} ms", STORE_PROBE_TIMEOUT.as_millis())})
        }
    }
}

/// The policy being served. The server starts only with a policy that
/// compiles and a reload that fails keeps the running one, so a state
/// always holds one; the check says which.
fn policy_check(state: &AppState) -> Value {
    let loaded = state.policy();
    let info = loaded.policy.info();
    json!({"ok": true, "version": info.version, "hash": info.hash, "loaded_at": loaded.loaded_at.to_string()})
}
