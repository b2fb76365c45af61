//! The store, written once for both databases.
//!
//! # Why a writer thread
//! Every change is sent to one dedicated thread that owns the node's write connection. That
//! thread takes whatever changes are waiting, runs them in ONE transaction (a savepoint each when
//! there are several, so a failing change rolls back alone), commits once, and only then answers
//! the callers. This is group commit: an acknowledged change is durable, and the commit's cost
//! (an fsync for SQLite, a round trip and a WAL flush for PostgreSQL) is shared by everything
//! that arrived meanwhile. On PostgreSQL every statement is a round trip of the writer's one
//! connection, so the hot paths are written in few: the batch's BEGIN and clock are one, its
//! events (counter, rows and NOTIFY) are one, and a claim takes a job in one.
//! SQLite allows one writer at a time anyway; on PostgreSQL each node has its own writer, and
//! nodes coordinate through row locks (`FOR UPDATE`, `SKIP LOCKED` for claims).
//!
//! Reads use a small pool of separate connections, off the async threads.
//!
//! # Events in commit order
//! A change's events are buffered and numbered at the end of its batch, just before COMMIT: on
//! SQLite by the events table's AUTOINCREMENT under the single writer, on PostgreSQL from a
//! one-row counter whose row lock is held until commit. That lock is the last one a batch takes
//! (so it cannot deadlock with row locks) and it makes `seq` order commit order across nodes: a
//! subscriber that has read every event up to `seq` has missed none before it. SQLite's writer
//! publishes its events after commit; on PostgreSQL one listener per node reads the table after
//! each `NOTIFY` (sent at commit), so every node's subscribers see every node's events.

pub(crate) mod conn;
mod ops;
#[cfg(test)]
pub(crate) use ops::{claim_candidates, queue_candidates, queued_queues};
mod rows;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use drover_core::{Event, EventKind, JobId, JobState, NodeId, Reason};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::StoreError;
pub(crate) use conn::{Conn, Dialect, Row, Value, params};
pub(crate) use rows::event_row;

/// How many changes one group commit takes at most.
const MAX_BATCH: usize = 512;
/// How many events a slow subscriber may fall behind before it must resync from the table.
pub(crate) const EVENT_BUFFER: usize = 16 * 1024;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Longest wait between attempts to reconnect the writer.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Opens a new connection (for the writer after a failure, or for the read pool).
pub(crate) type Connector = Arc<dyn Fn() -> Result<Box<dyn Conn>, StoreError> + Send + Sync>;

/// Called after the batch's COMMIT with its result, to answer the caller.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One change: runs inside the batch transaction, says whether it succeeded, and how to answer.
/// Given `None` (the transaction could not begin), it does nothing and answers with an error.
type WriteOp = Box<dyn FnOnce(Option<&mut Tx<'_>>) -> (bool, Reply) + Send>;

/// An event a change emitted; numbered when its batch commits.
struct Pending {
    kind: EventKind,
    job_id: JobId,
    attempt: Option<u32>,
    state: JobState,
    node: Option<NodeId>,
    reason: Option<Reason>,
}

/// The context a change runs in: the transaction's connection, the events it emits, and the
/// time of the batch (one clock read per batch, so all rows of a change agree).
pub(crate) struct Tx<'c> {
    conn: &'c dyn Conn,
    events: Vec<Pending>,
    now_ms: i64,
}

impl Tx<'_> {
    /// Emits an event; it gets its `seq` when the batch commits.
    fn emit(
        &mut self,
        kind: EventKind,
        job_id: JobId,
        attempt: Option<u32>,
        state: JobState,
        node: Option<&NodeId>,
        reason: Option<&Reason>,
    ) {
        self.events.push(Pending {
            kind,
            job_id,
            attempt,
            state,
            node: node.cloned(),
            reason: reason.cloned(),
        });
    }
}

