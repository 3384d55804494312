//! Shared server state: the running policy (swapped atomically on reload),
//! the store, keys, limits, metrics, the waiters of approvals and the
//! redactor of stored identifiers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use tame_engine::{Policy, PolicyError};
use tame_store::{NewPolicyVersion, Store, StoreEvent};

use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::redact::Redactor;

/// A compiled policy and where it came from.
#[derive(Debug)]
pub struct LoadedPolicy {
    pub policy: Policy,
    pub source: String,
    pub origin: String,
    pub loaded_at: Timestamp,
}

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_bytes: usize,
    pub json_depth: usize,
    pub approval_timeout: Duration,
    pub max_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 1024 * 1024,
            json_depth: 64,
            approval_timeout: Duration::from_secs(15 * 60),
            max_wait: crate::MAX_WAIT_CAP,
        }
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// A new policy runs (its hash differs from the previous one).
    Loaded(Arc<LoadedPolicy>),
    /// The text compiled to the policy already running.
    Unchanged(Arc<LoadedPolicy>),
}

struct Inner {
    policy: ArcSwap<LoadedPolicy>,
    policy_path: Option<PathBuf>,
    store: Arc<dyn Store>,
    auth: Auth,
    limits: Limits,
    metrics: Metrics,
    approval_waiters: ApprovalWaiters,
    /// Set when another server stored a policy version (see
    /// [`AppState::follow_stored_policies`]).
    policy_events: tokio::sync::Notify,
    /// Keyed with the audit secret by the server (see [`crate::redact`]).
    redactor: std::sync::OnceLock<Redactor>,
    reload_lock: tokio::sync::Mutex<()>,
    /// The tools `POST /api/v1/tools/run` may run (set once, at start).
    tools: std::sync::OnceLock<Arc<crate::tools::ToolsSetup>>,
    /// The dashboard's login sessions and its cached audit chain check.
    dashboard: crate::dashboard::Dashboard,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("policy", &self.0.policy.load().origin)
            .field("store", &self.0.store)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State serving `policy` (compiled from `source`), reloadable from
    /// `policy_path` when given.
    pub fn new(
        policy: LoadedPolicy,
        policy_path: Option<PathBuf>,
        store: Arc<dyn Store>,
        auth: Auth,
        limits: Limits,
    ) -> AppState {
        let state = AppState(Arc::new(Inner {
            policy: ArcSwap::from_pointee(policy),
            policy_path,
            store,
            auth,
            limits,
            metrics: Metrics::default(),
            approval_waiters: ApprovalWaiters::default(),
            policy_events: tokio::sync::Notify::new(),
            redactor: std::sync::OnceLock::new(),
            reload_lock: tokio::sync::Mutex::new(()),
            tools: std::sync::OnceLock::new(),
            dashboard: crate::dashboard::Dashboard::default(),
        }));
        // Other servers sharing the store: their approval decisions wake
        // this server's waiters, their policies reach its follower. The
        // handler holds the state weakly (the state holds the store).
        let weak = Arc::downgrade(&state.0);
        state.0.store.subscribe(Arc::new(move |event| {
            let Some(inner) = weak.upgrade() else { return };
            match event {
                StoreEvent::Approval(id) => inner.approval_waiters.notify(&id),
                StoreEvent::Policy => inner.policy_events.notify_one(),
                StoreEvent::Missed => {
                    inner.approval_waiters.notify_all();
                    inner.policy_events.notify_one();
                }
            }
        }));
        state
    }

