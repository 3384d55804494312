//! The PostgreSQL writer thread: the advisory lock (one writer per
//! database), group commit, the hash chain and session summaries.

use super::*;
#[allow(unused_imports, reason = "the backend's modules share one scope")]
use super::{reads::*, schema::*};

/// Appends rows of the audit log, given as arrays of their columns.
pub(super) const INSERT_AUDIT: &str =
    "INSERT INTO audit(seq, kind, ts, session_id, ref_id, session_prev, body, prev_hash, hash, chain, chain_seq)
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[])";

/// Adds a batch's deltas to the session summaries (arrays of their columns).
pub(super) const UPSERT_SESSIONS: &str =
    "INSERT INTO sessions AS s(session_id, start_time, end_time, last_seq, tail_seq,
        total, allowed, denied, approved, agent_id, user_id, version)
    SELECT * FROM UNNEST($12::text[], $13::text[], $14::text[], $15::bigint[], $16::bigint[], $17::bigint[],
                         $18::bigint[], $19::bigint[], $20::bigint[], $21::text[], $22::text[], $23::bigint[])
    ON CONFLICT(session_id) DO UPDATE SET
      version = s.version + excluded.version,
      end_time = CASE WHEN excluded.total > 0 THEN excluded.end_time ELSE s.end_time END,
      last_seq = CASE WHEN excluded.total > 0 THEN excluded.last_seq ELSE s.last_seq END,
      tail_seq = excluded.tail_seq,
      total = s.total + excluded.total, allowed = s.allowed + excluded.allowed,
      denied = s.denied + excluded.denied, approved = s.approved + excluded.approved,
      agent_id = COALESCE(s.agent_id, excluded.agent_id),
      user_id = COALESCE(s.user_id, excluded.user_id)";

/// Records the writer's chain head (`$24`, its place `$25` and hash
/// `$26`), which finds a truncated chain.
pub(super) const UPSERT_HEAD: &str = "INSERT INTO chains(chain, seq, hash) VALUES ($24, $25, $26)
    ON CONFLICT(chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash";

/// The class (first key) of the advisory locks a writer takes: on its
/// chain while it is open, and on each session a batch writes to until the
/// batch commits. The ASCII bytes of `tame`.
pub(super) const LOCK_CLASS: i32 = 0x7461_6d65;

/// The second key of a session's (or chain's) advisory lock: the first
/// four bytes of its name's SHA-256, the same on every server. Two names
/// that share it only wait for each other.
pub(super) fn lock_key(name: &str) -> i32 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut four = [0u8; 4];
    four.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    i32::from_be_bytes(four)
}

/// Releases the lock on chain `node` (taken in [`Link::connect`]).
fn unlock_chain(client: &mut Client, node: &str) -> Result<u64, postgres::Error> {
    client.execute(
        "SELECT pg_advisory_unlock($1::int, $2::int)",
        &[&LOCK_CLASS, &lock_key(node)],
    )
}

