//! The SQLite writer thread: group commit, the hash chain, session
//! summaries written at most every 250 ms, and their recovery after a crash.

use super::wal::WalCheckpoints;
use super::*;
#[allow(unused_imports, reason = "the backend's modules share one scope")]
use super::{reads::*, schema::*};

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) chain: Chain,
    pub(super) mac: HmacSha256,
    pub(super) max_batch: usize,
    /// The decisions' share of the summaries not yet written (see
    /// [`SUMMARY_INTERVAL`]); the sessions to write are `chain.touched`.
    pub(super) pending: HashMap<String, SessionDelta>,
    /// The tails of those sessions, published to readers after each commit.
    pub(super) unsummarized: Tails,
    /// Whether there are such summaries (read by [`SqliteStore::summarize`]).
    pub(super) behind: Arc<AtomicBool>,
    /// When the summaries were last written.
    pub(super) summarized_at: Instant,
    /// Set when a batch failed: the in-memory tails and summaries may
    /// name rolled-back records and are rebuilt from the log first.
    pub(super) stale: bool,
    /// Told the head after each commit.
    pub(super) witness: Arc<Witness>,
    /// The WAL's checkpointer (see `wal.rs`): told of each commit, and
    /// asking the writer for a restart of the WAL between batches.
    pub(super) wal: WalCheckpoints,
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
pub(super) const SUMMARY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
/// A batch that takes this long to commit is logged (at debug level).
pub(super) const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(2);
/// Summaries are also written once this many sessions are pending.
pub(super) const SUMMARY_MAX_PENDING: usize = 4096;

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Job>) {
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
            // After the batch's answers, never inside a commit.
            self.wal.restart_if_due(&self.conn);
        }
        if !self.chain.touched.is_empty() || self.stale {
            self.commit_batch(Vec::new(), true);
        }
        self.wal.stop();
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
        let (started, jobs) = (Instant::now(), batch.len());
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
                    Job::Input(i, _) => Some(i.session_id.clone()),
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
        let took = started.elapsed();
        if took >= SLOW_BATCH {
            // What keeps every caller waiting (see `TAME_LOG=tame_store=debug`).
            tracing::debug!(jobs, summarize, micros = took.as_micros(), "slow batch");
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
                self.wal.committed();
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
pub(super) fn finish_batch(
    tx: &Connection,
    chain: &Chain,
    sessions: Option<&HashMap<String, SessionDelta>>,
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
pub(super) fn write_summaries(
    tx: &Connection,
    chain: &Chain,
    sessions: &HashMap<String, SessionDelta>,
) -> StoreResult<()> {
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
pub(super) fn recover_summaries(conn: &mut Connection, chain: &mut Chain) -> StoreResult<()> {
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
            let ts: String = row.get(2)?;
            if row.get_ref(1)?.as_str().ok() != Some("decision") {
                SessionDelta::note_record(&mut pending, &session_id, &ts);
                continue;
            }
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
pub(super) fn apply_job(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    sessions: &mut HashMap<String, SessionDelta>,
    job: Job,
) -> Done {
    match job {
        Job::Decision(d, ack) => Done::Decision(ack, write_decision(tx, chain, mac, sessions, *d)),
        Job::Result(r, ack) => Done::Result(ack, write_result(tx, chain, mac, &r)),
        Job::Input(i, ack) => Done::Input(ack, write_input(tx, chain, mac, sessions, &i)),
        Job::Approval(a, ack) => Done::Approval(ack, Box::new(write_approval_decision(tx, chain, mac, &a))),
        Job::Expire(now, ack) => Done::Expire(ack, write_expiry(tx, chain, mac, now)),
        Job::Policy(p, ack) => Done::Policy(ack, write_policy(tx, chain, mac, &p)),
        Job::Flush(ack) => Done::Flush(ack),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn append(
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
        &[
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

pub(super) fn write_decision(
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

pub(super) fn write_result(tx: &Connection, chain: &mut Chain, mac: &HmacSha256, r: &NewResult) -> StoreResult<u64> {
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

/// Appends a user's input (no check: an input may be a session's first
/// record).
pub(super) fn write_input(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    sessions: &mut HashMap<String, SessionDelta>,
    i: &NewInput,
) -> StoreResult<u64> {
    let ts = format_timestamp(i.timestamp);
    let body = canonical_json(&input_body(i, &ts));
    SessionDelta::note_record(sessions, &i.session_id, &ts);
    append(
        tx,
        chain,
        mac,
        "input",
        &ts,
        Some(&i.session_id),
        Some(&i.input_id),
        &body,
    )
}

pub(super) fn write_approval_decision(
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

pub(super) fn write_expiry(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
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
pub(super) const DUE_APPROVALS: &str = "SELECT id, session_id FROM approvals
    WHERE (state = 'pending' OR (state = 'approved' AND released_log_id IS NULL)) AND expires_micros <= ?1
    ORDER BY created_seq";

pub(super) fn write_policy(
    tx: &Connection,
    chain: &mut Chain,
    mac: &HmacSha256,
    p: &NewPolicyVersion,
) -> StoreResult<u64> {
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
