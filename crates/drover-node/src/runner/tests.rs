//! The runner's handlers, driven one step at a time: most tests need no store and no owner,
//! because a handler's decision is the list of effects it pushes. The few that check what the
//! store makes of an ending use a SQLite store in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use drover_core::{AttemptRef, EventKind, JobId, JobSpec, JobState, NodeId, Reason, Resources};
use drover_exec::{Command, Ending as ExecEnding, Outcome, Report, StopReason};
use drover_store::{
    AttemptOutcome, Claim, ClaimBatch, Completion, LeaseStatus, SqlStore, StartVerdict, Store,
    StoreError, Unrun,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::effect::{Answer, Effect, Ending};
use super::record::{Recorded, record, to_attempt_outcome, until_answered};
use super::state::State;
use super::{PassedOver, RunnerConfig};

fn config(slots: usize, fence: bool) -> RunnerConfig {
    RunnerConfig {
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
        stop_jobs_on_exit: false,
        passed_over: PassedOver::default(),
        load: watch::channel(drover_core::NodeLoad::default()).0,
        wake: Arc::new(tokio::sync::Notify::new()),
        metrics: Arc::new(crate::metrics::Metrics::new()),
    }
}

fn claim(attempt: u32) -> Claim {
    Claim {
        attempt: AttemptRef {
            job_id: JobId::from_uuid(uuid::Uuid::now_v7()),
            attempt,
        },
        spec: JobSpec::new(["true"]),
        lease_expires_at: chrono::Utc::now(),
    }
}

/// The effects pushed since the last call.
fn effects(state: &mut State) -> Vec<Effect> {
    std::mem::take(&mut state.effects)
}

/// The claims in `effects`' `Start`s.
fn started(effects: &[Effect]) -> Vec<AttemptRef> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start(claim) => Some(claim.attempt),
            _ => None,
        })
        .collect()
}

/// The size of the claim in `effects`, if one was asked for.
fn claim_asked(effects: &[Effect]) -> Option<usize> {
    effects.iter().find_map(|e| match e {
        Effect::Claim { max } => Some(*max),
        _ => None,
    })
}

