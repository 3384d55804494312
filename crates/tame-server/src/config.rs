//! Server configuration: plain fields the CLI maps its flags onto, plus a
//! config file (YAML or JSON) and `TAME_*` environment variables.
//!
//! Precedence, lowest first: defaults, config file, environment, flags
//! (the caller applies flags last).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tame_store::Durability;

use crate::edge::AllowedHost;
use crate::ratelimit::FailureLimit;

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The policies.yml file served (and watched).
    pub policy_path: PathBuf,
    /// Listen address; port 0 picks a free port.
    pub addr: SocketAddr,
    /// The SQLite database file, or a `postgres://` / `postgresql://` URL
    /// (see [`ServerConfig::db_url`]).
    pub db_path: PathBuf,
    /// Keys that may enforce and report results.
    pub agent_keys: Vec<String>,
    /// Keys that may do everything.
    pub admin_keys: Vec<String>,
    /// Keys that may record a session's user inputs (only that): held by
    /// the integration, out of the model's reach.
    pub input_keys: Vec<String>,
    /// Agent keys of MCP proxies: the results they report are recorded
    /// as seen by the proxy (`source: proxy`).
    pub proxy_keys: Vec<String>,
    /// Listen on a non-loopback address without API keys.
    pub allow_insecure_bind: bool,
    /// How long an approval stays pending before it expires (denied).
    pub approval_timeout: Duration,
    /// Largest accepted request body in bytes (413 above).
    pub body_limit: usize,
    /// Deepest accepted JSON nesting (400 above).
    pub json_depth_limit: usize,
    /// Audit HMAC key; `None` keeps a random one in `<db>.secret`.
    pub secret: Option<String>,
    /// `Full` survives power loss; `Normal` survives process crashes.
    pub durability: Durability,
    /// Reload the policy when its file changes.
    pub watch_policy: bool,
    /// Longest wait of `GET /api/v1/approvals/{id}/wait` (capped at 50 s).
    pub max_wait: Duration,
    /// Requests taking longer are answered 408.
    pub request_timeout: Duration,
    /// A `tools.yaml` (tool protocol v1): serves `POST /api/v1/tools/run`
    /// for the tools it registers; `None`: that route answers 404.
    pub tools_file: Option<PathBuf>,
    /// The checkpoint file that witnesses the audit chain's head outside
    /// the database; `None`: `<db>.checkpoint` beside a SQLite database,
    /// none for PostgreSQL (the head is then witnessed in the JSON log only).
    pub audit_checkpoints: Option<PathBuf>,
    /// This server's node id on a PostgreSQL database other servers share:
    /// the name of the audit chain it appends to; `None`: the host name.
    pub node_id: Option<String>,
    /// Failed authentications per client before 429 (0: no limit), their
    /// refill period and the proxies whose `X-Forwarded-For` is believed.
    pub auth_failures: FailureLimit,
    /// Threads serving requests; `None`: one per CPU core. The store's
    /// writer has a thread of its own besides, so on a machine with few
    /// cores one fewer can serve more (see [`ServerConfig::runtime`]).
    pub workers: Option<NonZeroUsize>,
    /// Host names (and addresses) besides loopback, `localhost` and the
    /// listen address that a request's `Host` may name; `*` turns the check
    /// off (see [`crate::edge`]).
    pub allowed_hosts: Vec<AllowedHost>,
    /// Longest time a client may take to send a request's head, from
    /// connecting or from the head's first byte (see [`crate::conn`]).
    pub header_timeout: Duration,
    /// Longest time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most connections open at once; `None`: 1024, or less when the
    /// open-file limit leaves less (see [`crate::conn::connection_cap`]).
    pub max_connections: Option<NonZeroUsize>,
}

/// The default [`ServerConfig::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`ServerConfig::idle_timeout`]: longer than the 60 s of
/// common load balancers, so that they close an idle connection first.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// The longest long poll: below the 60 s that MCP clients wait.
pub const MAX_WAIT_CAP: Duration = Duration::from_secs(50);

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            policy_path: PathBuf::from("policies.yml"),
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            db_path: PathBuf::from("tame.db"),
            agent_keys: Vec::new(),
            admin_keys: Vec::new(),
            input_keys: Vec::new(),
            proxy_keys: Vec::new(),
            allow_insecure_bind: false,
            approval_timeout: Duration::from_secs(15 * 60),
            body_limit: 1024 * 1024,
            json_depth_limit: 64,
            secret: None,
            durability: Durability::Full,
            watch_policy: true,
            max_wait: MAX_WAIT_CAP,
            request_timeout: Duration::from_secs(60),
            tools_file: None,
            audit_checkpoints: None,
            node_id: None,
            auth_failures: FailureLimit::default(),
            workers: None,
            allowed_hosts: Vec::new(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: None,
        }
    }
}

