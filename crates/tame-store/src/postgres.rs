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
    check_release, check_result_owner, decided_state, entries_from_records, facts_from_records, mac_from_key,
    may_expire, micros, policy_body, record_mac, result_body, trusted_row, write_export_line,
};
use crate::{
    Approval, ApprovalDecision, ApprovalState, DecisionReceipt, DecisionTotals, Durability, LogEntry, LogPage,
    MAX_DECIDED_APPROVALS, MAX_LOG_PAGE, MAX_RECENT_DECISIONS, NewDecision, NewPolicyVersion, NewResult, PolicyVersion,
    SessionPage, SessionQuery, SessionSummary, Store, StoreError, StoreResult, Ticket, VerifyReport, format_timestamp,
};

/// The schema version this build writes (kept in `meta` as `schema_version`).
pub const PG_SCHEMA_VERSION: u32 = 1;

/// The advisory lock a writer holds for as long as its store is open
/// (advisory locks are per database): the ASCII bytes of `tamestor`.
const WRITER_LOCK: i64 = 0x7461_6d65_7374_6f72;

/// Rows fetched per round trip by `verify` and `export`.
const FETCH_ROWS: i32 = 2000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    ts TEXT NOT NULL,
    session_id TEXT,
    ref_id TEXT,
    session_prev BIGINT,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ref ON audit(ref_id, seq);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    last_seq BIGINT NOT NULL,
    tail_seq BIGINT NOT NULL,
    total BIGINT NOT NULL,
    allowed BIGINT NOT NULL,
    denied BIGINT NOT NULL,
    approved BIGINT NOT NULL,
    agent_id TEXT,
    user_id TEXT
);
CREATE INDEX IF NOT EXISTS sessions_last ON sessions(last_seq);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    created_seq BIGINT NOT NULL,
    log_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    call_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_micros BIGINT NOT NULL,
    expires_at TEXT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    decided_at TEXT,
    released_log_id TEXT
);
CREATE INDEX IF NOT EXISTS approvals_state ON approvals(state, expires_micros);
CREATE TABLE IF NOT EXISTS policy_versions (
    id BIGSERIAL PRIMARY KEY,
    seq BIGINT NOT NULL,
    version TEXT NOT NULL,
    hash TEXT NOT NULL,
    origin TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    source TEXT NOT NULL
);
";

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
            .finish()
    }
}

/// A read run on a reader thread, given its connection (or why there is none).
type ReadJob = Box<dyn FnOnce(StoreResult<&mut Client>) + Send>;

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
    /// The witness of the chain's head (written last on drop).
    witness: Arc<Witness>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("db", &self.shown)
            .finish_non_exhaustive()
    }
}

fn connect(config: &postgres::Config, shown: &str) -> StoreResult<Client> {
    let connected = match config.get_ssl_mode() {
        SslMode::Disable => config.connect(NoTls),
        SslMode::Require => config.connect(MakeRustlsConnect::new(tls_config(shown)?)),
        // `prefer` is opportunistic: without trusted roots it stays plain.
        _ => match tls_config(shown) {
            Ok(tls) => config.connect(MakeRustlsConnect::new(tls)),
            Err(e) => {
                tracing::warn!("{e}; connecting without TLS (sslmode=prefer)");
                config.connect(NoTls)
            }
        },
    };
    connected.map_err(|e| StoreError::Db(format!("cannot connect to `{shown}`: {}", pg_message(&e))))
}

/// TLS for the URL's `sslmode=prefer` (the default: TLS when the server
/// offers it) and `sslmode=require`; `sslmode=disable` stays plain. The
/// server's certificate is always verified, against the system's trusted
/// roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` name others, such as a cloud
/// provider's CA bundle): an untrusted certificate fails the connection.
///
/// The roots are read once per process (every connection of every store
/// would otherwise parse the system's CA bundle again).
fn tls_config(shown: &str) -> StoreResult<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Result<rustls::ClientConfig, String>> = std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map_or_else(|| "none found".to_string(), ToString::to_string);
            return Err(format!(
                "no trusted root certificates ({why}); \
                 install ca-certificates, set SSL_CERT_FILE, or add `sslmode=disable` to the URL"
            ));
        }
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| format!("cannot set up TLS: {e}"))
    });
    config
        .clone()
        .map_err(|why| StoreError::Db(format!("cannot connect to `{shown}` with TLS: {why}")))
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
        let mac = mac_from_key(&options.secret)?;
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
            witness,
        })
    }

    /// The database URL, password redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Runs `f` on a reader thread and waits for its answer.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = sync_channel(1);
        let job: ReadJob = Box::new(move |client| {
            let _ = tx.send(client.and_then(f));
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
    let mut client: Option<Client> = None;
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        if client.as_ref().is_none_or(Client::is_closed) {
            client = None;
            match connect(config, shown) {
                Ok(c) => client = Some(c),
                Err(e) => {
                    job(Err(e));
                    continue;
                }
            }
        }
        match client.as_mut() {
            Some(c) => job(Ok(c)),
            None => job(Err(StoreError::Db(format!("no connection to `{shown}`")))),
        }
    }
}

// ---------------------------------------------------------------- writer

/// Appends rows of the audit log, given as arrays of their columns.
const INSERT_AUDIT: &str = "INSERT INTO audit(seq, kind, ts, session_id, ref_id, session_prev, body, prev_hash, hash)
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                         $7::text[], $8::text[], $9::text[])";

