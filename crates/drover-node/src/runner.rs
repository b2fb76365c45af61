//! The node loop: claim work, hand it to the supervisor, record what the supervisor reports,
//! renew leases, and drain on shutdown.
//!
//! It keeps one claimed job waiting behind each busy slot, so that when a job ends the next one
//! starts at once instead of waiting for a claim to commit. A claimed job that never passed its
//! gate never ran: on shutdown, cancel or abort it goes back to the queue (`Store::unclaim`) with
//! its retry budget untouched.
//!
//! The loop owns the only mutable view of "what this node runs" (`live`). It never blocks on the
//! store: every store call runs in its own task and comes back as an [`Internal`] message, so
//! slow fsyncs for one job never hold up another, and concurrent changes share group commits.
//!
//! What wakes it (design.md invariant 5, no polling):
//! - store events (in-process broadcast after commit): new or re-queued work, cancel requests;
//! - supervisor reports: a child at the gate, an attempt that ended;
//! - the lease heartbeat timer, and the shutdown signal.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_core::{Admission, AttemptRef, EventKind, JobId, JobState, NodeId, Reason, Resources};
use drover_exec::owner::ExecutorHandle;
use drover_exec::{
    CheckpointPlan, Command, Ending, JobLimits, Outcome, Report, StartRequest, StopReason,
};
use drover_store::{
    AttemptOutcome, Claim, ClaimBatch, Completion, LeaseStatus, StartVerdict, Store, StoreError,
    Unrun,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, interval, sleep_until};

use crate::datadir::{DataDir, Stream};

/// Settings of the loop.
#[derive(Debug, Clone)]
pub(crate) struct RunnerConfig {
    /// This node.
    pub node: NodeId,
    /// How many attempts may run at once.
    pub slots: usize,
    /// Lease length; renewed every third of it.
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
    /// On SIGTERM/SIGINT, stop running jobs (after `shutdown_timeout`) instead of detaching.
    pub stop_jobs_on_exit: bool,
    /// Queued jobs the last claim passed over, with what each waits for; read by the API.
    pub waiting_for: WaitingFor,
    /// Where the node's load goes for its heartbeat.
    pub load: watch::Sender<drover_core::NodeLoad>,
    /// Rung by the API when a queue is resumed or widened: claim again.
    pub wake: Arc<tokio::sync::Notify>,
    /// Where attempts, claims and reservations are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Queued jobs this node passed over for lack of resources, and why (`status` shows it).
pub type WaitingFor = Arc<Mutex<HashMap<JobId, String>>>;

/// How often to look again while a job waits for memory held by processes outside drover: no
/// event says when they free it.
const CONTENTION_RECHECK: Duration = Duration::from_secs(1);

/// Where an attempt is, as the loop sees it.
#[derive(Debug)]
struct Live {
    /// What it reserved at admission.
    needs: Resources,
    /// When it was handed to its owner.
    since: Instant,
    /// Its owner has been told to stop it, and why.
    stopping: Option<StopReason>,
    /// Set once the store said it is running (pid on disk, gate opened).
    released: bool,
    /// Its leader pid and start time, once known.
    pid: Option<(i32, Option<u64>)>,
    /// SIGTERM → SIGKILL gap, for a clean-up after its owner died.
    grace: Duration,
    /// What its tree used when last asked (only for attempts that reserved memory).
    memory_used: Option<u64>,
    /// Its owner is gone and what it left is being stopped; then it is recorded lost for this
    /// reason.
    cleaning: Option<Reason>,
    /// Taken over from an earlier run of the node: `since` is not when it started, so its run
    /// time says nothing about how long jobs run.
    adopted: bool,
}

impl Live {
    fn new(needs: Resources, grace: Duration) -> Self {
        Self {
            needs,
            since: Instant::now(),
            stopping: None,
            released: false,
            pid: None,
            grace,
            memory_used: None,
            cleaning: None,
            adopted: false,
        }
    }
}

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

/// Results of store calls made off the loop.
pub(crate) enum Internal {
    Claimed(Result<ClaimBatch, StoreError>, usize, bool, Duration),
    Verdict(AttemptRef, Result<StartVerdict, StoreError>),
    Completed,
    Leases(Result<Vec<(AttemptRef, LeaseStatus)>, StoreError>, Instant),
    Promoted(Result<(usize, Option<chrono::DateTime<chrono::Utc>>), StoreError>),
}

/// The node loop's state.
pub(crate) struct Runner {
    config: RunnerConfig,
    store: Arc<dyn Store>,
    data: Arc<DataDir>,
    supervisor: ExecutorHandle,
    /// Attempts handed to the supervisor (at most `slots`).
    live: HashMap<AttemptRef, Live>,
    /// Attempts claimed ahead, waiting for a slot (at most `slots`): when a job ends, the next
    /// starts at once instead of waiting for a claim to commit. They hold no pid yet, so a crash
    /// or shutdown gives them back unrun.
    waiting: VecDeque<Claim>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    /// Slots reserved by a claim in flight.
    claiming: usize,
    /// Attempts whose process ended but whose completion is not on disk yet.
    completing: usize,
    want_claim: bool,
    retry_claim_at: Option<Instant>,
    renewing: bool,
    /// Leases are known good until this instant (the last successful renewal plus the lease).
    leases_valid_until: Instant,
    /// Jobs were stopped because leases could not be renewed; cleared by the next renewal.
    fenced: bool,
    /// When the earliest `scheduled` job is due: the timer that promotes it.
    next_due: Option<Instant>,
    /// A promotion is in flight.
    promoting: bool,
    /// A job was scheduled while a promotion was in flight: its answer may predate it.
    promote_again: bool,
    /// How long recent attempts ran (moving average): claiming ahead pays only for short jobs.
    recent_runtime: Option<Duration>,
}

/// Claim one job ahead per slot only while recent jobs ran shorter than this. A claimed-ahead
/// job is `starting` while it waits for a slot and cannot be overtaken by a later, higher
/// priority one; for jobs this short that lasts less than a blink, and for long computations no
/// job is claimed ahead at all.
const CLAIM_AHEAD_BELOW: Duration = Duration::from_millis(200);

impl Runner {
    /// A loop over `store` that runs jobs through the owners `supervisor` starts.
    pub fn new(
        config: RunnerConfig,
        store: Arc<dyn Store>,
        data: Arc<DataDir>,
        supervisor: ExecutorHandle,
    ) -> (Self, mpsc::UnboundedReceiver<Internal>) {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let lease = config.lease;
        (
            Self {
                config,
                store,
                data,
                supervisor,
                live: HashMap::new(),
                waiting: VecDeque::new(),
                internal_tx,
                claiming: 0,
                completing: 0,
                want_claim: true,
                retry_claim_at: None,
                renewing: false,
                leases_valid_until: Instant::now() + lease,
                fenced: false,
                next_due: None,
                promoting: false,
                promote_again: false,
                recent_runtime: None,
            },
            internal_rx,
        )
    }

