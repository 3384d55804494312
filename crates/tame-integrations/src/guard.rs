//! Where a tool call's decision comes from: the [`Guard`] trait, with the
//! embedded engine ([`EmbeddedGuard`]) and a Tame server ([`RemoteGuard`]).
//!
//! Both the MCP proxy and the tool runner ask a guard before anything runs,
//! wait on it for approvals, and hand it the call's outcome to record. The
//! server can implement [`Guard`] over its own engine and store to mount the
//! tool runner's HTTP handler.

use std::fs::File;
use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::tls::TlsRoots;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tame_enforce::{
    ApprovalDecision, ApprovalState, Call, EnforceError, Enforcer, MemoryError, MemoryStore, ResultSource,
};
use tame_engine::{Action, Policy};

/// One tool call as the guard sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ToolCall {
    pub tool_name: String,
    /// The call's arguments (a JSON object).
    pub tool_args: Value,
    pub session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Free-form metadata (a JSON object).
    pub metadata: Value,
}

impl ToolCall {
    /// A call with empty metadata and no agent or user.
    pub fn new(tool_name: impl Into<String>, tool_args: Value, session_id: impl Into<String>) -> Self {
        ToolCall {
            tool_name: tool_name.into(),
            tool_args,
            session_id: session_id.into(),
            agent_id: None,
            user_id: None,
            metadata: Value::Object(Map::new()),
        }
    }
}

/// The guard's answer for one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Action,
    pub rule_name: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub policy_version: String,
    /// The audit log entry of the decision (the result is recorded under it).
    #[serde(default)]
    pub log_id: Option<String>,
    /// Set when `decision` is `approve`: the pending approval to wait on.
    #[serde(default)]
    pub approval_id: Option<String>,
    #[serde(default)]
    pub session_id: String,
}

/// What became of a pending approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalOutcome {
    Approved,
    /// A human rejected the call; the reason they gave, if any.
    Rejected(Option<String>),
    /// Nobody decided within the wait (or nobody can: the embedded engine).
    Pending,
}

/// Whether a call that ran succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    Success,
    Error,
}

/// What a call that ran returned, recorded under the decision's log entry.
#[derive(Clone, Debug, Serialize)]
pub struct CallOutcome {
    pub status: CallStatus,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The tool's result (an MCP `CallToolResult`, a tool protocol result).
    pub result: Value,
    /// Extra fields kept with the record (e.g. the tool protocol's trace).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Decides tool calls and records their outcomes.
///
/// Implemented by [`EmbeddedGuard`] (the engine in this process),
/// [`RemoteGuard`] (a Tame server over HTTP) and [`AnyGuard`] (either).
pub trait Guard: Send + Sync {
    /// Decides `call`. An `Err` means no decision could be had; callers
    /// treat it as a deny (fail closed).
    fn enforce(&self, call: &ToolCall) -> impl Future<Output = Result<Verdict>> + Send;

    /// Records what the call returned, under `verdict.log_id`.
    fn record(
        &self,
        verdict: &Verdict,
        call: &ToolCall,
        outcome: &CallOutcome,
    ) -> impl Future<Output = Result<()>> + Send;

    /// After approval `approval_id` was granted: the decision that lets
    /// `call` (the same call) run. The policy is asked again (its deny still
    /// denies) and the approval is used up; run the call only on `allow`,
    /// and record its outcome under this verdict's log id.
    fn release(&self, call: &ToolCall, approval_id: &str) -> impl Future<Output = Result<Verdict>> + Send;

    /// Waits at most `timeout` for a human to decide approval `approval_id`.
    fn wait_approval(
        &self,
        approval_id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<ApprovalOutcome>> + Send;

    /// Whether the policy denies `tool` whatever its arguments and session
    /// (used to hide tools from `tools/list`). `false` when unsure.
    fn denies_unconditionally(&self, tool: &str) -> bool;
}

/// A JSON-lines journal of decisions and outcomes (one object per line).
#[derive(Debug)]
struct Journal {
    file: Mutex<File>,
}

impl Journal {
    fn create(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::File {
                action: "open journal",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Journal { file: Mutex::new(file) })
    }

