//! The SQLite database's tables and indexes, and how a connection to it is
//! opened (WAL journal, busy timeout, cache).

use super::*;
#[allow(unused_imports, reason = "the backend's modules share one scope")]
use super::{reads::*, writer::*};

pub(super) const SCHEMA: &str = "
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

pub(super) fn open_connection(path: &Path) -> StoreResult<Connection> {
    open_connection_with(path, None)
}

/// Opens `path` through the named VFS (`None`: SQLite's default).
pub(super) fn open_connection_with(path: &Path, vfs: Option<&std::ffi::CStr>) -> StoreResult<Connection> {
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
