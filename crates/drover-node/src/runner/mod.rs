//! The node loop: claim work, hand it to job owners, record what they report, renew leases,
//! and detach (or drain) on shutdown.
//!
//! It is split the way a dispatcher and its executor are:
//! - `state.rs` holds the loop's only mutable view of what this node runs, and handlers that
//!   turn what happened into [`effect::Effect`]s — decisions as values, with no I/O;
//! - this file is the driver: one `select!` over everything that can wake the loop, and
//!   [`Runner::perform`], which carries effects out — each store call in a task of its own that
//!   answers with an [`effect::Answer`], so one slow fsync never holds up another job and
//!   concurrent changes share group commits;
//! - `start.rs` builds what an owner needs to start an attempt; `record.rs` maps endings onto
//!   the store and retries the writes that must get an answer.
//!
//! While recent jobs are short it keeps one claimed job ahead of each busy slot, so that when a
//! job ends the next starts at once instead of waiting for a claim to commit. A claim that
//! never passed its gate never ran: on shutdown, cancel or abort it goes back to the queue
//! unrun (`Store::give_back`) with its retry budget untouched.
//!
//! What wakes it (no polling): store events (the post-commit broadcast: new or requeued work,
//! cancel requests); owner reports (a child at its gate, an attempt that ended); the answers of
//! its own store calls; the lease-renewal tick; the due time of the next `scheduled` job; and
//! the shutdown signal. It may not touch processes except through executor commands, and it
//! never writes the store except through effects.

mod effect;
mod record;
mod start;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_core::{AttemptRef, JobId, JobState, NodeId, Reason, Resources};
use drover_exec::owner::ExecutorHandle;
use drover_exec::{Command, Outcome, Report, StopReason};
use drover_store::{Store, Unrun};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, interval, sleep_until};

use crate::datadir::DataDir;
use effect::{Answer, Effect, Ending};
use record::Recorded;
pub use record::to_attempt_outcome;
use state::State;

/// Settings of the loop.
#[derive(Debug, Clone)]
pub(crate) struct RunnerConfig {
    /// The drover binary, which a session's jobs run (`session-host`, `session-exec`).
    pub program: std::path::PathBuf,
    /// This node.
    pub node: NodeId,
    /// How many attempts may run at once.
    pub slots: usize,
    /// Lease length; renewed every [`RENEWALS_PER_LEASE`]th of it (the renewal tick).
    pub lease: Duration,
    /// How long shutdown waits for running jobs before stopping them.
    pub shutdown_timeout: Duration,
    /// Bytes kept per output stream per attempt.
    pub log_limit: u64,
    /// What admission may hand out: the node's memory and CPUs.
    pub capacity: Resources,
    /// How long a job that does not fit may wait before the node reserves for it.
    pub reserve_after: Duration,
    /// The store is shared with other nodes: owners fence their jobs when leases run out.
    pub fence: bool,
    /// Owners open their children's gates themselves once each is in its cell, and pids are
    /// recorded after, folded with other writes: the cell is the record of the start (see
    /// [`drover_exec::StartRequest::self_release`]). Only with cgroup cells and the embedded
    /// store, which only this node recovers from, on this machine, where the cells are.
    pub self_release: bool,
    /// On SIGTERM/SIGINT, stop running jobs (after `shutdown_timeout`) instead of detaching.
    pub stop_jobs_on_exit: bool,
    /// Queued jobs the last claim passed over, with what each waits for; read by the API.
    pub passed_over: PassedOver,
    /// Where the node's load goes for its heartbeat.
    pub load: watch::Sender<drover_core::NodeLoad>,
    /// Rung by the API when a queue is resumed or widened: claim again.
    pub wake: Arc<tokio::sync::Notify>,
    /// Where attempts, claims and reservations are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The node's API as its own jobs reach it (`$DROVER_SERVER`): a loopback address.
    pub server_url: String,
}

/// Renewals per lease. Many, so that a node frozen or slowed for most of a lease (a SIGSTOP, a
/// swap storm, a long fsync) has renewed recently enough when it wakes: a renewal
/// `lease / RENEWALS_PER_LEASE` before a stop of `d` leaves its jobs running as long as
/// `d + lease / RENEWALS_PER_LEASE + fence margin < lease`.
pub(crate) const RENEWALS_PER_LEASE: u32 = 6;