    /// Takes over what recovery found: attempts whose owners still hold them, outcomes that
    /// came while no node listened, and attempts nothing holds any more.
    pub fn adopt(&mut self, adopted: Vec<Adopted>) {
        for found in adopted {
            match found {
                Adopted::Owned {
                    attempt,
                    needs,
                    grace,
                    pid,
                    released,
                } => {
                    let mut live = Live::new(needs, grace);
                    live.pid = pid;
                    live.released = released;
                    live.adopted = true;
                    self.live.insert(attempt, live);
                    if !released {
                        // It waits at a gate the node that claimed it never opened.
                        let _ = self
                            .supervisor
                            .send(Command::Abort(attempt, StopReason::Shutdown));
                    }
                }
                Adopted::Ended { attempt, outcome } => {
                    let mut live = Live::new(Resources::ZERO, Duration::ZERO);
                    live.released = true;
                    live.adopted = true;
                    self.live.insert(attempt, live);
                    self.on_report(Report::Exited { attempt, outcome });
                }
                Adopted::Orphaned {
                    attempt,
                    pid,
                    grace,
                    reason,
                } => {
                    let mut live = Live::new(Resources::ZERO, grace);
                    live.pid = pid;
                    live.released = pid.is_some();
                    self.live.insert(attempt, live);
                    self.clean_up(attempt, reason);
                }
            }
        }
        self.send_leases();
    }

    /// Runs until `shutdown` turns true, then detaches from the jobs that run (their owners go
    /// on) — or, with `stop_jobs_on_exit`, waits for them up to the shutdown timeout and stops
    /// the rest; a second signal then stops them at once.
    pub async fn run(
        mut self,
        mut internal: mpsc::UnboundedReceiver<Internal>,
        mut reports: mpsc::UnboundedReceiver<Report>,
        mut shutdown: watch::Receiver<u32>,
    ) {
        let mut events = self.store.subscribe();
        let mut heartbeat = interval(self.config.lease / 3);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_deadline: Option<Instant> = None;
        let mut stopped_all = false;
        let mut detaching = false;
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        // Jobs that came due while the node was down, and the first due time after.
        self.promote_due();

        loop {
            let reserved = self.reserved();
            self.config.metrics.set_reserved(reserved, self.live.len());
            let load = drover_core::NodeLoad {
                running: u32::try_from(self.live.len()).unwrap_or(u32::MAX),
                reserved,
            };
            self.config.load.send_if_modified(|old| {
                let changed = *old != load;
                *old = load;
                changed
            });
            let draining = drain_deadline.is_some();
            if !draining {
                self.fill_slots();
                self.maybe_claim();
            } else {
                self.give_back_waiting(Reason::NodeShutdown);
                // Detaching leaves running jobs to their owners, once nothing is in between:
                // no child at a gate, no clean-up, no outcome on its way to the store.
                let settled = if detaching {
                    self.live
                        .values()
                        .all(|l| l.released && l.cleaning.is_none())
                } else {
                    self.live.is_empty()
                };
                if settled && self.completing == 0 && self.claiming == 0 {
                    break;
                }
            }
            tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => self.on_report(report),
                    None => {
                        tracing::error!("the supervisor stopped; the node cannot run jobs");
                        break;
                    }
                },
                Some(msg) = internal.recv() => self.on_internal(msg),
                event = events.recv() => match event {
                    Ok(event) => self.on_event(event.kind, event.job_id, event.attempt),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // Missed wake-ups: look for work, and let the heartbeat carry cancels.
                        tracing::debug!(missed, "event stream lagged; resyncing");
                        self.want_claim = true;
                        self.renew_leases();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = self.config.wake.notified() => self.want_claim = true,
                _ = heartbeat.tick() => {
                    self.renew_leases();
                    self.fence_if_leases_expiring();
                }
                // Not only on the heartbeat: the fence must fall a full margin before expiry.
                _ = sleep_until(self.leases_valid_until.checked_sub(self.config.lease / 3).unwrap_or(self.leases_valid_until)),
                    if !self.fenced && self.holds_leases() => {
                    self.fence_if_leases_expiring();
                }
                _ = sleep_until(self.next_due.unwrap_or(far)), if self.next_due.is_some() && !draining => {
                    self.next_due = None;
                    self.promote_due();
                }
                _ = sleep_until(self.retry_claim_at.unwrap_or(far)), if self.retry_claim_at.is_some() => {
                    self.retry_claim_at = None;
                    self.want_claim = true;
                }
                changed = shutdown.changed() => {
                    let signals = if changed.is_ok() { *shutdown.borrow_and_update() } else { 2 };
                    if drain_deadline.is_none() && self.config.stop_jobs_on_exit {
                        tracing::info!(running = self.live.len(), timeout = ?self.config.shutdown_timeout,
                            "shutting down: no new claims; waiting for running jobs (--stop-jobs-on-exit)");
                        drain_deadline = Some(Instant::now() + self.config.shutdown_timeout);
                    } else if drain_deadline.is_none() {
                        tracing::info!(running = self.live.len(),
                            "shutting down: running jobs go on under their owners, and a node started on this data dir re-attaches to them");
                        detaching = true;
                        drain_deadline = Some(far);
                        // A child still at its gate never ran: it goes back to the queue.
                        let held: Vec<_> = self.live.iter().filter(|(_, l)| !l.released).map(|(a, _)| *a).collect();
                        for attempt in held {
                            self.stop(attempt, StopReason::Shutdown);
                        }
                    }
                    if signals >= 2 && !stopped_all && !detaching {
                        tracing::info!("second signal: stopping running jobs now");
                        self.stop_all(StopReason::Shutdown);
                        stopped_all = true;
                    }
                }
                _ = sleep_until(drain_deadline.unwrap_or(far)), if drain_deadline.is_some() && !stopped_all && !detaching => {
                    tracing::info!(running = self.live.len(), "shutdown timeout reached: stopping running jobs");
                    self.stop_all(StopReason::Shutdown);
                    stopped_all = true;
                }
            }
        }
        tracing::info!(running = self.live.len(), "node loop stopped");
    }

