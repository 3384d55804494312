//! The PostgreSQL backend: the same log, chain, sessions, approvals and
//! facts as the SQLite store, in a PostgreSQL database. One writer thread
//! group-commits batches (one transaction each, durable before anyone is
//! answered); a few reader threads answer the reads. All database I/O runs
//! on the store's own threads, so the store may be called, and dropped,
//! from inside an async runtime: callers only wait on channels. The chain's
//! head is witnessed outside the database: in the JSON log, and in a
//! checkpoint file when one is configured ([`PgOptions::checkpoints`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use jiff::Timestamp;
use postgres::config::SslMode;
use postgres::types::FromSql;
use postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::FactsHandle;
use crate::canonical::canonical_json;
use crate::checkpoint::{Claims, LogState, Witness, new_chain_id, reconcile};
use crate::jobs::{Done, Job, Queue};
use crate::reads::{Window, entries};
use crate::record::{
    ApprovalRow, AuditRow, Chain, ChainCheck, Chained, FactsCache, GENESIS, HmacSha256, PreparedDecision, SessionDelta,
    approval_columns, approval_decided_body, approval_expired_body, approval_released_body, chained_approval,
    chained_mac, check_release, check_result_owner, checked_session_records, decided_state, entries_from_records,
    facts_from_records, input_body, mac_from_key, may_expire, micros, policy_body, policy_matches_record, result_body,
    trusted_row, write_export_line,
};
use crate::{
    Approval, ApprovalDecision, ApprovalState, DecisionReceipt, DecisionTotals, Durability, LogEntry, LogPage,
    MAX_DECIDED_APPROVALS, MAX_LOG_PAGE, MAX_RECENT_DECISIONS, NewInput, NewPolicyVersion, NewResult, PolicyVersion,
    SessionPage, SessionQuery, SessionSummary, Store, StoreError, StoreResult, VerifyReport, format_timestamp,
};
use crate::{EventHandler, StoreEvent};

mod reads;
mod schema;
mod writer;

use reads::*;
use schema::*;
use writer::*;

/// The schema version this build writes (kept in `meta` as `schema_version`).
pub const PG_SCHEMA_VERSION: u32 = 3;

/// The longest node id (see [`PgOptions::node`]).
pub const MAX_NODE_ID: usize = 64;

/// Rows fetched per round trip by `verify` and `export`.
const FETCH_ROWS: i32 = 2000;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Db(pg_message(&e))
    }
}

/// What went wrong, with its causes: `Display` of a server error is only
/// "db error", and of a failed TLS handshake only that it failed.
fn pg_message(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("postgresql: {}: {}", db.severity(), db.message());
    }
    let mut message = format!("postgresql: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

/// Whether `db` names a PostgreSQL database (`postgres://` or
/// `postgresql://` URL) rather than a SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    let lower = db.get(..13).unwrap_or(db).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// `url` with its password replaced by `***` (in the user part and in a
/// `password=` query parameter), for log lines and error messages.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    // The user part ends at the last `@` before the query (a password may
    // hold `/` or `@` when written unescaped).
    let query_at = rest.find('?').unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    let authority = match before_query.rfind('@') {
        Some(at) => {
            let (userinfo, host) = before_query.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***{host}"),
                None => before_query.to_string(),
            }
        }
        None => before_query.to_string(),
    };
    let query = match query.strip_prefix('?') {
        Some(query) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("?{}", params.join("&"))
        }
        None => query.to_string(),
    };
    format!("{scheme}{authority}{query}")
}

