//! `tame-wal`: the platform's default SQLite VFS, except that the writes to
//! a WAL file are gathered in memory and reach the file in a few large writes.
//!
//! SQLite writes each WAL frame as two writes (its 24-byte header, then the
//! page), so a commit of ten pages costs twenty system calls. Here they are
//! appended to a buffer while they are contiguous, and the buffer is
//! written (through the default VFS, in 64 KiB writes) before anything that
//! could observe the file: a sync, a read, a size query, a truncation, a
//! file control, a memory map, a close. With `synchronous=FULL` SQLite
//! syncs the WAL at every commit *before* it publishes the commit in the
//! WAL index, so no other connection can read a frame that is still in the
//! buffer. **Only connections with `synchronous=FULL` may use this VFS**:
//! with `NORMAL` a commit is published without a sync, and readers could
//! read frames that are not written yet.
//!
//! A WAL sync is an `fdatasync` of the file (SQLite's own unix VFS uses
//! `fsync`, which also writes the inode for every change of mtime), except
//! the first one of each handle, which goes through the default VFS so that
//! a newly created WAL also has its directory entry synced.
//!
//! Every other file (the database, journals) is the default VFS's own,
//! opened by it into the memory SQLite gave this VFS.

// The SQLite VFS interface is C: this module implements it with raw
// pointers. Every `unsafe` block relies only on what the interface
// guarantees (SQLite allocates `szOsFile` bytes per file and calls the
// methods of a file from one thread at a time).
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::fs::File;
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi;

/// The name connections pass to open a database through this VFS.
const NAME: &CStr = c"tame-wal";

/// A buffer larger than this is written before it grows further.
const MAX_GATHERED: usize = 4 << 20;
/// The largest write passed to the default VFS (the unix VFS writes at
/// most 128 KiB - 1 bytes per call).
const MAX_WRITE: usize = 64 << 10;

/// The default VFS this one wraps.
static BASE: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

/// Registers the VFS (once per process); the error says why it could not be.
pub(crate) fn register() -> Result<&'static CStr, String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` initializes SQLite if needed and
            // returns the default VFS, which lives as long as the process.
            let base = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
            if base.is_null() {
                return Err("SQLite has no default VFS to wrap".into());
            }
            // SAFETY: `base` is a valid, registered VFS.
            let b = unsafe { &*base };
            let Ok(size) = c_int::try_from(HEADER + usize::try_from(b.szOsFile).unwrap_or(usize::MAX)) else {
                return Err("the default VFS's file size is out of range".into());
            };
            BASE.store(base, Ordering::Release);
            // The default VFS's methods other than `xOpen` read only
            // `mxPathname` and `pAppData` of the VFS they are given, and
            // both are copied; `xOpen` is this module's.
            let vfs = Box::new(ffi::sqlite3_vfs {
                iVersion: b.iVersion,
                szOsFile: size,
                mxPathname: b.mxPathname,
                pNext: ptr::null_mut(),
                zName: NAME.as_ptr(),
                pAppData: b.pAppData,
                xOpen: Some(open),
                ..*b
            });
            // SAFETY: the VFS is leaked, so it outlives every connection.
            let rc = unsafe { ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0) };
            if rc == ffi::SQLITE_OK {
                Ok(())
            } else {
                Err(format!(
                    "cannot register the `{}` SQLite VFS (error {rc})",
                    NAME.to_string_lossy()
                ))
            }
        })
        .clone()
        .map(|()| NAME)
}

/// A WAL file: SQLite's handle, then the default VFS's file (at `HEADER`
/// bytes from the start, in the same allocation).
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    gather: *mut Gather,
}

/// Where the default VFS's file starts in the memory of a [`WalFile`].
const HEADER: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// The writes not yet passed on, and the handle the WAL is synced with.
struct Gather {
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    start: i64,
    path: PathBuf,
    /// Opened at the second sync (the first one goes through the default VFS).
    sync_file: Option<File>,
    synced_once: bool,
}

