//! The runner's view of what this node runs, and the handlers that change it.
//!
//! Each handler takes one thing that happened (an event, a report from an owner, a store's
//! answer, a tick of a timer) and pushes the [`Effect`]s that should follow; it may not call
//! the store, the executor or the machine (memory figures come in as arguments). The driver in
//! `mod.rs` carries the effects out. That split is what lets `tests.rs` check claiming ahead,
//! fencing and endings without a store or an owner.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use drover_core::{Admission, AttemptRef, EventKind, JobId, Reason, Resources};
use drover_exec::{Command, Report, StopReason};
use drover_store::{Claim, ClaimBatch, StartVerdict, StoreError};
use tokio::time::Instant;

use super::effect::{Answer, Effect};
use super::{Adopted, RunnerConfig};

mod endings;
mod fold;
#[cfg(test)]
pub(crate) use fold::FOLD_WINDOW;
mod leases;

/// Claim one job ahead per slot only while recent jobs ran shorter than this. A claimed-ahead
/// job is `starting` while it waits for a slot and cannot be overtaken by a later, higher
/// priority one; for jobs this short that lasts less than a blink, and for long computations no
/// job is claimed ahead at all.
pub(crate) const CLAIM_AHEAD_BELOW: Duration = Duration::from_millis(200);

/// How often to look again while a job waits for memory held by processes outside drover: no
/// event says when they free it.
const CONTENTION_RECHECK: Duration = Duration::from_secs(1);

/// Where an attempt handed to an owner is, as the loop sees it.
#[derive(Debug)]
pub(crate) struct Live {
    /// What it reserved at admission.
    pub needs: Resources,
    /// When it was handed to its owner.
    pub since: Instant,
    /// Its owner has been told to stop it, and why.
    pub stopping: Option<StopReason>,
    /// Set once the store said it is running (pid on disk, gate opened).
    pub released: bool,
    /// Its leader pid and start time, once known.
    pub pid: Option<(i32, Option<u64>)>,
    /// SIGTERM → SIGKILL gap, for a clean-up after its owner died.
    pub grace: Duration,
    /// What its tree used when last asked (only for attempts that reserved memory).
    pub memory_used: Option<u64>,
    /// Its owner is gone and what it left is being stopped; then it is recorded lost for this
    /// reason.
    pub cleaning: Option<Reason>,
    /// Taken over from an earlier run of the node: `since` is not when it started, so its run
    /// time says nothing about how long jobs run.
    pub adopted: bool,
    /// It holds a slot: all but a session's host, which sits idle between the execs that each
    /// take one.
    pub takes_slot: bool,
}

impl Live {
    pub(crate) fn new(needs: Resources, grace: Duration) -> Self {
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
            takes_slot: true,
        }
    }
}

/// The loop's state. Everything the node knows about its own attempts is here, and only here.
pub(crate) struct State {
    pub(crate) config: RunnerConfig,
    /// Attempts handed to owners (at most `slots`).
    pub(crate) live: HashMap<AttemptRef, Live>,
    /// Attempts claimed ahead, waiting for a slot (at most `slots`): when a job ends, the next
    /// starts at once instead of waiting for a claim to commit. They hold no pid yet, so a crash
    /// or shutdown gives them back unrun.
    pub(crate) ahead: VecDeque<Claim>,
    /// Slots reserved by a claim in flight.
    pub(crate) claiming: usize,
    /// Endings and give-backs on their way to the store.
    pub(crate) recording: usize,
    /// Something may be claimable: a claim should run when there is room.
    pub(crate) want_claim: bool,
    /// After a failed claim, or while outside memory use holds admission back: claim again at.
    pub(crate) retry_claim_at: Option<Instant>,
    renewing: bool,
    /// Leases are known good until this instant (the last successful renewal plus the lease).
    pub(crate) leases_valid_until: Instant,
    /// Jobs were stopped because leases could not be renewed; cleared by the next renewal.
    pub(crate) fenced: bool,
    /// When the earliest `scheduled` job is due: the timer that promotes it.
    pub(crate) next_due: Option<Instant>,
    promoting: bool,
    /// A job was scheduled while a promotion was in flight: its answer may predate it.
    promote_again: bool,
    /// How long recent attempts ran (moving average): claiming ahead pays only for short jobs.
    pub(crate) recent_runtime: Option<Duration>,
    /// What the handlers decided, in order, for the driver to carry out (through
    /// [`State::settle`]).
    pub(crate) effects: Vec<Effect>,
    /// Writes held to ride with the next pid record (see `fold`), in the order decided.
    pub(crate) held: Vec<Effect>,
    /// When held writes go out even if no pid record came.
    pub(crate) held_until: Option<Instant>,
}

