//! Submitting, claiming, starting and ending attempts: priorities, leases, fencing, unrun claims
//! and the retry budget.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drover_core::{AttemptRef, EventKind, JobState, Reason};

use crate::{AttemptOutcome, Completion, JobFilter, LeaseStatus, StartVerdict, Store, Unrun};

use super::*;

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

pub async fn jobs_are_numbered_and_found_by_number_name_and_prefix(store: &dyn Store) {
    let first = store.submit(vec![spec("a"), spec("b")]).await.unwrap();
    let second = store.submit(vec![spec("b")]).await.unwrap();
    let ids = [first[0], first[1], second[0]];
    let mut numbers = Vec::new();
    for id in ids {
        numbers.push(store.get(id).await.unwrap().expect("stored").number);
    }
    assert!(
        numbers[0] >= 1 && numbers[0] < numbers[1] && numbers[1] < numbers[2],
        "numbered in submit order: {numbers:?}"
    );
    let by = |filter: JobFilter| async move {
        let jobs = store.list(&filter).await.unwrap();
        jobs.iter().map(|j| j.id).collect::<Vec<_>>()
    };
    let number = JobFilter {
        number: Some(numbers[1]),
        ..JobFilter::default()
    };
    assert_eq!(by(number).await, vec![ids[1]]);
    let name = JobFilter {
        name: Some("b".into()),
        ..JobFilter::default()
    };
    assert_eq!(by(name).await, vec![ids[2], ids[1]], "newest first");
    // The whole id and its upper-case spelling are prefixes too; a prefix of nothing finds none.
    let whole = ids[2].to_string().to_ascii_uppercase();
    let prefix = JobFilter {
        id_prefix: Some(whole),
        ..JobFilter::default()
    };
    assert_eq!(by(prefix).await, vec![ids[2]]);
    let shared = JobFilter {
        id_prefix: Some(ids[0].to_string()[..4].to_string()),
        ..JobFilter::default()
    };
    assert!(
        by(shared).await.len() >= 3,
        "time-ordered ids share a prefix"
    );
    let nothing = JobFilter {
        id_prefix: Some("ffff".into()),
        ..JobFilter::default()
    };
    assert!(by(nothing).await.is_empty());
    let older = JobFilter {
        before: Some(ids[2]),
        limit: 1,
        ..JobFilter::default()
    };
    assert_eq!(
        by(older).await,
        vec![ids[1]],
        "the next page starts below the cursor"
    );
    let later = JobFilter {
        since: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..JobFilter::default()
    };
    assert!(by(later).await.is_empty());
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
        ..JobFilter::default()
    };
    assert_eq!(store.list(&only_starting).await.unwrap().len(), 2);
    let only_queued = JobFilter {
        states: vec![JobState::Queued],
        ..JobFilter::default()
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
            .mark_running(claim.attempt, 99, Some(5), None)
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
        store.mark_running(first, 1, None, None).await.unwrap(),
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
            .give_back(first, Reason::NodeShutdown, Unrun::NoPid)
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
            .give_back(second, Reason::NodeLost, Unrun::NoPid)
            .await
            .unwrap(),
        Completion::Stale { .. }
    ));
    assert!(matches!(
        store
            .give_back(first, Reason::NodeLost, Unrun::NoPid)
            .await
            .unwrap(),
        Completion::Stale { .. }
    ));
    // The node that stopped it at the gate may give it back even with its pid on record (the
    // start raced the stop): the node saw it die unrun. Not a stale attempt, though.
    assert!(matches!(
        store
            .give_back(first, Reason::NodeLost, Unrun::StoppedAtGate)
            .await
            .unwrap(),
        Completion::Stale { .. }
    ));
    assert_eq!(
        store
            .give_back(second, Reason::NodeShutdown, Unrun::StoppedAtGate)
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
            .give_back(claim, Reason::NodeShutdown, Unrun::NoPid)
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

/// A self-released start's ending may reach the store before its pid record (or without it):
/// the ending says it started, and the store records the start first, so the job goes through
/// `running` with its events in order. Its pid record, late, is then stale and changes nothing.
pub async fn an_ending_of_a_self_released_start_records_the_start(store: &dyn Store) {
    let ids = store.submit(vec![spec("x")]).await.unwrap();
    let claim = claim_one(store, &node("n1")).await.expect("claimed");
    let ran = AttemptOutcome {
        started: true,
        ..succeeded()
    };
    assert_eq!(
        store.complete(claim.attempt, ran).await.unwrap(),
        Completion::Recorded {
            state: JobState::Succeeded
        }
    );
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.state, JobState::Succeeded);
    let attempt = &job.attempts[0];
    assert_eq!(attempt.state, JobState::Succeeded);
    assert!(attempt.started_at.is_some() && attempt.finished_at.is_some());
    let kinds: Vec<_> = store
        .events_since(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Submitted,
            EventKind::Claimed,
            EventKind::Started,
            EventKind::Finished
        ]
    );
    assert_eq!(
        store
            .mark_running(claim.attempt, 4242, None, None)
            .await
            .unwrap(),
        StartVerdict::Stale
    );
}

/// Output cut from an attempt's logs is kept on the attempt, and an attempt with none has none.
pub async fn an_attempts_log_cuts_are_kept(store: &dyn Store) {
    let mut s = spec("x");
    s.retries = 1;
    let ids = store.submit(vec![s]).await.unwrap();
    let me = node("n1");
    let first = claim_and_run(store, &me).await;
    let cut = drover_core::LogCut {
        stream: drover_core::Stream::Stdout,
        written_bytes: 6_000_000,
        kept_bytes: 4_680_000,
        error: Some("No space left on device (os error 28)".into()),
    };
    let failed = AttemptOutcome {
        log_cuts: vec![cut.clone()],
        ..failed_exit()
    };
    store.complete(first, failed).await.unwrap();
    let second = claim_and_run(store, &me).await;
    store.complete(second, succeeded()).await.unwrap();
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.attempts[0].log_cuts, vec![cut]);
    assert_eq!(job.attempts[1].log_cuts, Vec::new());
}

pub async fn usage_series_are_kept_for_live_attempts_only(store: &dyn Store) {
    let ids = store.submit(vec![spec("x")]).await.unwrap();
    let me = node("n1");
    let attempt = claim_and_run(store, &me).await;
    let mut series = drover_core::UsageSeries::new(1000);
    for s in 0..3u64 {
        series.push(drover_core::UsagePoint {
            at_ms: s * 1000,
            memory_bytes: Some((s + 1) << 20),
            cpu_millis: Some(500),
        });
    }
    store
        .record_usage(&me, vec![(attempt, series.clone())])
        .await
        .unwrap();
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.attempts[0].usage_series.as_ref(), Some(&series));
    let listed = store.list(&JobFilter::default()).await.unwrap();
    assert_eq!(listed[0].attempts[0].usage_series.as_ref(), Some(&series));

    // Another node's write, and a write after the ending, change nothing.
    let mut other = series.clone();
    other.push(drover_core::UsagePoint {
        at_ms: 9000,
        memory_bytes: Some(1 << 30),
        cpu_millis: None,
    });
    store
        .record_usage(&node("n2"), vec![(attempt, other.clone())])
        .await
        .unwrap();
    store.complete(attempt, succeeded()).await.unwrap();
    store
        .record_usage(&me, vec![(attempt, other)])
        .await
        .unwrap();
    let job = store.get(ids[0]).await.unwrap().expect("stored");
    assert_eq!(job.attempts[0].usage_series.as_ref(), Some(&series));
}
