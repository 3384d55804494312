//! The one session-state type: what a session has done, as every frontend
//! and every store keeps it, and the facts conditions read from it
//! (`session.calls`, `session.count(tool[, window])`, `session.called(tool)`,
//! `session.labels`).
//!
//! The counts-as-run rule lives here, in [`SessionState::record`]: a call
//! counts as a call (in `session.calls`, `count`, `called`) only when it
//! ran: it was allowed, or a human released it (a release is an `allow`
//! decision). Denied calls and calls still waiting for approval did not
//! run; they are kept in the history and counted apart
//! ([`SessionState::not_run`]).
//!
//! Windows: `count(tool, window)` counts the calls at `now - window` up to
//! `now`, both ends included, where `now` is the time of the call being
//! decided. Calls given as fixed facts ([`SessionState::seeded`], a policy
//! test's `session:` or a `tame eval` line's) have no time and count in
//! every window.
//!
//! Caps (memory stays bounded however long a session runs):
//! - the history keeps the newest [`MAX_HISTORY`] calls; older ones are
//!   dropped from it (and counted in [`SessionState::history_dropped`]);
//! - each tool keeps the times of its newest [`MAX_TIMES_PER_TOOL`] calls
//!   for windows; a window reaching further back than the oldest kept time
//!   counts only the kept ones;
//! - the totals (`calls`, `count` without a window, `called`) are exact
//!   counters and never drop anything.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use foldhash::HashMap;
use jiff::{SignedDuration, Timestamp};
use tame_engine::{Action, MemoryFacts, RequestError, SessionFacts};

/// How many calls a session's history keeps (the newest).
pub const MAX_HISTORY: usize = 1_000;
/// How many call times are kept per session and tool for windowed counts.
pub const MAX_TIMES_PER_TOOL: usize = 10_000;

/// One call of a session's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStep {
    pub tool: Arc<str>,
    pub decision: Action,
    pub rule: Option<Arc<str>>,
    /// A human released it (an approval let it run).
    pub released: bool,
    pub at: Timestamp,
}

impl CallStep {
    /// The step of `request` decided as `decision` (not released).
    pub fn decided(request: &tame_engine::Request, decision: &tame_engine::Decision) -> CallStep {
        CallStep {
            tool: Arc::clone(&request.tool),
            decision: decision.action,
            rule: decision.rule_name.clone(),
            released: false,
            at: request.now,
        }
    }

    /// The counts-as-run rule: a call ran when it was allowed, or released
    /// by a human (a release is an `allow`). Denied calls and calls waiting
    /// for approval did not run.
    pub fn ran(&self) -> bool {
        self.decision == Action::Allow
    }
}

/// Calls of one tool: an exact total, fixed calls without a time (they
/// count in every window) and the newest call times.
#[derive(Debug, Default, Clone)]
struct Tally {
    total: i64,
    fixed: i64,
    /// Call times in microseconds since the Unix epoch, ascending.
    times: VecDeque<i64>,
}

impl Tally {
    fn note(&mut self, at: Timestamp) {
        self.total = self.total.saturating_add(1);
        let micros = at.as_microsecond();
        // Calls arrive almost always in order; keep the deque sorted anyway.
        let pos = self.times.partition_point(|&t| t <= micros);
        self.times.insert(pos, micros);
        if self.times.len() > MAX_TIMES_PER_TOOL {
            self.times.pop_front();
        }
    }

    fn count(&self, window: Option<SignedDuration>, now: Timestamp) -> i64 {
        let Some(window) = window else {
            return self.total.saturating_add(self.fixed);
        };
        let now_us = now.as_microsecond();
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let cutoff = now_us.saturating_sub(window_us);
        let start = self.times.partition_point(|&t| t < cutoff);
        let end = self.times.partition_point(|&t| t <= now_us);
        let timed = i64::try_from(end.saturating_sub(start)).unwrap_or(i64::MAX);
        timed.saturating_add(self.fixed)
    }
}

/// Everything a session has done, as conditions see it.
#[derive(Debug, Default, Clone)]
pub struct SessionState {
    /// Calls that ran plus fixed calls.
    calls: i64,
    ran: HashMap<Arc<str>, Tally>,
    not_run: HashMap<Arc<str>, Tally>,
    not_run_total: i64,
    history: VecDeque<CallStep>,
    history_dropped: u64,
    labels: Vec<Arc<str>>,
}

impl SessionState {
    /// A session that has done nothing yet.
    pub fn new() -> Self {
        SessionState::default()
    }

