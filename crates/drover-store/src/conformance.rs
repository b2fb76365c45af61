//! The behaviour every [`Store`] must show, as test functions over a fresh store.
//!
//! Each function takes an empty store and panics on a violation. [`conformance_tests!`] turns
//! them into `#[tokio::test]`s for one backend; SQLite uses it below, PostgreSQL will too (#8),
//! so both backends are held to exactly the same contract.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use drover_core::{Admission, AttemptRef, EventKind, JobSpec, JobState, NodeId, Reason};

use crate::{
    AttemptOutcome, CancelOutcome, Change, Completion, JobFilter, LeaseStatus, StartVerdict, Store,
    Unrun,
};

const LEASE: Duration = Duration::from_secs(30);

fn node(name: &str) -> NodeId {
    NodeId(name.to_string())
}

fn spec(argv0: &str) -> JobSpec {
    JobSpec::new([argv0])
}

fn succeeded() -> AttemptOutcome {
    AttemptOutcome {
        exit_code: Some(0),
        ..AttemptOutcome::bare(JobState::Succeeded, Reason::ExitCode(0))
    }
}

/// Claims at most one job.
async fn claim_one(store: &dyn Store, node: &NodeId) -> Option<crate::Claim> {
    let mut claims = store.claim(node, LEASE, 1).await.unwrap();
    assert!(claims.len() <= 1);
    claims.pop()
}

async fn claim_and_run(store: &dyn Store, node: &NodeId) -> AttemptRef {
    let claim = claim_one(store, node).await.expect("a queued job");
    let verdict = store
        .mark_running(claim.attempt, 4242, Some(7))
        .await
        .unwrap();
    assert_eq!(verdict, StartVerdict::Run);
    claim.attempt
}

pub async fn submit_then_get(store: &dyn Store) {
    let ids = store
        .submit(vec![spec("a"), spec("b"), spec("c")])
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "ids are time-ordered");
    let job = store.get(ids[1]).await.unwrap().expect("stored");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.argv, vec!["b"]);
    assert_eq!(job.attempt, 0);
    assert!(job.attempts.is_empty());
    let events = store.events_since(0, 100).await.unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.kind == EventKind::Submitted));
    assert_eq!(store.counts().await.unwrap(), vec![(JobState::Queued, 3)]);
    assert!(store.has_active().await.unwrap());
    let listed = store.list(&JobFilter::default()).await.unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]]
    );
}

pub async fn claims_by_priority_then_age(store: &dyn Store) {
    let mut specs = Vec::new();
    for (name, priority) in [("low", 1), ("high", 5), ("mid", 3), ("high2", 5)] {
        let mut s = spec(name);
        s.priority = priority;
        specs.push(s);
    }
    store.submit(specs).await.unwrap();
    let me = node("n1");
    let mut order = Vec::new();
    // Several at once, in one transaction, in the same order.
    for claim in store.claim(&me, LEASE, 3).await.unwrap() {
        order.push(claim.spec.argv[0].clone());
    }
    while let Some(claim) = claim_one(store, &me).await {
        order.push(claim.spec.argv[0].clone());
    }
    assert_eq!(order, vec!["high", "high2", "mid", "low"]);
    assert!(store.claim(&me, LEASE, 8).await.unwrap().is_empty());
    assert_eq!(store.counts().await.unwrap(), vec![(JobState::Starting, 4)]);
    assert!(store.has_active().await.unwrap());
    let only_starting = JobFilter {
        states: vec![JobState::Starting],
        limit: 2,
        queue: None,
    };
    assert_eq!(store.list(&only_starting).await.unwrap().len(), 2);
    let only_queued = JobFilter {
        states: vec![JobState::Queued],
        limit: 0,
        queue: None,
    };
    assert!(store.list(&only_queued).await.unwrap().is_empty());
}

