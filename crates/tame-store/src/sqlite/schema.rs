//! The SQLite database's tables and indexes, and how a connection to it is
//! opened (WAL journal, busy timeout, cache).

use super::*;
#[allow(unused_imports, reason = "the backend's modules share one scope")]
use super::{reads::*, writer::*};

/// The tables and indexes (see `crate::schema`).
pub(super) const SCHEMA: &str =
    crate::schema::schema_sql!(int: "INTEGER", serial: "INTEGER", sessions_end: " WITHOUT ROWID");

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
