//! The writer's queue, shared by the backends: the sending end the `Store`
//! write methods go through, each write as a job with the channel its
//! caller waits on, and the job's outcome, answered once its batch is
//! committed.

use std::sync::mpsc::Sender;

use jiff::Timestamp;

use crate::record::PreparedDecision;
use crate::{
    Approval, ApprovalDecision, DecisionReceipt, NewDecision, NewInput, NewPolicyVersion, NewResult, StoreError,
    StoreResult, Ticket,
};

pub(crate) type Ack<T> = tokio::sync::oneshot::Sender<StoreResult<T>>;

/// One write, queued for the writer thread.
pub(crate) enum Job {
    Decision(Box<PreparedDecision>, Ack<DecisionReceipt>),
    Result(NewResult, Ack<u64>),
    Input(NewInput, Ack<u64>),
    Approval(ApprovalDecision, Ack<Approval>),
    Expire(Timestamp, Ack<Vec<String>>),
    Policy(NewPolicyVersion, Ack<u64>),
    Flush(Ack<()>),
}

/// A job's outcome, sent once its batch is committed.
pub(crate) enum Done {
    Decision(Ack<DecisionReceipt>, StoreResult<DecisionReceipt>),
    Result(Ack<u64>, StoreResult<u64>),
    Input(Ack<u64>, StoreResult<u64>),
    Approval(Ack<Approval>, Box<StoreResult<Approval>>),
    Expire(Ack<Vec<String>>, StoreResult<Vec<String>>),
    Policy(Ack<u64>, StoreResult<u64>),
    Flush(Ack<()>),
}

/// The sending end of a writer thread's queue, shared by the backends:
/// each write becomes a [`Job`], and its ticket resolves once the job's
/// batch is committed (with [`StoreError::WriterGone`] when the writer
/// has stopped). The backends' `Store` write methods are these.
pub(crate) struct Queue(Option<Sender<Job>>);

impl Queue {
    pub(crate) fn new(sender: Sender<Job>) -> Queue {
        Queue(Some(sender))
    }

    /// Takes no more jobs: the writer drains what is queued and stops.
    pub(crate) fn close(&mut self) {
        self.0.take();
    }

    fn submit<T>(&self, make: impl FnOnce(Ack<T>) -> Job) -> Ticket<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        match &self.0 {
            Some(sender) if sender.send(make(tx)).is_ok() => Ticket::new(rx),
            _ => Ticket::ready(Err(StoreError::WriterGone)),
        }
    }

    pub(crate) fn decision(&self, decision: NewDecision) -> Ticket<DecisionReceipt> {
        // Prepared here, on the caller's thread (see `PreparedDecision`).
        let decision = Box::new(PreparedDecision::new(decision));
        self.submit(|ack| Job::Decision(decision, ack))
    }

    pub(crate) fn result(&self, result: NewResult) -> Ticket<u64> {
        self.submit(|ack| Job::Result(result, ack))
    }

    pub(crate) fn input(&self, input: NewInput) -> Ticket<u64> {
        self.submit(|ack| Job::Input(input, ack))
    }

    pub(crate) fn approval(&self, decision: ApprovalDecision) -> Ticket<Approval> {
        self.submit(|ack| Job::Approval(decision, ack))
    }

    pub(crate) fn expire(&self, now: Timestamp) -> Ticket<Vec<String>> {
        self.submit(|ack| Job::Expire(now, ack))
    }

    pub(crate) fn policy(&self, policy: NewPolicyVersion) -> Ticket<u64> {
        self.submit(|ack| Job::Policy(policy, ack))
    }

    pub(crate) fn flush(&self) -> Ticket<()> {
        self.submit(Job::Flush)
    }
}

