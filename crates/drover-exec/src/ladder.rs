//! The kill ladder: SIGTERM to the whole tree, `grace` to finish, SIGKILL to the tree, then a
//! check that no member is left.
//!
//! "The tree" is the job's process group plus its [`Cell`] when there is one: with cgroups the
//! cell holds every process the job ever started, even those that left the group with `setsid`;
//! the final SIGKILL then goes through the cell's own kill (`cgroup.kill`, or freeze → kill →
//! thaw on v1) so that nothing can fork away between listing and killing.
//!
//! Used for timeouts, cancels, shutdown, leftovers after a leader exits, and orphaned groups
//! found after a crash. The leader's exit is an event (see [`crate::wait`]); the rest of the tree
//! has no exit notification, so once the leader is gone the tree is checked with a short
//! exponential backoff — only while a tree is being killed, never on a hot path.

use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};

use crate::contain::Cell;
use crate::sys;
use crate::wait::ExitWatch;

/// What the ladder had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderResult {
    /// SIGTERM was not enough within the grace period: SIGKILL was sent.
    pub escalated: bool,
    /// A member was still alive after SIGKILL and the verification window.
    pub survivors: bool,
}

/// Signals group `pgid`. An empty group is fine (the tree may be gone already); any other
/// failure is logged, because the ladder then relies on the cell and the final check alone.
fn signal(pgid: i32, signal: i32) {
    if let Err(err) = sys::signal_group(pgid, signal) {
        tracing::warn!(pgid, signal, error = %err, "kill ladder: cannot signal the process group");
    }
}

/// Stops every process in group `pgid` and in `cell`. If `leader` is given (the group leader is
/// our child), it is reaped along the way so that it does not linger as a zombie member.
pub async fn kill_tree(
    pgid: i32,
    cell: Option<&Cell>,
    grace: Duration,
    mut leader: Option<&mut ExitWatch>,
) -> LadderResult {
    tracing::debug!(pgid, ?grace, "kill ladder: SIGTERM");
    signal(pgid, libc::SIGTERM);
    // A stopped process cannot act on SIGTERM until it is continued.
    signal(pgid, libc::SIGCONT);
    if let Some(cell) = cell {
        cell.signal(libc::SIGTERM);
        cell.signal(libc::SIGCONT);
    }
    if wait_tree_gone(pgid, cell, Instant::now() + grace, leader.as_deref_mut()).await {
        return LadderResult {
            escalated: false,
            survivors: false,
        };
    }
    tracing::debug!(pgid, "kill ladder: grace over, SIGKILL");
    signal(pgid, libc::SIGKILL);
    if let Some(cell) = cell {
        // A v1 freeze may take a moment; keep it off the runtime's worker threads.
        let cell = cell.clone();
        if let Err(err) = tokio::task::spawn_blocking(move || cell.kill()).await {
            tracing::error!(pgid, error = %err, "killing the attempt's cell failed");
        }
    }
    let gone = wait_tree_gone(
        pgid,
        cell,
        Instant::now() + crate::KILL_VERIFY_WINDOW,
        leader,
    )
    .await;
    if !gone {
        tracing::error!(pgid, "process group survived SIGKILL");
    }
    LadderResult {
        escalated: true,
        survivors: !gone,
    }
}

/// Whether anything of the tree is still alive.
pub fn tree_alive(pgid: i32, cell: Option<&Cell>) -> bool {
    sys::group_has_live_members(pgid) || cell.is_some_and(|c| !c.members().is_empty())
}

/// Waits until the tree has no live member or `deadline` passes; true if it is empty.
async fn wait_tree_gone(
    pgid: i32,
    cell: Option<&Cell>,
    deadline: Instant,
    leader: Option<&mut ExitWatch>,
) -> bool {
    if let Some(leader) = leader {
        if !leader.is_reaped() {
            tokio::select! {
                _ = leader.wait() => {}
                _ = sleep_until(deadline) => {}
            }
        }
    }
    let mut pause = Duration::from_millis(2);
    loop {
        if !tree_alive(pgid, cell) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