/// Options of [`PgStore::open`].
#[derive(Clone)]
pub struct PgOptions {
    /// The HMAC key of the audit chain (at least 16 bytes). PostgreSQL has
    /// no file beside it to keep one in, so it is always configured.
    pub secret: Vec<u8>,
    /// `Full`: a record is acknowledged once the WAL holding its commit is
    /// on PostgreSQL's disk. `Normal`: once committed (`synchronous_commit =
    /// off`): it survives a crash of tame, not necessarily one of the
    /// database server.
    pub durability: Durability,
    /// Most records committed in one transaction.
    pub max_batch: usize,
    /// Reader connections (threads) answering reads.
    pub readers: usize,
    /// How long `open` retries the writer lock held by another store
    /// before failing (a server restarted right after a crash may find its
    /// predecessor's connection not yet closed by PostgreSQL).
    pub lock_wait: std::time::Duration,
    /// The checkpoint file that witnesses the chain's head outside the
    /// database (see `checkpoint.rs`). `None`: the head is witnessed in
    /// the JSON log only (a warning says so at open).
    pub checkpoints: Option<PathBuf>,
    /// This server's node id: the name of the audit chain it appends to
    /// (each server sharing the database has its own, and resumes it when
    /// restarted with the same id). `None`: the machine's host name. At
    /// most [`MAX_NODE_ID`] ASCII letters, digits, `.`, `_` and `-`. Two
    /// servers open with the same id refuse each other.
    pub node: Option<String>,
}

/// The node id `given`, or the host name when none is: checked, so that a
/// chain's name is printable and short.
pub fn node_id(given: Option<&str>) -> StoreResult<String> {
    let (id, from) = match given {
        Some(id) => (id.to_string(), "the node id"),
        None => {
            let host = hostname::get()
                .map_err(|e| StoreError::Db(format!("cannot read the host name for the node id: {e}; give one")))?;
            (
                host.to_string_lossy().into_owned(),
                "the host name (the default node id)",
            )
        }
    };
    let valid = !id.is_empty()
        && id.len() <= MAX_NODE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(id)
    } else {
        Err(StoreError::Db(format!(
            "{from} `{}` cannot name an audit chain: use 1 to {MAX_NODE_ID} ASCII letters, digits, `.`, `_` or `-`",
            id.escape_debug()
        )))
    }
}

impl PgOptions {
    /// Default options with the given audit secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> PgOptions {
        PgOptions {
            secret: secret.into(),
            durability: Durability::Full,
            max_batch: 4096,
            readers: 4,
            lock_wait: std::time::Duration::from_secs(5),
            checkpoints: None,
            node: None,
        }
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("secret", &"<redacted>")
            .field("durability", &self.durability)
            .field("max_batch", &self.max_batch)
            .field("readers", &self.readers)
            .field("lock_wait", &self.lock_wait)
            .field("checkpoints", &self.checkpoints)
            .field("node", &self.node)
            .finish()
    }
}

/// A read run on a reader thread, given its connection (or why there is none).
type ReadJob = Box<dyn FnOnce(&mut Reader<'_>) + Send>;

/// A reader thread's connection: made when first needed, and again when
/// the database closed it.
struct Reader<'a> {
    client: Option<Client>,
    config: &'a postgres::Config,
    shown: &'a str,
}