/// Writes a batch's events, numbered in commit order (see the module doc), and returns them.
fn write_events(
    conn: &dyn Conn,
    pending: Vec<Pending>,
    now_ms: i64,
) -> Result<Vec<Event>, StoreError> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let seqs = match conn.dialect() {
        Dialect::Postgres => {
            let first = insert_events_postgres(conn, &pending, now_ms)?;
            (first..).take(pending.len()).collect()
        }
        Dialect::Sqlite => insert_events_sqlite(conn, &pending, now_ms)?,
    };
    pending
        .into_iter()
        .zip(seqs)
        .map(|(event, seq)| {
            Ok(Event {
                seq: u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt(format!("event seq {seq}")))?,
                at: ms_to_time(now_ms),
                kind: event.kind,
                job_id: event.job_id,
                attempt: event.attempt,
                state: event.state,
                node: event.node,
                reason: event.reason,
            })
        })
        .collect()
}

/// SQLite numbers each row itself (AUTOINCREMENT, under the one writer): one insert per event,
/// in process. Returns each event's seq.
fn insert_events_sqlite(
    conn: &dyn Conn,
    pending: &[Pending],
    now_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    pending
        .iter()
        .map(|event| {
            conn.query_row(
                "INSERT INTO events (at, kind, job_id, attempt, state, node, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING seq",
                params![
                    now_ms,
                    event.kind.as_str(),
                    event.job_id.to_string(),
                    event.attempt,
                    event.state.as_str(),
                    event.node.as_ref().map(|n| n.0.as_str()),
                    event.reason.as_ref().map(|r| r.to_string()),
                ],
                |row| row.get(0),
            )
        })
        .collect()
}

/// PostgreSQL: ONE statement takes the batch's numbers from the counter row (whose lock is then
/// held until COMMIT), inserts every event from a JSON array, and queues the `NOTIFY` that is
/// delivered at commit. One round trip whatever the count, so the counter's lock is held for
/// that statement and the COMMIT only. Returns the first event's seq.
fn insert_events_postgres(
    conn: &dyn Conn,
    pending: &[Pending],
    now_ms: i64,
) -> Result<i64, StoreError> {
    let count = i64::try_from(pending.len()).unwrap_or(i64::MAX);
    let rows: Vec<serde_json::Value> = pending
        .iter()
        .enumerate()
        .map(|(ord, event)| {
            serde_json::json!({
                "ord": ord,
                "kind": event.kind.as_str(),
                "job_id": event.job_id.to_string(),
                "attempt": event.attempt,
                "state": event.state.as_str(),
                "node": event.node.as_ref().map(|n| n.0.as_str()),
                "reason": event.reason.as_ref().map(|r| r.to_string()),
            })
        })
        .collect();
    let rows = serde_json::Value::Array(rows).to_string();
    let last: Option<i64> = conn.query_row(
        "WITH notified AS (SELECT pg_notify('drover_events', '')),
              counter AS (UPDATE event_seq SET last = last + ?1 FROM notified RETURNING last),
              written AS (
                INSERT INTO events (seq, at, kind, job_id, attempt, state, node, reason)
                SELECT counter.last - ?1 + 1 + e.ord, ?2, e.kind, e.job_id, e.attempt, e.state,
                       e.node, e.reason
                FROM counter, json_to_recordset(CAST(?3 AS TEXT)::json)
                     AS e(ord BIGINT, kind TEXT, job_id TEXT, attempt BIGINT, state TEXT,
                          node TEXT, reason TEXT)
                RETURNING seq)
         SELECT MAX(seq) FROM written",
        params![count, now_ms, rows],
        |row| row.get(0),
    )?;
    let last = last.ok_or_else(|| StoreError::permanent("no event was written", None))?;
    Ok(last - count + 1)
}

