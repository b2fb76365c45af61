//! Submitting jobs and reading them: submit (with dependencies and idempotency keys), get,
//! list, counts, the idle probe, and priority changes. It never ends an attempt.

use drover_core::{EventKind, JobId, JobRecord, JobSpec, JobState, Reason};
use uuid::Uuid;

use super::*;
use crate::sql::rows::{load_jobs, load_jobs_with_results, parse_id, parse_state};
use crate::sql::{Dialect, SqlStore, Value, params};
use crate::{Change, JobFilter, StateCounts, StoreError};

pub(super) async fn submit(
    store: &SqlStore,
    specs: Vec<JobSpec>,
) -> Result<Vec<JobId>, StoreError> {
    store
        .write(move |tx| {
            let mut ids = Vec::with_capacity(specs.len());
            for spec in specs {
                let index = ids.len();
                ids.push(insert_job(tx, &spec, index, None)?);
            }
            Ok(ids)
        })
        .await
}

/// Where a job being stored sits in a group, and the number it takes (SQLite: the group's
/// numbers are handed out by the caller; PostgreSQL: from the sequence).
pub(super) struct InGroup<'a> {
    pub group: &'a str,
    pub member: &'a str,
    pub seq: Option<i64>,
}

/// Stores one job of a submit (element `index` of the request, for errors) and emits its
/// events; a key seen before (earlier, or earlier in this change) names the job already
/// stored, and nothing new is made.
pub(super) fn insert_job(
    tx: &mut Tx<'_>,
    spec: &JobSpec,
    index: usize,
    group: Option<InGroup<'_>>,
) -> Result<JobId, StoreError> {
    if let Some(key) = &spec.idempotency_key {
        let existing: Option<String> = tx.conn.query_opt(
            "SELECT id FROM jobs WHERE idempotency_key = ?1",
            params![key],
            |row| row.get(0),
        )?;
        if let Some(existing) = existing {
            return parse_id(&existing);
        }
    }
    let id = JobId::from_uuid(Uuid::now_v7());
    let spec_json = to_json(spec)?;
    let not_before = spec
        .at
        .map(|at| at.timestamp_millis())
        .filter(|at| *at > tx.now_ms);
    let mut waits = false;
    // The first job it needs that already ended unsuccessfully, if any.
    let mut doomed = None;
    for (i, after) in spec.after.iter().enumerate() {
        let Some(dep) = job_head(tx, *after)? else {
            return Err(StoreError::Invalid {
                field: format!("[{index}].after[{i}]"),
                message: format!("no job {after}"),
            });
        };
        match dep.state {
            JobState::Succeeded => {}
            s if s.is_terminal() => {
                doomed.get_or_insert(*after);
            }
            _ => waits = true,
        }
    }
    let state = if doomed.is_some() {
        JobState::Failed
    } else if waits {
        JobState::Blocked
    } else if not_before.is_some() {
        JobState::Scheduled
    } else {
        JobState::Queued
    };
    let (group_id, member, seq) = match &group {
        Some(g) => (Some(g.group), Some(g.member), g.seq),
        None => (None, None, None),
    };
    // PostgreSQL numbers jobs with a sequence (a column default); SQLite's one writer takes the
    // next number itself, through the unique index, unless a group handed it one.
    let insert = match (tx.conn.dialect(), seq) {
        (Dialect::Sqlite, None) => {
            "INSERT INTO jobs (id, name, state, priority, spec, max_attempts,
                               created_at, updated_at, not_before, idempotency_key,
                               queue, group_id, member, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12,
                     (SELECT COALESCE(MAX(m), 0) + 1 FROM
                        (SELECT MAX(seq) AS m FROM jobs UNION ALL SELECT MAX(seq) FROM groups)))"
        }
        (Dialect::Sqlite, Some(_)) => {
            "INSERT INTO jobs (id, name, state, priority, spec, max_attempts,
                               created_at, updated_at, not_before, idempotency_key,
                               queue, group_id, member, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        }
        (Dialect::Postgres, _) => {
            "INSERT INTO jobs (id, name, state, priority, spec, max_attempts,
                               created_at, updated_at, not_before, idempotency_key,
                               queue, group_id, member)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12)"
        }
    };
    let mut values = params![
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
        group_id,
        member,
    ]
    .to_vec();
    if let (Dialect::Sqlite, Some(seq)) = (tx.conn.dialect(), seq) {
        values.push(Value::Int(seq));
    }
    tx.conn.execute(insert, &values)?;
    for after in &spec.after {
        tx.conn.execute(
            "INSERT INTO deps (job_id, after_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![id.to_string(), after.to_string()],
        )?;
    }
    if let Some(failed) = doomed {
        // A job it needs already ended unsuccessfully: it can never run.
        let reason = Reason::DependencyFailed(Some(failed));
        tx.conn.execute(
            "UPDATE jobs SET reason = ?1, finished_at = ?2 WHERE id = ?3",
            params![reason.to_string(), tx.now_ms, id.to_string()],
        )?;
        tx.emit(EventKind::Submitted, id, None, state, None, Some(&reason));
        return Ok(id);
    }
    tx.emit(EventKind::Submitted, id, None, state, None, None);
    if state == JobState::Scheduled {
        tx.emit(EventKind::Scheduled, id, None, state, None, None);
    }
    Ok(id)
}