    /// How many more attempts to claim: enough to fill every slot, and — while recent jobs are
    /// short — one more waiting per slot, so that the next starts the moment a slot frees.
    fn claim_room(&self) -> usize {
        let short = self.recent_runtime.is_some_and(|r| r < CLAIM_AHEAD_BELOW);
        let ahead = if short { self.config.slots } else { 0 };
        (self.config.slots + ahead)
            .saturating_sub(self.live.len() + self.waiting.len() + self.claiming)
    }

    /// Starts waiting claims while slots are free.
    fn fill_slots(&mut self) {
        while self.live.len() < self.config.slots {
            let Some(claim) = self.waiting.pop_front() else {
                break;
            };
            self.start(claim);
        }
    }

    /// Hands every waiting claim back to the queue, unrun.
    fn give_back_waiting(&mut self, reason: Reason) {
        let waiting: Vec<_> = self.waiting.drain(..).collect();
        for claim in waiting {
            self.give_back(claim, reason.clone());
        }
    }

    /// Hands one unstarted claim back to the queue (or to `cancelled`, if a cancel is pending).
    fn give_back(&mut self, claim: Claim, reason: Reason) {
        self.completing += 1;
        let store = Arc::clone(&self.store);
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            if let Err(err) = store.unclaim(claim.attempt, reason, Unrun::NoPid).await {
                tracing::warn!(attempt = %claim.attempt, error = %err, "cannot give back an unrun claim; recovery will");
            }
            let _ = tx.send(Internal::Completed);
        });
    }

    /// What running and claimed-ahead attempts hold.
    fn reserved(&self) -> Resources {
        let live = self.live.values().map(|l| l.needs);
        let waiting = self.waiting.iter().map(|c| c.spec.resources());
        live.chain(waiting)
            .fold(Resources::ZERO, |sum, r| sum.plus(&r))
    }

    /// The admission walk for the next claim: capacity minus reservations, with memory further
    /// capped by what the machine really has available (`MemAvailable`), less what running
    /// attempts may still grow into. Returns the walk and whether outside processes are what
    /// limits it.
    fn admission(&self) -> (Admission, bool) {
        let reserved = self.reserved();
        let mut free = self.config.capacity.minus(&reserved);
        // Headroom running attempts are entitled to but do not use yet; claimed-ahead ones use
        // nothing yet.
        let growth: u64 = self
            .live
            .iter()
            .filter(|(_, live)| live.needs.memory_bytes > 0)
            .map(|(_, live)| {
                let used = live.memory_used.unwrap_or(0);
                live.needs.memory_bytes.saturating_sub(used)
            })
            .sum::<u64>()
            + self
                .waiting
                .iter()
                .map(|c| c.spec.resources().memory_bytes)
                .sum::<u64>();
        let available = drover_exec::host::memory().map(|m| m.available_bytes);
        let (memory, note) = crate::capacity::free_memory(free.memory_bytes, available, growth);
        free.memory_bytes = memory;
        let contended = note.is_some();
        (
            Admission::new(self.config.capacity, free, self.config.reserve_after, note),
            contended,
        )
    }

    /// Claims as many jobs as there is room for, in one transaction.
    fn maybe_claim(&mut self) {
        let free = self.claim_room();
        if !self.want_claim || self.claiming > 0 || free == 0 {
            return;
        }
        // Consumed now, not when the answer comes: a wake-up that arrives while this claim is
        // in flight (a submit it may not see) sets it again, and is not lost.
        self.want_claim = false;
        // What running jobs with a memory reservation use now: their owners answer in time for
        // the next claim's admission (this one uses what they said last).
        let reading: Vec<AttemptRef> = self
            .live
            .iter()
            .filter(|(_, l)| l.released && l.needs.memory_bytes > 0)
            .map(|(a, _)| *a)
            .collect();
        if !reading.is_empty() {
            let _ = self.supervisor.send(Command::ReadMemory(reading));
        }
        self.claiming = free;
        let (admission, contended) = self.admission();
        let store = Arc::clone(&self.store);
        let node = self.config.node.clone();
        let lease = self.config.lease;
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            let claimed = store.claim_within(&node, lease, free, admission).await;
            let _ = tx.send(Internal::Claimed(claimed, free, contended, asked.elapsed()));
        });
    }

    /// Promotes due `scheduled` jobs and learns when the next one is due.
    fn promote_due(&mut self) {
        if self.promoting {
            self.promote_again = true;
            return;
        }
        self.promoting = true;
        let store = Arc::clone(&self.store);
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(Internal::Promoted(store.promote_due().await));
        });
    }

    fn on_event(&mut self, kind: EventKind, job_id: drover_core::JobId, attempt: Option<u32>) {
        match kind {
            EventKind::Submitted
            | EventKind::Requeued
            | EventKind::Retried
            | EventKind::Due
            | EventKind::Reprioritized => self.want_claim = true,
            // An attempt that ended frees a place in its queue. The node's own ending counts
            // too: the claim that follows an exit runs before the ending is recorded, so a
            // queue at its limit still looks full to it.
            EventKind::Finished | EventKind::Cancelled => self.want_claim = true,
            // A new due time may be earlier than the timer's.
            EventKind::Scheduled => self.promote_due(),
            EventKind::Unblocked => {
                self.want_claim = true;
                self.promote_due();
            }
            EventKind::CancelRequested => {
                if let Some(attempt) = attempt {
                    self.stop(AttemptRef { job_id, attempt }, StopReason::Cancel);
                }
            }
            _ => {}
        }
    }

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Claimed(result, asked, contended, took) => {
                self.claiming = 0;
                self.config
                    .metrics
                    .claim_seconds
                    .observe(took.as_secs_f64());
                match result {
                    Ok(ClaimBatch { claims, waiting }) => {
                        // As many as asked: there may be more. Fewer: the queue is dry (or
                        // what is left does not fit) until an event says otherwise — including
                        // one that came while this claim was in flight.
                        if claims.len() == asked {
                            self.want_claim = true;
                        }
                        if !waiting.is_empty() && contended {
                            self.retry_claim_at = Some(Instant::now() + CONTENTION_RECHECK);
                        }
                        if let Ok(mut notes) = self.config.waiting_for.lock() {
                            notes.clear();
                            notes.extend(waiting);
                        }
                        self.waiting.extend(claims);
                        self.fill_slots();
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "claim failed; retrying in 1 s");
                        self.retry_claim_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            Internal::Verdict(attempt, verdict) => self.on_verdict(attempt, verdict),
            Internal::Promoted(result) => {
                self.promoting = false;
                if std::mem::take(&mut self.promote_again) {
                    self.promote_due();
                }
                match result {
                    Ok((_, next)) => {
                        self.next_due = next.map(|at| {
                            let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                            Instant::now() + wait
                        });
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot promote scheduled jobs; trying again in 1 s");
                        self.next_due = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            Internal::Completed => self.completing = self.completing.saturating_sub(1),
            Internal::Leases(result, asked_at) => {
                self.renewing = false;
                match result {
                    Ok(statuses) => {
                        self.leases_valid_until = asked_at + self.config.lease;
                        self.fenced = false;
                        for (attempt, status) in statuses {
                            match status {
                                LeaseStatus::Held {
                                    cancel_requested: true,
                                } => self.stop(attempt, StopReason::Cancel),
                                LeaseStatus::Held { .. } => {}
                                LeaseStatus::Lost => {
                                    tracing::warn!(%attempt, "lease lost: another attempt owns this job; stopping ours");
                                    self.stop(attempt, StopReason::LeaseLost);
                                }
                            }
                        }
                        self.send_leases();
                    }
                    Err(err) => tracing::warn!(error = %err, "lease renewal failed"),
                }
            }
        }
    }

    /// Hands a claimed attempt to an owner, which forks it and holds it at the gate.
    fn start(&mut self, claim: Claim) {
        let attempt = claim.attempt;
        let spec = claim.spec;
        let checkpoint_exit_code = spec.checkpoint_code();
        let checkpoint = spec
            .checkpoint_signal
            .zip(spec.signal_before)
            .map(|(signal, before)| CheckpointPlan {
                signal: signal.number(),
                before: before.get(),
            });
        let checkpoint_dir = self.data.checkpoint_dir(attempt.job_id);
        // Made for jobs that checkpoint; every job gets the variable and may make it itself.
        // (A directory made and removed for every job cost short jobs ~9% of their throughput.)
        let checkpoints = spec.checkpoint_signal.is_some() || spec.checkpoint_exit_code.is_some();
        let mut env: Vec<(String, String)> = spec.env.into_iter().collect();
        env.push(("DROVER_JOB_ID".into(), attempt.job_id.to_string()));
        env.push(("DROVER_ATTEMPT".into(), attempt.attempt.to_string()));
        env.push(("DROVER_NODE".into(), self.config.node.0.clone()));
        env.push((
            "DROVER_CHECKPOINT_DIR".into(),
            checkpoint_dir.to_string_lossy().into_owned(),
        ));
        let heartbeat_path = spec.stall.map(|_| self.data.heartbeat_path(attempt));
        if let Some(path) = &heartbeat_path {
            env.push((
                "DROVER_HEARTBEAT_FILE".into(),
                path.to_string_lossy().into_owned(),
            ));
        }
        let needs = Resources::of_job(spec.memory.map(|m| m.bytes()), spec.cpus);
        let grace = spec.grace.get();
        let request = StartRequest {
            attempt,
            argv: spec.argv,
            env,
            env_remove: crate::NODE_SECRETS.iter().map(|s| s.to_string()).collect(),
            cwd: spec.cwd.map(Into::into),
            timeout: spec.timeout.get(),
            grace,
            stdout_path: self.data.log_path(attempt, Stream::Stdout),
            stderr_path: self.data.log_path(attempt, Stream::Stderr),
            log_limit: self.config.log_limit,
            limits: JobLimits {
                memory_bytes: spec.memory.map(|m| m.bytes()),
                cpus: spec.cpus,
                pids: spec.pids,
                nofile: spec.nofile,
            },
            stall: spec.stall.map(|s| s.get()),
            heartbeat_path,
            checkpoint,
            checkpoint_exit_code,
            checkpoint_dir: checkpoints.then_some(checkpoint_dir),
            // The claim just took a lease: it runs out `lease` from about now.
            fence_in: self
                .config
                .fence
                .then(|| self.config.lease - self.fence_margin()),
        };
        tracing::debug!(%attempt, "starting");
        self.live.insert(attempt, Live::new(needs, grace));
        if self
            .supervisor
            .send(Command::Start(Box::new(request)))
            .is_err()
        {
            tracing::error!(%attempt, "the executor is gone; cannot start");
        }
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Spawned {
                attempt,
                pid,
                proc_start,
            } => {
                if let Some(live) = self.live.get_mut(&attempt) {
                    live.pid = Some((pid, proc_start));
                }
                // The pid must be on disk before the child may exec.
                let store = Arc::clone(&self.store);
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let verdict = store.mark_running(attempt, pid, proc_start).await;
                    let _ = tx.send(Internal::Verdict(attempt, verdict));
                });
            }
            Report::Exited { attempt, outcome } => self.on_exited(attempt, outcome),
            Report::OwnerDied { attempt } => {
                tracing::error!(%attempt, "the job's owner died; stopping what is left of its tree");
                self.clean_up(attempt, Reason::OwnerDied);
            }
            Report::Cleaned {
                attempt,
                killed,
                survivors,
            } => self.on_cleaned(attempt, killed, survivors),
            Report::Memory { attempt, bytes } => {
                if let Some(live) = self.live.get_mut(&attempt) {
                    live.memory_used = bytes;
                }
            }
        }
    }

    fn on_exited(&mut self, attempt: AttemptRef, outcome: Outcome) {
        if outcome.survivors {
            tracing::error!(%attempt, "a process of this attempt survived SIGKILL");
        }
        let recorded = to_attempt_outcome(&outcome);
        tracing::info!(%attempt, state = %recorded.state, reason = %recorded.reason, "attempt ended");
        // The tree is gone, so the slot is free now. Recording the outcome goes on in
        // its own task, and shutdown waits for it.
        self.config
            .metrics
            .attempts
            .get_or_create(&crate::metrics::OutcomeLabels {
                state: recorded.state.to_string(),
                reason: recorded.reason.kind().to_string(),
            })
            .inc();
        if let Some(live) = self.live.remove(&attempt).filter(|l| !l.adopted) {
            let ran = live.since.elapsed();
            self.config
                .metrics
                .attempt_seconds
                .observe(ran.as_secs_f64());
            self.recent_runtime = Some(match self.recent_runtime {
                Some(avg) => avg.mul_f64(0.8) + ran.mul_f64(0.2),
                None => ran,
            });
        }
        // Its slot and reservation are free again: a passed-over job may fit now.
        self.want_claim = true;
        self.completing += 1;
        let store = Arc::clone(&self.store);
        let tx = self.internal_tx.clone();
        let executor = self.supervisor.clone();
        let checkpoints = self.data.checkpoint_dir(attempt.job_id);
        tokio::spawn(async move {
            let answer = record_ending(store.as_ref(), attempt, &outcome.ending, recorded).await;
            if answer.is_some() {
                // On disk: the owner may forget it.
                let _ = executor.send(Command::Ack(attempt));
            }
            if answer == Some(Some(JobState::Succeeded)) && checkpoints.exists() {
                // A job that succeeded needs its checkpoints no more. (Its owner already removed
                // an empty directory, which is what most jobs leave.)
                let _ =
                    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(checkpoints)).await;
            }
            let _ = tx.send(Internal::Completed);
        });
    }

    /// Stops what is left of an attempt nothing holds any more; [`Report::Cleaned`] follows.
    fn clean_up(&mut self, attempt: AttemptRef, reason: Reason) {
        let Some(live) = self.live.get_mut(&attempt) else {
            return;
        };
        live.cleaning = Some(reason);
        let (pid, proc_start) = match live.pid {
            Some((pid, start)) => (Some(pid), start),
            None => (None, None),
        };
        let _ = self.supervisor.send(Command::Clean {
            attempt,
            pid,
            proc_start,
            grace: live.grace,
        });
    }

    /// What an attempt whose owner died left is gone: record it. One that never passed its gate
    /// never ran and goes back to the queue; one that ran is lost (or cancelled, if that was
    /// asked), and its retry policy applies.
    fn on_cleaned(&mut self, attempt: AttemptRef, killed: usize, survivors: bool) {
        if survivors {
            tracing::error!(%attempt, "a process of an attempt whose owner died survived SIGKILL");
        }
        let Some(live) = self.live.remove(&attempt) else {
            return;
        };
        let reason = live.cleaning.unwrap_or(Reason::OwnerDied);
        tracing::warn!(%attempt, killed, %reason, "stopped what was left of the attempt");
        self.want_claim = true;
        self.completing += 1;
        let store = Arc::clone(&self.store);
        let tx = self.internal_tx.clone();
        let executor = self.supervisor.clone();
        let cancelled = live.stopping == Some(StopReason::Cancel);
        tokio::spawn(async move {
            let answered = if live.released {
                let outcome = if cancelled {
                    AttemptOutcome::bare(JobState::Cancelled, Reason::CancelledByUser)
                } else {
                    AttemptOutcome::bare(JobState::Lost, reason)
                };
                complete_with_retry(store.as_ref(), attempt, outcome).await
            } else {
                give_back_with_retry(store.as_ref(), attempt, reason, Unrun::StoppedAtGate).await
            };
            if answered.is_some() {
                let _ = executor.send(Command::Ack(attempt));
            }
            let _ = tx.send(Internal::Completed);
        });
    }

    /// How long before its leases run out an owner kills its job when no renewal came.
    fn fence_margin(&self) -> Duration {
        self.config.lease / 3
    }

    /// Tells the owners of running attempts how long their leases hold (with a shared store:
    /// without one, nothing else can rerun a job, and owners do not fence).
    fn send_leases(&self) {
        if !self.config.fence {
            return;
        }
        let attempts: Vec<AttemptRef> = self
            .live
            .iter()
            .filter(|(_, l)| l.cleaning.is_none())
            .map(|(a, _)| *a)
            .collect();
        if attempts.is_empty() {
            return;
        }
        let fence_at = self
            .leases_valid_until
            .checked_sub(self.fence_margin())
            .unwrap_or(self.leases_valid_until);
        let _ = self.supervisor.send(Command::Lease {
            attempts,
            fence_in: Some(fence_at.saturating_duration_since(Instant::now())),
        });
    }

    fn on_verdict(&mut self, attempt: AttemptRef, verdict: Result<StartVerdict, StoreError>) {
        let command = match verdict {
            Ok(StartVerdict::Run) => {
                if let Some(live) = self.live.get_mut(&attempt) {
                    live.released = true;
                }
                Command::Release(attempt)
            }
            Ok(StartVerdict::Cancelled) => Command::Abort(attempt, StopReason::Cancel),
            Ok(StartVerdict::Stale) => Command::Abort(attempt, StopReason::LeaseLost),
            Err(err) => {
                // Without the pid on disk the job must not run.
                tracing::error!(%attempt, error = %err, "cannot record the pid; not starting the job");
                Command::Abort(attempt, StopReason::Shutdown)
            }
        };
        // A stop sent while the child waited at the gate already made the supervisor abort it;
        // this command then finds no attempt and is dropped.
        let _ = self.supervisor.send(command);
    }

    /// Asks the supervisor to stop an attempt we hold (once per reason).
    fn stop(&mut self, attempt: AttemptRef, reason: StopReason) {
        if let Some(index) = self.waiting.iter().position(|c| c.attempt == attempt) {
            // Not started: nothing to kill. A cancel or shutdown gives it back (a pending cancel
            // makes that `cancelled`); a lost lease means it is no longer ours to touch.
            if let Some(claim) = self.waiting.remove(index) {
                if reason != StopReason::LeaseLost {
                    self.give_back(claim, Reason::NodeShutdown);
                }
            }
            return;
        }
        let Some(live) = self.live.get_mut(&attempt) else {
            return;
        };
        if live.stopping.is_some() {
            return;
        }
        live.stopping = Some(reason);
        // Before release the supervisor treats Stop as Abort; after, it runs the kill ladder.
        let _ = self.supervisor.send(Command::Stop(attempt, reason));
        tracing::info!(%attempt, ?reason, released = live.released, "stop requested");
    }

    fn stop_all(&mut self, reason: StopReason) {
        if reason == StopReason::LeaseLost {
            // Leases are unrenewable: waiting claims are no longer ours; the store will see to them.
            self.waiting.clear();
        }
        let attempts: Vec<_> = self.live.keys().copied().collect();
        for attempt in attempts {
            self.stop(attempt, reason);
        }
    }

    fn renew_leases(&mut self) {
        let idle = self.live.is_empty() && self.waiting.is_empty();
        if self.renewing || idle {
            if idle {
                self.leases_valid_until = Instant::now() + self.config.lease;
            }
            return;
        }
        self.renewing = true;
        let attempts: Vec<_> = self
            .live
            .keys()
            .copied()
            .chain(self.waiting.iter().map(|c| c.attempt))
            .collect();
        let store = Arc::clone(&self.store);
        let node = self.config.node.clone();
        let lease = self.config.lease;
        let tx = self.internal_tx.clone();
        let asked_at = Instant::now();
        tokio::spawn(async move {
            let result = store.renew_leases(&node, &attempts, lease).await;
            let _ = tx.send(Internal::Leases(result, asked_at));
        });
    }

    /// Whether the node holds any lease (running or claimed-ahead attempts).
    fn holds_leases(&self) -> bool {
        !(self.live.is_empty() && self.waiting.is_empty())
    }

    /// Self-fencing: if leases could not be renewed and are about to run out, stop every job
    /// before they do, so that no other node's attempt ever runs beside ours.
    fn fence_if_leases_expiring(&mut self) {
        if !self.holds_leases() {
            return;
        }
        let margin = self.config.lease / 3;
        if !self.fenced && Instant::now() + margin >= self.leases_valid_until {
            self.fenced = true;
            tracing::error!("cannot renew leases; stopping every job before the leases expire");
            self.stop_all(StopReason::LeaseLost);
        }
    }
}