impl State {
    /// A node with nothing running.
    pub(crate) fn new(config: RunnerConfig) -> Self {
        let lease = config.lease;
        Self {
            config,
            live: HashMap::new(),
            ahead: VecDeque::new(),
            claiming: 0,
            recording: 0,
            want_claim: true,
            retry_claim_at: None,
            renewing: false,
            leases_valid_until: Instant::now() + lease,
            fenced: false,
            next_due: None,
            promoting: false,
            promote_again: false,
            recent_runtime: None,
            effects: Vec::new(),
            held: Vec::new(),
            held_until: None,
        }
    }

    fn send(&mut self, command: Command) {
        self.effects.push(Effect::Send(command));
    }

    /// Takes over what recovery found: attempts whose owners still hold them, outcomes that
    /// came while no node listened, and attempts nothing holds any more.
    pub(crate) fn adopt(&mut self, adopted: Vec<Adopted>) {
        for found in adopted {
            match found {
                Adopted::Owned {
                    attempt,
                    needs,
                    grace,
                    pid,
                    released,
                    takes_slot,
                    record_start,
                } => {
                    let mut live = Live::new(needs, grace);
                    live.pid = pid;
                    live.released = released;
                    live.adopted = true;
                    live.takes_slot = takes_slot;
                    self.live.insert(attempt, live);
                    if let (true, Some((pid, proc_start))) = (record_start, pid) {
                        self.effects.push(Effect::MarkRunning {
                            attempt,
                            pid,
                            proc_start,
                            started_at: None,
                        });
                    }
                    if !released {
                        // It waits at a gate the node that claimed it never opened.
                        self.send(Command::Abort(attempt, StopReason::Shutdown));
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
                    // Recovery passes one on only if it may have run: a pid on record, or
                    // (self-released) a cell that still exists.
                    live.released = pid.is_some() || self.config.self_release;
                    self.live.insert(attempt, live);
                    self.clean_up(attempt, reason);
                }
            }
        }
        self.send_leases();
    }

    /// How many more attempts to claim: enough to fill every slot, and — while recent jobs are
    /// short — one more waiting per slot, so that the next starts the moment a slot frees.
    pub(crate) fn claim_room(&self) -> usize {
        let short = self.recent_runtime.is_some_and(|r| r < CLAIM_AHEAD_BELOW);
        let ahead = if short { self.config.slots } else { 0 };
        (self.config.slots + ahead)
            .saturating_sub(self.busy_slots() + self.ahead.len() + self.claiming)
    }

    /// Slots held by what runs (a session's host holds none).
    pub(crate) fn busy_slots(&self) -> usize {
        self.live.values().filter(|live| live.takes_slot).count()
    }

    /// Starts claimed-ahead attempts while slots are free, and a session's host at once.
    pub(crate) fn fill_slots(&mut self) {
        while let Some(at) = self.ahead.iter().position(|c| !c.spec.takes_slot()) {
            if let Some(claim) = self.ahead.remove(at) {
                self.start(claim);
            }
        }
        while self.busy_slots() < self.config.slots {
            let Some(claim) = self.ahead.pop_front() else {
                break;
            };
            self.start(claim);
        }
    }

    /// Hands every claimed-ahead attempt back to the queue, unrun.
    pub(crate) fn give_back_ahead(&mut self, reason: Reason) {
        let ahead: Vec<_> = self.ahead.drain(..).collect();
        for claim in ahead {
            self.give_back(claim, reason.clone());
        }
    }

    /// Hands one unstarted claim back to the queue (or to `cancelled`, if a cancel is pending).
    fn give_back(&mut self, claim: Claim, reason: Reason) {
        self.recording += 1;
        self.effects.push(Effect::GiveBack {
            attempt: claim.attempt,
            reason,
        });
    }

    /// What running and claimed-ahead attempts hold.
    pub(crate) fn reserved(&self) -> Resources {
        let live = self.live.values().map(|l| l.needs);
        let ahead = self.ahead.iter().map(|c| c.spec.resources());
        live.chain(ahead)
            .fold(Resources::ZERO, |sum, r| sum.plus(&r))
    }

    /// The admission walk for the next claim: capacity minus reservations, with memory further
    /// capped by what the machine has available now (`available`, `MemAvailable`), less what
    /// running attempts may still grow into. Returns the walk and whether outside processes are
    /// what limits it.
    pub(crate) fn admission(&self, available: Option<u64>) -> (Admission, bool) {
        let reserved = self.reserved();
        let mut free = self.config.capacity.minus(&reserved);
        // Headroom running attempts are entitled to but do not use yet; claimed-ahead ones use
        // nothing yet.
        let growth: u64 = self
            .live
            .values()
            .filter(|live| live.needs.memory_bytes > 0)
            .map(|live| {
                let used = live.memory_used.unwrap_or(0);
                live.needs.memory_bytes.saturating_sub(used)
            })
            .sum::<u64>()
            + self
                .ahead
                .iter()
                .map(|c| c.spec.resources().memory_bytes)
                .sum::<u64>();
        let (memory, note) = crate::capacity::free_memory(free.memory_bytes, available, growth);
        free.memory_bytes = memory;
        let contended = note.is_some();
        (
            Admission::new(self.config.capacity, free, self.config.reserve_after, note),
            contended,
        )
    }

    /// Claims as many jobs as there is room for, in one transaction.
    pub(crate) fn maybe_claim(&mut self) {
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
            self.send(Command::ReadMemory(reading));
        }
        self.claiming = free;
        self.effects.push(Effect::Claim { max: free });
    }

