//! Cancelling in every phase, and the event log's numbering under concurrent writers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drover_core::{EventKind, JobState, Reason};

use crate::{AttemptOutcome, CancelOutcome, Completion, LeaseStatus, StartVerdict, Store};

use super::*;

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
        store.mark_running(b, 1, None, None).await.unwrap(),
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

/// Changes that fail share batches with changes that succeed: each failing one is undone alone
/// (its savepoint), and every other one commits with its event, numbered without a gap. 32
/// refused completions go in among 64 submits at once, so the writer's batches hold both.
pub async fn a_refused_change_is_undone_alone_in_its_batch(store: &dyn Store) {
    let ids = store
        .submit((0..32).map(|i| spec(&format!("held{i}"))).collect())
        .await
        .unwrap();
    let me = node("n1");
    let mut claims = Vec::new();
    for _ in 0..32 {
        claims.push(claim_one(store, &me).await.expect("claimed"));
    }
    let before = store.events_since(0, 10_000).await.unwrap().len();
    let submits = (0..64).map(|i| store.submit(vec![spec(&format!("ok{i}"))]));
    // A starting attempt cannot have succeeded: each of these is refused.
    let refused = claims
        .iter()
        .map(|c| store.complete(c.attempt, succeeded()));
    let (submitted, refused) = futures::future::join(
        futures::future::join_all(submits),
        futures::future::join_all(refused),
    )
    .await;
    assert!(refused.iter().all(Result::is_err), "{refused:?}");
    let submitted: Vec<_> = submitted.into_iter().map(|r| r.unwrap()[0]).collect();
    for id in &submitted {
        let job = store
            .get(*id)
            .await
            .unwrap()
            .expect("a submit beside a refused change commits");
        assert_eq!(job.state, JobState::Queued);
    }
    for id in &ids {
        let job = store.get(*id).await.unwrap().expect("stored");
        assert_eq!(
            job.state,
            JobState::Starting,
            "a refused completion changed nothing"
        );
        assert!(job.attempts[0].finished_at.is_none());
    }
    let events = store.events_since(0, 10_000).await.unwrap();
    assert_eq!(
        events.len() - before,
        64,
        "one event per submit, none from the refused"
    );
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
}
