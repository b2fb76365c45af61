//! Queues and the dead-letter queue: queue settings and load, listing, retrying and dismissing
//! dead letters. It never touches a live attempt.

use drover_core::{EventKind, JobId, JobRecord, JobState};

use super::*;
use crate::sql::rows::{load_jobs, parse_id};
use crate::sql::{SqlStore, params};
use crate::{Change, QueueInfo, QueueLimit, Store, StoreError};

pub(super) async fn dead_letters(
    store: &SqlStore,
    limit: usize,
) -> Result<Vec<JobRecord>, StoreError> {
    let limit = limit.clamp(1, MAX_LIST_LIMIT);
    store
        .read(move |conn| {
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

pub(super) async fn retry(
    store: &SqlStore,
    ids: Option<Vec<JobId>>,
) -> Result<Vec<(JobId, Change)>, StoreError> {
    store
        .write(move |tx| {
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
                // Its dependencies as they are now (earlier jobs of this retry already run
                // again): all succeeded, it is queued; some will run, it waits for them; one
                // ended unsuccessfully for good, it cannot run and stays as it is.
                let (pending, doomed): (i64, i64) = tx.conn.query_row(
                    "SELECT
                         COALESCE(SUM(CASE WHEN j.state IN ('blocked', 'scheduled', 'queued', 'starting', 'running') THEN 1 ELSE 0 END), 0),
                         COALESCE(SUM(CASE WHEN j.state IN ('failed', 'timed_out', 'lost', 'cancelled') THEN 1 ELSE 0 END), 0)
                     FROM deps d JOIN jobs j ON j.id = d.after_id WHERE d.job_id = ?1",
                    params![id.to_string()],
                    |row| Ok((row.get::<i64>(0)?, row.get::<i64>(1)?)),
                )?;
                if doomed > 0 {
                    return Ok(head.state);
                }
                let next = if pending > 0 {
                    JobState::Blocked
                } else {
                    JobState::Queued
                };
                let spec = job_spec(tx, id)?;
                set_job_state(tx, id, head.state, next, None)?;
                tx.conn.execute(
                    "UPDATE jobs SET max_attempts = ?1, dismissed = 0, reason = NULL,
                         finished_at = NULL, not_before = NULL, cancel_requested = 0,
                         notified = 0
                     WHERE id = ?2",
                    params![
                        head.attempt.saturating_add(spec.retries).saturating_add(1),
                        id.to_string()
                    ],
                )?;
                // Its group will end again, and say so again.
                tx.conn.execute(
                    "UPDATE groups SET notified = 0
                     WHERE id = (SELECT group_id FROM jobs WHERE id = ?1)",
                    params![id.to_string()],
                )?;
                tx.emit(EventKind::Retried, id, None, next, None, None);
                Ok(next)
            })
        })
        .await
}

pub(super) async fn dismiss(
    store: &SqlStore,
    ids: Vec<JobId>,
) -> Result<Vec<(JobId, Change)>, StoreError> {
    store
        .write(move |tx| {
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

pub(super) async fn queues(store: &SqlStore) -> Result<Vec<QueueInfo>, StoreError> {
    store
        .read(|conn| {
            let mut out: std::collections::BTreeMap<String, QueueInfo> = Default::default();
            let blank = |name: &str| QueueInfo {
                name: name.to_string(),
                paused: false,
                concurrency: None,
                queued: 0,
                deferred: 0,
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
                    _ => info.deferred += count,
                }
            }
            Ok(out.into_values().collect())
        })
        .await
}

pub(super) async fn queue_limits(store: &SqlStore) -> Result<Vec<QueueLimit>, StoreError> {
    store
        .read(|conn| {
            // The count reads the partial index of live attempts (`jobs_queue_live`).
            conn.query_map(
                "SELECT q.name, q.paused, q.concurrency,
                        (SELECT COUNT(*) FROM jobs j
                          WHERE j.queue = q.name AND j.state IN ('starting', 'running'))
                   FROM queues q",
                params![],
                |row| {
                    Ok(QueueLimit {
                        name: row.get::<String>(0)?,
                        paused: row.get::<bool>(1)?,
                        concurrency: row.get::<Option<u32>>(2)?,
                        running: row.get::<u64>(3)?,
                    })
                },
            )
        })
        .await
}

pub(super) async fn set_queue(
    store: &SqlStore,
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
    store
        .write(move |tx| {
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
    let all = store.queues().await?;
    all.into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| StoreError::Corrupt(format!("queue {name} vanished")))
}