pub(crate) fn parse_kind(text: &str) -> Result<EventKind, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| StoreError::Corrupt(format!("event kind `{text}`")))
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A [`Store`](crate::Store) on SQLite (the embedded default, [`SqlStore::sqlite`]) or
/// PostgreSQL (many nodes, [`SqlStore::postgres`]). Both run the same operations; they differ
/// only in how a connection is made and how events reach other nodes.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// What to show for this store: a file path, or a URL without its password.
    location: String,
    dialect: Dialect,
    writer: mpsc::UnboundedSender<WriteOp>,
    readers: Mutex<Vec<Box<dyn Conn>>>,
    connect_reader: Connector,
    events: broadcast::Sender<Event>,
    /// Run when the last handle is dropped (stops the PostgreSQL listener).
    on_drop: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(hooks) = self.on_drop.get_mut() {
            for hook in hooks.drain(..) {
                hook();
            }
        }
        // Closing a PostgreSQL connection blocks, which must not happen on an async thread
        // (where the last handle is usually dropped).
        if let Ok(readers) = self.readers.get_mut() {
            let readers = std::mem::take(readers);
            if !readers.is_empty() {
                let _ = std::thread::Builder::new()
                    .name("drover-store-close".into())
                    .spawn(move || drop(readers));
            }
        }
    }
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.inner.dialect)
            .field("location", &self.inner.location)
            .finish()
    }
}

