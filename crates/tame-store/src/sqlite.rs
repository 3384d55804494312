//! The embedded SQLite backend: a writer thread that group-commits records
//! and chains their hashes, a small pool of read connections, and the
//! in-memory session facts. The store holds the database's lock file
//! (`<db>.lock`) for its lifetime, and its chain's head is witnessed in a
//! checkpoint file beside the database (`<db>.checkpoint` by default).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use foldhash::{HashMap, HashMapExt as _};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use tame_enforce::Action;

use crate::canonical::canonical_json;
use crate::checkpoint::{Claims, LogState, Witness, new_chain_id, reconcile};
use crate::jobs::{Done, Job, Queue};
use crate::lock::DbLock;
use crate::reads::{Window, entries};
use crate::record::{
    ApprovalRow, AuditRow, Chain, ChainCheck, Chained, FactsCache, GENESIS, HmacSha256, PreparedDecision, SessionDelta,
    approval_columns, approval_decided_body, approval_expired_body, approval_released_body, chained_approval,
    check_release, check_result_owner, decided_state, entries_from_records, facts_from_records, mac_from_key,
    may_expire, micros, parse_body, policy_body, record_mac, result_body, s, trusted_row, write_export_line,
};
use crate::{
    Approval, ApprovalDecision, ApprovalState, DecisionReceipt, DecisionTotals, LogEntry, LogPage,
    MAX_DECIDED_APPROVALS, MAX_LOG_PAGE, MAX_RECENT_DECISIONS, NewDecision, NewPolicyVersion, NewResult, PolicyVersion,
    SessionPage, SessionQuery, SessionSummary, Store, StoreError, StoreResult, Ticket, VerifyReport, format_timestamp,
};
use crate::{FactsHandle, SessionState};
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
    /// The checkpoint file that witnesses the chain's head outside the
    /// database (see `checkpoint.rs`). `None`: `<db>.checkpoint` beside
    /// the database.
    pub checkpoints: Option<PathBuf>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            secret: None,
            durability: Durability::Full,
            max_batch: 4096,
            checkpoints: None,
        }
    }
}

/// The checkpoint file of the database at `db` when none is configured.
pub(crate) fn default_checkpoints(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".checkpoint");
    PathBuf::from(path)
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

/// The SQLite store. Cheap to share behind an `Arc`; dropping it drains
/// the writer's queue and joins the writer thread.
pub struct SqliteStore {
    path: PathBuf,
    queue: Queue,
    writer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    facts: Mutex<FactsCache>,
    mac: HmacSha256,
    /// Last record of each session whose summary is not written yet
    /// (shared with the writer, which fills it after each commit).
    unsummarized: Tails,
    /// Whether the writer holds summaries not yet written.
    behind: Arc<AtomicBool>,
    /// The witness of the chain's head (written last on drop).
    witness: Arc<Witness>,
    /// The database's lock, released after everything else on drop.
    _lock: DbLock,
}

/// Session id → its last committed record, for sessions with records
/// after the summaries (see [`SUMMARY_INTERVAL`]).
type Tails = Arc<Mutex<HashMap<String, u64>>>;

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
    open_connection_with(path, None)
}

