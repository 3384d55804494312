//! The backend-neutral half of the audit log, shared by every backend: the
//! record HMAC and the chain head, the bodies of each record kind, the
//! approval-state rules, log entries rebuilt from records, the session
//! facts cache and the chain check behind `verify` and `export`.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tame_enforce::provenance::{Extract, IndexKey};
use tame_enforce::{Action, CallStep, ResultSlot, ResultSource, json_to_value, result_provenance};

use crate::canonical::canonical_json;
use crate::{
    Approval, ApprovalDecision, ApprovalState, ChainProblem, ChainProblemKind, LogEntry, NewApproval, NewDecision,
    NewInput, NewPolicyVersion, NewResult, Release, StoreError, StoreResult, VerifyReport,
};
use crate::{FactsHandle, SessionCell, SessionState};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The hash that precedes the first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The HMAC key of the audit chain from a configured secret (at least 16 bytes).
pub(crate) fn mac_from_key(key: &[u8]) -> StoreResult<HmacSha256> {
    if key.len() < 16 {
        return Err(StoreError::Secret(format!(
            "the configured secret has {} bytes, at least 16 are needed",
            key.len()
        )));
    }
    HmacSha256::new_from_slice(key).map_err(|e| StoreError::Secret(e.to_string()))
}

/// HMAC of one record: every field, length-prefixed (`None` distinct from
/// empty), then the previous record's hash.
pub(crate) fn record_mac(mac: &HmacSha256, prev_hash: &str, seq: u64, fields: &[Option<&str>]) -> String {
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

/// A record's HMAC in chain `chain` at place `chain_seq`, its sequence
/// number in the whole log being `seq` (`seq_text` as text). The unnamed
/// chain (`""`) is hashed as it always was (its place is its sequence
/// number); a node's chain also covers the chain's name and the record's
/// sequence number, so a row moved to another chain or place is found.
pub(crate) fn chained_mac(
    mac: &HmacSha256,
    prev_hash: &str,
    (chain, chain_seq): (&str, u64),
    seq: u64,
    fields: [Option<&str>; 6],
    seq_text: &str,
) -> String {
    if chain.is_empty() {
        return record_mac(mac, prev_hash, seq, &fields);
    }
    let [kind, ts, session_id, ref_id, session_prev, body] = fields;
    record_mac(
        mac,
        prev_hash,
        chain_seq,
        &[
            kind,
            ts,
            session_id,
            ref_id,
            session_prev,
            body,
            Some(chain),
            Some(seq_text),
        ],
    )
}

pub(crate) fn opt_str(v: Option<&str>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.to_string()))
}

pub(crate) fn micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

/// The head of the chain (last sequence number and its hash) and, per
/// session, its last record: records of a session are linked through
/// `session_prev`, so a session's log is read without a session index
/// (random inserts into such an index dominated the write cost).
#[derive(Debug)]
pub(crate) struct Chain {
    pub(crate) seq: u64,
    pub(crate) hash: String,
    /// Last record of each session seen by this writer.
    pub(crate) tails: HashMap<String, u64>,
    /// Sessions with records in the current batch.
    pub(crate) touched: HashSet<String>,
}

impl Chain {
    /// A chain whose last record is `seq` with `hash` (`0`, [`GENESIS`] when empty).
    pub(crate) fn new(seq: u64, hash: String) -> Chain {
        Chain {
            seq,
            hash,
            tails: HashMap::new(),
            touched: HashSet::new(),
        }
    }

    /// Moves the head to the record just written, and its session's tail.
    pub(crate) fn advance(&mut self, seq: u64, hash: String, session_id: Option<&str>) {
        self.advance_in(seq, seq, hash, session_id);
    }

    /// Moves the head to the record just written at place `chain_seq` of
    /// the chain (sequence number `seq` in the whole log), and its
    /// session's tail.
    pub(crate) fn advance_in(&mut self, chain_seq: u64, seq: u64, hash: String, session_id: Option<&str>) {
        self.seq = chain_seq;
        self.hash = hash;
        if let Some(sid) = session_id {
            match self.tails.get_mut(sid) {
                Some(tail) => *tail = seq,
                None => {
                    self.tails.insert(sid.to_string(), seq);
                }
            }
            if !self.touched.contains(sid) {
                self.touched.insert(sid.to_string());
            }
        }
    }
}

/// What a batch adds to one session's summary row.
#[derive(Debug, Default)]
pub(crate) struct SessionDelta {
    pub(crate) start: String,
    pub(crate) end: String,
    pub(crate) last_seq: i64,
    pub(crate) total: i64,
    pub(crate) allowed: i64,
    pub(crate) denied: i64,
    pub(crate) approved: i64,
    pub(crate) agent_id: Option<String>,
    pub(crate) user_id: Option<String>,
}

impl SessionDelta {
    /// Counts decision `d`, logged as record `seq`, in its session's delta.
    pub(crate) fn note_decision(sessions: &mut HashMap<String, SessionDelta>, d: &PreparedDecision, seq: u64) {
        let delta = match sessions.get_mut(&d.session_id) {
            Some(delta) => delta,
            None => sessions.entry(d.session_id.clone()).or_insert_with(|| SessionDelta {
                start: d.ts.clone(),
                ..SessionDelta::default()
            }),
        };
        delta.count(&d.ts, seq, Some(d.action));
        if delta.agent_id.is_none() {
            delta.agent_id.clone_from(&d.agent_id);
        }
        if delta.user_id.is_none() {
            delta.user_id.clone_from(&d.user_id);
        }
    }

    /// Notes a record of a session that is not a decision (a user's
    /// input, which may come before any call): the session's summary
    /// starts at `ts` when this is its first record.
    pub(crate) fn note_record(sessions: &mut HashMap<String, SessionDelta>, session_id: &str, ts: &str) {
        if !sessions.contains_key(session_id) {
            sessions.insert(
                session_id.to_string(),
                SessionDelta {
                    start: ts.to_string(),
                    end: ts.to_string(),
                    ..SessionDelta::default()
                },
            );
        }
    }

    /// Counts one decision logged as record `seq` at `ts` (`None`: an
    /// unreadable decision, counted in the total only).
    pub(crate) fn count(&mut self, ts: &str, seq: u64, action: Option<Action>) {
        self.end.clear();
        self.end.push_str(ts);
        self.last_seq = i64::try_from(seq).unwrap_or(i64::MAX);
        self.total += 1;
        match action {
            Some(Action::Allow) => self.allowed += 1,
            Some(Action::Deny) => self.denied += 1,
            Some(Action::Approve) => self.approved += 1,
            None => {}
        }
    }
}

