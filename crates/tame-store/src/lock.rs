//! One store per SQLite database: an exclusive advisory lock on the file
//! `<db>.lock` beside it, held for the store's lifetime. Two servers on
//! one file would each keep their own chain head and session state and
//! collide on every other append; the second one is refused instead.
//!
//! The lock is `flock`-style (`File::try_lock`): it belongs to the open
//! file, so a second open in the same process is refused too, and the
//! operating system releases it when the process dies, so a crashed
//! server leaves no stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::{StoreError, StoreResult};

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub(crate) struct DbLock {
    /// Kept open: closing the file releases the lock.
    _file: File,
}

/// The lock file of the database at `db`.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

impl DbLock {
    /// Takes the lock of the database at `db`, failing at once (never
    /// waiting) when another store holds it.
    pub(crate) fn acquire(db: &Path) -> StoreResult<DbLock> {
        let path = lock_path(db);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::Io {
                path: path.display().to_string(),
                message: format!("cannot open the database's lock file: {e}"),
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DbLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: db.display().to_string(),
                lock: path.display().to_string(),
            }),
            Err(TryLockError::Error(e)) => Err(StoreError::Io {
                path: path.display().to_string(),
                message: format!("cannot lock the database: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let first = DbLock::acquire(&db).unwrap();
        let e = DbLock::acquire(&db).unwrap_err();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        drop(first);
        DbLock::acquire(&db).unwrap();
    }
}
