//! The approval rules, for every backend and frontend: when an approval
//! has expired, what a human's verdict may change, and what a call that
//! comes back with an approval is decided (the approval-release rule).

use jiff::Timestamp;
use tame_engine::{Action, Decision};

use crate::records::{Approval, ApprovalState, Release};

/// Why an approval cannot be used or decided as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("approval `{0}` not found")]
    NotFound(String),
    #[error("approval `{id}` is {state}, not {expected}")]
    State {
        id: String,
        state: ApprovalState,
        expected: &'static str,
    },
    #[error("approval `{0}` was already used to release a call")]
    Used(String),
    #[error("approval `{0}` was granted for a different call")]
    Mismatch(String),
}

impl ApprovalError {
    /// The HTTP status the server answers it with.
    pub fn status(&self) -> u16 {
        match self {
            ApprovalError::NotFound(_) => 404,
            ApprovalError::Mismatch(_) => 403,
            ApprovalError::State { .. } | ApprovalError::Used(_) => 409,
        }
    }
}

/// An approval's state as seen at `now`: a pending one past its expiry,
/// and an approved one not used (`released`) before it, read as expired.
pub fn effective_state(state: ApprovalState, expires_at: Timestamp, released: bool, now: Timestamp) -> ApprovalState {
    let unused = state == ApprovalState::Pending || (state == ApprovalState::Approved && !released);
    if unused && expires_at <= now {
        ApprovalState::Expired
    } else {
        state
    }
}

/// The state a human's verdict moves approval `id` to: only a pending
/// approval (as seen now, see [`effective_state`]) can be decided.
pub fn verdict_state(id: &str, effective: ApprovalState, approve: bool) -> Result<ApprovalState, ApprovalError> {
    if effective != ApprovalState::Pending {
        return Err(ApprovalError::State {
            id: id.to_owned(),
            state: effective,
            expected: "pending",
        });
    }
    Ok(if approve {
        ApprovalState::Approved
    } else {
        ApprovalState::Rejected
    })
}

/// Whether `release` may use an approval whose effective state is
/// `effective`, bound to `call_hash` and used already when `used`: it
/// must be approved, unused and granted for this very call. Stores check
/// it again when they write the release, atomically with it.
pub fn check_release(
    release: &Release,
    effective: ApprovalState,
    call_hash: &str,
    used: bool,
) -> Result<(), ApprovalError> {
    if used {
        return Err(ApprovalError::Used(release.approval_id.clone()));
    }
    if effective != ApprovalState::Approved {
        return Err(ApprovalError::State {
            id: release.approval_id.clone(),
            state: effective,
            expected: "approved",
        });
    }
    if call_hash != release.call_hash {
        return Err(ApprovalError::Mismatch(release.approval_id.clone()));
    }
    Ok(())
}

/// The approval-release rule: the decision for a call that comes back with
/// a decided approval. The current policy's `deny` still denies; a
/// rejected or expired approval denies; otherwise the call is allowed and
/// the approval used (`true`).
pub fn released(evaluated: Decision, approval: &Approval) -> (Decision, bool) {
    let id = &approval.approval_id;
    let why = approval
        .decision_reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let deny = |reason: String| Decision {
        action: Action::Deny,
        rule_name: evaluated.rule_name.clone(),
        reason: reason.into(),
        policy_version: evaluated.policy_version.clone(),
    };
    match approval.state {
        ApprovalState::Rejected => (deny(format!("approval {id} was rejected{why}")), false),
        ApprovalState::Expired | ApprovalState::Pending => (deny(format!("approval {id} expired")), false),
        ApprovalState::Approved if evaluated.action == Action::Deny => {
            let reason = format!(
                "{} (approval {id} does not override a deny of the current policy)",
                evaluated.reason
            );
            (deny(reason), false)
        }
        ApprovalState::Approved => {
            let by = approval.decided_by.as_deref().unwrap_or("an admin");
            let decision = Decision {
                action: Action::Allow,
                rule_name: evaluated.rule_name.clone(),
                reason: format!("approved by {by}{why} (approval {id})").into(),
                policy_version: evaluated.policy_version.clone(),
            };
            (decision, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn unused_approvals_expire_and_used_ones_keep_their_state() {
        use ApprovalState::*;
        assert_eq!(effective_state(Pending, ts(10), false, ts(9)), Pending);
        assert_eq!(effective_state(Pending, ts(10), false, ts(10)), Expired);
        assert_eq!(effective_state(Approved, ts(10), false, ts(11)), Expired);
        assert_eq!(effective_state(Approved, ts(10), true, ts(11)), Approved);
        assert_eq!(effective_state(Rejected, ts(10), false, ts(11)), Rejected);
    }

    #[test]
    fn only_pending_approvals_take_a_verdict() {
        assert_eq!(
            verdict_state("a", ApprovalState::Pending, true),
            Ok(ApprovalState::Approved)
        );
        assert_eq!(
            verdict_state("a", ApprovalState::Pending, false),
            Ok(ApprovalState::Rejected)
        );
        assert!(matches!(
            verdict_state("a", ApprovalState::Expired, true),
            Err(ApprovalError::State { .. })
        ));
    }

    #[test]
    fn a_release_needs_an_unused_approved_approval_for_this_call() {
        let r = Release {
            approval_id: "a".into(),
            call_hash: "h".into(),
        };
        assert_eq!(check_release(&r, ApprovalState::Approved, "h", false), Ok(()));
        assert_eq!(
            check_release(&r, ApprovalState::Approved, "h", true),
            Err(ApprovalError::Used("a".into()))
        );
        assert_eq!(
            check_release(&r, ApprovalState::Approved, "other", false),
            Err(ApprovalError::Mismatch("a".into()))
        );
        assert!(check_release(&r, ApprovalState::Rejected, "h", false).is_err());
    }
}
