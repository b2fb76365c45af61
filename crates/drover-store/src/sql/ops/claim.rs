//! Claiming work and holding it: the admission walk over the claim index, promotion of due
//! `scheduled` jobs, marking a started attempt `running`, and lease renewal. Endings are not
//! here (`endings.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use drover_core::node::describe_labels;
use drover_core::{
    Admission, AttemptRef, Decision, EventKind, JobState, Labels, NodeId, NodeState, labels_match,
};

use super::*;
use crate::sql::rows::{parse_id, parse_spec};
use crate::sql::{Dialect, SqlStore, Tx, ms_to_time, params};
use crate::{ADMISSION_WINDOW, Claim, ClaimBatch, LeaseStatus, StartVerdict, StoreError};

pub(super) async fn promote_due(
    store: &SqlStore,
) -> Result<(usize, Option<DateTime<Utc>>), StoreError> {
    store.write(move |tx| {
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

/// The claim's walk: the first `?1` queued jobs in claim order, outside paused queues. On
/// SQLite it reads the partial index `jobs_claim` from its start (one writer, no versions left
/// behind). On PostgreSQL it reads the trigger-kept table `ready` (see the schema: what a held
/// snapshot keeps from vacuum stays small there), then each candidate's row by its number
/// (`OFFSET 0` keeps the planner from flattening that into a scan of every queued row).
pub(crate) fn claim_candidates(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT id, spec, attempt, updated_at, queue FROM jobs INDEXED BY jobs_claim
             WHERE state = 'queued'
               AND queue NOT IN (SELECT name FROM queues WHERE paused = 1)
             ORDER BY priority DESC, id LIMIT ?1"
        }
        Dialect::Postgres => {
            "SELECT j.id, j.spec, j.attempt, j.updated_at, j.queue
             FROM (SELECT seq, priority FROM ready
                   WHERE queue NOT IN (SELECT name FROM queues WHERE paused = 1)
                   ORDER BY priority DESC, seq LIMIT ?1) r
             CROSS JOIN LATERAL (SELECT id, spec, attempt, updated_at, queue FROM jobs
                                 WHERE jobs.seq = r.seq AND jobs.state = 'queued'
                                 OFFSET 0) j
             ORDER BY r.priority DESC, r.seq"
        }
    }
}

/// A queued job as the claim's walk reads it: id, spec, attempt, when it was queued, queue.
type Candidate = (String, String, u32, i64, String);

fn candidate(row: &crate::sql::Row) -> Result<Candidate, StoreError> {
    Ok((
        row.get::<String>(0)?,
        row.get::<String>(1)?,
        row.get::<u32>(2)?,
        row.get::<i64>(3)?,
        row.get::<String>(4)?,
    ))
}

/// The queues that have queued jobs, found by skipping through the per-queue claim index: one
/// index lookup per queue, however many jobs each holds.
pub(crate) fn queued_queues(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "WITH RECURSIVE q(name) AS (
                 SELECT MIN(queue) FROM jobs INDEXED BY jobs_claim_queue WHERE state = 'queued'
                 UNION ALL
                 SELECT (SELECT MIN(queue) FROM jobs INDEXED BY jobs_claim_queue
                         WHERE state = 'queued' AND queue > q.name)
                 FROM q WHERE q.name IS NOT NULL)
             SELECT name FROM q WHERE name IS NOT NULL"
        }
        Dialect::Postgres => {
            "WITH RECURSIVE q(name) AS (
                 SELECT MIN(queue) FROM ready
                 UNION ALL
                 SELECT (SELECT MIN(queue) FROM ready WHERE queue > q.name)
                 FROM q WHERE q.name IS NOT NULL)
             SELECT name FROM q WHERE name IS NOT NULL"
        }
    }
}

