//! Leases: renewing them, telling owners how long they hold, and fencing — stopping every job
//! a margin before leases the node could not renew run out, so that no other node's attempt
//! ever runs beside one of ours.

use std::time::Duration;

use drover_core::AttemptRef;
use drover_exec::{Command, StopReason};
use drover_store::{LeaseStatus, StoreError};
use tokio::time::Instant;

use super::super::effect::Effect;
use super::State;

impl State {
    pub(super) fn on_leases(
        &mut self,
        result: Result<Vec<(AttemptRef, LeaseStatus)>, StoreError>,
        asked_at: Instant,
    ) {
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

    /// How long before its leases run out an owner kills its job when no renewal came.
    pub(crate) fn fence_margin(&self) -> Duration {
        self.config.fence_margin()
    }

    /// Tells the owners of running attempts how long their leases hold (with a shared store:
    /// without one, nothing else can rerun a job, and owners do not fence).
    pub(super) fn send_leases(&mut self) {
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
        self.send(Command::Lease {
            attempts,
            fence_in: Some(fence_at.saturating_duration_since(Instant::now())),
        });
    }

    /// Renews the leases of every attempt held (unless a renewal is in flight). With nothing
    /// held, there is nothing to renew, and whatever is claimed next starts with a full lease.
    pub(crate) fn renew_leases(&mut self) {
        let idle = !self.holds_leases();
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
            .chain(self.ahead.iter().map(|c| c.attempt))
            .collect();
        self.effects.push(Effect::RenewLeases {
            attempts,
            asked_at: Instant::now(),
        });
    }

    /// Whether the node holds any lease (running or claimed-ahead attempts).
    pub(crate) fn holds_leases(&self) -> bool {
        !(self.live.is_empty() && self.ahead.is_empty())
    }

    /// When [`State::fence_if_leases_expiring`] must next look: a full margin before the leases
    /// run out.
    pub(crate) fn fence_check_at(&self) -> Instant {
        self.leases_valid_until
            .checked_sub(self.fence_margin())
            .unwrap_or(self.leases_valid_until)
    }

    /// Self-fencing: if leases could not be renewed and are about to run out, stop every job
    /// before they do, so that no other node's attempt ever runs beside ours. Only with a
    /// shared store: on SQLite no other node can take a job, and fencing would only kill work
    /// when a renewal is slow.
    pub(crate) fn fence_if_leases_expiring(&mut self) {
        if !self.config.fence || !self.holds_leases() {
            return;
        }
        if !self.fenced && Instant::now() + self.fence_margin() >= self.leases_valid_until {
            self.fenced = true;
            tracing::error!("cannot renew leases; stopping every job before the leases expire");
            self.stop_all(StopReason::LeaseLost);
        }
    }
}