/// The config file's shape: every field optional. Its JSON Schema
/// (`tame schema config`) is derived from it.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Tame server configuration",
    description = "The file of `tame serve --config FILE`; TAME_* variables and flags override it."
)]
struct FileConfig {
    policy: Option<PathBuf>,
    addr: Option<String>,
    db: Option<PathBuf>,
    agent_keys: Option<Vec<String>>,
    admin_keys: Option<Vec<String>>,
    input_keys: Option<Vec<String>>,
    proxy_keys: Option<Vec<String>>,
    allow_insecure_bind: Option<bool>,
    approval_timeout_secs: Option<u64>,
    body_limit: Option<usize>,
    json_depth_limit: Option<usize>,
    secret: Option<String>,
    durability: Option<String>,
    watch_policy: Option<bool>,
    max_wait_secs: Option<u64>,
    tools_file: Option<PathBuf>,
    audit_checkpoints: Option<PathBuf>,
    node_id: Option<String>,
    auth_failure_burst: Option<u32>,
    auth_failure_period_secs: Option<f64>,
    trusted_proxies: Option<Vec<String>>,
    workers: Option<usize>,
    allowed_hosts: Option<Vec<String>>,
    header_timeout_secs: Option<f64>,
    idle_timeout_secs: Option<f64>,
    max_connections: Option<usize>,
}

/// The JSON Schema of the config file (`tame schema config`).
pub fn config_json_schema() -> serde_json::Value {
    schemars::schema_for!(FileConfig).to_value()
}

fn parse_addr(s: &str, what: &str) -> anyhow::Result<SocketAddr> {
    s.parse()
        .with_context(|| format!("{what}: `{s}` is not a HOST:PORT address (e.g. 127.0.0.1:8000)"))
}

fn parse_durability(s: &str, what: &str) -> anyhow::Result<Durability> {
    match s {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        other => bail!("{what}: `{other}` is not a durability (expected `full` or `normal`)"),
    }
}

fn parse_workers(n: usize, what: &str) -> anyhow::Result<NonZeroUsize> {
    NonZeroUsize::new(n).with_context(|| format!("{what}: the server needs at least 1 worker thread"))
}

fn parse_max_connections(n: usize, what: &str) -> anyhow::Result<NonZeroUsize> {
    NonZeroUsize::new(n).with_context(|| format!("{what}: the server needs room for at least 1 connection"))
}

fn parse_timeout(secs: f64, what: &str) -> anyhow::Result<Duration> {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => bail!("{what}: `{secs}` is not a number of seconds above zero"),
    }
}

fn parse_hosts<'a>(items: impl IntoIterator<Item = &'a str>, what: &str) -> anyhow::Result<Vec<AllowedHost>> {
    items
        .into_iter()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| AllowedHost::parse(h).map_err(|e| anyhow::anyhow!("{what}: {e}")))
        .collect()
}

fn parse_bool(s: &str, what: &str) -> anyhow::Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => bail!("{what}: `{other}` is not a boolean"),
    }
}

fn parse_num<T: std::str::FromStr>(s: &str, what: &str) -> anyhow::Result<T> {
    s.parse().map_err(|_| anyhow::anyhow!("{what}: `{s}` is not a number"))
}

fn parse_period(secs: f64, what: &str) -> anyhow::Result<Duration> {
    crate::ratelimit::parse_period_secs(secs).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

fn parse_proxies<'a>(items: impl IntoIterator<Item = &'a str>, what: &str) -> anyhow::Result<Vec<ipnet::IpNet>> {
    items
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| crate::ratelimit::parse_proxy(p).map_err(|e| anyhow::anyhow!("{what}: {e}")))
        .collect()
}

