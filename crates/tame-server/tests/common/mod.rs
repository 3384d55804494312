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
use tame_store::{
    Approval, ApprovalDecision, ApprovalState, DecisionReceipt, DecisionTotals, FactsHandle, LogEntry, LogPage,
    NewDecision, NewPolicyVersion, NewResult, PolicyVersion, SessionPage, SessionQuery, SessionSummary, SqliteOptions,
    SqliteStore, Store, StoreResult, Ticket, VerifyReport,
};
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
    let state = state_with(POLICY, Some(policy_path), store, auth, limits);
    Harness { state, dir }
}

/// A state over `store` deciding by `policy` (reloaded from `policy_path`
/// when one is given).
pub fn state_with(
    policy: &str,
    policy_path: Option<std::path::PathBuf>,
    store: Arc<dyn Store>,
    auth: Auth,
    limits: Limits,
) -> AppState {
    let origin = policy_path
        .as_ref()
        .map_or_else(|| "policies.yml".to_string(), |p| p.display().to_string());
    let loaded = LoadedPolicy {
        policy: tame_engine::Policy::from_yaml(policy, "policies.yml").unwrap(),
        source: policy.to_string(),
        origin,
        loaded_at: jiff::Timestamp::now(),
    };
    AppState::new(loaded, policy_path, store, auth, limits)
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
        send(&self.state, req).await
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

/// `POST /api/v1/enforce` of `body` through a router over `state`.
pub async fn enforce_on(state: &AppState, body: &Value) -> Reply {
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/enforce")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(state, req).await
}

/// Sends `req` through a router over `state` and reads the reply.
pub async fn send(state: &AppState, req: Request<Body>) -> Reply {
    let resp = tame_server::app(state.clone()).oneshot(req).await.unwrap();
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

/// Runs after a read of an approval, with the approval found.
pub type ApprovalHook = Box<dyn Fn(&Approval) + Send + Sync>;

/// A SQLite store with hooks on its reads, for tests that watch them:
/// reads of one approval are counted (`approval_reads`) and followed by
/// `after_approval`; a session's state read back from the database (every
/// read: nothing is kept in memory for the server) blocks for
/// `session_read_delay` first; and every read blocks for `read_delay`,
/// then fails when `reads_broken` is set (writes pass through).
pub struct Hooked {
    pub inner: SqliteStore,
    pub approval_reads: std::sync::atomic::AtomicU64,
    pub after_approval: std::sync::Mutex<Option<ApprovalHook>>,
    pub session_read_delay: Duration,
    pub read_delay: std::sync::Mutex<Duration>,
    pub reads_broken: std::sync::atomic::AtomicBool,
}

impl Hooked {
    pub fn new(inner: SqliteStore) -> Self {
        Hooked {
            inner,
            approval_reads: std::sync::atomic::AtomicU64::new(0),
            after_approval: std::sync::Mutex::new(None),
            session_read_delay: Duration::ZERO,
            read_delay: std::sync::Mutex::new(Duration::ZERO),
            reads_broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A read of the store, after `read_delay`, failing if `reads_broken`.
    fn read<T>(&self, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        std::thread::sleep(*self.read_delay.lock().unwrap());
        if self.reads_broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(tame_store::StoreError::Db("the disk went away".into()));
        }
        f()
    }
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked").finish_non_exhaustive()
    }
}

impl Store for Hooked {
    fn session_facts(&self, session_id: &str) -> StoreResult<FactsHandle> {
        std::thread::sleep(self.session_read_delay);
        self.read(|| self.inner.session_facts(session_id))
    }
    fn fresh_session_facts(&self, session_id: &str) -> FactsHandle {
        self.inner.fresh_session_facts(session_id)
    }
    fn record_decision(&self, decision: NewDecision) -> Ticket<DecisionReceipt> {
        self.inner.record_decision(decision)
    }
    fn record_result(&self, result: NewResult) -> Ticket<u64> {
        self.inner.record_result(result)
    }
    fn record_input(&self, input: tame_store::NewInput) -> Ticket<u64> {
        self.inner.record_input(input)
    }
    fn redactor(&self) -> &tame_enforce::Redactor {
        self.inner.redactor()
    }
    fn decide_approval(&self, decision: ApprovalDecision) -> Ticket<Approval> {
        self.inner.decide_approval(decision)
    }
    fn expire_approvals(&self, now: jiff::Timestamp) -> Ticket<Vec<String>> {
        self.inner.expire_approvals(now)
    }
    fn record_policy(&self, policy: NewPolicyVersion) -> Ticket<u64> {
        self.inner.record_policy(policy)
    }
    fn flush(&self) -> Ticket<()> {
        self.inner.flush()
    }
    fn sessions(&self, query: &SessionQuery) -> StoreResult<SessionPage> {
        self.read(|| self.inner.sessions(query))
    }
    fn session_summary(&self, session_id: &str) -> StoreResult<Option<SessionSummary>> {
        self.read(|| self.inner.session_summary(session_id))
    }
    fn session_log(&self, session_id: &str) -> StoreResult<Option<Vec<LogEntry>>> {
        self.read(|| self.inner.session_log(session_id))
    }
    fn log_entry(&self, log_id: &str) -> StoreResult<Option<LogEntry>> {
        self.read(|| self.inner.log_entry(log_id))
    }
    fn decision_totals(&self) -> StoreResult<DecisionTotals> {
        self.read(|| self.inner.decision_totals())
    }
    fn recent_decisions(&self, limit: u64) -> StoreResult<Vec<LogEntry>> {
        self.read(|| self.inner.recent_decisions(limit))
    }
    fn session_log_page(&self, session_id: &str, offset: u64, limit: u64) -> StoreResult<Option<LogPage>> {
        self.read(|| self.inner.session_log_page(session_id, offset, limit))
    }
    fn approvals(&self, state: Option<ApprovalState>, now: jiff::Timestamp) -> StoreResult<Vec<Approval>> {
        self.read(|| self.inner.approvals(state, now))
    }
    fn decided_approvals(&self, limit: u64, now: jiff::Timestamp) -> StoreResult<Vec<Approval>> {
        self.read(|| self.inner.decided_approvals(limit, now))
    }
    fn approval(&self, id: &str, now: jiff::Timestamp) -> StoreResult<Option<Approval>> {
        let found = self.read(|| self.inner.approval(id, now));
        self.approval_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let (Ok(Some(a)), Some(hook)) = (&found, self.after_approval.lock().unwrap().as_ref()) {
            hook(a);
        }
        found
    }
    fn policy_versions(&self) -> StoreResult<Vec<PolicyVersion>> {
        self.read(|| self.inner.policy_versions())
    }
    fn verify(&self) -> StoreResult<VerifyReport> {
        self.read(|| self.inner.verify())
    }
    fn export(&self, out: &mut dyn std::io::Write) -> StoreResult<u64> {
        self.read(|| self.inner.export(out))
    }
}
