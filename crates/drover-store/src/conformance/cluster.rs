//! Dependencies, queues, event pruning, nodes and labels, the reaper, and checkpointed attempts.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use drover_core::{Admission, JobSpec, JobState, Reason};

use crate::{AttemptOutcome, CancelOutcome, Completion, JobFilter, StartVerdict, Store};

use super::*;

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
        (JobState::Failed, Some(Reason::DependencyFailed(Some(b)))),
        "the reason names the job that failed"
    );
    // Too late: a dependency that already failed fails the new job at once.
    let d = store.submit(vec![after("d", &[b])]).await.unwrap()[0];
    let d = store.get(d).await.unwrap().unwrap();
    assert_eq!(
        (d.state, d.reason),
        (JobState::Failed, Some(Reason::DependencyFailed(Some(b))))
    );
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

/// While a queue is paused the claim walks the other queues one by one (so that it never reads
/// past the paused queue's jobs); what it takes must be what the one walk takes: every queue
/// but the paused ones, by priority, then in submission order.
pub async fn a_paused_queue_leaves_the_claim_order_of_the_rest(store: &dyn Store) {
    let with = |argv0: &str, queue: &str, priority: i32| {
        let mut s = in_queue(argv0, queue);
        s.priority = priority;
        s
    };
    let ids = store
        .submit(vec![
            with("held-1", "held", 9),
            with("b-low", "b", 0),
            with("held-2", "held", 9),
            with("c-high", "c", 5),
            spec("default-low"),
            with("b-high", "b", 5),
            with("held-3", "held", 0),
            with("c-low", "c", 0),
        ])
        .await
        .unwrap();
    store
        .set_queue("held".into(), Some(true), None)
        .await
        .unwrap();
    let order = |claims: Vec<crate::Claim>| -> Vec<drover_core::JobId> {
        claims.iter().map(|c| c.attempt.job_id).collect()
    };
    let first = order(store.claim(&node("n"), LEASE, 3).await.unwrap());
    assert_eq!(
        first,
        vec![ids[3], ids[5], ids[1]],
        "priority, then age, across queues"
    );
    let rest = order(store.claim(&node("n"), LEASE, 10).await.unwrap());
    assert_eq!(rest, vec![ids[4], ids[7]], "nothing of the paused queue");
    store
        .set_queue("held".into(), Some(false), None)
        .await
        .unwrap();
    let resumed = order(store.claim(&node("n"), LEASE, 10).await.unwrap());
    assert_eq!(
        resumed,
        vec![ids[0], ids[2], ids[6]],
        "resumed, in its order"
    );
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
    let limits = store.queue_limits().await.unwrap();
    let q = crate::QueueLimit {
        name: "q".into(),
        paused: false,
        concurrency: Some(1),
        running: 1,
    };
    assert_eq!(
        limits,
        vec![q],
        "only queues with settings; live attempts counted"
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
    assert_eq!(batch.passed_over.len(), 1);
    assert!(
        batch.passed_over[0].1.contains("has=sage"),
        "{:?}",
        batch.passed_over
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
        store.mark_running(ran, 4242, None, None).await.unwrap(),
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