/// Adds a batch's deltas to the session summaries (arrays of their columns).
const UPSERT_SESSIONS: &str = "INSERT INTO sessions AS s(session_id, start_time, end_time, last_seq, tail_seq,
        total, allowed, denied, approved, agent_id, user_id)
    SELECT * FROM UNNEST($10::text[], $11::text[], $12::text[], $13::bigint[], $14::bigint[], $15::bigint[],
                         $16::bigint[], $17::bigint[], $18::bigint[], $19::text[], $20::text[])
    ON CONFLICT(session_id) DO UPDATE SET
      end_time = CASE WHEN excluded.total > 0 THEN excluded.end_time ELSE s.end_time END,
      last_seq = CASE WHEN excluded.total > 0 THEN excluded.last_seq ELSE s.last_seq END,
      tail_seq = excluded.tail_seq,
      total = s.total + excluded.total, allowed = s.allowed + excluded.allowed,
      denied = s.denied + excluded.denied, approved = s.approved + excluded.approved,
      agent_id = COALESCE(s.agent_id, excluded.agent_id),
      user_id = COALESCE(s.user_id, excluded.user_id)";

/// Records the chain head (`seq:hash`), which finds a truncated log.
const UPSERT_HEAD: &str = "INSERT INTO meta(key, value) VALUES ('head', $21)
    ON CONFLICT(key) DO UPDATE SET value = excluded.value";

/// Statements the writer prepares once per connection.
struct Stmts {
    insert_audit: Statement,
    write_batch: Statement,
    tails: Statement,
    tail: Statement,
    decision_owner: Statement,
    approval_row: Statement,
    approval_records: Statement,
    mark_released: Statement,
    insert_approval: Statement,
    decide_approval: Statement,
    due_approvals: Statement,
    expire_approval: Statement,
    insert_policy: Statement,
}

impl Stmts {
    fn prepare(client: &mut Client) -> StoreResult<Stmts> {
        Ok(Stmts {
            insert_audit: client.prepare(INSERT_AUDIT)?,
            write_batch: client.prepare(&format!(
                "WITH w_audit AS ({INSERT_AUDIT}), w_sessions AS ({UPSERT_SESSIONS}), w_head AS ({UPSERT_HEAD}) SELECT 1"
            ))?,
            tails: client.prepare("SELECT session_id, tail_seq FROM sessions WHERE session_id = ANY($1)")?,
            tail: client.prepare("SELECT tail_seq FROM sessions WHERE session_id = $1")?,
            decision_owner: client
                .prepare("SELECT session_id FROM audit WHERE ref_id = $1 AND kind = 'decision' ORDER BY seq LIMIT 1")?,
            approval_row: client.prepare(&format!("{APPROVAL_SELECT} WHERE a.id = $1 FOR UPDATE OF a"))?,
            approval_records: client.prepare(APPROVAL_RECORDS)?,
            mark_released: client.prepare("UPDATE approvals SET released_log_id = $1 WHERE id = $2")?,
            insert_approval: client.prepare(
                "INSERT INTO approvals(id, created_seq, log_id, session_id, call_hash, state, expires_micros, expires_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)",
            )?,
            decide_approval: client.prepare(
                "UPDATE approvals SET state = $1, decided_by = $2, decision_reason = $3, decided_at = $4 WHERE id = $5",
            )?,
            due_approvals: client.prepare(
                "SELECT id, session_id FROM approvals
                 WHERE (state = 'pending' OR (state = 'approved' AND released_log_id IS NULL)) AND expires_micros <= $1
                 ORDER BY created_seq",
            )?,
            expire_approval: client.prepare("UPDATE approvals SET state = 'expired', decided_at = $1 WHERE id = $2")?,
            insert_policy: client.prepare(
                "INSERT INTO policy_versions(seq, version, hash, origin, loaded_at, source)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )?,
        })
    }
}

/// Pipelined durability, as in the SQLite store: the writer commits
/// without waiting for the disk (`synchronous_commit = off`) and goes on
/// with the next batch, while this thread, on its own connection, commits a
/// one-row write that does wait (`synchronous_commit = on`). The WAL is
/// flushed in order, so once that commit returns, every batch committed
/// before it started is on disk too; only then are their callers answered.
/// A commit waiting for the disk would otherwise stall the writer for every
/// flush.
///
/// The syncer never reconnects: a batch committed before a crash of the
/// database server may be lost, and a sync commit on a new connection
/// would vouch for it. When its connection is gone it fails what is
/// pending and marks itself broken; the writer then starts over (new
/// connections, chain head read back from the database).
struct PgSyncer {
    sender: Option<Sender<(Vec<Done>, Head)>>,
    handle: Option<JoinHandle<()>>,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

/// A chain head: the last record's sequence number and hash.
type Head = (u64, String);

impl PgSyncer {
    /// Starts syncing on `client`; `witness` is told each head once durable.
    fn start(mut client: Client, witness: Arc<Witness>) -> StoreResult<PgSyncer> {
        client.batch_execute("SET synchronous_commit = on")?;
        let stmt = client.prepare(
            "INSERT INTO meta(key, value) VALUES ('synced', $1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )?;
        let (sender, receiver) = channel::<(Vec<Done>, Head)>();
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&broken);
        let handle = std::thread::Builder::new()
            .name("tame-pg-sync".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut pending = vec![first];
                    while let Ok(more) = receiver.try_recv() {
                        pending.push(more);
                    }
                    let at = format_timestamp(Timestamp::now());
                    let failed = client.execute(&stmt, &[&at]).err().map(|e| {
                        let msg = format!("cannot make the audit log durable: {}", StoreError::from(e));
                        tracing::error!("{msg}");
                        msg
                    });
                    if failed.is_some() && client.is_closed() {
                        flag.store(true, std::sync::atomic::Ordering::Release);
                    }
                    // Batches come in order: the last head is the newest.
                    if failed.is_none()
                        && let Some((_, (seq, hash))) = pending.last()
                    {
                        witness.publish(*seq, hash);
                    }
                    for (done, _) in pending {
                        done.into_iter().for_each(|d| d.finish(failed.as_deref()));
                    }
                }
            })
            .map_err(|e| StoreError::Db(format!("cannot start the sync thread: {e}")))?;
        Ok(PgSyncer {
            sender: Some(sender),
            handle: Some(handle),
            broken,
        })
    }

