//! What makes a job wait or run again: admission by resources, backoff, `retry_on`, idempotency
//! keys, the dead-letter queue and priority changes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use drover_core::{Admission, AttemptRef, JobSpec, JobState};

use crate::{Change, Completion, JobFilter, Store};

use super::*;

fn needs_memory(argv0: &str, mib: u64) -> JobSpec {
    let mut spec = spec(argv0);
    spec.memory = Some(drover_core::Size(mib << 20));
    spec
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
    assert_eq!(batch.passed_over.len(), 1);
    assert_eq!(batch.passed_over[0].0, ids[0]);
    assert!(
        batch.passed_over[0]
            .1
            .contains("waiting for 3.0 GiB memory, 2.0 GiB free"),
        "{}",
        batch.passed_over[0].1
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
    assert_eq!(batch.passed_over.len(), 1);
    assert!(
        batch.passed_over[0].1.contains("reserving"),
        "{}",
        batch.passed_over[0].1
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

pub async fn edits_change_a_waiting_jobs_spec_but_not_its_place(store: &dyn Store) {
    let waiting = [JobState::Queued, JobState::Scheduled, JobState::Blocked];
    let id = store.submit(vec![spec("old")]).await.unwrap()[0];
    let mut new = spec("new");
    new.name = Some("renamed".into());
    new.priority = 7;
    new.queue = Some("q".into());
    new.retries = 2;
    let answer = store.edit(id, new.clone(), &waiting).await.unwrap();
    assert_eq!(answer, Change::Done(JobState::Queued));
    let job = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.name.as_str(), job.spec.clone()),
        ("renamed", new.clone())
    );
    let in_q = JobFilter {
        queue: Some("q".into()),
        ..JobFilter::default()
    };
    assert_eq!(
        store.list(&in_q).await.unwrap().len(),
        1,
        "its queue follows the spec"
    );
    let events = store.events_since(0, 100).await.unwrap();
    assert_eq!(events.last().unwrap().kind, drover_core::EventKind::Edited);
    // What fixes its place cannot change.
    let mut dated = new.clone();
    dated.at = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    assert!(matches!(
        store.edit(id, dated, &waiting).await,
        Err(crate::StoreError::Invalid { field, .. }) if field == "at"
    ));
    // Only in the states given; a missing job is said to be missing.
    assert_eq!(
        store
            .edit(id, new.clone(), &[JobState::Failed])
            .await
            .unwrap(),
        Change::NotApplicable(JobState::Queued)
    );
    let ghost = drover_core::JobId::from_uuid(uuid::Uuid::now_v7());
    assert_eq!(
        store.edit(ghost, new, &waiting).await.unwrap(),
        Change::NotFound
    );
}