    /// A session starting from fixed facts (`{"calls": 3, "counts":
    /// {..}, "called": [..], "labels": [..]}`, read by
    /// [`MemoryFacts::from_json`]): its calls count in every window.
    pub fn seeded(facts: &MemoryFacts) -> Self {
        let mut state = SessionState {
            calls: facts.fixed_calls(),
            ..SessionState::default()
        };
        for (tool, n) in facts.fixed_counts() {
            let tally = state.ran.entry(Arc::clone(tool)).or_default();
            tally.fixed = tally.fixed.saturating_add(n);
        }
        for label in facts.fixed_labels() {
            state.add_label(label);
        }
        state
    }

    /// [`SessionState::seeded`] from JSON; errors name the JSON path
    /// (`session.counts.send_email: expected a non-negative integer`).
    pub fn from_json(v: &serde_json::Value) -> Result<Self, RequestError> {
        Ok(SessionState::seeded(&MemoryFacts::from_json(v)?))
    }

    /// Records a decided call (the counts-as-run rule: see [`CallStep::ran`]).
    pub fn record(&mut self, step: CallStep) {
        let tallies = if step.ran() {
            self.calls = self.calls.saturating_add(1);
            &mut self.ran
        } else {
            self.not_run_total = self.not_run_total.saturating_add(1);
            &mut self.not_run
        };
        match tallies.get_mut(&step.tool) {
            Some(tally) => tally.note(step.at),
            None => tallies.entry(Arc::clone(&step.tool)).or_default().note(step.at),
        }
        if self.history.len() >= MAX_HISTORY {
            self.history.pop_front();
            self.history_dropped = self.history_dropped.saturating_add(1);
        }
        self.history.push_back(step);
    }

    /// Records the call an enforcement outcome decided.
    pub fn apply(&mut self, outcome: &crate::Outcome) {
        self.record(outcome.step.clone());
    }

    /// Attaches a label to the session (kept once), e.g. `secret` after a
    /// result revealed one.
    pub fn add_label(&mut self, label: &str) {
        if !self.labels.iter().any(|l| &**l == label) {
            self.labels.push(Arc::from(label));
        }
    }

    /// The facts conditions read, as seen at `now` (windows end there).
    pub fn view(&self, now: Timestamp) -> FactsView<'_> {
        FactsView { state: self, now }
    }

    /// Calls that ran (plus fixed calls).
    pub fn calls(&self) -> i64 {
        self.calls
    }

    /// Calls of `tool` that ran, within `window` before `now` when given.
    pub fn count(&self, tool: &str, window: Option<SignedDuration>, now: Timestamp) -> i64 {
        self.ran.get(tool).map_or(0, |t| t.count(window, now))
    }

    /// Calls of `tool` that did not run (denied, or waiting for approval),
    /// within `window` before `now` when given.
    pub fn not_run(&self, tool: &str, window: Option<SignedDuration>, now: Timestamp) -> i64 {
        self.not_run.get(tool).map_or(0, |t| t.count(window, now))
    }

    /// Calls that did not run, of every tool.
    pub fn not_run_total(&self) -> i64 {
        self.not_run_total
    }

    /// The newest calls, oldest first (at most [`MAX_HISTORY`]).
    pub fn history(&self) -> impl ExactSizeIterator<Item = &CallStep> {
        self.history.iter()
    }

    /// Calls dropped from the history by its cap.
    pub fn history_dropped(&self) -> u64 {
        self.history_dropped
    }

    /// The session's labels, in the order they came.
    pub fn labels(&self) -> &[Arc<str>] {
        &self.labels
    }
}

/// A session's facts at one instant, borrowed from its state.
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
        self.state.count(tool, window, self.now)
    }

    fn called(&self, tool: &str) -> bool {
        self.state.ran.get(tool).is_some_and(|t| t.total > 0 || t.fixed > 0)
    }

    fn labels(&self) -> Vec<Arc<str>> {
        self.state.labels.clone()
    }
}

/// One session's state behind a lock. Hold the lock from reading the
/// state to recording the decided call, so that two concurrent calls
/// cannot both slip under a rate limit.
#[derive(Debug, Default)]
pub struct SessionCell {
    state: Mutex<SessionState>,
    /// When the cell was last handed out (Unix seconds), for stores that
    /// let idle sessions leave memory.
    last_used: AtomicI64,
}

impl SessionCell {
    pub fn new(state: SessionState) -> Self {
        SessionCell {
            state: Mutex::new(state),
            last_used: AtomicI64::new(0),
        }
    }

    pub fn touch(&self, now: i64) {
        self.last_used.store(now, Ordering::Relaxed);
    }

    pub fn last_used(&self) -> i64 {
        self.last_used.load(Ordering::Relaxed)
    }

    /// Locks the session's state. A poisoned lock is recovered: every
    /// change of the state is one call that leaves it consistent.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`SessionCell::lock`] without waiting: `None` while another thread
    /// holds the lock.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, SessionState>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// A shared handle on one session's state.
pub type SessionHandle = Arc<SessionCell>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn step(tool: &str, decision: Action, at: Timestamp) -> CallStep {
        CallStep {
            tool: Arc::from(tool),
            decision,
            rule: None,
            released: false,
            at,
        }
    }