// ---------------------------------------------------------------- bodies

/// The body of a `decision` record, as canonical JSON: written member by
/// member in key order, straight from `d` (no `serde_json::Map` is built;
/// this runs for every decision, in [`PreparedDecision::new`]). Equal to
/// `canonical_json` of the same members (a test checks it).
pub(crate) fn decision_body_json(d: &NewDecision, ts: &str) -> String {
    let mut out = Vec::with_capacity(384);
    let mut o = crate::canonical::ObjectWriter::new(&mut out);
    o.str("agent_id", d.agent_id.as_deref());
    o.str("approval_id", d.new_approval.as_ref().map(|a| a.id.as_str()));
    o.str("decision", Some(d.decision.as_str()));
    o.str("log_id", Some(&d.log_id));
    o.value("metadata", &d.metadata);
    o.str("policy_version", Some(&d.policy_version));
    o.str("reason", Some(&d.reason));
    o.str("released_by", d.release_of.as_ref().map(|r| r.approval_id.as_str()));
    o.str("rule_name", d.rule_name.as_deref());
    o.str("session_id", Some(&d.session_id));
    o.str("timestamp", Some(ts));
    o.value("tool_args", &d.tool_args);
    o.str("tool_name", Some(&d.tool_name));
    o.str("user_id", d.user_id.as_deref());
    o.finish();
    crate::canonical::into_string(out)
}

/// A decision as a writer appends it, prepared by [`PreparedDecision::new`]
/// on the caller's thread: the record bodies and timestamps are built
/// there, and the call's arguments and metadata are freed by the thread
/// that allocated them. The writer thread, the store's one serial step,
/// only checks, chains and inserts.
pub(crate) struct PreparedDecision {
    pub(crate) log_id: String,
    pub(crate) session_id: String,
    /// When the decision was made, and as text.
    pub(crate) at: Timestamp,
    pub(crate) ts: String,
    /// The `decision` record's canonical body.
    pub(crate) body: String,
    pub(crate) action: Action,
    pub(crate) agent_id: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) new_approval: Option<PreparedApproval>,
    pub(crate) release_of: Option<Release>,
    /// See [`NewDecision::session_version`].
    pub(crate) session_version: Option<tame_enforce::StateVersion>,
}

/// The pending approval an `approve` decision creates, with the body of
/// its `approval_created` record.
pub(crate) struct PreparedApproval {
    pub(crate) id: String,
    pub(crate) call_hash: String,
    pub(crate) expires_micros: i64,
    pub(crate) expires_at: String,
    pub(crate) body: String,
}

impl PreparedDecision {
    pub(crate) fn new(d: NewDecision) -> PreparedDecision {
        let ts = crate::format_timestamp(d.timestamp);
        let body = decision_body_json(&d, &ts);
        let new_approval = d.new_approval.as_ref().map(|a| {
            let expires_at = crate::format_timestamp(a.expires_at);
            let body = canonical_json(&approval_created_body(&d, a, &expires_at));
            PreparedApproval {
                id: a.id.clone(),
                call_hash: a.call_hash.clone(),
                expires_micros: micros(a.expires_at),
                expires_at,
                body,
            }
        });
        let NewDecision {
            log_id,
            session_id,
            timestamp,
            agent_id,
            user_id,
            decision,
            release_of,
            session_version,
            ..
        } = d;
        PreparedDecision {
            log_id,
            session_id,
            at: timestamp,
            ts,
            body,
            action: decision,
            agent_id,
            user_id,
            new_approval,
            release_of,
            session_version,
        }
    }
}

/// The body of the `approval_created` record that follows an `approve` decision.
pub(crate) fn approval_created_body(d: &NewDecision, approval: &NewApproval, expires_at: &str) -> Value {
    json!({
        "approval_id": approval.id,
        "log_id": d.log_id,
        "session_id": d.session_id,
        "call_hash": approval.call_hash,
        "policy_version": d.policy_version,
        "expires_at": expires_at,
    })
}

/// The body of a `result` record: the result as posted (secrets
/// redacted), and who reported it (`source`: `proxy`, `runner` or
/// `agent`; records written before sources were stored have none and read
/// as `agent`).
pub(crate) fn result_body(r: &NewResult, ts: &str) -> Value {
    let mut body = json!({
        "log_id": r.log_id,
        "session_id": r.session_id,
        "timestamp": ts,
        "result": r.result,
        "source": r.source.as_str(),
    });
    // The labels are part of the chained body: an edit to them breaks the
    // record's HMAC like any other field. Omitted when there are none.
    if !r.labels.is_empty()
        && let Some(fields) = body.as_object_mut()
    {
        fields.insert("labels".into(), json!(r.labels));
    }
    body
}

/// The body of an `input` record: a user's input to a session, its text
/// with secrets redacted.
pub(crate) fn input_body(i: &NewInput, ts: &str) -> Value {
    json!({
        "input_id": i.input_id,
        "session_id": i.session_id,
        "timestamp": ts,
        "text": i.text,
    })
}

/// The body of an `approval_decided` record.
pub(crate) fn approval_decided_body(a: &ApprovalDecision, new_state: ApprovalState, ts: &str) -> Value {
    json!({
        "approval_id": a.id,
        "state": new_state.as_str(),
        "by": opt_str(a.by.as_deref()),
        "reason": opt_str(a.reason.as_deref()),
        "at": ts,
    })
}

/// The body of an `approval_expired` record.
pub(crate) fn approval_expired_body(id: &str, ts: &str) -> Value {
    json!({"approval_id": id, "state": "expired", "at": ts})
}

/// The body of the `approval_released` record that follows the decision
/// of the call (`log_id`) an approval released.
pub(crate) fn approval_released_body(approval_id: &str, log_id: &str, ts: &str) -> Value {
    json!({"approval_id": approval_id, "log_id": log_id, "at": ts})
}

/// The body of a `policy_loaded` record.
/// Whether policy version `v` (a row of `policy_versions`) is the one its
/// `policy_loaded` record names: the record is intact, of that kind, and
/// names the row's hash and version, and the row's source hashes to that
/// hash. `Err` says what differs.
pub(crate) fn policy_matches_record(
    v: &crate::PolicyVersion,
    record: &AuditRow,
    mac: &HmacSha256,
) -> Result<(), String> {
    use sha2::Digest as _;
    if record.kind != "policy_loaded" {
        return Err(format!("the record at its sequence number is a `{}`", record.kind));
    }
    if !record.is_intact(mac) {
        return Err("its record was edited".into());
    }
    let body = parse_body(&record.body);
    if record.ref_id.as_deref() != Some(v.hash.as_str())
        || s(&body, "hash").as_deref() != Some(v.hash.as_str())
        || s(&body, "version").as_deref() != Some(v.version.as_str())
    {
        return Err("its record names another policy".into());
    }
    if hex::encode(Sha256::digest(v.source.as_bytes())) != v.hash {
        return Err("its source is not the one hashed".into());
    }
    Ok(())
}

