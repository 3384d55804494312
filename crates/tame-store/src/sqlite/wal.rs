//! WAL checkpoints off the commit path. SQLite's automatic checkpoint runs
//! inside the commit that crosses its threshold, on the writer's thread:
//! that commit (and every call waiting for the writer) stalled while the
//! WAL's pages were copied into the database and the database was synced
//! (25–50 ms about once a second under load). Here the writer never
//! checkpoints on its own (`wal_autocheckpoint=0`); a thread of its own,
//! on a connection of its own, copies the WAL into the database in PASSIVE
//! mode, which never blocks the writer, a few times a second while there
//! are commits. A passive checkpoint cannot let the WAL start over while
//! the writer keeps appending, so the WAL's growth is bounded apart: once
//! a pass finds more than [`WAL_BOUND_FRAMES`] frames in it, the writer,
//! between two batches (after their answers), checkpoints with RESTART
//! what the last pass left (little: the frames of the last moments), so
//! that its next commit writes the WAL from its start. That RESTART waits
//! for readers of old snapshots at most [`RESTART_WAIT`]; when they are
//! still there it is tried again after a later batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{StoreError, StoreResult};

/// The WAL frames (pages) past which the writer restarts the WAL: 64 MiB
/// of 4 KiB pages. The WAL file is also cut back to this size when a
/// burst made it larger (`journal_size_limit`).
pub(super) const WAL_BOUND_FRAMES: i64 = 16_384;
/// How often the checkpointer copies the WAL while there are commits.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// How long the writer's RESTART waits for readers of older snapshots.
pub(super) const RESTART_WAIT: Duration = Duration::from_millis(5);
/// The writer connection's busy timeout otherwise (as every connection's,
/// see `open_connection`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the writer and the checkpointer share.
#[derive(Default)]
pub(super) struct WalShared {
    /// Commits since the checkpointer's last pass.
    commits: AtomicU64,
    /// Set by the checkpointer when the WAL is past the bound: the
    /// writer restarts it (see [`WalCheckpoints::restart_if_due`]).
    restart_due: AtomicBool,
    /// Held while checkpointing, so that the writer's RESTART never waits
    /// for a passive pass: it is skipped while one runs.
    checkpointing: Mutex<()>,
    /// Wakes the checkpointer when it is stopped.
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The checkpointer thread and the writer's side of it.
pub(super) struct WalCheckpoints {
    shared: Arc<WalShared>,
    thread: Option<JoinHandle<()>>,
}

/// The result of `PRAGMA wal_checkpoint`: whether it could not finish
/// (busy), the WAL's frames, and how many of them are in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CheckpointPass {
    pub(super) busy: bool,
    pub(super) wal_frames: i64,
    pub(super) copied: i64,
}

/// Runs `PRAGMA wal_checkpoint(MODE)` on `conn`.
pub(super) fn checkpoint(conn: &Connection, mode: &str) -> StoreResult<CheckpointPass> {
    let (busy, wal_frames, copied): (i64, i64, i64) = conn
        .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| StoreError::Db(format!("WAL checkpoint ({mode}) failed: {e}")))?;
    Ok(CheckpointPass {
        busy: busy != 0,
        wal_frames,
        copied,
    })
}

/// Configures the writer's connection: no automatic checkpoints (the
/// checkpointer's), the WAL file cut back to the bound after a restart.
pub(super) fn configure_writer(conn: &Connection) -> StoreResult<()> {
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_BOUND_FRAMES.saturating_mul(4096))?;
    Ok(())
}

