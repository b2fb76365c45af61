//! A named queue as the store keeps it: its settings and how many of its jobs are where.

use serde::{Deserialize, Serialize};

/// A queue's settings and load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// No new attempt starts while paused; running ones go on.
    pub paused: bool,
    /// Most attempts starting or running at once (none: no limit).
    pub concurrency: Option<u32>,
    /// Jobs waiting to be claimed (`queued`).
    pub queued: u64,
    /// Jobs deferred: waiting for a time or for other jobs (`scheduled`, `blocked`).
    pub deferred: u64,
    /// Attempts starting or running.
    pub running: u64,
}
