//! Claiming: wake-ups that survive a claim in flight, claiming ahead only for short jobs, and
//! the gate that opens only on a recorded start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use drover_core::{AttemptRef, EventKind, JobId};
use drover_exec::{Command, Ending as ExecEnding, Report, StopReason};
use drover_store::{Claim, StartVerdict, StoreError};

use crate::runner::effect::{Answer, Effect};
use crate::runner::state::State;

use super::*;

/// A submit that lands while a claim is in flight must lead to another claim: the claim's
/// answer (fewer jobs than asked: it ran before the submit) must not clear the wake-up the
/// submit set. It did, and the job stayed queued until some unrelated event — which hung
/// `bench/run quick` in CI.
#[tokio::test]
async fn a_submit_during_a_claim_is_not_lost() {
    let mut state = State::new(config(1, false));
    state.maybe_claim();
    assert_eq!(state.claiming, 1, "a claim is in flight");
    assert_eq!(claim_asked(&effects(&mut state)), Some(1));
    // The claim ran on an empty queue; its answer is on its way back to the loop when a submit
    // commits and its event reaches the loop first.
    state.on_event(
        EventKind::Submitted,
        JobId::from_uuid(uuid::Uuid::now_v7()),
        None,
    );
    answer_claim(&mut state, 1, Vec::new());
    assert!(state.ahead.is_empty(), "the claim found nothing");
    assert!(
        state.want_claim,
        "the submit's wake-up survived the claim's answer"
    );
}

/// The claim that follows an exit runs before the ending is recorded, so a queue at its limit
/// still looks full to it; the recorded ending must lead to another claim. It did not, and the
/// second job of a one-at-a-time queue stayed queued for good (seen in CI).
#[tokio::test]
async fn an_ending_recorded_after_the_claim_frees_the_queue() {
    let mut state = State::new(config(1, false));
    state.maybe_claim();
    effects(&mut state);
    answer_claim(&mut state, 1, Vec::new());
    assert!(state.ahead.is_empty(), "q is full: nothing to claim");
    assert!(!state.want_claim, "and nothing to look for until an event");

    // Another node's job of the queue ends.
    state.on_event(
        EventKind::Finished,
        JobId::from_uuid(uuid::Uuid::now_v7()),
        Some(1),
    );
    assert!(state.want_claim, "the ending woke a claim");
    state.maybe_claim();
    assert_eq!(claim_asked(&effects(&mut state)), Some(1));
    answer_claim(&mut state, 1, vec![claim(1)]);
    assert_eq!(
        state.live.len() + state.ahead.len(),
        1,
        "the second job of q was claimed"
    );
}

/// Short jobs: one claimed ahead per slot, started the moment a slot frees. Long jobs: none,
/// so that a later, higher-priority job is not stuck behind a claimed one.
#[tokio::test]
async fn claims_run_ahead_only_while_jobs_are_short() {
    let mut state = State::new(config(2, false));
    state.maybe_claim();
    assert_eq!(
        claim_asked(&effects(&mut state)),
        Some(2),
        "no run time known yet: fill the slots, claim nothing ahead"
    );
    let (a, b) = (claim(1), claim(1));
    let (a_ref, b_ref) = (a.attempt, b.attempt);
    answer_claim(&mut state, 2, vec![a, b]);
    assert_eq!(started(&effects(&mut state)), vec![a_ref, b_ref]);

    // Both end after a few milliseconds: jobs are short, so claim two ahead of the two slots.
    run_and_exit(
        &mut state,
        a_ref,
        Duration::from_millis(5),
        ExecEnding::Exited(0),
    );
    run_and_exit(
        &mut state,
        b_ref,
        Duration::from_millis(5),
        ExecEnding::Exited(0),
    );
    effects(&mut state);
    assert!(state.recent_runtime.expect("measured") < crate::runner::state::CLAIM_AHEAD_BELOW);
    state.maybe_claim();
    assert_eq!(claim_asked(&effects(&mut state)), Some(4));
    let claims: Vec<Claim> = (0..4).map(|_| claim(1)).collect();
    let refs: Vec<AttemptRef> = claims.iter().map(|c| c.attempt).collect();
    answer_claim(&mut state, 4, claims);
    assert_eq!(
        started(&effects(&mut state)),
        refs[..2].to_vec(),
        "two start"
    );
    assert_eq!(state.ahead.len(), 2, "two wait ahead, holding no slot");

    // One ends: the next claimed-ahead one starts at once, with no claim in between.
    run_and_exit(
        &mut state,
        refs[0],
        Duration::from_millis(5),
        ExecEnding::Exited(0),
    );
    state.fill_slots();
    assert_eq!(started(&effects(&mut state)), vec![refs[2]]);

    // Jobs that run for minutes: nothing is claimed ahead any more.
    for attempt in [refs[1], refs[2]] {
        run_and_exit(
            &mut state,
            attempt,
            Duration::from_secs(600),
            ExecEnding::Exited(0),
        );
    }
    state.fill_slots();
    assert_eq!(started(&effects(&mut state)), vec![refs[3]]);
    assert!(state.recent_runtime.expect("measured") > crate::runner::state::CLAIM_AHEAD_BELOW);
    state.want_claim = true;
    state.maybe_claim();
    assert_eq!(
        claim_asked(&effects(&mut state)),
        Some(1),
        "one slot free, none claimed ahead"
    );
}

