//! Endings: an attempt whose tree is gone becomes one record effect (completed, or given back
//! unrun when it never passed its gate), and its slot is free at once; an attempt whose owner
//! died is cleaned up first.

use drover_core::{AttemptRef, JobState, Reason};
use drover_exec::{Command, Outcome, StopReason};
use drover_store::{AttemptOutcome, Unrun};

use super::super::effect::{Effect, Ending};
use super::super::record::to_attempt_outcome;
use super::State;

impl State {
    pub(super) fn on_exited(&mut self, attempt: AttemptRef, outcome: Outcome) {
        if outcome.survivors {
            tracing::error!(%attempt, "a process of this attempt survived SIGKILL");
        }
        let mut recorded = to_attempt_outcome(&outcome);
        // Self-released, whatever got past its spawn ran, whether or not its pid record reached
        // the store.
        recorded.started = self.config.self_release
            && !matches!(
                outcome.ending,
                drover_exec::Ending::SpawnFailed(_) | drover_exec::Ending::Aborted(_)
            );
        tracing::info!(%attempt, state = %recorded.state, reason = %recorded.reason, "attempt ended");
        self.config
            .metrics
            .attempts
            .get_or_create(&crate::metrics::OutcomeLabels {
                state: recorded.state.to_string(),
                reason: recorded.reason.kind().to_string(),
            })
            .inc();
        // The tree is gone, so the slot is free now; recording the outcome goes on meanwhile,
        // and shutdown waits for it.
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
        self.recording += 1;
        // One stopped at the gate never ran, so it goes back to the queue with its retry budget
        // untouched — even if its pid made it to the store (the stop raced the start, or a
        // database fault lost the start's answer): this node saw it die before exec.
        let ending = if matches!(outcome.ending, drover_exec::Ending::Aborted(_)) {
            Ending::Unrun(recorded.reason, Unrun::StoppedAtGate)
        } else {
            Ending::Complete(recorded)
        };
        self.effects.push(Effect::Record { attempt, ending });
    }

    /// Stops what is left of an attempt nothing holds any more; [`Report::Cleaned`] follows.
    pub(super) fn clean_up(&mut self, attempt: AttemptRef, reason: Reason) {
        let Some(live) = self.live.get_mut(&attempt) else {
            return;
        };
        live.cleaning = Some(reason);
        let (pid, proc_start) = match live.pid {
            Some((pid, start)) => (Some(pid), start),
            None => (None, None),
        };
        let grace = live.grace;
        self.send(Command::Clean {
            attempt,
            pid,
            proc_start,
            grace,
        });
    }

    /// What an attempt whose owner died left is gone: record it. One that never passed its gate
    /// never ran and goes back to the queue; one that ran is lost (or cancelled, if that was
    /// asked), and its retry policy applies.
    pub(super) fn on_cleaned(&mut self, attempt: AttemptRef, killed: usize, survivors: bool) {
        if survivors {
            tracing::error!(%attempt, "a process of an attempt whose owner died survived SIGKILL");
        }
        let Some(live) = self.live.remove(&attempt) else {
            return;
        };
        let reason = live.cleaning.unwrap_or(Reason::OwnerDied);
        tracing::warn!(%attempt, killed, %reason, "stopped what was left of the attempt");
        self.want_claim = true;
        self.recording += 1;
        // Self-released, a child that was in its cell may have run before the node heard of it:
        // only an empty cell proves it did not.
        let ran = live.released || (self.config.self_release && killed > 0);
        let ending = if !ran {
            Ending::Unrun(reason, Unrun::StoppedAtGate)
        } else {
            let mut outcome = if live.stopping == Some(StopReason::Cancel) {
                AttemptOutcome::bare(JobState::Cancelled, Reason::CancelledByUser)
            } else {
                AttemptOutcome::bare(JobState::Lost, reason)
            };
            outcome.started = self.config.self_release;
            Ending::Complete(outcome)
        };
        self.effects.push(Effect::Record { attempt, ending });
    }
}
