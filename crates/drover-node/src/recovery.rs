//! What a node does at start about the attempts it held when it last stopped.
//!
//! Jobs outlive their node: each is held by an owner process (`drover_exec::owner`), so when a
//! node starts, most of what it held is still running, and the executor has already connected
//! to the owners it found. Recovery matches the store's live attempts of this node against what
//! was found, and hands the runner a plan ([`Adopted`]):
//! - an attempt whose owner is alive is taken over as it is — a running job goes on, its lease
//!   renewed at once (before the reaper could see it expire); one still at its gate never ran
//!   and is aborted, so it goes back to the queue;
//! - an outcome that came while no node listened (the owner said so, or left it in a file) is
//!   recorded as if it had just arrived;
//! - an attempt nothing holds any more (its owner was killed, or the machine rebooted) is
//!   stopped — its process group if the leader's start time proves it ours, and its cell — and
//!   recorded `lost` (`owner_died`, or `node_lost` after a reboot), so its retry policy applies;
//!   one with no pid on record never passed its gate and goes back to the queue unrun — unless
//!   its owner released it itself (`RunnerConfig::self_release`): then its cell is the record,
//!   and one whose cell still exists may have run, so it is stopped and recorded `lost` too;
//! - an owner that runs a self-released attempt whose pid never reached the store is taken
//!   over, and the pid recorded now.
//!
//! Owners that hold an attempt the store no longer gives this node (the reaper gave it to
//! another node meanwhile) are told to stop it. Owners of another protocol are left alone, and
//! so is an attempt whose process is such an owner's child: a job is never killed because its
//! owner is older or newer than this node. Nothing else waits on them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use drover_core::{AttemptRef, NodeId, Reason, Resources};
use drover_exec::Containment;
use drover_exec::owner::{Found, Phase};
use drover_store::{Completion, Store, StoreError, Unrun};

use crate::runner::Adopted;

/// What recovery found, for the log and the runner.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Attempts the runner takes over.
    pub(crate) adopted: Vec<Adopted>,
    /// Running jobs whose owners were alive.
    pub reattached: usize,
    /// Outcomes collected that came while no node listened.
    pub collected: usize,
    /// Attempts nothing held any more, to be stopped and recorded lost.
    pub orphaned: usize,
    /// Attempts that never ran, given back to the queue.
    pub given_back: usize,
    /// Owners this build cannot talk to.
    pub foreign: usize,
}

