//! Stopping process groups left behind by a node that crashed.
//!
//! After a crash the node finds attempts it owned that are still marked live. Their recorded
//! leader pid (= pgid) may still run — or may by now belong to an unrelated process. The start
//! time recorded with the pid tells the two apart, so a reused pid is never killed.
//!
//! Why checking the leader is enough: the kernel does not hand out a pid while it is still in use
//! as a process group id. So if the leader is gone, any group with that id is still ours; and if
//! a process with that pid exists but started at another time, our group had emptied before its
//! number was reused.

use std::time::Duration;

use crate::ladder::{LadderResult, kill_tree};
use crate::sys;

/// What [`stop_orphan_group`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanVerdict {
    /// Nothing of the group was alive.
    AlreadyGone,
    /// The pid now belongs to another process: left alone.
    PidReused,
    /// The group was alive and the kill ladder stopped it.
    Stopped(LadderResult),
}

/// Stops the group `pgid` recorded with leader start time `proc_start`, if it is still ours.
pub async fn stop_orphan_group(
    pgid: i32,
    proc_start: Option<u64>,
    grace: Duration,
) -> OrphanVerdict {
    if let (Some(recorded), Some(now)) = (proc_start, sys::process_start_time(pgid)) {
        if recorded != now {
            return OrphanVerdict::PidReused;
        }
    }
    if !sys::group_has_live_members(pgid) {
        return OrphanVerdict::AlreadyGone;
    }
    OrphanVerdict::Stopped(kill_tree(pgid, None, grace, None).await)
}
