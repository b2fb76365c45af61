//! Cleaning up after an owner that died: its attempt's process group (only if the leader's start
//! time still matches, so a reused pid is never killed) and whatever is left in its cell.

use std::time::Duration;

use drover_core::AttemptRef;

use crate::contain::Containment;
use crate::orphan::{OrphanVerdict, stop_orphan_group};

/// Stops what is left of an attempt no owner holds: its group (if the pid is still ours) and
/// whatever is in its cell. Returns how many processes were killed and whether any survived.
pub(super) async fn clean(
    containment: &Containment,
    attempt: AttemptRef,
    pid: Option<i32>,
    proc_start: Option<u64>,
    grace: Duration,
) -> (usize, bool) {
    let mut killed = 0;
    let mut survivors = false;
    if let Some(pgid) = pid {
        if let OrphanVerdict::Stopped(ladder) = stop_orphan_group(pgid, proc_start, grace).await {
            killed += 1;
            survivors |= ladder.survivors;
        }
    }
    let cell = containment.cell_of(attempt);
    let left = cell.orphaned_members();
    if !left.is_empty() {
        tracing::warn!(%attempt, processes = left.len(), "killing processes of an attempt whose owner is gone");
        killed += left.len();
        let killing = cell.clone();
        let killed_all = tokio::task::spawn_blocking(move || {
            killing.kill();
            for pid in killing.orphaned_members() {
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        })
        .await;
        if let Err(err) = killed_all {
            tracing::error!(%attempt, error = %err, "killing what an attempt left failed");
        }
        let deadline = tokio::time::Instant::now() + crate::KILL_VERIFY_WINDOW;
        let mut pause = Duration::from_millis(2);
        while !cell.orphaned_members().is_empty() {
            if tokio::time::Instant::now() >= deadline {
                survivors = true;
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
    if let Err(err) = tokio::task::spawn_blocking(move || cell.remove()).await {
        tracing::error!(%attempt, error = %err, "removing the cell of an attempt whose owner is gone failed");
    }
    (killed, survivors)
}
