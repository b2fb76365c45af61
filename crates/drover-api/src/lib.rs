//! The HTTP contract of a drover node: every request body and every answer of `/v1`, one Rust
//! type each, used by the node to write them and by the CLI (or any Rust client) to read them.
//!
//! A field a client needs is a field of a type here, so an answer that lacks it fails to decode
//! instead of reading as an empty string. The domain records a node answers with (a job, a
//! node, a queue, an event) are `drover-core`'s own types, re-exported. This crate holds data
//! and its encoding only: no I/O, no HTTP client or server.
//!
//! | endpoint | request | answer |
//! |---|---|---|
//! | `GET /v1/health` | | [`Health`] |
//! | `GET /v1/node` | | [`NodeReport`] |
//! | `POST /v1/jobs` | a job spec, or an array of them | [`Submitted`] / [`SubmittedBatch`] (201) |
//! | `GET /v1/jobs?state=&queue=&name=&since=&before=&limit=` | | `Vec<`[`JobRecord`]`>`, newest first, at most [`MAX_PAGE`] |
//! | `GET /v1/jobs/{id}`, `GET /v1/jobs/{id}/wait?timeout=` | | [`JobRecord`] |
//! | `GET /v1/jobs/{id}/logs?stream=&attempt=&follow=&offset=` | | text; [`ATTEMPT_HEADER`] names the attempt |
//! | `POST /v1/jobs/{id}/cancel` | | [`CancelAnswer`] |
//! | `POST /v1/jobs/{id}/priority` | [`SetPriority`] | [`ChangeResult`] |
//! | `POST /v1/cancel` | [`CancelAll`] | [`CancelAllAnswer`] |
//! | `GET /v1/wait?timeout=` | | [`Idle`] |
//! | `GET /v1/dlq?limit=` | | `Vec<`[`JobRecord`]`>`, at most [`MAX_PAGE`] |
//! | `POST /v1/dlq/dismiss` | [`Dismiss`] | [`Changes`] |
//! | `POST /v1/retry` | [`Retry`] | [`Changes`] |
//! | `GET /v1/queues` | | `Vec<`[`QueueInfo`]`>` |
//! | `POST /v1/queues/{name}` | [`QueueChange`] | [`QueueInfo`] |
//! | `GET /v1/nodes` | | `Vec<`[`NodeRecord`]`>` |
//! | `POST /v1/nodes/{node}/drain`, `.../undrain` | | [`NodeRecord`] |
//! | `GET /v1/events?since=&queue=&job=` | | server-sent [`Event`]s |
//!
//! Every error answer is an [`ErrorBody`]. `GET /v1/openapi.json` describes all of it
//! (OpenAPI 3.1), generated from these types and the node's handlers.

use drover_core::{BackendReport, Capacity, JobId, JobState, Memory, NodeId, Pressures};
use serde::{Deserialize, Serialize};

pub use drover_core::{Event, JobRecord, JobSpec, NodeRecord, QueueInfo};

/// Most records one listing answers (`limit` over it is refused): the next page of
/// `/v1/jobs` starts `before` the last job of this one.
pub const MAX_PAGE: usize = 1000;

/// The header of a log answer that names the attempt it is of, so that a client that
/// reconnects asks for the same attempt again.
pub const ATTEMPT_HEADER: &str = "x-drover-attempt";

/// `GET /v1/health`: the node answers, and says who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// The node's id.
    pub node: NodeId,
    /// drover's version.
    pub version: String,
}

/// `GET /v1/node` (and `drover doctor`): what a node is and has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeReport {
    /// The node's id.
    pub node: NodeId,
    /// drover's version.
    pub version: String,
    /// What admission hands out.
    pub capacity: Capacity,
    /// The containment backend, why it was chosen, and what it enforces.
    pub containment: BackendReport,
    /// The machine's memory now.
    pub host_memory: Option<Memory>,
    /// Pressure stall information now (Linux 4.20+).
    pub pressure: Pressures,
}

/// `POST /v1/jobs` with one spec: the job's id (an idempotency key seen before gives the first
/// job's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Submitted {
    /// The job.
    pub id: JobId,
}

/// `POST /v1/jobs` with an array of specs: their ids, in input order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmittedBatch {
    /// The jobs.
    pub ids: Vec<JobId>,
}