/// The default VFS's `xOpen`, on the pointer SQLite passed or on the inner
/// file of a [`WalFile`].
unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const std::ffi::c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = BASE.load(Ordering::Acquire);
    // SAFETY: `register` stored the default VFS before registering this one.
    let Some(base_open) = (unsafe { (*base).xOpen }) else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 || name.is_null() {
        // SAFETY: `file` has room for the default VFS's file (ours is larger).
        return unsafe { base_open(base, name, file, flags, out_flags) };
    }
    // SAFETY: SQLite gave `szOsFile` bytes at `file`, i.e. HEADER more than
    // the default VFS's file needs.
    let inner = unsafe { file.cast::<u8>().add(HEADER).cast::<ffi::sqlite3_file>() };
    // SAFETY: as above; `name` is a NUL-terminated path.
    let rc = unsafe { base_open(base, name, inner, flags, out_flags) };
    if rc != ffi::SQLITE_OK {
        // SAFETY: a failed open may still have set methods (then it must be closed).
        unsafe {
            if let Some(close) = (*inner).pMethods.as_ref().and_then(|m| m.xClose) {
                close(inner);
            }
            (*file).pMethods = ptr::null();
        }
        return rc;
    }
    // SAFETY: `name` is NUL-terminated and valid during the call.
    let path = path_of(unsafe { CStr::from_ptr(name) });
    let gather = Box::into_raw(Box::new(Gather {
        buf: Vec::new(),
        start: 0,
        path,
        sync_file: None,
        synced_once: false,
    }));
    // SAFETY: `file` is at least HEADER bytes, aligned for `sqlite3_file`
    // (SQLite allocates it with 8-byte alignment, all `WalFile` needs).
    unsafe {
        file.cast::<WalFile>().write(WalFile {
            base: ffi::sqlite3_file { pMethods: &METHODS },
            inner,
            gather,
        });
    }
    ffi::SQLITE_OK
}

/// A file name from SQLite as a path (its bytes, on Unix).
#[cfg(unix)]
fn path_of(name: &CStr) -> PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()))
}

/// A file name from SQLite as a path (UTF-8 elsewhere).
#[cfg(not(unix))]
fn path_of(name: &CStr) -> PathBuf {
    PathBuf::from(name.to_string_lossy().into_owned())
}

/// The inner file and its methods, and the gathered writes, of `file`.
///
/// # Safety
/// `file` was opened by [`open`] as a WAL file and not closed.
unsafe fn parts<'a>(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'a ffi::sqlite3_io_methods, &'a mut Gather) {
    // SAFETY: per the contract, `file` is a live `WalFile`, used by one thread.
    unsafe {
        let f = &*file.cast::<WalFile>();
        (f.inner, &*(*f.inner).pMethods, &mut *f.gather)
    }
}