pub async fn claim_opens_an_attempt_with_a_lease(store: &dyn Store) {
    let ids = store.submit(vec![spec("x")]).await.unwrap();
    let me = node("n1");
    let claim = claim_one(store, &me).await.expect("claimed");
    assert_eq!(
        claim.attempt,
        AttemptRef {
            job_id: ids[0],
            attempt: 1
        }
    );
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.state, JobState::Starting);
    let attempt = &job.attempts[0];
    assert_eq!(attempt.node, me);
    assert_eq!(attempt.state, JobState::Starting);
    assert!(attempt.lease_expires_at.expect("lease") > attempt.claimed_at);
    assert!(claim_one(store, &me).await.is_none(), "nothing else queued");

    assert_eq!(
        store
            .mark_running(claim.attempt, 99, Some(5))
            .await
            .unwrap(),
        StartVerdict::Run
    );
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.attempts[0].pid, Some(99));
    assert!(job.started_at.is_some());
    let live = store.live_attempts(&me).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].pid, live[0].proc_start), (Some(99), Some(5)));
    assert!(
        store
            .live_attempts(&node("other"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Issue #3 acceptance 8: a completion for attempt 1 after attempt 2 was claimed changes nothing.
pub async fn stale_completion_changes_nothing(store: &dyn Store) {
    let mut s = spec("x");
    s.retries = 1;
    let ids = store.submit(vec![s]).await.unwrap();
    let me = node("n1");
    let first = claim_and_run(store, &me).await;
    // Attempt 1 is presumed lost (its node died); the retry budget re-queues the job.
    let lost = AttemptOutcome::bare(JobState::Lost, Reason::NodeLost);
    assert_eq!(
        store.complete(first, lost).await.unwrap(),
        Completion::Recorded {
            state: JobState::Queued
        }
    );
    let second = claim_and_run(store, &me).await;
    assert_eq!(second.attempt, 2);

    let before = store.get(ids[0]).await.unwrap().expect("stored");
    let events_before = store.events_since(0, 1000).await.unwrap().len();
    let verdict = store.complete(first, succeeded()).await.unwrap();
    assert_eq!(
        verdict,
        Completion::Stale {
            current_attempt: 2,
            current_state: JobState::Running
        }
    );
    let after = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(before, after, "a stale completion must not change the job");
    assert_eq!(
        store.events_since(0, 1000).await.unwrap().len(),
        events_before
    );
    // A stale heartbeat is refused too, and a stale start.
    let leases = store
        .renew_leases(&me, &[first, second], LEASE)
        .await
        .unwrap();
    assert_eq!(leases[0].1, LeaseStatus::Lost);
    assert_eq!(
        leases[1].1,
        LeaseStatus::Held {
            cancel_requested: false
        }
    );
    assert_eq!(
        store.mark_running(first, 1, None).await.unwrap(),
        StartVerdict::Stale
    );

    // The live attempt still completes normally.
    assert_eq!(
        store.complete(second, succeeded()).await.unwrap(),
        Completion::Recorded {
            state: JobState::Succeeded
        }
    );
    let done = store.get(ids[0]).await.unwrap().expect("stored");
    assert!(!store.has_active().await.unwrap());
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(done.attempts[0].state, JobState::Lost);
    assert_eq!(done.attempts[1].state, JobState::Succeeded);
    assert!(done.finished_at.is_some());
    // And completing it twice is stale.
    assert!(matches!(
        store.complete(second, succeeded()).await.unwrap(),
        Completion::Stale { .. }
    ));
}

/// An attempt that never passed the gate goes back to the queue without using the budget; one
/// whose pid is on record (it may have run) cannot be given back.
pub async fn unrun_claims_go_back_without_using_the_budget(store: &dyn Store) {
    let ids = store.submit(vec![spec("x")]).await.unwrap();
    let me = node("n1");
    let first = claim_one(store, &me).await.expect("claimed").attempt;
    assert_eq!(
        store
            .unclaim(first, Reason::NodeShutdown, Unrun::NoPid)
            .await
            .unwrap(),
        Completion::Recorded {
            state: JobState::Queued
        }
    );
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempts[0].state, JobState::Queued);
    assert_eq!(job.attempts[0].reason, Some(Reason::NodeShutdown));
    // Attempt numbers are never reused, so fencing tokens stay unique.
    let second = claim_and_run(store, &me).await;
    assert_eq!(second.attempt, 2);
    assert!(matches!(
        store
            .unclaim(second, Reason::NodeLost, Unrun::NoPid)
            .await
            .unwrap(),
        Completion::Stale { .. }
    ));
    assert!(matches!(
        store
            .unclaim(first, Reason::NodeLost, Unrun::NoPid)
            .await
            .unwrap(),
        Completion::Stale { .. }
    ));
    // The node that stopped it at the gate may give it back even with its pid on record (the
    // start raced the stop): the node saw it die unrun. Not a stale attempt, though.
    assert!(matches!(
        store
            .unclaim(first, Reason::NodeLost, Unrun::StoppedAtGate)
            .await
            .unwrap(),
        Completion::Stale { .. }
    ));
    assert_eq!(
        store
            .unclaim(second, Reason::NodeShutdown, Unrun::StoppedAtGate)
            .await
            .unwrap(),
        Completion::Recorded {
            state: JobState::Queued
        }
    );
    let second = claim_and_run(store, &me).await;
    assert_eq!(second.attempt, 3);
    // With retries = 0 the one real run still gets its full budget: a failure is final only now.
    let failed = AttemptOutcome {
        exit_code: Some(1),
        ..AttemptOutcome::bare(JobState::Failed, Reason::ExitCode(1))
    };
    assert_eq!(
        store.complete(second, failed).await.unwrap(),
        Completion::Recorded {
            state: JobState::Failed
        }
    );

    // A cancel that arrived while it was claimed wins over giving it back.
    let ids = store.submit(vec![spec("y")]).await.unwrap();
    let claim = claim_one(store, &me).await.expect("claimed").attempt;
    store.cancel(ids[0]).await.unwrap();
    assert_eq!(
        store
            .unclaim(claim, Reason::NodeShutdown, Unrun::NoPid)
            .await
            .unwrap(),
        Completion::Recorded {
            state: JobState::Cancelled
        }
    );
}

pub async fn retries_then_final_failure(store: &dyn Store) {
    let mut s = spec("x");
    s.retries = 2;
    let ids = store.submit(vec![s]).await.unwrap();
    let me = node("n1");
    let failed = |code| AttemptOutcome {
        exit_code: Some(code),
        ..AttemptOutcome::bare(JobState::Failed, Reason::ExitCode(code))
    };
    for expected in [JobState::Queued, JobState::Queued, JobState::Failed] {
        let attempt = claim_and_run(store, &me).await;
        assert_eq!(
            store.complete(attempt, failed(1)).await.unwrap(),
            Completion::Recorded { state: expected }
        );
    }
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.attempt, 3);
    assert_eq!(job.exit_code, Some(1));
    assert_eq!(job.reason, Some(Reason::ExitCode(1)));
    assert!(claim_one(store, &me).await.is_none());
}

pub async fn illegal_completion_is_refused(store: &dyn Store) {
    let ids = store.submit(vec![spec("x")]).await.unwrap();
    let claim = claim_one(store, &node("n1")).await.expect("claimed");
    // A starting attempt never ran: it cannot have succeeded or timed out.
    assert!(store.complete(claim.attempt, succeeded()).await.is_err());
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.state, JobState::Starting);
    assert!(job.attempts[0].finished_at.is_none());
    // Spawn failures are a legal end of a starting attempt.
    let spawn = AttemptOutcome::bare(JobState::Failed, Reason::SpawnFailed("No such file".into()));
    assert_eq!(
        store.complete(claim.attempt, spawn).await.unwrap(),
        Completion::Recorded {
            state: JobState::Failed
        }
    );
}

