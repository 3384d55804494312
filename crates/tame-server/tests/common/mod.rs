//! Shared helpers of the server's tests: a policy, a state over a temporary
//! store, and one-shot requests through the router.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tame_server::{AppState, Auth, Limits, LoadedPolicy};
use tame_store::{SqliteOptions, SqliteStore, Store};
use tower::ServiceExt;

pub const POLICY: &str = r#"
version: "t1"
description: "test policy"
default: deny
rules:
  - name: block_etc
    action: deny
    tools: ["read_file"]
    condition: 'args.path.startsWith("/etc/")'
    reason: "System paths are off limits ({args.path})"
  - name: rate_limit_email
    action: deny
    tools: ["send_email"]
    condition: 'session.count("send_email", duration("1h")) >= 2'
  - name: no_post_after_secret
    action: deny
    tools: ["http_post"]
    condition: 'session.called("read_secret")'
  - name: prod_db
    action: approve
    tools: ["query_database"]
    condition: 'args.database == "production"'
  - name: allow_rest
    action: allow
    tools: ["read_*", "send_email", "http_post", "query_database"]
"#;

pub struct Harness {
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

pub fn harness_with(auth: Auth, limits: Limits) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
    harness_on(dir, Arc::new(store), auth, limits)
}

/// A harness over `store` (any backend); the policy file goes in `dir`.
pub fn harness_on(dir: tempfile::TempDir, store: Arc<dyn Store>, auth: Auth, limits: Limits) -> Harness {
    let policy_path = dir.path().join("policies.yml");
    std::fs::write(&policy_path, POLICY).unwrap();
    let policy = tame_engine::Policy::from_yaml(POLICY, "policies.yml").unwrap();
    let loaded = LoadedPolicy {
        policy,
        source: POLICY.to_string(),
        origin: policy_path.display().to_string(),
        loaded_at: jiff::Timestamp::now(),
    };
    let state = AppState::new(loaded, Some(policy_path), store, auth, limits);
    Harness { state, dir }
}

pub fn harness() -> Harness {
    harness_with(Auth::default(), Limits::default())
}

pub fn short_approvals() -> Limits {
    Limits {
        approval_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub json: Value,
    pub text: String,
    pub content_type: Option<String>,
}

impl Harness {
    pub async fn call(&self, method: &str, uri: &str, body: Option<&str>, key: Option<&str>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty))
            .unwrap();
        let resp = tame_server::app(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            json,
            text,
            content_type,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call("GET", uri, None, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call("POST", uri, Some(&body.to_string()), None).await
    }

    pub async fn enforce(&self, body: Value) -> Reply {
        self.post("/api/v1/enforce", body).await
    }
}