fn split_keys(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

impl ServerConfig {
    /// Defaults, then `file` (if given), then the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::default();
        if let Some(file) = file {
            config.apply_file(file)?;
        }
        config.apply_env(std::env::vars())?;
        Ok(config)
    }

    /// Applies a YAML (or JSON) config file. Relative paths in it are
    /// relative to the file's directory.
    pub fn apply_file(&mut self, file: &Path) -> anyhow::Result<()> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read config file `{}`", file.display()))?;
        let parsed: FileConfig =
            serde_yaml::from_str(&text).with_context(|| format!("invalid config file `{}`", file.display()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let what = file.display().to_string();
        if let Some(p) = parsed.policy {
            self.policy_path = base.join(p);
        }
        if let Some(a) = parsed.addr {
            self.addr = parse_addr(&a, &format!("{what}: addr"))?;
        }
        if let Some(p) = parsed.db {
            // A URL is not a path relative to the file.
            self.db_path = if p.to_str().is_some_and(tame_store::is_postgres_url) {
                p
            } else {
                base.join(p)
            };
        }
        if let Some(k) = parsed.agent_keys {
            self.agent_keys = k;
        }
        if let Some(k) = parsed.admin_keys {
            self.admin_keys = k;
        }
        if let Some(k) = parsed.input_keys {
            self.input_keys = k;
        }
        if let Some(k) = parsed.proxy_keys {
            self.proxy_keys = k;
        }
        if let Some(b) = parsed.allow_insecure_bind {
            self.allow_insecure_bind = b;
        }
        if let Some(s) = parsed.approval_timeout_secs {
            self.approval_timeout = Duration::from_secs(s);
        }
        if let Some(n) = parsed.body_limit {
            self.body_limit = n;
        }
        if let Some(n) = parsed.json_depth_limit {
            self.json_depth_limit = n;
        }
        if let Some(s) = parsed.secret {
            self.secret = Some(s);
        }
        if let Some(d) = parsed.durability {
            self.durability = parse_durability(&d, &format!("{what}: durability"))?;
        }
        if let Some(w) = parsed.watch_policy {
            self.watch_policy = w;
        }
        if let Some(s) = parsed.max_wait_secs {
            self.max_wait = Duration::from_secs(s).min(MAX_WAIT_CAP);
        }
        if let Some(p) = parsed.tools_file {
            self.tools_file = Some(base.join(p));
        }
        if let Some(p) = parsed.audit_checkpoints {
            self.audit_checkpoints = Some(base.join(p));
        }
        if let Some(id) = parsed.node_id {
            self.node_id = Some(id);
        }
        if let Some(n) = parsed.auth_failure_burst {
            self.auth_failures.burst = n;
        }
        if let Some(s) = parsed.auth_failure_period_secs {
            self.auth_failures.period = parse_period(s, &format!("{what}: auth_failure_period_secs"))?;
        }
        if let Some(p) = parsed.trusted_proxies {
            self.auth_failures.trusted_proxies =
                parse_proxies(p.iter().map(String::as_str), &format!("{what}: trusted_proxies"))?;
        }
        if let Some(n) = parsed.workers {
            self.workers = Some(parse_workers(n, &format!("{what}: workers"))?);
        }
        if let Some(h) = parsed.allowed_hosts {
            self.allowed_hosts = parse_hosts(h.iter().map(String::as_str), &format!("{what}: allowed_hosts"))?;
        }
        if let Some(s) = parsed.header_timeout_secs {
            self.header_timeout = parse_timeout(s, &format!("{what}: header_timeout_secs"))?;
        }
        if let Some(s) = parsed.idle_timeout_secs {
            self.idle_timeout = parse_timeout(s, &format!("{what}: idle_timeout_secs"))?;
        }
        if let Some(n) = parsed.max_connections {
            self.max_connections = Some(parse_max_connections(n, &format!("{what}: max_connections"))?);
        }
        Ok(())
    }

    /// Applies `TAME_*` variables: `TAME_POLICY`, `TAME_ADDR`, `TAME_DB`,
    /// `TAME_AGENT_KEYS`, `TAME_ADMIN_KEYS`, `TAME_INPUT_KEYS` and
    /// `TAME_PROXY_KEYS` (comma separated),
    /// `TAME_ALLOW_INSECURE_BIND`, `TAME_APPROVAL_TIMEOUT_SECS`,
    /// `TAME_BODY_LIMIT`, `TAME_JSON_DEPTH_LIMIT`, `TAME_AUDIT_SECRET`,
    /// `TAME_DURABILITY` (`full`|`normal`), `TAME_WATCH_POLICY`,
    /// `TAME_TOOLS_FILE`, `TAME_AUDIT_CHECKPOINTS`, `TAME_AUTH_FAILURE_BURST` (0: no limit),
    /// `TAME_AUTH_FAILURE_PERIOD_SECS`, `TAME_TRUSTED_PROXIES` (comma
    /// separated addresses or CIDR networks), `TAME_WORKERS`,
    /// `TAME_ALLOWED_HOSTS` (comma separated), `TAME_HEADER_TIMEOUT_SECS`,
    /// `TAME_IDLE_TIMEOUT_SECS`, `TAME_MAX_CONNECTIONS`.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<()> {
        for (name, value) in vars {
            let what = name.as_str();
            match what {
                "TAME_POLICY" => self.policy_path = PathBuf::from(value),
                "TAME_ADDR" => self.addr = parse_addr(&value, what)?,
                "TAME_DB" => self.db_path = PathBuf::from(value),
                "TAME_AGENT_KEYS" => self.agent_keys = split_keys(&value),
                "TAME_ADMIN_KEYS" => self.admin_keys = split_keys(&value),
                "TAME_INPUT_KEYS" => self.input_keys = split_keys(&value),
                "TAME_PROXY_KEYS" => self.proxy_keys = split_keys(&value),
                "TAME_ALLOW_INSECURE_BIND" => self.allow_insecure_bind = parse_bool(&value, what)?,
                "TAME_APPROVAL_TIMEOUT_SECS" => {
                    self.approval_timeout = Duration::from_secs(parse_num(&value, what)?);
                }
                "TAME_BODY_LIMIT" => self.body_limit = parse_num(&value, what)?,
                "TAME_JSON_DEPTH_LIMIT" => self.json_depth_limit = parse_num(&value, what)?,
                "TAME_AUDIT_SECRET" => self.secret = Some(value),
                "TAME_DURABILITY" => self.durability = parse_durability(&value, what)?,
                "TAME_WATCH_POLICY" => self.watch_policy = parse_bool(&value, what)?,
                "TAME_TOOLS_FILE" => self.tools_file = Some(PathBuf::from(value)),
                "TAME_AUDIT_CHECKPOINTS" => self.audit_checkpoints = Some(PathBuf::from(value)),
                "TAME_NODE_ID" => self.node_id = Some(value),
                "TAME_AUTH_FAILURE_BURST" => self.auth_failures.burst = parse_num(&value, what)?,
                "TAME_AUTH_FAILURE_PERIOD_SECS" => {
                    self.auth_failures.period = parse_period(parse_num(&value, what)?, what)?;
                }
                "TAME_TRUSTED_PROXIES" => {
                    self.auth_failures.trusted_proxies = parse_proxies(value.split(','), what)?;
                }
                "TAME_WORKERS" => self.workers = Some(parse_workers(parse_num(&value, what)?, what)?),
                "TAME_ALLOWED_HOSTS" => self.allowed_hosts = parse_hosts(value.split(','), what)?,
                "TAME_HEADER_TIMEOUT_SECS" => self.header_timeout = parse_timeout(parse_num(&value, what)?, what)?,
                "TAME_IDLE_TIMEOUT_SECS" => self.idle_timeout = parse_timeout(parse_num(&value, what)?, what)?,
                "TAME_MAX_CONNECTIONS" => {
                    self.max_connections = Some(parse_max_connections(parse_num(&value, what)?, what)?);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The async runtime to serve on: [`ServerConfig::workers`] threads, or
    /// one per CPU core.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = self.workers {
            builder.worker_threads(n.get());
        }
        builder.enable_all().build()
    }

    /// The PostgreSQL URL when the database is one, `None` for a SQLite file.
    pub fn db_url(&self) -> Option<&str> {
        self.db_path.to_str().filter(|db| tame_store::is_postgres_url(db))
    }

    /// The database for log lines and errors: a URL with its password redacted.
    pub fn db_shown(&self) -> String {
        match self.db_url() {
            Some(url) => tame_store::redact_url(url),
            None => self.db_path.display().to_string(),
        }
    }

    /// Refuses an open API on a non-loopback address unless allowed.
    pub fn check_bind(&self) -> anyhow::Result<()> {
        let open = self
            .agent_keys
            .iter()
            .chain(&self.admin_keys)
            .chain(&self.input_keys)
            .chain(&self.proxy_keys)
            .all(String::is_empty);
        if open && !self.addr.ip().is_loopback() && !self.allow_insecure_bind {
            bail!(
                "refusing to listen on {} without API keys: configure agent/admin keys \
                 or pass --allow-insecure-bind",
                self.addr
            );
        }
        Ok(())
    }
}

/// The flags of `tame serve` and of the `tame-server` binary (one
/// definition serves both), applied over the configuration file and the
/// `TAME_*` variables by [`ServeFlags::config`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeFlags {
    /// The policy file to serve
    #[arg(long, env = "TAME_POLICY")]
    pub policy: Option<PathBuf>,
    /// Address to listen on (HOST:PORT)
    #[arg(long, env = "TAME_ADDR")]
    pub addr: Option<String>,
    /// Database: a SQLite file, or a postgres:// URL (then set TAME_AUDIT_SECRET)
    #[arg(long, env = "TAME_DB")]
    pub db: Option<String>,
    /// Configuration file (YAML)
    #[arg(long, env = "TAME_CONFIG")]
    pub config: Option<PathBuf>,
    /// Agent API key: may enforce and report results (repeatable)
    #[arg(long = "agent-key", value_name = "KEY")]
    pub agent_keys: Vec<String>,
    /// Admin API key: may also approve, reload and read everything (repeatable)
    #[arg(long = "admin-key", value_name = "KEY")]
    pub admin_keys: Vec<String>,
    /// Input API key: may record a session's user inputs, nothing else;
    /// keep it out of the model's reach (repeatable)
    #[arg(long = "input-key", value_name = "KEY")]
    pub input_keys: Vec<String>,
    /// Proxy API key: an agent key for an MCP proxy, whose reported
    /// results are recorded as the proxy's (repeatable)
    #[arg(long = "proxy-key", value_name = "KEY")]
    pub proxy_keys: Vec<String>,
    /// Listen on a non-loopback address without API keys
    #[arg(long)]
    pub allow_insecure_bind: bool,
    /// Seconds before a pending approval expires (and counts as denied)
    #[arg(long, value_name = "SECS")]
    pub approval_timeout: Option<u64>,
    /// `full` (survives power loss) or `normal` (survives crashes)
    #[arg(long)]
    pub durability: Option<String>,
    /// Do not reload the policy when its file changes
    #[arg(long)]
    pub no_watch: bool,
    /// Threads serving requests (default: one per CPU core; the audit
    /// writer has its own). On a 2-core machine shared with the agents,
    /// 1 can serve more
    #[arg(long, value_name = "N")]
    pub workers: Option<NonZeroUsize>,
    /// A tools.yaml (tool protocol v1): serve `POST /api/v1/tools/run` for its tools
    #[arg(long, env = "TAME_TOOLS_FILE", value_name = "FILE")]
    pub tools_file: Option<PathBuf>,
    /// The checkpoint file witnessing the audit chain's head outside the
    /// database (default for SQLite: `<db>.checkpoint`; PostgreSQL: none)
    #[arg(long = "checkpoints", env = "TAME_AUDIT_CHECKPOINTS", value_name = "FILE")]
    pub audit_checkpoints: Option<PathBuf>,
    /// This server's node id when several servers share one PostgreSQL
    /// database: the name of the audit chain it appends to (letters,
    /// digits, `.`, `_`, `-`; at most 64), the same on every restart
    /// (default: the host name)
    #[arg(long = "node-id", env = "TAME_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// How logs are written (stderr): `text`, or `json`: one object per
    /// line, with an access event per request (id, route, status,
    /// latency, and an enforced call's decision and rule)
    #[arg(long, value_enum, env = "TAME_LOG_FORMAT", default_value_t)]
    pub log_format: crate::LogFormat,
    #[command(flatten)]
    pub auth_failures: AuthFailureArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

impl ServeFlags {
    /// The server configuration: defaults, then the config file, the
    /// `TAME_*` environment, then these flags. Errors name the flag, the
    /// variable or the file and key.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::load(self.config.as_deref())?;
        if let Some(policy) = &self.policy {
            config.policy_path = policy.clone();
        }
        if let Some(addr) = &self.addr {
            config.addr = parse_addr(addr, "--addr")?;
        }
        if let Some(db) = &self.db {
            config.db_path = db.into();
        }
        if !self.agent_keys.is_empty() {
            config.agent_keys = self.agent_keys.clone();
        }
        if !self.admin_keys.is_empty() {
            config.admin_keys = self.admin_keys.clone();
        }
        if !self.input_keys.is_empty() {
            config.input_keys = self.input_keys.clone();
        }
        if !self.proxy_keys.is_empty() {
            config.proxy_keys = self.proxy_keys.clone();
        }
        config.allow_insecure_bind |= self.allow_insecure_bind;
        if let Some(secs) = self.approval_timeout {
            config.approval_timeout = Duration::from_secs(secs);
        }
        if let Some(d) = &self.durability {
            config.durability = parse_durability(d, "--durability")?;
        }
        if self.no_watch {
            config.watch_policy = false;
        }
        if let Some(n) = self.workers {
            config.workers = Some(n);
        }
        if let Some(tools) = &self.tools_file {
            config.tools_file = Some(tools.clone());
        }
        if let Some(file) = &self.audit_checkpoints {
            config.audit_checkpoints = Some(file.clone());
        }
        if let Some(id) = &self.node_id {
            config.node_id = Some(id.clone());
        }
        // Checked by clap already (a bad value is a usage error naming the flag).
        self.auth_failures.apply(&mut config);
        self.edge.apply(&mut config);
        Ok(config)
    }
}

/// The failed-authentication flags, shared by `tame serve` and the
/// `tame-server` binary. The variables named in the help are read by
/// [`ServerConfig::load`] (errors name the variable), not by clap; the
/// flags override them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthFailureArgs {
    /// Failed authentications a client address may make before it is
    /// answered 429 (default 10; 0 turns the limit off) [env: TAME_AUTH_FAILURE_BURST]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub auth_failure_burst: Option<u32>,
    /// Seconds per failed authentication regained once the burst is spent
    /// (default 6) [env: TAME_AUTH_FAILURE_PERIOD_SECS]
    #[arg(long, value_name = "SECS", value_parser = parse_period_flag, allow_negative_numbers = true)]
    pub auth_failure_period: Option<Duration>,
    /// A reverse proxy (address or CIDR network) whose X-Forwarded-For
    /// names the client (repeatable or comma separated; none by default) [env: TAME_TRUSTED_PROXIES]
    #[arg(long = "trusted-proxy", value_name = "NET", value_delimiter = ',', value_parser = crate::ratelimit::parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl AuthFailureArgs {
    /// Applies the flags given over what `config` holds.
    pub fn apply(&self, config: &mut ServerConfig) {
        if let Some(burst) = self.auth_failure_burst {
            config.auth_failures.burst = burst;
        }
        if let Some(period) = self.auth_failure_period {
            config.auth_failures.period = period;
        }
        if !self.trusted_proxies.is_empty() {
            config.auth_failures.trusted_proxies = self.trusted_proxies.clone();
        }
    }
}