pub async fn cancel_in_every_phase(store: &dyn Store) {
    let ids = store
        .submit(vec![spec("a"), spec("b"), spec("c")])
        .await
        .unwrap();
    let me = node("n1");
    // Waiting: cancelled at once.
    let waiting = ids[2];
    // Claim a and b (FIFO), leave c waiting.
    let a = claim_and_run(store, &me).await;
    let b = claim_one(store, &me).await.expect("b").attempt;
    assert_eq!(
        store.cancel(waiting).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let job = store.get(waiting).await.unwrap().expect("stored");
    assert_eq!(
        (job.state, job.reason.clone()),
        (JobState::Cancelled, Some(Reason::CancelledByUser))
    );

    // Running: the node is asked, and the heartbeat carries the request too.
    assert_eq!(
        store.cancel(a.job_id).await.unwrap(),
        CancelOutcome::Requested {
            attempt: a,
            node: me.clone()
        }
    );
    let leases = store.renew_leases(&me, &[a], LEASE).await.unwrap();
    assert_eq!(
        leases[0].1,
        LeaseStatus::Held {
            cancel_requested: true
        }
    );
    let cancelled = AttemptOutcome::bare(JobState::Cancelled, Reason::CancelledByUser);
    assert_eq!(
        store.complete(a, cancelled.clone()).await.unwrap(),
        Completion::Recorded {
            state: JobState::Cancelled
        }
    );

    // Starting: the start is refused so the process never execs.
    store.cancel(b.job_id).await.unwrap();
    assert_eq!(
        store.mark_running(b, 1, None).await.unwrap(),
        StartVerdict::Cancelled
    );
    store.complete(b, cancelled).await.unwrap();

    // Ended and unknown.
    assert_eq!(
        store.cancel(a.job_id).await.unwrap(),
        CancelOutcome::AlreadyEnded(JobState::Cancelled)
    );
    let unknown = drover_core::JobId::from_uuid(uuid::Uuid::now_v7());
    assert_eq!(
        store.cancel(unknown).await.unwrap(),
        CancelOutcome::NotFound
    );
}

/// A cancelled attempt is never retried, whatever its budget.
pub async fn cancel_beats_retry(store: &dyn Store) {
    let mut s = spec("x");
    s.retries = 5;
    let ids = store.submit(vec![s]).await.unwrap();
    let me = node("n1");
    let attempt = claim_and_run(store, &me).await;
    store.cancel(ids[0]).await.unwrap();
    // The tree died of our SIGTERM; even reported as a failure, the cancel wins.
    let outcome = AttemptOutcome::bare(JobState::Lost, Reason::NodeLost);
    assert_eq!(
        store.complete(attempt, outcome).await.unwrap(),
        Completion::Recorded {
            state: JobState::Lost
        }
    );
}

pub async fn events_are_numbered_in_commit_order(store: &dyn Store) {
    let mut live = store.subscribe();
    let ids = store.submit(vec![spec("a")]).await.unwrap();
    let me = node("n1");
    let attempt = claim_and_run(store, &me).await;
    store.complete(attempt, succeeded()).await.unwrap();
    let events = store.events_since(0, 100).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Submitted,
            EventKind::Claimed,
            EventKind::Started,
            EventKind::Finished
        ]
    );
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "no gaps");
    }
    assert!(events.iter().all(|e| e.job_id == ids[0]));
    assert_eq!(events[3].state, JobState::Succeeded);
    assert_eq!(events[3].reason, Some(Reason::ExitCode(0)));
    // The live stream carries the same events, in the same order, after commit.
    for expected in &events {
        let got = live.recv().await.unwrap();
        assert_eq!(&got, expected);
    }
    // Resuming after N gives N+1 onwards.
    let resumed = store.events_since(events[1].seq, 100).await.unwrap();
    assert_eq!(resumed, events[2..].to_vec());
}

