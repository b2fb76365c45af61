//! Job states and the one table of legal transitions between them.
//!
//! ```text
//! blocked ──deps done──▶ queued ──claim──▶ starting ──pgid on disk──▶ running ──▶ succeeded
//! scheduled ──time───▶ queued                 │                         ├──▶ failed     ┐
//!     ▲                                       ├──▶ failed (spawn)       ├──▶ timed_out  ├─ retried ─▶ queued / scheduled
//!     └──────── retry (attempt ended, budget left) ◀────────────────────┼──▶ lost       ┘
//!                                                                       └──▶ cancelled
//! ```
//!
//! `starting` is the one state beyond design.md §2: a claimed attempt whose process exists but
//! has not yet been allowed to `exec`. The job only counts as `running` once its process group id
//! is on disk, so that a crash can never leave a process the store does not know about.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. The same words are used in the code, CLI, API and docs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the jobs it depends on.
    Blocked,
    /// Waiting for its `not_before` time (a delay or a retry backoff).
    Scheduled,
    /// Ready to be claimed by a node.
    Queued,
    /// Claimed by a node; its process exists but may not `exec` until its pgid is on disk.
    Starting,
    /// Its process tree is running under a supervisor.
    Running,
    /// The last attempt exited with status 0.
    Succeeded,
    /// The last attempt exited non-zero, died of a signal, or could not be spawned.
    Failed,
    /// The last attempt ran past its timeout and was stopped.
    TimedOut,
    /// The node running the last attempt died or shut down before it ended.
    Lost,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 10] = [
        JobState::Blocked,
        JobState::Scheduled,
        JobState::Queued,
        JobState::Starting,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Lost,
        JobState::Cancelled,
    ];

    /// The word used for this state everywhere.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Blocked => "blocked",
            JobState::Scheduled => "scheduled",
            JobState::Queued => "queued",
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Lost => "lost",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True once nothing more will happen to the job unless someone retries it.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded
                | JobState::Failed
                | JobState::TimedOut
                | JobState::Lost
                | JobState::Cancelled
        )
    }

    /// True while an attempt holds the job (claimed, starting or running).
    pub const fn has_live_attempt(self) -> bool {
        matches!(self, JobState::Starting | JobState::Running)
    }

    /// True while the job waits to be claimed or to become claimable.
    pub const fn is_waiting(self) -> bool {
        matches!(
            self,
            JobState::Blocked | JobState::Scheduled | JobState::Queued
        )
    }

    /// The transition table: may a job go from `self` to `to`?
    ///
    /// This is the only place that answers the question; the store checks every write against it.
    pub const fn can_become(self, to: JobState) -> bool {
        use JobState::*;
        match (self, to) {
            // Waiting states become claimable, or are cancelled, or fail with their dependency.
            (Blocked, Queued | Scheduled | Cancelled | Failed) => true,
            (Scheduled, Queued | Cancelled) => true,
            (Queued, Starting | Cancelled) => true,
            // A claimed attempt either runs, cannot spawn, or ends before it could run.
            (Starting, Running | Failed | Lost | Cancelled | Queued | Scheduled) => true,
            // A running attempt ends; with retries left the job goes back to waiting.
            (Running, Succeeded | Failed | TimedOut | Lost | Cancelled | Queued | Scheduled) => {
                true
            }
            // A user may retry a job that ended unsuccessfully (the dead-letter queue); one whose
            // dependencies are being run again waits for them (`blocked`).
            (Failed | TimedOut | Lost | Cancelled, Queued | Scheduled | Blocked) => true,
            _ => false,
        }
    }

    /// Checks a transition against the table.
    pub fn check(self, to: JobState) -> Result<(), TransitionError> {
        if self.can_become(to) {
            Ok(())
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state `{s}` (one of: {})", known.join(", "))
            })
    }
}

/// A transition the table does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The state the job is in.
    pub from: JobState,
    /// The state that was asked for.
    pub to: JobState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn any_state() -> impl Strategy<Value = JobState> {
        proptest::sample::select(JobState::ALL.to_vec())
    }

    /// States reachable from `from` through legal transitions.
    fn reachable(from: JobState) -> HashSet<JobState> {
        let mut seen = HashSet::from([from]);
        let mut todo = vec![from];
        while let Some(state) = todo.pop() {
            for next in JobState::ALL {
                if state.can_become(next) && seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        seen
    }

    #[test]
    fn names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert!("done".parse::<JobState>().is_err());
    }

    #[test]
    fn every_state_can_end() {
        for state in JobState::ALL {
            assert!(
                reachable(state).iter().any(|s| s.is_terminal()),
                "{state} can never reach a terminal state"
            );
        }
    }

    proptest! {
        /// Nothing leaves `succeeded`, and nothing moves to the state it is in.
        #[test]
        fn no_transition_from_success_or_to_self(from in any_state(), to in any_state()) {
            if from == JobState::Succeeded || from == to {
                prop_assert!(from.check(to).is_err());
            }
        }

        /// Only a claim starts an attempt, and only a recorded pgid makes it running: a job can
        /// never be `running` without having been `starting` first.
        #[test]
        fn attempts_begin_only_by_claim(from in any_state(), to in any_state()) {
            if to == JobState::Starting && from.can_become(to) {
                prop_assert_eq!(from, JobState::Queued);
            }
            if to == JobState::Running && from.can_become(to) {
                prop_assert_eq!(from, JobState::Starting);
            }
        }

        /// Outcomes of an attempt (timed_out, lost, succeeded) are only reachable from a live
        /// attempt; a waiting job can only be cancelled or fail through its dependencies.
        #[test]
        fn outcomes_need_a_live_attempt(from in any_state(), to in any_state()) {
            if matches!(to, JobState::Succeeded | JobState::TimedOut | JobState::Lost) && from.can_become(to) {
                prop_assert!(from.has_live_attempt());
            }
            if to == JobState::Failed && from.can_become(to) {
                prop_assert!(from.has_live_attempt() || from == JobState::Blocked);
            }
        }

        /// A random walk that tries arbitrary transitions only ever moves along the table, and a
        /// refused transition leaves the state as it was.
        #[test]
        fn random_walks_follow_the_table(steps in proptest::collection::vec(any_state(), 1..64)) {
            let mut state = JobState::Queued;
            for to in steps {
                match state.check(to) {
                    Ok(()) => {
                        prop_assert!(state != to);
                        prop_assert!(!state.is_terminal() || to.is_waiting());
                        state = to;
                    }
                    Err(err) => {
                        prop_assert_eq!(err, TransitionError { from: state, to });
                        prop_assert!(!state.can_become(to));
                    }
                }
            }
        }
    }
}
