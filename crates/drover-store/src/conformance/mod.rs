//! The behaviour every [`Store`] must show, as test functions over a fresh store.
//!
//! Each function takes an empty store and panics on a violation. [`conformance_tests!`] turns
//! them into `#[tokio::test]`s for one backend; the SQLite and the PostgreSQL backends both use
//! it, so both are held to exactly the same contract. The functions are grouped by area
//! (`attempts`, `cancel`, `waiting`, `cluster`, `groups`); this file holds the helpers they share and the
//! macro. Nothing here may reach past the [`Store`] trait into a backend.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod attempts;
mod cancel;
mod cluster;
mod groups;
mod waiting;

pub use attempts::*;
pub use cancel::*;
pub use cluster::*;
pub use groups::*;
pub use waiting::*;

use std::time::Duration;

use drover_core::{AttemptRef, JobSpec, JobState, NodeId, Reason};

use crate::{AttemptOutcome, StartVerdict, Store};

pub(crate) const LEASE: Duration = Duration::from_secs(30);

pub(crate) fn node(name: &str) -> NodeId {
    NodeId(name.to_string())
}

pub(crate) fn spec(argv0: &str) -> JobSpec {
    JobSpec::new([argv0])
}

pub(crate) fn succeeded() -> AttemptOutcome {
    AttemptOutcome {
        exit_code: Some(0),
        ..AttemptOutcome::bare(JobState::Succeeded, Reason::ExitCode(0))
    }
}

/// Claims at most one job.
pub(crate) async fn claim_one(store: &dyn Store, node: &NodeId) -> Option<crate::Claim> {
    let mut claims = store.claim(node, LEASE, 1).await.unwrap();
    assert!(claims.len() <= 1);
    claims.pop()
}

pub(crate) async fn claim_and_run(store: &dyn Store, node: &NodeId) -> AttemptRef {
    let claim = claim_one(store, node).await.expect("a queued job");
    let verdict = store
        .mark_running(claim.attempt, 4242, Some(7), None)
        .await
        .unwrap();
    assert_eq!(verdict, StartVerdict::Run);
    claim.attempt
}

pub(crate) fn gib_free(gib: u64) -> drover_core::Resources {
    drover_core::Resources {
        memory_bytes: gib << 30,
        cpu_millis: 8000,
    }
}

pub(crate) fn failed_exit() -> AttemptOutcome {
    AttemptOutcome {
        exit_code: Some(1),
        ..AttemptOutcome::bare(JobState::Failed, Reason::ExitCode(1))
    }
}

/// Generates one `#[tokio::test]` per conformance function for a backend. `$make` is an
/// expression giving `(store, guard)`; the guard lives as long as the test (a temp dir, say).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            submit_then_get,
            jobs_are_numbered_and_found_by_number_name_and_prefix,
            claims_by_priority_then_age,
            claim_opens_an_attempt_with_a_lease,
            stale_completion_changes_nothing,
            retries_then_final_failure,
            unrun_claims_go_back_without_using_the_budget,
            illegal_completion_is_refused,
            an_ending_of_a_self_released_start_records_the_start,
            an_attempts_log_cuts_are_kept,
            usage_series_are_kept_for_live_attempts_only,
            cancel_in_every_phase,
            cancel_beats_retry,
            events_are_numbered_in_commit_order,
            concurrent_writers,
            a_refused_change_is_undone_alone_in_its_batch,
            admission_skips_what_does_not_fit_and_says_why,
            a_job_that_waited_long_enough_holds_back_the_rest,
            a_backoff_schedules_the_retry_and_the_timer_promotes_it,
            retry_on_limits_what_is_retried,
            idempotency_keys_name_one_job,
            dead_letters_are_retried_with_a_fresh_budget_or_dismissed,
            priority_changes_reorder_the_queue,
            edits_change_a_waiting_jobs_spec_but_not_its_place,
            dependents_wait_then_run_or_fail_down_the_chain,
            cancelling_a_job_cancels_its_dependents,
            queues_pause_and_limit_what_is_claimed,
            a_paused_queue_leaves_the_claim_order_of_the_rest,
            pruned_events_are_reported_gone,
            heartbeats_list_nodes_and_drain_stops_claims,
            labels_route_jobs,
            the_reaper_requeues_expired_attempts,
            a_checkpointed_attempt_requeues_without_using_a_retry,
            groups_store_whole_run_in_order_and_notify_once,
            a_claim_carries_what_its_upstream_jobs_gave,
            only_asked_for_endings_want_a_notice
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