/// Opens `path` through the named VFS (`None`: SQLite's default).
fn open_connection_with(path: &Path, vfs: Option<&std::ffi::CStr>) -> StoreResult<Connection> {
    let opened = match vfs {
        None => Connection::open(path),
        Some(vfs) => Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), vfs),
    };
    let conn = opened.map_err(|e| StoreError::Db(format!("cannot open `{}`: {e}", path.display())))?;
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
        // First: a second store on the file must not touch it.
        let lock = DbLock::acquire(&path)?;
        let key = match options.secret {
            Some(key) => key,
            None => {
                let mut secret_path = path.clone().into_os_string();
                secret_path.push(".secret");
                load_or_create_secret(Path::new(&secret_path))?
            }
        };
        let mac = mac_from_key(&key)?;

        // With `Full` durability each commit syncs the WAL before it is
        // published (and before anyone is told), through the VFS that writes
        // a commit's WAL frames at once (see `walvfs`); with `Normal` commits
        // only write the WAL.
        let (vfs, synchronous) = match options.durability {
            Durability::Full => (Some(crate::walvfs::register().map_err(StoreError::Db)?), "FULL"),
            Durability::Normal => (None, "NORMAL"),
        };
        let mut conn = open_connection_with(&path, vfs)?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        // Checkpoint less often: hot pages are copied once per checkpoint.
        conn.pragma_update(None, "wal_autocheckpoint", 8192)?;
        conn.execute_batch(SCHEMA)?;
        let mut chain = Chain::new(0, GENESIS.to_string());
        // Reads the chain head and summarizes what a crash left unsummarized.
        recover_summaries(&mut conn, &mut chain)?;
        let sink = options.checkpoints.unwrap_or_else(|| default_checkpoints(&path));
        let witness = start_witness(&conn, sink, &mac, &chain)?;
        let (sender, receiver) = channel();
        let unsummarized = Tails::default();
        let behind = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            conn,
            chain,
            mac: mac.clone(),
            max_batch: options.max_batch.max(1),
            pending: HashMap::new(),
            unsummarized: unsummarized.clone(),
            behind: behind.clone(),
            summarized_at: Instant::now(),
            stale: false,
            witness: Arc::clone(&witness),
        };
        let handle = std::thread::Builder::new()
            .name("tame-store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;

        Ok(SqliteStore {
            path,
            queue: Queue::new(sender),
            writer: Some(handle),
            readers: Mutex::new(Vec::new()),
            facts: Mutex::new(FactsCache::default()),
            mac,
            unsummarized,
            behind,
            witness,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
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

    fn facts_cache(&self) -> std::sync::MutexGuard<'_, FactsCache> {
        self.facts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn load_facts(&self, session_id: &str, tail: Option<u64>) -> StoreResult<SessionState> {
        self.with_reader(|conn| Ok(facts_from_records(session_records(conn, session_id, tail)?)))
    }

    /// The last record of a session whose summary is not written yet.
    fn unsummarized_tail(&self, session_id: &str) -> Option<u64> {
        self.unsummarized
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(session_id)
            .copied()
    }

    /// Writes the pending session summaries (for reads of them).
    fn summarize(&self) -> StoreResult<()> {
        // Set by the writer after a commit and before it answers anyone,
        // so a read issued after a write's answer never skips its summary.
        if !self.behind.load(Ordering::Acquire) {
            return Ok(());
        }
        self.flush().wait()
    }
}

/// A session's records `(seq, kind, body)` in order, following the
/// `session_prev` links back from the session's last record (`tail`, or
/// the summary's when `None`). A read transaction keeps the walk
/// consistent while the writer goes on.
fn session_records(conn: &Connection, session_id: &str, tail: Option<u64>) -> StoreResult<Vec<(u64, String, String)>> {
    conn.execute_batch("BEGIN")?;
    let walk = (|| -> StoreResult<Vec<(u64, String, String)>> {
        let tail: Option<i64> = match tail {
            Some(t) => i64::try_from(t).ok(),
            None => conn
                .prepare_cached("SELECT tail_seq FROM sessions WHERE session_id = ?1")?
                .query_row([session_id], |r| r.get(0))
                .optional()?,
        };
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

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        // The head the writer left, witnessed before the lock goes.
        self.witness.stop();
    }
}

/// Holds the log against its checkpoint file (logging every problem) and
/// starts witnessing its head there. The database keeps its chain id and
/// the file that witnesses it in `meta`.
fn start_witness(conn: &Connection, sink: PathBuf, mac: &HmacSha256, chain: &Chain) -> StoreResult<Arc<Witness>> {
    conn.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('chain_id', ?1)",
        [new_chain_id()?],
    )?;
    let meta = |key: &str| -> StoreResult<Option<String>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let chain_id = meta("chain_id")?.unwrap_or_default();
    let witnessed_by = meta("checkpoint_file")?;
    let shown = sink.display().to_string();
    let log = LogState {
        chain: &chain_id,
        last_seq: chain.seq,
        witnessed_by: witnessed_by.as_deref(),
    };
    let disputes = reconcile(&sink, mac, &log, |seq| hash_at(conn, seq))?;
    let witness = Witness::new(Some(sink), mac.clone());
    witness.start(&chain_id, (chain.seq, chain.hash.clone()), disputes)?;
    if witnessed_by.as_deref() != Some(shown.as_str()) {
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('checkpoint_file', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [&shown],
        )?;
    }
    Ok(witness)
}

/// The hash of record `seq`, if there is one.
fn hash_at(conn: &Connection, seq: u64) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT hash FROM audit WHERE seq = ?1")?
        .query_row([i64::try_from(seq).unwrap_or(i64::MAX)], |r| r.get(0))
        .optional()?)
}