    /// Hands committed outcomes (and the head they leave) over; answers
    /// them here if the thread is gone.
    fn submit(&self, done: Vec<Done>, head: Head) {
        if let Some(sender) = &self.sender
            && let Err(std::sync::mpsc::SendError((done, _))) = sender.send((done, head))
        {
            done.into_iter()
                .for_each(|d| d.finish(Some("the audit sync thread has stopped")));
        }
    }
}

impl Drop for PgSyncer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

struct PgWriter {
    client: Client,
    stmts: Stmts,
    syncer: Option<PgSyncer>,
    chain: Chain,
    mac: HmacSha256,
    max_batch: usize,
    link: Link,
}

/// How the writer (re)connects.
struct Link {
    config: postgres::Config,
    shown: String,
    lock_wait: std::time::Duration,
    durability: Durability,
    /// The witness of the chain's head, shared with the syncer and the store.
    witness: Arc<Witness>,
}

/// A writer's connection, with the lock taken and the schema checked, and
/// what goes with it.
struct Connected {
    client: Client,
    stmts: Stmts,
    chain: Chain,
    syncer: Option<PgSyncer>,
}

/// Audit rows of a batch not yet sent to the database: they go in one
/// statement when the batch ends, or earlier when a job reads them back.
#[derive(Default)]
struct PendingRows {
    seq: Vec<i64>,
    kind: Vec<String>,
    ts: Vec<String>,
    session_id: Vec<Option<String>>,
    ref_id: Vec<Option<String>>,
    session_prev: Vec<Option<i64>>,
    body: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
    /// Decisions among them: log id to session id.
    decisions: HashMap<String, String>,
}

/// One statement parameter.
type Param<'a> = &'a (dyn postgres::types::ToSql + Sync);

impl PendingRows {
    /// The audit columns, in `INSERT_AUDIT`'s order (the first nine
    /// parameters of both the plain insert and the batch statement).
    fn columns(&self) -> [Param<'_>; 9] {
        [
            &self.seq,
            &self.kind,
            &self.ts,
            &self.session_id,
            &self.ref_id,
            &self.session_prev,
            &self.body,
            &self.prev_hash,
            &self.hash,
        ]
    }
}

/// One batch's state, writing through `db`: a transaction, or for a batch
/// that only appends, the connection itself (its one write statement
/// commits on its own).
struct Batch<'a, C: GenericClient> {
    db: &'a mut C,
    /// The chain head's sequence number before the batch.
    start_seq: u64,
    stmts: &'a Stmts,
    chain: &'a mut Chain,
    mac: &'a HmacSha256,
    rows: PendingRows,
    sessions: HashMap<String, SessionDelta>,
    /// Sessions known to have no records before this batch.
    new_sessions: HashSet<String>,
}

impl PgWriter {
    fn start(link: Link, mac: HmacSha256, max_batch: usize) -> StoreResult<PgWriter> {
        let Connected {
            mut client,
            stmts,
            chain,
            syncer,
        } = link.connect()?;
        start_witness(&mut client, &link.witness, &mac, &chain)?;
        Ok(PgWriter {
            client,
            stmts,
            chain,
            mac,
            max_batch,
            syncer,
            link,
        })
    }

    /// Whether the connection (or the syncer's) is gone.
    fn disconnected(&self) -> bool {
        self.client.is_closed()
            || (self.link.durability == Durability::Full && self.syncer.is_none())
            || self
                .syncer
                .as_ref()
                .is_some_and(|s| s.broken.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Starts over on new connections: the chain head is read back from
    /// the database, so a batch lost with the old connection leaves no gap.
    fn reconnect(&mut self) -> StoreResult<()> {
        drop(self.syncer.take());
        if !self.client.is_closed() {
            let _ = self.client.execute("SELECT pg_advisory_unlock($1)", &[&WRITER_LOCK]);
        }
        let Connected {
            client,
            stmts,
            chain,
            syncer,
        } = self.link.connect()?;
        // A database that lost committed records (a crash with
        // `synchronous_commit = off`) must not be chained onto unnoticed.
        let mut client = client;
        self.link.witness.recheck(chain.seq, |seq| hash_at(&mut client, seq))?;
        // The old client is dropped here, after the new one holds the lock.
        self.client = client;
        self.stmts = stmts;
        self.chain = chain;
        self.syncer = syncer;
        tracing::warn!(db = %self.link.shown, "the audit writer reconnected to the database");
        Ok(())
    }
}

impl Link {
    fn connect(&self) -> StoreResult<Connected> {
        let (config, shown, lock_wait) = (&self.config, self.shown.as_str(), self.lock_wait);
        let mut client = connect(config, shown)?;
        let deadline = std::time::Instant::now() + lock_wait;
        let locked = loop {
            let locked: bool = col(
                &client.query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])?,
                0,
            )?;
            if locked || std::time::Instant::now() >= deadline {
                break locked;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        if !locked {
            return Err(StoreError::Db(format!(
                "another tame server is writing to `{shown}` (it holds the store's advisory lock): \
                 only one writer per database"
            )));
        }
        // The writer's commits do not wait for the disk; with `Full`
        // durability the syncer makes them durable before anyone is told.
        client.batch_execute("SET synchronous_commit = off")?;
        client.batch_execute(SCHEMA)?;
        let stored: Option<String> = client
            .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])?
            .map(|r| col(&r, 0))
            .transpose()?;
        match stored.as_deref().map(str::parse::<u32>) {
            None => {
                client.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', $1)",
                    &[&PG_SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(Ok(v)) if v <= PG_SCHEMA_VERSION => {}
            Some(Ok(v)) => {
                return Err(StoreError::Db(format!(
                    "the database `{shown}` has schema version {v}; this tame reads up to {PG_SCHEMA_VERSION}"
                )));
            }
            Some(Err(_)) => {
                return Err(StoreError::Db(format!(
                    "the database `{shown}` has an unreadable schema version `{}`",
                    stored.unwrap_or_default()
                )));
            }
        }
        let chain = match client.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])? {
            Some(row) => Chain::new(to_u64(col(&row, 0)?), col(&row, 1)?),
            None => Chain::new(0, GENESIS.to_string()),
        };
        let stmts = Stmts::prepare(&mut client)?;
        let syncer = match self.durability {
            Durability::Full => Some(PgSyncer::start(connect(config, shown)?, Arc::clone(&self.witness))?),
            Durability::Normal => None,
        };
        Ok(Connected {
            client,
            stmts,
            chain,
            syncer,
        })
    }
}