impl Reader<'_> {
    /// The connection, made anew when there is none or it was closed.
    fn client(&mut self) -> StoreResult<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(connect(self.config, self.shown)?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Db(format!("no connection to `{}`", self.shown)))
    }

    /// Runs `f` on the connection; when the database closed it meanwhile
    /// (a restart, a failover, an operator ending sessions), once more on a
    /// new one: an idle connection is only found dead when used, and a
    /// database back up should not cost its readers a failed read each.
    fn run<T>(&mut self, mut f: impl FnMut(&mut Client) -> StoreResult<T>) -> StoreResult<T> {
        let client = self.client()?;
        match f(client) {
            Err(_) if client.is_closed() => f(self.client()?),
            done => done,
        }
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`; dropping it
/// drains the writer's queue, releases the writer lock and joins the
/// store's threads (safe inside an async runtime).
pub struct PgStore {
    /// The database URL with the password redacted.
    shown: String,
    queue: Queue,
    writer: Option<JoinHandle<()>>,
    reads: Option<Sender<ReadJob>>,
    readers: Vec<JoinHandle<()>>,
    facts: Mutex<FactsCache>,
    mac: HmacSha256,
    /// Keyed with the audit secret: the provenance key of session states
    /// read back from the log.
    redactor: tame_enforce::Redactor,
    /// The witness of the chain's head (written last on drop).
    witness: Arc<Witness>,
    /// The node id: the chain this store's writer appends to.
    node: String,
    /// How to connect (for the listener).
    config: postgres::Config,
    /// The thread telling subscribers of other servers' writes, and its stop flag.
    listener: Mutex<Option<(Arc<std::sync::atomic::AtomicBool>, JoinHandle<()>)>>,
}

/// The channels the writers notify (see [`StoreEvent`]).
pub(super) const APPROVAL_CHANNEL: &str = "tame_approval";
pub(super) const POLICY_CHANNEL: &str = "tame_policy";

/// Listens on the notification channels until `stop`, telling `on`;
/// reconnects when the connection is lost, and then says events may have
/// been missed.
fn listen_loop(config: &postgres::Config, shown: &str, on: &EventHandler, stop: &std::sync::atomic::AtomicBool) {
    use postgres::fallible_iterator::FallibleIterator as _;
    let stopped = || stop.load(std::sync::atomic::Ordering::Acquire);
    let pause = || {
        for _ in 0..10 {
            if stopped() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    while !stopped() {
        let mut client = match connect(config, shown).and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {APPROVAL_CHANNEL}; LISTEN {POLICY_CHANNEL}"))
                .map(|()| c)
                .map_err(StoreError::from)
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other servers' approvals and policies; retrying");
                pause();
                continue;
            }
        };
        on(StoreEvent::Missed);
        while !stopped() {
            let next = client
                .notifications()
                .timeout_iter(std::time::Duration::from_millis(250))
                .next();
            match next {
                Ok(Some(n)) if n.channel() == APPROVAL_CHANNEL => on(StoreEvent::Approval(n.payload().to_owned())),
                Ok(Some(n)) if n.channel() == POLICY_CHANNEL => on(StoreEvent::Policy),
                Ok(Some(_)) => {}
                Ok(None) if !client.is_closed() => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %StoreError::from(e), "lost the listening connection; reconnecting");
                    break;
                }
            }
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("db", &self.shown)
            .finish_non_exhaustive()
    }
}

/// A column of a row, or a database error naming it (never a panic).
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> StoreResult<T> {
    row.try_get(i)
        .map_err(|e| StoreError::Db(format!("unexpected value in column {i}: {e}")))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:pass@host:port/db`),
    /// takes the writer lock (failing when another store holds it), creates
    /// or checks the schema and starts the writer and reader threads.
    pub fn open(url: &str, options: PgOptions) -> StoreResult<PgStore> {
        let shown = redact_url(url);
        let node = node_id(options.node.as_deref())?;
        let mac = mac_from_key(&options.secret)?;
        let redactor = tame_enforce::Redactor::keyed(&options.secret).map_err(|e| StoreError::Secret(e.to_string()))?;
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Db(format!("invalid PostgreSQL URL `{shown}`: {e}")))?;
        // An unreachable host fails a (re)connection in bounded time rather
        // than stalling the writer for the system's TCP timeout.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("tame");
        }

        // The connection is made on the writer thread: the synchronous
        // client runs its own runtime, which must not start inside the
        // caller's (the server opens the store from async code).
        let (ready_tx, ready_rx) = sync_channel::<StoreResult<()>>(1);
        let (sender, receiver) = channel();
        let witness = Witness::new(options.checkpoints.clone(), mac.clone());
        let link = Link {
            config: config.clone(),
            shown: shown.clone(),
            lock_wait: options.lock_wait,
            durability: options.durability,
            witness: Arc::clone(&witness),
            node: node.clone(),
        };
        let writer_mac = mac.clone();
        let max_batch = options.max_batch.max(1);
        let writer = std::thread::Builder::new()
            .name("tame-pg-writer".into())
            .spawn(move || match PgWriter::start(link, writer_mac, max_batch) {
                Ok(writer) => {
                    let _ = ready_tx.send(Ok(()));
                    writer.run(receiver);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        let started = ready_rx.recv().unwrap_or(Err(StoreError::WriterGone));
        if let Err(e) = started {
            let _ = writer.join();
            return Err(e);
        }

        let (reads, read_rx) = channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        let mut readers = Vec::new();
        for i in 0..options.readers.max(1) {
            let rx = Arc::clone(&read_rx);
            let config = config.clone();
            let shown = shown.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tame-pg-reader-{i}"))
                .spawn(move || reader_loop(&rx, &config, &shown));
            match spawned {
                Ok(handle) => readers.push(handle),
                Err(e) => tracing::warn!(error = %e, "cannot start a store reader thread"),
            }
        }
        if readers.is_empty() {
            return Err(StoreError::Db("cannot start any store reader thread".into()));
        }

        Ok(PgStore {
            shown,
            queue: Queue::new(sender),
            writer: Some(writer),
            reads: Some(reads),
            readers,
            facts: Mutex::new(FactsCache::default()),
            mac,
            redactor,
            witness,
            node,
            config,
            listener: Mutex::new(None),
        })
    }

    /// The database URL, password redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The node id: the audit chain this store appends to.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `f` on a reader thread and waits for its answer.
    fn read<T: Send + 'static>(&self, f: impl FnMut(&mut Client) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        let (tx, rx) = sync_channel(1);
        let job: ReadJob = Box::new(move |reader| {
            let _ = tx.send(reader.run(f));
        });
        match &self.reads {
            Some(reads) if reads.send(job).is_ok() => {}
            _ => return Err(StoreError::Db("the store's readers have stopped".into())),
        }
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Db("a store reader stopped before answering".into())))
    }

    fn facts_cache(&self) -> std::sync::MutexGuard<'_, FactsCache> {
        self.facts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((stop, handle)) = listener {
            stop.store(true, std::sync::atomic::Ordering::Release);
            // The last handle may be dropped by the listener's own handler.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        self.queue.close();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        // The head the writer left, witnessed.
        self.witness.stop();
        self.reads.take();
        for handle in self.readers.drain(..) {
            let _ = handle.join();
        }
    }
}