/// Many concurrent writers share group commits; each gets its own answer and no event is lost.
pub async fn concurrent_writers(store: &dyn Store) {
    let tasks: Vec<_> = (0..64)
        .map(|i| store.submit(vec![spec(&format!("job{i}")), spec(&format!("job{i}b"))]))
        .collect();
    let results = futures::future::join_all(tasks).await;
    let mut ids: Vec<_> = results.into_iter().flat_map(|r| r.unwrap()).collect();
    assert_eq!(ids.len(), 128);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 128, "ids are unique");
    let events = store.events_since(0, 1000).await.unwrap();
    assert_eq!(events.len(), 128);
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
}

fn needs_memory(argv0: &str, mib: u64) -> JobSpec {
    let mut spec = spec(argv0);
    spec.memory = Some(drover_core::Size(mib << 20));
    spec
}

fn gib_free(gib: u64) -> drover_core::Resources {
    drover_core::Resources {
        memory_bytes: gib << 30,
        cpu_millis: 8000,
    }
}

pub async fn admission_skips_what_does_not_fit_and_says_why(store: &dyn Store) {
    let ids = store
        .submit(vec![
            needs_memory("big", 3 << 10),
            needs_memory("small", 512),
            spec("plain"),
        ])
        .await
        .unwrap();
    let admission = Admission::new(gib_free(4), gib_free(2), Duration::from_secs(3600), None);
    let batch = store
        .claim_within(&node("n"), LEASE, 10, admission)
        .await
        .unwrap();
    let claimed: Vec<_> = batch.claims.iter().map(|c| c.attempt.job_id).collect();
    assert_eq!(claimed, vec![ids[1], ids[2]], "the two that fit, in order");
    assert_eq!(batch.waiting.len(), 1);
    assert_eq!(batch.waiting[0].0, ids[0]);
    assert!(
        batch.waiting[0]
            .1
            .contains("waiting for 3.0 GiB memory, 2.0 GiB free"),
        "{}",
        batch.waiting[0].1
    );
    let big = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(big.state, JobState::Queued, "passed over, still queued");
}

pub async fn a_job_that_waited_long_enough_holds_back_the_rest(store: &dyn Store) {
    let ids = store
        .submit(vec![needs_memory("big", 3 << 10), spec("plain")])
        .await
        .unwrap();
    // Waited "long enough" from the start: nothing behind the big job may be claimed.
    let admission = Admission::new(gib_free(4), gib_free(2), Duration::ZERO, None);
    let batch = store
        .claim_within(&node("n"), LEASE, 10, admission)
        .await
        .unwrap();
    assert!(batch.claims.is_empty(), "the reservation holds the queue");
    assert_eq!(batch.waiting.len(), 1);
    assert!(
        batch.waiting[0].1.contains("reserving"),
        "{}",
        batch.waiting[0].1
    );
    // With room, the big job goes first.
    let admission = Admission::new(gib_free(4), gib_free(4), Duration::ZERO, None);
    let batch = store
        .claim_within(&node("n"), LEASE, 10, admission)
        .await
        .unwrap();
    let claimed: Vec<_> = batch.claims.iter().map(|c| c.attempt.job_id).collect();
    assert_eq!(claimed, ids);
}

fn failed_exit() -> AttemptOutcome {
    AttemptOutcome {
        exit_code: Some(1),
        ..AttemptOutcome::bare(JobState::Failed, Reason::ExitCode(1))
    }
}