/// A child at its gate runs only once its pid is on disk; a cancel or a fence meanwhile, or a
/// store that cannot take the pid, aborts it.
#[tokio::test]
async fn the_gate_opens_only_on_a_recorded_start() {
    let mut state = State::new(config(1, false));
    state.maybe_claim();
    effects(&mut state);
    let one = claim(1);
    let attempt = one.attempt;
    answer_claim(&mut state, 1, vec![one]);
    effects(&mut state);
    state.on_report(Report::Spawned {
        attempt,
        pid: 10,
        proc_start: None,
    });
    assert!(matches!(
        effects(&mut state).as_slice(),
        [Effect::MarkRunning { pid: 10, .. }]
    ));
    for (verdict, expected) in [
        (
            Ok(StartVerdict::Cancelled),
            Command::Abort(attempt, StopReason::Cancel),
        ),
        (
            Ok(StartVerdict::Stale),
            Command::Abort(attempt, StopReason::LeaseLost),
        ),
        (
            Err(StoreError::Closed),
            Command::Abort(attempt, StopReason::Shutdown),
        ),
        (Ok(StartVerdict::Run), Command::Release(attempt)),
    ] {
        state.on_answer(Answer::Verdict(attempt, verdict));
        assert!(matches!(effects(&mut state).as_slice(), [Effect::Send(c)] if *c == expected));
    }
    assert!(state.all_released());
}

/// A session's host sits idle between execs, and each exec takes a slot while it runs: the host
/// starts without a slot and leaves the node's slots to its execs. On a one-slot node, a host
/// that took the slot would leave its own execs queued for good.
#[tokio::test]
async fn a_session_host_takes_no_slot() {
    let mut state = State::new(config(1, false));
    state.maybe_claim();
    assert_eq!(claim_asked(&effects(&mut state)), Some(1));
    let mut host = claim(1);
    host.spec.session = Some(drover_core::SessionRole::Host {
        kind: drover_core::SessionKind::Python,
    });
    let host_attempt = host.attempt;
    answer_claim(&mut state, 1, vec![host]);
    assert_eq!(started(&effects(&mut state)), vec![host_attempt]);
    assert_eq!(state.busy_slots(), 0, "the host holds no slot");
    assert!(state.want_claim, "the claim was filled: there may be more");
    state.maybe_claim();
    assert_eq!(
        claim_asked(&effects(&mut state)),
        Some(1),
        "the slot is still free for an exec"
    );
    let exec = claim(1);
    let exec_attempt = exec.attempt;
    answer_claim(&mut state, 1, vec![exec]);
    assert_eq!(started(&effects(&mut state)), vec![exec_attempt]);
    assert_eq!(state.busy_slots(), 1);
    assert_eq!(state.claim_room(), 0, "the exec holds the one slot");
}