impl PgWriter {
    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::with_capacity(64);
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        // Answer everything in flight before the lock goes.
        drop(self.syncer.take());
        // Released now rather than when PostgreSQL notices the closed
        // connection, so that the store can be reopened at once.
        if let Err(e) = self.client.execute("SELECT pg_advisory_unlock($1)", &[&WRITER_LOCK]) {
            tracing::warn!(error = %StoreError::from(e), "cannot release the store's writer lock");
        }
        tracing::debug!("postgresql store writer drained and stopped");
    }

    /// Applies a batch atomically and answers its jobs once it is
    /// committed: a batch that only appends decisions and results is one
    /// statement; any other runs in a transaction. A job failing a check
    /// fails alone (checks come before writes); a database error fails the
    /// whole batch, which leaves nothing behind.
    fn commit_batch(&mut self, batch: Vec<Job>) {
        if self.disconnected()
            && let Err(e) = self.reconnect()
        {
            tracing::error!(error = %e, "the audit writer cannot reconnect");
            let msg = format!("the audit batch was not committed: {e}");
            batch.into_iter().for_each(|job| job.skipped().finish(Some(&msg)));
            return;
        }
        let saved = (self.chain.seq, self.chain.hash.clone());
        self.chain.touched.clear();
        let plain = batch.iter().all(|job| match job {
            Job::Decision(d, _) => d.release_of.is_none() && d.new_approval.is_none(),
            Job::Result(..) | Job::Flush(_) => true,
            Job::Approval(..) | Job::Expire(..) | Job::Policy(..) => false,
        });
        let PgWriter {
            client,
            stmts,
            chain,
            mac,
            ..
        } = self;
        let (done, fatal) = if plain {
            apply_batch(client, stmts, chain, mac, batch)
        } else {
            match client.transaction() {
                Ok(mut tx) => {
                    let (done, mut fatal) = apply_batch(&mut tx, stmts, chain, mac, batch);
                    if fatal.is_none()
                        && let Err(e) = tx.commit()
                    {
                        fatal = Some(StoreError::from(e).to_string());
                    }
                    // On error the transaction is rolled back when dropped.
                    (done, fatal)
                }
                Err(e) => (
                    batch.into_iter().map(Job::skipped).collect(),
                    Some(StoreError::from(e).to_string()),
                ),
            }
        };
        match fatal {
            None => match &self.syncer {
                Some(syncer) => syncer.submit(done, (self.chain.seq, self.chain.hash.clone())),
                None => {
                    self.link.witness.publish(self.chain.seq, &self.chain.hash);
                    done.into_iter().for_each(|d| d.finish(None));
                }
            },
            Some(e) => {
                tracing::error!(error = %e, "audit batch failed to commit");
                (self.chain.seq, self.chain.hash) = saved;
                // The session tails may name rolled-back records: reload them.
                self.chain.tails.clear();
                let msg = format!("the audit batch was not committed: {e}");
                done.into_iter().for_each(|d| d.finish(Some(&msg)));
            }
        }
    }
}

/// Runs a batch's jobs through `db` and writes what they appended; returns
/// their outcomes and the database error that failed the batch, if any.
fn apply_batch<C: GenericClient>(
    db: &mut C,
    stmts: &Stmts,
    chain: &mut Chain,
    mac: &HmacSha256,
    batch: Vec<Job>,
) -> (Vec<Done>, Option<String>) {
    let mut b = Batch {
        db,
        start_seq: chain.seq,
        stmts,
        chain,
        mac,
        rows: PendingRows::default(),
        sessions: HashMap::new(),
        new_sessions: HashSet::new(),
    };
    let mut done = Vec::with_capacity(batch.len());
    let mut fatal = b.load_tails(&batch).err().map(|e| e.to_string());
    for job in batch {
        if fatal.is_some() {
            done.push(job.skipped());
            continue;
        }
        let d = b.apply(job);
        fatal = d.fatal_error();
        done.push(d);
    }
    if fatal.is_none()
        && let Err(e) = b.finish()
    {
        fatal = Some(e.to_string());
    }
    (done, fatal)
}

