//! Checkpoints: the audit chain's head, signed with the audit secret and
//! witnessed outside the database it protects.
//!
//! A hash chain shows an edited or a missing record in its middle, but not
//! records deleted from its end: the shortened log is a valid chain. So
//! the head (chain id, sequence number, hash, time) is written, signed, to
//! a checkpoint file (beside a SQLite database by default, configured for
//! PostgreSQL) and to the JSON log, after the records it names are
//! committed, at most every [`CHECKPOINT_INTERVAL`] and on shutdown. The
//! file is written aside and renamed over the old one, synced, by a
//! thread of its own: the writer only hands it the head after a commit.
//!
//! At start the log is held against the file: a log shorter than the
//! witnessed head, or whose record at the witnessed sequence number is
//! another, is logged as an error, and the checkpoint is kept in the file
//! as a *dispute*. The store goes on (refusing to start would stop every
//! decision), but new records chained onto the shortened log never make
//! it valid again: `verify` holds the log against every dispute as well
//! as the newest head, so the break stays reported until an operator moves
//! the file aside. A checkpoint file that is missing although the database
//! says it was written, or that is not signed with the audit secret, is a
//! dispute too. Someone who can rewrite both the database and this file
//! can still hide a deletion from the local check: the JSON log's copies
//! of the checkpoints are the witness kept elsewhere.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::canonical::canonical_json;
use crate::record::HmacSha256;
use crate::{ChainProblem, ChainProblemKind, Checkpoint, StoreError, StoreResult, format_timestamp};

/// How often, at most, a new head is written to the checkpoint file.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// How often, at most, a checkpoint goes to the JSON log (and on shutdown).
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Most disputes a checkpoint file keeps (the first ones and the newest).
const MAX_DISPUTES: usize = 64;
/// The checkpoint file format this build writes and reads.
const FILE_VERSION: u32 = 1;

fn update_field(m: &mut HmacSha256, field: &[u8]) {
    m.update(&(field.len() as u64).to_be_bytes());
    m.update(field);
}

impl Checkpoint {
    fn tag(key: &HmacSha256, chain: &str, seq: u64, head: &str, at: &str) -> HmacSha256 {
        let mut m = key.clone();
        // Domain separation from the records' HMACs, which use the same key.
        update_field(&mut m, b"tame audit checkpoint v1");
        update_field(&mut m, chain.as_bytes());
        m.update(&seq.to_be_bytes());
        update_field(&mut m, head.as_bytes());
        update_field(&mut m, at.as_bytes());
        m
    }

    /// The checkpoint of `seq` records ending in `head`, signed now.
    pub(crate) fn sign(key: &HmacSha256, chain: &str, seq: u64, head: &str) -> Checkpoint {
        let at = format_timestamp(jiff::Timestamp::now());
        let mac = hex::encode(Self::tag(key, chain, seq, head, &at).finalize().into_bytes());
        Checkpoint {
            chain: chain.to_string(),
            seq,
            head: head.to_string(),
            at,
            mac,
        }
    }

    /// Whether the checkpoint was signed with `key` (constant-time).
    pub(crate) fn is_signed_by(&self, key: &HmacSha256) -> bool {
        let Ok(mac) = hex::decode(&self.mac) else { return false };
        Self::tag(key, &self.chain, self.seq, &self.head, &self.at)
            .verify_slice(&mac)
            .is_ok()
    }
}

/// A checkpoint the log did not match when it was found (or, without one,
/// a checkpoint file found missing or unreadable), kept so that `verify`
/// goes on reporting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dispute {
    pub(crate) checkpoint: Option<Checkpoint>,
    /// What was found, as it was reported then.
    pub(crate) problem: String,
    pub(crate) found_at: String,
}

impl Dispute {
    fn new(checkpoint: Option<Checkpoint>, problem: String) -> Dispute {
        Dispute {
            checkpoint,
            problem,
            found_at: format_timestamp(jiff::Timestamp::now()),
        }
    }
}

