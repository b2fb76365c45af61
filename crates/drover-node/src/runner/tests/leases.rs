//! Leases: fencing before unrenewed leases run out, and what a renewal says about each attempt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use drover_exec::{Command, StopReason};
use drover_store::{LeaseStatus, StartVerdict, StoreError};
use tokio::time::Instant;

use crate::runner::effect::{Answer, Effect};
use crate::runner::state::State;

use super::*;

/// A node that cannot renew its leases stops every job a margin before they run out, and
/// drops its claimed-ahead attempts without giving them back (they are not its to touch any
/// more); a renewal that gets through lifts the fence and tells the owners.
#[tokio::test]
async fn unrenewable_leases_fence_every_job_before_they_expire() {
    let mut state = State::new(config(1, true));
    state.maybe_claim();
    effects(&mut state);
    let (running, ahead) = (claim(1), claim(1));
    let (running_ref, ahead_ref) = (running.attempt, ahead.attempt);
    answer_claim(&mut state, 2, vec![running, ahead]);
    state.on_answer(Answer::Verdict(running_ref, Ok(StartVerdict::Run)));
    effects(&mut state);

    // Leases still hold for longer than the margin: nothing happens.
    state.fence_if_leases_expiring();
    assert!(effects(&mut state).is_empty() && !state.fenced);

    // Renewals failed; the leases now end within the margin.
    state.renew_leases();
    assert!(matches!(
        effects(&mut state).as_slice(),
        [Effect::RenewLeases { attempts, .. }] if attempts.len() == 2
    ));
    state.on_answer(Answer::Leases(
        Err(StoreError::transient("connection refused", None)),
        Instant::now(),
    ));
    state.leases_valid_until = Instant::now() + state.fence_margin() / 2;
    state.fence_if_leases_expiring();
    assert!(state.fenced);
    let fenced = effects(&mut state);
    assert!(
        matches!(fenced.as_slice(), [Effect::Send(Command::Stop(a, StopReason::LeaseLost))] if *a == running_ref),
        "the running job is stopped, and only it: {fenced:?}"
    );
    assert!(
        state.ahead.is_empty(),
        "the claimed-ahead attempt is dropped"
    );
    assert!(
        !fenced
            .iter()
            .any(|e| matches!(e, Effect::GiveBack { attempt, .. } if *attempt == ahead_ref)),
        "and not given back: another node may hold it by now"
    );

    // A renewal gets through: the fence is lifted and the owners hear how long leases hold.
    state.renew_leases();
    effects(&mut state);
    state.on_answer(Answer::Leases(
        Ok(vec![(
            running_ref,
            LeaseStatus::Held {
                cancel_requested: false,
            },
        )]),
        Instant::now(),
    ));
    assert!(!state.fenced);
    match effects(&mut state).as_slice() {
        [
            Effect::Send(Command::Lease {
                attempts,
                fence_in: Some(fence_in),
            }),
        ] => {
            assert_eq!(attempts, &vec![running_ref]);
            assert!(*fence_in <= state.config.lease - state.fence_margin());
            assert!(*fence_in > state.config.lease / 2);
        }
        other => panic!("expected a lease command, got {other:?}"),
    }
}

/// After the store was away long enough for the node's leases to near their end, a node that
/// holds nothing claims again: those claims carry fresh leases and are not fenced by the
/// renewals that failed meanwhile (a PostgreSQL restart once stopped jobs claimed just after it).
#[tokio::test]
async fn claims_after_an_outage_start_with_fresh_leases() {
    let mut state = State::new(config(1, true));
    // The renewals failed for most of a lease while nothing was held.
    state.leases_valid_until = Instant::now() + state.fence_margin() / 2;
    state.maybe_claim();
    effects(&mut state);
    let fresh = claim(1);
    let fresh_ref = fresh.attempt;
    answer_claim(&mut state, 1, vec![fresh]);
    assert!(started(&effects(&mut state)).contains(&fresh_ref));
    state.fence_if_leases_expiring();
    assert!(!state.fenced, "a fresh claim is not fenced");
    assert!(
        !effects(&mut state)
            .iter()
            .any(|e| matches!(e, Effect::Send(Command::Stop(..)))),
        "nothing is stopped"
    );
    assert!(state.fence_check_at() > Instant::now() + state.config.lease / 2);
}

/// What a renewal says about each attempt is acted on: a lost lease stops ours, a pending
/// cancel stops it as cancelled; a claimed-ahead attempt that is cancelled goes back (to be
/// recorded cancelled), one whose lease is lost is only dropped.
#[tokio::test]
async fn renewals_stop_lost_and_cancelled_attempts() {
    let mut state = State::new(config(2, false));
    state.maybe_claim();
    effects(&mut state);
    let (lost, cancelled) = (claim(1), claim(1));
    let (lost_ref, cancelled_ref) = (lost.attempt, cancelled.attempt);
    answer_claim(&mut state, 2, vec![lost, cancelled]);
    effects(&mut state);
    state.on_answer(Answer::Leases(
        Ok(vec![
            (lost_ref, LeaseStatus::Lost),
            (
                cancelled_ref,
                LeaseStatus::Held {
                    cancel_requested: true,
                },
            ),
        ]),
        Instant::now(),
    ));
    let stops = effects(&mut state);
    assert!(stops.iter().any(
        |e| matches!(e, Effect::Send(Command::Stop(a, StopReason::LeaseLost)) if *a == lost_ref)
    ));
    assert!(stops.iter().any(
        |e| matches!(e, Effect::Send(Command::Stop(a, StopReason::Cancel)) if *a == cancelled_ref)
    ));
    // A second request to stop the same attempt sends nothing more.
    state.stop(lost_ref, StopReason::Cancel);
    assert!(effects(&mut state).is_empty());

    let mut state = State::new(config(1, false));
    state.maybe_claim();
    effects(&mut state);
    state.recent_runtime = Some(Duration::from_millis(1));
    let (first, second, third) = (claim(1), claim(1), claim(1));
    let (second_ref, third_ref) = (second.attempt, third.attempt);
    answer_claim(&mut state, 3, vec![first, second, third]);
    effects(&mut state);
    state.stop(second_ref, StopReason::Cancel);
    assert!(
        matches!(effects(&mut state).as_slice(), [Effect::GiveBack { attempt, .. }] if *attempt == second_ref)
    );
    assert_eq!(state.recording, 1, "shutdown waits for the give-back");
    state.stop(third_ref, StopReason::LeaseLost);
    assert!(effects(&mut state).is_empty());
    assert!(state.ahead.is_empty());
}
