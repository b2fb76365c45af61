//! Groups: storing a sweep's or flow's jobs in one change (their dependencies given as
//! positions, turned into ids here), reading a group with its members' counts, its members in
//! order, and taking a notice once (one node sends each, however many listen).

use std::collections::BTreeMap;

use drover_core::{
    GroupId, GroupKind, GroupRecord, GroupStep, JobId, JobRecord, JobState, group::group_state,
};

use super::jobs::{InGroup, insert_job};
use super::to_json;
use crate::sql::rows::{corrupt, load_jobs, load_jobs_with_results};
use crate::sql::{Conn, Dialect, SqlStore, Value, ms_to_time, params};
use crate::{GroupFilter, NewGroup, NewMember, Notice, StoreError, SubmittedGroup};

/// The states in which a job has not ended, as SQL.
const NOT_ENDED: &str = "('blocked', 'scheduled', 'queued', 'starting', 'running')";

pub(super) async fn submit_group(
    store: &SqlStore,
    group: NewGroup,
    members: Vec<NewMember>,
) -> Result<SubmittedGroup, StoreError> {
    store
        .write(move |tx| {
            let steps = to_json(&group.steps)?;
            // The group's number and its members' come from the jobs' numbering: on SQLite the
            // one writer hands out the next ones itself; PostgreSQL's sequence is shared.
            let base: Option<i64> = match tx.conn.dialect() {
                Dialect::Sqlite => Some(tx.conn.query_row(
                    "SELECT COALESCE(MAX(m), 0) FROM
                         (SELECT MAX(seq) AS m FROM jobs UNION ALL SELECT MAX(seq) FROM groups) AS numbers",
                    params![],
                    |row| row.get::<i64>(0),
                )?),
                Dialect::Postgres => None,
            };
            let number: i64 = match base {
                Some(base) => base + 1,
                None => tx.conn.query_row(
                    "SELECT nextval('jobs_seq_numbers')",
                    params![],
                    |row| row.get::<i64>(0),
                )?,
            };
            tx.conn.execute(
                "INSERT INTO groups (id, seq, name, kind, steps, notify, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    group.id.to_string(),
                    number,
                    group.name,
                    group.kind.as_str(),
                    steps,
                    group.notify,
                    tx.now_ms,
                ],
            )?;
            let group_text = group.id.to_string();
            let mut jobs: Vec<JobId> = Vec::with_capacity(members.len());
            for (index, member) in members.into_iter().enumerate() {
                let mut spec = member.spec;
                for &up in &member.after {
                    let Some(id) = jobs.get(up) else {
                        return Err(StoreError::Invalid {
                            field: format!("[{index}].after"),
                            message: format!("job {up} of the group is not before this one"),
                        });
                    };
                    if !spec.after.contains(id) {
                        spec.after.push(*id);
                    }
                }
                let membership = to_json(&member.membership)?;
                let seq = base.map(|b| b + 2 + i64::try_from(index).unwrap_or(i64::MAX - b - 2));
                let id = insert_job(
                    tx,
                    &spec,
                    index,
                    Some(InGroup {
                        group: &group_text,
                        member: &membership,
                        seq,
                    }),
                )?;
                jobs.push(id);
            }
            Ok(SubmittedGroup {
                id: group.id,
                number: u64::try_from(number).unwrap_or(0),
                jobs,
            })
        })
        .await
}

const GROUP_COLUMNS: &str = "id, seq, name, kind, steps, created_at, notify";

/// A group row before its counts are attached.
fn group_row(row: &crate::sql::Row) -> Result<GroupRecord, StoreError> {
    let id: String = row.get(0)?;
    let seq: i64 = row.get(1)?;
    let kind: String = row.get(3)?;
    let steps: String = row.get(4)?;
    let steps: Vec<GroupStep> = serde_json::from_str(&steps).map_err(|e| corrupt("steps", e))?;
    Ok(GroupRecord {
        id: id.parse().map_err(|_| corrupt("group id", &id))?,
        number: u64::try_from(seq).map_err(|_| corrupt("group number", seq))?,
        name: row.get(2)?,
        kind: kind
            .parse::<GroupKind>()
            .map_err(|e| corrupt("group kind", e))?,
        created_at: ms_to_time(row.get(5)?),
        notify: row.get(6)?,
        steps,
        jobs: 0,
        counts: BTreeMap::new(),
        state: JobState::Queued,
        finished_at: None,
    })
}

/// Fills in each group's counts by state, state and end time, from its members.
fn with_counts(
    conn: &dyn Conn,
    mut groups: Vec<GroupRecord>,
) -> Result<Vec<GroupRecord>, StoreError> {
    if groups.is_empty() {
        return Ok(groups);
    }
    let ids: Vec<Value> = groups
        .iter()
        .map(|g| Value::Text(g.id.to_string()))
        .collect();
    let placeholders = vec!["?"; ids.len()].join(", ");
    let rows = conn.query_map(
        &format!(
            "SELECT group_id, state, COUNT(*), MAX(finished_at) FROM jobs
             WHERE group_id IN ({placeholders}) GROUP BY group_id, state"
        ),
        &ids,
        |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<String>(1)?,
                row.get::<i64>(2)?,
                row.get::<Option<i64>>(3)?,
            ))
        },
    )?;
    for (group, state, count, finished) in rows {
        let Some(record) = groups.iter_mut().find(|g| g.id.to_string() == group) else {
            continue;
        };
        let state: JobState = state.parse().map_err(|_| corrupt("state", &state))?;
        let count = u64::try_from(count).unwrap_or(0);
        record.jobs += count;
        *record.counts.entry(state).or_default() += count;
        if let Some(at) = finished.map(ms_to_time) {
            record.finished_at = Some(record.finished_at.map_or(at, |f| f.max(at)));
        }
    }
    for record in &mut groups {
        record.state = group_state(&record.counts);
        if !record.state.is_terminal() {
            record.finished_at = None;
        }
    }
    Ok(groups)
}