pub async fn a_backoff_schedules_the_retry_and_the_timer_promotes_it(store: &dyn Store) {
    let mut s = spec("flaky");
    s.retries = 1;
    s.backoff = Some("150ms".parse().unwrap());
    let id = store.submit(vec![s]).await.unwrap()[0];
    let attempt = claim_and_run(store, &node("n")).await;
    let done = store.complete(attempt, failed_exit()).await.unwrap();
    assert_eq!(
        done,
        Completion::Recorded {
            state: JobState::Scheduled
        }
    );
    assert!(
        claim_one(store, &node("n")).await.is_none(),
        "not claimable before its time"
    );
    let (promoted, next) = store.promote_due().await.unwrap();
    assert_eq!(promoted, 0);
    let next = next.expect("a due time");
    let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
    assert!(
        wait <= Duration::from_millis(150),
        "due within the backoff, not {wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let (promoted, next) = store.promote_due().await.unwrap();
    assert_eq!((promoted, next), (1, None));
    let claim = claim_one(store, &node("n")).await.expect("due now");
    assert_eq!(
        claim.attempt,
        AttemptRef {
            job_id: id,
            attempt: 2
        }
    );
}

pub async fn retry_on_limits_what_is_retried(store: &dyn Store) {
    let mut s = spec("oom-only");
    s.retries = 3;
    s.retry_on = Some(vec!["memory_limit".into()]);
    let id = store.submit(vec![s]).await.unwrap()[0];
    let attempt = claim_and_run(store, &node("n")).await;
    store.complete(attempt, failed_exit()).await.unwrap();
    let job = store.get(id).await.unwrap().expect("job");
    assert_eq!(
        job.state,
        JobState::Failed,
        "an exit-code failure is not retried"
    );
}

pub async fn idempotency_keys_name_one_job(store: &dyn Store) {
    let keyed = |key: &str| {
        let mut s = spec("once");
        s.idempotency_key = Some(key.into());
        s
    };
    let ids = store
        .submit(vec![keyed("k"), keyed("k"), keyed("other")])
        .await
        .unwrap();
    assert_eq!(ids[0], ids[1], "one batch, one key, one job");
    assert_ne!(ids[0], ids[2]);
    let again = store.submit(vec![keyed("k")]).await.unwrap();
    assert_eq!(again, vec![ids[0]]);
    let all = store.list(&JobFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
}

pub async fn dead_letters_are_retried_with_a_fresh_budget_or_dismissed(store: &dyn Store) {
    let ids = store.submit(vec![spec("a"), spec("b")]).await.unwrap();
    for _ in 0..2 {
        let attempt = claim_and_run(store, &node("n")).await;
        store.complete(attempt, failed_exit()).await.unwrap();
    }
    let dlq: Vec<_> = store
        .dead_letters(10)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(dlq.len(), 2);
    let dismissed = store.dismiss(vec![ids[1]]).await.unwrap();
    assert_eq!(dismissed, vec![(ids[1], Change::Done(JobState::Failed))]);
    let retried = store.retry(None).await.unwrap();
    assert_eq!(
        retried,
        vec![(ids[0], Change::Done(JobState::Queued))],
        "only dead letters"
    );
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    let attempt = claim_and_run(store, &node("n")).await;
    assert_eq!(
        attempt,
        AttemptRef {
            job_id: ids[0],
            attempt: 2
        },
        "history kept"
    );
    let again = store.retry(Some(vec![ids[0]])).await.unwrap();
    assert!(matches!(
        again[0].1,
        Change::NotApplicable(JobState::Running)
    ));
}

pub async fn priority_changes_reorder_the_queue(store: &dyn Store) {
    let ids = store.submit(vec![spec("a"), spec("b")]).await.unwrap();
    assert_eq!(
        store.set_priority(ids[1], 9).await.unwrap(),
        Change::Done(JobState::Queued)
    );
    let first = claim_one(store, &node("n")).await.expect("claim");
    assert_eq!(first.attempt.job_id, ids[1]);
    assert_eq!(first.spec.priority, 9);
    assert!(matches!(
        store.set_priority(ids[1], 1).await.unwrap(),
        Change::NotApplicable(JobState::Starting)
    ));
}

fn after(argv0: &str, deps: &[drover_core::JobId]) -> JobSpec {
    let mut s = spec(argv0);
    s.after = deps.to_vec();
    s
}

pub async fn dependents_wait_then_run_or_fail_down_the_chain(store: &dyn Store) {
    let a = store.submit(vec![spec("a")]).await.unwrap()[0];
    let b = store.submit(vec![after("b", &[a])]).await.unwrap()[0];
    let c = store.submit(vec![after("c", &[b])]).await.unwrap()[0];
    assert_eq!(
        store.get(b).await.unwrap().unwrap().state,
        JobState::Blocked
    );
    let claimed = claim_and_run(store, &node("n")).await;
    assert_eq!(claimed.job_id, a, "blocked jobs are not claimable");
    store.complete(claimed, succeeded()).await.unwrap();
    assert_eq!(store.get(b).await.unwrap().unwrap().state, JobState::Queued);
    assert_eq!(
        store.get(c).await.unwrap().unwrap().state,
        JobState::Blocked
    );
    let claimed = claim_and_run(store, &node("n")).await;
    assert_eq!(claimed.job_id, b);
    store.complete(claimed, failed_exit()).await.unwrap();
    let c = store.get(c).await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.reason),
        (JobState::Failed, Some(Reason::DependencyFailed))
    );
    // Too late: a dependency that already failed fails the new job at once.
    let d = store.submit(vec![after("d", &[b])]).await.unwrap()[0];
    assert_eq!(store.get(d).await.unwrap().unwrap().state, JobState::Failed);
    // An unknown dependency is refused, naming the field, and nothing is stored.
    let ghost = drover_core::JobId::from_uuid(uuid::Uuid::now_v7());
    let err = store
        .submit(vec![spec("ok"), after("x", &[ghost])])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("[1].after[0]"), "{err}");
    assert_eq!(store.list(&JobFilter::default()).await.unwrap().len(), 4);
}