// ---------------------------------------------------------------- writer

struct Writer {
    conn: Connection,
    chain: Chain,
    mac: HmacSha256,
    max_batch: usize,
    /// The decisions' share of the summaries not yet written (see
    /// [`SUMMARY_INTERVAL`]); the sessions to write are `chain.touched`.
    pending: HashMap<String, SessionDelta>,
    /// The tails of those sessions, published to readers after each commit.
    unsummarized: Tails,
    /// Whether there are such summaries (read by [`SqliteStore::summarize`]).
    behind: Arc<AtomicBool>,
    /// When the summaries were last written.
    summarized_at: Instant,
    /// Set when a batch failed: the in-memory tails and summaries may
    /// name rolled-back records and are rebuilt from the log first.
    stale: bool,
    /// Told the head after each commit.
    witness: Arc<Witness>,
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

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        let (mut batches, mut jobs) = (0u64, 0u64);
        loop {
            let first = if self.chain.touched.is_empty() {
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
                        self.commit_batch(Vec::new(), true);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            // Group commit: the jobs that arrived while the previous batch
            // was committed and synced are committed together.
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
            self.commit_batch(batch, false);
        }
        if !self.chain.touched.is_empty() || self.stale {
            self.commit_batch(Vec::new(), true);
        }
        tracing::debug!(batches, jobs, "store writer drained and stopped");
    }