/// Passes the gathered writes on, in as few writes as the default VFS
/// takes (it writes at most 128 KiB at a time).
///
/// # Safety
/// `inner` and `methods` are a live file of the default VFS and its methods.
unsafe fn flush(inner: *mut ffi::sqlite3_file, methods: &ffi::sqlite3_io_methods, g: &mut Gather) -> c_int {
    let Some(write) = methods.xWrite else {
        g.buf.clear();
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut offset = g.start;
    for chunk in g.buf.chunks(MAX_WRITE) {
        #[cfg(test)]
        tests::WAL_WRITES.with(|n| n.set(n.get() + 1));
        // SAFETY: `chunk` is at most MAX_WRITE bytes (fits a c_int); the
        // caller vouches for `inner`.
        rc = unsafe { write(inner, chunk.as_ptr().cast(), chunk.len() as c_int, offset) };
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += chunk.len() as i64;
    }
    // Written or not, these bytes are not retried: SQLite writes the frames
    // of a failed commit again.
    g.buf.clear();
    if g.buf.capacity() > MAX_GATHERED {
        g.buf.shrink_to(MAX_GATHERED);
    }
    rc
}

/// Defines an I/O method that passes the gathered writes on, then calls the
/// default VFS's method of the same name.
macro_rules! flush_then {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite calls the methods of files `open` opened.
            let (inner, methods, g) = unsafe { parts(file) };
            // SAFETY: `inner` is live; its methods are the default VFS's.
            let rc = unsafe { flush(inner, methods, g) };
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match methods.$field {
                // SAFETY: the arguments are SQLite's, passed on unchanged.
                Some(f) => unsafe { f(inner $(, $arg)*) },
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

/// Defines an I/O method that calls the default VFS's method of the same
/// name (one that cannot observe the file's content).
macro_rules! pass {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: SQLite calls the methods of files `open` opened.
            let (inner, methods, _) = unsafe { parts(file) };
            match methods.$field {
                // SAFETY: the arguments are SQLite's, passed on unchanged.
                Some(f) => unsafe { f(inner $(, $arg)*) },
                None => $missing,
            }
        }
    };
}

flush_then!(read_through, xRead, (buf: *mut c_void, amount: c_int, offset: ffi::sqlite3_int64));

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    #[cfg(test)]
    tests::count_read(amount);
    // SAFETY: SQLite's arguments, passed on unchanged.
    unsafe { read_through(file, buf, amount, offset) }
}
flush_then!(truncate, xTruncate, (size: ffi::sqlite3_int64));
flush_then!(file_size, xFileSize, (size: *mut ffi::sqlite3_int64));
flush_then!(file_control, xFileControl, (op: c_int, arg: *mut c_void));
flush_then!(fetch, xFetch, (offset: ffi::sqlite3_int64, amount: c_int, out: *mut *mut c_void));
pass!(unfetch, xUnfetch, (offset: ffi::sqlite3_int64, mapped: *mut c_void) -> c_int, ffi::SQLITE_IOERR);
pass!(lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_LOCK);
pass!(unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR_UNLOCK);
pass!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
pass!(sector_size, xSectorSize, () -> c_int, 4096);
pass!(device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
pass!(shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR_SHMMAP);
pass!(shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR_SHMLOCK);
pass!(shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite calls the methods of files `open` opened.
    let (inner, methods, _) = unsafe { parts(file) };
    if let Some(f) = methods.xShmBarrier {
        // SAFETY: the file is SQLite's, passed on unchanged.
        unsafe { f(inner) }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite calls the methods of files `open` opened.
    let (inner, methods, g) = unsafe { parts(file) };
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let end = g.start.saturating_add(i64::try_from(g.buf.len()).unwrap_or(i64::MAX));
    if !g.buf.is_empty() && (offset != end || g.buf.len() + len > MAX_GATHERED) {
        // SAFETY: `inner` is live; its methods are the default VFS's.
        let rc = unsafe { flush(inner, methods, g) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    if len > MAX_WRITE {
        #[cfg(test)]
        tests::WAL_WRITES.with(|n| n.set(n.get() + 1));
        return match methods.xWrite {
            // SAFETY: the arguments are SQLite's, passed on unchanged.
            Some(f) => unsafe { f(inner, data, amount, offset) },
            None => ffi::SQLITE_IOERR_WRITE,
        };
    }
    if g.buf.is_empty() {
        g.start = offset;
    }
    // SAFETY: SQLite passes `amount` readable bytes at `data`.
    g.buf
        .extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) });
    ffi::SQLITE_OK
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite calls the methods of files `open` opened.
    let (inner, methods, g) = unsafe { parts(file) };
    // SAFETY: `inner` is live; its methods are the default VFS's.
    let rc = unsafe { flush(inner, methods, g) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    if !g.synced_once {
        // The default VFS also syncs the directory of a file it created.
        let Some(base_sync) = methods.xSync else {
            return ffi::SQLITE_IOERR_FSYNC;
        };
        // SAFETY: as above.
        let rc = unsafe { base_sync(inner, flags) };
        g.synced_once = rc == ffi::SQLITE_OK;
        return rc;
    }
    let synced = match &g.sync_file {
        Some(f) => f.sync_data(),
        None => File::open(&g.path).and_then(|f| {
            let r = f.sync_data();
            g.sync_file = Some(f);
            r
        }),
    };
    match synced {
        Ok(()) => ffi::SQLITE_OK,
        Err(e) => {
            tracing::error!(error = %e, wal = %g.path.display(), "cannot sync the audit log's WAL");
            // Reopen next time: the handle may be what failed.
            g.sync_file = None;
            ffi::SQLITE_IOERR_FSYNC
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls the methods of files `open` opened, and calls
    // nothing on this one after `xClose`.
    unsafe {
        let (inner, methods, g) = parts(file);
        let flushed = flush(inner, methods, g);
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |f| f(inner));
        drop(Box::from_raw((*file.cast::<WalFile>()).gather));
        (*file).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use rusqlite::{Connection, OpenFlags};

    thread_local! {
        /// The writes passed to the default VFS's WAL files on this thread.
        pub(super) static WAL_WRITES: Cell<u64> = const { Cell::new(0) };
    }

    /// The bytes the store's writer threads (`tame-store-writer`) read from
    /// their WAL: a checkpoint reads the WAL's frames, commits barely do.
    pub(crate) static WRITER_WAL_READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    pub(super) fn count_read(amount: std::ffi::c_int) {
        if std::thread::current().name() == Some("tame-store-writer") {
            let n = u64::try_from(amount).unwrap_or(0);
            WRITER_WAL_READS.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn writer(path: &std::path::Path) -> Connection {
        let vfs = super::register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .unwrap();
        conn
    }

    /// A row's content, from its id (so a reader can check what it reads).
    fn value(id: i64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (id as usize * 31 + i) as u8).collect()
    }

    /// Every committed row, read back through the default VFS.
    fn check_rows(reader: &Connection, len: usize) -> i64 {
        let mut stmt = reader.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .unwrap();
        let mut n = 0;
        for row in rows {
            let (id, v) = row.unwrap();
            n += 1;
            assert_eq!(id, n, "rows are contiguous");
            assert_eq!(v, value(id, len), "row {id} reads back as written");
        }
        n
    }

    #[test]
    fn a_commit_reaches_the_wal_in_one_write_and_readers_see_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = writer(&path);
        let reader = Connection::open(&path).unwrap();
        let mut id = 0;
        for batch in 0..40 {
            let before = WAL_WRITES.get();
            let tx = w.unchecked_transaction().unwrap();
            // About 6 pages per commit: 12 writes without the VFS.
            for _ in 0..20 {
                id += 1;
                tx.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", (id, value(id, 1000)))
                    .unwrap();
            }
            tx.commit().unwrap();
            // Without the VFS: two writes per frame (more than 12 here).
            let writes = WAL_WRITES.get() - before;
            assert_eq!(writes, 1, "batch {batch}: the commit's frames took {writes} writes");
            assert_eq!(check_rows(&reader, 1000), id);
        }
        let frames: i64 = w.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).unwrap();
        assert!(frames > 80, "the commits wrote {frames} WAL frames");
    }

    #[test]
    fn large_transactions_spills_and_wal_restarts_read_back_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let len = 3000;
        {
            let w = writer(&path);
            // A tiny page cache spills pages into the WAL mid-transaction
            // (and reads them back); frequent checkpoints restart the WAL.
            w.pragma_update(None, "cache_size", 8).unwrap();
            w.pragma_update(None, "wal_autocheckpoint", 64).unwrap();
            let reader = Connection::open(&path).unwrap();
            let mut id = 0;
            // Past 64 KiB (several writes) and past 4 MiB (written mid-way).
            for rows in [1, 30, 200, 2000, 5] {
                let tx = w.unchecked_transaction().unwrap();
                for _ in 0..rows {
                    id += 1;
                    tx.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", (id, value(id, len)))
                        .unwrap();
                }
                // Read back inside the transaction: spilled pages come from the WAL.
                let inside: i64 = tx.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
                assert_eq!(inside, id);
                tx.commit().unwrap();
                assert_eq!(check_rows(&reader, len), id);
            }
        }
        // Reopened by the default VFS: the WAL and the database agree.
        let conn = Connection::open(&path).unwrap();
        let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        assert_eq!(check_rows(&conn, len), 2236);
    }
}