/// `POST /v1/jobs`'s body, as the API description gives it: one spec, or an array of them.
/// (The node reads the body itself, to tell the two apart and name the index of a bad one.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum JobSubmission {
    /// One job.
    One(Box<JobSpec>),
    /// A batch, stored in one transaction.
    Many(Vec<JobSpec>),
}

/// `POST /v1/jobs`'s answer, as the API description gives it: [`Submitted`] for one spec,
/// [`SubmittedBatch`] for an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum JobsSubmitted {
    /// For one spec.
    One(Submitted),
    /// For an array.
    Many(SubmittedBatch),
}

/// `GET /v1/wait`: whether every job ended (none blocked, scheduled, queued, starting or
/// running) before the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Idle {
    /// No job is blocked, scheduled, queued, starting or running.
    pub idle: bool,
}

/// What a cancel did to one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelAnswer {
    /// The job.
    pub id: JobId,
    /// What happened.
    #[serde(flatten)]
    pub result: CancelResult,
}

/// What a cancel did, by `result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CancelResult {
    /// It was waiting and is now cancelled.
    Cancelled {
        /// `cancelled`.
        state: JobState,
    },
    /// It runs; its node is stopping its tree, and the job ends `cancelled`.
    CancelRequested {
        /// The live attempt.
        attempt: u32,
        /// The node that holds it.
        node: NodeId,
    },
    /// It had already ended; nothing changed.
    AlreadyEnded {
        /// How it ended.
        state: JobState,
    },
    /// No such job (only in [`CancelAllAnswer`]: a single cancel answers 404).
    NotFound,
}

/// `POST /v1/cancel`: which jobs to cancel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelAll {
    /// Only jobs in these states (default: every state that has not ended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<JobState>,
    /// Only jobs in this queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// `POST /v1/cancel`: what happened to each job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelAllAnswer {
    /// One per job.
    pub results: Vec<CancelAnswer>,
}

/// What a change of one job (a priority, a retry, a dismissal) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeResult {
    /// The job.
    pub id: JobId,
    /// What happened.
    #[serde(flatten)]
    pub change: Change,
}

/// What a change did, by `result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Change {
    /// Done; the job is now in this state.
    Done {
        /// Its state now.
        state: JobState,
    },
    /// Its state does not allow the change.
    NotApplicable {
        /// Its state.
        state: JobState,
    },
    /// No such job.
    NotFound,
}

/// `POST /v1/retry` and `POST /v1/dlq/dismiss`: what happened to each job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Changes {
    /// One per job, in the order asked.
    pub results: Vec<ChangeResult>,
}

/// `POST /v1/jobs/{id}/priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPriority {
    /// The new priority (higher runs first).
    pub priority: i32,
}

/// `POST /v1/retry`: these jobs, or every dead letter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// The jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<JobId>,
    /// Every job in the dead-letter queue (instead of `ids`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_dlq: bool,
    /// Spec fields to change before the jobs run again (`{"memory": "2G"}`), with `ids`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /v1/dlq/dismiss`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dismiss {
    /// The jobs.
    #[serde(default)]
    pub ids: Vec<JobId>,
}

/// `GET /v1/counts`: how many jobs are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    /// By state name; a state with no job is left out.
    pub states: std::collections::BTreeMap<String, u64>,
}

/// `POST /v1/resolve`: the jobs people named, each by any of the words commands take for a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// Each a whole id, a job number (`42` or `#42`), a unique prefix of an id (four
    /// characters at least), or a name: unique among jobs that have not ended, else among all.
    pub refs: Vec<String>,
    /// Try groups before jobs at each step (`drover results NAME` when a job has the name of
    /// a sweep too). Jobs come first when false or left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub groups_first: bool,
}

/// `POST /v1/resolve`: what each reference names, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resolved {
    /// One per reference.
    pub results: Vec<Resolution>,
}

/// What one reference names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resolution {
    /// The reference as given.
    #[serde(rename = "ref")]
    pub reference: String,
    /// What it names, by `found`.
    #[serde(flatten)]
    pub found: Found,
}

/// What a reference names, by `found`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "found", rename_all = "snake_case")]
pub enum Found {
    /// Exactly one job.
    One {
        /// Its id.
        id: JobId,
        /// Its number.
        number: u64,
    },
    /// Several jobs: the reference is ambiguous.
    Many {
        /// Some of them (the newest first).
        candidates: Vec<Candidate>,
        /// Whether more match than are listed.
        more: bool,
    },
    /// A group (a sweep's or a flow's jobs).
    Group {
        /// Its id.
        id: drover_core::GroupId,
        /// Its number.
        number: u64,
    },
    /// No job or group.
    None,
}