    /// Forgets what the summaries just written cover: nothing is pending.
    fn summaries_written(&mut self) {
        self.pending.clear();
        self.chain.touched.clear();
        self.summarized_at = Instant::now();
        self.unsummarized
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Applies a batch in one transaction. A job that fails a check (an
    /// unknown log, a used approval) fails alone: checks come before any
    /// write. A database error fails the whole batch, which is rolled back.
    /// `summarize` writes the pending session summaries in any case.
    fn commit_batch(&mut self, batch: Vec<Job>, summarize: bool) {
        if self.stale {
            match recover_summaries(&mut self.conn, &mut self.chain) {
                Ok(()) => {
                    self.stale = false;
                    self.summaries_written();
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
        let summarize = summarize
            || batch.iter().any(|j| matches!(j, Job::Flush(_)))
            || self.chain.touched.len() >= SUMMARY_MAX_PENDING
            || self.summarized_at.elapsed() >= SUMMARY_INTERVAL;
        // Sessions whose facts this batch changes: their tails are
        // published after the commit (session facts read them).
        let sessions: Vec<String> = if summarize {
            Vec::new()
        } else {
            batch
                .iter()
                .filter_map(|j| match j {
                    Job::Decision(d, _) => Some(d.session_id.clone()),
                    Job::Result(r, _) => Some(r.session_id.clone()),
                    _ => None,
                })
                .collect()
        };
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
                    && let Err(e) = finish_batch(&tx, &self.chain, summarize.then_some(&self.pending))
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
                    self.summaries_written();
                } else {
                    let mut published = self
                        .unsummarized
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for sid in sessions {
                        if let Some(&tail) = self.chain.tails.get(&sid) {
                            published.insert(sid, tail);
                        }
                    }
                }
                self.behind.store(!self.chain.touched.is_empty(), Ordering::Release);
                // Committed (and, with full durability, synced): the head
                // may be witnessed now.
                self.witness.publish(self.chain.seq, &self.chain.hash);
                done.into_iter().for_each(|d| d.finish(None));
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
                self.behind.store(true, Ordering::Release);
                // The published tails name committed records: they stay
                // until the summaries are rebuilt.
                let msg = format!("the audit batch was not committed: {e}");
                done.into_iter().for_each(|d| d.finish(Some(&msg)));
            }
        }
    }
}

/// Writes the chain head and, when `sessions` is given, the pending
/// session summaries (marking the log as summarized up to the head).
fn finish_batch(tx: &Connection, chain: &Chain, sessions: Option<&HashMap<String, SessionDelta>>) -> StoreResult<()> {
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
            let Some(session_id) = row.get::<_, Option<String>>(3)? else {
                continue;
            };
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
            delta.count(&ts, u64::try_from(seq).unwrap_or(0), action);
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
    body: &str,
) -> StoreResult<u64> {
    let seq = chain.seq.saturating_add(1);
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
            Some(body),
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
    chain.advance(seq, hash, session_id);
    Ok(seq)
}

fn write_decision(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    sessions: &mut HashMap<String, SessionDelta>,
    d: PreparedDecision,
) -> StoreResult<DecisionReceipt> {
    if let Some(release) = &d.release_of {
        let id = &release.approval_id;
        check_release(release, d.at, approval_row(tx, id)?, chained(tx, mac, id)?)?;
    }
    let seq = append(
        tx,
        chain,
        mac,
        "decision",
        &d.ts,
        Some(&d.session_id),
        Some(&d.log_id),
        &d.body,
    )?;
    SessionDelta::note_decision(sessions, &d, seq);
    if let Some(release) = &d.release_of {
        // The approval's own record of its use, found through its id.
        let body = canonical_json(&approval_released_body(&release.approval_id, &d.log_id, &d.ts));
        append(
            tx,
            chain,
            mac,
            "approval_released",
            &d.ts,
            Some(&d.session_id),
            Some(&release.approval_id),
            &body,
        )?;
        tx.prepare_cached("UPDATE approvals SET released_log_id = ?1 WHERE id = ?2")?
            .execute(params![d.log_id, release.approval_id])?;
    }
    if let Some(approval) = &d.new_approval {
        let created = append(
            tx,
            chain,
            mac,
            "approval_created",
            &d.ts,
            Some(&d.session_id),
            Some(&approval.id),
            &approval.body,
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
            approval.expires_micros,
            approval.expires_at
        ])?;
    }
    Ok(DecisionReceipt { seq })
}

fn write_result(tx: &Connection, chain: &mut Chain, mac: &HmacSha256, r: &NewResult) -> StoreResult<u64> {
    let owner: Option<Option<String>> = tx
        .prepare_cached("SELECT session_id FROM audit WHERE ref_id = ?1 AND kind = 'decision' LIMIT 1")?
        .query_row([&r.log_id], |row| row.get(0))
        .optional()?;
    check_result_owner(r, owner)?;
    let ts = format_timestamp(r.timestamp);
    let body = canonical_json(&result_body(r, &ts));
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
    let new_state = decided_state(a, approval_row(tx, &a.id)?, chained(tx, mac, &a.id)?)?;
    let ts = format_timestamp(a.at);
    let session: Option<String> = tx
        .prepare_cached("SELECT session_id FROM approvals WHERE id = ?1")?
        .query_row([&a.id], |r| r.get(0))
        .optional()?;
    let body = canonical_json(&approval_decided_body(a, new_state, &ts));
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
    read_approval(tx, mac, &a.id, a.at)?.ok_or_else(|| StoreError::ApprovalNotFound(a.id.clone()))
}

fn write_expiry(tx: &Connection, chain: &mut Chain, mac: &HmacSha256, now: Timestamp) -> StoreResult<Vec<String>> {
    let candidates: Vec<(String, String)> = {
        let mut stmt = tx.prepare_cached(DUE_APPROVALS)?;
        let rows = stmt.query_map([micros(now)], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut due = Vec::with_capacity(candidates.len());
    for (id, session) in candidates {
        if let Some(row) = approval_row(tx, &id)?
            && may_expire(row, chained(tx, mac, &id)?)
        {
            due.push((id, session));
        }
    }
    let ts = format_timestamp(now);
    for (id, session) in &due {
        let body = canonical_json(&approval_expired_body(id, &ts));
        append(tx, chain, mac, "approval_expired", &ts, Some(session), Some(id), &body)?;
        tx.prepare_cached("UPDATE approvals SET state = 'expired', decided_at = ?1 WHERE id = ?2")?
            .execute(params![ts, id])?;
    }
    Ok(due.into_iter().map(|(id, _)| id).collect())
}

/// The approvals due to expire at `?1`: pending, or approved and unused,
/// past their expiry (through the state index).
const DUE_APPROVALS: &str = "SELECT id, session_id FROM approvals
    WHERE (state = 'pending' OR (state = 'approved' AND released_log_id IS NULL)) AND expires_micros <= ?1
    ORDER BY created_seq";

/// The records of approval `id` (`approval_*`, through the `ref_id` index), in order.
fn approval_records(conn: &Connection, id: &str) -> StoreResult<Vec<AuditRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit WHERE ref_id = ?1 AND kind LIKE 'approval%' ORDER BY seq"
    ))?;
    let rows = stmt.query_map([id], audit_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Approval `id` as its records tell it (see [`chained_approval`]).
fn chained(conn: &Connection, mac: &HmacSha256, id: &str) -> StoreResult<Chained> {
    Ok(chained_approval(mac, id, &approval_records(conn, id)?))
}

/// The row of approval `id`, joined with its decision.
fn approval_row(conn: &Connection, id: &str) -> StoreResult<Option<ApprovalRow>> {
    let mut stmt = conn.prepare_cached(&format!("{APPROVAL_SELECT} WHERE a.id = ?1"))?;
    Ok(stmt.query_row([id], approval_row_from).optional()?)
}

/// Approvals as readers see them: each row held against its records
/// (see [`trusted_row`]).
fn shown_approvals(
    conn: &Connection,
    mac: &HmacSha256,
    rows: Vec<ApprovalRow>,
    now: Timestamp,
) -> StoreResult<Vec<Approval>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let chained = chained(conn, mac, &row.id)?;
        if let Some(row) = trusted_row(row, chained) {
            out.push(row.into_approval(now));
        }
    }
    Ok(out)
}