    pub fn policy(&self) -> Arc<LoadedPolicy> {
        self.0.policy.load_full()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    pub fn limits(&self) -> Limits {
        self.0.limits
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Serves `POST /api/v1/tools/run` for the tools of `tools` (a parsed
    /// `tools.yaml`); without it that route answers 404. Only the first
    /// call counts: `false` if tools were set already.
    pub fn set_tools(&self, tools: tame_integrations::ToolsFile) -> bool {
        self.0.tools.set(Arc::new(crate::tools::ToolsSetup::new(tools))).is_ok()
    }

    pub(crate) fn tools(&self) -> Option<&Arc<crate::tools::ToolsSetup>> {
        self.0.tools.get()
    }

    pub(crate) fn dashboard(&self) -> &crate::dashboard::Dashboard {
        &self.0.dashboard
    }

    pub fn policy_path(&self) -> Option<&PathBuf> {
        self.0.policy_path.as_ref()
    }

    /// Wakes the waiters of these approvals (and no others).
    pub(crate) fn notify_approvals(&self, ids: &[String]) {
        for id in ids {
            self.0.approval_waiters.notify(id);
        }
    }

    /// Wakes the waiters of approval `id` (and no others).
    pub(crate) fn notify_approval(&self, id: &str) {
        self.0.approval_waiters.notify(id);
    }

    /// Registers a waiter of approval `id`: a change of it notified after
    /// this call wakes the watch. Register before reading the approval, so
    /// a decision between the read and the wait is not missed.
    pub(crate) fn watch_approval(&self, id: &str) -> ApprovalWatch<'_> {
        self.0.approval_waiters.watch(id)
    }

    /// How many approvals have waiters right now (an approval's entry goes
    /// with its last waiter).
    pub fn waited_approvals(&self) -> usize {
        self.0.approval_waiters.lock().len()
    }

    /// Keys the markers that replace secrets in stored identifiers (see
    /// [`crate::redact`]) with `key`, the audit secret; before this (or
    /// without it) they are keyed with the store's secret. Set it once, before
    /// serving: a different key stores the same session under another id.
    pub fn set_redaction_key(&self, key: &[u8]) -> anyhow::Result<()> {
        let redactor = Redactor::keyed(key)?;
        self.0
            .redactor
            .set(redactor)
            .map_err(|_| anyhow::anyhow!("the redaction key is set already"))
    }

    /// The redactor set by [`AppState::set_redaction_key`], else the
    /// store's (keyed with its audit secret, as the server's is): the
    /// provenance hashes of a session read back from the log are the
    /// store's, so a session decided here must be hashed alike.
    pub(crate) fn redactor(&self) -> &Redactor {
        match self.0.redactor.get() {
            Some(r) => r,
            None => self.0.store.redactor(),
        }
    }

    /// Compiles `source` and, if it compiles, makes it the running policy
    /// and stores the version. A policy that fails keeps the old one.
    pub async fn reload_from_source(&self, source: String, origin: String) -> Result<ReloadOutcome, PolicyError> {
        let _guard = self.0.reload_lock.lock().await;
        let compiled = {
            let (source, origin) = (source.clone(), origin.clone());
            tokio::task::spawn_blocking(move || Policy::from_yaml(&source, &origin))
                .await
                .unwrap_or_else(|e| Err(crate::api::plain_policy_error(&format!("policy compiler crashed: {e}"))))
        };
        let policy = match compiled {
            Ok(p) => p,
            Err(e) => {
                self.metrics()
                    .reloads
                    .get_or_create(&crate::metrics::ReloadLabels { outcome: "rejected" })
                    .inc();
                return Err(e);
            }
        };
        let current = self.policy();
        if current.policy.info().hash == policy.info().hash {
            self.metrics()
                .reloads
                .get_or_create(&crate::metrics::ReloadLabels { outcome: "unchanged" })
                .inc();
            return Ok(ReloadOutcome::Unchanged(current));
        }
        let loaded = Arc::new(LoadedPolicy {
            policy,
            source,
            origin,
            loaded_at: Timestamp::now(),
        });
        self.record_version(&loaded).await;
        self.0.policy.store(Arc::clone(&loaded));
        self.metrics()
            .reloads
            .get_or_create(&crate::metrics::ReloadLabels { outcome: "loaded" })
            .inc();
        tracing::info!(version = %loaded.policy.info().version, hash = %loaded.policy.info().hash, "policy loaded");
        Ok(ReloadOutcome::Loaded(loaded))
    }

    /// Serves the policy versions other servers store, as they are stored
    /// (a store shared by several servers tells of them; see
    /// [`tame_store::Store::subscribe`]); runs until aborted (it holds the
    /// state).
    pub async fn follow_stored_policies(self) {
        loop {
            // Registered before looking, so a version stored meanwhile
            // wakes it again.
            let notified = self.0.policy_events.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.adopt_stored_policy().await;
            notified.await;
        }
    }

    /// Makes the newest stored policy version the running policy if it is
    /// another (stored by another server). One that does not compile here
    /// is refused (logged; the running policy stays).
    pub async fn adopt_stored_policy(&self) {
        let _guard = self.0.reload_lock.lock().await;
        let store = Arc::clone(self.store());
        // Only a version its audit record vouches for (a row written in the
        // database by someone else is refused there).
        let newest = match tokio::task::spawn_blocking(move || store.newest_policy_version()).await {
            Ok(Ok(newest)) => newest,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the newest stored policy version");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the newest stored policy version");
                return;
            }
        };
        let Some(newest) = newest else { return };
        if newest.hash == self.policy().policy.info().hash {
            return;
        }
        let (source, origin) = (newest.source.clone(), newest.origin.clone());
        let compiled = tokio::task::spawn_blocking(move || Policy::from_yaml(&source, &origin)).await;
        match compiled {
            Ok(Ok(policy)) if policy.info().hash != newest.hash => tracing::error!(
                hash = %newest.hash,
                "the stored policy version's source is not the one its hash names: keeping the running one"
            ),
            Ok(Ok(policy)) => {
                let loaded = Arc::new(LoadedPolicy {
                    policy,
                    source: newest.source,
                    origin: newest.origin,
                    loaded_at: Timestamp::now(),
                });
                tracing::info!(
                    version = %loaded.policy.info().version,
                    hash = %loaded.policy.info().hash,
                    "policy adopted from the store (loaded by another server)"
                );
                self.0.policy.store(loaded);
                self.metrics()
                    .reloads
                    .get_or_create(&crate::metrics::ReloadLabels { outcome: "adopted" })
                    .inc();
            }
            Ok(Err(e)) => tracing::error!(
                hash = %newest.hash,
                error = %e,
                "the stored policy version does not compile on this server: keeping the running one"
            ),
            Err(e) => tracing::error!(error = %e, "the policy compiler crashed"),
        }
    }

