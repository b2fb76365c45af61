//! One recorded answer of each `/v1` endpoint, as a node of this version wrote it (see
//! `answers/README.md` for how they were recorded), decoded into its contract type and encoded
//! again: every field the node sends is one the type reads, and nothing is lost on the way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use drover_api::{
    CancelAllAnswer, CancelAnswer, CancelResult, Change, ChangeResult, Changes, Counts, ErrorBody,
    Event, Found, Health, Idle, JobRecord, NodeRecord, NodeReport, QueueInfo, Resolved, Submitted,
    SubmittedBatch,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `answers/NAME.json` as `T`, and checks that encoding it again gives the same JSON.
fn decode<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let path = format!("{}/tests/answers/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let recorded: serde_json::Value = serde_json::from_str(&text).expect("recorded JSON");
    let typed: T = serde_json::from_value(recorded.clone())
        .unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
    let again = serde_json::to_value(&typed).expect("encode");
    assert_eq!(again, recorded, "{name}: a field was dropped or changed");
    typed
}

#[test]
fn node_answers() {
    let health: Health = decode("health");
    assert!(!health.version.is_empty());
    let report: NodeReport = decode("node");
    assert_eq!(report.node, health.node);
    let nodes: Vec<NodeRecord> = decode("nodes");
    assert_eq!(nodes[0].info.id, health.node);
    let drained: NodeRecord = decode("drain");
    assert_eq!(drained.state.to_string(), "draining");
}

#[test]
fn job_answers() {
    let one: Submitted = decode("submit");
    let batch: SubmittedBatch = decode("submit_batch");
    assert_eq!(batch.ids.len(), 2);
    let job: JobRecord = decode("job");
    assert_eq!(job.id, one.id);
    assert_eq!(job.state.to_string(), "running");
    let jobs: Vec<JobRecord> = decode("jobs");
    assert!(jobs.iter().any(|j| j.id == one.id));
    let waited: JobRecord = decode("job_wait");
    assert!(waited.state.is_terminal());
    let idle: Idle = decode("wait_idle");
    assert!(idle.idle);
    let event: Event = decode("event");
    assert_eq!(event.seq, 1);
}

#[test]
fn group_answers() {
    let submitted: drover_api::SubmittedGroup = decode("group_submit");
    assert_eq!(submitted.jobs.len(), 3);
    let detail: drover_api::GroupDetail = decode("group");
    assert_eq!(detail.group.id, submitted.id);
    assert_eq!(detail.group.number, submitted.number);
    assert_eq!(detail.jobs.len(), 3);
    assert!(
        detail
            .jobs
            .iter()
            .all(|j| j.group.as_ref().map(|m| m.group) == Some(submitted.id))
    );
    let results: drover_api::GroupResults = decode("group_results");
    let ns: Vec<_> = results.results.iter().map(|r| r.result.clone()).collect();
    assert_eq!(ns, [1, 2, 3].map(|n| Some(serde_json::json!({ "n": n }))));
    let groups: drover_api::Groups = decode("groups");
    assert_eq!(groups.groups[0].id, submitted.id);
    let retried: Changes = decode("group_retry");
    assert!(retried.results.is_empty(), "nothing failed");
    let cancelled: CancelAllAnswer = decode("group_cancel");
    assert!(cancelled.results.is_empty(), "everything had ended");
}

#[test]
fn cancel_answers() {
    let cancelled: CancelAnswer = decode("cancel_cancelled");
    assert!(matches!(cancelled.result, CancelResult::Cancelled { .. }));
    let ended: CancelAnswer = decode("cancel_already_ended");
    assert!(matches!(ended.result, CancelResult::AlreadyEnded { .. }));
    let requested: CancelAnswer = decode("cancel_requested");
    assert!(matches!(
        requested.result,
        CancelResult::CancelRequested { attempt: 1, .. }
    ));
    let all: CancelAllAnswer = decode("cancel_all");
    assert!(all.results.len() >= 2);
}

#[test]
fn change_answers() {
    let priority: ChangeResult = decode("priority");
    assert!(matches!(priority.change, Change::Done { .. }));
    let retried: Changes = decode("retry");
    assert!(
        retried
            .results
            .iter()
            .all(|r| matches!(r.change, Change::Done { .. }))
    );
    let dismissed: Changes = decode("dismiss");
    assert!(matches!(
        dismissed.results[0].change,
        Change::NotApplicable { .. }
    ));
    let dead: Vec<JobRecord> = decode("dlq");
    assert!(!dead.is_empty());
    assert!(dead.iter().all(|j| j.state.to_string() == "failed"));
}

#[test]
fn queue_answers() {
    let set: QueueInfo = decode("queue_set");
    assert!(set.paused);
    assert_eq!(set.concurrency, Some(2));
    let queues: Vec<QueueInfo> = decode("queues");
    assert!(queues.iter().any(|q| q.name == "q"));
}

#[test]
fn counts_are_by_state() {
    let counts: Counts = decode("counts");
    assert!(counts.states.values().sum::<u64>() > 0);
}

#[test]
fn references_resolve_to_one_job_many_or_none() {
    let resolved: Resolved = decode("resolve");
    let found: Vec<&Found> = resolved.results.iter().map(|r| &r.found).collect();
    assert!(
        matches!(found[0], Found::One { number: 1, .. }),
        "{found:?}"
    );
    assert!(
        matches!(found[1], Found::One { number: 2, .. }),
        "{found:?}"
    );
    assert!(matches!(found[2], Found::One { .. }), "by name: {found:?}");
    assert!(
        matches!(found[3], Found::Many { .. }),
        "a shared prefix: {found:?}"
    );
    assert_eq!(found[4], &Found::None);
}

#[test]
fn errors_name_their_field() {
    let error: ErrorBody = decode("error");
    assert_eq!(error.error.field.as_deref(), Some("timeout"));
}