impl Recovered {
    /// The attempts whose owners hold them: their cells must survive the start-up sweep.
    pub fn owned(&self) -> Vec<AttemptRef> {
        self.adopted
            .iter()
            .filter_map(|a| match a {
                Adopted::Owned { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect()
    }
}

/// Whether the process recorded as an attempt's leader still runs — its pid is alive and, where
/// the OS tells start times, started when the record says (a reused pid is someone else) — as
/// the child of one of `owners`.
fn held_by_one_of((pid, recorded_start): (i32, Option<u64>), owners: &[i32]) -> bool {
    use drover_exec::sys;
    let runs = match (sys::process_start_time(pid), recorded_start) {
        (Some(now), Some(then)) => now == then,
        _ => sys::process_alive(pid),
    };
    runs && sys::parent_pid(pid).is_some_and(|parent| owners.contains(&parent))
}

/// Plans the take-over of what this node held (see the module documentation). `rebooted`: the
/// machine restarted since, so no process of before can be alive.
///
/// `cells`: the containment, when owners release their children themselves — where an
/// attempt's cell is the record that it may have run.
pub async fn recover(
    store: &Arc<dyn Store>,
    node: &NodeId,
    found: Vec<Found>,
    rebooted: bool,
    lease: Duration,
    cells: Option<&Containment>,
) -> Result<Recovered, StoreError> {
    let live = store.live_attempts(node).await?;
    let mut owners: HashMap<AttemptRef, Phase> = HashMap::new();
    let mut outcomes = HashMap::new();
    let mut recovered = Recovered::default();
    let mut foreign = Vec::new();
    for item in found {
        match item {
            Found::Owner(hello) => {
                if let Some(holding) = hello.holding {
                    owners.insert(holding.attempt, holding.phase);
                }
            }
            Found::Outcome(file) => {
                outcomes.insert(file.attempt, file.outcome);
            }
            Found::Foreign { socket, pid, why } => {
                tracing::error!(socket = %socket.display(), %why, "an owner of another drover version holds a job; leaving it alone (a node of that version can collect it)");
                recovered.foreign += 1;
                foreign.extend(pid);
            }
        }
    }
    let mut renew = Vec::new();
    for attempt in &live {
        let id = attempt.attempt;
        let pid = attempt.pid.map(|p| (p, attempt.proc_start));
        if let Some(phase) = owners.remove(&id) {
            match phase {
                Phase::Running { pid, proc_start } => {
                    recovered.reattached += 1;
                    renew.push(id);
                    recovered.adopted.push(Adopted::Owned {
                        attempt: id,
                        needs: attempt.resources,
                        grace: attempt.grace,
                        pid: Some((pid, proc_start)),
                        released: true,
                        takes_slot: attempt.takes_slot,
                        // Released by its owner before its pid reached the store.
                        record_start: attempt.pid.is_none(),
                    });
                }
                Phase::Starting | Phase::AtGate { .. } => {
                    recovered.given_back += 1;
                    recovered.adopted.push(Adopted::Owned {
                        attempt: id,
                        needs: attempt.resources,
                        grace: attempt.grace,
                        pid: None,
                        released: false,
                        takes_slot: attempt.takes_slot,
                        record_start: false,
                    });
                }
                Phase::Ended(outcome) => {
                    recovered.collected += 1;
                    recovered.adopted.push(Adopted::Ended {
                        attempt: id,
                        outcome,
                    });
                }
            }
        } else if let Some(outcome) = outcomes.remove(&id) {
            recovered.collected += 1;
            recovered.adopted.push(Adopted::Ended {
                attempt: id,
                outcome,
            });
        } else if !rebooted && pid.is_some_and(|p| held_by_one_of(p, &foreign)) {
            // Its process runs as the child of an owner this build cannot talk to: not ours to
            // stop. (Everything else goes on below whatever owners are foreign: a process that
            // is gone, or was left by a killed owner, is lost; one that never passed its gate
            // was aborted by its owner when its node went. So no foreign owner can leave the
            // rest of the queue stuck.)
            tracing::warn!(attempt = %id, "an owner of another drover version holds this attempt's process; leaving it to that owner");
        } else if attempt.pid.is_none() && !cells.is_some_and(|c| c.cell_exists(id)) {
            // It never passed the gate (or, self-released, never had a cell), so it never ran:
            // give it back without using its budget.
            if let Completion::Recorded { state } =
                store.give_back(id, Reason::NodeLost, Unrun::NoPid).await?
            {
                tracing::info!(attempt = %id, %state, "gave back an attempt that never ran");
                recovered.given_back += 1;
            }
        } else {
            recovered.orphaned += 1;
            let reason = if rebooted {
                Reason::NodeLost
            } else {
                Reason::OwnerDied
            };
            tracing::warn!(attempt = %id, %reason, "nothing holds this attempt any more; stopping what is left of it");
            recovered.adopted.push(Adopted::Orphaned {
                attempt: id,
                pid,
                grace: attempt.grace,
                reason,
            });
            // (With no pid on record, it is here because its cell exists: what is in it goes.)
        }
    }
    // Owners holding what the store no longer gives this node: the runner stops them (their
    // leases are lost) and records nothing (the store refuses a stale outcome).
    for (attempt, phase) in owners {
        tracing::warn!(%attempt, "an owner holds an attempt this node no longer has; stopping it");
        match phase {
            Phase::Ended(outcome) => recovered.adopted.push(Adopted::Ended { attempt, outcome }),
            _ => {
                renew.push(attempt); // the renewal answers Lost, and the runner stops it
                recovered.adopted.push(Adopted::Owned {
                    attempt,
                    needs: Resources::ZERO,
                    grace: Duration::ZERO,
                    pid: None,
                    released: true,
                    takes_slot: false,
                    record_start: false,
                });
            }
        }
    }
    // Outcome files of attempts the store no longer has live: recorded as stale, then gone.
    for (attempt, outcome) in outcomes {
        recovered.adopted.push(Adopted::Ended { attempt, outcome });
    }
    if !renew.is_empty() {
        // Before the reaper runs: a lease that ran out while the node was down holds again.
        store.renew_leases(node, &renew, lease).await?;
    }
    Ok(recovered)
}