/// How fast two clocks may drift apart, as a share of the lease: the lease is written on the
/// database server's clock and fenced on this machine's monotonic one. Only their rates
/// matter (the node counts from when it *asked* for the renewal, which is before the server
/// wrote it), and real clocks drift by parts per million; 1% is generous.
const CLOCK_DRIFT_ALLOWANCE: u32 = 100;

/// How long a fenced job takes to be gone: the owner's SIGKILL through the cell. The reaper on
/// another node can requeue the job only after the lease has expired on the server's clock,
/// and a claim and a start come after that, so this is a floor, not an estimate.
const KILL_ALLOWANCE: Duration = Duration::from_millis(250);

impl RunnerConfig {
    /// How long before its lease's real expiry an attempt no renewal reached is killed: the
    /// kill's own time plus the clock drift allowance, and never more than a third of the
    /// lease. Small on purpose: before #16 it was a third of the lease, and a node stopped for
    /// 2 s against a 3 s lease lost all its jobs although their leases held.
    pub(crate) fn fence_margin(&self) -> std::time::Duration {
        (KILL_ALLOWANCE + self.lease / CLOCK_DRIFT_ALLOWANCE).min(self.lease / 3)
    }

    /// Between renewals.
    pub(crate) fn renewal_every(&self) -> std::time::Duration {
        self.lease / RENEWALS_PER_LEASE
    }
}

/// Queued jobs this node's last claim passed over for lack of resources, and what each waits
/// for (`status` shows it).
pub type PassedOver = Arc<Mutex<HashMap<JobId, String>>>;

/// An attempt a node takes over at start (see `recovery`).
#[derive(Debug)]
pub(crate) enum Adopted {
    /// Its owner is alive; `released` if the job runs (else it waits at the gate and is
    /// aborted).
    Owned {
        attempt: AttemptRef,
        needs: Resources,
        grace: Duration,
        pid: Option<(i32, Option<u64>)>,
        released: bool,
        /// It holds a slot (all but a session's host).
        takes_slot: bool,
        /// Its owner released it before its pid reached the store: record the pid now.
        record_start: bool,
    },
    /// It ended while no node listened: record this outcome.
    Ended {
        attempt: AttemptRef,
        outcome: Outcome,
    },
    /// Nothing holds it any more: stop what is left, then record it lost for `reason`.
    Orphaned {
        attempt: AttemptRef,
        pid: Option<(i32, Option<u64>)>,
        grace: Duration,
        reason: Reason,
    },
}

/// The node loop: its state, and what carries out the state's effects.
pub(crate) struct Runner {
    state: State,
    store: Arc<dyn Store>,
    data: Arc<DataDir>,
    executor: ExecutorHandle,
    answers: mpsc::UnboundedSender<Answer>,
    /// Counts the stop signals (the shutdown watch): an ending the store cannot take yet is
    /// retried until the node stops, then left with its owner for the next start.
    stopping: watch::Receiver<u32>,
}

/// Where the answers of the loop's own store calls arrive.
pub(crate) type Answers = mpsc::UnboundedReceiver<Answer>;

impl Runner {
    /// A loop over `store` that runs jobs through the owners `executor` starts.
    pub fn new(
        config: RunnerConfig,
        store: Arc<dyn Store>,
        data: Arc<DataDir>,
        executor: ExecutorHandle,
    ) -> (Self, Answers) {
        let (answers, answers_rx) = mpsc::unbounded_channel();
        let runner = Self {
            state: State::new(config),
            store,
            data,
            executor,
            answers,
            stopping: watch::channel(0).1,
        };
        (runner, answers_rx)
    }

    /// Takes over what recovery found (see [`State::adopt`]).
    pub fn adopt(&mut self, adopted: Vec<Adopted>) {
        self.state.adopt(adopted);
        self.perform();
    }

