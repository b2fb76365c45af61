//! How attempts and jobs end: completion under the retry budget, giving an unrun claim back,
//! cancelling, settling the dependents of a job that ended, and the live attempts recovery
//! needs. Every write here is fenced by `(job, attempt)`.

use std::time::Duration;

use drover_core::retry;
use drover_core::{AttemptRef, EventKind, JobId, JobState, NodeId, Reason};

use super::*;
use crate::sql::rows::{parse_id, parse_spec, parse_state};
use crate::sql::{SqlStore, Tx, params};
use crate::{AttemptOutcome, CancelOutcome, Completion, LiveAttempt, StoreError, Unrun};

/// Moves a job from `from` to `to`, checked against the transition table and the row's state.
/// A job ended in `ended`: its blocked dependents run (when every job they wait for has
/// succeeded), fail with `dependency_failed`, or are cancelled with it — and so on down the
/// chain, since each of those is a state change that comes back here.
pub(super) fn settle_dependents(
    tx: &mut Tx<'_>,
    id: JobId,
    ended: JobState,
) -> Result<(), StoreError> {
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
                let reason = Reason::DependencyFailed(Some(id));
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
pub(super) fn complete_in(
    tx: &mut Tx<'_>,
    attempt: AttemptRef,
    outcome: AttemptOutcome,
) -> Result<Completion, StoreError> {
    let Some(mut head) = job_head(tx, attempt.job_id)? else {
        return Ok(NO_SUCH_JOB);
    };
    if head.attempt != attempt.attempt || !head.state.has_live_attempt() {
        return Ok(head.stale());
    }
    // The ending of a self-released start whose pid record had not reached the store (it
    // rides with later writes, and may have failed): the start is recorded first.
    if head.state == JobState::Starting && outcome.started {
        claim::start_in(tx, attempt, None, None, None)?;
        head.state = JobState::Running;
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
                if let Some(grown) = spec.grown_memory(outcome.peak_memory_bytes) {
                    spec.memory = Some(grown);
                    let json = to_json(&spec)?;
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
                 cpu_time_ms = ?7, log_cuts = ?10
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
            log_cuts_text(&outcome.log_cuts),
        ],
        |row| row.get(0),
    )?;
    if let Some(result) = &outcome.result {
        tx.conn.execute(
            "UPDATE jobs SET result = ?1 WHERE id = ?2",
            params![result, attempt.job_id.to_string()],
        )?;
    }
    attempt_ended(tx, attempt, next, NodeId(node), &outcome.reason)
}

/// Gives an unrun claim back (see [`Store::give_back`]), inside a change.
pub(super) fn give_back_in(
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

pub(super) async fn complete(
    store: &SqlStore,
    attempt: AttemptRef,
    outcome: AttemptOutcome,
) -> Result<Completion, StoreError> {
    store
        .write(move |tx| complete_in(tx, attempt, outcome))
        .await
}

pub(super) async fn give_back(
    store: &SqlStore,
    attempt: AttemptRef,
    reason: Reason,
    proof: Unrun,
) -> Result<Completion, StoreError> {
    store
        .write(move |tx| give_back_in(tx, attempt, reason, proof))
        .await
}

pub(super) async fn cancel(store: &SqlStore, id: JobId) -> Result<CancelOutcome, StoreError> {
    store
        .write(move |tx| {
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

pub(super) async fn live_attempts(
    store: &SqlStore,
    node: &NodeId,
) -> Result<Vec<LiveAttempt>, StoreError> {
    let node = node.clone();
    store
        .read(move |conn| {
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
                .map(
                    |(job_id, attempt, state, pid, proc_start, cancel_requested, spec)| {
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
                            takes_slot: spec.takes_slot(),
                        })
                    },
                )
                .collect()
        })
        .await
}

/// An attempt's log cuts as stored: a JSON array, or NULL when all output reached its files.
fn log_cuts_text(cuts: &[drover_core::LogCut]) -> Option<String> {
    if cuts.is_empty() {
        return None;
    }
    serde_json::to_string(cuts).ok()
}