/// The flags of the HTTP edge (hosts, connection limits), shared by `tame
/// serve` and the `tame-server` binary. As with [`AuthFailureArgs`], the
/// variables named in the help are read by [`ServerConfig::load`]; the
/// flags override them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EdgeArgs {
    /// A host name (or address, with an optional :PORT) requests may name
    /// in their Host header besides loopback, localhost and the listen
    /// address; `*` turns the check off (repeatable or comma separated) [env: TAME_ALLOWED_HOSTS]
    #[arg(long = "allowed-host", value_name = "HOST", value_delimiter = ',', value_parser = AllowedHost::parse)]
    pub allowed_hosts: Vec<AllowedHost>,
    /// Seconds a client may take to send a request's head before its
    /// connection is dropped (default 10) [env: TAME_HEADER_TIMEOUT_SECS]
    #[arg(long, value_name = "SECS", value_parser = parse_timeout_flag, allow_negative_numbers = true)]
    pub header_timeout: Option<Duration>,
    /// Seconds a keep-alive connection may wait for its next request
    /// (default 75) [env: TAME_IDLE_TIMEOUT_SECS]
    #[arg(long, value_name = "SECS", value_parser = parse_timeout_flag, allow_negative_numbers = true)]
    pub idle_timeout: Option<Duration>,
    /// Most connections open at once; more wait until one closes (default
    /// 1024, or less under a low open-file limit) [env: TAME_MAX_CONNECTIONS]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<NonZeroUsize>,
}