/// Answers a claim in flight with `claims`.
fn answer_claim(state: &mut State, asked: usize, claims: Vec<Claim>) {
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
fn run_and_exit(state: &mut State, attempt: AttemptRef, ran: Duration, ending: ExecEnding) {
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
    assert!(state.recent_runtime.expect("measured") < super::state::CLAIM_AHEAD_BELOW);
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
    assert!(state.recent_runtime.expect("measured") > super::state::CLAIM_AHEAD_BELOW);
    state.want_claim = true;
    state.maybe_claim();
    assert_eq!(
        claim_asked(&effects(&mut state)),
        Some(1),
        "one slot free, none claimed ahead"
    );
}

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

/// Every way an attempt ends becomes one record effect, and frees its slot at once.
#[tokio::test]
async fn endings_are_recorded_and_free_their_slot() {
    let mut state = State::new(config(4, false));
    state.maybe_claim();
    effects(&mut state);
    let claims: Vec<Claim> = (0..4).map(|_| claim(1)).collect();
    let refs: Vec<AttemptRef> = claims.iter().map(|c| c.attempt).collect();
    answer_claim(&mut state, 4, claims);
    effects(&mut state);

    // Exit 0: completed as succeeded.
    run_and_exit(
        &mut state,
        refs[0],
        Duration::from_secs(1),
        ExecEnding::Exited(0),
    );
    match effects(&mut state).as_slice() {
        [
            Effect::Record {
                attempt,
                ending: Ending::Complete(outcome),
            },
        ] => {
            assert_eq!(*attempt, refs[0]);
            assert_eq!(outcome.state, JobState::Succeeded);
        }
        other => panic!("expected one record, got {other:?}"),
    }
    assert!(!state.live.contains_key(&refs[0]) && state.want_claim);
    assert_eq!(state.recording, 1);
    state.on_answer(Answer::Recorded);
    assert_eq!(state.recording, 0);

    // Stopped at the gate: it never ran, so it goes back unrun.
    state.on_report(Report::Exited {
        attempt: refs[1],
        outcome: Outcome::without_process(ExecEnding::Aborted(StopReason::Shutdown)),
    });
    assert!(matches!(
        effects(&mut state).as_slice(),
        [Effect::Record {
            ending: Ending::Unrun(Reason::NodeShutdown, Unrun::StoppedAtGate),
            ..
        }]
    ));

    // Its owner died after the gate opened: clean up, then record it lost.
    state.on_answer(Answer::Verdict(refs[2], Ok(StartVerdict::Run)));
    state.on_report(Report::Spawned {
        attempt: refs[2],
        pid: 4242,
        proc_start: Some(7),
    });
    effects(&mut state);
    state.on_report(Report::OwnerDied { attempt: refs[2] });
    assert!(matches!(
        effects(&mut state).as_slice(),
        [Effect::Send(Command::Clean {
            pid: Some(4242),
            proc_start: Some(7),
            ..
        })]
    ));
    assert!(
        state.live.contains_key(&refs[2]),
        "the slot is held until the tree is gone"
    );
    state.on_report(Report::Cleaned {
        attempt: refs[2],
        killed: 3,
        survivors: false,
    });
    match effects(&mut state).as_slice() {
        [
            Effect::Record {
                ending: Ending::Complete(outcome),
                ..
            },
        ] => {
            assert_eq!(
                (outcome.state, &outcome.reason),
                (JobState::Lost, &Reason::OwnerDied)
            );
        }
        other => panic!("expected one record, got {other:?}"),
    }

    // Cancelled, then its owner died: recorded cancelled, not lost.
    state.on_answer(Answer::Verdict(refs[3], Ok(StartVerdict::Run)));
    state.on_event(
        EventKind::CancelRequested,
        refs[3].job_id,
        Some(refs[3].attempt),
    );
    state.on_report(Report::OwnerDied { attempt: refs[3] });
    state.on_report(Report::Cleaned {
        attempt: refs[3],
        killed: 1,
        survivors: false,
    });
    let last = effects(&mut state);
    assert!(
        matches!(
            last.last(),
            Some(Effect::Record { ending: Ending::Complete(outcome), .. }) if outcome.state == JobState::Cancelled
        ),
        "{last:?}"
    );
    assert!(state.live.is_empty());
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

/// A permanent store error (here a corrupt row) is not retried: the same call would meet it
/// again. It surfaces at once, after one call; a transient one is tried again.
#[tokio::test]
async fn a_permanent_store_error_is_not_retried() {
    let (store, dir, attempt) = store_with_claim().await;
    store
        .mark_running(attempt, 4242, None)
        .await
        .expect("mark running");
    // A state this version cannot read, written behind the store's back.
    let raw = rusqlite::Connection::open(dir.path().join("drover.db")).expect("open raw");
    raw.execute(
        "UPDATE jobs SET state = 'runnin' WHERE id = ?1",
        [attempt.job_id.to_string()],
    )
    .expect("corrupt the row");
    let outcome = AttemptOutcome {
        exit_code: Some(0),
        ..AttemptOutcome::bare(JobState::Succeeded, Reason::ExitCode(0))
    };
    let calls = AtomicUsize::new(0);
    let answer = until_answered(attempt, "recording a completion", || {
        calls.fetch_add(1, Ordering::SeqCst);
        store.complete(attempt, outcome.clone())
    })
    .await;
    match answer {
        Err(err @ StoreError::Corrupt(_)) => assert!(!err.is_transient()),
        other => panic!("expected the corrupt row to surface, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "complete was called once");

    let calls = AtomicUsize::new(0);
    let answer = until_answered(attempt, "recording a completion", || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err(StoreError::transient("database is locked", None))
            } else {
                Ok(Completion::Recorded {
                    state: JobState::Succeeded,
                })
            }
        }
    })
    .await;
    assert!(matches!(answer, Ok(Recorded::Done(JobState::Succeeded))));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a transient error is retried"
    );
}