impl<C: GenericClient> Batch<'_, C> {
    /// Reads, in one query, the last record of every session the batch
    /// writes to that this writer has not seen yet.
    fn load_tails(&mut self, jobs: &[Job]) -> StoreResult<()> {
        let mut wanted: Vec<&str> = Vec::new();
        for job in jobs {
            let sid = match job {
                Job::Decision(d, _) => d.session_id.as_str(),
                Job::Result(r, _) => r.session_id.as_str(),
                _ => continue,
            };
            if !self.chain.tails.contains_key(sid) && !wanted.contains(&sid) {
                wanted.push(sid);
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        for row in self.db.query(&self.stmts.tails, &[&wanted])? {
            let sid: String = col(&row, 0)?;
            let tail: i64 = col(&row, 1)?;
            self.chain.tails.insert(sid, to_u64(tail));
        }
        for sid in wanted {
            if !self.chain.tails.contains_key(sid) {
                self.new_sessions.insert(sid.to_string());
            }
        }
        Ok(())
    }

    fn apply(&mut self, job: Job) -> Done {
        match job {
            Job::Decision(d, ack) => Done::Decision(ack, self.write_decision(*d)),
            Job::Result(r, ack) => Done::Result(ack, self.write_result(&r)),
            Job::Approval(a, ack) => Done::Approval(ack, Box::new(self.write_approval_decision(&a))),
            Job::Expire(now, ack) => Done::Expire(ack, self.write_expiry(now)),
            Job::Policy(p, ack) => Done::Policy(ack, self.write_policy(&p)),
            Job::Flush(ack) => Done::Flush(ack),
        }
    }

    /// Chains one record and queues its row.
    fn append(
        &mut self,
        kind: &str,
        ts: &str,
        session_id: Option<&str>,
        ref_id: Option<&str>,
        body: String,
    ) -> StoreResult<u64> {
        let seq = self.chain.seq.saturating_add(1);
        let session_prev = match session_id {
            Some(sid) => match self.chain.tails.get(sid) {
                Some(&prev) => Some(prev),
                None if self.new_sessions.contains(sid) => None,
                None => self
                    .db
                    .query_opt(&self.stmts.tail, &[&sid])?
                    .map(|r| col::<i64>(&r, 0))
                    .transpose()?
                    .map(to_u64),
            },
            None => None,
        };
        let prev_text = session_prev.map(|p| p.to_string());
        let hash = record_mac(
            self.mac,
            &self.chain.hash,
            seq,
            [
                Some(kind),
                Some(ts),
                session_id,
                ref_id,
                prev_text.as_deref(),
                Some(&body),
            ],
        );
        let rows = &mut self.rows;
        rows.seq.push(to_i64(seq));
        rows.kind.push(kind.to_string());
        rows.ts.push(ts.to_string());
        rows.session_id.push(session_id.map(str::to_string));
        rows.ref_id.push(ref_id.map(str::to_string));
        rows.session_prev.push(session_prev.map(to_i64));
        rows.body.push(body);
        rows.prev_hash.push(std::mem::take(&mut self.chain.hash));
        rows.hash.push(hash.clone());
        if kind == "decision"
            && let (Some(r), Some(s)) = (ref_id, session_id)
        {
            rows.decisions.insert(r.to_string(), s.to_string());
        }
        self.chain.advance(seq, hash, session_id);
        Ok(seq)
    }

    /// Sends the queued rows in one statement.
    fn flush_rows(&mut self) -> StoreResult<()> {
        if self.rows.seq.is_empty() {
            return Ok(());
        }
        let r = std::mem::take(&mut self.rows);
        self.db.execute(&self.stmts.insert_audit, &r.columns())?;
        Ok(())
    }

    /// Writes the queued rows, the batch's session summaries and the chain
    /// head, in one statement; nothing when the batch appended nothing.
    fn finish(&mut self) -> StoreResult<()> {
        if self.chain.seq == self.start_seq {
            return Ok(());
        }
        let r = std::mem::take(&mut self.rows);
        let mut ids = Vec::new();
        let mut start = Vec::new();
        let mut end = Vec::new();
        let mut last_seq = Vec::new();
        let mut tail_seq = Vec::new();
        let mut total = Vec::new();
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        let mut approved = Vec::new();
        let mut agent = Vec::new();
        let mut user = Vec::new();
        for id in &self.chain.touched {
            let Some(&tail) = self.chain.tails.get(id) else {
                continue;
            };
            let d = self.sessions.remove(id).unwrap_or_default();
            ids.push(id.clone());
            start.push(d.start);
            end.push(d.end);
            last_seq.push(d.last_seq);
            tail_seq.push(to_i64(tail));
            total.push(d.total);
            allowed.push(d.allowed);
            denied.push(d.denied);
            approved.push(d.approved);
            agent.push(d.agent_id);
            user.push(d.user_id);
        }
        let head = format!("{}:{}", self.chain.seq, self.chain.hash);
        let summaries: [Param<'_>; 12] = [
            &ids, &start, &end, &last_seq, &tail_seq, &total, &allowed, &denied, &approved, &agent, &user, &head,
        ];
        let params: Vec<Param<'_>> = r.columns().into_iter().chain(summaries).collect();
        self.db.execute(&self.stmts.write_batch, &params)?;
        Ok(())
    }

    fn write_decision(&mut self, mut d: PreparedDecision) -> StoreResult<DecisionReceipt> {
        if let Some(release) = &d.release_of {
            let (row, chained) = self.approval(&release.approval_id)?;
            check_release(release, d.at, row, chained)?;
        }
        let body = std::mem::take(&mut d.body);
        let seq = self.append("decision", &d.ts, Some(&d.session_id), Some(&d.log_id), body)?;
        SessionDelta::note_decision(&mut self.sessions, &d, seq);
        if let Some(release) = &d.release_of {
            // The approval's own record of its use, found through its id.
            let body = canonical_json(&approval_released_body(&release.approval_id, &d.log_id, &d.ts));
            self.append(
                "approval_released",
                &d.ts,
                Some(&d.session_id),
                Some(&release.approval_id),
                body,
            )?;
            self.db
                .execute(&self.stmts.mark_released, &[&d.log_id, &release.approval_id])?;
        }
        if let Some(approval) = d.new_approval.take() {
            let created = self.append(
                "approval_created",
                &d.ts,
                Some(&d.session_id),
                Some(&approval.id),
                approval.body,
            )?;
            self.db.execute(
                &self.stmts.insert_approval,
                &[
                    &approval.id,
                    &to_i64(created),
                    &d.log_id,
                    &d.session_id,
                    &approval.call_hash,
                    &approval.expires_micros,
                    &approval.expires_at,
                ],
            )?;
        }
        Ok(DecisionReceipt { seq })
    }

    fn write_result(&mut self, r: &NewResult) -> StoreResult<u64> {
        let owner = match self.rows.decisions.get(&r.log_id) {
            Some(session) => Some(Some(session.clone())),
            None => self
                .db
                .query_opt(&self.stmts.decision_owner, &[&r.log_id])?
                .map(|row| col::<Option<String>>(&row, 0))
                .transpose()?,
        };
        check_result_owner(r, owner)?;
        let ts = format_timestamp(r.timestamp);
        let body = canonical_json(&result_body(r, &ts));
        self.append("result", &ts, Some(&r.session_id), Some(&r.log_id), body)
    }

    /// The row of approval `id` (locked) and what its records say, with
    /// the batch's records so far written first.
    fn approval(&mut self, id: &str) -> StoreResult<(Option<ApprovalRow>, Chained)> {
        self.flush_rows()?;
        let row = self
            .db
            .query_opt(&self.stmts.approval_row, &[&id])?
            .map(|r| approval_row_from(&r))
            .transpose()?;
        let records = self
            .db
            .query(&self.stmts.approval_records, &[&id])?
            .iter()
            .map(audit_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((row, chained_approval(self.mac, id, &records)))
    }

    fn write_approval_decision(&mut self, a: &ApprovalDecision) -> StoreResult<Approval> {
        let (row, chained) = self.approval(&a.id)?;
        let session = row.as_ref().map(|r| r.session_id.clone());
        let new_state = decided_state(a, row, chained)?;
        let ts = format_timestamp(a.at);
        let body = canonical_json(&approval_decided_body(a, new_state, &ts));
        self.append("approval_decided", &ts, session.as_deref(), Some(&a.id), body)?;
        self.db.execute(
            &self.stmts.decide_approval,
            &[&new_state.as_str(), &a.by, &a.reason, &ts, &a.id],
        )?;
        // The approval is read back joined with its decision record.
        self.flush_rows()?;
        read_approval(self.db, self.mac, &a.id, a.at)?.ok_or_else(|| StoreError::ApprovalNotFound(a.id.clone()))
    }

    fn write_expiry(&mut self, now: Timestamp) -> StoreResult<Vec<String>> {
        let mut candidates: Vec<(String, String)> = Vec::new();
        for row in self.db.query(&self.stmts.due_approvals, &[&micros(now)])? {
            candidates.push((col(&row, 0)?, col(&row, 1)?));
        }
        let mut due = Vec::with_capacity(candidates.len());
        for (id, session) in candidates {
            if let (Some(row), chained) = self.approval(&id)?
                && may_expire(row, chained)
            {
                due.push((id, session));
            }
        }
        let ts = format_timestamp(now);
        for (id, session) in &due {
            let body = canonical_json(&approval_expired_body(id, &ts));
            self.append("approval_expired", &ts, Some(session), Some(id), body)?;
            self.db.execute(&self.stmts.expire_approval, &[&ts, id])?;
        }
        Ok(due.into_iter().map(|(id, _)| id).collect())
    }

    fn write_policy(&mut self, p: &NewPolicyVersion) -> StoreResult<u64> {
        let ts = format_timestamp(p.loaded_at);
        let body = canonical_json(&policy_body(p, &ts));
        let seq = self.append("policy_loaded", &ts, None, Some(&p.hash), body)?;
        let row = self.db.query_one(
            &self.stmts.insert_policy,
            &[&to_i64(seq), &p.version, &p.hash, &p.origin, &ts, &p.source],
        )?;
        Ok(to_u64(col(&row, 0)?))
    }
}

// ---------------------------------------------------------------- reads

/// A session's records `(seq, kind, body)` in order, following the
/// `session_prev` links back from the session's last record in one query.
/// A missing or foreign record (a damaged log) ends the walk; `verify`
/// names it. Links must point strictly backwards, so the walk ends.
fn session_records(db: &mut impl GenericClient, session_id: &str) -> StoreResult<Vec<(u64, String, String)>> {
    let rows = db.query(
        "WITH RECURSIVE walk(seq, kind, body, prev) AS (
             SELECT a.seq, a.kind, a.body, a.session_prev
               FROM sessions s JOIN audit a ON a.seq = s.tail_seq AND a.session_id = s.session_id
              WHERE s.session_id = $1
             UNION ALL
             SELECT a.seq, a.kind, a.body, a.session_prev
               FROM walk w JOIN audit a ON a.seq = w.prev
              WHERE a.session_id = $1 AND w.prev < w.seq
         )
         SELECT seq, kind, body FROM walk ORDER BY seq",
        &[&session_id],
    )?;
    rows.iter()
        .map(|r| Ok((to_u64(col(r, 0)?), col(r, 1)?, col(r, 2)?)))
        .collect()
}

fn records_by_ref(db: &mut impl GenericClient, ref_id: &str) -> StoreResult<Vec<(u64, String, String)>> {
    let rows = db.query(
        "SELECT seq, kind, body FROM audit WHERE ref_id = $1 AND kind IN ('decision', 'result') ORDER BY seq",
        &[&ref_id],
    )?;
    rows.iter()
        .map(|r| Ok((to_u64(col(r, 0)?), col(r, 1)?, col(r, 2)?)))
        .collect()
}

/// The newest `$1` decisions of the whole log (a backwards scan of the
/// primary key) and their results, as `(seq, kind, body)`.
const RECENT_DECISIONS: &str = "WITH d AS (
        SELECT seq, kind, body, ref_id, session_id FROM audit WHERE kind = 'decision' ORDER BY seq DESC LIMIT $1
    )
    SELECT seq, kind, body FROM d
    UNION ALL
    SELECT r.seq, r.kind, r.body FROM d
      JOIN audit r ON r.ref_id = d.ref_id AND r.kind = 'result' AND r.session_id = d.session_id AND r.seq > d.seq";

