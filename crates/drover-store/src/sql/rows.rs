//! Turning rows into domain records.

use super::{Conn, Row, Value, ms_to_time, parse_kind};
use crate::StoreError;
use drover_core::{AttemptRecord, Event, JobId, JobRecord, JobSpec, JobState, NodeId, Reason};

pub(super) const JOB_COLUMNS: &str = "id, name, state, spec, attempt, cancel_requested, reason, created_at, finished_at, not_before, seq, member";

pub(super) const ATTEMPT_COLUMNS: &str = "job_id, attempt, node, state, claimed_at, started_at, \
     finished_at, lease_expires_at, pid, exit_code, signal, reason, peak_memory_bytes, cpu_time_ms, memory_limit, log_cuts, usage_series";

/// Most jobs whose attempts one query reads.
const ATTEMPTS_PER_QUERY: usize = 5_000;

pub(super) fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what} `{value}`"))
}

pub(super) fn parse_id(text: &str) -> Result<JobId, StoreError> {
    text.parse().map_err(|_| corrupt("job id", text))
}

pub(super) fn parse_state(text: &str) -> Result<JobState, StoreError> {
    text.parse().map_err(|_| corrupt("state", text))
}

pub(super) fn parse_reason(text: Option<String>) -> Result<Option<Reason>, StoreError> {
    text.map(|t| t.parse().map_err(|_| corrupt("reason", &t)))
        .transpose()
}

pub(super) fn parse_spec(text: &str) -> Result<JobSpec, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt("spec", e))
}

fn to_u64(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok())
}

/// A job row before its attempts are attached.
struct JobRow {
    id: JobId,
    name: String,
    state: JobState,
    spec: JobSpec,
    attempt: u32,
    cancel_requested: bool,
    reason: Option<Reason>,
    created_at: i64,
    finished_at: Option<i64>,
    not_before: Option<i64>,
    number: u64,
    group: Option<drover_core::Membership>,
    result: Option<serde_json::Value>,
}

fn job_row(row: &Row) -> Result<JobRow, StoreError> {
    let id: String = row.get(0)?;
    let state: String = row.get(2)?;
    let spec: String = row.get(3)?;
    let reason: Option<String> = row.get(6)?;
    let name: String = row.get(1)?;
    let attempt: u32 = row.get(4)?;
    let cancel_requested: bool = row.get(5)?;
    let created_at: i64 = row.get(7)?;
    let finished_at: Option<i64> = row.get(8)?;
    let not_before: Option<i64> = row.get(9)?;
    let number: Option<i64> = row.get(10)?;
    let member: Option<String> = row.get(11)?;
    // Present only when the query asked for results (column 12).
    let result: Option<String> = match row.0.get(12) {
        Some(_) => row.get(12)?,
        None => None,
    };
    {
        Ok(JobRow {
            id: parse_id(&id)?,
            name,
            state: parse_state(&state)?,
            spec: parse_spec(&spec)?,
            attempt,
            cancel_requested,
            reason: parse_reason(reason)?,
            created_at,
            finished_at,
            not_before,
            number: number
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| corrupt("job number", format!("{number:?}")))?,
            group: member
                .map(|m| serde_json::from_str(&m).map_err(|e| corrupt("membership", e)))
                .transpose()?,
            result: result
                .map(|r| serde_json::from_str(&r).map_err(|e| corrupt("result", e)))
                .transpose()?,
        })
    }
}

fn attempt_row(row: &Row) -> Result<(JobId, AttemptRecord), StoreError> {
    let job_id: String = row.get(0)?;
    let state: String = row.get(3)?;
    let reason: Option<String> = row.get(11)?;
    let attempt: u32 = row.get(1)?;
    let node: String = row.get(2)?;
    let claimed_at: i64 = row.get(4)?;
    let started_at: Option<i64> = row.get(5)?;
    let finished_at: Option<i64> = row.get(6)?;
    let lease_expires_at: Option<i64> = row.get(7)?;
    let pid: Option<i32> = row.get(8)?;
    let exit_code: Option<i32> = row.get(9)?;
    let signal: Option<i32> = row.get(10)?;
    let peak: Option<i64> = row.get(12)?;
    let cpu: Option<i64> = row.get(13)?;
    let memory_limit: Option<i64> = row.get(14)?;
    let log_cuts: Option<String> = row.get(15)?;
    let log_cuts = match log_cuts {
        Some(text) => serde_json::from_str(&text).map_err(|_| corrupt("log cuts", &text))?,
        None => Vec::new(),
    };
    let usage_series: Option<String> = row.get(16)?;
    let usage_series = usage_series
        .map(|text| serde_json::from_str(&text).map_err(|_| corrupt("usage series", &text)))
        .transpose()?;
    {
        Ok((
            parse_id(&job_id)?,
            AttemptRecord {
                attempt,
                node: NodeId(node),
                state: parse_state(&state)?,
                claimed_at: ms_to_time(claimed_at),
                started_at: started_at.map(ms_to_time),
                finished_at: finished_at.map(ms_to_time),
                lease_expires_at: lease_expires_at.map(ms_to_time),
                pid,
                exit_code,
                signal,
                reason: parse_reason(reason)?,
                peak_memory_bytes: to_u64(peak),
                cpu_time_ms: to_u64(cpu),
                memory_limit_bytes: to_u64(memory_limit),
                log_cuts,
                usage_series,
            },
        ))
    }
}

