//! What the runner's handlers ask for, and what comes back.
//!
//! The handlers in `state.rs` never call the store or the executor: they change the loop's own
//! view and push [`Effect`]s, which the driver in `mod.rs` carries out (each store call in a
//! task of its own, answered later by an [`Answer`]). So a handler's whole decision is a value
//! a test can look at, with no store, owner or clock of the machine behind it.

use std::time::Duration;

use drover_core::{AttemptRef, Reason};
use drover_exec::Command;
use drover_store::{
    AttemptOutcome, Claim, ClaimBatch, LeaseStatus, StartVerdict, StoreError, Unrun,
};
use tokio::time::Instant;

/// One thing a handler decided should happen.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Tell the executor (and through it the owners).
    Send(Command),
    /// Hand this claim to an owner: the driver builds its start request (paths, environment).
    Start(Box<Claim>),
    /// Claim up to `max` jobs in one transaction, through the admission of the moment.
    Claim {
        /// How many.
        max: usize,
    },
    /// Put the pid of a child at its gate on disk (`starting` → `running`).
    MarkRunning {
        /// The attempt.
        attempt: AttemptRef,
        /// Its leader pid.
        pid: i32,
        /// The leader's start time.
        proc_start: Option<u64>,
        /// When it started, if before this record (self-released: when the node heard of it).
        started_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Give a claimed-ahead attempt back to the queue unrun. One try: if it fails, recovery or
    /// the reaper gives it back.
    GiveBack {
        /// The attempt.
        attempt: AttemptRef,
        /// Why it did not run.
        reason: Reason,
    },
    /// Record how an attempt ended, retrying transient store errors, then tell its owner it
    /// may forget the outcome. A job that succeeded loses its checkpoint directory.
    Record {
        /// The attempt.
        attempt: AttemptRef,
        /// What to write.
        ending: Ending,
    },
    /// Renew the leases of these attempts; `asked_at` is when the renewal was asked for, from
    /// which the new leases count.
    RenewLeases {
        /// The attempts.
        attempts: Vec<AttemptRef>,
        /// When.
        asked_at: Instant,
    },
    /// Promote due `scheduled` jobs and learn when the next is due.
    PromoteDue,
}

impl Effect {
    /// Whether it is a store call (what the store's group commit may put in one batch).
    pub(crate) fn is_write(&self) -> bool {
        !matches!(self, Effect::Send(_) | Effect::Start(_))
    }
}

/// What a [`Effect::Record`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The attempt ran: complete it (the retry budget applies).
    Complete(AttemptOutcome),
    /// The attempt never ran: give it back unrun, with this proof.
    Unrun(Reason, Unrun),
}

/// The answers of store calls made off the loop.
pub(crate) enum Answer {
    /// A claim: what it took, how many were asked for, whether outside memory use limited
    /// admission, and how long it took.
    Claimed {
        /// What the store answered.
        result: Result<ClaimBatch, StoreError>,
        /// How many were asked for.
        asked: usize,
        /// Memory held outside drover limited admission.
        contended: bool,
        /// How long the claim took.
        took: Duration,
    },
    /// Whether a child at its gate may run.
    Verdict(AttemptRef, Result<StartVerdict, StoreError>),
    /// An ending (or a give-back) is on disk, or was given up on.
    Recorded,
    /// A lease renewal, and when it was asked for.
    Leases(Result<Vec<(AttemptRef, LeaseStatus)>, StoreError>, Instant),
    /// A promotion of due jobs: how many, and when the next is due.
    Promoted(Result<(usize, Option<chrono::DateTime<chrono::Utc>>), StoreError>),
}