/// One page of a session's log as `(seq, kind, body)`: walks the session's
/// links back from its last record (`$1`), reading only the link columns,
/// counting decisions newest first (`n`), stops at the page's oldest
/// decision (`$3`), and reads the page's decisions (`n > $4`) and their
/// results.
const LOG_PAGE: &str = "WITH RECURSIVE walk(seq, kind, prev, n) AS (
        SELECT seq, kind, session_prev, (kind = 'decision')::int::bigint FROM audit WHERE seq = $1 AND session_id = $2
        UNION ALL
        SELECT a.seq, a.kind, a.session_prev, w.n + (a.kind = 'decision')::int
          FROM walk w JOIN audit a ON a.seq = w.prev
         WHERE a.session_id = $2 AND w.prev < w.seq AND w.n < $3
    ), page AS (
        SELECT seq FROM walk WHERE kind = 'decision' AND n > $4
    )
    SELECT d.seq, d.kind, d.body FROM page p JOIN audit d ON d.seq = p.seq
    UNION ALL
    SELECT r.seq, r.kind, r.body FROM page p JOIN audit d ON d.seq = p.seq
      JOIN audit r ON r.ref_id = d.ref_id AND r.kind = 'result' AND r.session_id = $2 AND r.seq > d.seq";

fn records_from_rows(rows: &[Row]) -> StoreResult<Vec<(u64, String, String)>> {
    rows.iter()
        .map(|r| Ok((to_u64(col(r, 0)?), col(r, 1)?, col(r, 2)?)))
        .collect()
}