pub async fn cancelling_a_job_cancels_its_dependents(store: &dyn Store) {
    let a = store.submit(vec![spec("a")]).await.unwrap()[0];
    let b = store.submit(vec![after("b", &[a])]).await.unwrap()[0];
    let c = store.submit(vec![after("c", &[b])]).await.unwrap()[0];
    assert_eq!(store.cancel(a).await.unwrap(), CancelOutcome::Cancelled);
    for id in [b, c] {
        let job = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            (job.state, job.reason),
            (JobState::Cancelled, Some(Reason::CancelledByUser))
        );
    }
}

fn in_queue(argv0: &str, queue: &str) -> JobSpec {
    let mut s = spec(argv0);
    s.queue = Some(queue.into());
    s
}

pub async fn queues_pause_and_limit_what_is_claimed(store: &dyn Store) {
    let ids = store
        .submit(vec![in_queue("a", "q"), in_queue("b", "q"), spec("c")])
        .await
        .unwrap();
    store.set_queue("q".into(), Some(true), None).await.unwrap();
    let claims = store.claim(&node("n"), LEASE, 10).await.unwrap();
    let claimed: Vec<_> = claims.iter().map(|c| c.attempt.job_id).collect();
    assert_eq!(claimed, vec![ids[2]], "a paused queue starts nothing");
    let info = store
        .set_queue("q".into(), Some(false), Some(Some(1)))
        .await
        .unwrap();
    assert_eq!(
        (info.paused, info.concurrency, info.queued),
        (false, Some(1), 2)
    );
    let claims = store.claim(&node("n"), LEASE, 10).await.unwrap();
    assert_eq!(claims.len(), 1, "concurrency 1");
    assert!(store.claim(&node("n"), LEASE, 10).await.unwrap().is_empty());
    store
        .complete(
            claims[0].attempt,
            AttemptOutcome::bare(JobState::Lost, Reason::NodeLost),
        )
        .await
        .unwrap();
    assert_eq!(
        store.claim(&node("n"), LEASE, 10).await.unwrap().len(),
        1,
        "room again"
    );
    store.set_queue("q".into(), None, Some(None)).await.unwrap();
    let queues = store.queues().await.unwrap();
    let q = queues.iter().find(|q| q.name == "q").expect("listed");
    assert_eq!((q.concurrency, q.running), (None, 1));
    assert!(queues.iter().any(|q| q.name == "default"));
    let in_q = JobFilter {
        queue: Some("q".into()),
        ..JobFilter::default()
    };
    assert_eq!(store.list(&in_q).await.unwrap().len(), 2);
    assert!(
        store
            .set_queue("bad name".into(), Some(true), None)
            .await
            .is_err()
    );
}