/// Statements the writer prepares once per connection.
pub(super) struct Stmts {
    insert_audit: Statement,
    lock_sessions: Statement,
    notify: Statement,
    allocate: Statement,
    approval_sessions: Statement,
    due_sessions: Statement,
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
            // In the keys' order, so that two batches never wait for each other in a cycle.
            lock_sessions: client
                .prepare("SELECT count(pg_advisory_xact_lock($1::int, k)) FROM unnest($2::int[]) AS k")?,
            allocate: client.prepare("SELECT nextval('audit_seq') FROM generate_series(1, $1::int)")?,
            // Delivered to every listening server when the batch commits.
            notify: client.prepare("SELECT pg_notify($1, $2)")?,
            approval_sessions: client.prepare("SELECT session_id FROM approvals WHERE id = ANY($1)")?,
            due_sessions: client.prepare(
                "SELECT session_id FROM approvals
                 WHERE (state = 'pending' OR (state = 'approved' AND released_log_id IS NULL)) AND expires_micros <= $1",
            )?,
            write_batch: client.prepare(&format!(
                "WITH w_audit AS ({INSERT_AUDIT}), w_sessions AS ({UPSERT_SESSIONS}), w_head AS ({UPSERT_HEAD}) SELECT 1"
            ))?,
            tails: client.prepare("SELECT session_id, tail_seq, version FROM sessions WHERE session_id = ANY($1)")?,
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
pub(super) struct PgSyncer {
    sender: Option<Sender<(Vec<Done>, Head)>>,
    handle: Option<JoinHandle<()>>,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

/// A chain head: the last record's sequence number and hash.
pub(super) type Head = (u64, String);

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

/// Session states (session, epoch) never to be decided on again, and when
/// they were spent: a state's decisions in flight reach the writer within
/// a request's time, so entries older than [`SPENT_KEEP`] are dropped.
pub(super) type Spent = HashMap<(String, u64), std::time::Instant>;

/// How long a spent state is remembered (longer than any request).
const SPENT_KEEP: std::time::Duration = std::time::Duration::from_secs(600);

pub(super) struct PgWriter {
    client: Client,
    stmts: Stmts,
    syncer: Option<PgSyncer>,
    chain: Chain,
    /// Session states a refused or lost decision was applied to.
    spent: Spent,
    mac: HmacSha256,
    max_batch: usize,
    link: Link,
}

/// How the writer (re)connects.
pub(super) struct Link {
    pub(super) config: postgres::Config,
    pub(super) shown: String,
    pub(super) lock_wait: std::time::Duration,
    pub(super) durability: Durability,
    /// The node id: the name of the chain this writer appends to.
    pub(super) node: String,
    /// The witness of the chain's head, shared with the syncer and the store.
    pub(super) witness: Arc<Witness>,
}

/// A writer's connection, with the lock taken and the schema checked, and
/// what goes with it.
pub(super) struct Connected {
    client: Client,
    stmts: Stmts,
    chain: Chain,
    syncer: Option<PgSyncer>,
}

/// Audit rows of a batch not yet sent to the database: they go in one
/// statement when the batch ends, or earlier when a job reads them back.
#[derive(Default)]
pub(super) struct PendingRows {
    seq: Vec<i64>,
    kind: Vec<String>,
    ts: Vec<String>,
    session_id: Vec<Option<String>>,
    ref_id: Vec<Option<String>>,
    session_prev: Vec<Option<i64>>,
    body: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
    chain: Vec<String>,
    chain_seq: Vec<i64>,
    /// Decisions among them: log id to session id.
    decisions: HashMap<String, String>,
}

/// One statement parameter.
pub(super) type Param<'a> = &'a (dyn postgres::types::ToSql + Sync);

impl PendingRows {
    /// The audit columns, in `INSERT_AUDIT`'s order (the first eleven
    /// parameters of both the plain insert and the batch statement).
    fn columns(&self) -> [Param<'_>; 11] {
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
            &self.chain,
            &self.chain_seq,
        ]
    }
}

/// One batch's state, writing through `db`: a transaction, or for a batch
/// that only appends, the connection itself (its one write statement
/// commits on its own).
pub(super) struct Batch<'a, C: GenericClient> {
    db: &'a mut C,
    /// The chain head's sequence number before the batch.
    start_seq: u64,
    stmts: &'a Stmts,
    chain: &'a mut Chain,
    /// Each locked session's version as stored before the batch (see
    /// [`MIGRATIONS`]); what the batch adds is in `added`.
    stored: HashMap<String, u64>,
    /// What the batch adds to each session's version.
    added: HashMap<String, i64>,
    /// Session states spent (see [`Batch::check_version`]).
    spent: &'a mut Spent,
    mac: &'a HmacSha256,
    /// The writer's chain (its node id).
    node: &'a str,
    /// Sequence numbers drawn for the batch and not used yet (last first).
    seqs: Vec<i64>,
    /// The sessions the batch locked, until their tails are read.
    locked: Vec<String>,
    rows: PendingRows,
    sessions: HashMap<String, SessionDelta>,
    /// Sessions known to have no records before this batch.
    new_sessions: HashSet<String>,
}

