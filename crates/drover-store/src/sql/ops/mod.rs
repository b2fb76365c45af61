//! The [`Store`] operations, written once for SQLite and PostgreSQL against the `Conn` trait.
//! Each write is one closure run by the writer thread inside a group commit; each read runs on a
//! pooled read connection.
//!
//! This file holds the trait implementation, which only hands each call to the file of its area
//! (`jobs`, `claim`, `endings`, `queues`, `events`, `nodes`), and the helpers those share. No
//! operation here opens a transaction of its own or publishes an event: the writer does both.

mod claim;
#[cfg(test)]
pub(crate) use claim::{claim_candidates, queue_candidates, queued_queues};
mod endings;
mod events;
mod groups;
mod jobs;
mod nodes;
mod queues;

use endings::settle_dependents;

use async_trait::async_trait;

use std::time::Duration;

use chrono::{DateTime, Utc};
use drover_core::{
    Admission, AttemptRef, Event, JobId, JobRecord, JobSpec, JobState, NodeId, NodeInfo, NodeLoad,
    NodeRecord, NodeState, Reason,
};
use tokio::sync::broadcast;

use super::rows::{parse_spec, parse_state};
use super::{SqlStore, Tx, params};
use crate::{
    AttemptOutcome, CancelOutcome, Change, ClaimBatch, Completion, JobFilter, LeaseStatus,
    LiveAttempt, QueueInfo, Reaped, StartVerdict, StateCounts, Store, StoreError, Unrun,
};

/// Listing default and cap.
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 10_000;

/// The `LIKE` pattern of an id prefix. Ids are lower-case hex and dashes, so what is kept holds no
/// LIKE wildcard; SQLite's LIKE ignores case and PostgreSQL's does not, hence the lower case.
fn id_prefix_pattern(prefix: &str) -> String {
    let prefix: String = prefix
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_hexdigit() || *c == '-')
        .collect();
    format!("{prefix}%")
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The job's current state, attempt number, attempt budget and cancel flag.
struct JobHead {
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    cancel_requested: bool,
}

/// On PostgreSQL this locks the job's row until commit, so that a decision made on what it read
/// (is this attempt still live? is a cancel pending?) cannot race another node's change.
fn job_head(tx: &Tx<'_>, id: JobId) -> Result<Option<JobHead>, StoreError> {
    let row = tx.conn.query_opt(
        "SELECT state, attempt, max_attempts, cancel_requested FROM jobs WHERE id = ?1 /*lock*/",
        params![id.to_string()],
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<u32>(1)?,
                row.get::<u32>(2)?,
                row.get::<bool>(3)?,
            ))
        },
    )?;
    row.map(|(state, attempt, max_attempts, cancel_requested)| {
        Ok(JobHead {
            state: parse_state(&state)?,
            attempt,
            max_attempts,
            cancel_requested,
        })
    })
    .transpose()
}

/// Applies `change` to each job of `ids` that is in one of `allowed`, and says per job what
/// happened: done (with the state it is in now), not applicable (its state), or not found.
fn change_each(
    tx: &mut Tx<'_>,
    ids: Vec<JobId>,
    allowed: &[JobState],
    mut change: impl FnMut(&mut Tx<'_>, JobId, &JobHead) -> Result<JobState, StoreError>,
) -> Result<Vec<(JobId, Change)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let answer = match job_head(tx, id)? {
            None => Change::NotFound,
            Some(head) if !allowed.contains(&head.state) => Change::NotApplicable(head.state),
            Some(head) => Change::Done(change(tx, id, &head)?),
        };
        out.push((id, answer));
    }
    Ok(out)
}

/// The stored spec of a job.
fn job_spec(tx: &Tx<'_>, id: JobId) -> Result<JobSpec, StoreError> {
    let text: String = tx.conn.query_row(
        "SELECT spec FROM jobs WHERE id = ?1",
        params![id.to_string()],
        |row| row.get(0),
    )?;
    parse_spec(&text)
}

fn set_job_state(
    tx: &mut Tx<'_>,
    id: JobId,
    from: JobState,
    to: JobState,
    reason: Option<&Reason>,
) -> Result<(), StoreError> {
    from.check(to)?;
    let finished_at = to.is_terminal().then_some(tx.now_ms);
    let changed = tx.conn.execute(
        "UPDATE jobs SET state = ?1, updated_at = ?2, finished_at = ?3,
                 reason = COALESCE(?4, reason)
             WHERE id = ?5 AND state = ?6",
        params![
            to.as_str(),
            tx.now_ms,
            finished_at,
            reason.map(|r| r.to_string()),
            id.to_string(),
            from.as_str(),
        ],
    )?;
    if changed == 1 {
        if to.is_terminal() {
            settle_dependents(tx, id, to)?;
        }
        Ok(())
    } else {
        // Another writer changed the job between the read and this write: the caller's view
        // is stale, and the same call will not find it otherwise.
        Err(StoreError::permanent(
            format!("job {id} was not {from} when moving it to {to}"),
            None,
        ))
    }
}

/// The answer to a completion for a job that does not exist.
const NO_SUCH_JOB: Completion = Completion::Stale {
    current_attempt: 0,
    current_state: JobState::Lost,
};