impl SqlStore {
    /// Starts a store over a migrated write connection. `connect_writer` replaces the writer's
    /// connection when it breaks; `connect_reader` opens read connections.
    pub(crate) fn start(
        location: String,
        writer_conn: Box<dyn Conn>,
        connect_writer: Connector,
        connect_reader: Connector,
        events: broadcast::Sender<Event>,
    ) -> Result<Self, StoreError> {
        let dialect = writer_conn.dialect();
        let (writer, ops) = mpsc::unbounded_channel();
        // SQLite's writer is the only one, so it publishes; on PostgreSQL the listener does.
        let publisher = (dialect == Dialect::Sqlite).then(|| events.clone());
        std::thread::Builder::new()
            .name("drover-store-writer".into())
            .spawn(move || write_loop(writer_conn, connect_writer, ops, publisher))
            .map_err(|e| StoreError::Open {
                path: location.clone(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                location,
                dialect,
                writer,
                readers: Mutex::new(Vec::new()),
                connect_reader,
                events,
                on_drop: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Where the data is: the database file, or the server URL (without its password).
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// Whether this store is on PostgreSQL (shared by many nodes) rather than a SQLite file.
    pub fn is_shared(&self) -> bool {
        self.inner.dialect == Dialect::Postgres
    }

    /// Runs `change` in the next group commit and returns its result once it is durable.
    pub(crate) async fn write<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let op: WriteOp = Box::new(move |tx| {
            let result = match tx {
                Some(tx) => change(tx),
                None => Err(StoreError::transient("could not begin a transaction", None)),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = answer.send(commit.and(result));
            });
            (ok, reply)
        });
        self.inner.writer.send(op).map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `query` on a pooled read connection, off the async threads.
    ///
    /// A pooled connection the server has closed since (a restart, an idle timeout) fails the
    /// query; that query runs once more on a fresh connection, since reads are safe to repeat.
    pub(crate) async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut pool| pool.pop());
            let was_pooled = pooled.is_some();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => (inner.connect_reader)()?,
            };
            let mut result = query(conn.as_ref());
            if result.is_err() && was_pooled && conn.is_broken() {
                conn = (inner.connect_reader)()?;
                result = query(conn.as_ref());
            }
            if !conn.is_broken() {
                if let Ok(mut pool) = inner.readers.lock() {
                    if pool.len() < MAX_IDLE_READERS {
                        pool.push(conn);
                    }
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::permanent("a read task failed", Some(Box::new(e))))?
    }

    /// Runs `hook` when the last handle to this store is dropped.
    pub(crate) fn on_drop(&self, hook: impl FnOnce() + Send + 'static) {
        if let Ok(mut hooks) = self.inner.on_drop.lock() {
            hooks.push(Box::new(hook));
        }
    }

    pub(crate) fn publisher(&self) -> &broadcast::Sender<Event> {
        &self.inner.events
    }
}

/// The writer thread: group commit until every sender is gone.
fn write_loop(
    mut conn: Box<dyn Conn>,
    connect: Connector,
    mut ops: mpsc::UnboundedReceiver<WriteOp>,
    publisher: Option<broadcast::Sender<Event>>,
) {
    let mut reconnect = Reconnect::default();
    let mut batch: Vec<WriteOp> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = ops.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if conn.is_broken() {
            match reconnect.attempt(&connect) {
                Some(fresh) => conn = fresh,
                None => {
                    refuse(&mut batch, "the database connection is down; reconnecting");
                    continue;
                }
            }
        }
        let now_ms = match conn.begin() {
            Ok(now_ms) => now_ms,
            Err(err) => {
                tracing::error!(error = %err, "cannot begin a transaction; refusing this batch");
                let _ = conn.execute("ROLLBACK", params![]);
                refuse(&mut batch, &format!("cannot begin a transaction: {err}"));
                continue;
            }
        };
        let mut tx = Tx {
            conn: conn.as_ref(),
            events: Vec::new(),
            now_ms,
        };
        let mut replies = Vec::with_capacity(batch.len());
        // A change alone in its batch needs no savepoint: if it fails, the batch is rolled
        // back whole, which undoes exactly that change (two round trips fewer on PostgreSQL).
        if batch.len() == 1 {
            if let Some(op) = batch.pop() {
                let (ok, reply) = op(Some(&mut tx));
                if !ok {
                    let _ = conn.execute("ROLLBACK", params![]);
                    reply(Ok(()));
                    continue;
                }
                replies.push(reply);
            }
        }
        // A savepoint per change, so that a failing one is undone alone. A change that
        // succeeded leaves its savepoint open: the next change's release-and-open is one round
        // trip on PostgreSQL, and the last one's is ended by the COMMIT.
        let mut open = false;
        for op in batch.drain(..) {
            let events_before = tx.events.len();
            let opened = if open {
                conn.next_savepoint()
            } else {
                conn.execute("SAVEPOINT op", params![]).map(drop)
            };
            if opened.is_err() {
                open = false;
                let (_, reply) = op(None);
                replies.push(reply);
                continue;
            }
            let (ok, reply) = op(Some(&mut tx));
            open = ok;
            if !ok {
                // Undo this change alone; the rest of the batch still commits.
                let _ = conn.execute("ROLLBACK TO op", params![]);
                let _ = conn.execute("RELEASE op", params![]);
                tx.events.truncate(events_before);
            }
            replies.push(reply);
        }
        let pending = std::mem::take(&mut tx.events);
        let committed = write_events(conn.as_ref(), pending, tx.now_ms)
            .and_then(|events| conn.execute("COMMIT", params![]).map(|_| events));
        match committed {
            Ok(events) => {
                if let Some(publisher) = &publisher {
                    for event in events {
                        // No subscriber is fine; events are in the table for anyone who resumes.
                        let _ = publisher.send(event);
                    }
                }
                for reply in replies {
                    reply(Ok(()));
                }
            }
            Err(err) => {
                // Whether a failed COMMIT took effect is unknown; callers treat the error as
                // "maybe", and every operation is safe to retry (fenced or idempotent).
                tracing::error!(error = %err, "group commit failed; rolling back the batch");
                let _ = conn.execute("ROLLBACK", params![]);
                for reply in replies {
                    reply(Err(StoreError::transient(
                        format!("commit failed: {err}"),
                        None,
                    )));
                }
            }
        }
    }
    tracing::debug!("store writer stopped");
}

/// Answers every change of a batch that could not run with an error.
fn refuse(batch: &mut Vec<WriteOp>, why: &str) {
    for op in batch.drain(..) {
        let (_, reply) = op(None);
        reply(Err(StoreError::transient(why, None)));
    }
}

/// Reconnection with exponential backoff: while the database is unreachable, batches are
/// refused at once (their callers retry) rather than each waiting out a connect timeout.
#[derive(Default)]
struct Reconnect {
    delay: Duration,
    not_before: Option<Instant>,
}

impl Reconnect {
    fn attempt(&mut self, connect: &Connector) -> Option<Box<dyn Conn>> {
        if self.not_before.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        match connect() {
            Ok(conn) => {
                tracing::info!("store writer reconnected");
                *self = Self::default();
                Some(conn)
            }
            Err(err) => {
                self.delay =
                    (self.delay * 2).clamp(Duration::from_millis(100), MAX_RECONNECT_DELAY);
                self.not_before = Some(Instant::now() + self.delay);
                tracing::warn!(error = %err, retry_in = ?self.delay, "cannot reconnect the store writer");
                None
            }
        }
    }
}