impl WalCheckpoints {
    /// Starts the checkpointer on `conn` (a connection of its own to the
    /// database, with the writer's `synchronous`, so that a checkpoint
    /// syncs the database before the WAL may be reused).
    pub(super) fn start(conn: Connection) -> StoreResult<WalCheckpoints> {
        let shared = Arc::new(WalShared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tame-store-checkpointer".into())
            .spawn(move || run(&conn, &theirs))
            .map_err(|e| StoreError::Db(format!("cannot start the WAL checkpointer thread: {e}")))?;
        Ok(WalCheckpoints {
            shared,
            thread: Some(thread),
        })
    }

    /// Told by the writer after each commit.
    pub(super) fn committed(&self) {
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Called by the writer between batches: restarts the WAL when the
    /// checkpointer found it past the bound and no passive pass runs.
    /// A restart that readers kept from finishing is tried again later.
    pub(super) fn restart_if_due(&self, conn: &Connection) {
        if !self.shared.restart_due.load(Ordering::Acquire) {
            return;
        }
        let Ok(_held) = self.shared.checkpointing.try_lock() else {
            return;
        };
        let started = Instant::now();
        match restart(conn) {
            Ok(pass) => {
                if !pass.busy {
                    self.shared.restart_due.store(false, Ordering::Release);
                }
                tracing::debug!(?pass, micros = started.elapsed().as_micros(), "WAL restart checkpoint");
            }
            Err(e) => tracing::warn!(error = %e, "WAL restart checkpoint failed"),
        }
    }

    /// Stops the checkpointer (after the writer's last commit).
    pub(super) fn stop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WalCheckpoints {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A RESTART checkpoint that waits for readers at most [`RESTART_WAIT`]
/// (the connection's busy timeout is put back after it).
fn restart(conn: &Connection) -> StoreResult<CheckpointPass> {
    conn.busy_timeout(RESTART_WAIT)?;
    let pass = checkpoint(conn, "RESTART");
    conn.busy_timeout(BUSY_TIMEOUT)?;
    pass
}

/// The bound in force (tests lower it).
fn bound() -> i64 {
    #[cfg(test)]
    {
        let lowered = tests::BOUND.load(Ordering::Relaxed);
        if lowered > 0 {
            return lowered;
        }
    }
    WAL_BOUND_FRAMES
}

/// The checkpointer: a passive pass every [`CHECKPOINT_INTERVAL`] while
/// there were commits, flagging the WAL for a restart past the bound.
fn run(conn: &Connection, shared: &WalShared) {
    loop {
        {
            let stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
            if *stop {
                break;
            }
            let (stop, _) = shared
                .wake
                .wait_timeout(stop, CHECKPOINT_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner);
            if *stop {
                break;
            }
        }
        if shared.commits.swap(0, Ordering::Relaxed) == 0 {
            continue;
        }
        let _held = shared.checkpointing.lock().unwrap_or_else(PoisonError::into_inner);
        // Past the bound, a second pass right away copies what came in
        // during the first, so that the writer's RESTART finds little left.
        let mut over = false;
        for _ in 0..2 {
            let started = Instant::now();
            match checkpoint(conn, "PASSIVE") {
                Ok(pass) => {
                    tracing::trace!(?pass, micros = started.elapsed().as_micros(), "WAL passive checkpoint");
                    over = pass.wal_frames > bound();
                    if !over {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    break;
                }
            }
        }
        if over {
            shared.restart_due.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::{Mutex, PoisonError};

    use serde_json::json;

    use crate::Store;
    use crate::sqlite::Durability;
    use crate::testing::{decision, sqlite_store};
    use crate::walvfs::tests::WRITER_WAL_READS;

    /// A lower [`super::WAL_BOUND_FRAMES`] for a test (0: the real one).
    pub(super) static BOUND: AtomicI64 = AtomicI64::new(0);
    /// The tests share the two counters above: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// Records `n` decisions of about a page each (3 KB of arguments),
    /// 200 in flight, and waits for all of them.
    fn record(store: &dyn Store, from: u64, n: u64) {
        let blob = "x".repeat(3000);
        let mut i = from;
        while i < from + n {
            let tickets: Vec<_> = (i..(i + 200).min(from + n))
                .map(|k| {
                    let mut d = decision(&format!("log-{k:08}"), &format!("s-{}", k % 50));
                    d.tool_args = json!({ "blob": blob, "n": k });
                    store.record_decision(d)
                })
                .collect();
            i += tickets.len() as u64;
            for t in tickets {
                t.wait().unwrap();
            }
        }
    }

    fn file_len(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// The writer used to checkpoint inside the commit that crossed 8192
    /// WAL frames (reading them all back and syncing the database while
    /// every caller waited). Now it never reads the WAL for a checkpoint:
    /// the checkpointer's thread copies it into the database.
    #[test]
    fn the_writer_does_not_checkpoint() {
        let _one = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        BOUND.store(0, Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = sqlite_store(&path, Durability::Full).unwrap();
        let before = WRITER_WAL_READS.load(Ordering::Relaxed);
        // About 10,000 frames: past the old threshold, within the bound.
        record(&store, 0, 10_000);
        let read = WRITER_WAL_READS.load(Ordering::Relaxed) - before;
        assert!(read < 4 << 20, "the writer read {read} bytes of its WAL");
        // The checkpointer copied the WAL into the database meanwhile.
        std::thread::sleep(super::CHECKPOINT_INTERVAL * 3);
        let db = file_len(&path);
        assert!(db > 20 << 20, "the database holds {db} bytes");
        drop(store);
        let store = sqlite_store(&path, Durability::Full).unwrap();
        let report = store.verify().unwrap();
        assert!(report.valid && report.records == 10_000, "{report:?}");
    }

    /// Under continuous writes the WAL stays near its bound: the writer
    /// restarts it between batches once the checkpointer finds it past.
    #[test]
    fn the_wal_stays_bounded() {
        let _one = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        BOUND.store(1024, Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let wal = dir.path().join("t.db-wal");
        let store = sqlite_store(&path, Durability::Normal).unwrap();
        let mut largest = 0;
        for round in 0..40 {
            record(&store, round * 200, 200);
            largest = largest.max(file_len(&wal));
        }
        BOUND.store(0, Ordering::Relaxed);
        // 8,000 pages written; the WAL file never held more than the
        // bound and what came in while it was being restarted.
        assert!(largest < 3 * 1024 * 4096, "the WAL file reached {largest} bytes");
        assert!(file_len(&path) > 20 << 20);
        drop(store);
        let store = sqlite_store(&path, Durability::Normal).unwrap();
        let report = store.verify().unwrap();
        assert!(report.valid && report.records == 8_000, "{report:?}");
    }
}