    fn write(&self, entry: &Value) {
        if let Ok(mut file) = self.file.lock() {
            let line = entry.to_string();
            if let Err(err) = writeln!(file, "{line}").and_then(|()| file.flush()) {
                tracing::warn!("cannot write journal entry: {err}");
            }
        }
    }
}

/// How many decisions the embedded guard keeps in memory.
pub const MAX_LOG_ENTRIES: usize = tame_enforce::DEFAULT_LOG_CAPACITY;

/// One entry of the embedded guard's in-memory log: the server's shape.
pub type LogEntry = tame_enforce::LogEntry;

/// Decides approvals for the embedded engine (a human at a prompt, a
/// test's script): sees the call and the verdict that asked for approval.
pub type Approver = Arc<dyn Fn(&ToolCall, &Verdict) -> ApprovalOutcome + Send + Sync>;

/// The engine in this process: decisions from a compiled [`Policy`] through
/// the one enforcement path (`tame_enforce`) over an in-memory store
/// (session state, approvals, the newest [`MAX_LOG_ENTRIES`] log entries),
/// and an optional JSON-lines journal file. Without an [`Approver`],
/// approvals stay pending.
///
/// The results it records enter the session's history with the source of
/// the frontend that saw them: `proxy` by default (the MCP proxy relays the
/// server's answer itself), `runner` for the tool runner
/// ([`EmbeddedGuard::with_result_source`]); never the agent's word.
pub struct EmbeddedGuard {
    policy: Arc<Policy>,
    store: MemoryStore,
    journal: Option<Journal>,
    approver: Option<Approver>,
    source: ResultSource,
}

impl std::fmt::Debug for EmbeddedGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedGuard")
            .field("policy", &self.policy.info().origin)
            .field("journal", &self.journal.is_some())
            .field("approver", &self.approver.is_some())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl EmbeddedGuard {
    pub fn new(policy: Arc<Policy>) -> Self {
        EmbeddedGuard {
            policy,
            store: MemoryStore::with_log_capacity(MAX_LOG_ENTRIES),
            journal: None,
            approver: None,
            source: ResultSource::Proxy,
        }
    }

    /// Records results as seen by `source` (the default: the MCP proxy).
    pub fn with_result_source(mut self, source: ResultSource) -> Self {
        self.source = source;
        self
    }

    /// Lets `approver` decide approvals (otherwise they stay pending).
    pub fn with_approver(mut self, approver: Approver) -> Self {
        self.approver = Some(approver);
        self
    }

    /// Loads and compiles the policy file at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let policy = Policy::from_file(path).map_err(|err| Error::Policy {
            path: path.to_path_buf(),
            rendered: err.to_string(),
        })?;
        Ok(Self::new(Arc::new(policy)))
    }

    /// Also appends every decision and outcome to the JSON-lines file `path`.
    pub fn with_journal(mut self, path: &Path) -> Result<Self> {
        self.journal = Some(Journal::create(path)?);
        Ok(self)
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The sessions, approvals and log of this guard.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// A copy of the log so far (decisions, with results once recorded).
    pub fn log(&self) -> Vec<LogEntry> {
        self.store.log()
    }

    /// Decides `call`; with `release`, the call comes back with an approval
    /// (the approval-release rule of the enforcement path applies).
    fn decide(&self, call: &ToolCall, release: Option<&str>) -> Result<Verdict> {
        let mut body = serde_json::to_value(call)?;
        if let (Some(id), Value::Object(fields)) = (release, &mut body) {
            fields.insert("approval_id".to_owned(), Value::String(id.to_owned()));
        }
        let parsed = Call::from_json(body).map_err(|source| Error::InvalidCall {
            tool: call.tool_name.clone(),
            source,
        })?;
        let enforcer = Enforcer::with_policy(&self.policy);
        let outcome = self.store.enforce(&enforcer, parsed).map_err(|source| Error::Enforce {
            what: format!("`{}` was not decided", call.tool_name),
            source,
        })?;
        let verdict = Verdict {
            decision: outcome.decision.action,
            rule_name: outcome.decision.rule_name.as_deref().map(str::to_owned),
            reason: outcome.decision.reason.to_string(),
            policy_version: outcome.decision.policy_version.to_string(),
            log_id: Some(outcome.log_id.clone()),
            approval_id: outcome.approval_id().map(str::to_owned),
            session_id: outcome.session_id.clone(),
        };
        if let Some(journal) = &self.journal {
            // The stored record: secrets redacted.
            let record = &outcome.record;
            journal.write(&json!({
                "kind": "decision",
                "timestamp": outcome.timestamp.to_string(),
                "log_id": record.log_id,
                "session_id": record.session_id,
                "agent_id": record.agent_id,
                "user_id": record.user_id,
                "tool_name": record.tool_name,
                "tool_args": record.tool_args,
                "decision": record.decision,
                "rule_name": record.rule_name,
                "reason": record.reason,
                "policy_version": record.policy_version,
                "approval_id": verdict.approval_id,
                "released_approval": release,
            }));
        }
        Ok(verdict)
    }
}

