//! Folding writes: an ending and a claim, which nothing on this node waits for, ride in the
//! same batch as the next pid record, which a child at its gate does wait for.
//!
//! While short jobs run back to back, a slot's job ends and the job claimed ahead of it starts
//! at once; its owner reports the new child's pid well under a millisecond later. Sent as they
//! come, the ending (and the claim that refills the slot's place ahead) commit in one batch and
//! the pid in the next, and the pid's commit queues behind the first one's fsync. Held until the
//! pid comes, the three are one batch of the store's group commit: one commit and one fsync per
//! job instead of two, and the pages they share (the events' tail, the attempts') written once.
//!
//! Nothing is lost by holding: the owner keeps an outcome until the store has it (the Ack goes
//! only after the write), and a claim not yet sent holds no job. A write is held only while a
//! start is in flight, so a job that ends with nothing starting behind it is written at once,
//! and never longer than [`FOLD_WINDOW`].
//!
//! Self-released (`RunnerConfig::self_release`: the owner opens the gate once the child is in
//! its cell), no child waits on any write, so the pid record may wait too: every write that may
//! wait is held while attempts run, until the window ends or a write that may not wait (a claim
//! for a free slot) carries them. Short jobs back to back then cost the store a fraction of a
//! commit each. The held writes go out first: they were decided first, and a job's pid record
//! must reach the store before its ending.
//!
//! A claim that refills the places ahead waits, self-released, only while a job still waits
//! ahead, and a held write goes as soon as it may no longer wait: when the last job ahead takes
//! its slot, the claim goes, so that the next ending finds a job there. Held until no attempt
//! ran, it had made the slots start in lockstep, every round behind a claim's commit (at 2
//! slots the machine sat 30% idle).

use std::time::Duration;

use tokio::time::Instant;

use super::super::effect::Effect;
use super::State;

/// The longest a write waits for a pid record to ride with. A reused owner reports its child's
/// pid in well under a millisecond; a new owner process takes a few.
pub(crate) const FOLD_WINDOW: Duration = Duration::from_millis(5);

impl State {
    /// What to carry out now out of what the handlers decided: everything, except that while a
    /// start is in flight the writes that may wait (see the module) are held for the pid record
    /// that will carry them. Held writes go out after what was decided with them, so that the
    /// pid record, which a child waits on, reaches the writer first: if the writer wakes before
    /// the rest arrive, it commits that one alone, never the others ahead of it.
    pub(crate) fn settle(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = std::mem::take(&mut self.effects);
        let due = self.held_until.is_some_and(|until| until <= now);
        let go = if self.config.self_release {
            // No child waits on a write: any that may not wait carries the held ones, which go
            // first (decided first, and a pid record must reach the store before its ending).
            due || self.live.is_empty()
                || effects
                    .iter()
                    .chain(&self.held)
                    .any(|e| e.is_write() && !self.may_wait(e))
        } else {
            due || !self.awaiting_pid()
                || effects
                    .iter()
                    .any(|e| matches!(e, Effect::MarkRunning { .. }))
        };
        if go {
            self.held_until = None;
            return if self.config.self_release {
                let mut out = std::mem::take(&mut self.held);
                out.append(&mut effects);
                out
            } else {
                effects.append(&mut self.held);
                effects
            };
        }
        let (held, now_effects): (Vec<_>, Vec<_>) =
            effects.into_iter().partition(|e| self.may_wait(e));
        self.held.extend(held);
        if !self.held.is_empty() && self.held_until.is_none() {
            self.held_until = Some(now + FOLD_WINDOW);
        }
        now_effects
    }

    /// Whether an attempt was handed to an owner whose child's pid has not come yet: its pid
    /// record will follow.
    fn awaiting_pid(&self) -> bool {
        self.live.values().any(|live| {
            live.pid.is_none()
                && !live.released
                && live.stopping.is_none()
                && live.cleaning.is_none()
                && !live.adopted
        })
    }

    /// The writes nothing on this node waits for: an ending (its slot is already free; the
    /// owner keeps the outcome until it is written), while every slot is busy a claim (it only
    /// fills the places ahead of them; self-released, only while a job still waits there), and
    /// the pid record of a self-released child.
    fn may_wait(&self, effect: &Effect) -> bool {
        match effect {
            Effect::Record { .. } => true,
            // Self-released, the child runs already.
            Effect::MarkRunning { .. } => self.config.self_release,
            // Gated, the pid record that carries it comes within a millisecond; self-released,
            // nothing may come before the next ending, which must find a job ahead.
            Effect::Claim { .. } => {
                self.busy_slots() >= self.config.slots
                    && (!self.config.self_release || !self.ahead.is_empty())
            }
            _ => false,
        }
    }
}