pub(crate) fn policy_body(p: &NewPolicyVersion, ts: &str) -> Value {
    json!({"version": p.version, "hash": p.hash, "origin": p.origin, "loaded_at": ts})
}

// ---------------------------------------------------------------- rules

/// Checks that the approval a call released at `at` names may release it.
/// `row` is its row of the approvals table and `chained` what its audit
/// records say (see [`trusted_row`]): a row that does not match them is
/// refused, whatever it says. An approved approval not used before its
/// expiry has expired.
pub(crate) fn check_release(
    release: &Release,
    at: Timestamp,
    row: Option<ApprovalRow>,
    chained: Chained,
) -> StoreResult<()> {
    let Some(row) = row else {
        return Err(StoreError::ApprovalNotFound(release.approval_id.clone()));
    };
    let row = trusted_for_writing(row, chained)?;
    let used = row.released_log_id.is_some();
    let state = effective_state(&row.state, row.expires_micros, false, at);
    Ok(tame_enforce::approval::check_release(
        release,
        state,
        &row.call_hash,
        used,
    )?)
}

/// Checks that a result belongs to a logged decision of its session
/// (`owner`: the decision's session, `None` when there is no such decision).
pub(crate) fn check_result_owner(r: &NewResult, owner: Option<Option<String>>) -> StoreResult<()> {
    match owner {
        None => Err(StoreError::LogNotFound(r.log_id.clone())),
        Some(owner) if owner.as_deref() != Some(r.session_id.as_str()) => Err(StoreError::SessionMismatch {
            log_id: r.log_id.clone(),
            session_id: r.session_id.clone(),
        }),
        Some(_) => Ok(()),
    }
}

/// An approval's state as seen at `now`: a pending one past its expiry,
/// and an approved one not used (`released`) before it, read as expired;
/// an unreadable state as expired (never as usable).
pub(crate) fn effective_state(stored: &str, expires_micros: i64, released: bool, now: Timestamp) -> ApprovalState {
    let state = ApprovalState::parse(stored).unwrap_or(ApprovalState::Expired);
    let expires_at = Timestamp::from_microsecond(expires_micros).unwrap_or(Timestamp::MIN);
    tame_enforce::approval::effective_state(state, expires_at, released, now)
}

/// The state an admin's verdict moves a stored approval to, or why it
/// cannot: `row` and `chained` as for [`check_release`].
pub(crate) fn decided_state(
    a: &ApprovalDecision,
    row: Option<ApprovalRow>,
    chained: Chained,
) -> StoreResult<ApprovalState> {
    let Some(row) = row else {
        return Err(StoreError::ApprovalNotFound(a.id.clone()));
    };
    let row = trusted_for_writing(row, chained)?;
    let effective = effective_state(&row.state, row.expires_micros, row.released_log_id.is_some(), a.at);
    Ok(tame_enforce::approval::verdict_state(&a.id, effective, a.approve)?)
}

/// Whether an approval due for expiry (its row says pending, or approved
/// and unused) may be expired: its records must say the same.
pub(crate) fn may_expire(row: ApprovalRow, chained: Chained) -> bool {
    let id = row.id.clone();
    match trusted_for_writing(row, chained) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(approval = %id, error = %e, "a forged approval row was not expired");
            false
        }
    }
}

// ---------------------------------------------------------------- approvals in the chain

/// An approval as its records in the chain tell it: `approval_created`,
/// then `approval_decided` (approved or rejected) or `approval_expired`,
/// and `approval_released` once a call used it (before that record
/// existed, the releasing decision's `released_by` said so). The approvals
/// table is an index over these; where a row says otherwise, the row was
/// forged or altered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainedApproval {
    pub(crate) log_id: String,
    pub(crate) session_id: String,
    pub(crate) call_hash: String,
    pub(crate) expires_micros: i64,
    pub(crate) expires_at: String,
    /// The state as the table stores it (`pending`, `approved`, ...).
    pub(crate) state: String,
    pub(crate) decided_by: Option<String>,
    pub(crate) decision_reason: Option<String>,
    pub(crate) decided_at: Option<String>,
    pub(crate) released_log_id: Option<String>,
    /// The record of the latest change.
    pub(crate) last_seq: u64,
}

impl ChainedApproval {
    /// The approval an `approval_created` record (`seq`) creates.
    fn created(seq: u64, body: &Value) -> Option<ChainedApproval> {
        let expires_at = s(body, "expires_at")?;
        let expires_micros = micros(expires_at.parse::<Timestamp>().ok()?);
        Some(ChainedApproval {
            log_id: s(body, "log_id")?,
            session_id: s(body, "session_id")?,
            call_hash: s(body, "call_hash")?,
            expires_micros,
            expires_at,
            state: ApprovalState::Pending.as_str().to_string(),
            decided_by: None,
            decision_reason: None,
            decided_at: None,
            released_log_id: None,
            last_seq: seq,
        })
    }
}

/// What an approval's records say: the approval (`None`: it has no
/// records), or which of them was edited.
pub(crate) type Chained = Result<Option<ChainedApproval>, String>;

/// Approvals rebuilt from the records of the chain, fed in order.
#[derive(Debug, Default)]
pub(crate) struct ApprovalLedger {
    pub(crate) approvals: HashMap<String, ChainedApproval>,
}