fn reader_loop(rx: &Mutex<Receiver<ReadJob>>, config: &postgres::Config, shown: &str) {
    let mut reader = Reader {
        client: None,
        config,
        shown,
    };
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        job(&mut reader);
    }
}

/// Holds the node's chain against its checkpoint file (logging every
/// problem), then starts witnessing its head. The database keeps its chain
/// id in `meta` (a node's chain is `<id>/<node>`), and the file that
/// witnesses each node's chain.
fn start_witness(
    client: &mut Client,
    witness: &Witness,
    mac: &HmacSha256,
    chain: &Chain,
    node: &str,
) -> StoreResult<()> {
    client.execute(
        "INSERT INTO meta(key, value) VALUES ('chain_id', $1) ON CONFLICT(key) DO NOTHING",
        &[&new_chain_id()?],
    )?;
    let mut meta = |key: &str| -> StoreResult<Option<String>> {
        client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| col(&r, 0))
            .transpose()
    };
    let db_chain = meta("chain_id")?.unwrap_or_default();
    let chain_id = format!("{db_chain}/{node}");
    let file_key = format!("checkpoint_file/{node}");
    let witnessed_by = meta(&file_key)?;
    // The file that witnessed the database's one chain before servers had
    // chains of their own (schema 2 and before).
    let legacy_file = meta("checkpoint_file")?;
    let head = (chain.seq, chain.hash.clone());
    let Some(sink) = witness.sink().map(std::path::Path::to_path_buf) else {
        tracing::warn!(
            "no checkpoint file configured (`--checkpoints FILE`): the audit chain's head is witnessed in the \
             JSON log only, and records deleted from the end of the log are not found at start"
        );
        return witness.start(&chain_id, head, Vec::new());
    };
    let shown = sink.display().to_string();
    let log = LogState {
        chain: &chain_id,
        last_seq: chain.seq,
        witnessed_by: witnessed_by.as_deref(),
    };
    let disputes = match (&legacy_file, chain.seq) {
        // The first start of a node on a database whose unnamed chain this
        // file witnessed: that chain is held against it (it ends there),
        // and the file witnesses the node's chain from now on.
        (Some(legacy), 0) if legacy.as_str() == shown.as_str() && witnessed_by.is_none() => {
            let legacy_last: Option<i64> = col(
                &client.query_one("SELECT max(chain_seq) FROM audit WHERE chain = ''", &[])?,
                0,
            )?;
            let log = LogState {
                chain: &db_chain,
                last_seq: legacy_last.map_or(0, to_u64),
                witnessed_by: legacy_file.as_deref(),
            };
            reconcile(&sink, mac, &log, |seq| hash_at(client, "", seq))?
        }
        _ => reconcile(&sink, mac, &log, |seq| hash_at(client, node, seq))?,
    };
    witness.start(&chain_id, head, disputes)?;
    if witnessed_by.as_deref() != Some(shown.as_str()) {
        client.execute(
            "INSERT INTO meta(key, value) VALUES ($1, $2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            &[&file_key, &shown],
        )?;
    }
    Ok(())
}