pub(super) async fn get(store: &SqlStore, id: JobId) -> Result<Option<JobRecord>, StoreError> {
    store
        .read(move |conn| {
            Ok(
                load_jobs_with_results(conn, "WHERE id = ?", vec![Value::Text(id.to_string())])?
                    .into_iter()
                    .next(),
            )
        })
        .await
}

pub(super) async fn list(
    store: &SqlStore,
    filter: &JobFilter,
) -> Result<Vec<JobRecord>, StoreError> {
    let filter = filter.clone();
    store
        .read(move |conn| {
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
            if let Some(name) = &filter.name {
                clauses.push("name = ?".to_string());
                params.push(Value::Text(name.clone()));
            }
            if let Some(number) = filter.number {
                clauses.push("seq = ?".to_string());
                params.push(Value::Int(i64::try_from(number).unwrap_or(i64::MAX)));
            }
            if let Some(prefix) = &filter.id_prefix {
                clauses.push("id LIKE ?".to_string());
                params.push(Value::Text(super::id_prefix_pattern(prefix)));
            }
            if let Some(before) = filter.before {
                clauses.push("id < ?".to_string());
                params.push(Value::Text(before.to_string()));
            }
            if let Some(since) = filter.since {
                clauses.push("created_at >= ?".to_string());
                params.push(Value::Int(since.timestamp_millis()));
            }
            if !clauses.is_empty() {
                where_sql = format!("WHERE {}", clauses.join(" AND "));
            }
            where_sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
            load_jobs(conn, &where_sql, params)
        })
        .await
}

pub(super) async fn counts(store: &SqlStore) -> Result<StateCounts, StoreError> {
    store
        .read(|conn| {
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

pub(super) async fn set_priority(
    store: &SqlStore,
    id: JobId,
    priority: i32,
) -> Result<Change, StoreError> {
    store
        .write(move |tx| {
            let Some(head) = job_head(tx, id)? else {
                return Ok(Change::NotFound);
            };
            if !head.state.is_waiting() {
                return Ok(Change::NotApplicable(head.state));
            }
            // The spec keeps the priority too, so that what `status` shows stays true.
            let mut spec = job_spec(tx, id)?;
            spec.priority = priority;
            let spec_json = to_json(&spec)?;
            tx.conn.execute(
                "UPDATE jobs SET priority = ?1, spec = ?2 WHERE id = ?3",
                params![priority, spec_json, id.to_string()],
            )?;
            tx.emit(EventKind::Reprioritized, id, None, head.state, None, None);
            Ok(Change::Done(head.state))
        })
        .await
}

pub(super) async fn edit(
    store: &SqlStore,
    id: JobId,
    spec: JobSpec,
    states: Vec<JobState>,
) -> Result<Change, StoreError> {
    store
        .write(move |tx| {
            let Some(head) = job_head(tx, id)? else {
                return Ok(Change::NotFound);
            };
            if !states.contains(&head.state) {
                return Ok(Change::NotApplicable(head.state));
            }
            let old = job_spec(tx, id)?;
            let fixed = [
                ("after", old.after == spec.after),
                ("at", old.at == spec.at),
                (
                    "idempotency_key",
                    old.idempotency_key == spec.idempotency_key,
                ),
            ];
            if let Some((field, _)) = fixed.iter().find(|(_, same)| !same) {
                return Err(StoreError::Invalid {
                    field: field.to_string(),
                    message: "is fixed at submit and cannot be changed".into(),
                });
            }
            let spec_json = to_json(&spec)?;
            // The retries already used stay used: the budget moves by the change in `retries`,
            // and always allows the attempt that is next.
            let budget = (i64::from(head.max_attempts) + i64::from(spec.retries)
                - i64::from(old.retries))
            .max(i64::from(head.attempt) + 1);
            tx.conn.execute(
                "UPDATE jobs SET spec = ?1, name = ?2, priority = ?3, queue = ?4, max_attempts = ?5
                 WHERE id = ?6",
                params![
                    spec_json,
                    spec.display_name(),
                    spec.priority,
                    spec.queue_name(),
                    budget,
                    id.to_string()
                ],
            )?;
            tx.emit(EventKind::Edited, id, None, head.state, None, None);
            Ok(Change::Done(head.state))
        })
        .await
}

pub(super) async fn has_active(store: &SqlStore) -> Result<bool, StoreError> {
    store
        .read(|conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs
                 WHERE state IN ('blocked', 'scheduled', 'queued', 'starting', 'running'))",
                params![],
                |row| row.get(0),
            )
        })
        .await
}