impl Guard for EmbeddedGuard {
    async fn enforce(&self, call: &ToolCall) -> Result<Verdict> {
        self.decide(call, None)
    }

    async fn release(&self, call: &ToolCall, approval_id: &str) -> Result<Verdict> {
        self.decide(call, Some(approval_id))
    }

    async fn record(&self, verdict: &Verdict, _call: &ToolCall, outcome: &CallOutcome) -> Result<()> {
        let Some(log_id) = verdict.log_id.as_deref() else {
            return Err(Error::NotFound(
                "cannot record a result: the decision has no log id".into(),
            ));
        };
        let body = serde_json::to_value(outcome)?;
        let enforcer = Enforcer::with_policy(&self.policy);
        let recorded = match self
            .store
            .record_result_from(&enforcer, &verdict.session_id, log_id, body, self.source)
        {
            Ok(recorded) => recorded,
            Err(EnforceError::Store(MemoryError::LogNotFound(_))) => {
                return Err(Error::NotFound(format!(
                    "cannot record a result: unknown log id `{log_id}`"
                )));
            }
            Err(source) => {
                return Err(Error::Enforce {
                    what: format!("cannot record a result for log id `{log_id}`"),
                    source,
                });
            }
        };
        if let Some(journal) = &self.journal {
            let mut entry = json!({
                "kind": "result",
                "timestamp": jiff::Timestamp::now().to_string(),
                "log_id": log_id,
                "session_id": recorded.record.session_id,
                "labels": recorded.labels,
                "source": self.source.as_str(),
            });
            if let (Value::Object(entry), Value::Object(fields)) = (&mut entry, recorded.record.result) {
                entry.extend(fields);
            }
            journal.write(&entry);
        }
        Ok(())
    }

    async fn wait_approval(&self, approval_id: &str, _timeout: Duration) -> Result<ApprovalOutcome> {
        let now = jiff::Timestamp::now();
        let Some(approval) = self.store.approval(approval_id, now) else {
            return Err(Error::NotFound(format!("unknown approval id `{approval_id}`")));
        };
        match approval.state {
            ApprovalState::Approved => return Ok(ApprovalOutcome::Approved),
            ApprovalState::Rejected => return Ok(ApprovalOutcome::Rejected(approval.decision_reason)),
            ApprovalState::Expired => {
                return Ok(ApprovalOutcome::Rejected(Some(format!(
                    "approval {approval_id} expired"
                ))));
            }
            ApprovalState::Pending => {}
        }
        // Without an approver there is nobody to ask: the call stays pending.
        let Some(approver) = &self.approver else {
            return Ok(ApprovalOutcome::Pending);
        };
        // The approver sees the call as stored (secrets redacted).
        let call = ToolCall {
            tool_name: approval.tool_name.clone(),
            tool_args: approval.tool_args.clone(),
            session_id: approval.session_id.clone(),
            agent_id: approval.agent_id.clone(),
            user_id: approval.user_id.clone(),
            metadata: Value::Object(Map::new()),
        };
        let verdict = Verdict {
            decision: Action::Approve,
            rule_name: approval.rule_name.clone(),
            reason: approval.reason.clone(),
            policy_version: approval.policy_version.clone(),
            log_id: Some(approval.log_id.clone()),
            approval_id: Some(approval_id.to_owned()),
            session_id: approval.session_id.clone(),
        };
        let outcome = approver(&call, &verdict);
        let (approve, reason) = match &outcome {
            ApprovalOutcome::Pending => return Ok(outcome),
            ApprovalOutcome::Approved => (true, None),
            ApprovalOutcome::Rejected(why) => (false, why.clone()),
        };
        let decided = self
            .store
            .decide_approval(ApprovalDecision {
                id: approval_id.to_owned(),
                approve,
                by: None,
                reason,
                at: jiff::Timestamp::now(),
            })
            .map_err(|err| Error::Enforce {
                what: format!("cannot decide approval `{approval_id}`"),
                source: err.into(),
            })?;
        if let Some(journal) = &self.journal {
            journal.write(&json!({
                "kind": "approval",
                "timestamp": jiff::Timestamp::now().to_string(),
                "approval_id": approval_id,
                "log_id": decided.log_id,
                "status": decided.state,
                "reason": decided.decision_reason,
            }));
        }
        Ok(outcome)
    }