impl EdgeArgs {
    /// Applies the flags given over what `config` holds.
    pub fn apply(&self, config: &mut ServerConfig) {
        if !self.allowed_hosts.is_empty() {
            config.allowed_hosts = self.allowed_hosts.clone();
        }
        if let Some(t) = self.header_timeout {
            config.header_timeout = t;
        }
        if let Some(t) = self.idle_timeout {
            config.idle_timeout = t;
        }
        if let Some(n) = self.max_connections {
            config.max_connections = Some(n);
        }
    }
}

/// `--header-timeout`, `--idle-timeout`: seconds above zero (fractions allowed).
fn parse_timeout_flag(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    parse_timeout(secs, "").map_err(|_| format!("`{s}` is not a number of seconds above zero"))
}

/// `--auth-failure-period`: seconds above zero (fractions allowed).
fn parse_period_flag(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    crate::ratelimit::parse_period_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(
            &file,
            "policy: p.yml\naddr: 127.0.0.1:9000\nadmin_keys: [a1]\napproval_timeout_secs: 30\ndurability: normal\ntools_file: tools.yaml\n",
        )
        .unwrap();
        let mut c = ServerConfig::default();
        c.apply_file(&file).unwrap();
        assert_eq!(c.policy_path, dir.path().join("p.yml"));
        assert_eq!(c.addr.port(), 9000);
        assert_eq!(c.approval_timeout, Duration::from_secs(30));
        assert_eq!(c.durability, Durability::Normal);
        assert_eq!(c.tools_file, Some(dir.path().join("tools.yaml")));
        c.apply_env([
            ("TAME_TOOLS_FILE".to_string(), "/srv/tools.yaml".to_string()),
            ("TAME_ADDR".to_string(), "0.0.0.0:1234".to_string()),
            ("TAME_AGENT_KEYS".to_string(), "k1, k2,".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ])
        .unwrap();
        assert_eq!(c.addr.port(), 1234);
        assert_eq!(c.agent_keys, ["k1", "k2"]);
        assert_eq!(c.tools_file, Some(PathBuf::from("/srv/tools.yaml")));
        let err = c
            .apply_env([("TAME_BODY_LIMIT".to_string(), "lots".to_string())])
            .unwrap_err();
        assert!(err.to_string().contains("TAME_BODY_LIMIT"));
    }

    #[test]
    fn input_and_proxy_keys_from_file_env_and_flags_close_the_api() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Bin {
            #[command(flatten)]
            flags: ServeFlags,
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(&file, "input_keys: [i1]\nproxy_keys: [p1]\n").unwrap();
        let mut c = ServerConfig::default();
        c.apply_file(&file).unwrap();
        assert_eq!(
            (c.input_keys.as_slice(), c.proxy_keys.as_slice()),
            (&["i1".to_string()][..], &["p1".to_string()][..])
        );
        c.apply_env([("TAME_INPUT_KEYS".to_string(), "i2,i3".to_string())])
            .unwrap();
        assert_eq!(c.input_keys, ["i2", "i3"]);
        // An input key alone is a key: the API is not open.
        c.proxy_keys.clear();
        c.addr = SocketAddr::from(([0, 0, 0, 0], 8000));
        assert!(c.check_bind().is_ok());
        c.input_keys.clear();
        assert!(c.check_bind().is_err());
        let flags = Bin::try_parse_from(["tame-server", "--input-key", "i4", "--proxy-key", "p4"])
            .unwrap()
            .flags;
        assert_eq!(
            (flags.input_keys, flags.proxy_keys),
            (vec!["i4".to_string()], vec!["p4".to_string()])
        );
    }

    #[test]
    fn serve_flags_override_and_name_themselves_in_errors() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Bin {
            #[command(flatten)]
            flags: ServeFlags,
        }
        let flags = |args: &[&str]| Bin::try_parse_from(["tame-server"].iter().chain(args)).unwrap().flags;
        let c = flags(&[
            "--addr",
            "127.0.0.1:9100",
            "--durability",
            "normal",
            "--workers",
            "2",
            "--no-watch",
        ])
        .config()
        .unwrap();
        assert_eq!(c.addr.port(), 9100);
        assert_eq!(c.durability, Durability::Normal);
        assert_eq!(c.workers, NonZeroUsize::new(2));
        assert!(!c.watch_policy);
        let err = format!("{:#}", flags(&["--addr", "nowhere"]).config().unwrap_err());
        assert!(err.starts_with("--addr: `nowhere` is not a HOST:PORT address"), "{err}");
        let err = format!("{:#}", flags(&["--durability", "fast"]).config().unwrap_err());
        assert!(err.starts_with("--durability: `fast` is not a durability"), "{err}");
    }

    #[test]
    fn workers_from_file_and_env_size_the_runtime() {
        let mut c = ServerConfig::default();
        assert_eq!(c.workers, None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(&file, "workers: 3\n").unwrap();
        c.apply_file(&file).unwrap();
        assert_eq!(c.workers, NonZeroUsize::new(3));
        assert_eq!(c.runtime().unwrap().metrics().num_workers(), 3);
        c.apply_env([("TAME_WORKERS".to_string(), "1".to_string())]).unwrap();
        assert_eq!(c.runtime().unwrap().metrics().num_workers(), 1);

        std::fs::write(&file, "workers: 0\n").unwrap();
        let err = format!("{:#}", c.apply_file(&file).unwrap_err());
        assert!(err.contains("workers") && err.contains("at least 1"), "{err}");
        for bad in ["0", "two", "-1"] {
            let err = c
                .apply_env([("TAME_WORKERS".to_string(), bad.to_string())])
                .unwrap_err()
                .to_string();
            assert!(err.contains("TAME_WORKERS"), "{bad}: {err}");
        }
        // A rejected value leaves the last good one.
        assert_eq!(c.workers, NonZeroUsize::new(1));
    }

    #[test]
    fn failure_limit_from_file_and_env() {
        let mut c = ServerConfig::default();
        assert_eq!(c.auth_failures, FailureLimit::default());
        assert_eq!(
            (c.auth_failures.burst, c.auth_failures.period),
            (10, Duration::from_secs(6))
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(
            &file,
            "auth_failure_burst: 5\nauth_failure_period_secs: 0.5\ntrusted_proxies: [10.0.0.0/8, 192.0.2.1]\n",
        )
        .unwrap();
        c.apply_file(&file).unwrap();
        assert_eq!(c.auth_failures.burst, 5);
        assert_eq!(c.auth_failures.period, Duration::from_millis(500));
        let shown: Vec<String> = c
            .auth_failures
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.1/32"]);
        c.apply_env([
            ("TAME_AUTH_FAILURE_BURST".to_string(), "0".to_string()),
            ("TAME_AUTH_FAILURE_PERIOD_SECS".to_string(), "30".to_string()),
            ("TAME_TRUSTED_PROXIES".to_string(), "".to_string()),
        ])
        .unwrap();
        assert!(!c.auth_failures.is_on(), "burst 0 turns the limit off");
        assert_eq!(c.auth_failures.period, Duration::from_secs(30));
        assert!(c.auth_failures.trusted_proxies.is_empty());

        let err = c
            .apply_env([("TAME_AUTH_FAILURE_PERIOD_SECS".to_string(), "0".to_string())])
            .unwrap_err();
        assert!(err.to_string().contains("TAME_AUTH_FAILURE_PERIOD_SECS"), "{err}");
        let err = c
            .apply_env([("TAME_TRUSTED_PROXIES".to_string(), "10.0.0.1, nope".to_string())])
            .unwrap_err();
        assert!(err.to_string().contains("TAME_TRUSTED_PROXIES: `nope`"), "{err}");
        std::fs::write(&file, "auth_failure_period_secs: -1\n").unwrap();
        let err = format!("{:#}", c.apply_file(&file).unwrap_err());
        assert!(err.contains("auth_failure_period_secs"), "{err}");
    }

    #[test]
    fn edge_settings_from_file_env_and_flags() {
        let mut c = ServerConfig::default();
        assert!(c.allowed_hosts.is_empty());
        assert_eq!(
            (c.header_timeout, c.idle_timeout, c.max_connections),
            (Duration::from_secs(10), Duration::from_secs(75), None)
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(
            &file,
            "allowed_hosts: [tame.internal, 'tame.example.com:443']\nheader_timeout_secs: 0.5\nidle_timeout_secs: 20\nmax_connections: 300\n",
        )
        .unwrap();
        c.apply_file(&file).unwrap();
        let shown = |c: &ServerConfig| c.allowed_hosts.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(shown(&c), ["tame.internal", "tame.example.com:443"]);
        assert_eq!(c.header_timeout, Duration::from_millis(500));
        assert_eq!(c.idle_timeout, Duration::from_secs(20));
        assert_eq!(c.max_connections, NonZeroUsize::new(300));
        c.apply_env([
            ("TAME_ALLOWED_HOSTS".to_string(), "a.example, *".to_string()),
            ("TAME_HEADER_TIMEOUT_SECS".to_string(), "3".to_string()),
            ("TAME_IDLE_TIMEOUT_SECS".to_string(), "4.5".to_string()),
            ("TAME_MAX_CONNECTIONS".to_string(), "7".to_string()),
        ])
        .unwrap();
        assert_eq!(shown(&c), ["a.example", "*"]);
        assert_eq!(c.header_timeout, Duration::from_secs(3));
        assert_eq!(c.idle_timeout, Duration::from_millis(4500));
        assert_eq!(c.max_connections, NonZeroUsize::new(7));

        for (var, bad) in [
            ("TAME_ALLOWED_HOSTS", "ok.example,http://bad"),
            ("TAME_HEADER_TIMEOUT_SECS", "0"),
            ("TAME_IDLE_TIMEOUT_SECS", "-2"),
            ("TAME_MAX_CONNECTIONS", "0"),
            ("TAME_MAX_CONNECTIONS", "many"),
        ] {
            let err = c
                .apply_env([(var.to_string(), bad.to_string())])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(var), "{var}={bad}: {err}");
        }
        for bad in [
            "allowed_hosts: ['*.example.com']",
            "header_timeout_secs: 0",
            "max_connections: 0",
        ] {
            std::fs::write(&file, bad).unwrap();
            let err = format!("{:#}", c.apply_file(&file).unwrap_err());
            let key = bad.split(':').next().unwrap();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(&file, "adress: 1\n").unwrap();
        let err = ServerConfig::default().apply_file(&file).unwrap_err();
        assert!(format!("{err:#}").contains("adress"), "{err:#}");
    }

    #[test]
    fn open_api_only_on_loopback() {
        let mut c = ServerConfig::default();
        assert!(c.check_bind().is_ok());
        c.addr = "0.0.0.0:8000".parse().unwrap();
        assert!(c.check_bind().unwrap_err().to_string().contains("without API keys"));
        c.allow_insecure_bind = true;
        assert!(c.check_bind().is_ok());
        c.allow_insecure_bind = false;
        c.agent_keys = vec!["k".into()];
        assert!(c.check_bind().is_ok());
    }

    #[test]
    fn a_postgres_url_is_kept_whole_and_shown_without_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(&file, "db: postgresql://tame:hunter2@db.internal:5432/tame\n").unwrap();
        let mut c = ServerConfig::default();
        assert_eq!(c.db_url(), None);
        assert_eq!(c.db_shown(), "tame.db");
        c.apply_file(&file).unwrap();
        assert_eq!(c.db_url(), Some("postgresql://tame:hunter2@db.internal:5432/tame"));
        assert_eq!(c.db_shown(), "postgresql://tame:***@db.internal:5432/tame");
        c.apply_env([("TAME_DB".to_string(), "data/tame.db".to_string())])
            .unwrap();
        assert_eq!(c.db_url(), None);
        // A relative SQLite path in the file is relative to the file.
        std::fs::write(&file, "db: data/tame.db\n").unwrap();
        c.apply_file(&file).unwrap();
        assert_eq!(c.db_path, dir.path().join("data/tame.db"));
    }

    #[test]
    fn a_postgres_store_needs_the_audit_secret() {
        let c = ServerConfig {
            db_path: PathBuf::from("postgres://tame:hunter2@127.0.0.1:1/tame"),
            ..ServerConfig::default()
        };
        let e = format!("{:#}", crate::serve::open_store(&c).unwrap_err());
        assert!(e.contains("needs the audit secret: set TAME_AUDIT_SECRET"), "{e}");
        assert!(e.contains("postgres://tame:***@127.0.0.1:1/tame"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        // With a secret it tries to connect, and the error still hides the password.
        let c = ServerConfig {
            secret: Some("0123456789abcdef0123".into()),
            ..c
        };
        let e = format!("{:#}", crate::serve::open_store(&c).unwrap_err());
        assert!(
            e.contains("cannot open the store `postgres://tame:***@127.0.0.1:1/tame`"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_audit_checkpoints_come_from_the_file_the_environment_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tame.yml");
        std::fs::write(&file, "audit_checkpoints: witness/head.json\n").unwrap();
        let mut c = ServerConfig::default();
        c.apply_file(&file).unwrap();
        assert_eq!(c.audit_checkpoints, Some(dir.path().join("witness/head.json")));
        c.apply_env([("TAME_AUDIT_CHECKPOINTS".to_string(), "/var/lib/tame/head".to_string())])
            .unwrap();
        assert_eq!(c.audit_checkpoints, Some(PathBuf::from("/var/lib/tame/head")));
        let flags = ServeFlags {
            audit_checkpoints: Some(PathBuf::from("/elsewhere")),
            ..ServeFlags::default()
        };
        assert_eq!(
            flags.config().unwrap().audit_checkpoints,
            Some(PathBuf::from("/elsewhere"))
        );
        // The store writes its checkpoints there.
        let c = ServerConfig {
            db_path: dir.path().join("tame.db"),
            audit_checkpoints: Some(dir.path().join("head.checkpoint")),
            ..ServerConfig::default()
        };
        drop(crate::serve::open_store(&c).unwrap());
        assert!(dir.path().join("head.checkpoint").exists());
        assert!(!dir.path().join("tame.db.checkpoint").exists());
    }
}
