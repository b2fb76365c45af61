//! Crash recovery: what a node does on start about attempts it held when it last stopped.
//!
//! Any attempt this node still holds as `starting` or `running` has no supervisor any more: the
//! previous process died (kill -9, power loss) without ending it. For each:
//! - a `running` attempt has its process group on disk. If that group is still alive (and its
//!   leader's start time proves it is ours, not a reused pid), the kill ladder stops it;
//! - an attempt with no pid on record never passed the gate: its child, if one was created, died
//!   with the previous node (`PR_SET_PDEATHSIG`) before it could exec. It is given back to the
//!   queue (`unclaim`) without using the job's retry budget;
//! - the others are completed as `lost` (reason `node_lost`) — or `cancelled`, if a cancel was
//!   pending — and the retry budget decides whether the job runs again.
//!
//! Nothing is left `running` with no supervisor, and no job process is orphaned.

use std::sync::Arc;

use drover_core::{JobState, NodeId, Reason};
use drover_exec::orphan::{OrphanVerdict, stop_orphan_group};
use drover_store::{AttemptOutcome, Completion, Store, StoreError, Unrun};

/// What recovery found, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Attempts ended as lost or cancelled.
    pub attempts: usize,
    /// Process groups that were still alive and were stopped.
    pub groups_stopped: usize,
}

/// Ends every attempt `node` still holds. Groups are stopped concurrently: each may take its
/// job's grace period.
pub async fn recover(store: &Arc<dyn Store>, node: &NodeId) -> Result<Recovered, StoreError> {
    let live = store.live_attempts(node).await?;
    let stops = live.iter().map(|attempt| async move {
        match attempt.pid {
            Some(pgid) => stop_orphan_group(pgid, attempt.proc_start, attempt.grace).await,
            None => OrphanVerdict::AlreadyGone,
        }
    });
    let verdicts = futures::future::join_all(stops).await;
    let mut recovered = Recovered::default();
    for (attempt, verdict) in live.iter().zip(verdicts) {
        if let OrphanVerdict::Stopped(ladder) = verdict {
            recovered.groups_stopped += 1;
            if ladder.survivors {
                tracing::error!(attempt = %attempt.attempt, "a process of a lost attempt survived SIGKILL");
            }
        }
        if attempt.pid.is_none() {
            // It never passed the gate, so it never ran: give it back without using its budget.
            if let Completion::Recorded { state } = store
                .unclaim(attempt.attempt, Reason::NodeLost, Unrun::NoPid)
                .await?
            {
                tracing::info!(attempt = %attempt.attempt, %state, "gave back an attempt that never ran");
                recovered.attempts += 1;
            }
            continue;
        }
        let outcome = if attempt.cancel_requested {
            AttemptOutcome::bare(JobState::Cancelled, Reason::CancelledByUser)
        } else {
            AttemptOutcome::bare(JobState::Lost, Reason::NodeLost)
        };
        match store.complete(attempt.attempt, outcome).await? {
            Completion::Recorded { state } => {
                tracing::info!(attempt = %attempt.attempt, ?verdict, %state, "recovered an attempt left by the previous run");
                recovered.attempts += 1;
            }
            Completion::Stale { .. } => {
                tracing::info!(attempt = %attempt.attempt, "attempt already ended elsewhere");
            }
        }
    }
    Ok(recovered)
}