/// The checkpoint file's content, without its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileBody {
    version: u32,
    checkpoint: Option<Checkpoint>,
    disputes: Vec<Dispute>,
}

/// The checkpoint file: its content and an HMAC over all of it, so that
/// no dispute can be dropped from it unnoticed.
#[derive(Debug, Serialize, Deserialize)]
struct FileDoc {
    #[serde(flatten)]
    body: FileBody,
    mac: String,
}

fn file_tag(key: &HmacSha256, body: &FileBody) -> HmacSha256 {
    let mut m = key.clone();
    update_field(&mut m, b"tame audit checkpoint file v1");
    let text = serde_json::to_value(body)
        .map(|v| canonical_json(&v))
        .unwrap_or_default();
    update_field(&mut m, text.as_bytes());
    m
}

/// Reads the checkpoint file: `Ok(None)` when there is none, `Err` (the
/// problem, for a dispute) when it cannot be read or trusted.
fn read_file(path: &Path, key: &HmacSha256) -> Result<Option<FileBody>, String> {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("the checkpoint file `{shown}` cannot be read: {e}")),
    };
    let doc: FileDoc = serde_json::from_str(&text)
        .map_err(|e| format!("the checkpoint file `{shown}` is not a checkpoint file: {e}"))?;
    if doc.body.version > FILE_VERSION {
        return Err(format!(
            "the checkpoint file `{shown}` has version {}; this tame reads up to {FILE_VERSION}",
            doc.body.version
        ));
    }
    let signed = hex::decode(&doc.mac)
        .ok()
        .is_some_and(|mac| file_tag(key, &doc.body).verify_slice(&mac).is_ok());
    if !signed {
        return Err(format!(
            "the checkpoint file `{shown}` is not signed with this store's audit secret (altered, or \
             written with another secret)"
        ));
    }
    Ok(Some(doc.body))
}

/// Writes the checkpoint file: to a file beside it, synced, then renamed
/// over it, so that a crash leaves the old or the new file, whole.
fn write_file(path: &Path, key: &HmacSha256, body: FileBody) -> Result<(), StoreError> {
    use std::io::Write as _;
    let io = |e: std::io::Error| StoreError::Io {
        path: path.display().to_string(),
        message: format!("cannot write the checkpoint file: {e}"),
    };
    let mac = hex::encode(file_tag(key, &body).finalize().into_bytes());
    let text = serde_json::to_string_pretty(&FileDoc { body, mac }).map_err(|e| StoreError::Io {
        path: path.display().to_string(),
        message: format!("cannot encode the checkpoint: {e}"),
    })?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let mut file = std::fs::File::create(&temp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_data().map_err(io)?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io)?;
    // The rename itself is made durable by syncing the directory (where
    // directories can be opened; elsewhere the rename is left to the OS).
    if let Some(dir) = path
        .parent()
        .map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d })
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// A new random chain id (hex), for a database whose chain has none yet.
pub(crate) fn new_chain_id() -> StoreResult<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| StoreError::Secret(format!("no randomness for a chain id: {e}")))?;
    Ok(hex::encode(id))
}

/// The problem of a log against checkpoint `cp`: the log of chain
/// `db_chain` ends at `last_seq`, and its record at `cp.seq` hashes to
/// `hash_at` (`None`: there is no such record).
pub(crate) fn check_claim(
    cp: &Checkpoint,
    db_chain: &str,
    last_seq: u64,
    hash_at: Option<&str>,
) -> Option<ChainProblem> {
    if cp.seq == 0 {
        return None;
    }
    let replaced = if cp.chain == db_chain {
        String::new()
    } else {
        format!(
            " (the checkpoint is of chain `{}`, the database holds chain `{db_chain}`: the database was \
             replaced or emptied)",
            cp.chain
        )
    };
    if cp.seq > last_seq {
        let first = last_seq + 1;
        let deleted = if first == cp.seq {
            format!("record {first} was deleted")
        } else {
            format!("records {first} to {} were deleted", cp.seq)
        };
        return Some(ChainProblem {
            kind: ChainProblemKind::Truncated,
            seq: first,
            ref_id: None,
            message: format!(
                "log shorter than witnessed head (seq {}, found {last_seq}): {deleted} after the checkpoint of {}{replaced}",
                cp.seq, cp.at
            ),
        });
    }
    if hash_at != Some(cp.head.as_str()) {
        return Some(ChainProblem {
            kind: ChainProblemKind::Diverged,
            seq: cp.seq,
            ref_id: None,
            message: format!(
                "record {} is not the record witnessed by the checkpoint of {}: the log was cut and written \
                 anew from there, or replaced{replaced}",
                cp.seq, cp.at
            ),
        });
    }
    None
}

