//! Serving: binds (refusing an open API off loopback), loads the policy,
//! opens the store, runs the reload triggers (SIGHUP, file watch), the
//! approval expiry sweeper and the sweeper of failed-authentication
//! budgets, serves the connections (`crate::conn`: a cap, header and idle
//! timeouts, each request with its socket peer as `ConnectInfo`), and
//! shuts down gracefully: stops accepting, drains requests, then flushes
//! the audit writer.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use jiff::Timestamp;
use tame_engine::Policy;
use tame_store::{PgOptions, PgStore, SqliteOptions, SqliteStore, Store};

use crate::auth::Auth;
use crate::conn::{ConnLimits, connection_cap};
use crate::edge::Hosts;
use crate::state::{AppState, Limits, LoadedPolicy, ReloadOutcome};
use crate::{ServerConfig, app_with};

/// Serves until SIGINT or SIGTERM.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    run_until(config, shutdown_signal(), |_| {}).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining requests");
}

fn describe_policy_error(e: &tame_engine::PolicyError) -> String {
    e.diagnostics
        .iter()
        .map(|d| d.rendered.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Opens the store `config.db_path` names: PostgreSQL for a `postgres://`
/// or `postgresql://` URL (the audit secret must then be configured: there
/// is no file beside the database to keep one in), else a SQLite file.
pub fn open_store(config: &ServerConfig) -> anyhow::Result<Arc<dyn Store>> {
    let shown = config.db_shown();
    let secret = config.secret.as_ref().map(|s| s.as_bytes().to_vec());
    if let Some(url) = config.db_url() {
        let secret = secret.ok_or_else(|| {
            anyhow::anyhow!(
                "the PostgreSQL store `{shown}` needs the audit secret: set TAME_AUDIT_SECRET \
                 (or `secret:` in the config file), at least 16 bytes, the same on every start"
            )
        })?;
        let options = PgOptions {
            durability: config.durability,
            checkpoints: config.audit_checkpoints.clone(),
            node: config.node_id.clone(),
            ..PgOptions::new(secret)
        };
        let store = PgStore::open(url, options).with_context(|| format!("cannot open the store `{shown}`"))?;
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open(
        &config.db_path,
        SqliteOptions {
            secret,
            durability: config.durability,
            checkpoints: config.audit_checkpoints.clone(),
            ..SqliteOptions::default()
        },
    )
    .with_context(|| format!("cannot open the store `{shown}`"))?;
    Ok(Arc::new(store))
}

/// Serves until `shutdown` resolves; `on_ready` gets the bound address
/// (useful with port 0).
pub async fn run_until(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    config.check_bind()?;
    let auth = Auth::new(&config.agent_keys, &config.admin_keys)
        .with_scoped_keys(&config.input_keys, &config.proxy_keys)
        .with_failure_limit(config.auth_failures.clone());
    if auth.is_open() {
        tracing::warn!(
            addr = %config.addr,
            "no API keys configured: the API is open to anyone who can reach {}; configure agent/admin keys",
            config.addr
        );
    }

    let origin = config.policy_path.display().to_string();
    let source = std::fs::read_to_string(&config.policy_path)
        .with_context(|| format!("cannot read the policy file `{origin}`"))?;
    let policy = Policy::from_yaml(&source, &origin)
        .map_err(|e| anyhow::anyhow!("the policy `{origin}` does not compile:\n{}", describe_policy_error(&e)))?;
    // A bad tools file stops the start, like a bad policy.
    let tools = config
        .tools_file
        .as_deref()
        .map(tame_integrations::ToolsFile::from_file)
        .transpose()?;

    let store = open_store(&config)?;

    let loaded = LoadedPolicy {
        policy,
        source,
        origin,
        loaded_at: Timestamp::now(),
    };
    let stored = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.policy_versions()).await??
    };
    let limits = Limits {
        body_bytes: config.body_limit,
        json_depth: config.json_depth_limit,
        approval_timeout: config.approval_timeout,
        max_wait: config.max_wait.min(crate::MAX_WAIT_CAP),
    };
    // A server sharing its store with others joins at the newest stored
    // version when its own file is an older one of them (another server
    // moved on); a file none of them loaded is a new version for all.
    let (needs_record, join_stored) = {
        let hash = loaded.policy.info().hash.as_str();
        let known = stored.iter().any(|v| v.hash == hash);
        let newest = stored.iter().max_by_key(|v| v.id).map(|v| v.hash.as_str());
        let shared = store.checks_session_versions();
        (
            newest != Some(hash) && !(shared && known),
            shared && known && newest != Some(hash),
        )
    };
    let state = AppState::new(loaded, Some(config.policy_path.clone()), store.clone(), auth, limits);
    // Secrets in stored ids become markers keyed with the audit secret.
    state.set_redaction_key(&crate::redact::audit_secret(&config)?)?;
    if let Some(tools) = tools {
        state.set_tools(tools);
    }
    if needs_record {
        state.record_version(&state.policy()).await;
    }
    if join_stored {
        state.adopt_stored_policy().await;
    }

    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let local = listener.local_addr()?;

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(expiry_sweeper(state.clone()));
    if state.store().checks_session_versions() {
        tasks.spawn(state.clone().follow_stored_policies());
    }
    if state.auth().limiter().is_on() && !state.auth().is_open() {
        tasks.spawn(limiter_sweeper(state.clone()));
    }
    #[cfg(unix)]
    tasks.spawn(sighup_reloader(state.clone()));
    let _watcher = if config.watch_policy {
        match file_watcher(state.clone(), &mut tasks) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the policy file; reload with SIGHUP or the API");
                None
            }
        }
    } else {
        None
    };

    let limits = ConnLimits {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: connection_cap(config.max_connections),
    };
    let allowed: Vec<String> = config.allowed_hosts.iter().map(ToString::to_string).collect();
    // Ready only once the reload triggers are in place.
    tracing::info!(
        addr = %local,
        policy = %config.policy_path.display(),
        db = %config.db_shown(),
        allowed_hosts = %allowed.join(","),
        max_connections = limits.max_connections,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        "tame server listening"
    );
    on_ready(local);

    let router = app_with(state.clone(), Hosts::new(local, &config.allowed_hosts)).layer(
        tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ),
    );
    crate::conn::serve(listener, router, limits, shutdown).await;

    tasks.shutdown().await;
    drop(_watcher);
    if let Err(e) = state.store().flush().await {
        tracing::error!(error = %e, "cannot flush the audit log");
    }
    drop(state);
    // The last handle joins the writer thread once its queue is empty.
    drop(store);
    tracing::info!("audit log flushed; stopped");
    Ok(())
}