/// Records how an attempt ended. One stopped at the gate never ran, so it goes back to the queue
/// with its retry budget untouched — even if its pid made it to the store (the stop raced the
/// start, or a database fault lost the start's answer): this node saw it die before exec.
///
/// Returns `None` if the store never answered; else `Some` of the job's state now (`None`
/// inside when the store said the attempt was no longer live).
async fn record_ending(
    store: &dyn Store,
    attempt: AttemptRef,
    ending: &Ending,
    recorded: AttemptOutcome,
) -> Option<Option<JobState>> {
    if matches!(ending, Ending::Aborted(_)) {
        give_back_with_retry(store, attempt, recorded.reason, Unrun::StoppedAtGate).await
    } else {
        complete_with_retry(store, attempt, recorded).await
    }
}

/// Gives an attempt that never ran back (a database restart must not turn a job that never
/// ran into a lost one).
async fn give_back_with_retry(
    store: &dyn Store,
    attempt: AttemptRef,
    reason: Reason,
    proof: Unrun,
) -> Option<Option<JobState>> {
    until_answered(attempt, "giving back an unrun attempt", || {
        store.unclaim(attempt, reason.clone(), proof)
    })
    .await
}

/// Records a completion.
async fn complete_with_retry(
    store: &dyn Store,
    attempt: AttemptRef,
    outcome: AttemptOutcome,
) -> Option<Option<JobState>> {
    until_answered(attempt, "recording a completion", || {
        store.complete(attempt, outcome.clone())
    })
    .await
}