/// The problem a dispute without a checkpoint stands for.
fn witness_problem(d: &Dispute) -> ChainProblem {
    ChainProblem {
        kind: ChainProblemKind::Witness,
        seq: 0,
        ref_id: None,
        message: format!("{} (found at {})", d.problem, d.found_at),
    }
}

/// What the log must match: the checkpoints a check holds it against.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claims {
    /// The newest committed head, signed for the report.
    pub(crate) latest: Option<Checkpoint>,
    pub(crate) disputes: Vec<Dispute>,
    /// The database's chain id.
    pub(crate) chain: String,
}

impl Claims {
    /// The sequence numbers whose hashes the check needs.
    pub(crate) fn seqs(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .latest
            .iter()
            .chain(self.disputes.iter().filter_map(|d| d.checkpoint.as_ref()))
            .map(|cp| cp.seq)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    }

    /// The problems of a log ending at `last_seq` whose records hash as
    /// `hash_at` says (for the sequence numbers of [`Claims::seqs`]).
    pub(crate) fn problems(&self, last_seq: u64, hash_at: impl Fn(u64) -> Option<String>) -> Vec<ChainProblem> {
        let mut out = Vec::new();
        for d in &self.disputes {
            let problem = match &d.checkpoint {
                Some(cp) => check_claim(cp, &self.chain, last_seq, hash_at(cp.seq).as_deref()),
                None => Some(witness_problem(d)),
            };
            out.extend(problem);
        }
        if let Some(cp) = &self.latest {
            out.extend(check_claim(cp, &self.chain, last_seq, hash_at(cp.seq).as_deref()));
        }
        // Several checkpoints may point at the same break.
        let mut seen = Vec::with_capacity(out.len());
        out.retain(|p: &ChainProblem| {
            let key = (p.kind, p.seq);
            let new = !seen.contains(&key);
            seen.push(key);
            new
        });
        out
    }
}

/// What the database says about its witness, read at open.
#[derive(Debug)]
pub(crate) struct LogState<'a> {
    /// The database's chain id.
    pub(crate) chain: &'a str,
    /// The last record's sequence number (`0`: empty).
    pub(crate) last_seq: u64,
    /// The checkpoint file the database was last witnessed by (meta
    /// `checkpoint_file`), if any.
    pub(crate) witnessed_by: Option<&'a str>,
}