fn write_policy(tx: &Connection, chain: &mut Chain, mac: &HmacSha256, p: &NewPolicyVersion) -> StoreResult<u64> {
    let ts = format_timestamp(p.loaded_at);
    let body = canonical_json(&policy_body(p, &ts));
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

/// The results of one decision (through the `ref_id` index).
const RESULTS_OF: &str = "SELECT seq, kind, body FROM audit
    WHERE ref_id = ?1 AND kind = 'result' AND session_id = ?2 AND seq > ?3 ORDER BY seq";

/// The results recorded for the decision at `seq` (log id `log_id`) of
/// `session_id`, as `(seq, kind, body)`.
fn results_of(
    conn: &Connection,
    seq: u64,
    log_id: &str,
    session_id: &str,
    out: &mut Vec<(u64, String, String)>,
) -> StoreResult<()> {
    let mut stmt = conn.prepare_cached(RESULTS_OF)?;
    let rows = stmt.query_map(
        params![log_id, session_id, i64::try_from(seq).unwrap_or(i64::MAX)],
        |r| {
            Ok((
                u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        },
    )?;
    for row in rows {
        out.push(row?);
    }
    Ok(())
}

/// The newest decision records of the whole log, newest first: a backwards
/// scan of the primary key that stops after `limit` decisions.
const RECENT_DECISIONS: &str = "SELECT seq, session_id, ref_id, body FROM audit
    WHERE kind = 'decision' ORDER BY seq DESC LIMIT ?1";

/// The decisions of one page of a session's log: walks the session's
/// links back from its last record (`?1`), reading only the link columns,
/// counting decisions newest first (`n`), and stops at the page's oldest
/// one (`?3`); the page holds those with `n > ?4`.
const PAGE_WALK: &str = "WITH RECURSIVE walk(seq, kind, prev, n) AS (
        SELECT seq, kind, session_prev, kind = 'decision' FROM audit WHERE seq = ?1 AND session_id = ?2
        UNION ALL
        SELECT a.seq, a.kind, a.session_prev, w.n + (a.kind = 'decision')
          FROM walk w JOIN audit a ON a.seq = w.prev
         WHERE a.session_id = ?2 AND w.prev < w.seq AND w.n < ?3
    )
    SELECT seq FROM walk WHERE kind = 'decision' AND n > ?4";

/// One page of a session's log (see [`Store::session_log_page`]), in one
/// read transaction: the summary's tail and count, the walk to the page,
/// then the page's decisions and their results.
fn log_page(conn: &Connection, session_id: &str, offset: u64, limit: u64) -> StoreResult<Option<LogPage>> {
    conn.execute_batch("BEGIN")?;
    let page = (|| -> StoreResult<Option<LogPage>> {
        let row: Option<(i64, i64)> = conn
            .prepare_cached("SELECT tail_seq, total FROM sessions WHERE session_id = ?1")?
            .query_row([session_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((tail, total)) = row else { return Ok(None) };
        let total = u64::try_from(total).unwrap_or(0);
        let Some(window) = Window::of_page(total, offset, limit.min(MAX_LOG_PAGE)) else {
            return Ok(Some(LogPage {
                entries: Vec::new(),
                total,
            }));
        };
        let seqs: Vec<i64> = {
            let mut stmt = conn.prepare_cached(PAGE_WALK)?;
            let rows = stmt.query_map(
                params![
                    tail,
                    session_id,
                    i64::try_from(window.end).unwrap_or(i64::MAX),
                    i64::try_from(window.skip).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )?;
            rows.collect::<Result<_, _>>()?
        };
        let mut records = Vec::with_capacity(seqs.len() * 2);
        let mut decision = conn.prepare_cached("SELECT ref_id, body FROM audit WHERE seq = ?1")?;
        for seq in seqs {
            let Some((log_id, body)) = decision
                .query_row([seq], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?)))
                .optional()?
            else {
                continue;
            };
            let seq = u64::try_from(seq).unwrap_or(0);
            if let Some(log_id) = log_id {
                results_of(conn, seq, &log_id, session_id, &mut records)?;
            }
            records.push((seq, "decision".to_string(), body));
        }
        Ok(Some(LogPage {
            entries: entries(records),
            total,
        }))
    })();
    let _ = conn.execute_batch("COMMIT");
    page
}

#[cfg(test)]
mod read_plans {
    //! The bounded reads use the primary key and the `ref_id` index: none
    //! scans or sorts the whole audit table.
    use super::*;

    /// The details of SQLite's plan for `sql`.
    fn plan(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(params, |r| r.get::<_, String>(3)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    fn conn_with_schema() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("plan.db")).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        (dir, conn)
    }

    #[test]
    fn recent_decisions_scan_the_key_backwards_without_sorting() {
        let (_dir, conn) = conn_with_schema();
        let details = plan(&conn, RECENT_DECISIONS, [15]);
        assert_eq!(details, ["SCAN audit"], "{details:?}");
    }

    #[test]
    fn a_page_walk_follows_the_key_and_results_use_the_ref_index() {
        let (_dir, conn) = conn_with_schema();
        let details = plan(&conn, PAGE_WALK, params![10, "s1", 200, 100]);
        // Only the walk's own rows are scanned; each step is a key lookup.
        let scans: Vec<&String> = details.iter().filter(|d| d.starts_with("SCAN")).collect();
        assert!(scans.iter().all(|d| *d == "SCAN w" || *d == "SCAN walk"), "{details:?}");
        assert!(details.iter().all(|d| !d.contains("TEMP B-TREE")), "{details:?}");
        assert!(details.iter().any(|d| d.contains("INTEGER PRIMARY KEY")), "{details:?}");
        let details = plan(&conn, RESULTS_OF, params!["l1", "s1", 3]);
        assert!(details.iter().all(|d| d.contains("audit_ref")), "{details:?}");
    }

    #[test]
    fn pending_approvals_are_found_through_the_state_index() {
        let (_dir, conn) = conn_with_schema();
        let sql = format!("{APPROVAL_SELECT} {PENDING_APPROVALS} ORDER BY a.created_seq DESC");
        let details = plan(&conn, &sql, [0]);
        assert!(
            details
                .iter()
                .any(|d| d.starts_with("SEARCH a USING INDEX approvals_state")),
            "{details:?}"
        );
        assert!(details.iter().all(|d| !d.starts_with("SCAN")), "{details:?}");
    }
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

fn read_approval(conn: &Connection, mac: &HmacSha256, id: &str, now: Timestamp) -> StoreResult<Option<Approval>> {
    let rows: Vec<ApprovalRow> = approval_row(conn, id)?.into_iter().collect();
    Ok(shown_approvals(conn, mac, rows, now)?.into_iter().next())
}

const APPROVAL_SELECT: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM approvals a LEFT JOIN audit d ON d.ref_id = a.log_id AND d.kind = 'decision'"
);

/// The filter of the approvals pending at `?1` (through the state index).
const PENDING_APPROVALS: &str = "WHERE a.state = 'pending' AND a.expires_micros > ?1";

/// The newest `?2` approvals no longer pending at `?1` (decided, expired,
/// or pending past their expiry), read before their decisions are joined.
const DECIDED_APPROVALS: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM (SELECT * FROM approvals WHERE state <> 'pending' OR expires_micros <= ?1
          ORDER BY created_seq DESC LIMIT ?2) a
    LEFT JOIN audit d ON d.ref_id = a.log_id AND d.kind = 'decision'
    ORDER BY a.created_seq DESC"
);

fn approval_row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(ApprovalRow {
        id: r.get(0)?,
        log_id: r.get(1)?,
        session_id: r.get(2)?,
        call_hash: r.get(3)?,
        state: r.get(4)?,
        expires_micros: r.get(5)?,
        expires_at: r.get(6)?,
        decided_by: r.get(7)?,
        decision_reason: r.get(8)?,
        decided_at: r.get(9)?,
        released_log_id: r.get(10)?,
        decision_body: r.get(11)?,
        decision_ts: r.get(12)?,
    })
}

impl Store for SqliteStore {
    fn session_facts(&self, session_id: &str) -> StoreResult<FactsHandle> {
        if let Some(cell) = self.facts_cache().get(session_id) {
            return Ok(cell);
        }
        // Called from async handlers: no waiting for the writer here. A
        // session written since the last summaries has its tail published.
        let tail = self.unsummarized_tail(session_id);
        let stored = tail.is_some()
            || self.with_reader(|conn| {
                Ok(conn
                    .prepare_cached("SELECT 1 FROM sessions WHERE session_id = ?1")?
                    .exists([session_id])?)
            })?;
        let state = if stored {
            self.load_facts(session_id, tail)?
        } else {
            SessionState::default()
        };
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
        self.summarize()?;
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
        self.summarize()?;
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {SUMMARY_COLUMNS} FROM sessions WHERE session_id = ?1"))?
                .query_row([session_id], summary_from_row)
                .optional()?)
        })
    }

    fn session_log(&self, session_id: &str) -> StoreResult<Option<Vec<LogEntry>>> {
        self.summarize()?;
        self.with_reader(|conn| {
            let entries = entries_from_records(session_records(conn, session_id, None)?);
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
            // expiry reads as expired, so those two overlap. Pending ones
            // are those unexpired at `now` (`?1`): the expired ones of the
            // whole history are not read for them.
            let (filter, binds) = match state {
                None => ("", vec![]),
                Some(ApprovalState::Pending) => (PENDING_APPROVALS, vec![micros(now)]),
                Some(ApprovalState::Expired) => ("WHERE a.state IN ('pending', 'approved', 'expired')", vec![]),
                Some(ApprovalState::Approved) => ("WHERE a.state = 'approved'", vec![]),
                Some(ApprovalState::Rejected) => ("WHERE a.state = 'rejected'", vec![]),
            };
            let rows: Vec<ApprovalRow> = {
                let mut stmt =
                    conn.prepare_cached(&format!("{APPROVAL_SELECT} {filter} ORDER BY a.created_seq DESC"))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(binds), approval_row_from)?;
                rows.collect::<Result<_, _>>()?
            };
            let mut out = shown_approvals(conn, &self.mac, rows, now)?;
            out.retain(|approval| state.is_none_or(|s| s == approval.state));
            Ok(out)
        })
    }

    fn decided_approvals(&self, limit: u64, now: Timestamp) -> StoreResult<Vec<Approval>> {
        let limit = i64::try_from(limit.min(MAX_DECIDED_APPROVALS)).unwrap_or(0);
        self.with_reader(|conn| {
            let rows: Vec<ApprovalRow> = {
                let mut stmt = conn.prepare_cached(DECIDED_APPROVALS)?;
                let rows = stmt.query_map(params![micros(now), limit], approval_row_from)?;
                rows.collect::<Result<_, _>>()?
            };
            let mut out = shown_approvals(conn, &self.mac, rows, now)?;
            // A row shown as its records tell it may be pending after all.
            out.retain(|approval| approval.state != ApprovalState::Pending);
            Ok(out)
        })
    }

    fn approval(&self, id: &str, now: Timestamp) -> StoreResult<Option<Approval>> {
        self.with_reader(|conn| read_approval(conn, &self.mac, id, now))
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
        // Read before the snapshot: every head it names is committed, so
        // the snapshot holds it.
        let claims = self.witness.claims();
        self.with_reader(|conn| {
            // One read transaction: a consistent snapshot while the writer goes on.
            conn.execute_batch("BEGIN")?;
            let report = verify_chain(conn, &self.mac, &claims);
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
                write_export_line(out, audit_row(r)?)?;
                n += 1;
            }
            Ok(n)
        })
    }

    fn decision_totals(&self) -> StoreResult<DecisionTotals> {
        self.summarize()?;
        self.with_reader(|conn| {
            let count = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(conn
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(total), 0), coalesce(sum(allowed), 0),
                            coalesce(sum(denied), 0), coalesce(sum(approved), 0) FROM sessions",
                )?
                .query_row([], |r| {
                    Ok(DecisionTotals {
                        sessions: count(r.get(0)?),
                        total: count(r.get(1)?),
                        allowed: count(r.get(2)?),
                        denied: count(r.get(3)?),
                        approved: count(r.get(4)?),
                    })
                })?)
        })
    }

    fn recent_decisions(&self, limit: u64) -> StoreResult<Vec<LogEntry>> {
        let limit = i64::try_from(limit.min(MAX_RECENT_DECISIONS)).unwrap_or(0);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.with_reader(|conn| {
            // One snapshot: the results read match the decisions.
            conn.execute_batch("BEGIN")?;
            let read = (|| -> StoreResult<Vec<LogEntry>> {
                let decisions: Vec<(i64, Option<String>, Option<String>, String)> = {
                    let mut stmt = conn.prepare_cached(RECENT_DECISIONS)?;
                    let rows = stmt.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                    rows.collect::<Result<_, _>>()?
                };
                let mut records = Vec::with_capacity(decisions.len() * 2);
                for (seq, session_id, log_id, body) in decisions {
                    let seq = u64::try_from(seq).unwrap_or(0);
                    if let (Some(session_id), Some(log_id)) = (session_id, log_id) {
                        results_of(conn, seq, &log_id, &session_id, &mut records)?;
                    }
                    records.push((seq, "decision".to_string(), body));
                }
                let mut newest_first = entries(records);
                newest_first.reverse();
                Ok(newest_first)
            })();
            let _ = conn.execute_batch("COMMIT");
            read
        })
    }

    fn session_log_page(&self, session_id: &str, offset: u64, limit: u64) -> StoreResult<Option<LogPage>> {
        self.summarize()?;
        self.with_reader(|conn| log_page(conn, session_id, offset, limit))
    }
}