impl Job {
    /// The outcome of a job that was not applied (its batch failed).
    pub(crate) fn skipped(self) -> Done {
        fn e<T>() -> StoreResult<T> {
            Err(StoreError::Db("not applied".into()))
        }
        match self {
            Job::Decision(_, a) => Done::Decision(a, e()),
            Job::Result(_, a) => Done::Result(a, e()),
            Job::Input(_, a) => Done::Input(a, e()),
            Job::Approval(_, a) => Done::Approval(a, Box::new(e())),
            Job::Expire(_, a) => Done::Expire(a, e()),
            Job::Policy(_, a) => Done::Policy(a, e()),
            Job::Flush(a) => Done::Flush(a),
        }
    }
}

impl Done {
    /// Sends the outcome, or `failed` when the batch did not commit. A
    /// caller that stopped waiting is not an error.
    pub(crate) fn finish(self, failed: Option<&str>) {
        fn send<T>(ack: Ack<T>, r: StoreResult<T>, failed: Option<&str>) {
            let r = match failed {
                Some(msg) => Err(StoreError::Db(msg.to_string())),
                None => r,
            };
            let _ = ack.send(r);
        }
        match self {
            Done::Decision(a, r) => send(a, r, failed),
            Done::Result(a, r) => send(a, r, failed),
            Done::Input(a, r) => send(a, r, failed),
            Done::Approval(a, r) => send(a, *r, failed),
            Done::Expire(a, r) => send(a, r, failed),
            Done::Policy(a, r) => send(a, r, failed),
            Done::Flush(a) => send(a, Ok(()), failed),
        }
    }

    /// A database error, which fails the whole batch.
    pub(crate) fn fatal_error(&self) -> Option<String> {
        fn db<T>(r: &StoreResult<T>) -> Option<String> {
            match r {
                Err(e @ (StoreError::Db(_) | StoreError::Io { .. })) => Some(e.to_string()),
                _ => None,
            }
        }
        match self {
            Done::Decision(_, r) => db(r),
            Done::Result(_, r) => db(r),
            Done::Input(_, r) => db(r),
            Done::Approval(_, r) => db(r),
            Done::Expire(_, r) => db(r),
            Done::Policy(_, r) => db(r),
            Done::Flush(_) => None,
        }
    }
}

/// The [`crate::Store`] methods both backends implement alike: writes go
/// to the backend's writer through its `queue` (a [`Queue`]), and a
/// session's state in memory comes from its `facts_cache()` (a
/// [`crate::record::FactsCache`]); its `redactor` is keyed with the audit
/// secret. Written once, expanded in each
/// backend's `impl Store`.
macro_rules! queued_writes {
    () => {
        fn fresh_session_facts(&self, session_id: &str) -> $crate::FactsHandle {
            self.facts_cache().get_or_default(session_id)
        }

        fn cached_session_facts(&self, session_id: &str) -> Option<$crate::FactsHandle> {
            self.facts_cache().get(session_id)
        }

        fn record_decision(&self, decision: $crate::NewDecision) -> $crate::Ticket<$crate::DecisionReceipt> {
            self.queue.decision(decision)
        }

        fn record_result(&self, result: $crate::NewResult) -> $crate::Ticket<u64> {
            self.queue.result(result)
        }

        fn record_input(&self, input: $crate::NewInput) -> $crate::Ticket<u64> {
            self.queue.input(input)
        }

        fn redactor(&self) -> &tame_enforce::Redactor {
            &self.redactor
        }

        fn decide_approval(&self, decision: $crate::ApprovalDecision) -> $crate::Ticket<$crate::Approval> {
            self.queue.approval(decision)
        }

        fn expire_approvals(&self, now: jiff::Timestamp) -> $crate::Ticket<Vec<String>> {
            self.queue.expire(now)
        }

        fn record_policy(&self, policy: $crate::NewPolicyVersion) -> $crate::Ticket<u64> {
            self.queue.policy(policy)
        }

        fn flush(&self) -> $crate::Ticket<()> {
            self.queue.flush()
        }
    };
}
pub(crate) use queued_writes;