/// Holds the log against the checkpoint file at `path` when a store
/// opens: every problem is logged as an error, and the disputes the file
/// must keep from now on are returned (those it had, and the new ones).
/// `hash_at` reads the hash of one record of the log.
pub(crate) fn reconcile(
    path: &Path,
    key: &HmacSha256,
    log: &LogState<'_>,
    mut hash_at: impl FnMut(u64) -> StoreResult<Option<String>>,
) -> StoreResult<Vec<Dispute>> {
    let shown = path.display().to_string();
    let mut disputes = Vec::new();
    let latest = match read_file(path, key) {
        Ok(Some(body)) => {
            disputes = body.disputes;
            body.checkpoint
        }
        Ok(None) => {
            if log.last_seq > 0 && log.witnessed_by == Some(shown.as_str()) {
                disputes.push(Dispute::new(
                    None,
                    format!(
                        "the checkpoint file `{shown}` that witnessed this audit log is missing (deleted?): \
                         records deleted from the end of the log before then cannot be told"
                    ),
                ));
            } else if log.last_seq > 0 {
                tracing::warn!(
                    file = %shown,
                    seq = log.last_seq,
                    "no checkpoint witnesses the audit log yet: the first is written now"
                );
            }
            None
        }
        Err(problem) => {
            // Kept for whoever looks into it; the new file replaces it.
            let mut aside = path.as_os_str().to_owned();
            aside.push(".rejected");
            if let Err(e) = std::fs::rename(path, &aside) {
                tracing::warn!(file = %shown, error = %e, "cannot move the rejected checkpoint file aside");
            }
            disputes.push(Dispute::new(None, problem));
            None
        }
    };
    if let Some(cp) = latest {
        if !cp.is_signed_by(key) {
            disputes.push(Dispute::new(
                None,
                format!("the checkpoint in `{shown}` is not signed with this store's audit secret"),
            ));
        } else if let Some(problem) = check_claim(&cp, log.chain, log.last_seq, hash_at(cp.seq)?.as_deref()) {
            disputes.push(Dispute::new(Some(cp), problem.message));
        }
    }
    // Every open says it again, loudly, until the file is moved aside.
    for d in &disputes {
        let still = match &d.checkpoint {
            Some(cp) => check_claim(cp, log.chain, log.last_seq, hash_at(cp.seq)?.as_deref()).map(|p| p.message),
            None => Some(d.problem.clone()),
        };
        if let Some(problem) = still {
            tracing::error!(
                checkpoints = %shown,
                found_at = %d.found_at,
                "AUDIT LOG DOES NOT MATCH ITS WITNESS: {problem}"
            );
        }
    }
    if disputes.len() > MAX_DISPUTES {
        // The first ones (the original break) and the newest.
        let newest = disputes.split_off(disputes.len() - MAX_DISPUTES / 2);
        disputes.truncate(MAX_DISPUTES / 2);
        disputes.extend(newest);
    }
    Ok(disputes)
}