impl ApprovalLedger {
    /// Notes an intact record (one whose HMAC matched).
    pub(crate) fn note(&mut self, row: &AuditRow) {
        let seq = u64::try_from(row.seq).unwrap_or(0);
        let Some(ref_id) = row.ref_id.as_deref() else { return };
        if row.kind == "decision" {
            // Only the rare released decisions are parsed.
            if row.body.contains("\"released_by\":null") {
                return;
            }
            let body = parse_body(&row.body);
            if let Some(a) = body
                .get("released_by")
                .and_then(Value::as_str)
                .and_then(|id| self.approvals.get_mut(id))
                && a.released_log_id.is_none()
            {
                a.released_log_id = Some(ref_id.to_string());
                a.last_seq = seq;
            }
            return;
        }
        if !row.kind.starts_with("approval_") {
            return;
        }
        let body = parse_body(&row.body);
        if row.kind == "approval_created" {
            if let Some(a) = ChainedApproval::created(seq, &body) {
                self.approvals.insert(ref_id.to_string(), a);
            }
            return;
        }
        let Some(a) = self.approvals.get_mut(ref_id) else {
            return;
        };
        a.last_seq = seq;
        match row.kind.as_str() {
            "approval_decided" => {
                if let Some(state) = s(&body, "state") {
                    a.state = state;
                }
                a.decided_by = s(&body, "by");
                a.decision_reason = s(&body, "reason");
                a.decided_at = s(&body, "at");
            }
            "approval_expired" => {
                a.state = ApprovalState::Expired.as_str().to_string();
                a.decided_at = s(&body, "at");
            }
            "approval_released" => a.released_log_id = s(&body, "log_id"),
            _ => {}
        }
    }
}

/// The approval `id` as its records tell it, from its records (those
/// whose `ref_id` is `id`, in order): `Ok(None)` when it has none, `Err`
/// naming a record whose HMAC does not match (an edited record).
pub(crate) fn chained_approval(mac: &HmacSha256, id: &str, records: &[AuditRow]) -> Chained {
    let mut ledger = ApprovalLedger::default();
    for row in records {
        if !row.is_intact(mac) {
            return Err(format!("its record {} ({}) was edited", row.seq, row.kind));
        }
        ledger.note(row);
    }
    Ok(ledger.approvals.remove(id))
}

/// How a row of the approvals table differs from its chained records
/// (`None`: it does not).
pub(crate) fn row_disagreement(row: &ApprovalRow, c: &ChainedApproval) -> Option<String> {
    let mut diffs: Vec<String> = Vec::new();
    let show = |v: Option<&str>| v.map_or_else(|| "none".to_string(), |v| format!("`{v}`"));
    let fields = [
        ("state", Some(row.state.as_str()), Some(c.state.as_str())),
        ("call hash", Some(row.call_hash.as_str()), Some(c.call_hash.as_str())),
        ("log id", Some(row.log_id.as_str()), Some(c.log_id.as_str())),
        ("session", Some(row.session_id.as_str()), Some(c.session_id.as_str())),
        ("expiry", Some(row.expires_at.as_str()), Some(c.expires_at.as_str())),
        ("decided by", row.decided_by.as_deref(), c.decided_by.as_deref()),
        (
            "decision reason",
            row.decision_reason.as_deref(),
            c.decision_reason.as_deref(),
        ),
        ("decision time", row.decided_at.as_deref(), c.decided_at.as_deref()),
        (
            "released call",
            row.released_log_id.as_deref(),
            c.released_log_id.as_deref(),
        ),
    ];
    for (what, table, chain) in fields {
        if table != chain {
            diffs.push(format!(
                "{what} {} in the table, {} in the chain",
                show(table),
                show(chain)
            ));
        }
    }
    if row.expires_micros != c.expires_micros {
        diffs.push(format!(
            "expiry {} in the table, {} in the chain (microseconds)",
            row.expires_micros, c.expires_micros
        ));
    }
    (!diffs.is_empty()).then(|| diffs.join("; "))
}

/// The approvals row as it may be acted on: `Ok` when it matches its
/// records, else what is wrong. A row naming a released call its records
/// do not is taken as released (the approval is then unusable; records
/// written before `approval_released` existed name none).
fn trusted(row: &ApprovalRow, chained: Chained) -> Result<ChainedApproval, String> {
    let mut c = match chained {
        Ok(Some(c)) => c,
        Ok(None) => return Err("it has no records in the audit chain".into()),
        Err(e) => return Err(e),
    };
    if c.released_log_id.is_none() {
        c.released_log_id.clone_from(&row.released_log_id);
    }
    match row_disagreement(row, &c) {
        None => Ok(c),
        Some(d) => Err(d),
    }
}

/// [`trusted`] for a writer: a mismatch refuses the write.
fn trusted_for_writing(row: ApprovalRow, chained: Chained) -> StoreResult<ApprovalRow> {
    match trusted(&row, chained) {
        Ok(_) => Ok(row),
        Err(detail) => {
            tracing::error!(approval = %row.id, %detail, "FORGED APPROVAL: its row does not match its audit records");
            Err(StoreError::ApprovalForged { id: row.id, detail })
        }
    }
}

/// The approvals row as readers show it: as its records tell it. A row
/// that differs is logged and shown as the records say; one without
/// trustworthy records is not shown at all (`verify` names both).
pub(crate) fn trusted_row(mut row: ApprovalRow, chained: Chained) -> Option<ApprovalRow> {
    let chained = match chained {
        Ok(Some(c)) => c,
        other => {
            let why = other
                .err()
                .unwrap_or_else(|| "it has no records in the audit chain".into());
            tracing::error!(approval = %row.id, %why, "FORGED APPROVAL: its row does not match its audit records");
            return None;
        }
    };
    match trusted(&row, Ok(Some(chained.clone()))) {
        Ok(_) => Some(row),
        Err(detail) => {
            tracing::error!(approval = %row.id, %detail, "FORGED APPROVAL: its row does not match its audit records");
            let released = row.released_log_id.take();
            if row.log_id != chained.log_id {
                // The joined decision is another call's.
                row.decision_body = None;
                row.decision_ts = None;
            }
            row.log_id = chained.log_id;
            row.session_id = chained.session_id;
            row.call_hash = chained.call_hash;
            row.state = chained.state;
            row.expires_micros = chained.expires_micros;
            row.expires_at = chained.expires_at;
            row.decided_by = chained.decided_by;
            row.decision_reason = chained.decision_reason;
            row.decided_at = chained.decided_at;
            row.released_log_id = chained.released_log_id.or(released);
            Some(row)
        }
    }
}

/// The columns both backends select for an [`ApprovalRow`], in the order
/// their row readers take them: the approval (`a`) and its decision's
/// body and time (`d`).
macro_rules! approval_columns {
    () => {
        "a.id, a.log_id, a.session_id, a.call_hash, a.state, a.expires_micros, a.expires_at, a.decided_by, \
         a.decision_reason, a.decided_at, a.released_log_id, d.body, d.ts"
    };
}
pub(crate) use approval_columns;

