//! Folding writes: an ending, and a claim that only refills the places ahead, ride with the
//! next pid record while a start is in flight; otherwise they go at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use drover_exec::{Ending as ExecEnding, Report};
use tokio::time::Instant;

use crate::runner::effect::Effect;
use crate::runner::state::{FOLD_WINDOW, State};

use super::*;

/// What kind of effect each is, in order, to compare sequences.
fn kinds(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Send(_) => "send",
            Effect::Start(_) => "start",
            Effect::Claim { .. } => "claim",
            Effect::MarkRunning { .. } => "mark_running",
            Effect::GiveBack { .. } => "give_back",
            Effect::Record { .. } => "record",
            Effect::RenewLeases { .. } => "renew",
            Effect::PromoteDue => "promote",
        })
        .collect()
}

/// One slot: the first job runs, a second waits claimed ahead. Returns the state right after
/// the first job's exit was handled, with the second handed to its owner (its pid not come).
fn first_ends_while_second_starts() -> (State, AttemptRef, AttemptRef) {
    let mut state = State::new(config(1, false));
    // Recent jobs are short, so the node claims one ahead.
    state.recent_runtime = Some(Duration::from_millis(1));
    state.maybe_claim();
    let asked = claim_asked(&state.settle(Instant::now())).expect("a claim");
    let (first, second) = (claim(1), claim(1));
    let (a, b) = (first.attempt, second.attempt);
    answer_claim(&mut state, asked, vec![first, second]);
    assert_eq!(started(&state.settle(Instant::now())), vec![a]);
    state.on_report(Report::Spawned {
        attempt: a,
        pid: 100,
        proc_start: None,
    });
    assert_eq!(kinds(&state.settle(Instant::now())), ["mark_running"]);
    run_and_exit(
        &mut state,
        a,
        Duration::from_millis(1),
        ExecEnding::Exited(0),
    );
    // What the loop does next: the job ahead takes the slot, and the place ahead is refilled.
    state.fill_slots();
    state.maybe_claim();
    (state, a, b)
}

#[tokio::test]
async fn an_ending_and_a_refill_ride_with_the_next_pid_record() {
    let (mut state, _, b) = first_ends_while_second_starts();
    let now = state.settle(Instant::now());
    assert_eq!(
        kinds(&now),
        ["start"],
        "only the start goes now; the ending and the claim wait for its pid"
    );
    assert_eq!(state.held.len(), 2);
    assert_eq!(state.recording, 1, "the held ending counts as on its way");

    state.on_report(Report::Spawned {
        attempt: b,
        pid: 101,
        proc_start: None,
    });
    let now = state.settle(Instant::now());
    assert_eq!(
        kinds(&now),
        ["mark_running", "record", "claim"],
        "the held writes go with the pid record, after it"
    );
    assert!(state.held.is_empty() && state.held_until.is_none());
}

#[tokio::test]
async fn held_writes_go_out_when_no_pid_comes_in_time() {
    let (mut state, _, _) = first_ends_while_second_starts();
    let at = Instant::now();
    assert_eq!(kinds(&state.settle(at)), ["start"]);
    assert_eq!(state.held_until, Some(at + FOLD_WINDOW));
    assert!(
        state.settle(at + FOLD_WINDOW / 2).is_empty(),
        "still within the window"
    );
    assert_eq!(kinds(&state.settle(at + FOLD_WINDOW)), ["record", "claim"]);
    assert!(state.held.is_empty() && state.held_until.is_none());
}

#[tokio::test]
async fn an_ending_with_nothing_starting_is_written_at_once() {
    let mut state = State::new(config(1, false));
    state.maybe_claim();
    let asked = claim_asked(&state.settle(Instant::now())).expect("a claim");
    let only = claim(1);
    let a = only.attempt;
    answer_claim(&mut state, asked, vec![only]);
    assert_eq!(started(&state.settle(Instant::now())), vec![a]);
    state.on_report(Report::Spawned {
        attempt: a,
        pid: 100,
        proc_start: None,
    });
    state.settle(Instant::now());
    run_and_exit(&mut state, a, Duration::from_secs(1), ExecEnding::Exited(0));
    state.fill_slots();
    state.maybe_claim();
    let now = kinds(&state.settle(Instant::now()));
    assert!(now.contains(&"record"), "{now:?}");
    assert!(
        now.contains(&"claim"),
        "a free slot's claim waits for nothing: {now:?}"
    );
    assert!(state.held.is_empty());
}