#[test]
fn limit_hits_name_the_reason_of_a_failure_only() {
    let mut outcome = Outcome::without_process(ExecEnding::Signaled(libc::SIGKILL));
    outcome.oom_killed = true;
    assert_eq!(to_attempt_outcome(&outcome).reason, Reason::MemoryLimit);
    outcome.ending = ExecEnding::Exited(0);
    assert_eq!(
        to_attempt_outcome(&outcome).state,
        JobState::Succeeded,
        "a job that survived a child's OOM kill and exited 0 succeeded"
    );
    let mut outcome = Outcome::without_process(ExecEnding::Exited(2));
    outcome.pids_limited = true;
    assert_eq!(to_attempt_outcome(&outcome).reason, Reason::PidsLimit);
    let outcome = Outcome::without_process(ExecEnding::Stalled);
    let recorded = to_attempt_outcome(&outcome);
    assert_eq!(
        (recorded.state, recorded.reason),
        (JobState::Failed, Reason::Stalled)
    );
}

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

/// The record effect the runner decides on for an attempt stopped at its gate.
fn ending_of_an_abort(attempt: AttemptRef) -> Ending {
    let mut state = State::new(config(1, false));
    state.on_report(Report::Exited {
        attempt,
        outcome: Outcome::without_process(ExecEnding::Aborted(StopReason::Shutdown)),
    });
    match effects(&mut state).pop() {
        Some(Effect::Record { ending, .. }) => ending,
        other => panic!("expected a record, got {other:?}"),
    }
}

#[tokio::test]
async fn an_attempt_aborted_at_the_gate_goes_back_unrun() {
    let (store, _dir, attempt) = store_with_claim().await;
    record(&store, attempt, ending_of_an_abort(attempt))
        .await
        .expect("recorded");
    let job = store.get(attempt.job_id).await.expect("get").expect("job");
    assert_eq!(
        job.state,
        JobState::Queued,
        "a job that never ran keeps its budget"
    );
    assert_eq!(job.attempts[0].reason, Some(Reason::NodeShutdown));
}

/// The start committed (pid on record) just before the stop reached the child at the gate — or
/// the start's answer was lost to a database fault. The node saw the child die unrun, so the
/// job goes back to the queue, neither left `running` nor charged an attempt.
#[tokio::test]
async fn an_abort_that_raced_the_start_goes_back_unrun() {
    let (store, _dir, attempt) = store_with_claim().await;
    store
        .mark_running(attempt, 4242, None)
        .await
        .expect("mark running");
    record(&store, attempt, ending_of_an_abort(attempt))
        .await
        .expect("recorded");
    let job = store.get(attempt.job_id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempts[0].state, JobState::Queued);
    assert_eq!(job.attempts[0].reason, Some(Reason::NodeShutdown));
}

#[test]
fn every_ending_maps_to_a_named_reason() {
    let cases = [
        (ExecEnding::Exited(0), JobState::Succeeded, "exit_code: 0"),
        (ExecEnding::Exited(3), JobState::Failed, "exit_code: 3"),
        (
            ExecEnding::Signaled(11),
            JobState::Failed,
            "signal: SIGSEGV",
        ),
        (ExecEnding::TimedOut, JobState::TimedOut, "timeout"),
        (
            ExecEnding::SpawnFailed("No such file or directory (os error 2)".into()),
            JobState::Failed,
            "spawn_failed: No such file or directory (os error 2)",
        ),
        (
            ExecEnding::Stopped(StopReason::Cancel),
            JobState::Cancelled,
            "cancelled_by_user",
        ),
        (
            ExecEnding::Aborted(StopReason::Cancel),
            JobState::Cancelled,
            "cancelled_by_user",
        ),
        (
            ExecEnding::Stopped(StopReason::Shutdown),
            JobState::Lost,
            "node_shutdown",
        ),
        (
            ExecEnding::Stopped(StopReason::LeaseLost),
            JobState::Lost,
            "node_lost",
        ),
    ];
    for (ending, state, reason) in cases {
        let mapped: AttemptOutcome = to_attempt_outcome(&Outcome::without_process(ending));
        assert_eq!(mapped.state, state);
        assert_eq!(mapped.reason.to_string(), reason);
    }
}
