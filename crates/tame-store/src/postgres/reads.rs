//! The PostgreSQL reads: a session's records, log pages, approvals as
//! their records tell them, session summaries, and the chain's rows.

use super::*;
#[allow(unused_imports, reason = "the backend's modules share one scope")]
use super::{schema::*, writer::*};

/// One record of a session: `(seq, kind, body)`.
pub(super) type SessionRecord = (u64, String, String);

/// A session's records `(seq, kind, body)` in order, following the
/// `session_prev` links back from the session's last record in one query,
/// each checked against its HMAC and its links
/// ([`checked_session_records`]): the walk starts at the summary's last
/// record; a missing or foreign one ends it, and the check names the link
/// that pointed to it. Links must point strictly backwards, so the walk
/// ends. Also the session's version, read with its last record (`0` for
/// a session not stored).
pub(super) fn session_records(
    db: &mut impl GenericClient,
    mac: &HmacSha256,
    session_id: &str,
) -> StoreResult<(u64, Vec<SessionRecord>)> {
    let Some((tail, version)) = db
        .query_opt(
            "SELECT tail_seq, version FROM sessions WHERE session_id = $1",
            &[&session_id],
        )?
        .map(|r| Ok::<_, StoreError>((col::<i64>(&r, 0)?, col::<i64>(&r, 1)?)))
        .transpose()?
    else {
        return Ok((0, Vec::new()));
    };
    let rows = db.query(
        "WITH RECURSIVE walk(seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev, chain, chain_seq)
         AS (
             SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev, chain, chain_seq
               FROM audit WHERE seq = $2 AND session_id = $1
             UNION ALL
             SELECT a.seq, a.kind, a.ts, a.session_id, a.ref_id, a.body, a.prev_hash, a.hash, a.session_prev,
                    a.chain, a.chain_seq
               FROM walk w JOIN audit a ON a.seq = w.session_prev
              WHERE a.session_id = $1 AND w.session_prev < w.seq
         )
         SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev, chain, chain_seq
           FROM walk ORDER BY seq",
        &[&session_id, &tail],
    )?;
    let rows = rows.iter().map(audit_row).collect::<StoreResult<Vec<_>>>()?;
    Ok((
        to_u64(version),
        checked_session_records(mac, session_id, Some(tail), rows)?,
    ))
}

pub(super) fn records_by_ref(db: &mut impl GenericClient, ref_id: &str) -> StoreResult<Vec<(u64, String, String)>> {
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
pub(super) const RECENT_DECISIONS: &str = "WITH d AS (
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
pub(super) const LOG_PAGE: &str = "WITH RECURSIVE walk(seq, kind, prev, n) AS (
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

pub(super) fn records_from_rows(rows: &[Row]) -> StoreResult<Vec<(u64, String, String)>> {
    rows.iter()
        .map(|r| Ok((to_u64(col(r, 0)?), col(r, 1)?, col(r, 2)?)))
        .collect()
}

pub(super) const SUMMARY_COLUMNS: &str =
    "session_id, start_time, end_time, total, allowed, denied, approved, agent_id, user_id";

pub(super) fn summary_from_row(r: &Row) -> StoreResult<SessionSummary> {
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

pub(super) const APPROVAL_SELECT: &str = concat!(
    "SELECT ",
    approval_columns!(),
    " FROM approvals a LEFT JOIN LATERAL (
        SELECT body, ts FROM audit WHERE ref_id = a.log_id AND kind = 'decision' ORDER BY seq LIMIT 1
    ) d ON TRUE"
);

/// The newest `$2` approvals no longer pending at `$1` (decided, expired,
/// or pending past their expiry), read before their decisions are joined.
pub(super) const DECIDED_APPROVALS: &str = concat!(
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
pub(super) const APPROVAL_RECORDS: &str =
    "SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev, chain, chain_seq
    FROM audit WHERE ref_id = $1 AND kind LIKE 'approval%' ORDER BY seq";

/// The records of several approvals, in order.
pub(super) const APPROVALS_RECORDS: &str =
    "SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev, chain, chain_seq
    FROM audit WHERE ref_id = ANY($1) AND kind LIKE 'approval%' ORDER BY seq";

pub(super) fn approval_row_from(r: &Row) -> StoreResult<ApprovalRow> {
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
pub(super) fn shown_approvals(
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

pub(super) fn read_approval(
    db: &mut impl GenericClient,
    mac: &HmacSha256,
    id: &str,
    now: Timestamp,
) -> StoreResult<Option<Approval>> {
    let rows = db.query(&format!("{APPROVAL_SELECT} WHERE a.id = $1"), &[&id])?;
    Ok(shown_approvals(db, mac, &rows, now)?.into_iter().next())
}

pub(super) fn audit_row(r: &Row) -> StoreResult<AuditRow> {
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
        chain: col(r, 9)?,
        chain_seq: col(r, 10)?,
    })
}

/// A chain and its head as its writer recorded it (`seq:hash`).
pub(super) type ChainHead = (String, String);

pub(super) const AUDIT_SELECT: &str = "SELECT seq, kind, ts, session_id, ref_id, body, prev_hash, hash, session_prev,
    chain, chain_seq FROM audit ORDER BY seq";

/// Streams the audit log in order, `FETCH_ROWS` at a time, inside one
/// snapshot; `each` returns `false` to stop. Returns each chain's head
/// as its writer recorded it (`(chain, "seq:hash")`), read in the same
/// snapshot.
pub(super) fn scan_audit(
    client: &mut Client,
    mut each: impl FnMut(Vec<AuditRow>) -> bool,
    approvals: bool,
) -> StoreResult<(Vec<ChainHead>, Vec<ApprovalRow>)> {
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
    let mut heads = Vec::new();
    for r in tx.query("SELECT chain, seq, hash FROM chains ORDER BY chain", &[])? {
        heads.push((
            col::<String>(&r, 0)?,
            format!("{}:{}", col::<i64>(&r, 1)?, col::<String>(&r, 2)?),
        ));
    }
    let rows = if approvals {
        tx.query(&format!("{APPROVAL_SELECT} ORDER BY a.created_seq"), &[])?
            .iter()
            .map(approval_row_from)
            .collect::<StoreResult<Vec<_>>>()?
    } else {
        Vec::new()
    };
    tx.commit()?;
    Ok((heads, rows))
}
