//! The runner's handlers, driven one step at a time: most tests need no store and no owner,
//! because a handler's decision is the list of effects it pushes. The few that check what the
//! store makes of an ending use a SQLite store in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod claims;
mod endings;
mod fold;
mod leases;
mod self_release;

use std::sync::Arc;
use std::time::Duration;

use drover_core::{AttemptRef, JobId, JobSpec, NodeId, Resources};
use drover_exec::{Command, Ending as ExecEnding, Outcome, Report};
use drover_store::{Claim, ClaimBatch, StartVerdict};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::runner::effect::{Answer, Effect};
use crate::runner::state::State;
use crate::runner::{PassedOver, RunnerConfig};

pub(super) fn config(slots: usize, fence: bool) -> RunnerConfig {
    RunnerConfig {
        program: "drover".into(),
        node: NodeId("n".into()),
        slots,
        lease: Duration::from_secs(30),
        shutdown_timeout: Duration::from_secs(1),
        log_limit: 1 << 20,
        capacity: Resources {
            memory_bytes: 1 << 30,
            cpu_millis: 1000,
        },
        reserve_after: Duration::from_secs(60),
        fence,
        self_release: false,
        stop_jobs_on_exit: false,
        passed_over: PassedOver::default(),
        load: watch::channel(drover_core::NodeLoad::default()).0,
        wake: Arc::new(tokio::sync::Notify::new()),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        server_url: "http://127.0.0.1:7878".into(),
    }
}

pub(super) fn claim(attempt: u32) -> Claim {
    Claim {
        attempt: AttemptRef {
            job_id: JobId::from_uuid(uuid::Uuid::now_v7()),
            attempt,
        },
        spec: JobSpec::new(["true"]),
        lease_expires_at: chrono::Utc::now(),
        inputs: Vec::new(),
    }
}

/// The effects pushed since the last call.
pub(super) fn effects(state: &mut State) -> Vec<Effect> {
    std::mem::take(&mut state.effects)
}

/// The claims in `effects`' `Start`s.
pub(super) fn started(effects: &[Effect]) -> Vec<AttemptRef> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start(claim) => Some(claim.attempt),
            _ => None,
        })
        .collect()
}

/// The size of the claim in `effects`, if one was asked for.
pub(super) fn claim_asked(effects: &[Effect]) -> Option<usize> {
    effects.iter().find_map(|e| match e {
        Effect::Claim { max } => Some(*max),
        _ => None,
    })
}

/// Answers a claim in flight with `claims`.
pub(super) fn answer_claim(state: &mut State, asked: usize, claims: Vec<Claim>) {
    state.on_answer(Answer::Claimed {
        result: Ok(ClaimBatch {
            claims,
            passed_over: Vec::new(),
        }),
        asked,
        contended: false,
        took: Duration::ZERO,
    });
}

/// Runs `attempt` (gate opened) and ends it after it ran for `ran`; leaves the effects of its
/// ending.
pub(super) fn run_and_exit(
    state: &mut State,
    attempt: AttemptRef,
    ran: Duration,
    ending: ExecEnding,
) {
    state.on_answer(Answer::Verdict(attempt, Ok(StartVerdict::Run)));
    let mut before = effects(state);
    let released = before.pop();
    assert!(
        matches!(released, Some(Effect::Send(Command::Release(a))) if a == attempt),
        "{released:?}"
    );
    // What came before the release stays for the test to look at.
    state.effects = before;
    if let Some(live) = state.live.get_mut(&attempt) {
        live.since = Instant::now()
            .checked_sub(ran)
            .expect("an instant in the past");
    }
    state.on_report(Report::Exited {
        attempt,
        outcome: Outcome::without_process(ending),
    });
}