/// The hash of the record at place `seq` of chain `node`, if there is one.
fn hash_at(client: &mut Client, node: &str, seq: u64) -> StoreResult<Option<String>> {
    client
        .query_opt(
            "SELECT hash FROM audit WHERE chain = $1 AND chain_seq = $2",
            &[&node, &to_i64(seq)],
        )?
        .map(|r| col(&r, 0))
        .transpose()
}

impl Store for PgStore {
    fn forget_session_facts(&self, session_id: &str) {
        self.facts_cache().map.remove(session_id);
    }

    fn checks_session_versions(&self) -> bool {
        true
    }

    fn subscribe(&self, on: EventHandler) {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (config, shown, flag) = (self.config.clone(), self.shown.clone(), Arc::clone(&stop));
        let spawned = std::thread::Builder::new()
            .name("tame-pg-listen".into())
            .spawn(move || listen_loop(&config, &shown, &on, &flag));
        match spawned {
            Ok(handle) => {
                let old = self
                    .listener
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .replace((stop, handle));
                if let Some((old_stop, old_handle)) = old {
                    old_stop.store(true, std::sync::atomic::Ordering::Release);
                    let _ = old_handle.join();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot start the listener of other servers' writes"),
        }
    }

    fn session_facts(&self, session_id: &str) -> StoreResult<FactsHandle> {
        if let Some(cell) = self.facts_cache().get(session_id) {
            return Ok(cell);
        }
        let id = session_id.to_string();
        let key = self.redactor.index_key();
        let mac = self.mac.clone();
        let state = self.read(move |client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            // With the version the writer checks decisions against.
            let (version, records) = session_records(&mut tx, &mac, &id)?;
            tx.commit()?;
            let mut state = facts_from_records(records, key);
            state.set_version(version);
            Ok(state)
        })?;
        Ok(self.facts_cache().insert(session_id, state))
    }

    crate::jobs::queued_writes!();

    fn sessions(&self, query: &SessionQuery) -> StoreResult<SessionPage> {
        let query = query.clone();
        self.read(move |client| {
            let page = query.page.max(1);
            let size = query.page_size.clamp(1, 1000);
            let filter = "WHERE ($1::text IS NULL OR agent_id = $1) AND ($2::text IS NULL OR user_id = $2)";
            let total: i64 = col(
                &client.query_one(
                    &format!("SELECT COUNT(*) FROM sessions {filter}"),
                    &[&query.agent_id, &query.user_id],
                )?,
                0,
            )?;
            let offset = to_i64((page - 1).saturating_mul(size));
            let rows = client.query(
                &format!("SELECT {SUMMARY_COLUMNS} FROM sessions {filter} ORDER BY last_seq DESC LIMIT $3 OFFSET $4"),
                &[&query.agent_id, &query.user_id, &to_i64(size), &offset],
            )?;
            Ok(SessionPage {
                sessions: rows.iter().map(summary_from_row).collect::<StoreResult<_>>()?,
                total_count: to_u64(total),
            })
        })
    }

    fn session_summary(&self, session_id: &str) -> StoreResult<Option<SessionSummary>> {
        let id = session_id.to_string();
        self.read(move |client| {
            client
                .query_opt(
                    &format!("SELECT {SUMMARY_COLUMNS} FROM sessions WHERE session_id = $1"),
                    &[&id],
                )?
                .as_ref()
                .map(summary_from_row)
                .transpose()
        })
    }

    fn session_log(&self, session_id: &str) -> StoreResult<Option<Vec<LogEntry>>> {
        let id = session_id.to_string();
        let mac = self.mac.clone();
        self.read(move |client| {
            let entries = entries_from_records(session_records(client, &mac, &id)?.1);
            Ok(if entries.is_empty() { None } else { Some(entries) })
        })
    }

    fn log_entry(&self, log_id: &str) -> StoreResult<Option<LogEntry>> {
        let id = log_id.to_string();
        self.read(move |client| Ok(entries_from_records(records_by_ref(client, &id)?).into_iter().next()))
    }

    fn decision_totals(&self) -> StoreResult<DecisionTotals> {
        self.read(|client| {
            let row = client.query_one(
                "SELECT count(*), coalesce(sum(total), 0)::bigint, coalesce(sum(allowed), 0)::bigint,
                        coalesce(sum(denied), 0)::bigint, coalesce(sum(approved), 0)::bigint FROM sessions",
                &[],
            )?;
            Ok(DecisionTotals {
                sessions: to_u64(col(&row, 0)?),
                total: to_u64(col(&row, 1)?),
                allowed: to_u64(col(&row, 2)?),
                denied: to_u64(col(&row, 3)?),
                approved: to_u64(col(&row, 4)?),
            })
        })
    }

    fn recent_decisions(&self, limit: u64) -> StoreResult<Vec<LogEntry>> {
        let limit = to_i64(limit.min(MAX_RECENT_DECISIONS));
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read(move |client| {
            let rows = client.query(RECENT_DECISIONS, &[&limit])?;
            let mut newest_first = entries(records_from_rows(&rows)?);
            newest_first.reverse();
            Ok(newest_first)
        })
    }

    fn session_log_page(&self, session_id: &str, offset: u64, limit: u64) -> StoreResult<Option<LogPage>> {
        let id = session_id.to_string();
        self.read(move |client| {
            // The walk starts at the tail read here and audit records never
            // change, so the page matches this count without a transaction.
            let Some(row) = client.query_opt("SELECT tail_seq, total FROM sessions WHERE session_id = $1", &[&id])?
            else {
                return Ok(None);
            };
            let tail: i64 = col(&row, 0)?;
            let total = to_u64(col(&row, 1)?);
            let Some(window) = Window::of_page(total, offset, limit.min(MAX_LOG_PAGE)) else {
                return Ok(Some(LogPage {
                    entries: Vec::new(),
                    total,
                }));
            };
            let rows = client.query(LOG_PAGE, &[&tail, &id, &to_i64(window.end), &to_i64(window.skip)])?;
            Ok(Some(LogPage {
                entries: entries(records_from_rows(&rows)?),
                total,
            }))
        })
    }

    fn approvals(&self, state: Option<ApprovalState>, now: Timestamp) -> StoreResult<Vec<Approval>> {
        let mac = self.mac.clone();
        self.read(move |client| {
            // Narrow in SQL (the state index); a pending approval past its
            // expiry reads as expired, so those two overlap.
            // Pending ones are those unexpired at `now` (`$1`): the expired
            // ones of the whole history are not read for them.
            let now_micros = micros(now);
            let (filter, binds): (&str, Vec<Param<'_>>) = match state {
                None => ("", vec![]),
                Some(ApprovalState::Pending) => {
                    ("WHERE a.state = 'pending' AND a.expires_micros > $1", vec![&now_micros])
                }
                Some(ApprovalState::Expired) => ("WHERE a.state IN ('pending', 'approved', 'expired')", vec![]),
                Some(ApprovalState::Approved) => ("WHERE a.state = 'approved'", vec![]),
                Some(ApprovalState::Rejected) => ("WHERE a.state = 'rejected'", vec![]),
            };
            let rows = client.query(
                &format!("{APPROVAL_SELECT} {filter} ORDER BY a.created_seq DESC"),
                &binds,
            )?;
            let mut out = shown_approvals(client, &mac, &rows, now)?;
            out.retain(|approval| state.is_none_or(|s| s == approval.state));
            Ok(out)
        })
    }

    fn decided_approvals(&self, limit: u64, now: Timestamp) -> StoreResult<Vec<Approval>> {
        let limit = to_i64(limit.min(MAX_DECIDED_APPROVALS));
        let mac = self.mac.clone();
        self.read(move |client| {
            let rows = client.query(DECIDED_APPROVALS, &[&micros(now), &limit])?;
            let mut out = shown_approvals(client, &mac, &rows, now)?;
            // A row shown as its records tell it may be pending after all.
            out.retain(|approval| approval.state != ApprovalState::Pending);
            Ok(out)
        })
    }

    fn approval(&self, id: &str, now: Timestamp) -> StoreResult<Option<Approval>> {
        let id = id.to_string();
        let mac = self.mac.clone();
        self.read(move |client| read_approval(client, &mac, &id, now))
    }

    fn newest_policy_version(&self) -> StoreResult<Option<PolicyVersion>> {
        let mac = self.mac.clone();
        self.read(move |client| {
            let Some(r) = client.query_opt(
                "SELECT p.id, p.version, p.hash, p.origin, p.loaded_at, p.source,
                        a.seq, a.kind, a.ts, a.session_id, a.ref_id, a.body, a.prev_hash, a.hash, a.session_prev,
                        a.chain, a.chain_seq
                   FROM policy_versions p LEFT JOIN audit a ON a.seq = p.seq
                  ORDER BY p.id DESC LIMIT 1",
                &[],
            )?
            else {
                return Ok(None);
            };
            let version = PolicyVersion {
                id: to_u64(col(&r, 0)?),
                version: col(&r, 1)?,
                hash: col(&r, 2)?,
                origin: col(&r, 3)?,
                loaded_at: col(&r, 4)?,
                source: col(&r, 5)?,
            };
            let forged = |detail: &str| StoreError::PolicyForged {
                id: version.id,
                detail: detail.to_string(),
            };
            if col::<Option<i64>>(&r, 6)?.is_none() {
                return Err(forged("no audit record at its sequence number"));
            }
            let record = AuditRow {
                seq: col(&r, 6)?,
                kind: col(&r, 7)?,
                ts: col(&r, 8)?,
                session_id: col(&r, 9)?,
                ref_id: col(&r, 10)?,
                body: col(&r, 11)?,
                prev_hash: col(&r, 12)?,
                hash: col(&r, 13)?,
                session_prev: col(&r, 14)?,
                chain: col(&r, 15)?,
                chain_seq: col(&r, 16)?,
            };
            policy_matches_record(&version, &record, &mac).map_err(|d: String| forged(&d))?;
            Ok(Some(version))
        })
    }

    fn policy_versions(&self) -> StoreResult<Vec<PolicyVersion>> {
        self.read(|client| {
            let rows = client.query(
                "SELECT id, version, hash, origin, loaded_at, source FROM policy_versions ORDER BY id",
                &[],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(PolicyVersion {
                        id: to_u64(col(r, 0)?),
                        version: col(r, 1)?,
                        hash: col(r, 2)?,
                        origin: col(r, 3)?,
                        loaded_at: col(r, 4)?,
                        source: col(r, 5)?,
                    })
                })
                .collect()
        })
    }