/// The witness of a store's chain head: holds the newest committed head
/// the writer published, writes it to the checkpoint file (if any) and
/// the JSON log from a thread of its own, and keeps the disputes.
#[derive(Debug)]
pub(crate) struct Witness {
    sink: Option<PathBuf>,
    key: HmacSha256,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Shared {
    live: Mutex<Live>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct Live {
    chain: String,
    /// The newest committed head: sequence number and hash.
    head: Option<(u64, String)>,
    disputes: Vec<Dispute>,
    /// Bumped whenever the disputes change (the file is then rewritten).
    disputes_version: u64,
    /// The head signed for reports, kept until the head moves (so that two
    /// checks of an unchanged log report the same checkpoint).
    signed: Option<Checkpoint>,
    stop: bool,
}

impl Shared {
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Witness {
    /// A witness writing to `sink` (`None`: to the JSON log only), signing
    /// with `key`. It writes nothing before [`Witness::start`].
    pub(crate) fn new(sink: Option<PathBuf>, key: HmacSha256) -> Arc<Witness> {
        Arc::new(Witness {
            sink,
            key,
            shared: Arc::default(),
            thread: Mutex::new(None),
        })
    }

    /// The checkpoint file, if any.
    pub(crate) fn sink(&self) -> Option<&Path> {
        self.sink.as_deref()
    }

    /// Writes the first checkpoint of chain `chain` at `head` with
    /// `disputes` (failing the open when the file cannot be written) and
    /// starts the thread that writes the next ones.
    pub(crate) fn start(&self, chain: &str, head: (u64, String), disputes: Vec<Dispute>) -> StoreResult<()> {
        {
            let mut live = self.shared.live();
            live.chain = chain.to_string();
            live.head = Some(head.clone());
            live.disputes = disputes.clone();
        }
        let first = Checkpoint::sign(&self.key, chain, head.0, &head.1);
        if let Some(path) = &self.sink {
            write_file(
                path,
                &self.key,
                FileBody {
                    version: FILE_VERSION,
                    checkpoint: Some(first.clone()),
                    disputes,
                },
            )?;
        }
        log_checkpoint(&first, "audit checkpoint at start");
        let (sink, key, shared) = (self.sink.clone(), self.key.clone(), Arc::clone(&self.shared));
        let written = (head, 0);
        let handle = std::thread::Builder::new()
            .name("tame-checkpoint".into())
            .spawn(move || run(sink.as_deref(), &key, &shared, written))
            .map_err(|e| StoreError::Db(format!("cannot start the checkpoint thread: {e}")))?;
        *self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    /// The writer's newest committed head (cheap: no I/O, no wake-up).
    pub(crate) fn publish(&self, seq: u64, hash: &str) {
        let mut live = self.shared.live();
        match &mut live.head {
            Some((s, h)) if *s == seq => {
                if h != hash {
                    hash.clone_into(h);
                }
            }
            Some((s, h)) => {
                *s = seq;
                hash.clone_into(h);
            }
            None => live.head = Some((seq, hash.to_string())),
        }
    }

    /// Keeps a new dispute (written with the next checkpoint).
    pub(crate) fn dispute(&self, checkpoint: Option<Checkpoint>, problem: String) {
        tracing::error!(checkpoints = ?self.sink, "AUDIT LOG DOES NOT MATCH ITS WITNESS: {problem}");
        let mut live = self.shared.live();
        live.disputes.push(Dispute::new(checkpoint, problem));
        live.disputes_version += 1;
    }

    /// What a check must hold the log against now.
    pub(crate) fn claims(&self) -> Claims {
        let mut live = self.shared.live();
        let latest = match (&live.head, &live.signed) {
            (None, _) => None,
            (Some((seq, hash)), Some(cp)) if cp.seq == *seq && &cp.head == hash => Some(cp.clone()),
            (Some((seq, hash)), _) => Some(Checkpoint::sign(&self.key, &live.chain, *seq, hash)),
        };
        live.signed.clone_from(&latest);
        Claims {
            latest,
            disputes: live.disputes.clone(),
            chain: live.chain.clone(),
        }
    }

    /// Holds the log (ending at `last_seq`, `hash_at` reading its hashes)
    /// against the newest published head, keeping a dispute when it no
    /// longer matches (e.g. a database that lost committed records).
    pub(crate) fn recheck(
        &self,
        last_seq: u64,
        hash_at: impl FnOnce(u64) -> StoreResult<Option<String>>,
    ) -> StoreResult<()> {
        let claims = self.claims();
        let Some(cp) = claims.latest else { return Ok(()) };
        if let Some(p) = check_claim(&cp, &claims.chain, last_seq, hash_at(cp.seq)?.as_deref()) {
            self.dispute(Some(cp), p.message);
        }
        Ok(())
    }

    /// Writes the final checkpoint and stops the thread (call after the
    /// writer has stopped). Idempotent.
    pub(crate) fn stop(&self) {
        self.shared.live().stop = true;
        self.shared.wake.notify_all();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_checkpoint(cp: &Checkpoint, what: &str) {
    tracing::info!(
        target: "tame_store::checkpoint",
        chain = %cp.chain,
        seq = cp.seq,
        head = %cp.head,
        at = %cp.at,
        mac = %cp.mac,
        "{what}"
    );
}

/// The witness thread: every [`CHECKPOINT_INTERVAL`], writes the head if
/// it moved (or the disputes changed); on stop, writes the last one.
fn run(sink: Option<&Path>, key: &HmacSha256, shared: &Shared, mut written: ((u64, String), u64)) {
    let mut logged_at = Instant::now();
    let mut logged_seq = written.0.0;
    loop {
        let (chain, head, disputes, stop) = {
            let mut live = shared.live();
            if !live.stop {
                live = shared
                    .wake
                    .wait_timeout(live, CHECKPOINT_INTERVAL)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            let Some(head) = live.head.clone() else {
                if live.stop {
                    break;
                }
                continue;
            };
            let changed = head != written.0 || live.disputes_version != written.1;
            if !changed && !live.stop {
                continue;
            }
            written = (head.clone(), live.disputes_version);
            (live.chain.clone(), head, live.disputes.clone(), live.stop)
        };
        let cp = Checkpoint::sign(key, &chain, head.0, &head.1);
        if let Some(path) = sink {
            let body = FileBody {
                version: FILE_VERSION,
                checkpoint: Some(cp.clone()),
                disputes,
            };
            if let Err(e) = write_file(path, key, body) {
                tracing::error!(error = %e, "the audit checkpoint was not written");
            }
        }
        if stop || (cp.seq != logged_seq && logged_at.elapsed() >= LOG_INTERVAL) {
            log_checkpoint(
                &cp,
                if stop {
                    "audit checkpoint at shutdown"
                } else {
                    "audit checkpoint"
                },
            );
            logged_at = Instant::now();
            logged_seq = cp.seq;
        } else {
            tracing::debug!(seq = cp.seq, "audit checkpoint written");
        }
        if stop {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::mac_from_key;

    fn key(byte: u8) -> HmacSha256 {
        mac_from_key(&[byte; 32]).unwrap()
    }

    #[test]
    fn checkpoints_are_signed_over_every_field() {
        let k = key(1);
        let cp = Checkpoint::sign(&k, "c1", 7, "ab");
        assert!(cp.is_signed_by(&k));
        assert!(!cp.is_signed_by(&key(2)));
        for forged in [
            Checkpoint { seq: 6, ..cp.clone() },
            Checkpoint {
                head: "ac".into(),
                ..cp.clone()
            },
            Checkpoint {
                chain: "c2".into(),
                ..cp.clone()
            },
            Checkpoint {
                at: "x".into(),
                ..cp.clone()
            },
        ] {
            assert!(!forged.is_signed_by(&k), "{forged:?}");
        }
    }

    #[test]
    fn the_file_round_trips_and_an_edited_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.checkpoint");
        let k = key(1);
        let body = FileBody {
            version: FILE_VERSION,
            checkpoint: Some(Checkpoint::sign(&k, "c1", 7, "ab")),
            disputes: vec![Dispute::new(None, "gone".into())],
        };
        write_file(&path, &k, body.clone()).unwrap();
        assert_eq!(read_file(&path, &k).unwrap(), Some(body));
        assert!(read_file(&path, &key(2)).unwrap_err().contains("not signed"));
        // Dropping the dispute breaks the file's signature.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["disputes"] = serde_json::json!([]);
        std::fs::write(&path, doc.to_string()).unwrap();
        assert!(read_file(&path, &k).unwrap_err().contains("not signed"));
        assert_eq!(read_file(&dir.path().join("none"), &k).unwrap(), None);
    }

    #[test]
    fn a_claim_finds_a_short_log_and_another_record() {
        let k = key(1);
        let cp = Checkpoint::sign(&k, "c1", 7, "ab");
        assert_eq!(check_claim(&cp, "c1", 9, Some("ab")), None);
        let short = check_claim(&cp, "c1", 5, None).unwrap();
        assert_eq!(short.kind, ChainProblemKind::Truncated);
        assert_eq!(short.seq, 6);
        assert!(
            short
                .message
                .starts_with("log shorter than witnessed head (seq 7, found 5)"),
            "{}",
            short.message
        );
        let other = check_claim(&cp, "c1", 9, Some("cd")).unwrap();
        assert_eq!(other.kind, ChainProblemKind::Diverged);
        assert_eq!(other.seq, 7);
        let emptied = check_claim(&cp, "c2", 0, None).unwrap();
        assert!(emptied.message.contains("found 0"), "{}", emptied.message);
        assert!(emptied.message.contains("replaced or emptied"), "{}", emptied.message);
    }
}