pub(super) async fn group(
    store: &SqlStore,
    id: GroupId,
) -> Result<Option<GroupRecord>, StoreError> {
    store
        .read(move |conn| {
            let found = conn.query_map(
                &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE id = ?1"),
                params![id.to_string()],
                group_row,
            )?;
            Ok(with_counts(conn, found)?.into_iter().next())
        })
        .await
}

pub(super) async fn groups(
    store: &SqlStore,
    filter: &GroupFilter,
) -> Result<Vec<GroupRecord>, StoreError> {
    let filter = filter.clone();
    store
        .read(move |conn| {
            let mut clauses = Vec::new();
            let mut values = Vec::new();
            if let Some(name) = &filter.name {
                clauses.push("name = ?".to_string());
                values.push(Value::Text(name.clone()));
            }
            if let Some(number) = filter.number {
                clauses.push("seq = ?".to_string());
                values.push(Value::Int(i64::try_from(number).unwrap_or(i64::MAX)));
            }
            if let Some(prefix) = &filter.id_prefix {
                clauses.push("id LIKE ?".to_string());
                values.push(Value::Text(super::id_prefix_pattern(prefix)));
            }
            if filter.active {
                clauses.push(format!(
                    "EXISTS (SELECT 1 FROM jobs WHERE jobs.group_id = groups.id AND jobs.state IN {NOT_ENDED})"
                ));
            }
            if let Some(since) = filter.since {
                clauses.push("created_at >= ?".to_string());
                values.push(Value::Int(since.timestamp_millis()));
            }
            let mut sql = format!("SELECT {GROUP_COLUMNS} FROM groups");
            if !clauses.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&clauses.join(" AND "));
            }
            let limit = match filter.limit {
                0 => 100,
                n => n.min(10_000),
            };
            sql.push_str(&format!(" ORDER BY seq DESC LIMIT {limit}"));
            let found = conn.query_map(&sql, &values, group_row)?;
            with_counts(conn, found)
        })
        .await
}

pub(super) async fn members(
    store: &SqlStore,
    id: GroupId,
    results: bool,
) -> Result<Vec<JobRecord>, StoreError> {
    store
        .read(move |conn| {
            let filter = "WHERE group_id = ? ORDER BY seq";
            let values = vec![Value::Text(id.to_string())];
            if results {
                load_jobs_with_results(conn, filter, values)
            } else {
                load_jobs(conn, filter, values)
            }
        })
        .await
}

pub(super) async fn take_notice(store: &SqlStore, notice: Notice) -> Result<bool, StoreError> {
    store
        .write(move |tx| {
            let changed = match notice {
                Notice::Job(id) => tx.conn.execute(
                    &format!(
                        "UPDATE jobs SET notified = 1
                         WHERE id = ?1 AND notified = 0 AND state NOT IN {NOT_ENDED}"
                    ),
                    params![id.to_string()],
                )?,
                Notice::Group(id) => tx.conn.execute(
                    &format!(
                        "UPDATE groups SET notified = 1
                         WHERE id = ?1 AND notified = 0 AND NOT EXISTS
                           (SELECT 1 FROM jobs WHERE jobs.group_id = ?1 AND jobs.state IN {NOT_ENDED})"
                    ),
                    params![id.to_string()],
                )?,
            };
            Ok(changed == 1)
        })
        .await
}

pub(super) async fn wanting_notice(
    store: &SqlStore,
    ids: Vec<JobId>,
) -> Result<Vec<JobId>, StoreError> {
    store
        .read(move |conn| {
            let mut wanted = Vec::new();
            for slice in ids.chunks(1_000) {
                let values: Vec<Value> =
                    slice.iter().map(|id| Value::Text(id.to_string())).collect();
                let placeholders = vec!["?"; values.len()].join(", ");
                // A spec with a notify command holds the key `"notify":` (a value that merely
                // contains those words is escaped, `\"notify\":`, and does not match).
                let rows = conn.query_map(
                    &format!(
                        "SELECT id FROM jobs WHERE id IN ({placeholders}) AND notified = 0
                           AND (spec LIKE '%\"notify\":%'
                                OR group_id IN (SELECT id FROM groups WHERE notify IS NOT NULL))"
                    ),
                    &values,
                    |row| row.get::<String>(0),
                )?;
                for id in rows {
                    wanted.push(crate::sql::rows::parse_id(&id)?);
                }
            }
            Ok(wanted)
        })
        .await
}