/// Calls `ending` until the store answers, retrying transient errors with backoff (about 20 s
/// in all: long enough to ride out a database restart); a stale answer is final. If it never
/// answers, the attempt's lease runs out and the reaper (or recovery at restart) ends it.
async fn until_answered<F, Fut>(
    attempt: AttemptRef,
    what: &str,
    ending: F,
) -> Option<Option<JobState>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Completion, StoreError>>,
{
    let mut pause = Duration::from_millis(50);
    for _ in 0..12 {
        match ending().await {
            Ok(Completion::Recorded { state }) => {
                tracing::debug!(%attempt, %state, what, "recorded");
                return Some(Some(state));
            }
            Ok(Completion::Stale {
                current_attempt,
                current_state,
            }) => {
                tracing::warn!(%attempt, current_attempt, %current_state, what, "the attempt is no longer live; the store ignored it");
                return Some(None);
            }
            Err(err) => {
                tracing::warn!(%attempt, error = %err, what, "store error; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
    tracing::error!(%attempt, what, "gave up; the lease will run out and the reaper or recovery will end the attempt");
    None
}

/// Maps the supervisor's view of an ending onto the store's states and reasons.
pub fn to_attempt_outcome(outcome: &Outcome) -> AttemptOutcome {
    // A tree that hit a hard limit and then failed failed *because of* the limit: name that,
    // not the exit code or signal it produced (those stay on the attempt).
    let limit_reason = if outcome.oom_killed {
        Some(Reason::MemoryLimit)
    } else if outcome.pids_limited {
        Some(Reason::PidsLimit)
    } else {
        None
    };
    let (state, reason) = match &outcome.ending {
        Ending::Exited(0) => (JobState::Succeeded, Reason::ExitCode(0)),
        Ending::Exited(code) => (
            JobState::Failed,
            limit_reason.unwrap_or(Reason::ExitCode(*code)),
        ),
        Ending::Signaled(sig) => (
            JobState::Failed,
            limit_reason.unwrap_or(Reason::Signal(*sig)),
        ),
        Ending::TimedOut => (JobState::TimedOut, Reason::Timeout),
        Ending::Stalled => (JobState::Failed, Reason::Stalled),
        Ending::SpawnFailed(err) => (JobState::Failed, Reason::SpawnFailed(err.clone())),
        // The store decides between `queued` and, with a cancel pending, `cancelled`.
        Ending::Checkpointed(_) => (JobState::Queued, Reason::Checkpointed),
        Ending::Stopped(why) | Ending::Aborted(why) => match why {
            StopReason::Cancel => (JobState::Cancelled, Reason::CancelledByUser),
            StopReason::Shutdown => (JobState::Lost, Reason::NodeShutdown),
            StopReason::LeaseLost => (JobState::Lost, Reason::NodeLost),
        },
    };
    AttemptOutcome {
        state,
        reason,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        peak_memory_bytes: outcome.peak_memory_bytes,
        cpu_time_ms: outcome.cpu_time_ms,
        ended_at: outcome
            .ended_at_ms
            .and_then(|ms| i64::try_from(ms).ok())
            .and_then(chrono::DateTime::from_timestamp_millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::JobSpec;
    use drover_store::SqlStore;

    async fn store_with_claim() -> (SqlStore, tempfile::TempDir, AttemptRef) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqlStore::sqlite(dir.path().join("drover.db")).expect("open");
        store
            .submit(vec![JobSpec::new(["true"])])
            .await
            .expect("submit");
        let node = NodeId("n".into());
        let claim = store
            .claim(&node, Duration::from_secs(30), 1)
            .await
            .expect("claim")
            .pop()
            .expect("a claim");
        (store, dir, claim.attempt)
    }

    /// A runner with one slot over `store`, on the rlimit backend; its loop is not running, so a
    /// test drives it step by step. (No job is started: the tests drive claims, not owners.)
    async fn runner_over(
        store: &Arc<dyn Store>,
        dir: &std::path::Path,
    ) -> (Runner, mpsc::UnboundedReceiver<Internal>) {
        let data = Arc::new(DataDir::open(&dir.join("data")).expect("data dir"));
        let containment = Arc::new(
            drover_exec::Containment::detect(
                drover_exec::BackendChoice::Only(drover_exec::BackendKind::Rlimit),
                "unused",
            )
            .expect("rlimit"),
        );
        let (supervisor, _reports, _found) = drover_exec::owner::Executor::start(
            drover_exec::owner::ExecutorConfig {
                dir: data.owners_dir(),
                program: "/nonexistent/drover".into(),
                containment: containment.spec(),
                env_remove: Vec::new(),
                keep_idle: 1,
                reattach: true,
            },
            containment,
        )
        .await
        .expect("executor");
        let config = RunnerConfig {
            node: NodeId("n".into()),
            slots: 1,
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(1),
            log_limit: 1 << 20,
            capacity: Resources {
                memory_bytes: 1 << 30,
                cpu_millis: 1000,
            },
            reserve_after: Duration::from_secs(60),
            fence: false,
            stop_jobs_on_exit: false,
            waiting_for: WaitingFor::default(),
            load: watch::channel(drover_core::NodeLoad::default()).0,
            wake: Arc::new(tokio::sync::Notify::new()),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        };
        Runner::new(config, Arc::clone(store), data, supervisor)
    }

    /// A submit that lands while a claim is in flight must lead to another claim: the claim's
    /// answer (fewer jobs than asked: it ran before the submit) must not clear the wake-up the
    /// submit set. It did, and the job stayed queued until some unrelated event — which hung
    /// `bench/run quick` in CI.
    #[tokio::test]
    async fn a_submit_during_a_claim_is_not_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(SqlStore::sqlite(dir.path().join("drover.db")).expect("open"));
        let (mut runner, mut internal) = runner_over(&store, dir.path()).await;
        runner.maybe_claim();
        assert_eq!(runner.claiming, 1, "a claim is in flight");
        // The claim runs on an empty queue; its answer is on its way back to the loop...
        let answer = internal.recv().await.expect("the claim's answer");
        // ...when a submit commits and its event reaches the loop first.
        let id = store
            .submit(vec![JobSpec::new(["true"])])
            .await
            .expect("submit")[0];
        runner.on_event(EventKind::Submitted, id, None);
        runner.on_internal(answer);
        assert!(runner.waiting.is_empty(), "the claim found nothing");
        assert!(
            runner.want_claim,
            "the submit's wake-up survived the claim's answer"
        );
    }

    /// The claim that follows an exit runs before the ending is recorded, so a queue at its
    /// limit still looks full to it; the recorded ending must lead to another claim. It did not,
    /// and the second job of a one-at-a-time queue stayed queued for good (seen in CI).
    #[tokio::test]
    async fn an_ending_recorded_after_the_claim_frees_the_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(SqlStore::sqlite(dir.path().join("drover.db")).expect("open"));
        store
            .set_queue("q".into(), None, Some(Some(1)))
            .await
            .expect("set queue");
        let in_q = || {
            let mut spec = JobSpec::new(["true"]);
            spec.queue = Some("q".into());
            spec
        };
        let first = store.submit(vec![in_q()]).await.expect("submit")[0];
        let elsewhere = NodeId("elsewhere".into());
        let running = store
            .claim(&elsewhere, Duration::from_secs(30), 1)
            .await
            .expect("claim")
            .pop()
            .expect("the first job");
        assert_eq!(running.attempt.job_id, first);
        store
            .mark_running(running.attempt, 1, None)
            .await
            .expect("running");
        store.submit(vec![in_q()]).await.expect("submit");

        let (mut runner, mut internal) = runner_over(&store, dir.path()).await;
        runner.maybe_claim();
        let answer = internal.recv().await.expect("the claim's answer");
        runner.on_internal(answer);
        assert!(runner.waiting.is_empty(), "q is full: nothing to claim");
        assert!(!runner.want_claim, "and nothing to look for until an event");

        store
            .complete(
                running.attempt,
                AttemptOutcome {
                    exit_code: Some(0),
                    ..AttemptOutcome::bare(JobState::Succeeded, Reason::ExitCode(0))
                },
            )
            .await
            .expect("complete");
        runner.on_event(EventKind::Finished, first, Some(running.attempt.attempt));
        assert!(runner.want_claim, "the ending woke a claim");
        runner.maybe_claim();
        let answer = internal.recv().await.expect("the claim's answer");
        runner.on_internal(answer);
        assert_eq!(
            runner.live.len() + runner.waiting.len(),
            1,
            "the second job of q was claimed"
        );
    }

    #[test]
    fn limit_hits_name_the_reason_of_a_failure_only() {
        let mut outcome = Outcome::without_process(Ending::Signaled(libc::SIGKILL));
        outcome.oom_killed = true;
        assert_eq!(to_attempt_outcome(&outcome).reason, Reason::MemoryLimit);
        outcome.ending = Ending::Exited(0);
        assert_eq!(
            to_attempt_outcome(&outcome).state,
            JobState::Succeeded,
            "a job that survived a child's OOM kill and exited 0 succeeded"
        );
        let mut outcome = Outcome::without_process(Ending::Exited(2));
        outcome.pids_limited = true;
        assert_eq!(to_attempt_outcome(&outcome).reason, Reason::PidsLimit);
        let outcome = Outcome::without_process(Ending::Stalled);
        let recorded = to_attempt_outcome(&outcome);
        assert_eq!(
            (recorded.state, recorded.reason),
            (JobState::Failed, Reason::Stalled)
        );
    }

    #[tokio::test]
    async fn an_attempt_aborted_at_the_gate_goes_back_unrun() {
        let (store, _dir, attempt) = store_with_claim().await;
        let ending = Ending::Aborted(StopReason::Shutdown);
        let recorded = to_attempt_outcome(&Outcome::without_process(ending.clone()));
        record_ending(&store, attempt, &ending, recorded).await;
        let job = store.get(attempt.job_id).await.expect("get").expect("job");
        assert_eq!(
            job.state,
            JobState::Queued,
            "a job that never ran keeps its budget"
        );
        assert_eq!(job.attempts[0].reason, Some(Reason::NodeShutdown));
    }

    /// The start committed (pid on record) just before the stop reached the child at the gate —
    /// or the start's answer was lost to a database fault. The node saw the child die unrun, so
    /// the job goes back to the queue, neither left `running` nor charged an attempt.
    #[tokio::test]
    async fn an_abort_that_raced_the_start_goes_back_unrun() {
        let (store, _dir, attempt) = store_with_claim().await;
        store
            .mark_running(attempt, 4242, None)
            .await
            .expect("mark running");
        let ending = Ending::Aborted(StopReason::Shutdown);
        let recorded = to_attempt_outcome(&Outcome::without_process(ending.clone()));
        record_ending(&store, attempt, &ending, recorded).await;
        let job = store.get(attempt.job_id).await.expect("get").expect("job");
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.attempts[0].state, JobState::Queued);
        assert_eq!(job.attempts[0].reason, Some(Reason::NodeShutdown));
    }

    #[test]
    fn every_ending_maps_to_a_named_reason() {
        let cases = [
            (Ending::Exited(0), JobState::Succeeded, "exit_code: 0"),
            (Ending::Exited(3), JobState::Failed, "exit_code: 3"),
            (Ending::Signaled(11), JobState::Failed, "signal: SIGSEGV"),
            (Ending::TimedOut, JobState::TimedOut, "timeout"),
            (
                Ending::SpawnFailed("No such file or directory (os error 2)".into()),
                JobState::Failed,
                "spawn_failed: No such file or directory (os error 2)",
            ),
            (
                Ending::Stopped(StopReason::Cancel),
                JobState::Cancelled,
                "cancelled_by_user",
            ),
            (
                Ending::Aborted(StopReason::Cancel),
                JobState::Cancelled,
                "cancelled_by_user",
            ),
            (
                Ending::Stopped(StopReason::Shutdown),
                JobState::Lost,
                "node_shutdown",
            ),
            (
                Ending::Stopped(StopReason::LeaseLost),
                JobState::Lost,
                "node_lost",
            ),
        ];
        for (ending, state, reason) in cases {
            let mapped = to_attempt_outcome(&Outcome::without_process(ending));
            assert_eq!(mapped.state, state);
            assert_eq!(mapped.reason.to_string(), reason);
        }
    }
}