/// One row of the approvals table joined with its decision record.
#[derive(Debug)]
pub(crate) struct ApprovalRow {
    pub(crate) id: String,
    pub(crate) log_id: String,
    pub(crate) session_id: String,
    pub(crate) call_hash: String,
    pub(crate) state: String,
    pub(crate) expires_micros: i64,
    pub(crate) expires_at: String,
    pub(crate) decided_by: Option<String>,
    pub(crate) decision_reason: Option<String>,
    pub(crate) decided_at: Option<String>,
    pub(crate) released_log_id: Option<String>,
    /// Body of the `approve` decision record.
    pub(crate) decision_body: Option<String>,
    /// Timestamp of the `approve` decision record.
    pub(crate) decision_ts: Option<String>,
}

impl ApprovalRow {
    /// The approval as seen at `now`.
    pub(crate) fn into_approval(self, now: Timestamp) -> Approval {
        let state = effective_state(&self.state, self.expires_micros, self.released_log_id.is_some(), now);
        let body = self.decision_body.as_deref().map(parse_body).unwrap_or(Value::Null);
        Approval {
            approval_id: self.id,
            log_id: self.log_id,
            session_id: self.session_id,
            tool_name: s(&body, "tool_name").unwrap_or_default(),
            tool_args: body.get("tool_args").cloned().unwrap_or(Value::Null),
            agent_id: s(&body, "agent_id"),
            user_id: s(&body, "user_id"),
            call_hash: self.call_hash,
            policy_version: s(&body, "policy_version").unwrap_or_default(),
            rule_name: s(&body, "rule_name"),
            reason: s(&body, "reason").unwrap_or_default(),
            state,
            decided_by: self.decided_by,
            decision_reason: self.decision_reason,
            created_at: self.decision_ts.unwrap_or_default(),
            decided_at: self.decided_at,
            expires_at: self.expires_at,
            released_log_id: self.released_log_id,
        }
    }
}

// ---------------------------------------------------------------- reads

pub(crate) fn parse_body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

pub(crate) fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