    fn denies_unconditionally(&self, tool: &str) -> bool {
        crate::hide::denies_unconditionally(&self.policy, tool)
    }
}

/// A Tame server reached over HTTP (`--api-url`): `POST /api/v1/enforce`,
/// `POST /api/v1/enforce/{session}/result?log_id=`, `/api/v1/approvals`.
#[derive(Clone, Debug)]
pub struct RemoteGuard {
    base: String,
    api_key: Option<String>,
    client: reqwest::Client,
    /// The server's rules as far as `--hide-denied` needs them, fetched
    /// once by [`RemoteGuard::load_hidden`].
    hidden: Arc<Mutex<Option<PolicyShape>>>,
}

impl RemoteGuard {
    /// `api_url` is the server's root, e.g. `http://127.0.0.1:8000` or
    /// `https://tame.example.com`; an https server's certificate is checked
    /// against the system's trusted roots ([`TlsRoots::system`]).
    pub fn new(api_url: &str, api_key: Option<String>) -> Result<Self> {
        RemoteGuard::with_tls_roots(api_url, api_key, &TlsRoots::system())
    }

    /// [`RemoteGuard::new`] trusting exactly `roots` for an https server
    /// (a private CA). Fails for an `https://` URL when `roots` has none.
    pub fn with_tls_roots(api_url: &str, api_key: Option<String>, roots: &TlsRoots) -> Result<Self> {
        let base = api_url.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| Error::Config(format!("invalid api url `{api_url}`: {e}")))?;
        roots.check(&url).map_err(Error::Tls)?;
        let client = roots.http_client(reqwest::Client::builder().timeout(Duration::from_secs(30)))?;
        Ok(RemoteGuard {
            base,
            api_key,
            client,
            hidden: Arc::new(Mutex::new(None)),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => builder.bearer_auth(key).header("x-api-key", key),
            None => builder,
        }
    }