/// The first `?2` queued jobs of queue `?1` in claim order, with the claim order's key
/// (priority, then the job's number on PostgreSQL or its id on SQLite).
pub(crate) fn queue_candidates(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT id, spec, attempt, updated_at, queue, priority, 0 FROM jobs
             INDEXED BY jobs_claim_queue
             WHERE state = 'queued' AND queue = ?1
             ORDER BY priority DESC, id LIMIT ?2"
        }
        Dialect::Postgres => {
            "SELECT j.id, j.spec, j.attempt, j.updated_at, j.queue, r.priority, r.seq
             FROM (SELECT seq, priority FROM ready WHERE queue = ?1
                   ORDER BY priority DESC, seq LIMIT ?2) r
             CROSS JOIN LATERAL (SELECT id, spec, attempt, updated_at, queue FROM jobs
                                 WHERE jobs.seq = r.seq AND jobs.state = 'queued'
                                 OFFSET 0) j
             ORDER BY r.priority DESC, r.seq"
        }
    }
}

/// The claim's walk while some queues are paused: the first `limit` queued jobs in claim order
/// outside `paused`, merged from each other queue's own walk. The one walk of
/// [`claim_candidates`] would read past every job of a paused queue on every claim, so a
/// million jobs held in a paused queue made each claim (and so each submit's wake-up) O(n).
fn candidates_around_paused(
    conn: &dyn crate::sql::Conn,
    paused: &std::collections::HashSet<String>,
    limit: i64,
) -> Result<Vec<Candidate>, StoreError> {
    let dialect = conn.dialect();
    let queues = conn.query_map(queued_queues(dialect), params![], |row| {
        row.get::<String>(0)
    })?;
    let mut keyed = Vec::new();
    for queue in queues.into_iter().filter(|q| !paused.contains(q)) {
        let rows = conn.query_map(queue_candidates(dialect), params![queue, limit], |row| {
            let priority: i64 = row.get(5)?;
            let number: i64 = row.get(6)?;
            let job = candidate(row)?;
            // Claim order: higher priority first, then the job's number (PostgreSQL) or id
            // (SQLite, whose number column reads 0 here).
            Ok(((std::cmp::Reverse(priority), number, job.0.clone()), job))
        })?;
        keyed.extend(rows);
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(keyed.into_iter().map(|(_, job)| job).collect())
}

pub(super) async fn claim_within(
    store: &SqlStore,
    node: &NodeId,
    lease: Duration,
    max: usize,
    mut admission: Admission,
) -> Result<ClaimBatch, StoreError> {
    let node = node.clone();
    store.write(move |tx| {
        // A draining node claims nothing; a node with no row yet (before its first
        // heartbeat) has no labels.
        // With it, the paused queues (one statement: one round trip on PostgreSQL).
        let rows = tx.conn.query_map(
            "SELECT 'node', state, labels FROM nodes WHERE id = ?1
             UNION ALL SELECT 'paused', name, '' FROM queues WHERE paused = 1",
            params![node.0],
            |row| {
                Ok((
                    row.get::<String>(0)?,
                    row.get::<String>(1)?,
                    row.get::<String>(2)?,
                ))
            },
        )?;
        let mut me = None;
        let mut paused = std::collections::HashSet::new();
        for (what, first, second) in rows {
            if what == "node" {
                me = Some((first, second));
            } else {
                paused.insert(first);
            }
        }
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
        let next = if paused.is_empty() {
            tx.conn
                .query_map(claim_candidates(tx.conn.dialect()), params![limit], candidate)?
        } else {
            candidates_around_paused(tx.conn, &paused, limit)?
        };
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
        let mut passed_over = Vec::new();
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
                passed_over.push((
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
                    passed_over.push((id, why));
                    continue;
                }
                Decision::Reserve(why) => {
                    passed_over.push((id, why));
                    break;
                }
            }
            let attempt = previous + 1;
            if !take_claim(tx, id, previous, &node, lease_expires, spec.memory)? {
                // Another node is claiming it right now (or has).
                continue;
            }
            if let Some(left) = room.get_mut(&queue) {
                *left -= 1;
            }
            tx.emit(
                EventKind::Claimed,
                id,
                Some(attempt),
                JobState::Starting,
                Some(&node),
                None,
            );
            let inputs = if spec.after.is_empty() {
                Vec::new()
            } else {
                upstream_inputs(tx.conn, &spec.after)?
            };
            claims.push(Claim {
                attempt: AttemptRef {
                    job_id: id,
                    attempt,
                },
                spec,
                lease_expires_at: ms_to_time(lease_expires),
                inputs,
            });
        }
        Ok(ClaimBatch {
            claims,
            passed_over,
        })
    })
    .await
}