const SUMMARY_COLUMNS: &str = "session_id, start_time, end_time, total, allowed, denied, approved, agent_id, user_id";

fn summary_from_row(r: &Row) -> StoreResult<SessionSummary> {
    Ok(SessionSummary {
        session_id: col(r, 0)?,
        start_time: col(r, 1)?,
        end_time: col(r, 2)?,
        total_calls: to_u64(col(r, 3)?),
        allowed_calls: to_u64(col(r, 4)?),
        denied_calls: to_u64(col(r, 5)?),
        approved_calls: to_u64(col(r, 6)?),
        agent_id: col(r, 7)?,
        user_id: col(r, 8)?,
    })
}

const APPROVAL_SELECT: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM approvals a LEFT JOIN LATERAL (
        SELECT body, ts FROM audit WHERE ref_id = a.log_id AND kind = 'decision' ORDER BY seq LIMIT 1
    ) d ON TRUE"
);

/// The newest `$2` approvals no longer pending at `$1` (decided, expired,
/// or pending past their expiry), read before their decisions are joined.
const DECIDED_APPROVALS: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM (SELECT * FROM approvals WHERE state <> 'pending' OR expires_micros <= $1
          ORDER BY created_seq DESC LIMIT $2) a
    LEFT JOIN LATERAL (
        SELECT body, ts FROM audit WHERE ref_id = a.log_id AND kind = 'decision' ORDER BY seq LIMIT 1
    ) d ON TRUE
    ORDER BY a.created_seq DESC"
);

/// The records of one approval (`approval_*`, through the `ref_id` index), in order.
const APPROVAL_RECORDS: &str = "SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev
    FROM audit WHERE ref_id = $1 AND kind LIKE 'approval%' ORDER BY seq";

/// The records of several approvals, in order.
const APPROVALS_RECORDS: &str = "SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev
    FROM audit WHERE ref_id = ANY($1) AND kind LIKE 'approval%' ORDER BY seq";

fn approval_row_from(r: &Row) -> StoreResult<ApprovalRow> {
    Ok(ApprovalRow {
        id: col(r, 0)?,
        log_id: col(r, 1)?,
        session_id: col(r, 2)?,
        call_hash: col(r, 3)?,
        state: col(r, 4)?,
        expires_micros: col(r, 5)?,
        expires_at: col(r, 6)?,
        decided_by: col(r, 7)?,
        decision_reason: col(r, 8)?,
        decided_at: col(r, 9)?,
        released_log_id: col(r, 10)?,
        decision_body: col(r, 11)?,
        decision_ts: col(r, 12)?,
    })
}

