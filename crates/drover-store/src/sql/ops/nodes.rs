//! Nodes: heartbeats, the nodes table, draining, and the reaper that declares silent nodes dead
//! and ends attempts whose lease expired.

use std::time::Duration;

use drover_core::{
    AttemptRef, JobState, NodeId, NodeInfo, NodeLoad, NodeRecord, NodeState, Reason,
};

use super::endings::{complete_in, give_back_in};
use super::*;
use crate::sql::rows::parse_id;
use crate::sql::{Dialect, SqlStore, ms_to_time, params};
use crate::{AttemptOutcome, Completion, Reaped, StoreError, Unrun};

/// The advisory lock key that makes one node at a time the reaper ("reaper" in ASCII).
const REAPER_LOCK: i64 = 0x7265_6170_6572;

const NODE_COLUMNS: &str =
    "id, hostname, labels, url, capacity, slots, load, state, started_at, heartbeat_at";

fn parse_node_state(text: &str) -> Result<NodeState, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("node state `{text}`")))
}

fn node_row(row: &crate::sql::Row) -> Result<NodeRecord, StoreError> {
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

pub(super) async fn heartbeat(
    store: &SqlStore,
    node: &NodeInfo,
    load: NodeLoad,
) -> Result<NodeState, StoreError> {
    let node = node.clone();
    store
        .write(move |tx| {
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

pub(super) async fn nodes(store: &SqlStore) -> Result<Vec<NodeRecord>, StoreError> {
    store
        .read(|conn| {
            conn.query_map(
                &format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"),
                params![],
                node_row,
            )
        })
        .await
}

pub(super) async fn set_draining(
    store: &SqlStore,
    node: &NodeId,
    draining: bool,
) -> Result<Option<NodeRecord>, StoreError> {
    let node = node.clone();
    store
        .write(move |tx| {
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

pub(super) async fn reap(store: &SqlStore, ttl: Duration) -> Result<Reaped, StoreError> {
    store
        .write(move |tx| {
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
                    None => give_back_in(tx, attempt, Reason::NodeLost, Unrun::NoPid)?,
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

/// See [`crate::Store::oldest_snapshot`]: the age of the oldest transaction of another session
/// on this database that holds a snapshot (`backend_xmin`), read from `pg_stat_activity`.
pub(super) async fn oldest_snapshot(store: &SqlStore) -> Result<Option<Duration>, StoreError> {
    store
        .read(|conn| {
            if conn.dialect() != Dialect::Postgres {
                return Ok(None);
            }
            let ms: Option<i64> = conn.query_row(
                "SELECT CAST(EXTRACT(EPOCH FROM (now() - min(xact_start))) * 1000 AS BIGINT)
                 FROM pg_stat_activity
                 WHERE datname = current_database() AND backend_xmin IS NOT NULL
                   AND xact_start IS NOT NULL AND pid <> pg_backend_pid()",
                params![],
                |row| row.get(0),
            )?;
            Ok(ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
        })
        .await
}
