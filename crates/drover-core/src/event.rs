//! Events: one per state change, numbered by the store in commit order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::{JobId, NodeId};
use crate::reason::Reason;
use crate::state::JobState;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A job was stored.
    Submitted,
    /// A node claimed the job and opened an attempt (`starting`).
    Claimed,
    /// The attempt's process group is recorded and it may run (`running`).
    Started,
    /// The attempt ended and the job is terminal.
    Finished,
    /// The attempt ended and the job will run again (retry budget left).
    Requeued,
    /// A cancel of a live attempt was asked for; `Finished` follows once the tree is gone.
    CancelRequested,
    /// A waiting job was cancelled before it ran.
    Cancelled,
    /// A user re-queued a job that had ended.
    Retried,
    /// The job waits for a time (`scheduled`): a delay at submit, or a backoff between attempts.
    Scheduled,
    /// A scheduled job's time came: it is `queued`.
    Due,
    /// A waiting job's priority changed.
    Reprioritized,
    /// A job left the dead-letter queue without running again.
    Dismissed,
    /// Every job a blocked job waited for succeeded: it is `queued` (or `scheduled`).
    Unblocked,
    /// A job's spec was changed: a waiting job's (`drover edit`), or an ended one's just before
    /// it was retried with new settings (`drover retry --memory 2G`).
    Edited,
}

impl EventKind {
    /// Its name in the API and `drover watch` (`cancel_requested`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::Claimed => "claimed",
            EventKind::Started => "started",
            EventKind::Finished => "finished",
            EventKind::Requeued => "requeued",
            EventKind::CancelRequested => "cancel_requested",
            EventKind::Cancelled => "cancelled",
            EventKind::Retried => "retried",
            EventKind::Scheduled => "scheduled",
            EventKind::Due => "due",
            EventKind::Reprioritized => "reprioritized",
            EventKind::Dismissed => "dismissed",
            EventKind::Unblocked => "unblocked",
            EventKind::Edited => "edited",
        }
    }
}

/// One committed change. `seq` increases by one per event, in commit order, and never repeats:
/// a client that saw `seq` N can ask for everything after N.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Global sequence number, assigned by the store at commit.
    pub seq: u64,
    /// When it was committed.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The job it happened to.
    pub job_id: JobId,
    /// The attempt concerned, if any.
    pub attempt: Option<u32>,
    /// The job's state after the change.
    pub state: JobState,
    /// The node concerned, if any.
    pub node: Option<NodeId>,
    /// Why, for endings.
    pub reason: Option<Reason>,
}

#[cfg(test)]
mod kind_tests {
    #![allow(clippy::unwrap_used)]

    use super::EventKind;

    #[test]
    fn kinds_are_named_as_serde_names_them() {
        for kind in [
            EventKind::Submitted,
            EventKind::Claimed,
            EventKind::Started,
            EventKind::Finished,
            EventKind::Requeued,
            EventKind::CancelRequested,
            EventKind::Cancelled,
            EventKind::Retried,
            EventKind::Scheduled,
            EventKind::Due,
            EventKind::Reprioritized,
            EventKind::Dismissed,
            EventKind::Unblocked,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
    }
}
