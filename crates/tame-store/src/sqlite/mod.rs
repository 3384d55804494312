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
    check_release, check_result_owner, checked_session_records, decided_state, entries_from_records,
    facts_from_records, input_body, mac_from_key, may_expire, micros, parse_body, policy_body, record_mac, result_body,
    s, trusted_row, write_export_line,
};
use crate::{
    Approval, ApprovalDecision, ApprovalState, DecisionReceipt, DecisionTotals, LogEntry, LogPage,
    MAX_DECIDED_APPROVALS, MAX_LOG_PAGE, MAX_RECENT_DECISIONS, NewInput, NewPolicyVersion, NewResult, PolicyVersion,
    SessionPage, SessionQuery, SessionSummary, Store, StoreError, StoreResult, VerifyReport, format_timestamp,
};
use crate::{FactsHandle, SessionState, load_or_create_secret};

mod reads;
mod schema;
mod wal;
mod writer;

use reads::*;
use schema::*;
use writer::*;
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

/// The SQLite store. Cheap to share behind an `Arc`; dropping it drains
/// the writer's queue and joins the writer thread.
pub struct SqliteStore {
    path: PathBuf,
    queue: Queue,
    writer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    facts: Mutex<FactsCache>,
    mac: HmacSha256,
    /// Keyed with the audit secret: the provenance key of session states
    /// read back from the log.
    redactor: tame_enforce::Redactor,
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
        let redactor = tame_enforce::Redactor::keyed(&key).map_err(|e| StoreError::Secret(e.to_string()))?;

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
        // WAL checkpoints run off the commit path (see `wal.rs`).
        wal::configure_writer(&conn)?;
        conn.execute_batch(SCHEMA)?;
        let mut chain = Chain::new(0, GENESIS.to_string());
        // Reads the chain head and summarizes what a crash left unsummarized.
        recover_summaries(&mut conn, &mut chain)?;
        let sink = options.checkpoints.unwrap_or_else(|| default_checkpoints(&path));
        let witness = start_witness(&conn, sink, &mac, &chain)?;
        let checkpointer = open_connection(&path)?;
        checkpointer.pragma_update(None, "synchronous", synchronous)?;
        let wal = wal::WalCheckpoints::start(checkpointer)?;
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
            wal,
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
            redactor,
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
        let key = self.redactor.index_key();
        self.with_reader(|conn| {
            Ok(facts_from_records(
                session_records(conn, &self.mac, session_id, tail)?,
                key,
            ))
        })
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

    crate::jobs::queued_writes!();

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
            let entries = entries_from_records(session_records(conn, &self.mac, session_id, None)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewDecision;
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
        cell.lock()
            .record(tame_enforce::CallStep::new("read_file", Action::Allow, None, false, at));
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
                session_version: None,
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
                source: tame_enforce::ResultSource::Agent,
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

    #[test]
    fn provenance_comes_back_after_a_sweep() {
        use tame_enforce::{Call, Enforcer, ResultSource, SessionFacts};
        use tame_engine::{Policy, Provenance};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("tame.db"), SqliteOptions::default()).unwrap();
        let policy = Policy::from_yaml("version: \"1\"\ndefault: allow\nrules: []\n", "p.yml").unwrap();
        let enforcer = Enforcer::new(&policy, store.redactor(), std::time::Duration::from_secs(60));
        let call = Call::new("read_email", json!({"id": 7}), "s1").unwrap();
        let outcome = crate::testing::enforce_call(&store, &enforcer, call).unwrap();
        let cell = store.session_facts("s1").unwrap();
        let input = enforcer
            .input(
                "s1",
                &json!({"text": "pay DE89 3704 0044 0532 0130 00"}),
                Timestamp::now(),
            )
            .unwrap();
        store.record_input(input.record.clone()).wait().unwrap();
        cell.lock().apply_input(&input);
        let body = json!({"result": {"body": "the new account is GB33BUKB20201555555555"}});
        let result = enforcer
            .result_from("s1", &outcome.log_id, body, ResultSource::Proxy, Timestamp::now())
            .unwrap();
        store.record_result(result.record.clone()).wait().unwrap();
        assert!(cell.lock().apply_result(&result));
        drop(cell);
        {
            let mut cache = store.facts.lock().unwrap();
            cache.sweep(now_secs() + FACTS_IDLE_SECS + 1);
            assert!(!cache.map.contains_key("s1"));
        }
        let cell = store.session_facts("s1").unwrap();
        let state = cell.lock();
        let view = state.view(Timestamp::now());
        assert_eq!(view.provenance(Provenance::Input("DE89370400440532013000")), Ok(true));
        assert_eq!(view.provenance(Provenance::Input("GB33BUKB20201555555555")), Ok(false));
        assert_eq!(
            view.provenance(Provenance::Results("GB33BUKB20201555555555", None)),
            Ok(true)
        );
        assert_eq!(
            view.provenance(Provenance::Results("DE89370400440532013000", None)),
            Ok(false)
        );
    }
}
