//! Membership: this node's row in the `nodes` table, and the reaper.
//!
//! Every heartbeat the node writes what it is (labels, capacity, API address) and how loaded it
//! is, and learns whether it has been drained. Then it runs the reaper, which any node may run
//! and one runs at a time: nodes silent past the TTL are declared dead, and attempts whose lease
//! ran out go back to the queue. That is safe because a node stops its own jobs before its
//! leases expire when it cannot renew them (the runner's self-fencing), so an expired lease
//! means the attempt is dead wherever it was.

use std::sync::Arc;
use std::time::Duration;

use drover_core::{NodeInfo, NodeLoad, NodeState};
use drover_store::Store;
use tokio::sync::{Notify, watch};
use tokio::time::{MissedTickBehavior, interval};

/// How often and how patiently.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Between heartbeats (and reaper passes).
    pub heartbeat: Duration,
    /// Silence after which a node is declared dead.
    pub node_ttl: Duration,
    /// Run the reaper: only with a shared store. On SQLite the node is the store's only user
    /// (its data dir is locked), what an earlier run left is settled by recovery at start, and
    /// a reaper would only end this node's own running attempts when a renewal is late.
    pub reap: bool,
}

/// Writes the first heartbeat, so that the node's labels and drain state count from its first
/// claim. Returns its state.
pub async fn join(
    store: &dyn Store,
    info: &NodeInfo,
) -> Result<NodeState, drover_store::StoreError> {
    let state = store.heartbeat(info, NodeLoad::default()).await?;
    if state == NodeState::Draining {
        tracing::warn!(node = %info.id, "this node is draining: it claims nothing until `drover undrain`");
    }
    Ok(state)
}

/// Heartbeats and reaps until the process ends. `wake` is told when the node may claim again
/// (it was undrained).
pub fn spawn(
    store: Arc<dyn Store>,
    info: NodeInfo,
    timing: Timing,
    load: watch::Receiver<NodeLoad>,
    wake: Arc<Notify>,
    mut state: NodeState,
) {
    tokio::spawn(async move {
        let mut every = interval(timing.heartbeat);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        every.tick().await; // the first tick is now; `join` already beat
        let mut snapshots = SnapshotWatch::default();
        loop {
            every.tick().await;
            let current = *load.borrow();
            match store.heartbeat(&info, current).await {
                Ok(now) => {
                    if now != state {
                        tracing::info!(node = %info.id, from = %state, to = %now, "node state changed");
                        if now == NodeState::Alive {
                            wake.notify_one();
                        }
                        state = now;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
            }
            if !timing.reap {
                continue;
            }
            match store.reap(timing.node_ttl).await {
                Ok(reaped) => {
                    for node in &reaped.dead_nodes {
                        tracing::warn!(%node, ttl = ?timing.node_ttl, "node silent past its TTL: declared dead");
                    }
                    for (attempt, state) in &reaped.attempts {
                        tracing::warn!(%attempt, %state, "lease expired: attempt ended as lost");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reaper pass failed"),
            }
            snapshots.check(store.as_ref()).await;
        }
    });
}

/// A snapshot held this long on the shared database is worth a warning.
const SNAPSHOT_WARNING: Duration = Duration::from_secs(300);

/// How often the node looks.
const SNAPSHOT_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Watches for a transaction that holds a snapshot on the shared database for long: it keeps
/// vacuum from removing what every claim and ending leaves, and claims slow down the longer
/// it stays (README, "Many machines"). Says so once per such transaction, and when it is gone.
#[derive(Debug, Default)]
struct SnapshotWatch {
    last: Option<tokio::time::Instant>,
    warned: bool,
}

impl SnapshotWatch {
    async fn check(&mut self, store: &dyn Store) {
        if self
            .last
            .is_some_and(|at| at.elapsed() < SNAPSHOT_CHECK_EVERY)
        {
            return;
        }
        self.last = Some(tokio::time::Instant::now());
        match store.oldest_snapshot().await {
            Ok(Some(age)) if age >= SNAPSHOT_WARNING => {
                if !self.warned {
                    tracing::warn!(
                        held = ?Duration::from_secs(age.as_secs()),
                        "a transaction has held a snapshot on the database this long: vacuum cannot remove finished claims meanwhile, and each claim gets slower; end it (pg_stat_activity names it) or set idle_in_transaction_session_timeout"
                    );
                    self.warned = true;
                }
            }
            Ok(_) => {
                if self.warned {
                    tracing::info!("the long-held snapshot on the database is gone");
                    self.warned = false;
                }
            }
            Err(err) => tracing::debug!(error = %err, "cannot read the database's oldest snapshot"),
        }
    }
}
