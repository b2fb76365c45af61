//! The event log: reading it from a sequence number, its bounds, pruning it, and the live
//! subscription. Events are written only by the writer (`sql/mod.rs`), at commit.

use chrono::{DateTime, Utc};
use drover_core::Event;
use tokio::sync::broadcast;

use crate::StoreError;
use crate::sql::rows::event_row;
use crate::sql::{Dialect, SqlStore, params};

pub(super) async fn events_since(
    store: &SqlStore,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    store
        .read(move |conn| {
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

pub(super) async fn prune_events(
    store: &SqlStore,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let before = before.timestamp_millis();
    store
        .write(move |tx| {
            let gone = tx
                .conn
                .execute("DELETE FROM events WHERE at < ?1", params![before])?;
            Ok(gone)
        })
        .await
}

pub(super) async fn event_bounds(store: &SqlStore) -> Result<(Option<u64>, u64), StoreError> {
    store
        .read(|conn| {
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

pub(super) fn subscribe(store: &SqlStore) -> broadcast::Receiver<Event> {
    store.publisher().subscribe()
}