    async fn json(response: reqwest::Response, what: &str) -> Result<Value> {
        let status = response.status();
        let body = response.text().await.map_err(|e| Error::unreachable(&e))?;
        if !status.is_success() {
            let detail = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("detail")
                        .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_owned))
                })
                .unwrap_or(body);
            return Err(Error::Server {
                status: status.as_u16(),
                what: what.to_owned(),
                detail,
            });
        }
        serde_json::from_str(&body).map_err(|e| Error::BadAnswer {
            what: what.to_owned(),
            detail: format!("not json: {e}"),
        })
    }

    async fn post_enforce(&self, call: &ToolCall, approval_id: Option<&str>) -> Result<Verdict> {
        let mut body = serde_json::to_value(call)?;
        if let (Some(id), Value::Object(fields)) = (approval_id, &mut body) {
            fields.insert("approval_id".to_owned(), Value::String(id.to_owned()));
        }
        let response = self
            .request(reqwest::Method::POST, "/api/v1/enforce")
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::unreachable(&e))?;
        let body = Self::json(response, "POST /api/v1/enforce").await?;
        let decision: Action =
            serde_json::from_value(body.get("decision").cloned().unwrap_or(Value::Null)).map_err(|e| {
                Error::BadAnswer {
                    what: "POST /api/v1/enforce".into(),
                    detail: format!("no valid `decision`: {e}"),
                }
            })?;
        Ok(Verdict {
            decision,
            rule_name: string_field(&body, "rule_name"),
            reason: string_field(&body, "reason").unwrap_or_default(),
            policy_version: string_field(&body, "policy_version").unwrap_or_default(),
            log_id: string_field(&body, "log_id"),
            approval_id: string_field(&body, "approval_id"),
            session_id: string_field(&body, "session_id").unwrap_or_else(|| call.session_id.clone()),
        })
    }

    /// Reads the server's current rules (`GET /api/v1/policy/current`) so
    /// that [`Guard::denies_unconditionally`] can answer for `tools/list`
    /// filtering; until then, and for rules whose condition the answer does
    /// not show, nothing is hidden beyond what is certain.
    pub async fn load_hidden(&self) -> Result<()> {
        let response = self
            .request(reqwest::Method::GET, "/api/v1/policy/current")
            .send()
            .await
            .map_err(|e| Error::unreachable(&e))?;
        let current = Self::json(response, "GET /api/v1/policy/current").await?;
        if let Ok(mut slot) = self.hidden.lock() {
            let (rules, default) = crate::hide::shapes_from_policy_json(&current);
            *slot = Some(PolicyShape { rules, default });
        }
        Ok(())
    }
}

/// A server policy's rules as `--hide-denied` sees them.
#[derive(Debug)]
struct PolicyShape {
    rules: Vec<crate::hide::RuleShape>,
    default: Action,
}

/// Reads a string field, accepting numbers too (log ids are strings in the
/// original API, numbers in some servers).
fn string_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Guard for RemoteGuard {
    async fn enforce(&self, call: &ToolCall) -> Result<Verdict> {
        self.post_enforce(call, None).await
    }

    async fn release(&self, call: &ToolCall, approval_id: &str) -> Result<Verdict> {
        self.post_enforce(call, Some(approval_id)).await
    }

    async fn record(&self, verdict: &Verdict, _call: &ToolCall, outcome: &CallOutcome) -> Result<()> {
        let Some(log_id) = verdict.log_id.as_deref() else {
            return Err(Error::NotFound(
                "cannot record a result: the server gave no log id".into(),
            ));
        };
        let path = format!("/api/v1/enforce/{}/result", verdict.session_id);
        let response = self
            .request(reqwest::Method::POST, &path)
            .query(&[("log_id", log_id)])
            .json(outcome)
            .send()
            .await
            .map_err(|e| Error::unreachable(&e))?;
        Self::json(response, &format!("POST {path}")).await.map(drop)
    }

    async fn wait_approval(&self, approval_id: &str, timeout: Duration) -> Result<ApprovalOutcome> {
        // The server long-polls `/wait` for at most 50 s a request.
        let deadline = Instant::now() + timeout;
        let path = format!("/api/v1/approvals/{approval_id}/wait");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let seconds = left.as_secs_f64().ceil().clamp(1.0, 50.0).to_string();
            let response = self
                .request(reqwest::Method::GET, &path)
                .query(&[("timeout", seconds.trim_end_matches(".0"))])
                .timeout(left + Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| Error::unreachable(&e))?;
            let body = Self::json(response, &format!("GET {path}")).await?;
            let approval = body.get("approval").unwrap_or(&body);
            let state = string_field(&body, "state")
                .or_else(|| string_field(approval, "state"))
                .unwrap_or_default();
            match state.as_str() {
                "approved" => return Ok(ApprovalOutcome::Approved),
                "rejected" | "expired" => {
                    let reason = string_field(approval, "decision_reason")
                        .or_else(|| (state == "expired").then(|| format!("approval {approval_id} expired")));
                    return Ok(ApprovalOutcome::Rejected(reason));
                }
                _ if Instant::now() >= deadline => return Ok(ApprovalOutcome::Pending),
                _ => {}
            }
        }
    }

    fn denies_unconditionally(&self, tool: &str) -> bool {
        self.hidden
            .lock()
            .ok()
            .and_then(|shape| {
                shape
                    .as_ref()
                    .map(|s| crate::hide::denied_by_shape(&s.rules, s.default, tool))
            })
            .unwrap_or(false)
    }
}