pub(crate) fn entry_from_decision(seq: u64, body: &Value) -> LogEntry {
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

pub(crate) fn apply_result(entry: &mut LogEntry, body: &Value) {
    entry.apply_result(body.get("result").cloned().unwrap_or(Value::Null));
}

/// A session's rows (read by following its `session_prev` links back from
/// its last record, oldest first) as `(seq, kind, body)`, once each row is
/// shown to be as the writer wrote it: its HMAC holds, it belongs to the
/// session, each links to the one before it, the first to none, and the
/// last is `tail` (the session's last record as its summary or the writer
/// names it). A session's state widens or narrows what its next calls may
/// do, so a row edited, deleted or moved outside tame is an error (the
/// caller refuses to decide) rather than a shorter history.
pub(crate) fn checked_session_records(
    mac: &HmacSha256,
    session_id: &str,
    tail: Option<i64>,
    rows: Vec<AuditRow>,
) -> StoreResult<Vec<(u64, String, String)>> {
    let damaged = |seq: i64, detail: String| StoreError::SessionDamaged {
        session_id: session_id.to_string(),
        seq: u64::try_from(seq).unwrap_or(0),
        detail,
    };
    if let Some(tail) = tail
        && rows.last().map(|r| r.seq) != Some(tail)
    {
        return Err(damaged(tail, "the session's last record is missing".into()));
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut before: Option<i64> = None;
    for row in rows {
        if row.session_id.as_deref() != Some(session_id) {
            return Err(damaged(row.seq, "it belongs to another session".into()));
        }
        if row.session_prev != before {
            let detail = match row.session_prev {
                Some(prev) => format!("the session's record {prev} before it is missing"),
                None => "it claims to be the session's first record, but is not".into(),
            };
            return Err(damaged(row.seq, detail));
        }
        if !row.is_intact(mac) {
            return Err(damaged(
                row.seq,
                "its HMAC does not match its contents (edited outside tame)".into(),
            ));
        }
        before = Some(row.seq);
        out.push((u64::try_from(row.seq).unwrap_or(0), row.kind, row.body));
    }
    Ok(out)
}

/// Log entries from `(seq, kind, body)` records in order: each decision
/// with the result recorded for it, if any.
pub(crate) fn entries_from_records(records: Vec<(u64, String, String)>) -> Vec<LogEntry> {
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (seq, kind, body) in records {
        let body = parse_body(&body);
        if kind == "decision" {
            let entry = entry_from_decision(seq, &body);
            index.insert(entry.id.clone(), entries.len());
            entries.push(entry);
        } else if kind == "result"
            && let Some(entry) = s(&body, "log_id")
                .and_then(|id| index.get(&id).copied())
                .and_then(|i| entries.get_mut(i))
        {
            apply_result(entry, &body);
        }
    }
    entries
}

/// A session's state rebuilt from its `(seq, kind, body)` records, in
/// order, as the server built it while they were recorded: every decided
/// call with its arguments and log id (the state's counts-as-run rule says
/// which ran, and those wait for their results), each result (its value,
/// source and labels, its provenance hashed under `key`) and each user
/// input. What was stored is what comes back: arguments, results and
/// inputs with their secrets redacted.
pub(crate) fn facts_from_records(records: Vec<(u64, String, String)>, key: IndexKey) -> SessionState {
    let mut state = SessionState::default();
    state.set_index_key(key);
    let mut version = 0u64;
    for (_, kind, body) in records {
        match kind.as_str() {
            "decision" => replay_decision(&mut state, &parse_body(&body)),
            "result" => replay_result(&mut state, &key, &parse_body(&body)),
            "input" => replay_input(&mut state, &key, &parse_body(&body)),
            _ => continue,
        }
        version += 1;
    }
    state.set_version(version);
    state
}

fn timestamp_of(body: &Value, key: &str) -> Option<Timestamp> {
    body.get(key).and_then(Value::as_str).and_then(|t| t.parse().ok())
}

fn replay_decision(state: &mut SessionState, body: &Value) {
    let decision = match body.get("decision").and_then(Value::as_str) {
        Some("allow") => Action::Allow,
        Some("approve") => Action::Approve,
        Some("deny") => Action::Deny,
        _ => return,
    };
    let (Some(tool), Some(at)) = (
        body.get("tool_name").and_then(Value::as_str),
        timestamp_of(body, "timestamp"),
    ) else {
        return;
    };
    state.record(CallStep {
        tool: Arc::from(tool),
        decision,
        rule: body.get("rule_name").and_then(Value::as_str).map(Arc::from),
        released: body.get("released_by").is_some_and(|r| !r.is_null()),
        at,
        log_id: body.get("log_id").and_then(Value::as_str).map(Arc::from),
        args: json_to_value(body.get("tool_args").unwrap_or(&Value::Null)),
        result: ResultSlot::None,
    });
}

fn replay_result(state: &mut SessionState, key: &IndexKey, body: &Value) {
    // Labels the result revealed (records written before labels were
    // stored have none).
    let labels = body.get("labels").and_then(Value::as_array);
    for label in labels.into_iter().flatten().filter_map(Value::as_str) {
        state.add_label(label);
    }
    let Some(log_id) = body.get("log_id").and_then(Value::as_str) else {
        return;
    };
    let posted = body.get("result").unwrap_or(&Value::Null);
    let source = body
        .get("source")
        .and_then(Value::as_str)
        .and_then(ResultSource::parse)
        .unwrap_or(ResultSource::Agent);
    let (value, extract) = result_provenance(key, posted);
    state.record_result(log_id, None, value, source, &extract);
}

fn replay_input(state: &mut SessionState, key: &IndexKey, body: &Value) {
    let (Some(text), Some(at)) = (
        body.get("text").and_then(Value::as_str),
        timestamp_of(body, "timestamp"),
    ) else {
        return;
    };
    state.record_input(text, at, &Extract::text(key, text, false));
}

// ---------------------------------------------------------------- facts cache

/// Sessions idle this long (seconds) may leave memory; their facts are
/// read back from the log when they come back.
pub(crate) const FACTS_IDLE_SECS: i64 = 120;
/// Cache size at which the first sweep runs.
pub(crate) const FACTS_SWEEP_AT: usize = 50_000;

pub(crate) fn now_secs() -> i64 {
    Timestamp::now().as_second()
}

/// Session facts in memory, swept of idle sessions as it grows, so that
/// clients that open a session per call do not grow it without bound.
#[derive(Debug)]
pub(crate) struct FactsCache {
    pub(crate) map: HashMap<String, FactsHandle>,
    pub(crate) sweep_at: usize,
}

/// A new session state's epoch: unique in this process (see
/// [`tame_enforce::StateVersion`]).
pub(crate) fn next_epoch() -> u64 {
    static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
    pub(crate) fn sweep(&mut self, now: i64) {
        self.map
            .retain(|_, cell| Arc::strong_count(cell) > 1 || now - cell.last_used() < FACTS_IDLE_SECS);
        self.sweep_at = (self.map.len().saturating_mul(2)).max(FACTS_SWEEP_AT);
    }

    /// The cached facts of a session, marked as used now.
    pub(crate) fn get(&self, session_id: &str) -> Option<FactsHandle> {
        self.map.get(session_id).map(|cell| {
            cell.touch(now_secs());
            Arc::clone(cell)
        })
    }

    /// The cached facts of a session, or new empty facts cached for it (a
    /// session the caller knows is new).
    pub(crate) fn get_or_default(&mut self, session_id: &str) -> FactsHandle {
        match self.get(session_id) {
            Some(cell) => cell,
            None => self.insert(session_id, SessionState::default()),
        }
    }

    /// Caches `state` for a session (keeping facts already cached), sweeping
    /// idle sessions first when the cache has grown.
    pub(crate) fn insert(&mut self, session_id: &str, mut state: SessionState) -> FactsHandle {
        let now = now_secs();
        state.set_epoch(next_epoch());
        if self.map.len() >= self.sweep_at {
            self.sweep(now);
        }
        let cell = self
            .map
            .entry(session_id.to_string())
            .or_insert_with(|| Arc::new(SessionCell::new(state)));
        cell.touch(now);
        Arc::clone(cell)
    }
}

// ---------------------------------------------------------------- chain check

/// One stored audit row, as `verify` and `export` read it.
#[derive(Debug)]
pub(crate) struct AuditRow {
    pub(crate) seq: i64,
    pub(crate) kind: String,
    pub(crate) ts: String,
    pub(crate) session_id: Option<String>,
    pub(crate) ref_id: Option<String>,
    pub(crate) session_prev: Option<i64>,
    pub(crate) body: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
    /// The chain the row is in: `""` for the one chain of a SQLite store
    /// (and of a PostgreSQL store before several servers), else the node
    /// that wrote it ([`crate::PgOptions::node`]).
    pub(crate) chain: String,
    /// The row's place in its chain (`seq` in the unnamed chain).
    pub(crate) chain_seq: i64,
}

impl AuditRow {
    /// The row as one line of the JSON-lines export (canonical JSON, no newline).
    pub(crate) fn export_line(self) -> String {
        let mut line = Map::new();
        line.insert("seq".into(), json!(self.seq));
        line.insert("kind".into(), json!(self.kind));
        line.insert("ts".into(), json!(self.ts));
        line.insert("session_id".into(), json!(self.session_id));
        line.insert("ref_id".into(), json!(self.ref_id));
        line.insert("session_prev".into(), json!(self.session_prev));
        line.insert(
            "record".into(),
            serde_json::from_str(&self.body).unwrap_or(Value::String(self.body)),
        );
        line.insert("prev_hash".into(), json!(self.prev_hash));
        line.insert("hash".into(), json!(self.hash));
        if !self.chain.is_empty() {
            line.insert("chain".into(), json!(self.chain));
            line.insert("chain_seq".into(), json!(self.chain_seq));
        }
        canonical_json(&Value::Object(line))
    }
}

/// Writes one export line and its newline.
pub(crate) fn write_export_line(out: &mut dyn std::io::Write, row: AuditRow) -> StoreResult<()> {
    let io = |e: std::io::Error| StoreError::Io {
        path: "audit export".into(),
        message: e.to_string(),
    };
    out.write_all(row.export_line().as_bytes()).map_err(io)?;
    out.write_all(b"\n").map_err(io)
}

impl AuditRow {
    /// The HMAC the row's fields give after the record hashing to `prev`.
    pub(crate) fn mac(&self, mac: &HmacSha256, prev: &str) -> String {
        let session_prev = self.session_prev.map(|p| p.to_string());
        let seq = self.seq.to_string();
        chained_mac(
            mac,
            prev,
            (&self.chain, u64::try_from(self.chain_seq).unwrap_or(0)),
            u64::try_from(self.seq).unwrap_or(0),
            [
                Some(&self.kind),
                Some(&self.ts),
                self.session_id.as_deref(),
                self.ref_id.as_deref(),
                session_prev.as_deref(),
                Some(&self.body),
            ],
            &seq,
        )
    }

    /// Whether the row is as the writer wrote it: its hash is the HMAC of
    /// its fields and of the previous hash it names (and in the unnamed
    /// chain, its place is its sequence number).
    pub(crate) fn is_intact(&self, mac: &HmacSha256) -> bool {
        (!self.chain.is_empty() || self.chain_seq == self.seq) && self.mac(mac, &self.prev_hash) == self.hash
    }
}

/// Checks the audit log row by row, in sequence order, and lists every
/// edited, missing or unlinked record of each chain in it (one for a
/// SQLite store; one per node that wrote to a PostgreSQL store, beside the
/// unnamed one it had before); then each chain's head as recorded in the
/// database, the checkpoints that witness the checked store's own chain,
/// and the approvals table against the approvals the records tell of.
pub(crate) struct ChainCheck<'a> {
    mac: &'a HmacSha256,
    chains: std::collections::BTreeMap<String, ChainState>,
    records: u64,
    /// The hash of the last row read (of any chain).
    last_hash: Option<String>,
    problems: Vec<ChainProblem>,
    more_problems: u64,
    /// The chain the checkpoints witness (the checking store's own).
    witnessed: String,
    /// Its places whose hashes the checkpoints need, and the hashes.
    wanted: HashMap<u64, Option<String>>,
    ledger: ApprovalLedger,
}

/// Where the check is in one chain.
struct ChainState {
    expected_seq: u64,
    /// The hash of the chain's last row read.
    prev: String,
    /// Whether that row was intact and in its place (the next one must
    /// then link to it).
    prev_trusted: bool,
}

impl Default for ChainState {
    fn default() -> Self {
        ChainState {
            expected_seq: 1,
            prev: GENESIS.to_string(),
            prev_trusted: true,
        }
    }
}

/// How a record is named in a problem: `record 5`, or `record 5 of chain
/// `node-a``.
fn record_name(chain: &str, seq: u64) -> String {
    if chain.is_empty() {
        format!("record {seq}")
    } else {
        format!("record {seq} of chain `{chain}`")
    }
}

impl<'a> ChainCheck<'a> {
    /// A check whose checkpoints witness chain `witnessed`.
    pub(crate) fn new(mac: &'a HmacSha256, witnessed: &str) -> ChainCheck<'a> {
        ChainCheck {
            mac,
            chains: std::collections::BTreeMap::new(),
            records: 0,
            last_hash: None,
            problems: Vec::new(),
            more_problems: 0,
            witnessed: witnessed.to_string(),
            wanted: HashMap::new(),
            ledger: ApprovalLedger::default(),
        }
    }

    /// Keeps the hash of the witnessed chain's record `seq` when it is read
    /// (for a checkpoint).
    pub(crate) fn want(&mut self, seq: u64) {
        self.wanted.insert(seq, None);
    }

    fn problem(&mut self, p: ChainProblem) {
        if self.problems.len() < crate::MAX_REPORTED_PROBLEMS {
            self.problems.push(p);
        } else {
            self.more_problems += 1;
        }
    }

    /// Checks the next row (rows come in sequence order, so each chain's
    /// come in their order). Goes on after a problem: each row is checked
    /// against its own previous hash, and linked to the row before it in
    /// its chain when that one was intact.
    pub(crate) fn feed(&mut self, row: &AuditRow) {
        let seq = u64::try_from(row.chain_seq).unwrap_or(0);
        self.records += 1;
        if row.chain == self.witnessed
            && let Some(hash) = self.wanted.get_mut(&seq)
        {
            *hash = Some(row.hash.clone());
        }
        let mut state = self.chains.remove(&row.chain).unwrap_or_default();
        let name = record_name(&row.chain, seq);
        let expected_seq = state.expected_seq;
        if seq < expected_seq {
            // Not from a table keyed by its place: count it, check nothing more.
            self.problem(ChainProblem {
                kind: ChainProblemKind::Edited,
                seq,
                ref_id: row.ref_id.clone(),
                message: format!("{name} is out of order (after record {})", expected_seq - 1),
            });
            self.chains.insert(row.chain.clone(), state);
            return;
        }
        if seq > expected_seq {
            let first = record_name(&row.chain, expected_seq);
            self.problem(ChainProblem {
                kind: ChainProblemKind::Missing,
                seq: expected_seq,
                ref_id: None,
                message: if seq == expected_seq + 1 {
                    format!("{first} is missing (deleted)")
                } else {
                    format!("{first} to {} are missing (deleted)", seq.saturating_sub(1))
                },
            });
            state.prev_trusted = false;
        }
        let what = row
            .ref_id
            .as_deref()
            .map(|r| format!(" ({} `{r}`)", row.kind))
            .unwrap_or_default();
        let intact = row.is_intact(self.mac);
        if !intact {
            self.problem(ChainProblem {
                kind: ChainProblemKind::Edited,
                seq,
                ref_id: row.ref_id.clone(),
                message: format!("{name}{what} was edited: its hash does not match its content"),
            });
        } else if state.prev_trusted && row.prev_hash != state.prev {
            self.problem(ChainProblem {
                kind: ChainProblemKind::Edited,
                seq,
                ref_id: row.ref_id.clone(),
                message: format!(
                    "{name}{what} does not follow record {}: the previous hash it names is another \
                     (records were replaced)",
                    seq.saturating_sub(1)
                ),
            });
        }
        if intact {
            self.ledger.note(row);
        }
        state.prev.clone_from(&row.hash);
        state.prev_trusted = intact;
        state.expected_seq = seq + 1;
        self.last_hash = Some(row.hash.clone());
        self.chains.insert(row.chain.clone(), state);
    }

    /// The report, given each chain's head as the writers recorded it in
    /// the database (`(chain, "seq:hash")`), the checkpoints that witness
    /// the checking store's chain (`claims`), and the rows of the approvals
    /// table.
    pub(crate) fn finish(
        mut self,
        heads: &[(String, String)],
        claims: &crate::checkpoint::Claims,
        approvals: Vec<ApprovalRow>,
    ) -> VerifyReport {
        let mut found = Vec::new();
        for (chain, head) in heads {
            let state = self.chains.get(chain);
            let last = state.map_or(0, |s| s.expected_seq - 1);
            let (head_seq, head_hash) = head.split_once(':').unwrap_or(("0", ""));
            let head_seq: u64 = head_seq.parse().unwrap_or(0);
            if head_seq > last {
                found.push(ChainProblem {
                    kind: ChainProblemKind::Truncated,
                    seq: last + 1,
                    ref_id: None,
                    message: format!(
                        "{} to {head_seq} at the end of the log are missing (deleted)",
                        record_name(chain, last + 1)
                    ),
                });
            } else if head_seq == last && last > 0 && state.is_some_and(|s| s.prev != head_hash) {
                found.push(ChainProblem {
                    kind: ChainProblemKind::Edited,
                    seq: last,
                    ref_id: None,
                    message: format!(
                        "{} does not match the recorded head of the chain",
                        record_name(chain, last)
                    ),
                });
            }
        }
        let last = self.chains.get(&self.witnessed).map_or(0, |s| s.expected_seq - 1);
        let wanted = std::mem::take(&mut self.wanted);
        for p in claims.problems(last, |seq| wanted.get(&seq).cloned().flatten()) {
            // The database's own head may have said the same.
            let same = |q: &ChainProblem| q.kind == p.kind && q.seq == p.seq;
            if let Some(i) = found.iter().position(same) {
                found.remove(i);
            }
            found.push(p);
        }
        found.extend(approval_problems(std::mem::take(&mut self.ledger), approvals));
        for p in found {
            self.problem(p);
        }
        VerifyReport {
            valid: self.problems.is_empty(),
            records: self.records,
            head_hash: self.last_hash,
            first_problem: self.problems.first().cloned(),
            problems: self.problems,
            more_problems: self.more_problems,
            checkpoint: claims.latest.clone(),
        }
    }
}

/// The approvals table against the approvals the chain tells of: every
/// row without records, every row that differs from its records, and
/// every approval of the chain without a row.
fn approval_problems(mut ledger: ApprovalLedger, rows: Vec<ApprovalRow>) -> Vec<ChainProblem> {
    let mut out = Vec::new();
    for row in rows {
        match ledger.approvals.remove(&row.id) {
            None => out.push(ChainProblem {
                kind: ChainProblemKind::ApprovalMismatch,
                seq: 0,
                message: format!(
                    "approval `{}` of the approvals table has no records in the audit chain (a forged row)",
                    row.id
                ),
                ref_id: Some(row.id),
            }),
            Some(c) => {
                if let Some(d) = row_disagreement(&row, &c) {
                    out.push(ChainProblem {
                        kind: ChainProblemKind::ApprovalMismatch,
                        seq: c.last_seq,
                        message: format!(
                            "approval `{}` does not match its audit records (last: record {}): {d}",
                            row.id, c.last_seq
                        ),
                        ref_id: Some(row.id),
                    });
                }
            }
        }
    }
    let mut orphans: Vec<(String, ChainedApproval)> = ledger.approvals.into_iter().collect();
    orphans.sort_by_key(|(_, c)| c.last_seq);
    for (id, c) in orphans {
        out.push(ChainProblem {
            kind: ChainProblemKind::ApprovalMismatch,
            seq: c.last_seq,
            message: format!("approval `{id}` of the audit chain is missing from the approvals table (deleted)"),
            ref_id: Some(id),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use proptest::prelude::*;
    use serde_json::Map;

    use super::*;
    use crate::canonical::canonical_json;

    /// The decision body built as a `Value` (how it was built before
    /// `decision_body_json`): the reference the direct writer must match.
    fn decision_body_value(d: &NewDecision, ts: &str) -> Value {
        let mut f = Map::new();
        f.insert("log_id".into(), Value::String(d.log_id.clone()));
        f.insert("session_id".into(), Value::String(d.session_id.clone()));
        f.insert("timestamp".into(), Value::String(ts.to_string()));
        f.insert("tool_name".into(), Value::String(d.tool_name.clone()));
        f.insert("tool_args".into(), d.tool_args.clone());
        f.insert("agent_id".into(), opt_str(d.agent_id.as_deref()));
        f.insert("user_id".into(), opt_str(d.user_id.as_deref()));
        f.insert("metadata".into(), d.metadata.clone());
        f.insert("decision".into(), Value::String(d.decision.as_str().into()));
        f.insert("rule_name".into(), opt_str(d.rule_name.as_deref()));
        f.insert("reason".into(), Value::String(d.reason.clone()));
        f.insert("policy_version".into(), Value::String(d.policy_version.clone()));
        f.insert(
            "approval_id".into(),
            opt_str(d.new_approval.as_ref().map(|a| a.id.as_str())),
        );
        f.insert(
            "released_by".into(),
            opt_str(d.release_of.as_ref().map(|r| r.approval_id.as_str())),
        );
        Value::Object(f)
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_direct_decision_body_is_the_canonical_json_of_its_members(
            text in prop::collection::vec(".{0,10}", 8),
            some in prop::collection::vec(any::<bool>(), 6),
            args in json_value(),
            metadata in json_value(),
            action in prop_oneof![Just(Action::Allow), Just(Action::Deny), Just(Action::Approve)],
        ) {
            let opt = |i: usize| some[i].then(|| text[i].clone());
            let d = NewDecision {
                log_id: text[0].clone(),
                session_id: text[1].clone(),
                timestamp: Timestamp::UNIX_EPOCH,
                tool_name: text[2].clone(),
                tool_args: args,
                agent_id: opt(3),
                user_id: opt(4),
                metadata,
                decision: action,
                rule_name: opt(5),
                reason: text[6].clone(),
                policy_version: text[7].clone(),
                new_approval: some[0].then(|| NewApproval {
                    id: text[3].clone(),
                    call_hash: "h".into(),
                    expires_at: Timestamp::UNIX_EPOCH,
                }),
                release_of: some[1].then(|| Release { approval_id: text[4].clone(), call_hash: "h".into() }),
                session_version: None,
            };
            let ts = "2026-11-21T06:00:00.000001Z";
            prop_assert_eq!(decision_body_json(&d, ts), canonical_json(&decision_body_value(&d, ts)));
        }
    }

    #[test]
    fn only_result_records_fill_in_a_decisions_result() {
        let decision = |id: &str, action: &str| {
            format!(
                r#"{{"log_id":"{id}","session_id":"s","timestamp":"2026-11-21T06:00:00Z","tool_name":"t","tool_args":{{}},"decision":"{action}","reason":"r","policy_version":"1"}}"#
            )
        };
        let records = vec![
            (1, "decision".to_string(), decision("a", "approve")),
            // An approval record names its decision's log id too.
            (
                2,
                "approval_created".to_string(),
                r#"{"approval_id":"p","log_id":"a","session_id":"s"}"#.to_string(),
            ),
            (3, "decision".to_string(), decision("b", "allow")),
            (
                4,
                "result".to_string(),
                r#"{"log_id":"b","session_id":"s","result":{"status":"success"}}"#.to_string(),
            ),
        ];
        let entries = entries_from_records(records);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].tool_result, None, "an approval record is not a result");
        assert_eq!(entries[1].execution_status.as_deref(), Some("success"));
        assert!(entries[1].tool_result.is_some());
    }
}
