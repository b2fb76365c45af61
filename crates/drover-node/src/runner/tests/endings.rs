//! Endings: what each way of ending records, permanent store errors that are not retried, and
//! what the store makes of an attempt stopped at its gate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use drover_core::{AttemptRef, EventKind, JobSpec, JobState, NodeId, Reason};
use drover_exec::{Command, Ending as ExecEnding, Outcome, Report, StopReason};
use drover_store::{
    AttemptOutcome, Claim, Completion, SqlStore, StartVerdict, Store, StoreError, Unrun,
};

use crate::runner::effect::{Answer, Effect, Ending};
use crate::runner::record::{Recorded, record, to_attempt_outcome, until_answered};
use crate::runner::state::State;

use super::*;

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

/// A permanent store error (here a corrupt row) is not retried: the same call would meet it
/// again. It surfaces at once, after one call; a transient one is tried again.
#[tokio::test]
async fn a_permanent_store_error_is_not_retried() {
    let (store, dir, attempt) = store_with_claim().await;
    store
        .mark_running(attempt, 4242, None, None)
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
    let (_stop, stopping) = tokio::sync::watch::channel(0u32);
    let full = AtomicUsize::new(0);
    let on_full = || {
        full.fetch_add(1, Ordering::SeqCst);
    };
    let retry = crate::runner::record::Retry {
        stopping: &stopping,
        on_transient: &on_full,
        max_pause: Duration::from_millis(1),
    };
    let calls = AtomicUsize::new(0);
    let answer = until_answered(attempt, "recording a completion", &retry, || {
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
    let answer = until_answered(attempt, "recording a completion", &retry, || {
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
    assert_eq!(full.load(Ordering::SeqCst), 1, "and the disk is looked at");

    // Far past the old 12 tries, a transient error is still retried; only a stop ends it.
    let calls = AtomicUsize::new(0);
    let answer = until_answered(attempt, "recording a completion", &retry, || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 40 {
                Err(StoreError::transient("database or disk is full", None))
            } else {
                Ok(Completion::Recorded {
                    state: JobState::Succeeded,
                })
            }
        }
    });
    assert!(matches!(
        answer.await,
        Ok(Recorded::Done(JobState::Succeeded))
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 41);
    let (stop, stopping) = tokio::sync::watch::channel(0u32);
    stop.send_replace(1);
    let retry = crate::runner::record::Retry {
        stopping: &stopping,
        on_transient: &on_full,
        max_pause: Duration::from_millis(1),
    };
    let answer = until_answered(attempt, "recording a completion", &retry, || async {
        Err(StoreError::transient("database or disk is full", None))
    })
    .await;
    assert!(
        answer.is_err(),
        "a stopping node leaves the outcome to its owner"
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
    let (_stop, stopping) = tokio::sync::watch::channel(0u32);
    record(
        &store,
        attempt,
        ending_of_an_abort(attempt),
        &stopping,
        &|| {},
    )
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
        .mark_running(attempt, 4242, None, None)
        .await
        .expect("mark running");
    let (_stop, stopping) = tokio::sync::watch::channel(0u32);
    record(
        &store,
        attempt,
        ending_of_an_abort(attempt),
        &stopping,
        &|| {},
    )
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