    fn verify(&self) -> StoreResult<VerifyReport> {
        let mac = self.mac.clone();
        // Read before the snapshot: every head it names is committed, so
        // the snapshot holds it.
        let claims: Claims = self.witness.claims();
        let node = self.node.clone();
        self.read(move |client| {
            let mut check = ChainCheck::new(&mac, &node);
            for seq in claims.seqs() {
                check.want(seq);
            }
            let scan = |rows: Vec<AuditRow>| {
                rows.iter().for_each(|row| check.feed(row));
                true
            };
            let (heads, approvals) = scan_audit(client, scan, true)?;
            Ok(check.finish(&heads, &claims, approvals))
        })
    }

    fn export(&self, out: &mut dyn Write) -> StoreResult<u64> {
        // The rows come from a reader thread in chunks; they are written
        // here, where `out` lives. Stopping early drops the receiver, which
        // ends the scan.
        let (tx, rx) = sync_channel::<StoreResult<Vec<AuditRow>>>(4);
        let chunks: SyncSender<StoreResult<Vec<AuditRow>>> = tx.clone();
        let job: ReadJob = Box::new(move |reader| {
            // Not run again on a new connection: chunks may have gone out.
            let scanned = reader
                .client()
                .and_then(|c| scan_audit(c, |rows| chunks.send(Ok(rows)).is_ok(), false));
            if let Err(e) = scanned {
                let _ = tx.send(Err(e));
            }
        });
        match &self.reads {
            Some(reads) if reads.send(job).is_ok() => {}
            _ => return Err(StoreError::Db("the store's readers have stopped".into())),
        }
        let mut n = 0u64;
        for chunk in rx {
            for row in chunk? {
                write_export_line(out, row)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_case_insensitively() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(is_postgres_url("PostgreSQL://u@h/db"));
        assert!(!is_postgres_url("tame.db"));
        assert!(!is_postgres_url("/var/lib/postgres/tame.db"));
        assert!(!is_postgres_url("postgres:"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://tame:s3cr%40t@db.local:5432/tame"),
            "postgres://tame:***@db.local:5432/tame"
        );
        assert_eq!(redact_url("postgres://tame@db/tame"), "postgres://tame@db/tame");
        assert_eq!(
            redact_url("postgresql://db/tame?user=t&password=hunter2&sslmode=disable"),
            "postgresql://db/tame?user=t&password=***&sslmode=disable"
        );
        // A password holding `@` or `/` still goes.
        assert_eq!(redact_url("postgres://u:a@b@h/db"), "postgres://u:***@h/db");
        assert!(!redact_url("postgres://u:p/w@h/db").contains("p/w@"));
    }

    #[test]
    fn a_malformed_url_is_named_without_its_password() {
        let e = PgStore::open("postgres://tame:hunter2@db:port/tame", PgOptions::new(vec![7u8; 32]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid PostgreSQL URL `postgres://tame:***@db:port/tame`"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_short_secret_is_refused_before_connecting() {
        let e = PgStore::open("postgres://nobody@127.0.0.1:1/none", PgOptions::new(b"short".to_vec())).unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error_without_the_password() {
        let e = PgStore::open(
            "postgres://tame:topsecret@127.0.0.1:1/tame",
            PgOptions::new(vec![7u8; 32]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot connect to `postgres://tame:***@127.0.0.1:1/tame`"),
            "{e}"
        );
        assert!(!e.contains("topsecret"), "{e}");
    }
}