fn assemble(job: JobRow, attempts: Vec<AttemptRecord>) -> JobRecord {
    let last = attempts.last();
    JobRecord {
        id: job.id,
        number: job.number,
        name: job.name,
        state: job.state,
        argv: job.spec.argv.clone(),
        attempt: job.attempt,
        node: last.map(|a| a.node.clone()),
        exit_code: last.and_then(|a| a.exit_code),
        signal: last.and_then(|a| a.signal),
        reason: job.reason,
        created_at: ms_to_time(job.created_at),
        started_at: last.and_then(|a| a.started_at),
        finished_at: job.finished_at.map(ms_to_time),
        peak_memory_bytes: last.and_then(|a| a.peak_memory_bytes),
        cpu_time_ms: last.and_then(|a| a.cpu_time_ms),
        cancel_requested: job.cancel_requested,
        spec: job.spec,
        attempts,
        not_before: job.not_before.map(ms_to_time),
        waiting_for: None,
        group: job.group,
        result: job.result,
    }
}

/// Loads jobs selected by `where_sql` (with `params`) and attaches their attempts in one more query.
/// Results are left out (they may be large); [`load_jobs_with_results`] reads them too.
pub(super) fn load_jobs(
    conn: &dyn Conn,
    where_sql: &str,
    params: Vec<Value>,
) -> Result<Vec<JobRecord>, StoreError> {
    load(
        conn,
        &format!("SELECT {JOB_COLUMNS} FROM jobs {where_sql}"),
        params,
    )
}

/// [`load_jobs`], results included.
pub(super) fn load_jobs_with_results(
    conn: &dyn Conn,
    where_sql: &str,
    params: Vec<Value>,
) -> Result<Vec<JobRecord>, StoreError> {
    load(
        conn,
        &format!("SELECT {JOB_COLUMNS}, result FROM jobs {where_sql}"),
        params,
    )
}

fn load(conn: &dyn Conn, sql: &str, params: Vec<Value>) -> Result<Vec<JobRecord>, StoreError> {
    let jobs = conn.query_map(sql, &params, job_row)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Value> = jobs.iter().map(|j| Value::Text(j.id.to_string())).collect();
    let mut by_job: std::collections::HashMap<JobId, Vec<AttemptRecord>> =
        std::collections::HashMap::new();
    // In slices: a statement takes a bounded number of parameters (a group may have 100,000).
    for slice in ids.chunks(ATTEMPTS_PER_QUERY) {
        let placeholders = vec!["?"; slice.len()].join(", ");
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id IN ({placeholders}) ORDER BY job_id, attempt"
        );
        for (job_id, attempt) in conn.query_map(&sql, slice, attempt_row)? {
            by_job.entry(job_id).or_default().push(attempt);
        }
    }
    Ok(jobs
        .into_iter()
        .map(|job| {
            let attempts = by_job.remove(&job.id).unwrap_or_default();
            assemble(job, attempts)
        })
        .collect())
}

pub(crate) fn event_row(row: &Row) -> Result<Event, StoreError> {
    let seq: i64 = row.get(0)?;
    let at: i64 = row.get(1)?;
    let kind: String = row.get(2)?;
    let job_id: String = row.get(3)?;
    let attempt: Option<u32> = row.get(4)?;
    let state: String = row.get(5)?;
    let node: Option<String> = row.get(6)?;
    let reason: Option<String> = row.get(7)?;
    {
        Ok(Event {
            seq: u64::try_from(seq).map_err(|_| corrupt("event seq", seq))?,
            at: ms_to_time(at),
            kind: parse_kind(&kind)?,
            job_id: parse_id(&job_id)?,
            attempt,
            state: parse_state(&state)?,
            node: node.map(NodeId),
            reason: parse_reason(reason)?,
        })
    }
}
