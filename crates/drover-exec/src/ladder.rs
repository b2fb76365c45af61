//! The kill ladder: SIGTERM to the whole process group, `grace` to finish, SIGKILL to the group,
//! then a check that no member is left.
//!
//! Used for timeouts, cancels, shutdown, leftovers after a leader exits, and orphaned groups
//! found after a crash. The leader's exit is an event (see [`crate::wait`]); the rest of the group
//! has no exit notification without cgroups, so once the leader is gone the group is checked
//! with a short exponential backoff — only while a tree is being killed, never on a hot path.

use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};

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

/// Stops every process in group `pgid`. If `leader` is given (the group leader is our child), it
/// is reaped along the way so that it does not linger as a zombie member.
pub async fn kill_tree(
    pgid: i32,
    grace: Duration,
    mut leader: Option<&mut ExitWatch>,
) -> LadderResult {
    tracing::debug!(pgid, ?grace, "kill ladder: SIGTERM");
    let _ = sys::signal_group(pgid, libc::SIGTERM);
    // A stopped process cannot act on SIGTERM until it is continued.
    let _ = sys::signal_group(pgid, libc::SIGCONT);
    if wait_group_gone(pgid, Instant::now() + grace, leader.as_deref_mut()).await {
        return LadderResult {
            escalated: false,
            survivors: false,
        };
    }
    tracing::debug!(pgid, "kill ladder: grace over, SIGKILL");
    let _ = sys::signal_group(pgid, libc::SIGKILL);
    let gone = wait_group_gone(pgid, Instant::now() + crate::KILL_VERIFY_WINDOW, leader).await;
    if !gone {
        tracing::error!(pgid, "process group survived SIGKILL");
    }
    LadderResult {
        escalated: true,
        survivors: !gone,
    }
}

/// Waits until the group has no live member or `deadline` passes; true if it is empty.
async fn wait_group_gone(pgid: i32, deadline: Instant, leader: Option<&mut ExitWatch>) -> bool {
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
        if !sys::group_has_live_members(pgid) {
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