/// A job an ambiguous reference may mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Candidate {
    /// Its id.
    pub id: JobId,
    /// Its number.
    pub number: u64,
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: drover_core::JobState,
}

/// `POST /v1/groups`: a sweep or a flow to submit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "sweep", "flow": {"name": "grid", "steps": {"run": {"argv": ["/bin/echo", "{}"], "each": "1..3"}}}}))]
pub struct SubmitGroup {
    /// `sweep` (one step with `each`, `drover submit --each`) or `flow` (`drover flow submit`).
    pub kind: drover_core::GroupKind,
    /// The flow document: `{"name": ..., "notify": ..., "steps": {"NAME": {job fields, "after":
    /// [...], "each": ...}}}`; a sweep's has one step.
    pub flow: serde_json::Value,
    /// Job fields every step gets where it leaves them out (the CLI sends the submitter's
    /// directory and environment here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /v1/groups`: what was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmittedGroup {
    /// The group.
    pub id: drover_core::GroupId,
    /// Its number (its members' follow it).
    pub number: u64,
    /// Its name.
    pub name: String,
    /// Its members, in sweep order (a flow's in an order that respects `after`).
    pub jobs: Vec<JobId>,
}

/// `GET /v1/groups`: groups, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Groups {
    /// The groups.
    pub groups: Vec<drover_core::GroupRecord>,
}

/// `GET /v1/groups/{id}`: a group and its members (results left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupDetail {
    /// The group.
    pub group: drover_core::GroupRecord,
    /// Its members in submit order.
    pub jobs: Vec<drover_core::JobRecord>,
}

/// `GET /v1/groups/{id}/results`: every member's result, in sweep order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupResults {
    /// The group.
    pub group: drover_core::GroupRecord,
    /// One row per member.
    pub results: Vec<ResultRow>,
}

/// One member's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultRow {
    /// The job.
    pub id: JobId,
    /// Its number.
    pub number: u64,
    /// Its name.
    pub name: String,
    /// Its step, in a flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Its place in its sweep.
    pub index: u32,
    /// Its sweep values (an object, in the axes' order).
    pub values: serde_json::Map<String, serde_json::Value>,
    /// Its state.
    pub state: JobState,
    /// Why it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<drover_core::Reason>,
    /// Its result (`null` when it gave none).
    pub result: Option<serde_json::Value>,
}

/// `POST /v1/groups/{id}/retry`: which members to run again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRetry {
    /// Only those that failed, timed out or were lost (and what failed because of them), not
    /// the cancelled ones.
    #[serde(default)]
    pub failed: bool,
}

/// `POST /v1/queues/{name}`: the settings to change; what is left out stays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueChange {
    /// Pause (`true`) or resume (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Absent: unchanged; `null`: no limit; a number: the most of its jobs starting or running
    /// at once.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub concurrency: Option<Option<u32>>,
}

/// Tells an absent field (`None`, by `default`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Ok(Some(Option::<u32>::deserialize(d)?))
}

/// Every error answer: `{"error": {"message": "timeout: ...", "field": "timeout"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, and where in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// For people; starts with the field when there is one.
    pub message: String,
    /// The part of the request at fault (`timeout`, `[3].argv`, `id`), where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_queue_change_tells_null_from_absent() {
        let absent: QueueChange = serde_json::from_str(r#"{"paused": true}"#).unwrap();
        assert_eq!(absent.concurrency, None);
        let null: QueueChange = serde_json::from_str(r#"{"concurrency": null}"#).unwrap();
        assert_eq!(null.concurrency, Some(None));
        let two: QueueChange = serde_json::from_str(r#"{"concurrency": 2}"#).unwrap();
        assert_eq!(two.concurrency, Some(Some(2)));
        for change in [absent, null, two] {
            let again: QueueChange =
                serde_json::from_str(&serde_json::to_string(&change).unwrap()).unwrap();
            assert_eq!(again, change);
        }
    }

    #[test]
    fn a_missing_field_is_an_error() {
        assert!(serde_json::from_str::<Submitted>("{}").is_err());
        assert!(serde_json::from_str::<CancelAnswer>(r#"{"id": "x"}"#).is_err());
        assert!(serde_json::from_str::<Idle>(r#"{"idle": "yes"}"#).is_err());
    }
}