/// Either guard, chosen at run time (`--policy` or `--api-url`).
#[derive(Debug)]
pub enum AnyGuard {
    Embedded(EmbeddedGuard),
    Remote(RemoteGuard),
}

impl AnyGuard {
    /// The embedded engine with `policy`, or the server at `api_url`
    /// (which wins when both are given). One of the two is required.
    pub fn open(
        policy: Option<&Path>,
        api_url: Option<&str>,
        api_key: Option<String>,
        journal: Option<&Path>,
    ) -> Result<Self> {
        match (api_url, policy) {
            (Some(url), _) => Ok(AnyGuard::Remote(RemoteGuard::new(url, api_key)?)),
            (None, Some(path)) => {
                let guard = EmbeddedGuard::from_file(path)?;
                let guard = match journal {
                    Some(journal) => guard.with_journal(journal)?,
                    None => guard,
                };
                Ok(AnyGuard::Embedded(guard))
            }
            (None, None) => Err(Error::Config(
                "either a policy file (--policy) or a server (--api-url) is required".into(),
            )),
        }
    }
}

impl AnyGuard {
    /// Records results as seen by `source` when the engine is embedded (a
    /// server decides the source of what it is sent by itself).
    pub fn with_result_source(self, source: ResultSource) -> Self {
        match self {
            AnyGuard::Embedded(g) => AnyGuard::Embedded(g.with_result_source(source)),
            remote @ AnyGuard::Remote(_) => remote,
        }
    }
}

impl Guard for AnyGuard {
    async fn enforce(&self, call: &ToolCall) -> Result<Verdict> {
        match self {
            AnyGuard::Embedded(g) => g.enforce(call).await,
            AnyGuard::Remote(g) => g.enforce(call).await,
        }
    }

    async fn release(&self, call: &ToolCall, approval_id: &str) -> Result<Verdict> {
        match self {
            AnyGuard::Embedded(g) => g.release(call, approval_id).await,
            AnyGuard::Remote(g) => g.release(call, approval_id).await,
        }
    }

    async fn record(&self, verdict: &Verdict, call: &ToolCall, outcome: &CallOutcome) -> Result<()> {
        match self {
            AnyGuard::Embedded(g) => g.record(verdict, call, outcome).await,
            AnyGuard::Remote(g) => g.record(verdict, call, outcome).await,
        }
    }

    async fn wait_approval(&self, approval_id: &str, timeout: Duration) -> Result<ApprovalOutcome> {
        match self {
            AnyGuard::Embedded(g) => g.wait_approval(approval_id, timeout).await,
            AnyGuard::Remote(g) => g.wait_approval(approval_id, timeout).await,
        }
    }

    fn denies_unconditionally(&self, tool: &str) -> bool {
        match self {
            AnyGuard::Embedded(g) => g.denies_unconditionally(tool),
            AnyGuard::Remote(g) => g.denies_unconditionally(tool),
        }
    }
}

impl<G: Guard> Guard for Arc<G> {
    fn enforce(&self, call: &ToolCall) -> impl Future<Output = Result<Verdict>> + Send {
        (**self).enforce(call)
    }
    fn record(
        &self,
        verdict: &Verdict,
        call: &ToolCall,
        outcome: &CallOutcome,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).record(verdict, call, outcome)
    }
    fn release(&self, call: &ToolCall, approval_id: &str) -> impl Future<Output = Result<Verdict>> + Send {
        (**self).release(call, approval_id)
    }
    fn wait_approval(
        &self,
        approval_id: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<ApprovalOutcome>> + Send {
        (**self).wait_approval(approval_id, timeout)
    }
    fn denies_unconditionally(&self, tool: &str) -> bool {
        (**self).denies_unconditionally(tool)
    }
}
