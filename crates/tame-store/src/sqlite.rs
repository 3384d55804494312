//! The embedded SQLite backend: a writer thread that group-commits records
//! and chains their hashes, a small pool of read connections, and the
//! in-memory session facts.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tame_engine::Action;

use crate::canonical::canonical_json;
use crate::facts::{FactsHandle, SessionCell, SessionState};
use crate::{
    Approval, ApprovalDecision, ApprovalState, ChainProblem, ChainProblemKind, DecisionReceipt, LogEntry, NewDecision,
    NewPolicyVersion, NewResult, PolicyVersion, SessionPage, SessionQuery, SessionSummary, Store, StoreError,
    StoreResult, Ticket, VerifyReport, format_timestamp,
};

type HmacSha256 = Hmac<Sha256>;

/// The hash that precedes the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A record is acknowledged once the WAL holding it is fsynced: it
    /// survives a power cut.
    #[default]
    Full,
    /// A record is acknowledged once committed to the WAL (in the OS page
    /// cache): it survives a crash of the process (SIGKILL), not
    /// necessarily a power cut.
    Normal,
}

/// Options of [`SqliteStore::open`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The HMAC key of the audit chain. `None`: read it from (or create it
    /// in) the file `<db>.secret` beside the database.
    pub secret: Option<Vec<u8>>,
    pub durability: Durability,
    /// Most records committed in one transaction.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            secret: None,
            durability: Durability::Full,
            max_batch: 4096,
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ts TEXT NOT NULL,
    session_id TEXT,
    ref_id TEXT,
    session_prev INTEGER,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ref ON audit(ref_id, seq);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    tail_seq INTEGER NOT NULL,
    total INTEGER NOT NULL,
    allowed INTEGER NOT NULL,
    denied INTEGER NOT NULL,
    approved INTEGER NOT NULL,
    agent_id TEXT,
    user_id TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_last ON sessions(last_seq);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    created_seq INTEGER NOT NULL,
    log_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    call_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_micros INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    decided_at TEXT,
    released_log_id TEXT
);
CREATE INDEX IF NOT EXISTS approvals_state ON approvals(state, expires_micros);
CREATE TABLE IF NOT EXISTS policy_versions (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    version TEXT NOT NULL,
    hash TEXT NOT NULL,
    origin TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

type Ack<T> = tokio::sync::oneshot::Sender<StoreResult<T>>;

enum Job {
    Decision(Box<NewDecision>, Ack<DecisionReceipt>),
    Result(NewResult, Ack<u64>),
    Approval(ApprovalDecision, Ack<Approval>),
    Expire(Timestamp, Ack<Vec<String>>),
    Policy(NewPolicyVersion, Ack<u64>),
    Flush(Ack<()>),
}

/// A job's outcome, sent once its batch is committed.
enum Done {
    Decision(Ack<DecisionReceipt>, StoreResult<DecisionReceipt>),
    Result(Ack<u64>, StoreResult<u64>),
    Approval(Ack<Approval>, Box<StoreResult<Approval>>),
    Expire(Ack<Vec<String>>, StoreResult<Vec<String>>),
    Policy(Ack<u64>, StoreResult<u64>),
    Flush(Ack<()>),
}

impl Done {
    /// Sends the outcome, or `failed` when the batch did not commit. A
    /// caller that stopped waiting is not an error.
    fn finish(self, failed: Option<&str>) {
        fn send<T>(ack: Ack<T>, r: StoreResult<T>, failed: Option<&str>) {
            let r = match failed {
                Some(msg) => Err(StoreError::Db(msg.to_string())),
                None => r,
            };
            let _ = ack.send(r);
        }
        match self {
            Done::Decision(a, r) => send(a, r, failed),
            Done::Result(a, r) => send(a, r, failed),
            Done::Approval(a, r) => send(a, *r, failed),
            Done::Expire(a, r) => send(a, r, failed),
            Done::Policy(a, r) => send(a, r, failed),
            Done::Flush(a) => send(a, Ok(()), failed),
        }
    }
}

/// The head of the chain (last sequence number and its hash) and, per
/// session, its last record: records of a session are linked through
/// `session_prev`, so a session's log is read without a session index
/// (random inserts into such an index dominated the write cost).
#[derive(Debug)]
struct Chain {
    seq: u64,
    hash: String,
    /// Last record of each session seen by this writer.
    tails: HashMap<String, u64>,
    /// Sessions with records in the current batch.
    touched: HashSet<String>,
}

/// The SQLite store. Cheap to share behind an `Arc`; dropping it drains
/// the writer's queue and joins the writer thread.
pub struct SqliteStore {
    path: PathBuf,
    sender: Option<Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    facts: Mutex<FactsCache>,
    mac: HmacSha256,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Reads the audit secret from `path` (hex), or creates a random 32-byte
/// one there (mode 0600) when the file does not exist.
pub fn load_or_create_secret(path: &Path) -> StoreResult<Vec<u8>> {
    let io_err = |e: std::io::Error| StoreError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = hex::decode(text.trim())
                .map_err(|e| StoreError::Secret(format!("`{}` is not hex: {e}", path.display())))?;
            if key.len() < 16 {
                return Err(StoreError::Secret(format!(
                    "`{}` holds {} bytes, at least 16 are needed",
                    path.display(),
                    key.len()
                )));
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| StoreError::Secret(format!("no randomness for a new secret: {e}")))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(path).map_err(io_err)?;
            file.write_all(hex::encode(&key).as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            Ok(key)
        }
        Err(e) => Err(io_err(e)),
    }
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(|e| StoreError::Db(format!("cannot open `{}`: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "cache_size", -32768)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its
    /// writer thread.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> StoreResult<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let key = match options.secret {
            Some(key) if key.len() >= 16 => key,
            Some(key) => {
                return Err(StoreError::Secret(format!(
                    "the configured secret has {} bytes, at least 16 are needed",
                    key.len()
                )));
            }
            None => {
                let mut secret_path = path.clone().into_os_string();
                secret_path.push(".secret");
                load_or_create_secret(Path::new(&secret_path))?
            }
        };
        let mac = HmacSha256::new_from_slice(&key).map_err(|e| StoreError::Secret(e.to_string()))?;

        let mut conn = open_connection(&path)?;
        // Commits only write the WAL; with `Full` durability the syncer
        // thread fsyncs it before anyone is told (see `Syncer`).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoint less often: hot pages are copied once per checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", 8192)?;
        conn.execute_batch(SCHEMA)?;
        let mut chain = Chain {
            seq: 0,
            hash: GENESIS.to_string(),
            tails: HashMap::new(),
            touched: HashSet::new(),
        };
        // Reads the chain head and summarizes what a crash left unsummarized.
        recover_summaries(&mut conn, &mut chain)?;
        let (sender, receiver) = channel();
        let syncer = match options.durability {
            Durability::Full => {
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                Some(Syncer::start(PathBuf::from(wal))?)
            }
            Durability::Normal => None,
        };
        let writer = Writer {
            conn,
            chain,
            mac: mac.clone(),
            max_batch: options.max_batch.max(1),
            syncer,
            pending: HashMap::new(),
            summarized_at: Instant::now(),
            stale: false,
        };
        let handle = std::thread::Builder::new()
            .name("tame-store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;

        Ok(SqliteStore {
            path,
            sender: Some(sender),
            writer: Some(handle),
            readers: Mutex::new(Vec::new()),
            facts: Mutex::new(FactsCache::default()),
            mac,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn submit<T>(&self, make: impl FnOnce(Ack<T>) -> Job) -> Ticket<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match &self.sender {
            Some(sender) if sender.send(make(tx)).is_ok() => Ticket::new(rx),
            _ => Ticket::ready(Err(StoreError::WriterGone)),
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_connection(&self.path)?,
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }

    fn cached_facts(&self, session_id: &str) -> Option<FactsHandle> {
        let cache = self.facts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.map.get(session_id).map(|cell| {
            cell.touch(now_secs());
            Arc::clone(cell)
        })
    }

    fn insert_facts(&self, session_id: &str, state: SessionState) -> FactsHandle {
        let mut cache = self.facts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = now_secs();
        if cache.map.len() >= cache.sweep_at {
            cache.sweep(now);
        }
        let cell = cache
            .map
            .entry(session_id.to_string())
            .or_insert_with(|| Arc::new(SessionCell::new(state)));
        cell.touch(now);
        Arc::clone(cell)
    }

    fn load_facts(&self, session_id: &str) -> StoreResult<SessionState> {
        self.with_reader(|conn| {
            let mut state = SessionState::default();
            for (_, kind, body) in session_records(conn, session_id)? {
                if kind == "result" {
                    // Labels the result revealed (records written before
                    // labels were stored have none).
                    let body = parse_body(&body);
                    let labels = body.get("labels").and_then(Value::as_array);
                    for label in labels.into_iter().flatten().filter_map(Value::as_str) {
                        state.add_label(label);
                    }
                    continue;
                }
                if kind != "decision" {
                    continue;
                }
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let allowed = body.get("decision").and_then(Value::as_str) == Some("allow");
                let tool = body.get("tool_name").and_then(Value::as_str);
                let at = body
                    .get("timestamp")
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<Timestamp>().ok());
                if let (true, Some(tool), Some(at)) = (allowed, tool, at) {
                    state.note_call(tool, at);
                }
            }
            Ok(state)
        })
    }
}

/// A session's records `(seq, kind, body)` in order, following the
/// `session_prev` links back from the session's last record. A read
/// transaction keeps the walk consistent while the writer goes on.
fn session_records(conn: &Connection, session_id: &str) -> StoreResult<Vec<(u64, String, String)>> {
    conn.execute_batch("BEGIN")?;
    let walk = (|| -> StoreResult<Vec<(u64, String, String)>> {
        let tail: Option<i64> = conn
            .prepare_cached("SELECT tail_seq FROM sessions WHERE session_id = ?1")?
            .query_row([session_id], |r| r.get(0))
            .optional()?;
        let mut out = Vec::new();
        let mut next = tail;
        let mut stmt = conn.prepare_cached("SELECT kind, body, session_prev, session_id FROM audit WHERE seq = ?1")?;
        while let Some(seq) = next {
            let row: Option<(String, String, Option<i64>, Option<String>)> = stmt
                .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            // A missing or foreign record (a damaged log) ends the walk;
            // `verify` names it.
            let Some((kind, body, prev, owner)) = row else { break };
            if owner.as_deref() != Some(session_id) {
                break;
            }
            out.push((u64::try_from(seq).unwrap_or(0), kind, body));
            // Links point strictly backwards, so the walk ends.
            next = prev.filter(|p| *p < seq);
        }
        out.reverse();
        Ok(out)
    })();
    let _ = conn.execute_batch("COMMIT");
    walk
}

/// Sessions idle this long (seconds) may leave memory; their facts are
/// read back from the log when they come back.
const FACTS_IDLE_SECS: i64 = 120;
/// Cache size at which the first sweep runs.
const FACTS_SWEEP_AT: usize = 50_000;

fn now_secs() -> i64 {
    Timestamp::now().as_second()
}

/// Session facts in memory, swept of idle sessions as it grows, so that
/// clients that open a session per call do not grow it without bound.
#[derive(Debug)]
struct FactsCache {
    map: HashMap<String, FactsHandle>,
    sweep_at: usize,
}

impl Default for FactsCache {
    fn default() -> Self {
        FactsCache {
            map: HashMap::new(),
            sweep_at: FACTS_SWEEP_AT,
        }
    }
}

impl FactsCache {
    /// Drops sessions nobody holds that were idle long enough for their
    /// last decision to be committed (so a reload sees it).
    fn sweep(&mut self, now: i64) {
        self.map
            .retain(|_, cell| Arc::strong_count(cell) > 1 || now - cell.last_used() < FACTS_IDLE_SECS);
        self.sweep_at = (self.map.len().saturating_mul(2)).max(FACTS_SWEEP_AT);
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

/// Whether a decision counts in the session's facts: only calls that were
/// let through (allowed, or released after approval) count as calls.
pub(crate) fn counts_as_call(action: Action) -> bool {
    action == Action::Allow
}

impl SessionState {
    /// Notes a decision in the facts: counts it when it let the call run.
    pub fn note_decision(&mut self, tool: &str, at: Timestamp, action: Action) {
        if counts_as_call(action) {
            self.note_call(tool, at);
        }
    }
}

// ---------------------------------------------------------------- writer

struct Writer {
    conn: Connection,
    chain: Chain,
    mac: HmacSha256,
    max_batch: usize,
    syncer: Option<Syncer>,
    /// Session summaries not yet written (see [`SUMMARY_INTERVAL`]).
    pending: HashMap<String, SessionDelta>,
    /// When the summaries were last written.
    summarized_at: Instant,
    /// Set when a batch failed: the in-memory tails and summaries may
    /// name rolled-back records and are rebuilt from the log first.
    stale: bool,
}

/// Session summaries (the `sessions` table: counts, last activity, the
/// session's last record) are derived from the audit log, and written at
/// most this often rather than in every batch: each batch touches a few
/// random sessions, and rewriting their pages in every commit was most of
/// the WAL written per decision. The audit records themselves are
/// committed (and synced) before anyone is answered, as always. Reads that
/// use the summaries write them first ([`Job::Flush`]), and after a crash
/// [`recover_summaries`] rebuilds them from the records after
/// `summaries_seq`.
const SUMMARY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// Summaries are also written once this many sessions are pending.
const SUMMARY_MAX_PENDING: usize = 4096;

/// Pipelined durability: the writer commits batch N+1 to the WAL while
/// this thread fsyncs the WAL for the batches committed before; a batch's
/// callers are answered only after an fsync that started after its commit.
/// (SQLite's `synchronous=FULL` would fsync inside every commit and stall
/// the writer for the whole disk flush.)
struct Syncer {
    sender: Option<Sender<Vec<Done>>>,
    handle: Option<JoinHandle<()>>,
    /// Batches handed over and not yet synced. The writer waits for it to
    /// reach zero before it commits again, so everything that arrives
    /// during an fsync goes into the next batch: one commit and one fsync
    /// per disk flush, instead of many small commits each writing the same
    /// hot pages to the WAL again.
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl Syncer {
    fn start(wal: PathBuf) -> StoreResult<Syncer> {
        let (sender, receiver) = channel::<Vec<Done>>();
        let in_flight = Arc::new((Mutex::new(0usize), Condvar::new()));
        let synced_count = in_flight.clone();
        let handle = std::thread::Builder::new()
            .name("tame-store-sync".into())
            .spawn(move || {
                let mut file: Option<std::fs::File> = None;
                while let Ok(first) = receiver.recv() {
                    let mut pending = vec![first];
                    while let Ok(more) = receiver.try_recv() {
                        pending.push(more);
                    }
                    let synced = match &file {
                        Some(f) => f.sync_data(),
                        None => std::fs::File::open(&wal).and_then(|f| {
                            let r = f.sync_data();
                            file = Some(f);
                            r
                        }),
                    };
                    let failed = synced
                        .err()
                        .map(|e| format!("cannot sync the audit log `{}`: {e}", wal.display()));
                    if let Some(msg) = &failed {
                        tracing::error!("{msg}");
                    }
                    let batches = pending.len();
                    for done in pending.into_iter().flatten() {
                        done.finish(failed.as_deref());
                    }
                    let (count, cv) = &*synced_count;
                    if let Ok(mut n) = count.lock() {
                        *n = n.saturating_sub(batches);
                    }
                    cv.notify_all();
                }
            })
            .map_err(|e| StoreError::Db(format!("cannot start the sync thread: {e}")))?;
        Ok(Syncer {
            sender: Some(sender),
            handle: Some(handle),
            in_flight,
        })
    }

    /// Blocks until every batch handed over is synced (returns at once if
    /// the sync thread is gone: its batches were answered with an error).
    fn wait_idle(&self) {
        let (count, cv) = &*self.in_flight;
        let Ok(mut n) = count.lock() else { return };
        while *n > 0 && self.handle.as_ref().is_some_and(|h| !h.is_finished()) {
            n = match cv.wait_timeout(n, std::time::Duration::from_millis(50)) {
                Ok((n, _)) => n,
                Err(_) => return,
            };
        }
    }

    /// Hands committed outcomes over; answers them here if the thread is gone.
    fn submit(&self, done: Vec<Done>) {
        if let Ok(mut n) = self.in_flight.0.lock() {
            *n += 1;
        }
        if let Some(sender) = &self.sender
            && let Err(std::sync::mpsc::SendError(done)) = sender.send(done)
        {
            done.into_iter()
                .for_each(|d| d.finish(Some("the audit sync thread has stopped")));
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn opt_str(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.to_string()))
}

fn micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

/// HMAC of one record: every field, length-prefixed (`None` distinct from
/// empty), then the previous record's hash.
fn record_mac(mac: &HmacSha256, prev_hash: &str, seq: u64, fields: [Option<&str>; 6]) -> String {
    let mut m = mac.clone();
    m.update(prev_hash.as_bytes());
    m.update(&seq.to_be_bytes());
    for field in fields {
        match field {
            Some(s) => {
                m.update(&(s.len() as u64).to_be_bytes());
                m.update(s.as_bytes());
            }
            None => m.update(&u64::MAX.to_be_bytes()),
        }
    }
    hex::encode(m.finalize().into_bytes())
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        let (mut batches, mut jobs) = (0u64, 0u64);
        loop {
            let first = if self.pending.is_empty() {
                match rx.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            } else {
                let left = SUMMARY_INTERVAL.saturating_sub(self.summarized_at.elapsed());
                match rx.recv_timeout(left) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        // Idle: write the pending summaries on their own.
                        self.commit_batch(Vec::new());
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            // Group commit: while the previous batch is being synced, the
            // jobs arriving meanwhile queue up and are committed together.
            if let Some(syncer) = &self.syncer {
                syncer.wait_idle();
            }
            let mut batch = Vec::with_capacity(64);
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batches += 1;
            jobs += batch.len() as u64;
            self.commit_batch(batch);
        }
        if !self.pending.is_empty() || self.stale {
            self.commit_batch(Vec::new());
        }
        // Answer everything in flight before the connection closes.
        drop(self.syncer.take());
        tracing::debug!(batches, jobs, "store writer drained and stopped");
    }

    /// Applies a batch in one transaction. A job that fails a check (an
    /// unknown log, a used approval) fails alone: checks come before any
    /// write. A database error fails the whole batch, which is rolled back.
    fn commit_batch(&mut self, batch: Vec<Job>) {
        if self.stale {
            match recover_summaries(&mut self.conn, &mut self.chain) {
                Ok(()) => {
                    self.stale = false;
                    self.pending.clear();
                    self.summarized_at = Instant::now();
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot rebuild the session summaries");
                    let msg = format!("the audit batch was not committed: {e}");
                    batch.into_iter().for_each(|j| j.skipped().finish(Some(&msg)));
                    return;
                }
            }
        }
        let saved = (self.chain.seq, self.chain.hash.clone());
        let summarize = batch.iter().any(|j| matches!(j, Job::Flush(_)))
            || self.pending.len() >= SUMMARY_MAX_PENDING
            || self.summarized_at.elapsed() >= SUMMARY_INTERVAL;
        let mut done = Vec::with_capacity(batch.len());
        let mut fatal: Option<String> = None;
        match self.conn.transaction() {
            Ok(tx) => {
                for job in batch {
                    if fatal.is_some() {
                        done.push(job.skipped());
                        continue;
                    }
                    let d = apply_job(&tx, &mut self.chain, &self.mac, &mut self.pending, job);
                    fatal = d.fatal_error();
                    done.push(d);
                }
                if fatal.is_none()
                    && let Err(e) = finish_batch(&tx, &self.chain, summarize.then_some(&mut self.pending))
                {
                    fatal = Some(e.to_string());
                }
                if fatal.is_none()
                    && let Err(e) = tx.commit()
                {
                    fatal = Some(e.to_string());
                }
                // On error the transaction is rolled back when dropped.
            }
            Err(e) => {
                fatal = Some(e.to_string());
                done.extend(batch.into_iter().map(Job::skipped));
            }
        }
        match fatal {
            None => {
                if summarize {
                    self.pending.clear();
                    self.chain.touched.clear();
                    self.summarized_at = Instant::now();
                }
                match &self.syncer {
                    Some(syncer) => syncer.submit(done),
                    None => done.into_iter().for_each(|d| d.finish(None)),
                }
            }
            Some(e) => {
                tracing::error!(error = %e, "audit batch failed to commit");
                (self.chain.seq, self.chain.hash) = saved;
                // The session tails and pending summaries may name
                // rolled-back records: rebuild them from the log.
                self.chain.tails.clear();
                self.chain.touched.clear();
                self.pending.clear();
                self.stale = true;
                let msg = format!("the audit batch was not committed: {e}");
                done.into_iter().for_each(|d| d.finish(Some(&msg)));
            }
        }
    }
}

/// What a batch adds to one session's summary row.
#[derive(Debug, Default)]
struct SessionDelta {
    start: String,
    end: String,
    last_seq: i64,
    total: i64,
    allowed: i64,
    denied: i64,
    approved: i64,
    agent_id: Option<String>,
    user_id: Option<String>,
}

impl SessionDelta {
    /// Counts one decision (`None`: an unreadable one, counted in the total only).
    fn note(&mut self, ts: &str, seq: i64, action: Option<Action>) {
        ts.clone_into(&mut self.end);
        self.last_seq = seq;
        self.total += 1;
        match action {
            Some(Action::Allow) => self.allowed += 1,
            Some(Action::Deny) => self.denied += 1,
            Some(Action::Approve) => self.approved += 1,
            None => {}
        }
    }
}

/// Writes the chain head and, when `sessions` is given, the pending
/// session summaries (marking the log as summarized up to the head).
fn finish_batch(
    tx: &Connection,
    chain: &Chain,
    sessions: Option<&mut HashMap<String, SessionDelta>>,
) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO meta(key, value) VALUES ('head', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([format!("{}:{}", chain.seq, chain.hash)])?;
    let Some(sessions) = sessions else { return Ok(()) };
    write_summaries(tx, chain, sessions)
}

/// Upserts the summaries of the sessions touched since the last write and
/// records how far the log is summarized.
fn write_summaries(tx: &Connection, chain: &Chain, sessions: &HashMap<String, SessionDelta>) -> StoreResult<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO sessions(session_id, start_time, end_time, last_seq, tail_seq, total, allowed, denied, approved, agent_id, user_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT(session_id) DO UPDATE SET
           end_time = CASE WHEN excluded.total > 0 THEN excluded.end_time ELSE end_time END,
           last_seq = CASE WHEN excluded.total > 0 THEN excluded.last_seq ELSE last_seq END,
           tail_seq = excluded.tail_seq,
           total = total + excluded.total, allowed = allowed + excluded.allowed, denied = denied + excluded.denied,
           approved = approved + excluded.approved,
           agent_id = COALESCE(agent_id, excluded.agent_id), user_id = COALESCE(user_id, excluded.user_id)",
    )?;
    let none = SessionDelta::default();
    for id in &chain.touched {
        let Some(&tail) = chain.tails.get(id) else { continue };
        let d = sessions.get(id).unwrap_or(&none);
        upsert.execute(params![
            id,
            d.start,
            d.end,
            d.last_seq,
            i64::try_from(tail).unwrap_or(i64::MAX),
            d.total,
            d.allowed,
            d.denied,
            d.approved,
            d.agent_id,
            d.user_id
        ])?;
    }
    tx.prepare_cached(
        "INSERT INTO meta(key, value) VALUES ('summaries_seq', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([chain.seq.to_string()])?;
    Ok(())
}

/// Brings the session summaries up to the end of the log: reads the
/// records after `summaries_seq` (those a crash left unsummarized, or
/// a failed batch's predecessors), and writes their summaries. Also
/// reloads the chain head and leaves the session tails of those records
/// in `chain`. A database summarized in every batch (before
/// `summaries_seq` existed) is up to date.
fn recover_summaries(conn: &mut Connection, chain: &mut Chain) -> StoreResult<()> {
    let tx = conn.transaction()?;
    let head: Option<(i64, String)> = tx
        .query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    (chain.seq, chain.hash) = match head {
        Some((seq, hash)) => (u64::try_from(seq).unwrap_or(0), hash),
        None => (0, GENESIS.to_string()),
    };
    chain.tails.clear();
    chain.touched.clear();
    let from: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = 'summaries_seq'", [], |r| r.get(0))
        .optional()?;
    let from = match from {
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| StoreError::Db(format!("meta `summaries_seq` is not a number: `{v}`")))?,
        None => i64::try_from(chain.seq).unwrap_or(i64::MAX),
    };
    let mut pending: HashMap<String, SessionDelta> = HashMap::new();
    let mut rows = 0u64;
    {
        let mut stmt = tx.prepare("SELECT seq, kind, ts, session_id, body FROM audit WHERE seq > ?1 ORDER BY seq")?;
        let mut it = stmt.query([from])?;
        while let Some(row) = it.next()? {
            let seq: i64 = row.get(0)?;
            let Some(session_id) = row.get::<_, Option<String>>(3)? else { continue };
            rows += 1;
            chain.tails.insert(session_id.clone(), u64::try_from(seq).unwrap_or(0));
            chain.touched.insert(session_id.clone());
            if row.get_ref(1)?.as_str().ok() != Some("decision") {
                continue;
            }
            let ts: String = row.get(2)?;
            let body = parse_body(&row.get::<_, String>(4)?);
            let delta = pending.entry(session_id).or_insert_with(|| SessionDelta {
                start: ts.clone(),
                ..SessionDelta::default()
            });
            let action = body.get("decision").and_then(|v| Action::deserialize(v).ok());
            delta.note(&ts, seq, action);
            if delta.agent_id.is_none() {
                delta.agent_id = s(&body, "agent_id");
            }
            if delta.user_id.is_none() {
                delta.user_id = s(&body, "user_id");
            }
        }
    }
    write_summaries(&tx, chain, &pending)?;
    tx.commit()?;
    chain.touched.clear();
    if rows > 0 {
        tracing::info!(records = rows, "session summaries rebuilt from the audit log");
    }
    Ok(())
}

impl Job {
    /// The outcome of a job that was not applied (its batch failed).
    fn skipped(self) -> Done {
        fn e<T>() -> StoreResult<T> {
            Err(StoreError::Db("not applied".into()))
        }
        match self {
            Job::Decision(_, a) => Done::Decision(a, e()),
            Job::Result(_, a) => Done::Result(a, e()),
            Job::Approval(_, a) => Done::Approval(a, Box::new(e())),
            Job::Expire(_, a) => Done::Expire(a, e()),
            Job::Policy(_, a) => Done::Policy(a, e()),
            Job::Flush(a) => Done::Flush(a),
        }
    }
}

impl Done {
    /// A database error, which fails the whole batch.
    fn fatal_error(&self) -> Option<String> {
        fn db<T>(r: &StoreResult<T>) -> Option<String> {
            match r {
                Err(e @ (StoreError::Db(_) | StoreError::Io { .. })) => Some(e.to_string()),
                _ => None,
            }
        }
        match self {
            Done::Decision(_, r) => db(r),
            Done::Result(_, r) => db(r),
            Done::Approval(_, r) => db(r),
            Done::Expire(_, r) => db(r),
            Done::Policy(_, r) => db(r),
            Done::Flush(_) => None,
        }
    }
}

/// Runs one job. Checks come before writes, so a job failing a check
/// leaves nothing behind.
fn apply_job(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    sessions: &mut HashMap<String, SessionDelta>,
    job: Job,
) -> Done {
    match job {
        Job::Decision(d, ack) => Done::Decision(ack, write_decision(tx, chain, mac, sessions, *d)),
        Job::Result(r, ack) => Done::Result(ack, write_result(tx, chain, mac, &r)),
        Job::Approval(a, ack) => Done::Approval(ack, Box::new(write_approval_decision(tx, chain, mac, &a))),
        Job::Expire(now, ack) => Done::Expire(ack, write_expiry(tx, chain, mac, now)),
        Job::Policy(p, ack) => Done::Policy(ack, write_policy(tx, chain, mac, &p)),
        Job::Flush(ack) => Done::Flush(ack),
    }
}

#[allow(clippy::too_many_arguments)]
fn append(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    kind: &str,
    ts: &str,
    session_id: Option<&str>,
    ref_id: Option<&str>,
    body: &Value,
) -> StoreResult<u64> {
    let seq = chain.seq.saturating_add(1);
    let body = canonical_json(body);
    let session_prev = match session_id {
        Some(sid) => match chain.tails.get(sid) {
            Some(&prev) => Some(prev),
            None => tx
                .prepare_cached("SELECT tail_seq FROM sessions WHERE session_id = ?1")?
                .query_row([sid], |r| r.get::<_, i64>(0))
                .optional()?
                .and_then(|p| u64::try_from(p).ok()),
        },
        None => None,
    };
    let prev_text = session_prev.map(|p| p.to_string());
    let hash = record_mac(
        mac,
        &chain.hash,
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
    tx.prepare_cached(
        "INSERT INTO audit(seq, kind, ts, session_id, ref_id, session_prev, body, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        i64::try_from(seq).unwrap_or(i64::MAX),
        kind,
        ts,
        session_id,
        ref_id,
        session_prev.and_then(|p| i64::try_from(p).ok()),
        body,
        chain.hash,
        hash
    ])?;
    chain.seq = seq;
    chain.hash = hash;
    if let Some(sid) = session_id {
        chain.tails.insert(sid.to_string(), seq);
        if !chain.touched.contains(sid) {
            chain.touched.insert(sid.to_string());
        }
    }
    Ok(seq)
}

fn write_decision(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    sessions: &mut HashMap<String, SessionDelta>,
    mut d: NewDecision,
) -> StoreResult<DecisionReceipt> {
    let ts = format_timestamp(d.timestamp);
    if let Some(release) = &d.release_of {
        let row: Option<(String, String, Option<String>)> = tx
            .prepare_cached("SELECT state, call_hash, released_log_id FROM approvals WHERE id = ?1")?
            .query_row([&release.approval_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((state, call_hash, released)) = row else {
            return Err(StoreError::ApprovalNotFound(release.approval_id.clone()));
        };
        if released.is_some() {
            return Err(StoreError::ApprovalUsed(release.approval_id.clone()));
        }
        if state != "approved" {
            return Err(StoreError::ApprovalState {
                id: release.approval_id.clone(),
                state: ApprovalState::parse(&state).unwrap_or(ApprovalState::Pending),
                expected: "approved",
            });
        }
        if call_hash != release.call_hash {
            return Err(StoreError::ApprovalMismatch(release.approval_id.clone()));
        }
        tx.prepare_cached("UPDATE approvals SET released_log_id = ?1 WHERE id = ?2")?
            .execute(params![d.log_id, release.approval_id])?;
    }
    // Built field by field so the arguments and metadata move in uncopied.
    let mut fields = Map::new();
    fields.insert("log_id".into(), Value::String(d.log_id.clone()));
    fields.insert("session_id".into(), Value::String(d.session_id.clone()));
    fields.insert("timestamp".into(), Value::String(ts.clone()));
    fields.insert("tool_name".into(), Value::String(std::mem::take(&mut d.tool_name)));
    fields.insert("tool_args".into(), std::mem::take(&mut d.tool_args));
    fields.insert("agent_id".into(), opt_str(d.agent_id.as_deref()));
    fields.insert("user_id".into(), opt_str(d.user_id.as_deref()));
    fields.insert("metadata".into(), std::mem::take(&mut d.metadata));
    fields.insert("decision".into(), Value::String(d.decision.as_str().into()));
    fields.insert("rule_name".into(), opt_str(d.rule_name.as_deref()));
    fields.insert("reason".into(), Value::String(std::mem::take(&mut d.reason)));
    fields.insert("policy_version".into(), Value::String(d.policy_version.clone()));
    fields.insert(
        "approval_id".into(),
        opt_str(d.new_approval.as_ref().map(|a| a.id.as_str())),
    );
    fields.insert(
        "released_by".into(),
        opt_str(d.release_of.as_ref().map(|r| r.approval_id.as_str())),
    );
    let body = Value::Object(fields);
    let seq = append(
        tx,
        chain,
        mac,
        "decision",
        &ts,
        Some(&d.session_id),
        Some(&d.log_id),
        &body,
    )?;
    let delta = sessions.entry(d.session_id.clone()).or_insert_with(|| SessionDelta {
        start: ts.clone(),
        ..SessionDelta::default()
    });
    delta.note(&ts, i64::try_from(seq).unwrap_or(i64::MAX), Some(d.decision));
    if delta.agent_id.is_none() {
        delta.agent_id.clone_from(&d.agent_id);
    }
    if delta.user_id.is_none() {
        delta.user_id.clone_from(&d.user_id);
    }
    if let Some(approval) = &d.new_approval {
        let expires_at = format_timestamp(approval.expires_at);
        let body = json!({
            "approval_id": approval.id,
            "log_id": d.log_id,
            "session_id": d.session_id,
            "call_hash": approval.call_hash,
            "policy_version": d.policy_version,
            "expires_at": expires_at,
        });
        let created = append(
            tx,
            chain,
            mac,
            "approval_created",
            &ts,
            Some(&d.session_id),
            Some(&approval.id),
            &body,
        )?;
        tx.prepare_cached(
            "INSERT INTO approvals(id, created_seq, log_id, session_id, call_hash, state, expires_micros, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)",
        )?
        .execute(params![
            approval.id,
            i64::try_from(created).unwrap_or(i64::MAX),
            d.log_id,
            d.session_id,
            approval.call_hash,
            micros(approval.expires_at),
            expires_at
        ])?;
    }
    Ok(DecisionReceipt { seq })
}

fn write_result(tx: &Connection, chain: &mut Chain, mac: &HmacSha256, r: &NewResult) -> StoreResult<u64> {
    let owner: Option<Option<String>> = tx
        .prepare_cached("SELECT session_id FROM audit WHERE ref_id = ?1 AND kind = 'decision' LIMIT 1")?
        .query_row([&r.log_id], |row| row.get(0))
        .optional()?;
    match owner {
        None => return Err(StoreError::LogNotFound(r.log_id.clone())),
        Some(owner) if owner.as_deref() != Some(r.session_id.as_str()) => {
            return Err(StoreError::SessionMismatch {
                log_id: r.log_id.clone(),
                session_id: r.session_id.clone(),
            });
        }
        Some(_) => {}
    }
    let ts = format_timestamp(r.timestamp);
    let mut body = json!({
        "log_id": r.log_id,
        "session_id": r.session_id,
        "timestamp": ts,
        "result": r.result,
    });
    // The labels are part of the chained body: an edit to them breaks the
    // record's HMAC like any other field. Omitted when there are none.
    if !r.labels.is_empty()
        && let Some(fields) = body.as_object_mut()
    {
        fields.insert("labels".into(), json!(r.labels));
    }
    append(
        tx,
        chain,
        mac,
        "result",
        &ts,
        Some(&r.session_id),
        Some(&r.log_id),
        &body,
    )
}

fn write_approval_decision(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    a: &ApprovalDecision,
) -> StoreResult<Approval> {
    let row: Option<(String, i64)> = tx
        .prepare_cached("SELECT state, expires_micros FROM approvals WHERE id = ?1")?
        .query_row([&a.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((state, expires)) = row else {
        return Err(StoreError::ApprovalNotFound(a.id.clone()));
    };
    let state = ApprovalState::parse(&state).unwrap_or(ApprovalState::Expired);
    let effective = if state == ApprovalState::Pending && expires <= micros(a.at) {
        ApprovalState::Expired
    } else {
        state
    };
    if effective != ApprovalState::Pending {
        return Err(StoreError::ApprovalState {
            id: a.id.clone(),
            state: effective,
            expected: "pending",
        });
    }
    let new_state = if a.approve {
        ApprovalState::Approved
    } else {
        ApprovalState::Rejected
    };
    let ts = format_timestamp(a.at);
    let session: Option<String> = tx
        .prepare_cached("SELECT session_id FROM approvals WHERE id = ?1")?
        .query_row([&a.id], |r| r.get(0))
        .optional()?;
    let body = json!({
        "approval_id": a.id,
        "state": new_state.as_str(),
        "by": opt_str(a.by.as_deref()),
        "reason": opt_str(a.reason.as_deref()),
        "at": ts,
    });
    append(
        tx,
        chain,
        mac,
        "approval_decided",
        &ts,
        session.as_deref(),
        Some(&a.id),
        &body,
    )?;
    tx.prepare_cached(
        "UPDATE approvals SET state = ?1, decided_by = ?2, decision_reason = ?3, decided_at = ?4 WHERE id = ?5",
    )?
    .execute(params![new_state.as_str(), a.by, a.reason, ts, a.id])?;
    read_approval(tx, &a.id, a.at)?.ok_or_else(|| StoreError::ApprovalNotFound(a.id.clone()))
}

fn write_expiry(tx: &Connection, chain: &mut Chain, mac: &HmacSha256, now: Timestamp) -> StoreResult<Vec<String>> {
    let due: Vec<(String, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, session_id FROM approvals WHERE state = 'pending' AND expires_micros <= ?1 ORDER BY created_seq",
        )?;
        let rows = stmt.query_map([micros(now)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let ts = format_timestamp(now);
    for (id, session) in &due {
        let body = json!({"approval_id": id, "state": "expired", "at": ts});
        append(tx, chain, mac, "approval_expired", &ts, Some(session), Some(id), &body)?;
        tx.prepare_cached("UPDATE approvals SET state = 'expired', decided_at = ?1 WHERE id = ?2")?
            .execute(params![ts, id])?;
    }
    Ok(due.into_iter().map(|(id, _)| id).collect())
}

fn write_policy(tx: &Connection, chain: &mut Chain, mac: &HmacSha256, p: &NewPolicyVersion) -> StoreResult<u64> {
    let ts = format_timestamp(p.loaded_at);
    let body = json!({"version": p.version, "hash": p.hash, "origin": p.origin, "loaded_at": ts});
    let seq = append(tx, chain, mac, "policy_loaded", &ts, None, Some(&p.hash), &body)?;
    tx.prepare_cached(
        "INSERT INTO policy_versions(seq, version, hash, origin, loaded_at, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        i64::try_from(seq).unwrap_or(i64::MAX),
        p.version,
        p.hash,
        p.origin,
        ts,
        p.source
    ])?;
    Ok(u64::try_from(tx.last_insert_rowid()).unwrap_or(0))
}

// ---------------------------------------------------------------- reads

fn parse_body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn entry_from_decision(seq: u64, body: &Value) -> LogEntry {
    let decision = match body.get("decision").and_then(Value::as_str) {
        Some("allow") => Action::Allow,
        Some("approve") => Action::Approve,
        _ => Action::Deny,
    };
    LogEntry {
        id: s(body, "log_id").unwrap_or_default(),
        session_id: s(body, "session_id").unwrap_or_default(),
        timestamp: s(body, "timestamp").unwrap_or_default(),
        tool_name: s(body, "tool_name").unwrap_or_default(),
        tool_args: body.get("tool_args").cloned().unwrap_or(Value::Null),
        tool_result: None,
        policy_version: s(body, "policy_version").unwrap_or_default(),
        policy_decision: decision,
        policy_rule: s(body, "rule_name"),
        reason: s(body, "reason").unwrap_or_default(),
        execution_status: None,
        execution_duration_ms: None,
        error_message: None,
        agent_id: s(body, "agent_id"),
        user_id: s(body, "user_id"),
        metadata: body.get("metadata").cloned().unwrap_or(Value::Null),
        approval_id: s(body, "approval_id"),
        seq,
    }
}

fn apply_result(entry: &mut LogEntry, body: &Value) {
    let result = body.get("result").cloned().unwrap_or(Value::Null);
    entry.execution_status = s(&result, "status");
    entry.execution_duration_ms = result
        .get("duration_ms")
        .or_else(|| result.get("execution_time_ms"))
        .and_then(Value::as_f64);
    entry.error_message = s(&result, "error_message");
    entry.tool_result = Some(result);
}

fn entries_from_records(records: Vec<(u64, String, String)>) -> Vec<LogEntry> {
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (seq, kind, body) in records {
        let body = parse_body(&body);
        if kind == "decision" {
            let entry = entry_from_decision(seq, &body);
            index.insert(entry.id.clone(), entries.len());
            entries.push(entry);
        } else if let Some(entry) = s(&body, "log_id")
            .and_then(|id| index.get(&id).copied())
            .and_then(|i| entries.get_mut(i))
        {
            apply_result(entry, &body);
        }
    }
    entries
}

fn records_by_ref(conn: &Connection, ref_id: &str) -> StoreResult<Vec<(u64, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, kind, body FROM audit WHERE ref_id = ?1 AND kind IN ('decision', 'result') ORDER BY seq",
    )?;
    let rows = stmt.query_map([ref_id], |r| {
        Ok((
            u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn summary_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionSummary> {
    let count = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.try_into().unwrap_or(0)) };
    Ok(SessionSummary {
        session_id: r.get(0)?,
        start_time: r.get(1)?,
        end_time: r.get(2)?,
        total_calls: count(3)?,
        allowed_calls: count(4)?,
        denied_calls: count(5)?,
        approved_calls: count(6)?,
        agent_id: r.get(7)?,
        user_id: r.get(8)?,
    })
}

const SUMMARY_COLUMNS: &str = "session_id, start_time, end_time, total, allowed, denied, approved, agent_id, user_id";

fn read_approval(conn: &Connection, id: &str, now: Timestamp) -> StoreResult<Option<Approval>> {
    let mut stmt = conn.prepare_cached(&format!("{APPROVAL_SELECT} WHERE a.id = ?1"))?;
    let row = stmt.query_row([id], |r| approval_from_row(r, now)).optional()?;
    Ok(row)
}

const APPROVAL_SELECT: &str = "SELECT a.id, a.log_id, a.session_id, a.call_hash, a.state, a.expires_micros,
    a.expires_at, a.decided_by, a.decision_reason, a.decided_at, a.released_log_id, d.body, d.ts
    FROM approvals a LEFT JOIN audit d ON d.ref_id = a.log_id AND d.kind = 'decision'";

fn approval_from_row(r: &rusqlite::Row<'_>, now: Timestamp) -> rusqlite::Result<Approval> {
    let state: String = r.get(4)?;
    let expires: i64 = r.get(5)?;
    let mut state = ApprovalState::parse(&state).unwrap_or(ApprovalState::Expired);
    if state == ApprovalState::Pending && expires <= micros(now) {
        state = ApprovalState::Expired;
    }
    let body = r
        .get::<_, Option<String>>(11)?
        .map(|b| parse_body(&b))
        .unwrap_or(Value::Null);
    Ok(Approval {
        approval_id: r.get(0)?,
        log_id: r.get(1)?,
        session_id: r.get(2)?,
        tool_name: s(&body, "tool_name").unwrap_or_default(),
        tool_args: body.get("tool_args").cloned().unwrap_or(Value::Null),
        agent_id: s(&body, "agent_id"),
        user_id: s(&body, "user_id"),
        call_hash: r.get(3)?,
        policy_version: s(&body, "policy_version").unwrap_or_default(),
        rule_name: s(&body, "rule_name"),
        reason: s(&body, "reason").unwrap_or_default(),
        state,
        decided_by: r.get(7)?,
        decision_reason: r.get(8)?,
        created_at: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
        decided_at: r.get(9)?,
        expires_at: r.get(6)?,
        released_log_id: r.get(10)?,
    })
}

impl Store for SqliteStore {
    fn session_facts(&self, session_id: &str) -> StoreResult<FactsHandle> {
        if let Some(cell) = self.cached_facts(session_id) {
            return Ok(cell);
        }
        let stored = self.with_reader(|conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM sessions WHERE session_id = ?1")?
                .exists([session_id])?)
        })?;
        let state = if stored {
            self.load_facts(session_id)?
        } else {
            SessionState::default()
        };
        Ok(self.insert_facts(session_id, state))
    }

    fn fresh_session_facts(&self, session_id: &str) -> FactsHandle {
        match self.cached_facts(session_id) {
            Some(cell) => cell,
            None => self.insert_facts(session_id, SessionState::default()),
        }
    }

    fn record_decision(&self, decision: NewDecision) -> Ticket<DecisionReceipt> {
        self.submit(|ack| Job::Decision(Box::new(decision), ack))
    }

    fn record_result(&self, result: NewResult) -> Ticket<u64> {
        self.submit(|ack| Job::Result(result, ack))
    }

    fn decide_approval(&self, decision: ApprovalDecision) -> Ticket<Approval> {
        self.submit(|ack| Job::Approval(decision, ack))
    }

    fn expire_approvals(&self, now: Timestamp) -> Ticket<Vec<String>> {
        self.submit(|ack| Job::Expire(now, ack))
    }

    fn record_policy(&self, policy: NewPolicyVersion) -> Ticket<u64> {
        self.submit(|ack| Job::Policy(policy, ack))
    }

    fn flush(&self) -> Ticket<()> {
        self.submit(Job::Flush)
    }

    fn sessions(&self, query: &SessionQuery) -> StoreResult<SessionPage> {
        self.with_reader(|conn| {
            let page = query.page.max(1);
            let size = query.page_size.clamp(1, 1000);
            let filter = "WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR user_id = ?2)";
            let total: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM sessions {filter}"))?
                .query_row(params![query.agent_id, query.user_id], |r| r.get(0))?;
            let offset = i64::try_from((page - 1).saturating_mul(size)).unwrap_or(i64::MAX);
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS} FROM sessions {filter} ORDER BY last_seq DESC LIMIT ?3 OFFSET ?4"
            ))?;
            let rows = stmt.query_map(
                params![
                    query.agent_id,
                    query.user_id,
                    i64::try_from(size).unwrap_or(1000),
                    offset
                ],
                summary_from_row,
            )?;
            Ok(SessionPage {
                sessions: rows.collect::<Result<_, _>>()?,
                total_count: u64::try_from(total).unwrap_or(0),
            })
        })
    }

    fn session_summary(&self, session_id: &str) -> StoreResult<Option<SessionSummary>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {SUMMARY_COLUMNS} FROM sessions WHERE session_id = ?1"))?
                .query_row([session_id], summary_from_row)
                .optional()?)
        })
    }

    fn session_log(&self, session_id: &str) -> StoreResult<Option<Vec<LogEntry>>> {
        self.with_reader(|conn| {
            let entries = entries_from_records(session_records(conn, session_id)?);
            Ok(if entries.is_empty() { None } else { Some(entries) })
        })
    }

    fn log_entry(&self, log_id: &str) -> StoreResult<Option<LogEntry>> {
        self.with_reader(|conn| {
            let entries = entries_from_records(records_by_ref(conn, log_id)?);
            Ok(entries.into_iter().next())
        })
    }

    fn approvals(&self, state: Option<ApprovalState>, now: Timestamp) -> StoreResult<Vec<Approval>> {
        self.with_reader(|conn| {
            // Narrow in SQL (the state index); a pending approval past its
            // expiry reads as expired, so those two overlap.
            let filter = match state {
                None => "",
                Some(ApprovalState::Pending) | Some(ApprovalState::Expired) => {
                    "WHERE a.state IN ('pending', 'expired')"
                }
                Some(ApprovalState::Approved) => "WHERE a.state = 'approved'",
                Some(ApprovalState::Rejected) => "WHERE a.state = 'rejected'",
            };
            let mut stmt = conn.prepare_cached(&format!("{APPROVAL_SELECT} {filter} ORDER BY a.created_seq DESC"))?;
            let rows = stmt.query_map([], |r| approval_from_row(r, now))?;
            let mut out = Vec::new();
            for row in rows {
                let approval = row?;
                if state.is_none_or(|s| s == approval.state) {
                    out.push(approval);
                }
            }
            Ok(out)
        })
    }

    fn approval(&self, id: &str, now: Timestamp) -> StoreResult<Option<Approval>> {
        self.with_reader(|conn| read_approval(conn, id, now))
    }

    fn policy_versions(&self) -> StoreResult<Vec<PolicyVersion>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, version, hash, origin, loaded_at, source FROM policy_versions ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(PolicyVersion {
                    id: r.get::<_, i64>(0)?.try_into().unwrap_or(0),
                    version: r.get(1)?,
                    hash: r.get(2)?,
                    origin: r.get(3)?,
                    loaded_at: r.get(4)?,
                    source: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn verify(&self) -> StoreResult<VerifyReport> {
        self.with_reader(|conn| {
            // One read transaction: a consistent snapshot while the writer goes on.
            conn.execute_batch("BEGIN")?;
            let report = verify_chain(conn, &self.mac);
            let _ = conn.execute_batch("COMMIT");
            report
        })
    }

    fn export(&self, out: &mut dyn Write) -> StoreResult<u64> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(
                "SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev FROM audit ORDER BY seq",
            )?;
            let mut rows = stmt.query([])?;
            let mut n = 0u64;
            while let Some(r) = rows.next()? {
                let body: String = r.get(5)?;
                let mut line = Map::new();
                line.insert("seq".into(), json!(r.get::<_, i64>(0)?));
                line.insert("kind".into(), json!(r.get::<_, String>(1)?));
                line.insert("ts".into(), json!(r.get::<_, String>(2)?));
                line.insert("session_id".into(), json!(r.get::<_, Option<String>>(3)?));
                line.insert("ref_id".into(), json!(r.get::<_, Option<String>>(4)?));
                line.insert("session_prev".into(), json!(r.get::<_, Option<i64>>(8)?));
                line.insert(
                    "record".into(),
                    serde_json::from_str(&body).unwrap_or(Value::String(body)),
                );
                line.insert("prev_hash".into(), json!(r.get::<_, String>(6)?));
                line.insert("hash".into(), json!(r.get::<_, String>(7)?));
                let text = canonical_json(&Value::Object(line));
                let io = |e: std::io::Error| StoreError::Io {
                    path: "audit export".into(),
                    message: e.to_string(),
                };
                out.write_all(text.as_bytes()).map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
                n += 1;
            }
            Ok(n)
        })
    }
}

fn verify_chain(conn: &Connection, mac: &HmacSha256) -> StoreResult<VerifyReport> {
    let mut stmt = conn.prepare(
        "SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev FROM audit ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_string();
    let mut records = 0u64;
    let problem = |kind, seq, ref_id: Option<String>, message: String| ChainProblem {
        kind,
        seq,
        ref_id,
        message,
    };
    let mut first_problem = None;
    while let Some(r) = rows.next()? {
        let seq = u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0);
        let kind: String = r.get(1)?;
        let ts: String = r.get(2)?;
        let session: Option<String> = r.get(3)?;
        let ref_id: Option<String> = r.get(4)?;
        let body: String = r.get(5)?;
        let prev_hash: String = r.get(6)?;
        let hash: String = r.get(7)?;
        let session_prev = r.get::<_, Option<i64>>(8)?.map(|p| p.to_string());
        records += 1;
        if seq != expected_seq {
            first_problem = Some(problem(
                ChainProblemKind::Missing,
                expected_seq,
                None,
                if seq == expected_seq + 1 {
                    format!("record {expected_seq} is missing (deleted)")
                } else {
                    format!(
                        "records {expected_seq} to {} are missing (deleted)",
                        seq.saturating_sub(1)
                    )
                },
            ));
            break;
        }
        let computed = record_mac(
            mac,
            &prev,
            seq,
            [
                Some(&kind),
                Some(&ts),
                session.as_deref(),
                ref_id.as_deref(),
                session_prev.as_deref(),
                Some(&body),
            ],
        );
        if prev_hash != prev || computed != hash {
            let what = ref_id
                .as_deref()
                .map(|r| format!(" ({kind} `{r}`)"))
                .unwrap_or_default();
            first_problem = Some(problem(
                ChainProblemKind::Edited,
                seq,
                ref_id.clone(),
                format!("record {seq}{what} was edited: its hash does not match its content"),
            ));
            break;
        }
        prev = hash;
        expected_seq = seq + 1;
    }
    if first_problem.is_none() {
        let head: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'head'", [], |r| r.get(0))
            .optional()?;
        if let Some(head) = head {
            let (head_seq, head_hash) = head.split_once(':').unwrap_or(("0", ""));
            let head_seq: u64 = head_seq.parse().unwrap_or(0);
            let last = expected_seq - 1;
            if head_seq > last {
                first_problem = Some(problem(
                    ChainProblemKind::Truncated,
                    last + 1,
                    None,
                    format!(
                        "records {} to {head_seq} at the end of the log are missing (deleted)",
                        last + 1
                    ),
                ));
            } else if head_seq == last && head_hash != prev && last > 0 {
                first_problem = Some(problem(
                    ChainProblemKind::Edited,
                    last,
                    None,
                    format!("record {last} does not match the recorded head of the chain"),
                ));
            }
        }
    }
    Ok(VerifyReport {
        valid: first_problem.is_none(),
        records,
        head_hash: (records > 0).then_some(prev),
        first_problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_drops_idle_unheld_sessions_only() {
        let mut cache = FactsCache::default();
        let held = Arc::new(SessionCell::new(SessionState::default()));
        cache.map.insert("held".into(), Arc::clone(&held));
        let idle = Arc::new(SessionCell::new(SessionState::default()));
        idle.touch(1_000);
        cache.map.insert("idle".into(), idle);
        let recent = Arc::new(SessionCell::new(SessionState::default()));
        recent.touch(1_000 + FACTS_IDLE_SECS);
        cache.map.insert("recent".into(), recent);
        cache.sweep(1_000 + FACTS_IDLE_SECS + 1);
        let mut left: Vec<&String> = cache.map.keys().collect();
        left.sort();
        assert_eq!(left, ["held", "recent"]);
        assert_eq!(cache.sweep_at, FACTS_SWEEP_AT);
    }

    #[test]
    fn labels_come_back_after_a_sweep() {
        use tame_engine::SessionFacts;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
        let at: Timestamp = "2026-11-21T06:00:00Z".parse().unwrap();
        let cell = store.fresh_session_facts("s1");
        cell.lock().note_decision("read_file", at, Action::Allow);
        store
            .record_decision(NewDecision {
                log_id: "l1".into(),
                session_id: "s1".into(),
                timestamp: at,
                tool_name: "read_file".into(),
                tool_args: json!({}),
                agent_id: None,
                user_id: None,
                metadata: json!({}),
                decision: Action::Allow,
                rule_name: None,
                reason: "ok".into(),
                policy_version: "v1".into(),
                new_approval: None,
                release_of: None,
            })
            .wait()
            .unwrap();
        store
            .record_result(NewResult {
                session_id: "s1".into(),
                log_id: "l1".into(),
                timestamp: at,
                result: json!({"status": "success"}),
                labels: vec!["secret".into(), "secret.github_token".into()],
            })
            .wait()
            .unwrap();
        // As the server does once the result is committed.
        cell.lock().add_label("secret");
        cell.lock().add_label("secret.github_token");
        drop(cell);

        // The session sat idle and was swept out of memory.
        {
            let mut cache = store.facts.lock().unwrap();
            cache.sweep(now_secs() + FACTS_IDLE_SECS + 1);
            assert!(!cache.map.contains_key("s1"));
        }
        let cell = store.session_facts("s1").unwrap();
        let guard = cell.lock();
        let view = guard.view(at);
        let labels: Vec<String> = view.labels().iter().map(|l| l.to_string()).collect();
        assert_eq!(labels, ["secret", "secret.github_token"]);
        assert_eq!(view.calls(), 1);
    }
}
