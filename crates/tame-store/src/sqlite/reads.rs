//! The SQLite reads: a session's records, log pages, results, approvals
//! as their records tell them, session summaries, and the chain check.

use super::*;
#[allow(unused_imports, reason = "the backend's modules share one scope")]
use super::{schema::*, writer::*};

/// A session's records `(seq, kind, body)` in order, following the
/// `session_prev` links back from the session's last record (`tail`, or
/// the summary's when `None`), each checked against its HMAC and its
/// links ([`checked_session_records`]). A read transaction keeps the walk
/// consistent while the writer goes on.
pub(super) fn session_records(
    conn: &Connection,
    mac: &HmacSha256,
    session_id: &str,
    tail: Option<u64>,
) -> StoreResult<Vec<(u64, String, String)>> {
    conn.execute_batch("BEGIN")?;
    let walk = (|| -> StoreResult<(Option<i64>, Vec<AuditRow>)> {
        let tail: Option<i64> = match tail {
            Some(t) => i64::try_from(t).ok(),
            None => conn
                .prepare_cached("SELECT tail_seq FROM sessions WHERE session_id = ?1")?
                .query_row([session_id], |r| r.get(0))
                .optional()?,
        };
        let mut out = Vec::new();
        let mut next = tail;
        let mut stmt = conn.prepare_cached(&format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE seq = ?1"))?;
        while let Some(seq) = next {
            // A missing record ends the walk, and the check names it by
            // the link that points to it.
            let Some(row) = stmt.query_row([seq], audit_row).optional()? else {
                break;
            };
            // Links must point strictly backwards, so the walk ends; one
            // that does not is named by the check.
            next = row.session_prev.filter(|p| *p < seq);
            let foreign = row.session_id.as_deref() != Some(session_id);
            out.push(row);
            if foreign {
                break;
            }
        }
        out.reverse();
        Ok((tail, out))
    })();
    let _ = conn.execute_batch("COMMIT");
    let (tail, rows) = walk?;
    checked_session_records(mac, session_id, tail, rows)
}

/// The records of approval `id` (`approval_*`, through the `ref_id` index), in order.
pub(super) fn approval_records(conn: &Connection, id: &str) -> StoreResult<Vec<AuditRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit WHERE ref_id = ?1 AND kind LIKE 'approval%' ORDER BY seq"
    ))?;
    let rows = stmt.query_map([id], audit_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Approval `id` as its records tell it (see [`chained_approval`]).
pub(super) fn chained(conn: &Connection, mac: &HmacSha256, id: &str) -> StoreResult<Chained> {
    Ok(chained_approval(mac, id, &approval_records(conn, id)?))
}

/// The row of approval `id`, joined with its decision.
pub(super) fn approval_row(conn: &Connection, id: &str) -> StoreResult<Option<ApprovalRow>> {
    let mut stmt = conn.prepare_cached(&format!("{APPROVAL_SELECT} WHERE a.id = ?1"))?;
    Ok(stmt.query_row([id], approval_row_from).optional()?)
}

/// Approvals as readers see them: each row held against its records
/// (see [`trusted_row`]).
pub(super) fn shown_approvals(
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

pub(super) fn records_by_ref(conn: &Connection, ref_id: &str) -> StoreResult<Vec<(u64, String, String)>> {
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
pub(super) const RESULTS_OF: &str = "SELECT seq, kind, body FROM audit
    WHERE ref_id = ?1 AND kind = 'result' AND session_id = ?2 AND seq > ?3 ORDER BY seq";

/// The results recorded for the decision at `seq` (log id `log_id`) of
/// `session_id`, as `(seq, kind, body)`.
pub(super) fn results_of(
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
pub(super) const RECENT_DECISIONS: &str = "SELECT seq, session_id, ref_id, body FROM audit
    WHERE kind = 'decision' ORDER BY seq DESC LIMIT ?1";

/// The decisions of one page of a session's log: walks the session's
/// links back from its last record (`?1`), reading only the link columns,
/// counting decisions newest first (`n`), and stops at the page's oldest
/// one (`?3`); the page holds those with `n > ?4`.
pub(super) const PAGE_WALK: &str = "WITH RECURSIVE walk(seq, kind, prev, n) AS (
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
pub(super) fn log_page(conn: &Connection, session_id: &str, offset: u64, limit: u64) -> StoreResult<Option<LogPage>> {
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

pub(super) fn summary_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionSummary> {
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

pub(super) const SUMMARY_COLUMNS: &str =
    "session_id, start_time, end_time, total, allowed, denied, approved, agent_id, user_id";

pub(super) fn read_approval(
    conn: &Connection,
    mac: &HmacSha256,
    id: &str,
    now: Timestamp,
) -> StoreResult<Option<Approval>> {
    let rows: Vec<ApprovalRow> = approval_row(conn, id)?.into_iter().collect();
    Ok(shown_approvals(conn, mac, rows, now)?.into_iter().next())
}

pub(super) const APPROVAL_SELECT: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM approvals a LEFT JOIN audit d ON d.ref_id = a.log_id AND d.kind = 'decision'"
);

/// The filter of the approvals pending at `?1` (through the state index).
pub(super) const PENDING_APPROVALS: &str = "WHERE a.state = 'pending' AND a.expires_micros > ?1";

/// The newest `?2` approvals no longer pending at `?1` (decided, expired,
/// or pending past their expiry), read before their decisions are joined.
pub(super) const DECIDED_APPROVALS: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM (SELECT * FROM approvals WHERE state <> 'pending' OR expires_micros <= ?1
          ORDER BY created_seq DESC LIMIT ?2) a
    LEFT JOIN audit d ON d.ref_id = a.log_id AND d.kind = 'decision'
    ORDER BY a.created_seq DESC"
);

pub(super) fn approval_row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
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

/// The columns [`audit_row`] reads, in order.
pub(super) const AUDIT_COLUMNS: &str = "seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev";

pub(super) fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
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
        // One chain: a record's place in it is its sequence number.
        chain: String::new(),
        chain_seq: r.get(0)?,
    })
}

pub(super) fn verify_chain(conn: &Connection, mac: &HmacSha256, claims: &Claims) -> StoreResult<VerifyReport> {
    let mut check = ChainCheck::new(mac, "");
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
    let heads: Vec<(String, String)> = head.into_iter().map(|h| (String::new(), h)).collect();
    Ok(check.finish(&heads, claims, approvals))
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