    /// Reloads the policy file given at start.
    pub async fn reload_from_file(&self) -> Result<ReloadOutcome, PolicyError> {
        let Some(path) = self.0.policy_path.clone() else {
            return Err(crate::api::plain_policy_error(
                "this server has no policy file to reload",
            ));
        };
        let origin = path.display().to_string();
        let source = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| crate::api::plain_policy_error(&format!("cannot read `{origin}`: {e}")))?;
        self.reload_from_source(source, origin).await
    }

    /// Stores the running policy's version (at start, and after reloads).
    pub async fn record_version(&self, loaded: &LoadedPolicy) {
        let info = loaded.policy.info();
        let ticket = self.store().record_policy(NewPolicyVersion {
            version: info.version.clone(),
            hash: info.hash.clone(),
            origin: loaded.origin.clone(),
            source: loaded.source.clone(),
            loaded_at: loaded.loaded_at,
        });
        if let Err(e) = ticket.await {
            tracing::error!(error = %e, "cannot store the policy version");
        }
    }
}

/// The waiters of `GET /api/v1/approvals/{id}/wait`, by approval id: a
/// change of one approval wakes its waiters only. An entry lives while its
/// approval has waiters (the last one to leave removes it).
#[derive(Debug, Default)]
struct ApprovalWaiters {
    map: Mutex<HashMap<String, tokio::sync::watch::Sender<()>>>,
}

impl ApprovalWaiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, tokio::sync::watch::Sender<()>>> {
        // The map holds no invariant a panicking holder could break.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn watch(&self, id: &str) -> ApprovalWatch<'_> {
        let mut map = self.lock();
        let rx = match map.get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = tokio::sync::watch::channel(());
                map.insert(id.to_owned(), tx);
                rx
            }
        };
        ApprovalWatch {
            waiters: self,
            id: id.to_owned(),
            rx: Some(rx),
        }
    }

    fn notify(&self, id: &str) {
        if let Some(tx) = self.lock().get(id) {
            tx.send_replace(());
        }
    }

    /// Wakes every waiter (each reads its approval again).
    fn notify_all(&self) {
        for tx in self.lock().values() {
            tx.send_replace(());
        }
    }
}

/// One waiter's registration (see [`AppState::watch_approval`]); dropping
/// it unregisters.
#[derive(Debug)]
pub(crate) struct ApprovalWatch<'a> {
    waiters: &'a ApprovalWaiters,
    id: String,
    rx: Option<tokio::sync::watch::Receiver<()>>,
}

impl ApprovalWatch<'_> {
    /// Resolves at the first change of the approval since the last call
    /// (or since the registration).
    pub(crate) async fn changed(&mut self) {
        let ok = match self.rx.as_mut() {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        };
        if !ok {
            // The sender goes only with the last receiver, so this does
            // not happen; never resolve rather than spin.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for ApprovalWatch<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        // Drop the receiver under the lock: a waiter registering meanwhile
        // keeps the entry.
        drop(self.rx.take());
        if map.get(&self.id).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(&self.id);
        }
    }
}