pub(super) async fn mark_running(
    store: &SqlStore,
    attempt: AttemptRef,
    pid: i32,
    proc_start: Option<u64>,
    started_at: Option<DateTime<Utc>>,
) -> Result<StartVerdict, StoreError> {
    store
        .write(move |tx| {
            let Some(head) = job_head(tx, attempt.job_id)? else {
                return Ok(StartVerdict::Stale);
            };
            if head.attempt != attempt.attempt || head.state != JobState::Starting {
                return Ok(StartVerdict::Stale);
            }
            if head.cancel_requested {
                return Ok(StartVerdict::Cancelled);
            }
            start_in(tx, attempt, Some(pid), proc_start, started_at)?;
            Ok(StartVerdict::Run)
        })
        .await
}

/// Makes a `starting` attempt `running` (the job too), with its leader's pid where known, and
/// emits `started`. For [`mark_running`], and for an ending that comes before its attempt's pid
/// record (a self-released start: the ending proves it ran).
pub(super) fn start_in(
    tx: &mut Tx<'_>,
    attempt: AttemptRef,
    pid: Option<i32>,
    proc_start: Option<u64>,
    started_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    set_job_state(
        tx,
        attempt.job_id,
        JobState::Starting,
        JobState::Running,
        None,
    )?;
    let proc_start = proc_start.and_then(|s| i64::try_from(s).ok());
    let node: Option<String> = tx.conn.query_opt(
        "UPDATE attempts SET state = 'running', pid = ?1, proc_start = ?2, started_at = ?3
         WHERE job_id = ?4 AND attempt = ?5
         RETURNING node",
        params![
            pid,
            proc_start,
            // Never after the commit that records it.
            started_at
                .map(|t| t.timestamp_millis().min(tx.now_ms))
                .unwrap_or(tx.now_ms),
            attempt.job_id.to_string(),
            attempt.attempt
        ],
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
    Ok(())
}

pub(super) async fn renew_leases(
    store: &SqlStore,
    node: &NodeId,
    attempts: &[AttemptRef],
    lease: Duration,
) -> Result<Vec<(AttemptRef, LeaseStatus)>, StoreError> {
    let node = node.clone();
    let attempts = attempts.to_vec();
    store
        .write(move |tx| {
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

pub(super) async fn record_usage(
    store: &SqlStore,
    node: &NodeId,
    series: Vec<(AttemptRef, drover_core::UsageSeries)>,
) -> Result<(), StoreError> {
    if series.is_empty() {
        return Ok(());
    }
    let node = node.clone();
    let texts = series
        .into_iter()
        .map(|(attempt, series)| {
            serde_json::to_string(&series)
                .map(|text| (attempt, text))
                .map_err(|e| {
                    StoreError::permanent("cannot encode a usage series", Some(Box::new(e)))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    store
        .write(move |tx| {
            for (attempt, text) in &texts {
                tx.conn.execute(
                    "UPDATE attempts SET usage_series = ?1
                     WHERE job_id = ?2 AND attempt = ?3 AND node = ?4
                       AND state IN ('starting', 'running')",
                    params![
                        text.as_str(),
                        attempt.job_id.to_string(),
                        attempt.attempt,
                        node.0
                    ],
                )?;
            }
            Ok(())
        })
        .await
}

/// Takes queued job `id` (whose attempt was `previous`) for `node`: the job `starting` with its
/// next attempt, and that attempt's row. `false` if another node holds or has taken it.
///
/// On PostgreSQL the job is locked only now that this claim takes it, and skipped rather than
/// waited for if another node is claiming it right now, so that a job a claim passes over
/// (labels, resources, a full queue) stays claimable by other nodes. There the lock, the state
/// change and the attempt's row are one statement: one round trip instead of three. (Its
/// resources stay counted for the walk when it is skipped: at worst a claim takes fewer,
/// never too many.)
fn take_claim(
    tx: &mut Tx<'_>,
    id: JobId,
    previous: u32,
    node: &NodeId,
    lease_expires: i64,
    memory: Option<drover_core::Size>,
) -> Result<bool, StoreError> {
    JobState::Queued.check(JobState::Starting)?;
    let attempt = previous + 1;
    let memory_limit = memory.and_then(|m| i64::try_from(m.bytes()).ok());
    match tx.conn.dialect() {
        Dialect::Postgres => {
            let taken = tx.conn.execute(
                "WITH locked AS (SELECT id FROM jobs
                                 WHERE id = ?1 AND state = 'queued' AND attempt = ?2
                                 FOR UPDATE SKIP LOCKED),
                      moved AS (UPDATE jobs SET state = 'starting', updated_at = ?3,
                                                finished_at = NULL, attempt = ?2 + 1,
                                                cancel_requested = 0
                                FROM locked WHERE jobs.id = locked.id
                                RETURNING jobs.id)
                 INSERT INTO attempts (job_id, attempt, node, state, claimed_at,
                                       lease_expires_at, memory_limit)
                 SELECT id, ?2 + 1, ?4, 'starting', ?3, ?5, ?6 FROM moved",
                params![
                    id.to_string(),
                    previous,
                    tx.now_ms,
                    node.0,
                    lease_expires,
                    memory_limit
                ],
            )?;
            Ok(taken == 1)
        }
        Dialect::Sqlite => {
            // The one writer holds the database: the job is as the walk read it.
            let changed = tx.conn.execute(
                "UPDATE jobs SET state = 'starting', updated_at = ?1, finished_at = NULL,
                                 attempt = ?2, cancel_requested = 0
                 WHERE id = ?3 AND state = 'queued'",
                params![tx.now_ms, attempt, id.to_string()],
            )?;
            if changed != 1 {
                return Err(StoreError::permanent(
                    format!("job {id} was not queued when claiming it"),
                    None,
                ));
            }
            tx.conn.execute(
                "INSERT INTO attempts (job_id, attempt, node, state, claimed_at,
                                       lease_expires_at, memory_limit)
                 VALUES (?1, ?2, ?3, 'starting', ?4, ?5, ?6)",
                params![
                    id.to_string(),
                    attempt,
                    node.0,
                    tx.now_ms,
                    lease_expires,
                    memory_limit
                ],
            )?;
            Ok(true)
        }
    }
}

/// What a job that runs after `after` reads in `$DROVER_INPUTS`: each upstream job as it ended,
/// with its result, in the order of `after`. (Output directories are filled in by the node.)
fn upstream_inputs(
    conn: &dyn crate::sql::Conn,
    after: &[JobId],
) -> Result<Vec<drover_core::Input>, StoreError> {
    use crate::sql::Value;
    use crate::sql::rows::corrupt;
    let mut found = std::collections::HashMap::with_capacity(after.len());
    for slice in after.chunks(5_000) {
        let ids: Vec<Value> = slice.iter().map(|id| Value::Text(id.to_string())).collect();
        let placeholders = vec!["?"; ids.len()].join(", ");
        let rows = conn.query(
            &format!(
                "SELECT j.id, j.seq, j.name, j.member, j.state, j.result, j.attempt, a.node
                 FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id AND a.attempt = j.attempt
                 WHERE j.id IN ({placeholders})"
            ),
            &ids,
        )?;
        for row in rows {
            let id: String = row.get(0)?;
            let id = parse_id(&id)?;
            let member: Option<String> = row.get(3)?;
            let member: Option<drover_core::Membership> = member
                .map(|m| serde_json::from_str(&m).map_err(|e| corrupt("membership", e)))
                .transpose()?;
            let result: Option<String> = row.get(5)?;
            let state: String = row.get(4)?;
            let number: i64 = row.get(1)?;
            let node: Option<String> = row.get(7)?;
            found.insert(
                id,
                drover_core::Input {
                    id,
                    number: u64::try_from(number).unwrap_or(0),
                    name: row.get(2)?,
                    step: member.as_ref().and_then(|m| m.step.clone()),
                    index: member.as_ref().map(|m| m.index),
                    values: member.map(|m| m.values).unwrap_or_default(),
                    state: parse_state(&state)?,
                    result: result
                        .map(|r| serde_json::from_str(&r).map_err(|e| corrupt("result", e)))
                        .transpose()?,
                    node: node.map(NodeId),
                    attempt: row.get(6)?,
                    output_dir: None,
                },
            );
        }
    }
    Ok(after.iter().filter_map(|id| found.remove(id)).collect())
}