/// Approvals as readers see them: each row held against its records, read
/// in one query (see [`trusted_row`]).
fn shown_approvals(
    db: &mut impl GenericClient,
    mac: &HmacSha256,
    rows: &[Row],
    now: Timestamp,
) -> StoreResult<Vec<Approval>> {
    let rows = rows.iter().map(approval_row_from).collect::<StoreResult<Vec<_>>>()?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut records: HashMap<String, Vec<AuditRow>> = HashMap::new();
    if !ids.is_empty() {
        for r in db.query(APPROVALS_RECORDS, &[&ids])? {
            let row = audit_row(&r)?;
            records
                .entry(row.ref_id.clone().unwrap_or_default())
                .or_default()
                .push(row);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let own = records.remove(&row.id).unwrap_or_default();
        let chained = chained_approval(mac, &row.id, &own);
        if let Some(row) = trusted_row(row, chained) {
            out.push(row.into_approval(now));
        }
    }
    Ok(out)
}

fn read_approval(
    db: &mut impl GenericClient,
    mac: &HmacSha256,
    id: &str,
    now: Timestamp,
) -> StoreResult<Option<Approval>> {
    let rows = db.query(&format!("{APPROVAL_SELECT} WHERE a.id = $1"), &[&id])?;
    Ok(shown_approvals(db, mac, &rows, now)?.into_iter().next())
}

/// Holds the log against its checkpoint file (logging every problem),
/// then starts witnessing its head. The database keeps its chain id and
/// the file that witnesses it in `meta`.
fn start_witness(client: &mut Client, witness: &Witness, mac: &HmacSha256, chain: &Chain) -> StoreResult<()> {
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
    let chain_id = meta("chain_id")?.unwrap_or_default();
    let witnessed_by = meta("checkpoint_file")?;
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
    let disputes = reconcile(&sink, mac, &log, |seq| hash_at(client, seq))?;
    witness.start(&chain_id, head, disputes)?;
    if witnessed_by.as_deref() != Some(shown.as_str()) {
        client.execute(
            "INSERT INTO meta(key, value) VALUES ('checkpoint_file', $1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            &[&shown],
        )?;
    }
    Ok(())
}

/// The hash of record `seq`, if there is one.
fn hash_at(client: &mut Client, seq: u64) -> StoreResult<Option<String>> {
    client
        .query_opt("SELECT hash FROM audit WHERE seq = $1", &[&to_i64(seq)])?
        .map(|r| col(&r, 0))
        .transpose()
}

fn audit_row(r: &Row) -> StoreResult<AuditRow> {
    Ok(AuditRow {
        seq: col(r, 0)?,
        kind: col(r, 1)?,
        ts: col(r, 2)?,
        session_id: col(r, 3)?,
        ref_id: col(r, 4)?,
        body: col(r, 5)?,
        prev_hash: col(r, 6)?,
        hash: col(r, 7)?,
        session_prev: col(r, 8)?,
    })
}

const AUDIT_SELECT: &str =
    "SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev FROM audit ORDER BY seq";

/// Streams the audit log in order, `FETCH_ROWS` at a time, inside one
/// snapshot; `each` returns `false` to stop. Returns the chain head the
/// writer recorded, read in the same snapshot.
fn scan_audit(
    client: &mut Client,
    mut each: impl FnMut(Vec<AuditRow>) -> bool,
    approvals: bool,
) -> StoreResult<(Option<String>, Vec<ApprovalRow>)> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let portal = tx.bind(AUDIT_SELECT, &[])?;
    loop {
        let rows = tx.query_portal(&portal, FETCH_ROWS)?;
        if rows.is_empty() {
            break;
        }
        let chunk = rows.iter().map(audit_row).collect::<StoreResult<Vec<_>>>()?;
        if !each(chunk) {
            break;
        }
    }
    let head = tx
        .query_opt("SELECT value FROM meta WHERE key = 'head'", &[])?
        .map(|r| col(&r, 0))
        .transpose()?;
    let rows = if approvals {
        tx.query(&format!("{APPROVAL_SELECT} ORDER BY a.created_seq"), &[])?
            .iter()
            .map(approval_row_from)
            .collect::<StoreResult<Vec<_>>>()?
    } else {
        Vec::new()
    };
    tx.commit()?;
    Ok((head, rows))
}

impl Store for PgStore {
    fn session_facts(&self, session_id: &str) -> StoreResult<FactsHandle> {
        if let Some(cell) = self.facts_cache().get(session_id) {
            return Ok(cell);
        }
        let id = session_id.to_string();
        let state = self.read(move |client| {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let records = session_records(&mut tx, &id)?;
            tx.commit()?;
            Ok(facts_from_records(records))
        })?;
        Ok(self.facts_cache().insert(session_id, state))
    }

    fn fresh_session_facts(&self, session_id: &str) -> FactsHandle {
        self.facts_cache().get_or_default(session_id)
    }

    fn cached_session_facts(&self, session_id: &str) -> Option<FactsHandle> {
        self.facts_cache().get(session_id)
    }

    fn record_decision(&self, decision: NewDecision) -> Ticket<DecisionReceipt> {
        self.queue.decision(decision)
    }

    fn record_result(&self, result: NewResult) -> Ticket<u64> {
        self.queue.result(result)
    }

    fn decide_approval(&self, decision: ApprovalDecision) -> Ticket<Approval> {
        self.queue.approval(decision)
    }

    fn expire_approvals(&self, now: Timestamp) -> Ticket<Vec<String>> {
        self.queue.expire(now)
    }

    fn record_policy(&self, policy: NewPolicyVersion) -> Ticket<u64> {
        self.queue.policy(policy)
    }

    fn flush(&self) -> Ticket<()> {
        self.queue.flush()
    }

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
        self.read(move |client| {
            let entries = entries_from_records(session_records(client, &id)?);
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
        self.read(move |client| {
            let mut check = ChainCheck::new(&mac);
            for seq in claims.seqs() {
                check.want(seq);
            }
            let scan = |rows: Vec<AuditRow>| {
                rows.iter().for_each(|row| check.feed(row));
                true
            };
            let (head, approvals) = scan_audit(client, scan, true)?;
            Ok(check.finish(head.as_deref(), &claims, approvals))
        })
    }

    fn export(&self, out: &mut dyn Write) -> StoreResult<u64> {
        // The rows come from a reader thread in chunks; they are written
        // here, where `out` lives. Stopping early drops the receiver, which
        // ends the scan.
        let (tx, rx) = sync_channel::<StoreResult<Vec<AuditRow>>>(4);
        let chunks: SyncSender<StoreResult<Vec<AuditRow>>> = tx.clone();
        let job: ReadJob = Box::new(move |client| {
            let scanned = client.and_then(|c| scan_audit(c, |rows| chunks.send(Ok(rows)).is_ok(), false));
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