pub async fn pruned_events_are_reported_gone(store: &dyn Store) {
    assert_eq!(store.event_bounds().await.unwrap(), (None, 0));
    store.submit(vec![spec("a"), spec("b")]).await.unwrap();
    assert_eq!(store.event_bounds().await.unwrap(), (Some(1), 2));
    let gone = store
        .prune_events(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(gone, 2);
    assert_eq!(
        store.event_bounds().await.unwrap(),
        (None, 2),
        "the newest seq is remembered"
    );
    store.submit(vec![spec("c")]).await.unwrap();
    assert_eq!(
        store.event_bounds().await.unwrap(),
        (Some(3), 3),
        "seqs are never reused"
    );
}

fn node_info(name: &str, labels: &[(&str, &str)]) -> drover_core::NodeInfo {
    drover_core::NodeInfo {
        id: node(name),
        hostname: format!("{name}.lan"),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        url: Some(format!("http://{name}.lan:7878")),
        capacity: gib_free(4),
        slots: 2,
        // Stored to the millisecond.
        started_at: chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
            .unwrap(),
    }
}

/// Heartbeats describe nodes; a drained node claims nothing until it is undrained, and its
/// heartbeats keep it draining.
pub async fn heartbeats_list_nodes_and_drain_stops_claims(store: &dyn Store) {
    use drover_core::NodeState;
    let n1 = node_info("n1", &[("os", "linux")]);
    let load = drover_core::NodeLoad {
        running: 1,
        reserved: gib_free(1),
    };
    assert_eq!(store.heartbeat(&n1, load).await.unwrap(), NodeState::Alive);
    store
        .heartbeat(&node_info("n2", &[]), Default::default())
        .await
        .unwrap();
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].info, n1, "what the node said about itself");
    assert_eq!(nodes[0].load, load);
    assert_eq!(nodes[0].state, NodeState::Alive);

    store.submit(vec![spec("a")]).await.unwrap();
    let drained = store.set_draining(&n1.id, true).await.unwrap().unwrap();
    assert_eq!(drained.state, NodeState::Draining);
    assert!(
        claim_one(store, &n1.id).await.is_none(),
        "a drained node claims nothing"
    );
    assert_eq!(
        store.heartbeat(&n1, load).await.unwrap(),
        NodeState::Draining,
        "heartbeats keep it draining"
    );
    let back = store.set_draining(&n1.id, false).await.unwrap().unwrap();
    assert_eq!(back.state, NodeState::Alive);
    assert!(claim_one(store, &n1.id).await.is_some());
    assert!(
        store
            .set_draining(&node("nobody"), true)
            .await
            .unwrap()
            .is_none()
    );
}

/// A job that requires labels runs only on a node that has them all.
pub async fn labels_route_jobs(store: &dyn Store) {
    let plain = node_info("plain", &[("os", "linux")]);
    let sage = node_info("sage", &[("os", "linux"), ("has", "sage")]);
    for n in [&plain, &sage] {
        store.heartbeat(n, Default::default()).await.unwrap();
    }
    let mut needs = spec("needs-sage");
    needs.require.insert("has".into(), "sage".into());
    let id = store.submit(vec![needs]).await.unwrap()[0];
    let batch = store
        .claim_within(&plain.id, LEASE, 1, Admission::unlimited())
        .await
        .unwrap();
    assert!(
        batch.claims.is_empty(),
        "the node without the label passes it over"
    );
    assert_eq!(batch.waiting.len(), 1);
    assert!(
        batch.waiting[0].1.contains("has=sage"),
        "{:?}",
        batch.waiting
    );
    let claimed = claim_one(store, &sage.id)
        .await
        .expect("the labelled node takes it");
    assert_eq!(claimed.attempt.job_id, id);
}

/// The reaper ends attempts whose lease expired — given back unrun if they never started, else
/// `lost` and retried — declares silent nodes dead, and the stale node's completion is refused.
/// A dead node that heartbeats again is alive.
pub async fn the_reaper_requeues_expired_attempts(store: &dyn Store) {
    use drover_core::NodeState;
    let gone = node_info("gone", &[]);
    store.heartbeat(&gone, Default::default()).await.unwrap();
    let mut retried = spec("ran");
    retried.retries = 1;
    let ids = store.submit(vec![retried, spec("unrun")]).await.unwrap();
    // Leases of zero: expired as soon as they are written.
    let claims = store.claim(&gone.id, Duration::ZERO, 2).await.unwrap();
    assert_eq!(claims.len(), 2);
    let ran = claims[0].attempt;
    assert_eq!(ran.job_id, ids[0]);
    assert_eq!(
        store.mark_running(ran, 4242, None).await.unwrap(),
        StartVerdict::Run
    );
    tokio::time::sleep(Duration::from_millis(20)).await;

    let reaped = store.reap(Duration::from_millis(10)).await.unwrap();
    assert!(!reaped.skipped);
    assert_eq!(reaped.dead_nodes, vec![gone.id.clone()]);
    let mut states: Vec<_> = reaped
        .attempts
        .iter()
        .map(|(a, s)| (a.job_id, *s))
        .collect();
    states.sort();
    let mut want = vec![(ids[0], JobState::Queued), (ids[1], JobState::Queued)];
    want.sort();
    assert_eq!(states, want, "both jobs are queued again");
    let job = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(job.attempts[0].state, JobState::Lost);
    assert_eq!(job.attempts[0].reason, Some(Reason::NodeLost));
    let unrun = store.get(ids[1]).await.unwrap().unwrap();
    assert_eq!(
        unrun.attempts[0].state,
        JobState::Queued,
        "given back unrun"
    );

    // The old node's late completion changes nothing.
    assert!(matches!(
        store.complete(ran, succeeded()).await.unwrap(),
        Completion::Stale { .. }
    ));
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes[0].state, NodeState::Dead);
    assert_eq!(
        store.heartbeat(&gone, Default::default()).await.unwrap(),
        NodeState::Alive,
        "it rejoins"
    );
    // Another node runs the job to success: a second attempt.
    let other = node("other");
    let again = claim_and_run(store, &other).await;
    assert_eq!(again.attempt, 2);
    assert!(
        store
            .reap(Duration::from_secs(60))
            .await
            .unwrap()
            .attempts
            .is_empty(),
        "a live lease is left alone"
    );
}

