//! Session facts kept in memory: calls, per-tool counts with timestamps for
//! time windows, which tools were called, labels. The evaluator reads them
//! through [`SessionFacts`] without any I/O.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use foldhash::HashMap;
use jiff::{SignedDuration, Timestamp};
use tame_engine::SessionFacts;

/// How many call times are kept per session and tool for windowed counts.
/// Older calls still count in the totals; a window reaching further back
/// than the oldest kept time counts only the kept ones.
pub const MAX_TIMES_PER_TOOL: usize = 10_000;

#[derive(Debug, Default)]
struct ToolCalls {
    total: i64,
    /// Call times in microseconds since the Unix epoch, ascending.
    times: VecDeque<i64>,
}

/// The facts of one session.
#[derive(Debug, Default)]
pub struct SessionState {
    calls: i64,
    tools: HashMap<Arc<str>, ToolCalls>,
    labels: Vec<Arc<str>>,
}

impl SessionState {
    /// Records one call of `tool` at `at`.
    pub fn note_call(&mut self, tool: &str, at: Timestamp) {
        self.calls = self.calls.saturating_add(1);
        let entry = match self.tools.get_mut(tool) {
            Some(entry) => entry,
            None => self.tools.entry(Arc::from(tool)).or_default(),
        };
        entry.total = entry.total.saturating_add(1);
        let micros = to_micros(at);
        // Calls arrive almost always in order; keep the deque sorted anyway.
        let pos = entry.times.partition_point(|&t| t <= micros);
        entry.times.insert(pos, micros);
        if entry.times.len() > MAX_TIMES_PER_TOOL {
            entry.times.pop_front();
        }
    }

    /// Attaches a label to the session (kept once).
    pub fn add_label(&mut self, label: &str) {
        if !self.labels.iter().any(|l| &**l == label) {
            self.labels.push(Arc::from(label));
        }
    }

    /// A [`SessionFacts`] view of this state as seen at `now`.
    pub fn view(&self, now: Timestamp) -> FactsView<'_> {
        FactsView { state: self, now }
    }

    /// Calls recorded so far.
    pub fn calls(&self) -> i64 {
        self.calls
    }
}

fn to_micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

/// The facts of a session at one instant; borrowed from its locked state.
#[derive(Debug, Clone, Copy)]
pub struct FactsView<'a> {
    state: &'a SessionState,
    now: Timestamp,
}

impl SessionFacts for FactsView<'_> {
    fn calls(&self) -> i64 {
        self.state.calls
    }

    fn count(&self, tool: &str, window: Option<SignedDuration>) -> i64 {
        let Some(entry) = self.state.tools.get(tool) else {
            return 0;
        };
        let Some(window) = window else {
            return entry.total;
        };
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let cutoff = to_micros(self.now).saturating_sub(window_us);
        let now_us = to_micros(self.now);
        let start = entry.times.partition_point(|&t| t < cutoff);
        let end = entry.times.partition_point(|&t| t <= now_us);
        i64::try_from(end.saturating_sub(start)).unwrap_or(i64::MAX)
    }

    fn called(&self, tool: &str) -> bool {
        self.state.tools.get(tool).is_some_and(|e| e.total > 0)
    }

    fn labels(&self) -> Vec<Arc<str>> {
        self.state.labels.clone()
    }
}

/// One session's facts behind a lock. Hold the lock while evaluating and
/// noting a call so that two concurrent calls cannot both slip under a
/// rate limit.
#[derive(Debug, Default)]
pub struct SessionCell {
    state: Mutex<SessionState>,
    /// When the cell was last handed out (Unix seconds).
    last_used: AtomicI64,
}

impl SessionCell {
    pub(crate) fn new(state: SessionState) -> Self {
        SessionCell {
            state: Mutex::new(state),
            last_used: AtomicI64::new(0),
        }
    }

    pub(crate) fn touch(&self, now: i64) {
        self.last_used.store(now, Ordering::Relaxed);
    }

    pub(crate) fn last_used(&self) -> i64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Locks the session's facts. A poisoned lock is recovered: the state
    /// is plain counters and stays consistent.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A shared handle on one session's facts.
pub type FactsHandle = Arc<SessionCell>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn counts_totals_windows_and_called() {
        let mut s = SessionState::default();
        s.note_call("send_email", ts(1_000));
        s.note_call("send_email", ts(4_000));
        s.note_call("read_file", ts(4_500));
        s.note_call("send_email", ts(4_600));
        let v = s.view(ts(5_000));
        assert_eq!(v.calls(), 4);
        assert_eq!(v.count("send_email", None), 3);
        assert_eq!(v.count("send_email", Some(SignedDuration::from_hours(1))), 2);
        assert_eq!(v.count("send_email", Some(SignedDuration::from_secs(500))), 1);
        assert_eq!(v.count("nothing", None), 0);
        assert!(v.called("read_file"));
        assert!(!v.called("write_file"));
    }

    #[test]
    fn out_of_order_calls_stay_sorted() {
        let mut s = SessionState::default();
        s.note_call("t", ts(300));
        s.note_call("t", ts(100));
        s.note_call("t", ts(200));
        let v = s.view(ts(300));
        assert_eq!(v.count("t", Some(SignedDuration::from_secs(150))), 2);
        // Calls after `now` are not in a window ending at `now`.
        let v = s.view(ts(150));
        assert_eq!(v.count("t", Some(SignedDuration::from_secs(100))), 1);
    }

    #[test]
    fn labels_are_kept_once() {
        let mut s = SessionState::default();
        s.add_label("secret_read");
        s.add_label("secret_read");
        assert_eq!(s.view(ts(0)).labels().len(), 1);
    }

    #[test]
    fn windowed_count_is_capped_by_kept_times() {
        let mut s = SessionState::default();
        for i in 0..(MAX_TIMES_PER_TOOL as i64 + 5) {
            s.note_call("t", ts(i));
        }
        let v = s.view(ts(1_000_000));
        assert_eq!(v.count("t", None), MAX_TIMES_PER_TOOL as i64 + 5);
        assert_eq!(
            v.count("t", Some(SignedDuration::from_hours(1_000))),
            MAX_TIMES_PER_TOOL as i64
        );
    }
}