    /// Runs until `shutdown` turns true, then detaches from the jobs that run (their owners go
    /// on) — or, with `stop_jobs_on_exit`, waits for them up to the shutdown timeout and stops
    /// the rest; a second signal then stops them at once.
    pub async fn run(
        mut self,
        mut answers: Answers,
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut shutdown: watch::Receiver<u32>,
    ) {
        self.stopping = shutdown.clone();
        let mut events = self.store.subscribe();
        let mut renewal = interval(self.state.config.renewal_every());
        renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_deadline: Option<Instant> = None;
        let mut stopped_all = false;
        let mut detaching = false;
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        // Jobs that came due while the node was down, and the first due time after.
        self.state.promote_due();

        loop {
            self.publish_load();
            let draining = drain_deadline.is_some();
            if !draining {
                self.state.fill_slots();
                self.state.maybe_claim();
            } else {
                self.state.give_back_ahead(Reason::NodeShutdown);
                // Detaching leaves running jobs to their owners, once nothing is in between:
                // no child at a gate, no clean-up, no outcome on its way to the store.
                let settled = if detaching {
                    self.state.all_released()
                } else {
                    self.state.live.is_empty()
                };
                if settled && self.state.recording == 0 && self.state.claiming == 0 {
                    self.perform();
                    break;
                }
            }
            self.perform();
            let state = &mut self.state;
            tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => state.on_report(report),
                    None => {
                        tracing::error!("the executor stopped; the node cannot run jobs");
                        break;
                    }
                },
                Some(answer) = answers.recv() => state.on_answer(answer),
                event = events.recv() => match event {
                    Ok(event) => state.on_event(event.kind, event.job_id, event.attempt),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // Missed wake-ups: look for work, and let the renewal carry cancels.
                        tracing::debug!(missed, "event stream lagged; resyncing");
                        state.want_claim = true;
                        state.renew_leases();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = state.config.wake.notified() => state.want_claim = true,
                _ = renewal.tick() => {
                    state.renew_leases();
                    state.fence_if_leases_expiring();
                }
                // Not only on the renewal tick: the fence must fall a full margin before expiry.
                _ = sleep_until(state.fence_check_at()), if !state.fenced && state.holds_leases() => {
                    state.fence_if_leases_expiring();
                }
                _ = sleep_until(state.next_due.unwrap_or(far)), if state.next_due.is_some() && !draining => {
                    state.next_due = None;
                    state.promote_due();
                }
                // Held writes go out at the loop's next `perform`.
                _ = sleep_until(state.held_until.unwrap_or(far)), if state.held_until.is_some() => {}
                _ = sleep_until(state.retry_claim_at.unwrap_or(far)), if state.retry_claim_at.is_some() => {
                    state.retry_claim_at = None;
                    state.want_claim = true;
                }
                changed = shutdown.changed() => {
                    let signals = if changed.is_ok() { *shutdown.borrow_and_update() } else { 2 };
                    if drain_deadline.is_none() && state.config.stop_jobs_on_exit {
                        tracing::info!(running = state.live.len(), timeout = ?state.config.shutdown_timeout,
                            "shutting down: no new claims; waiting for running jobs (--stop-jobs-on-exit)");
                        drain_deadline = Some(Instant::now() + state.config.shutdown_timeout);
                    } else if drain_deadline.is_none() {
                        tracing::info!(running = state.live.len(),
                            "shutting down: running jobs go on under their owners, and a node started on this data dir re-attaches to them");
                        detaching = true;
                        drain_deadline = Some(far);
                        // A child still at its gate never ran: it goes back to the queue.
                        let held: Vec<_> = state.live.iter().filter(|(_, l)| !l.released).map(|(a, _)| *a).collect();
                        for attempt in held {
                            state.stop(attempt, StopReason::Shutdown);
                        }
                    }
                    if signals >= 2 && !stopped_all && !detaching {
                        tracing::info!("second signal: stopping running jobs now");
                        state.stop_all(StopReason::Shutdown);
                        stopped_all = true;
                    }
                }
                _ = sleep_until(drain_deadline.unwrap_or(far)), if drain_deadline.is_some() && !stopped_all && !detaching => {
                    tracing::info!(running = state.live.len(), "shutdown timeout reached: stopping running jobs");
                    state.stop_all(StopReason::Shutdown);
                    stopped_all = true;
                }
            }
        }
        tracing::info!(running = self.state.live.len(), "node loop stopped");
    }

    /// Tells the metrics and the heartbeat what the node holds now.
    fn publish_load(&self) {
        let reserved = self.state.reserved();
        let config = &self.state.config;
        config.metrics.set_reserved(reserved, self.state.live.len());
        let load = drover_core::NodeLoad {
            running: u32::try_from(self.state.live.len()).unwrap_or(u32::MAX),
            reserved,
        };
        config.load.send_if_modified(|old| {
            let changed = *old != load;
            *old = load;
            changed
        });
    }

    /// Carries out the effects the handlers decided on, in order, but for the writes
    /// [`State::settle`] holds for the next pid record.
    fn perform(&mut self) {
        let effects = self.state.settle(Instant::now());
        for effect in effects {
            self.perform_one(effect);
        }
    }

    fn perform_one(&mut self, effect: Effect) {
        let store = Arc::clone(&self.store);
        let answers = self.answers.clone();
        match effect {
            Effect::Send(command) => self.send(command),
            Effect::Start(claim) => {
                let request = start::request(&self.state.config, &self.data, *claim);
                self.send(Command::Start(Box::new(request)));
            }
            Effect::Claim { max } => {
                let available = drover_exec::host::memory().map(|m| m.available_bytes);
                let (admission, contended) = self.state.admission(available);
                let node = self.state.config.node.clone();
                let lease = self.state.config.lease;
                tokio::spawn(async move {
                    let asked = Instant::now();
                    let result = store.claim_within(&node, lease, max, admission).await;
                    let _ = answers.send(Answer::Claimed {
                        result,
                        asked: max,
                        contended,
                        took: asked.elapsed(),
                    });
                });
            }
            Effect::MarkRunning {
                attempt,
                pid,
                proc_start,
                started_at,
            } => {
                tokio::spawn(async move {
                    let verdict = store
                        .mark_running(attempt, pid, proc_start, started_at)
                        .await;
                    let _ = answers.send(Answer::Verdict(attempt, verdict));
                });
            }
            Effect::GiveBack { attempt, reason } => {
                tokio::spawn(async move {
                    if let Err(err) = store.give_back(attempt, reason, Unrun::NoPid).await {
                        tracing::warn!(%attempt, error = %err, "cannot give back an unrun claim; recovery will");
                    }
                    let _ = answers.send(Answer::Recorded);
                });
            }
            Effect::Record { attempt, ending } => {
                let executor = self.executor.clone();
                let stopping = self.stopping.clone();
                let data = Arc::clone(&self.data);
                let checkpoints = self.data.checkpoint_dir(attempt.job_id);
                let outputs = self.data.output_dir(attempt);
                tokio::spawn(async move {
                    // The result is read before the ending is written: a bad one changes it.
                    // Most jobs leave no result: one stat here, and a thread only to read one.
                    let ending = match ending {
                        Ending::Complete(mut outcome)
                            if outcome.exit_code.is_some()
                                && outputs.join(drover_exec::RESULT_FILE).exists() =>
                        {
                            tokio::task::spawn_blocking(move || {
                                record::take_result(&mut outcome, &outputs);
                                Ending::Complete(outcome)
                            })
                            .await
                            .unwrap_or_else(|_| {
                                Ending::Complete(drover_store::AttemptOutcome::bare(
                                    JobState::Failed,
                                    Reason::ResultInvalid("reading the result panicked".into()),
                                ))
                            })
                        }
                        other => other,
                    };
                    let full = move || data.release_reserve_if_full();
                    let recorded =
                        record::record(store.as_ref(), attempt, ending, &stopping, &full).await;
                    if recorded.is_ok() {
                        // On disk: the owner may forget it.
                        let _ = executor.send(Command::Ack(attempt));
                    }
                    if matches!(recorded, Ok(Recorded::Done(JobState::Succeeded)))
                        && checkpoints.exists()
                    {
                        // A job that succeeded needs its checkpoints no more. (Its owner already
                        // removed an empty directory, which is what most jobs leave.)
                        let removed = tokio::task::spawn_blocking(move || {
                            std::fs::remove_dir_all(checkpoints)
                        })
                        .await;
                        if let Ok(Err(err)) = removed {
                            tracing::warn!(%attempt, error = %err, "cannot remove the checkpoints of a job that succeeded");
                        }
                    }
                    let _ = answers.send(Answer::Recorded);
                });
            }
            Effect::RenewLeases { attempts, asked_at } => {
                let node = self.state.config.node.clone();
                let lease = self.state.config.lease;
                tokio::spawn(async move {
                    let result = store.renew_leases(&node, &attempts, lease).await;
                    let _ = answers.send(Answer::Leases(result, asked_at));
                });
            }
            Effect::PromoteDue => {
                tokio::spawn(async move {
                    let _ = answers.send(Answer::Promoted(store.promote_due().await));
                });
            }
        }
    }

    fn send(&self, command: Command) {
        if self.executor.send(command).is_err() {
            tracing::error!("the executor is gone; a command to the job owners was dropped");
        }
    }
}