/// A checkpointed attempt (#12) puts its job back in the queue at once without using a retry:
/// with `retries = 0` it may checkpoint any number of times and still end by its own outcome. An
/// outcome's own end time is what is recorded, when it is earlier than now; a pending cancel
/// wins over the requeue.
pub async fn a_checkpointed_attempt_requeues_without_using_a_retry(store: &dyn Store) {
    let id = store.submit(vec![spec("resumable")]).await.unwrap()[0];
    let me = node("n1");
    let ended = chrono::Utc::now() - chrono::Duration::seconds(30);
    for round in 1..=3 {
        let attempt = claim_and_run(store, &me).await;
        assert_eq!(attempt.attempt, round);
        let outcome = AttemptOutcome {
            exit_code: Some(85),
            ended_at: Some(ended),
            ..AttemptOutcome::bare(JobState::Queued, Reason::Checkpointed)
        };
        assert_eq!(
            store.complete(attempt, outcome).await.unwrap(),
            Completion::Recorded {
                state: JobState::Queued
            }
        );
    }
    let last = claim_and_run(store, &me).await;
    store.complete(last, failed_exit()).await.unwrap();
    let job = store.get(id).await.unwrap().expect("stored");
    assert_eq!(
        job.state,
        JobState::Failed,
        "no retry was spent on the checkpoints: {job:?}"
    );
    assert_eq!(job.attempts.len(), 4);
    for earlier in &job.attempts[..3] {
        assert_eq!(earlier.reason, Some(Reason::Checkpointed));
        assert_eq!(earlier.exit_code, Some(85));
        let finished = earlier.finished_at.expect("finished");
        assert!(
            (finished - ended).num_milliseconds().abs() < 1000,
            "recorded when it ended: {finished} vs {ended}"
        );
    }
    // A cancel asked while it ran wins over the requeue.
    let id = store.submit(vec![spec("resumable")]).await.unwrap()[0];
    let attempt = claim_and_run(store, &me).await;
    store.cancel(id).await.unwrap();
    let outcome = AttemptOutcome {
        exit_code: Some(85),
        ..AttemptOutcome::bare(JobState::Queued, Reason::Checkpointed)
    };
    assert_eq!(
        store.complete(attempt, outcome).await.unwrap(),
        Completion::Recorded {
            state: JobState::Cancelled
        }
    );
}

/// Generates one `#[tokio::test]` per conformance function for a backend. `$make` is an
/// expression giving `(store, guard)`; the guard lives as long as the test (a temp dir, say).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            submit_then_get,
            claims_by_priority_then_age,
            claim_opens_an_attempt_with_a_lease,
            stale_completion_changes_nothing,
            retries_then_final_failure,
            unrun_claims_go_back_without_using_the_budget,
            illegal_completion_is_refused,
            cancel_in_every_phase,
            cancel_beats_retry,
            events_are_numbered_in_commit_order,
            concurrent_writers,
            admission_skips_what_does_not_fit_and_says_why,
            a_job_that_waited_long_enough_holds_back_the_rest,
            a_backoff_schedules_the_retry_and_the_timer_promotes_it,
            retry_on_limits_what_is_retried,
            idempotency_keys_name_one_job,
            dead_letters_are_retried_with_a_fresh_budget_or_dismissed,
            priority_changes_reorder_the_queue,
            dependents_wait_then_run_or_fail_down_the_chain,
            cancelling_a_job_cancels_its_dependents,
            queues_pause_and_limit_what_is_claimed,
            pruned_events_are_reported_gone,
            heartbeats_list_nodes_and_drain_stops_claims,
            labels_route_jobs,
            the_reaper_requeues_expired_attempts,
            a_checkpointed_attempt_requeues_without_using_a_retry
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::$name(&store).await;
            }
        )*
    };
}