/// The columns [`audit_row`] reads, in order.
const AUDIT_COLUMNS: &str = "seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev";

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        kind: r.get(1)?,
        ts: r.get(2)?,
        session_id: r.get(3)?,
        ref_id: r.get(4)?,
        body: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
        session_prev: r.get(8)?,
    })
}

fn verify_chain(conn: &Connection, mac: &HmacSha256, claims: &Claims) -> StoreResult<VerifyReport> {
    let mut check = ChainCheck::new(mac);
    for seq in claims.seqs() {
        check.want(seq);
    }
    {
        let mut stmt = conn.prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            check.feed(&audit_row(r)?);
        }
    }
    let head: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'head'", [], |r| r.get(0))
        .optional()?;
    let approvals: Vec<ApprovalRow> = {
        let mut stmt = conn.prepare(&format!("{APPROVAL_SELECT} ORDER BY a.created_seq"))?;
        let rows = stmt.query_map([], approval_row_from)?;
        rows.collect::<Result<_, _>>()?
    };
    Ok(check.finish(head.as_deref(), claims, approvals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionCell;
    use crate::record::{FACTS_IDLE_SECS, FACTS_SWEEP_AT, now_secs};
    use serde_json::json;
    use std::sync::Arc;

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
        use tame_enforce::SessionFacts;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
        let at: Timestamp = "2026-11-21T06:00:00Z".parse().unwrap();
        let cell = store.fresh_session_facts("s1");
        cell.lock().record(tame_enforce::CallStep {
            tool: Arc::from("read_file"),
            decision: Action::Allow,
            rule: None,
            released: false,
            at,
        });
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