impl PgWriter {
    pub(super) fn start(link: Link, mac: HmacSha256, max_batch: usize) -> StoreResult<PgWriter> {
        let Connected {
            mut client,
            stmts,
            chain,
            syncer,
        } = link.connect()?;
        start_witness(&mut client, &link.witness, &mac, &chain, &link.node)?;
        Ok(PgWriter {
            client,
            stmts,
            chain,
            spent: HashMap::new(),
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
            let _ = unlock_chain(&mut self.client, &self.link.node);
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
        let node = self.link.node.clone();
        self.link
            .witness
            .recheck(chain.seq, |seq| hash_at(&mut client, &node, seq))?;
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
                &client.query_one(
                    "SELECT pg_try_advisory_lock($1::int, $2::int)",
                    &[&LOCK_CLASS, &lock_key(&self.node)],
                )?,
                0,
            )?;
            if locked || std::time::Instant::now() >= deadline {
                break locked;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        if !locked {
            return Err(StoreError::Db(format!(
                "another tame server is writing chain `{}` of `{shown}` (it holds the chain's advisory lock): \
                 give each server its own node id (`--node-id`)",
                self.node
            )));
        }
        // The writer's commits do not wait for the disk; with `Full`
        // durability the syncer makes them durable before anyone is told.
        client.batch_execute("SET synchronous_commit = off")?;
        migrate(&mut client, shown)?;
        let chain = match client.query_opt(
            "SELECT chain_seq, hash FROM audit WHERE chain = $1 ORDER BY chain_seq DESC LIMIT 1",
            &[&self.node],
        )? {
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
    pub(super) fn run(mut self, rx: Receiver<Job>) {
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
        if let Err(e) = unlock_chain(&mut self.client, &self.link.node) {
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
        // The states this batch's decisions were made on: spent if it fails.
        let states: Vec<(String, u64)> = batch
            .iter()
            .filter_map(|job| match job {
                Job::Decision(d, _) => d.session_version.map(|v| (d.session_id.clone(), v.epoch)),
                _ => None,
            })
            .collect();
        if self.spent.len() > 10_000 {
            self.spent.retain(|_, at| at.elapsed() < SPENT_KEEP);
        }
        let PgWriter {
            client,
            stmts,
            chain,
            spent,
            mac,
            link,
            ..
        } = self;
        // Every batch is a transaction: it holds its sessions' locks until
        // it commits (other servers may write to the same sessions).
        let (done, fatal) = match client.transaction() {
            Ok(mut tx) => {
                let (done, mut fatal) = apply_batch(&mut tx, stmts, chain, spent, mac, &link.node, batch);
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
                let now = std::time::Instant::now();
                for state in states {
                    self.spent.insert(state, now);
                }
                let msg = format!("the audit batch was not committed: {e}");
                done.into_iter().for_each(|d| d.finish(Some(&msg)));
            }
        }
    }
}

/// Runs a batch's jobs through `db` and writes what they appended; returns
/// their outcomes and the database error that failed the batch, if any.
pub(super) fn apply_batch<C: GenericClient>(
    db: &mut C,
    stmts: &Stmts,
    chain: &mut Chain,
    spent: &mut Spent,
    mac: &HmacSha256,
    node: &str,
    batch: Vec<Job>,
) -> (Vec<Done>, Option<String>) {
    let mut b = Batch {
        db,
        start_seq: chain.seq,
        stmts,
        chain,
        stored: HashMap::new(),
        added: HashMap::new(),
        spent,
        mac,
        node,
        seqs: Vec::new(),
        locked: Vec::new(),
        rows: PendingRows::default(),
        sessions: HashMap::new(),
        new_sessions: HashSet::new(),
    };
    let mut done = Vec::with_capacity(batch.len());
    let mut fatal = b
        .lock_sessions(&batch)
        .and_then(|()| b.load_tails())
        .err()
        .map(|e| e.to_string());
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
    /// Locks every session the batch may write to, until it commits (other
    /// servers wait for them, as this one waits for theirs), then draws
    /// the batch's sequence numbers: they come after every record another
    /// server committed to those sessions, so a session's links point back.
    fn lock_sessions(&mut self, jobs: &[Job]) -> StoreResult<()> {
        let mut sessions: Vec<String> = Vec::new();
        let mut approvals: Vec<&str> = Vec::new();
        let mut expiry: Option<Timestamp> = None;
        // The records the batch appends when every check passes: as many
        // sequence numbers are drawn (a failed check leaves a gap).
        let mut records = 0usize;
        for job in jobs {
            match job {
                Job::Decision(d, _) => {
                    sessions.push(d.session_id.clone());
                    records += 1 + usize::from(d.release_of.is_some()) + usize::from(d.new_approval.is_some());
                }
                Job::Result(r, _) => {
                    sessions.push(r.session_id.clone());
                    records += 1;
                }
                Job::Input(i, _) => {
                    sessions.push(i.session_id.clone());
                    records += 1;
                }
                Job::Approval(a, _) => {
                    approvals.push(&a.id);
                    records += 1;
                }
                Job::Expire(now, _) => expiry = Some(expiry.map_or(*now, |e| e.max(*now))),
                Job::Policy(..) => records += 1,
                Job::Flush(_) => {}
            }
        }
        if !approvals.is_empty() {
            for row in self.db.query(&self.stmts.approval_sessions, &[&approvals])? {
                sessions.push(col(&row, 0)?);
            }
        }
        if let Some(now) = expiry {
            for row in self.db.query(&self.stmts.due_sessions, &[&micros(now)])? {
                sessions.push(col(&row, 0)?);
                records += 1;
            }
        }
        sessions.sort_unstable();
        sessions.dedup();
        let mut keys: Vec<i32> = sessions.iter().map(|s| lock_key(s)).collect();
        keys.sort_unstable();
        keys.dedup();
        self.locked = sessions;
        if !keys.is_empty() {
            self.db.query_one(&self.stmts.lock_sessions, &[&LOCK_CLASS, &keys])?;
        }
        if records > 0 {
            self.draw_seqs(records)?;
        }
        Ok(())
    }

    /// Draws `n` more sequence numbers from the database's sequence.
    fn draw_seqs(&mut self, n: usize) -> StoreResult<()> {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        let mut drawn = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for row in self.db.query(&self.stmts.allocate, &[&n])? {
            drawn.push(col::<i64>(&row, 0)?);
        }
        drawn.sort_unstable();
        drawn.reverse();
        // Older ones (still unused) are used first.
        drawn.extend(std::mem::take(&mut self.seqs));
        self.seqs = drawn;
        Ok(())
    }

    /// The next sequence number of the batch.
    fn next_seq(&mut self) -> StoreResult<u64> {
        if self.seqs.is_empty() {
            self.draw_seqs(1)?;
        }
        self.seqs
            .pop()
            .map(to_u64)
            .ok_or_else(|| StoreError::Db("the audit sequence gave no number".into()))
    }

    /// Reads, in one query, the last record and the version of every
    /// session the batch locked, as stored now: another server (or an
    /// operator) may have recorded to it since this writer last did.
    fn load_tails(&mut self) -> StoreResult<()> {
        let wanted = std::mem::take(&mut self.locked);
        if wanted.is_empty() {
            return Ok(());
        }
        // What this writer knew of them may be stale.
        for sid in &wanted {
            self.chain.tails.remove(sid);
        }
        for row in self.db.query(&self.stmts.tails, &[&wanted])? {
            let sid: String = col(&row, 0)?;
            let tail: i64 = col(&row, 1)?;
            let version: i64 = col(&row, 2)?;
            self.chain.tails.insert(sid.clone(), to_u64(tail));
            self.stored.insert(sid, to_u64(version));
        }
        for sid in wanted {
            if !self.chain.tails.contains_key(&sid) {
                self.new_sessions.insert(sid);
            }
        }
        Ok(())
    }

    fn apply(&mut self, job: Job) -> Done {
        match job {
            Job::Decision(d, ack) => {
                let state = d.session_version.map(|v| (d.session_id.clone(), v.epoch));
                let written = self.write_decision(*d);
                // A refused decision was applied to its state: that state is spent.
                if written.is_err()
                    && let Some(state) = state
                {
                    self.spent.insert(state, std::time::Instant::now());
                }
                Done::Decision(ack, written)
            }
            Job::Result(r, ack) => Done::Result(ack, self.write_result(&r)),
            Job::Input(i, ack) => Done::Input(ack, self.write_input(&i)),
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
        let seq = self.next_seq()?;
        let chain_seq = self.chain.seq.saturating_add(1);
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
        let hash = chained_mac(
            self.mac,
            &self.chain.hash,
            (self.node, chain_seq),
            seq,
            [
                Some(kind),
                Some(ts),
                session_id,
                ref_id,
                prev_text.as_deref(),
                Some(&body),
            ],
            &seq.to_string(),
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
        rows.chain.push(self.node.to_string());
        rows.chain_seq.push(to_i64(chain_seq));
        if kind == "decision"
            && let (Some(r), Some(s)) = (ref_id, session_id)
        {
            rows.decisions.insert(r.to_string(), s.to_string());
        }
        self.chain.advance_in(chain_seq, seq, hash, session_id);
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
        let mut version = Vec::new();
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
            version.push(self.added.get(id).copied().unwrap_or(0));
        }
        let head_seq = to_i64(self.chain.seq);
        let summaries: [Param<'_>; 15] = [
            &ids,
            &start,
            &end,
            &last_seq,
            &tail_seq,
            &total,
            &allowed,
            &denied,
            &approved,
            &agent,
            &user,
            &version,
            &self.node,
            &head_seq,
            &self.chain.hash,
        ];
        let params: Vec<Param<'_>> = r.columns().into_iter().chain(summaries).collect();
        self.db.execute(&self.stmts.write_batch, &params)?;
        Ok(())
    }

    /// Refuses a decision made on a state that does not hold every stored
    /// record of its session (another server recorded to it since), or
    /// that holds a decision refused before (its count may match the
    /// stored one while its records differ). The refusal spends the state
    /// ([`Batch::apply`]).
    fn check_version(&self, d: &PreparedDecision) -> StoreResult<()> {
        let Some(held) = d.session_version else { return Ok(()) };
        let sid = &d.session_id;
        let added = self.added.get(sid).copied().unwrap_or(0);
        let now = self.stored.get(sid).copied().unwrap_or(0).saturating_add_signed(added);
        if now == held.records && !self.spent.contains_key(&(sid.clone(), held.epoch)) {
            return Ok(());
        }
        Err(StoreError::SessionMoved {
            session_id: sid.clone(),
        })
    }

    /// Counts a decision, result or input of `session_id` in its version.
    fn bump_version(&mut self, session_id: &str) {
        match self.added.get_mut(session_id) {
            Some(n) => *n = n.saturating_add(1),
            None => {
                self.added.insert(session_id.to_string(), 1);
            }
        }
    }

    fn write_decision(&mut self, mut d: PreparedDecision) -> StoreResult<DecisionReceipt> {
        self.check_version(&d)?;
        if let Some(release) = &d.release_of {
            let (row, chained) = self.approval(&release.approval_id)?;
            check_release(release, d.at, row, chained)?;
        }
        let body = std::mem::take(&mut d.body);
        let seq = self.append("decision", &d.ts, Some(&d.session_id), Some(&d.log_id), body)?;
        self.bump_version(&d.session_id);
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
            self.db
                .query_one(&self.stmts.notify, &[&APPROVAL_CHANNEL, &release.approval_id])?;
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
        let seq = self.append("result", &ts, Some(&r.session_id), Some(&r.log_id), body)?;
        self.bump_version(&r.session_id);
        Ok(seq)
    }

    /// Appends a user's input (no check: an input may be a session's
    /// first record).
    fn write_input(&mut self, i: &NewInput) -> StoreResult<u64> {
        let ts = format_timestamp(i.timestamp);
        let body = canonical_json(&input_body(i, &ts));
        SessionDelta::note_record(&mut self.sessions, &i.session_id, &ts);
        let seq = self.append("input", &ts, Some(&i.session_id), Some(&i.input_id), body)?;
        self.bump_version(&i.session_id);
        Ok(seq)
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
        self.db.query_one(&self.stmts.notify, &[&APPROVAL_CHANNEL, &a.id])?;
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
            self.db.query_one(&self.stmts.notify, &[&APPROVAL_CHANNEL, id])?;
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
        self.db.query_one(&self.stmts.notify, &[&POLICY_CHANNEL, &p.hash])?;
        Ok(to_u64(col(&row, 0)?))
    }
}
