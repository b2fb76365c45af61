//! The [`Store`] operations on SQLite. Each write is one closure run by the writer thread inside
//! a group commit; each read runs on a pooled read connection.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drover_core::node::describe_labels;
use drover_core::retry;
use drover_core::{
    Admission, AttemptRef, Decision, Event, EventKind, JobId, JobRecord, JobSpec, JobState, Labels,
    NodeId, NodeInfo, NodeLoad, NodeRecord, NodeState, Reason, labels_match,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::rows::{event_row, load_jobs, parse_id, parse_spec, parse_state};
use super::{Dialect, SqlStore, Tx, Value, ms_to_time, params};
use crate::{
    ADMISSION_WINDOW, AttemptOutcome, CancelOutcome, Change, Claim, ClaimBatch, Completion,
    JobFilter, LeaseStatus, LiveAttempt, QueueInfo, Reaped, StartVerdict, StateCounts, Store,
    StoreError, Unrun,
};

/// Listing default and cap.
const DEFAULT_LIST_LIMIT: usize = 100;
const MAX_LIST_LIMIT: usize = 10_000;

fn ms(d: Duration) -> i64 {
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

/// Moves a job from `from` to `to`, checked against the transition table and the row's state.
/// A job ended in `ended`: its blocked dependents run (when every job they wait for has
/// succeeded), fail with `dependency_failed`, or are cancelled with it — and so on down the
/// chain, since each of those is a state change that comes back here.
fn settle_dependents(tx: &mut Tx<'_>, id: JobId, ended: JobState) -> Result<(), StoreError> {
    let dependents = tx.conn.query_map(
        "SELECT d.job_id FROM deps d JOIN jobs j ON j.id = d.job_id
             WHERE d.after_id = ?1 AND j.state = 'blocked'",
        params![id.to_string()],
        |row| row.get::<String>(0),
    )?;
    for dependent in dependents {
        let dependent = parse_id(&dependent)?;
        match ended {
            JobState::Succeeded => {
                let pending: i64 = tx.conn.query_row(
                    "SELECT COUNT(*) FROM deps d JOIN jobs j ON j.id = d.after_id
                         WHERE d.job_id = ?1 AND j.state != 'succeeded'",
                    params![dependent.to_string()],
                    |row| row.get(0),
                )?;
                if pending > 0 {
                    continue;
                }
                let spec = job_spec(tx, dependent)?;
                let not_before = spec
                    .at
                    .map(|at| at.timestamp_millis())
                    .filter(|at| *at > tx.now_ms);
                let next = if not_before.is_some() {
                    JobState::Scheduled
                } else {
                    JobState::Queued
                };
                set_job_state(tx, dependent, JobState::Blocked, next, None)?;
                tx.conn.execute(
                    "UPDATE jobs SET not_before = ?1 WHERE id = ?2",
                    params![not_before, dependent.to_string()],
                )?;
                tx.emit(EventKind::Unblocked, dependent, None, next, None, None);
            }
            JobState::Cancelled => {
                let reason = Reason::CancelledByUser;
                set_job_state(
                    tx,
                    dependent,
                    JobState::Blocked,
                    JobState::Cancelled,
                    Some(&reason),
                )?;
                tx.emit(
                    EventKind::Cancelled,
                    dependent,
                    None,
                    JobState::Cancelled,
                    None,
                    Some(&reason),
                );
            }
            _ => {
                let reason = Reason::DependencyFailed;
                set_job_state(
                    tx,
                    dependent,
                    JobState::Blocked,
                    JobState::Failed,
                    Some(&reason),
                )?;
                tx.emit(
                    EventKind::Finished,
                    dependent,
                    None,
                    JobState::Failed,
                    None,
                    Some(&reason),
                );
            }
        }
    }
    Ok(())
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
        Err(StoreError::Database(format!(
            "job {id} was not {from} when moving it to {to}"
        )))
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

/// Emits the event of an attempt that ended with its job in `next`: `requeued` or `scheduled`
/// when the job waits again, else `finished`.
fn attempt_ended(
    tx: &mut Tx<'_>,
    attempt: AttemptRef,
    next: JobState,
    node: NodeId,
    reason: &Reason,
) -> Result<Completion, StoreError> {
    let kind = match next {
        JobState::Queued => EventKind::Requeued,
        JobState::Scheduled => EventKind::Scheduled,
        _ => EventKind::Finished,
    };
    tx.emit(
        kind,
        attempt.job_id,
        Some(attempt.attempt),
        next,
        Some(&node),
        Some(reason),
    );
    Ok(Completion::Recorded { state: next })
}

/// Ends an attempt (see [`Store::complete`]), inside a change.
fn complete_in(
    tx: &mut Tx<'_>,
    attempt: AttemptRef,
    outcome: AttemptOutcome,
) -> Result<Completion, StoreError> {
    let Some(head) = job_head(tx, attempt.job_id)? else {
        return Ok(NO_SUCH_JOB);
    };
    if head.attempt != attempt.attempt || !head.state.has_live_attempt() {
        return Ok(head.stale());
    }
    let mut outcome = outcome;
    // A checkpointed attempt hands the job back to the queue at once, and its attempt does not
    // count against the retry budget. A pending cancel still wins.
    let checkpointed = outcome.reason == Reason::Checkpointed;
    if checkpointed {
        outcome.state = if head.cancel_requested {
            JobState::Cancelled
        } else {
            JobState::Queued
        };
    }
    // The attempt's own outcome must be a legal ending of its current state.
    head.state.check(outcome.state)?;
    if checkpointed && outcome.state == JobState::Queued {
        tx.conn.execute(
            "UPDATE jobs SET max_attempts = max_attempts + 1, not_before = NULL WHERE id = ?1",
            params![attempt.job_id.to_string()],
        )?;
    }
    let unsuccessful = matches!(
        outcome.state,
        JobState::Failed | JobState::TimedOut | JobState::Lost
    );
    // The retry policy lives in the spec; read it only for the endings it concerns.
    let mut retry_wait = Duration::ZERO;
    let retryable =
        unsuccessful && !head.cancel_requested && attempt.attempt < head.max_attempts && {
            let mut spec = job_spec(tx, attempt.job_id)?;
            if let Some(backoff) = spec.backoff {
                retry_wait = backoff.delay(attempt.attempt, fastrand::f64());
            }
            let retried = retry::retried(spec.retry_on.as_deref(), outcome.state, &outcome.reason);
            // Learning memory: the next attempt gets room for what this one needed.
            if retried && outcome.reason == Reason::MemoryLimit {
                if let Some(grown) = spec.learned_memory(outcome.peak_memory_bytes) {
                    spec.memory = Some(grown);
                    let json = serde_json::to_string(&spec)
                        .map_err(|e| StoreError::Database(e.to_string()))?;
                    tx.conn.execute(
                        "UPDATE jobs SET spec = ?1 WHERE id = ?2",
                        params![json, attempt.job_id.to_string()],
                    )?;
                }
            }
            retried
        };
    let next = match (retryable, retry_wait.is_zero()) {
        (false, _) => outcome.state,
        (true, true) => JobState::Queued,
        (true, false) => JobState::Scheduled,
    };
    set_job_state(tx, attempt.job_id, head.state, next, Some(&outcome.reason))?;
    if retryable {
        let not_before =
            (next == JobState::Scheduled).then(|| tx.now_ms.saturating_add(ms(retry_wait)));
        tx.conn.execute(
            "UPDATE jobs SET cancel_requested = 0, not_before = ?1 WHERE id = ?2",
            params![not_before, attempt.job_id.to_string()],
        )?;
    }
    // An outcome its owner kept while no node listened ended before now.
    let finished = outcome
        .ended_at
        .map(|t| t.timestamp_millis())
        .filter(|t| *t < tx.now_ms)
        .unwrap_or(tx.now_ms);
    if finished < tx.now_ms - 1000 && next.is_terminal() {
        tx.conn.execute(
            "UPDATE jobs SET finished_at = ?1 WHERE id = ?2",
            params![finished, attempt.job_id.to_string()],
        )?;
    }
    let node: String = tx.conn.query_row(
        "UPDATE attempts SET state = ?1, finished_at = ?2, lease_expires_at = NULL,
                 exit_code = ?3, signal = ?4, reason = ?5, peak_memory_bytes = ?6,
                 cpu_time_ms = ?7
             WHERE job_id = ?8 AND attempt = ?9
             RETURNING node",
        params![
            outcome.state.as_str(),
            finished,
            outcome.exit_code,
            outcome.signal,
            outcome.reason.to_string(),
            outcome
                .peak_memory_bytes
                .and_then(|v| i64::try_from(v).ok()),
            outcome.cpu_time_ms.and_then(|v| i64::try_from(v).ok()),
            attempt.job_id.to_string(),
            attempt.attempt,
        ],
        |row| row.get(0),
    )?;
    attempt_ended(tx, attempt, next, NodeId(node), &outcome.reason)
}

/// Gives an unrun claim back (see [`Store::unclaim`]), inside a change.
fn unclaim_in(
    tx: &mut Tx<'_>,
    attempt: AttemptRef,
    reason: Reason,
    proof: Unrun,
) -> Result<Completion, StoreError> {
    let Some(head) = job_head(tx, attempt.job_id)? else {
        return Ok(NO_SUCH_JOB);
    };
    let pid: Option<i32> = tx
        .conn
        .query_opt(
            "SELECT pid FROM attempts WHERE job_id = ?1 AND attempt = ?2",
            params![attempt.job_id.to_string(), attempt.attempt],
            |row| row.get(0),
        )?
        .flatten();
    let unrun = match proof {
        Unrun::NoPid => head.state == JobState::Starting && pid.is_none(),
        Unrun::StoppedAtGate => matches!(head.state, JobState::Starting | JobState::Running),
    };
    if head.attempt != attempt.attempt || !unrun {
        return Ok(head.stale());
    }
    // A pending cancel wins: the job ends cancelled rather than going back.
    let next = if head.cancel_requested {
        JobState::Cancelled
    } else {
        JobState::Queued
    };
    let reason = if head.cancel_requested {
        Reason::CancelledByUser
    } else {
        reason
    };
    set_job_state(tx, attempt.job_id, head.state, next, Some(&reason))?;
    tx.conn.execute(
        "UPDATE jobs SET max_attempts = max_attempts + 1, cancel_requested = 0 WHERE id = ?1",
        params![attempt.job_id.to_string()],
    )?;
    let node: String = tx.conn.query_row(
        "UPDATE attempts SET state = ?1, finished_at = ?2, lease_expires_at = NULL,
                 reason = ?3
             WHERE job_id = ?4 AND attempt = ?5
             RETURNING node",
        params![
            JobState::Queued.as_str(),
            tx.now_ms,
            reason.to_string(),
            attempt.job_id.to_string(),
            attempt.attempt
        ],
        |row| row.get(0),
    )?;
    attempt_ended(tx, attempt, next, NodeId(node), &reason)
}

#[async_trait]
impl Store for SqlStore {
    async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<JobId>, StoreError> {
        self.write(move |tx| {
            let mut ids = Vec::with_capacity(specs.len());
            for spec in specs {
                // A key seen before (in an earlier submit or earlier in this batch) names the
                // job already stored: same id, nothing new.
                if let Some(key) = &spec.idempotency_key {
                    let existing: Option<String> = tx
                        .conn
                        .query_opt("SELECT id FROM jobs WHERE idempotency_key = ?1", params![key], |row| row.get(0))?;
                    if let Some(existing) = existing {
                        ids.push(parse_id(&existing)?);
                        continue;
                    }
                }
                let id = JobId::from_uuid(Uuid::now_v7());
                let spec_json = serde_json::to_string(&spec)
                    .map_err(|e| StoreError::Database(e.to_string()))?;
                let not_before = spec
                    .at
                    .map(|at| at.timestamp_millis())
                    .filter(|at| *at > tx.now_ms);
                let index = ids.len();
                let mut waits = false;
                let mut doomed = false;
                for (i, after) in spec.after.iter().enumerate() {
                    let Some(dep) = job_head(tx, *after)? else {
                        return Err(StoreError::Invalid {
                            field: format!("[{index}].after[{i}]"),
                            message: format!("no job {after}"),
                        });
                    };
                    match dep.state {
                        JobState::Succeeded => {}
                        s if s.is_terminal() => doomed = true,
                        _ => waits = true,
                    }
                }
                let state = if doomed {
                    JobState::Failed
                } else if waits {
                    JobState::Blocked
                } else if not_before.is_some() {
                    JobState::Scheduled
                } else {
                    JobState::Queued
                };
                tx.conn
                    .execute("INSERT INTO jobs (id, name, state, priority, spec, max_attempts,
                                           created_at, updated_at, not_before, idempotency_key,
                                           queue)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)", params![
                        id.to_string(),
                        spec.display_name(),
                        state.as_str(),
                        spec.priority,
                        spec_json,
                        spec.retries.saturating_add(1),
                        tx.now_ms,
                        not_before,
                        spec.idempotency_key,
                        spec.queue_name(),
                    ])?;
                for after in &spec.after {
                    tx.conn
                        .execute("INSERT INTO deps (job_id, after_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING", params![id.to_string(), after.to_string()])?;
                }
                if doomed {
                    // A job it needs already ended unsuccessfully: it can never run.
                    let reason = Reason::DependencyFailed;
                    tx.conn
                        .execute("UPDATE jobs SET reason = ?1, finished_at = ?2 WHERE id = ?3", params![reason.to_string(), tx.now_ms, id.to_string()])?;
                    tx.emit(EventKind::Submitted, id, None, state, None, Some(&reason));
                    ids.push(id);
                    continue;
                }
                tx.emit(EventKind::Submitted, id, None, state, None, None);
                if state == JobState::Scheduled {
                    tx.emit(EventKind::Scheduled, id, None, state, None, None);
                }
                ids.push(id);
            }
            Ok(ids)
        })
        .await
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError> {
        self.read(move |conn| {
            Ok(
                load_jobs(conn, "WHERE id = ?", vec![Value::Text(id.to_string())])?
                    .into_iter()
                    .next(),
            )
        })
        .await
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let filter = filter.clone();
        self.read(move |conn| {
            let limit = match filter.limit {
                0 => DEFAULT_LIST_LIMIT,
                n => n.min(MAX_LIST_LIMIT),
            };
            let mut params: Vec<Value> = Vec::new();
            let mut where_sql = String::new();
            let mut clauses = Vec::new();
            if !filter.states.is_empty() {
                clauses.push(format!(
                    "state IN ({})",
                    vec!["?"; filter.states.len()].join(", ")
                ));
                params.extend(
                    filter
                        .states
                        .iter()
                        .map(|s| Value::Text(s.as_str().to_string())),
                );
            }
            if let Some(queue) = &filter.queue {
                clauses.push("queue = ?".to_string());
                params.push(Value::Text(queue.clone()));
            }
            if !clauses.is_empty() {
                where_sql = format!("WHERE {}", clauses.join(" AND "));
            }
            where_sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
            load_jobs(conn, &where_sql, params)
        })
        .await
    }

    async fn counts(&self) -> Result<StateCounts, StoreError> {
        self.read(|conn| {
            let rows = conn.query_map(
                "SELECT state, COUNT(*) FROM jobs GROUP BY state",
                params![],
                |row| Ok((row.get::<String>(0)?, row.get::<i64>(1)?)),
            )?;
            rows.into_iter()
                .map(|(state, n)| Ok((parse_state(&state)?, u64::try_from(n).unwrap_or(0))))
                .collect()
        })
        .await
    }

    async fn promote_due(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
        self.write(move |tx| {
            let due = tx
                .conn
                .query_map("SELECT id FROM jobs INDEXED BY jobs_due
                     WHERE state = 'scheduled' AND not_before <= ?1 ORDER BY not_before /*skip locked*/", params![tx.now_ms], |row| row.get::<String>(0))?;
            for id in &due {
                let id = parse_id(id)?;
                set_job_state(tx, id, JobState::Scheduled, JobState::Queued, None)?;
                tx.conn
                    .execute("UPDATE jobs SET not_before = NULL WHERE id = ?1", params![id.to_string()])?;
                tx.emit(EventKind::Due, id, None, JobState::Queued, None, None);
            }
            let next: Option<i64> = tx
                .conn
                .query_row("SELECT MIN(not_before) FROM jobs INDEXED BY jobs_due WHERE state = 'scheduled'", params![], |row| row.get(0))?;
            Ok((due.len(), next.map(ms_to_time)))
        })
        .await
    }

    async fn set_priority(&self, id: JobId, priority: i32) -> Result<Change, StoreError> {
        self.write(move |tx| {
            let Some(head) = job_head(tx, id)? else {
                return Ok(Change::NotFound);
            };
            if !head.state.is_waiting() {
                return Ok(Change::NotApplicable(head.state));
            }
            // The spec keeps the priority too, so that what `status` shows stays true.
            let mut spec = job_spec(tx, id)?;
            spec.priority = priority;
            let spec_json =
                serde_json::to_string(&spec).map_err(|e| StoreError::Database(e.to_string()))?;
            tx.conn.execute(
                "UPDATE jobs SET priority = ?1, spec = ?2 WHERE id = ?3",
                params![priority, spec_json, id.to_string()],
            )?;
            tx.emit(EventKind::Reprioritized, id, None, head.state, None, None);
            Ok(Change::Done(head.state))
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError> {
        let limit = limit.clamp(1, MAX_LIST_LIMIT);
        self.read(move |conn| {
            load_jobs(
                conn,
                &format!(
                    "WHERE state IN ('failed', 'timed_out', 'lost') AND dismissed = 0
                     ORDER BY id DESC LIMIT {limit}"
                ),
                Vec::new(),
            )
        })
        .await
    }

    async fn retry(&self, ids: Option<Vec<JobId>>) -> Result<Vec<(JobId, Change)>, StoreError> {
        self.write(move |tx| {
            let ids = match ids {
                Some(ids) => ids,
                None => tx.conn.query_map(
                    "SELECT id FROM jobs INDEXED BY jobs_dlq
                         WHERE state IN ('failed', 'timed_out', 'lost') AND dismissed = 0",
                    params![],
                    |row| parse_id(&row.get::<String>(0)?),
                )?,
            };
            let retriable = [
                JobState::Failed,
                JobState::TimedOut,
                JobState::Lost,
                JobState::Cancelled,
            ];
            change_each(tx, ids, &retriable, |tx, id, head| {
                let spec = job_spec(tx, id)?;
                set_job_state(tx, id, head.state, JobState::Queued, None)?;
                tx.conn.execute(
                    "UPDATE jobs SET max_attempts = ?1, dismissed = 0, reason = NULL,
                             finished_at = NULL, not_before = NULL, cancel_requested = 0
                         WHERE id = ?2",
                    params![
                        head.attempt.saturating_add(spec.retries).saturating_add(1),
                        id.to_string()
                    ],
                )?;
                tx.emit(EventKind::Retried, id, None, JobState::Queued, None, None);
                Ok(JobState::Queued)
            })
        })
        .await
    }

    async fn dismiss(&self, ids: Vec<JobId>) -> Result<Vec<(JobId, Change)>, StoreError> {
        self.write(move |tx| {
            let dead = [JobState::Failed, JobState::TimedOut, JobState::Lost];
            change_each(tx, ids, &dead, |tx, id, head| {
                tx.conn.execute(
                    "UPDATE jobs SET dismissed = 1 WHERE id = ?1",
                    params![id.to_string()],
                )?;
                tx.emit(EventKind::Dismissed, id, None, head.state, None, None);
                Ok(head.state)
            })
        })
        .await
    }

    async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        self.read(|conn| {
            let mut out: std::collections::BTreeMap<String, QueueInfo> = Default::default();
            let blank = |name: &str| QueueInfo {
                name: name.to_string(),
                paused: false,
                concurrency: None,
                queued: 0,
                waiting: 0,
                running: 0,
            };
            let rows = conn.query_map(
                "SELECT name, paused, concurrency FROM queues",
                params![],
                |row| {
                    Ok((
                        row.get::<String>(0)?,
                        row.get::<bool>(1)?,
                        row.get::<Option<u32>>(2)?,
                    ))
                },
            )?;
            for (name, paused, concurrency) in rows {
                let mut info = blank(&name);
                info.paused = paused;
                info.concurrency = concurrency;
                out.insert(name, info);
            }
            let rows = conn.query_map(
                "SELECT queue, state, COUNT(*) FROM jobs
                 WHERE state IN ('blocked', 'scheduled', 'queued', 'starting', 'running')
                 GROUP BY queue, state",
                params![],
                |row| {
                    Ok((
                        row.get::<String>(0)?,
                        row.get::<String>(1)?,
                        row.get::<u64>(2)?,
                    ))
                },
            )?;
            for (name, state, count) in rows {
                let info = out.entry(name.clone()).or_insert_with(|| blank(&name));
                match state.as_str() {
                    "queued" => info.queued += count,
                    "starting" | "running" => info.running += count,
                    _ => info.waiting += count,
                }
            }
            Ok(out.into_values().collect())
        })
        .await
    }

    async fn set_queue(
        &self,
        name: String,
        paused: Option<bool>,
        concurrency: Option<Option<u32>>,
    ) -> Result<QueueInfo, StoreError> {
        if !drover_core::valid_queue_name(&name) {
            return Err(StoreError::Invalid {
                field: "name".into(),
                message: format!("`{name}` is not a queue name (letters, digits, -, _ and .)"),
            });
        }
        let key = name.clone();
        self.write(move |tx| {
            tx.conn.execute(
                "INSERT INTO queues (name) VALUES (?1) ON CONFLICT DO NOTHING",
                params![key],
            )?;
            if let Some(paused) = paused {
                tx.conn.execute(
                    "UPDATE queues SET paused = ?1 WHERE name = ?2",
                    params![paused, key],
                )?;
            }
            if let Some(concurrency) = concurrency {
                tx.conn.execute(
                    "UPDATE queues SET concurrency = ?1 WHERE name = ?2",
                    params![concurrency, key],
                )?;
            }
            Ok(())
        })
        .await?;
        let all = self.queues().await?;
        all.into_iter()
            .find(|q| q.name == name)
            .ok_or_else(|| StoreError::Corrupt(format!("queue {name} vanished")))
    }

    async fn has_active(&self) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs
                     WHERE state IN ('blocked', 'scheduled', 'queued', 'starting', 'running'))",
                params![],
                |row| row.get(0),
            )
        })
        .await
    }

    async fn claim_within(
        &self,
        node: &NodeId,
        lease: Duration,
        max: usize,
        mut admission: Admission,
    ) -> Result<ClaimBatch, StoreError> {
        let node = node.clone();
        self.write(move |tx| {
            // A draining node claims nothing; a node with no row yet (before its first
            // heartbeat) has no labels.
            let me = tx.conn.query_opt(
                "SELECT state, labels FROM nodes WHERE id = ?1",
                params![node.0],
                |row| Ok((row.get::<String>(0)?, row.get::<String>(1)?)),
            )?;
            let labels: Labels = match me {
                Some((state, _)) if state == NodeState::Draining.as_str() => {
                    return Ok(ClaimBatch::default());
                }
                Some((_, labels)) => serde_json::from_str(&labels)
                    .map_err(|e| StoreError::Corrupt(format!("node labels: {e}")))?,
                None => Labels::new(),
            };
            let limit = i64::try_from(max.saturating_add(ADMISSION_WINDOW)).unwrap_or(i64::MAX);
            // INDEXED BY: without statistics SQLite may pick `jobs_state` and sort every queued
            // job per claim; this reads the claim index from its start. The candidates are not
            // locked: on PostgreSQL only the ones this claim takes are (below), so that a job it
            // passes over (labels, resources, a full queue) stays claimable by other nodes.
            let next = tx
                .conn
                .query_map("SELECT id, spec, attempt, updated_at, queue FROM jobs INDEXED BY jobs_claim
                     WHERE state = 'queued'
                       AND queue NOT IN (SELECT name FROM queues WHERE paused = 1)
                     ORDER BY priority DESC, id LIMIT ?1", params![limit], |row| {
                    Ok((
                        row.get::<String>(0)?,
                        row.get::<String>(1)?,
                        row.get::<u32>(2)?,
                        row.get::<i64>(3)?,
                        row.get::<String>(4)?,
                    ))
                })?;
            // Room left in each queue that has a concurrency limit, counted once per claim. The
            // rows are locked (in name order) so that two nodes cannot both fill the last place.
            let limits = tx
                .conn
                .query_map("SELECT name, concurrency FROM queues WHERE concurrency IS NOT NULL ORDER BY name /*lock*/", params![], |row| {
                    Ok((row.get::<String>(0)?, row.get::<i64>(1)?))
                })?;
            let mut room: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
            for (queue, limit) in limits {
                let live: i64 = tx
                    .conn
                    .query_row("SELECT COUNT(*) FROM jobs INDEXED BY jobs_queue_live
                         WHERE queue = ?1 AND state IN ('starting', 'running')", params![queue], |row| row.get(0))?;
                room.insert(queue, limit - live);
            }
            let lease_expires = tx.now_ms.saturating_add(ms(lease));
            let mut claims = Vec::with_capacity(max.min(next.len()));
            let mut waiting = Vec::new();
            for (id, spec, previous, queued_at, queue) in next {
                if claims.len() >= max {
                    break;
                }
                if room.get(&queue).is_some_and(|left| *left <= 0) {
                    continue;
                }
                let id = parse_id(&id)?;
                let spec = parse_spec(&spec)?;
                if !labels_match(&spec.require, &labels) {
                    waiting.push((
                        id,
                        format!("needs a node with {}", describe_labels(&spec.require)),
                    ));
                    continue;
                }
                let queued_for =
                    Duration::from_millis(u64::try_from(tx.now_ms - queued_at).unwrap_or(0));
                match admission.consider(&spec.resources(), queued_for) {
                    Decision::Claim => {}
                    Decision::Skip(why) => {
                        waiting.push((id, why));
                        continue;
                    }
                    Decision::Reserve(why) => {
                        waiting.push((id, why));
                        break;
                    }
                }
                // Lock it only now that it is taken: another node may be claiming it right now (or
                // has), so skip it rather than wait. (Its resources stay counted for this walk:
                // at worst this claim takes fewer, never too many.)
                if tx.conn.dialect() == Dialect::Postgres
                    && tx
                        .conn
                        .query_opt(
                            "SELECT attempt FROM jobs WHERE id = ?1 AND state = 'queued'
                             /*skip locked*/",
                            params![id.to_string()],
                            |row| row.get::<u32>(0),
                        )?
                        .is_none_or(|attempt| attempt != previous)
                {
                    continue;
                }
                if let Some(left) = room.get_mut(&queue) {
                    *left -= 1;
                }
                let attempt = previous + 1;
                set_job_state(tx, id, JobState::Queued, JobState::Starting, None)?;
                tx.conn
                    .execute("UPDATE jobs SET attempt = ?1, cancel_requested = 0 WHERE id = ?2", params![attempt, id.to_string()])?;
                tx.conn
                    .execute("INSERT INTO attempts (job_id, attempt, node, state, claimed_at,
                                               lease_expires_at, memory_limit)
                         VALUES (?1, ?2, ?3, 'starting', ?4, ?5, ?6)", params![
                        id.to_string(),
                        attempt,
                        node.0,
                        tx.now_ms,
                        lease_expires,
                        spec.memory.and_then(|m| i64::try_from(m.bytes()).ok()),
                    ])?;
                tx.emit(
                    EventKind::Claimed,
                    id,
                    Some(attempt),
                    JobState::Starting,
                    Some(&node),
                    None,
                );
                claims.push(Claim {
                    attempt: AttemptRef {
                        job_id: id,
                        attempt,
                    },
                    spec,
                    lease_expires_at: ms_to_time(lease_expires),
                });
            }
            Ok(ClaimBatch { claims, waiting })
        })
        .await
    }

    async fn mark_running(
        &self,
        attempt: AttemptRef,
        pid: i32,
        proc_start: Option<u64>,
    ) -> Result<StartVerdict, StoreError> {
        self.write(move |tx| {
            let Some(head) = job_head(tx, attempt.job_id)? else {
                return Ok(StartVerdict::Stale);
            };
            if head.attempt != attempt.attempt || head.state != JobState::Starting {
                return Ok(StartVerdict::Stale);
            }
            if head.cancel_requested {
                return Ok(StartVerdict::Cancelled);
            }
            set_job_state(
                tx,
                attempt.job_id,
                JobState::Starting,
                JobState::Running,
                None,
            )?;
            let proc_start = proc_start.and_then(|s| i64::try_from(s).ok());
            tx.conn.execute(
                "UPDATE attempts SET state = 'running', pid = ?1, proc_start = ?2, started_at = ?3
                     WHERE job_id = ?4 AND attempt = ?5",
                params![
                    pid,
                    proc_start,
                    tx.now_ms,
                    attempt.job_id.to_string(),
                    attempt.attempt
                ],
            )?;
            let node: Option<String> = tx.conn.query_opt(
                "SELECT node FROM attempts WHERE job_id = ?1 AND attempt = ?2",
                params![attempt.job_id.to_string(), attempt.attempt],
                |r| r.get(0),
            )?;
            tx.emit(
                EventKind::Started,
                attempt.job_id,
                Some(attempt.attempt),
                JobState::Running,
                node.map(NodeId).as_ref(),
                None,
            );
            Ok(StartVerdict::Run)
        })
        .await
    }

    async fn renew_leases(
        &self,
        node: &NodeId,
        attempts: &[AttemptRef],
        lease: Duration,
    ) -> Result<Vec<(AttemptRef, LeaseStatus)>, StoreError> {
        let node = node.clone();
        let attempts = attempts.to_vec();
        self.write(move |tx| {
            let expires = tx.now_ms.saturating_add(ms(lease));
            let mut out = Vec::with_capacity(attempts.len());
            for attempt in attempts {
                let live = tx.conn.query_opt(
                    "SELECT j.cancel_requested FROM jobs j
                         JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                         WHERE j.id = ?1 AND j.attempt = ?2 AND a.node = ?3
                           AND j.state IN ('starting', 'running')",
                    params![attempt.job_id.to_string(), attempt.attempt, node.0],
                    |row| row.get::<bool>(0),
                )?;
                let status = match live {
                    Some(cancel_requested) => {
                        tx.conn.execute(
                            "UPDATE attempts SET lease_expires_at = ?1
                                 WHERE job_id = ?2 AND attempt = ?3",
                            params![expires, attempt.job_id.to_string(), attempt.attempt],
                        )?;
                        LeaseStatus::Held { cancel_requested }
                    }
                    None => LeaseStatus::Lost,
                };
                out.push((attempt, status));
            }
            Ok(out)
        })
        .await
    }

    async fn complete(
        &self,
        attempt: AttemptRef,
        outcome: AttemptOutcome,
    ) -> Result<Completion, StoreError> {
        self.write(move |tx| complete_in(tx, attempt, outcome))
            .await
    }

    async fn unclaim(
        &self,
        attempt: AttemptRef,
        reason: Reason,
        proof: Unrun,
    ) -> Result<Completion, StoreError> {
        self.write(move |tx| unclaim_in(tx, attempt, reason, proof))
            .await
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError> {
        self.write(move |tx| {
            let Some(head) = job_head(tx, id)? else {
                return Ok(CancelOutcome::NotFound);
            };
            if head.state.is_terminal() {
                return Ok(CancelOutcome::AlreadyEnded(head.state));
            }
            let reason = Reason::CancelledByUser;
            if head.state.is_waiting() {
                set_job_state(tx, id, head.state, JobState::Cancelled, Some(&reason))?;
                tx.emit(
                    EventKind::Cancelled,
                    id,
                    None,
                    JobState::Cancelled,
                    None,
                    Some(&reason),
                );
                return Ok(CancelOutcome::Cancelled);
            }
            let node: String = tx.conn.query_row(
                "SELECT node FROM attempts WHERE job_id = ?1 AND attempt = ?2",
                params![id.to_string(), head.attempt],
                |row| row.get(0),
            )?;
            let node = NodeId(node);
            if !head.cancel_requested {
                tx.conn.execute(
                    "UPDATE jobs SET cancel_requested = 1, updated_at = ?1 WHERE id = ?2",
                    params![tx.now_ms, id.to_string()],
                )?;
                tx.emit(
                    EventKind::CancelRequested,
                    id,
                    Some(head.attempt),
                    head.state,
                    Some(&node),
                    Some(&reason),
                );
            }
            Ok(CancelOutcome::Requested {
                attempt: AttemptRef {
                    job_id: id,
                    attempt: head.attempt,
                },
                node,
            })
        })
        .await
    }

    async fn live_attempts(&self, node: &NodeId) -> Result<Vec<LiveAttempt>, StoreError> {
        let node = node.clone();
        self.read(move |conn| {
            let rows = conn.query_map(
                "SELECT a.job_id, a.attempt, a.state, a.pid, a.proc_start, j.cancel_requested, j.spec
                 FROM attempts a JOIN jobs j ON j.id = a.job_id AND j.attempt = a.attempt
                 WHERE a.node = ?1 AND a.state IN ('starting', 'running')
                 ORDER BY a.job_id",
                params![node.0],
                |row| {
                    Ok((
                        row.get::<String>(0)?,
                        row.get::<u32>(1)?,
                        row.get::<String>(2)?,
                        row.get::<Option<i32>>(3)?,
                        row.get::<Option<i64>>(4)?,
                        row.get::<bool>(5)?,
                        row.get::<String>(6)?,
                    ))
                })?;
            rows.into_iter()
                .map(|(job_id, attempt, state, pid, proc_start, cancel_requested, spec)| {
                    let spec = parse_spec(&spec)?;
                    Ok(LiveAttempt {
                        attempt: AttemptRef {
                            job_id: parse_id(&job_id)?,
                            attempt,
                        },
                        state: parse_state(&state)?,
                        pid,
                        proc_start: proc_start.and_then(|s| u64::try_from(s).ok()),
                        cancel_requested,
                        grace: spec.grace.get(),
                        resources: spec.resources(),
                    })
                })
                .collect()
        })
        .await
    }

    async fn events_since(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| {
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            conn.query_map(
                "SELECT seq, at, kind, job_id, attempt, state, node, reason FROM events
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                params![after, limit],
                event_row,
            )
        })
        .await
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = before.timestamp_millis();
        self.write(move |tx| {
            let gone = tx
                .conn
                .execute("DELETE FROM events WHERE at < ?1", params![before])?;
            Ok(gone)
        })
        .await
    }

    async fn event_bounds(&self) -> Result<(Option<u64>, u64), StoreError> {
        self.read(|conn| {
            let oldest: Option<i64> =
                conn.query_row("SELECT MIN(seq) FROM events", params![], |row| row.get(0))?;
            let newest: Option<i64> = match conn.dialect() {
                // AUTOINCREMENT keeps the highest seq ever handed out, even after pruning.
                Dialect::Sqlite => conn
                    .query_opt(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                        params![],
                        |row| row.get(0),
                    )?
                    .flatten(),
                Dialect::Postgres => {
                    conn.query_row("SELECT last FROM event_seq", params![], |row| row.get(0))?
                }
            };
            Ok((
                oldest.and_then(|s| u64::try_from(s).ok()),
                newest.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            ))
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.publisher().subscribe()
    }

    async fn heartbeat(&self, node: &NodeInfo, load: NodeLoad) -> Result<NodeState, StoreError> {
        let node = node.clone();
        self.write(move |tx| {
            let state: String = tx.conn.query_row(
                "INSERT INTO nodes (id, hostname, labels, url, capacity, slots, load, state,
                                    started_at, heartbeat_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'alive', ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET
                     hostname = excluded.hostname, labels = excluded.labels, url = excluded.url,
                     capacity = excluded.capacity, slots = excluded.slots, load = excluded.load,
                     started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                     state = CASE WHEN nodes.state = 'draining' THEN 'draining' ELSE 'alive' END
                 RETURNING state",
                params![
                    node.id.0,
                    node.hostname,
                    to_json(&node.labels)?,
                    node.url,
                    to_json(&node.capacity)?,
                    node.slots,
                    to_json(&load)?,
                    node.started_at.timestamp_millis(),
                    tx.now_ms,
                ],
                |row| row.get(0),
            )?;
            parse_node_state(&state)
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read(|conn| {
            conn.query_map(
                &format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"),
                params![],
                node_row,
            )
        })
        .await
    }

    async fn set_draining(
        &self,
        node: &NodeId,
        draining: bool,
    ) -> Result<Option<NodeRecord>, StoreError> {
        let node = node.clone();
        self.write(move |tx| {
            // Draining applies in any state, so that a dead node comes back draining; undraining
            // makes only a draining node alive.
            tx.conn.query_opt(
                &format!(
                    "UPDATE nodes SET state = CASE
                         WHEN ?2 = 1 THEN 'draining'
                         WHEN state = 'draining' THEN 'alive'
                         ELSE state END
                     WHERE id = ?1
                     RETURNING {NODE_COLUMNS}"
                ),
                params![node.0, draining],
                node_row,
            )
        })
        .await
    }

    async fn reap(&self, ttl: Duration) -> Result<Reaped, StoreError> {
        self.write(move |tx| {
            if tx.conn.dialect() == Dialect::Postgres {
                let ours: bool = tx.conn.query_row(
                    "SELECT pg_try_advisory_xact_lock(?1)",
                    params![REAPER_LOCK],
                    |row| row.get(0),
                )?;
                if !ours {
                    return Ok(Reaped {
                        skipped: true,
                        ..Reaped::default()
                    });
                }
            }
            let dead_nodes = tx.conn.query_map(
                "UPDATE nodes SET state = 'dead' WHERE state != 'dead' AND heartbeat_at < ?1
                 RETURNING id",
                params![tx.now_ms.saturating_sub(ms(ttl))],
                |row| Ok(NodeId(row.get(0)?)),
            )?;
            let expired = tx.conn.query_map(
                "SELECT a.job_id, a.attempt, a.pid FROM attempts a
                 JOIN jobs j ON j.id = a.job_id AND j.attempt = a.attempt
                 WHERE a.state IN ('starting', 'running') AND a.lease_expires_at < ?1
                 ORDER BY a.job_id LIMIT 1000",
                params![tx.now_ms],
                |row| {
                    Ok((
                        AttemptRef {
                            job_id: parse_id(&row.get::<String>(0)?)?,
                            attempt: row.get(1)?,
                        },
                        row.get::<Option<i64>>(2)?,
                    ))
                },
            )?;
            let mut attempts = Vec::with_capacity(expired.len());
            for (attempt, pid) in expired {
                // No pid on record: the gate never opened, so it never ran.
                let done = match pid {
                    None => unclaim_in(tx, attempt, Reason::NodeLost, Unrun::NoPid)?,
                    Some(_) => complete_in(
                        tx,
                        attempt,
                        AttemptOutcome::bare(JobState::Lost, Reason::NodeLost),
                    )?,
                };
                if let Completion::Recorded { state } = done {
                    attempts.push((attempt, state));
                }
            }
            Ok(Reaped {
                dead_nodes,
                attempts,
                skipped: false,
            })
        })
        .await
    }
}

/// The advisory lock key that makes one node at a time the reaper ("reaper" in ASCII).
const REAPER_LOCK: i64 = 0x7265_6170_6572;

const NODE_COLUMNS: &str =
    "id, hostname, labels, url, capacity, slots, load, state, started_at, heartbeat_at";

fn parse_node_state(text: &str) -> Result<NodeState, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("node state `{text}`")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn node_row(row: &super::Row) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        info: NodeInfo {
            id: NodeId(row.get(0)?),
            hostname: row.get(1)?,
            labels: from_json("node labels", &row.get::<String>(2)?)?,
            url: row.get(3)?,
            capacity: from_json("node capacity", &row.get::<String>(4)?)?,
            slots: row.get(5)?,
            started_at: ms_to_time(row.get(8)?),
        },
        load: from_json("node load", &row.get::<String>(6)?)?,
        state: parse_node_state(&row.get::<String>(7)?)?,
        heartbeat_at: ms_to_time(row.get(9)?),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(e.to_string()))
}