    /// Promotes due `scheduled` jobs and learns when the next one is due.
    pub(crate) fn promote_due(&mut self) {
        if self.promoting {
            self.promote_again = true;
            return;
        }
        self.promoting = true;
        self.effects.push(Effect::PromoteDue);
    }

    /// A committed event of the store.
    pub(crate) fn on_event(&mut self, kind: EventKind, job_id: JobId, attempt: Option<u32>) {
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

    /// The answer of a store call made for an earlier effect.
    pub(crate) fn on_answer(&mut self, answer: Answer) {
        match answer {
            Answer::Claimed {
                result,
                asked,
                contended,
                took,
            } => self.on_claimed(result, asked, contended, took),
            Answer::Verdict(attempt, verdict) => self.on_verdict(attempt, verdict),
            Answer::Promoted(result) => {
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
            Answer::Recorded => self.recording = self.recording.saturating_sub(1),
            Answer::Leases(result, asked_at) => self.on_leases(result, asked_at),
        }
    }

    fn on_claimed(
        &mut self,
        result: Result<ClaimBatch, StoreError>,
        asked: usize,
        contended: bool,
        took: Duration,
    ) {
        self.claiming = 0;
        self.config
            .metrics
            .claim_seconds
            .observe(took.as_secs_f64());
        match result {
            Ok(ClaimBatch {
                claims,
                passed_over,
            }) => {
                // As many as asked: there may be more. Fewer: the queue is dry (or what is left
                // does not fit) until an event says otherwise — including one that came while
                // this claim was in flight.
                if claims.len() == asked {
                    self.want_claim = true;
                }
                if !passed_over.is_empty() && contended {
                    self.retry_claim_at = Some(Instant::now() + CONTENTION_RECHECK);
                }
                if let Ok(mut notes) = self.config.passed_over.lock() {
                    notes.clear();
                    notes.extend(passed_over);
                }
                if !claims.is_empty() && !self.holds_leases() {
                    // Nothing else is held, so these claims' fresh leases are all the node's
                    // leases: they run from when the claim was asked, not from a renewal that
                    // failed while the store was away (which would fence them at once).
                    let asked_at = Instant::now()
                        .checked_sub(took)
                        .unwrap_or_else(Instant::now);
                    self.leases_valid_until = asked_at + self.config.lease;
                    self.fenced = false;
                }
                self.ahead.extend(claims);
                self.fill_slots();
            }
            Err(err) => {
                tracing::error!(error = %err, "claim failed; retrying in 1 s");
                self.retry_claim_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// Hands a claimed attempt to an owner, which forks it and holds it at the gate.
    fn start(&mut self, claim: Claim) {
        let needs = claim.spec.resources();
        let grace = claim.spec.grace.get();
        tracing::debug!(attempt = %claim.attempt, "starting");
        let mut live = Live::new(needs, grace);
        live.takes_slot = claim.spec.takes_slot();
        self.live.insert(claim.attempt, live);
        self.effects.push(Effect::Start(Box::new(claim)));
    }

    /// What an owner reported.
    pub(crate) fn on_report(&mut self, report: Report) {
        match report {
            Report::Spawned {
                attempt,
                pid,
                proc_start: start,
            } => {
                if let Some(live) = self.live.get_mut(&attempt) {
                    live.pid = Some((pid, start));
                    // Self-released, it runs already: its cell records the start, and the pid
                    // record may ride with other writes (see `fold`).
                    live.released |= self.config.self_release;
                }
                // Gated, the pid must be on disk before the child may exec. Self-released, it
                // runs from about now, and the record may come a few milliseconds later.
                self.effects.push(Effect::MarkRunning {
                    attempt,
                    pid,
                    proc_start: start,
                    started_at: self.config.self_release.then(chrono::Utc::now),
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

    fn on_verdict(&mut self, attempt: AttemptRef, verdict: Result<StartVerdict, StoreError>) {
        if self.config.self_release {
            self.on_late_verdict(attempt, verdict);
            return;
        }
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
        // A stop sent while the child waited at the gate already made the owner abort it; this
        // command then finds no attempt and is dropped.
        self.send(command);
    }

    /// The store's answer to the pid record of a self-released attempt, which runs already: a
    /// cancel or a lost lease that came before the record stops it through the kill ladder.
    fn on_late_verdict(&mut self, attempt: AttemptRef, verdict: Result<StartVerdict, StoreError>) {
        match verdict {
            Ok(StartVerdict::Run) => {}
            Ok(StartVerdict::Cancelled) => self.stop(attempt, StopReason::Cancel),
            Ok(StartVerdict::Stale) => self.stop(attempt, StopReason::LeaseLost),
            // Its ending records the start with it (the store takes an ending of a `starting`
            // attempt as proof that it ran).
            Err(err) => {
                tracing::error!(%attempt, error = %err, "cannot record the pid of a running job; its ending will record its start");
            }
        }
    }

    /// Asks the owner of an attempt we hold to stop it (once per attempt).
    pub(crate) fn stop(&mut self, attempt: AttemptRef, reason: StopReason) {
        if let Some(index) = self.ahead.iter().position(|c| c.attempt == attempt) {
            // Not started: nothing to kill. A cancel or shutdown gives it back (a pending cancel
            // makes that `cancelled`); a lost lease means it is no longer ours to touch.
            if let Some(claim) = self.ahead.remove(index) {
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
        tracing::info!(%attempt, ?reason, released = live.released, "stop requested");
        // Before release the owner treats Stop as Abort; after, it runs the kill ladder.
        self.send(Command::Stop(attempt, reason));
    }

    /// Stops every attempt this node holds.
    pub(crate) fn stop_all(&mut self, reason: StopReason) {
        if reason == StopReason::LeaseLost {
            // Leases are unrenewable: claimed-ahead attempts are no longer ours; the store will
            // see to them.
            self.ahead.clear();
        }
        let attempts: Vec<_> = self.live.keys().copied().collect();
        for attempt in attempts {
            self.stop(attempt, reason);
        }
    }

    /// Whether every attempt handed to an owner is settled enough to leave to it: no child at
    /// a gate, no clean-up under way.
    pub(crate) fn all_released(&self) -> bool {
        self.live
            .values()
            .all(|l| l.released && l.cleaning.is_none())
    }
}