    #[test]
    fn counts_totals_windows_and_called() {
        let mut s = SessionState::new();
        s.record(step("send_email", Action::Allow, ts(1_000)));
        s.record(step("send_email", Action::Allow, ts(4_000)));
        s.record(step("read_file", Action::Allow, ts(4_500)));
        s.record(step("send_email", Action::Allow, ts(4_600)));
        let v = s.view(ts(5_000));
        assert_eq!(v.calls(), 4);
        assert_eq!(v.count("send_email", None), 3);
        assert_eq!(v.count("send_email", Some(SignedDuration::from_hours(1))), 2);
        assert_eq!(v.count("send_email", Some(SignedDuration::from_secs(400))), 1);
        assert_eq!(v.count("nothing", None), 0);
        assert!(v.called("read_file"));
        assert!(!v.called("write_file"));
    }

    #[test]
    fn only_calls_that_ran_count() {
        let mut s = SessionState::new();
        s.record(step("send_email", Action::Deny, ts(10)));
        s.record(step("send_email", Action::Approve, ts(11)));
        let v = s.view(ts(20));
        assert_eq!(v.calls(), 0);
        assert_eq!(v.count("send_email", None), 0);
        assert!(!v.called("send_email"));
        assert_eq!(s.not_run("send_email", None, ts(20)), 2);
        assert_eq!(s.history().len(), 2);
        // A release is an allow: it ran.
        let mut released = step("send_email", Action::Allow, ts(12));
        released.released = true;
        s.record(released);
        assert_eq!(s.view(ts(20)).count("send_email", None), 1);
    }

    #[test]
    fn window_ends_at_now_and_includes_its_start() {
        let mut s = SessionState::new();
        for at in [100, 200, 300] {
            s.record(step("t", Action::Allow, ts(at)));
        }
        // [150, 300]: 200 and 300.
        assert_eq!(s.count("t", Some(SignedDuration::from_secs(150)), ts(300)), 2);
        // [100, 200]: the start is included, 300 is after now.
        assert_eq!(s.count("t", Some(SignedDuration::from_secs(100)), ts(200)), 2);
    }

    #[test]
    fn out_of_order_calls_stay_sorted() {
        let mut s = SessionState::new();
        for at in [300, 100, 200] {
            s.record(step("t", Action::Allow, ts(at)));
        }
        assert_eq!(s.count("t", Some(SignedDuration::from_secs(150)), ts(300)), 2);
        assert_eq!(s.count("t", Some(SignedDuration::from_secs(100)), ts(150)), 1);
    }

    #[test]
    fn fixed_facts_count_in_every_window_and_add_to_recorded_calls() {
        let mut s =
            SessionState::from_json(&json!({"calls": 3, "counts": {"send_email": 2}, "labels": ["secret_read"]}))
                .unwrap();
        s.record(step("send_email", Action::Allow, ts(1_000)));
        let v = s.view(ts(10_000));
        assert_eq!(v.calls(), 4);
        assert_eq!(v.count("send_email", None), 3);
        assert_eq!(v.count("send_email", Some(SignedDuration::from_secs(60))), 2);
        assert!(v.called("send_email"));
        assert_eq!(v.labels(), vec![Arc::<str>::from("secret_read")]);
        let e = SessionState::from_json(&json!({"counts": {"a": "two"}})).unwrap_err();
        assert_eq!(e.path, "session.counts.a");
    }

    #[test]
    fn caps_drop_the_oldest_and_keep_exact_totals() {
        let mut s = SessionState::new();
        let n = MAX_TIMES_PER_TOOL + 5;
        for i in 0..n {
            s.record(step("t", Action::Allow, ts(i as i64)));
        }
        let now = ts(1_000_000);
        assert_eq!(s.count("t", None, now), n as i64);
        assert_eq!(s.view(now).calls(), n as i64);
        assert_eq!(
            s.count("t", Some(SignedDuration::from_hours(1_000)), now),
            MAX_TIMES_PER_TOOL as i64
        );
        assert_eq!(s.history().len(), MAX_HISTORY);
        assert_eq!(s.history_dropped(), (n - MAX_HISTORY) as u64);
        // The history keeps the newest calls.
        assert_eq!(s.history().last().map(|c| c.at), Some(ts(n as i64 - 1)));
    }

    #[test]
    fn labels_are_kept_once() {
        let mut s = SessionState::new();
        s.add_label("secret_read");
        s.add_label("secret_read");
        assert_eq!(s.view(ts(0)).labels().len(), 1);
    }
}
