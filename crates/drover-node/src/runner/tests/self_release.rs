//! Self-released starts (cgroup cells, the embedded store): the owner opens the gate once the
//! child is in its cell, so nothing waits on the pid record, which rides with the writes
//! around it; a cancel that beat the record stops the running job instead of aborting it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use drover_exec::{Ending as ExecEnding, Report, StopReason};
use tokio::time::Instant;

use crate::runner::effect::{Effect, Ending};
use crate::runner::state::{FOLD_WINDOW, State};

use super::*;

fn self_released(slots: usize) -> State {
    let mut config = config(slots, false);
    config.self_release = true;
    State::new(config)
}

/// Claims one job on a one-slot node, hands it to its owner and hears its pid.
fn one_running(state: &mut State) -> AttemptRef {
    state.maybe_claim();
    let asked = claim_asked(&state.settle(Instant::now())).expect("a claim");
    let job = claim(1);
    let a = job.attempt;
    answer_claim(state, asked, vec![job]);
    assert_eq!(started(&state.settle(Instant::now())), vec![a]);
    state.on_report(Report::Spawned {
        attempt: a,
        pid: 100,
        proc_start: None,
    });
    a
}

#[tokio::test]
async fn the_pid_record_waits_and_rides_ahead_of_the_ending() {
    let mut state = self_released(1);
    let a = one_running(&mut state);
    assert!(state.live[&a].released, "it runs once its owner says so");
    let at = Instant::now();
    let now = state.settle(at);
    assert!(
        now.is_empty(),
        "no release to send, and the pid record waits: {now:?}"
    );
    assert_eq!(state.held_until, Some(at + FOLD_WINDOW));

    state.on_report(Report::Exited {
        attempt: a,
        outcome: Outcome::without_process(ExecEnding::Exited(0)),
    });
    // Nothing runs any more: what was held goes, the pid record first.
    let now = state.settle(at);
    let order: Vec<_> = now
        .iter()
        .filter_map(|e| match e {
            Effect::MarkRunning { attempt, .. } => Some(("mark_running", *attempt)),
            Effect::Record { attempt, .. } => Some(("record", *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(order, [("mark_running", a), ("record", a)]);
    assert!(state.held.is_empty() && state.held_until.is_none());
}

#[tokio::test]
async fn held_writes_go_out_at_the_end_of_the_window_while_jobs_run() {
    let mut state = self_released(1);
    let a = one_running(&mut state);
    let at = Instant::now();
    assert!(state.settle(at).is_empty());
    assert!(
        state.settle(at + FOLD_WINDOW / 2).is_empty(),
        "still within the window"
    );
    let now = state.settle(at + FOLD_WINDOW);
    assert!(
        matches!(now.as_slice(), [Effect::MarkRunning { attempt, pid: 100, .. }] if *attempt == a),
        "{now:?}"
    );
}

#[tokio::test]
async fn a_cancel_that_beat_the_pid_record_stops_the_job() {
    let mut state = self_released(1);
    let a = one_running(&mut state);
    state.settle(Instant::now() + FOLD_WINDOW);
    state.on_answer(Answer::Verdict(a, Ok(StartVerdict::Cancelled)));
    let now = effects(&mut state);
    assert!(
        matches!(now.as_slice(), [Effect::Send(Command::Stop(x, StopReason::Cancel))] if *x == a),
        "it runs already: the kill ladder, not an abort at the gate: {now:?}"
    );
    // A verdict to run asks for nothing: the child is past its gate.
    let mut state = self_released(1);
    let b = one_running(&mut state);
    state.settle(Instant::now() + FOLD_WINDOW);
    state.on_answer(Answer::Verdict(b, Ok(StartVerdict::Run)));
    assert!(effects(&mut state).is_empty());
}

#[tokio::test]
async fn an_owner_that_died_with_processes_in_the_cell_ran_its_job() {
    // The owner died before its report of the child reached the node.
    for (killed, ran) in [(2, true), (0, false)] {
        let mut state = self_released(1);
        state.maybe_claim();
        let asked = claim_asked(&state.settle(Instant::now())).expect("a claim");
        let job = claim(1);
        let a = job.attempt;
        answer_claim(&mut state, asked, vec![job]);
        state.settle(Instant::now());
        state.on_report(Report::OwnerDied { attempt: a });
        state.on_report(Report::Cleaned {
            attempt: a,
            killed,
            survivors: false,
        });
        let record = state
            .settle(Instant::now())
            .into_iter()
            .find_map(|e| match e {
                Effect::Record { ending, .. } => Some(ending),
                _ => None,
            })
            .expect("a record");
        assert_eq!(
            matches!(record, Ending::Complete(_)),
            ran,
            "killed {killed}: {record:?}"
        );
    }
}

/// Whether `effects` ask for a claim.
fn claims(effects: &[Effect]) -> bool {
    claim_asked(effects).is_some()
}

#[tokio::test]
async fn the_refill_claim_goes_when_the_last_job_ahead_takes_its_slot() {
    // Two slots of short jobs, two more claimed ahead.
    let mut state = self_released(2);
    state.recent_runtime = Some(std::time::Duration::from_millis(1));
    state.maybe_claim();
    let asked = claim_asked(&state.settle(Instant::now())).expect("a claim");
    assert_eq!(asked, 4, "two to run and one ahead of each");
    let jobs: Vec<_> = (0..4).map(|_| claim(1)).collect();
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| jobs[i].attempt);
    answer_claim(&mut state, asked, jobs);
    let at = Instant::now();
    assert_eq!(started(&state.settle(at)), vec![a, b]);
    for (attempt, pid) in [(a, 100), (b, 101)] {
        state.on_report(Report::Spawned {
            attempt,
            pid,
            proc_start: None,
        });
    }
    assert!(state.settle(at).is_empty(), "the pid records wait");

    let end = |state: &mut State, attempt| {
        state.on_report(Report::Exited {
            attempt,
            outcome: Outcome::without_process(ExecEnding::Exited(0)),
        });
        // What the loop does after every report.
        state.fill_slots();
        state.maybe_claim();
        state.settle(at)
    };
    // The first ending: the job ahead of it starts, and one still waits ahead, so the claim
    // that refills the place waits with the ending.
    let now = end(&mut state, a);
    assert_eq!(started(&now), vec![c]);
    assert!(!claims(&now), "a job still waits ahead: {now:?}");
    assert!(state.held.iter().any(|e| matches!(e, Effect::Claim { .. })));

    // The second: the last job ahead takes the slot. Both slots are busy and jobs still run,
    // but the next ending would find nothing ahead, so the claim goes now, with what was held.
    let now = end(&mut state, b);
    assert_eq!(started(&now), vec![d]);
    assert!(
        claims(&now),
        "the refill goes before any slot frees: {now:?}"
    );
    assert!(state.held.is_empty() && state.held_until.is_none());
    let records = now
        .iter()
        .filter(|e| matches!(e, Effect::Record { .. }))
        .count();
    assert_eq!(records, 2, "the held endings ride with it: {now:?}");
}