impl JobHead {
    /// The answer to a completion of an attempt that is not this job's live one.
    fn stale(&self) -> Completion {
        Completion::Stale {
            current_attempt: self.attempt,
            current_state: self.state,
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<JobId>, StoreError> {
        jobs::submit(self, specs).await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        jobs::get(self, id).await
    }

    async fn submit_group(
        &self,
        group: crate::NewGroup,
        members: Vec<crate::NewMember>,
    ) -> Result<crate::SubmittedGroup, StoreError> {
        groups::submit_group(self, group, members).await
    }

    async fn group(
        &self,
        id: drover_core::GroupId,
    ) -> Result<Option<drover_core::GroupRecord>, StoreError> {
        groups::group(self, id).await
    }

    async fn groups(
        &self,
        filter: &crate::GroupFilter,
    ) -> Result<Vec<drover_core::GroupRecord>, StoreError> {
        groups::groups(self, filter).await
    }

    async fn members(
        &self,
        id: drover_core::GroupId,
        results: bool,
    ) -> Result<Vec<JobRecord>, StoreError> {
        groups::members(self, id, results).await
    }

    async fn take_notice(&self, notice: crate::Notice) -> Result<bool, StoreError> {
        groups::take_notice(self, notice).await
    }

    async fn wanting_notice(&self, ids: Vec<JobId>) -> Result<Vec<JobId>, StoreError> {
        groups::wanting_notice(self, ids).await
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        jobs::list(self, filter).await
    }

    async fn counts(&self) -> Result<StateCounts, StoreError> {
        jobs::counts(self).await
    }

    async fn promote_due(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        claim::promote_due(self).await
    }

    async fn set_priority(&self, id: JobId, priority: i32) -> Result<Change, StoreError> {
        jobs::set_priority(self, id, priority).await
    }

    async fn edit(
        &self,
        id: JobId,
        spec: JobSpec,
        states: &[JobState],
    ) -> Result<Change, StoreError> {
        jobs::edit(self, id, spec, states.to_vec()).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        queues::dead_letters(self, limit).await
    }

    async fn retry(&self, ids: Option<Vec<JobId>>) -> Result<Vec<(JobId, Change)>, StoreError> {
        queues::retry(self, ids).await
    }

    async fn dismiss(&self, ids: Vec<JobId>) -> Result<Vec<(JobId, Change)>, StoreError> {
        queues::dismiss(self, ids).await
    }

    async fn queue_limits(&self) -> Result<Vec<crate::QueueLimit>, StoreError> {
        queues::queue_limits(self).await
    }

    async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        queues::queues(self).await
    }

    async fn set_queue(
        &self,
        name: String,
        paused: Option<bool>,
        concurrency: Option<Option<u32>>,
    ) -> Result<QueueInfo, StoreError> {
        queues::set_queue(self, name, paused, concurrency).await
    }

    async fn has_active(&self) -> Result<bool, StoreError> {
        jobs::has_active(self).await
    }

    async fn claim_within(
        &self,
        node: &NodeId,
        lease: Duration,
        max: usize,
        walk: Admission,
    ) -> Result<ClaimBatch, StoreError> {
        claim::claim_within(self, node, lease, max, walk).await
    }

    async fn mark_running(
        &self,
        attempt: AttemptRef,
        pid: i32,
        proc_start: Option<u64>,
        started_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<StartVerdict, StoreError> {
        claim::mark_running(self, attempt, pid, proc_start, started_at).await
    }

    async fn renew_leases(
        &self,
        node: &NodeId,
        attempts: &[AttemptRef],
        lease: Duration,
    ) -> Result<Vec<(AttemptRef, LeaseStatus)>, StoreError> {
        claim::renew_leases(self, node, attempts, lease).await
    }

    async fn complete(
        &self,
        attempt: AttemptRef,
        outcome: AttemptOutcome,
    ) -> Result<Completion, StoreError> {
        endings::complete(self, attempt, outcome).await
    }

    async fn record_usage(
        &self,
        node: &NodeId,
        series: Vec<(AttemptRef, drover_core::UsageSeries)>,
    ) -> Result<(), StoreError> {
        claim::record_usage(self, node, series).await
    }

    async fn give_back(
        &self,
        attempt: AttemptRef,
        reason: Reason,
        proof: Unrun,
    ) -> Result<Completion, StoreError> {
        endings::give_back(self, attempt, reason, proof).await
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        endings::cancel(self, id).await
    }

    async fn live_attempts(&self, node: &NodeId) -> Result<Vec<LiveAttempt>, StoreError> {
        endings::live_attempts(self, node).await
    }

    async fn events_since(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        events::events_since(self, after, limit).await
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        events::prune_events(self, before).await
    }

    async fn event_bounds(&self) -> Result<(Option<u64>, u64), StoreError> {
        events::event_bounds(self).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        events::subscribe(self)
    }

    async fn oldest_snapshot(&self) -> Result<Option<Duration>, StoreError> {
        nodes::oldest_snapshot(self).await
    }

    async fn heartbeat(&self, node: &NodeInfo, load: NodeLoad) -> Result<NodeState, StoreError> {
        nodes::heartbeat(self, node, load).await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        nodes::nodes(self).await
    }

    async fn set_draining(
        &self,
        node: &NodeId,
        draining: bool,
    ) -> Result<Option<NodeRecord>, StoreError> {
        nodes::set_draining(self, node, draining).await
    }

    async fn reap(&self, ttl: Duration) -> Result<Reaped, StoreError> {
        nodes::reap(self, ttl).await
    }
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| {
        StoreError::permanent("cannot encode a value for the store", Some(Box::new(e)))
    })
}