async fn reload_and_log(state: &AppState, why: &str) {
    match state.reload_from_file().await {
        Ok(ReloadOutcome::Loaded(p)) => {
            tracing::info!(trigger = why, version = %p.policy.info().version, "policy reloaded")
        }
        Ok(ReloadOutcome::Unchanged(_)) => tracing::debug!(trigger = why, "policy unchanged"),
        Err(e) => tracing::error!(
            trigger = why,
            "the new policy does not compile; the running policy stays:\n{}",
            describe_policy_error(&e)
        ),
    }
}

async fn expiry_sweeper(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        match state.store().expire_approvals(Timestamp::now()).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(count = ids.len(), "approvals expired");
                state.notify_approvals(&ids);
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot expire approvals"),
        }
    }
}

/// Drops the failed-authentication budgets that refilled, every minute.
async fn limiter_sweeper(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.auth().limiter().sweep();
    }
}

#[cfg(unix)]
/// Reloads the policy on SIGHUP. The handler is installed here, before the
/// server says it is ready (a task installing it later would leave a
/// window in which SIGHUP still has its default action: ending the
/// process).
fn sighup_reloader(state: AppState) -> impl std::future::Future<Output = ()> + Send + 'static {
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        let Ok(mut hup) = hup else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while hup.recv().await.is_some() {
            reload_and_log(&state, "sighup").await;
        }
    }
}

/// How often the policy file is checked for changes.
const POLICY_POLL: Duration = Duration::from_secs(1);

/// Reloads the policy when its file changes. The file itself is polled
/// (its metadata, and its contents when those changed) rather than its
/// directory watched with inotify: a directory watch also delivers every
/// write of a database or log kept beside the policy (the SQLite WAL's
/// writes cost the watcher's thread about a tenth of a core under load),
/// and misses a Kubernetes ConfigMap update, which swaps a symlink in
/// the directory rather than writing the file. Polling follows the path
/// through symlinks and sees in-place writes and renames alike.
fn file_watcher(state: AppState, tasks: &mut tokio::task::JoinSet<()>) -> anyhow::Result<notify::PollWatcher> {
    use notify::Watcher;
    let Some(path) = state.policy_path().cloned() else {
        anyhow::bail!("no policy file");
    };
    let path = std::path::absolute(&path)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let config = notify::Config::default()
        .with_poll_interval(POLICY_POLL)
        .with_compare_contents(true);
    let mut watcher = notify::PollWatcher::new(
        move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && !event.kind.is_access()
            {
                let _ = tx.try_send(());
            }
        },
        config,
    )?;
    watcher.watch(&path, notify::RecursiveMode::NonRecursive)?;
    tasks.spawn(async move {
        while rx.recv().await.is_some() {
            // Let the editor finish writing, then coalesce the burst.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            reload_and_log(&state, "file change").await;
        }
    });
    Ok(watcher)
}
