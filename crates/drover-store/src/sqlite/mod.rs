//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! # Why a writer thread
//! SQLite allows one writer at a time. Rather than let async tasks contend for a lock, every
//! change is sent to one dedicated thread that owns the write connection. That thread takes
//! whatever changes are waiting, runs them in ONE transaction (a savepoint each, so a failing
//! change rolls back alone), commits with a single fsync, and only then answers the callers and
//! publishes their events. This is group commit: an acknowledged change is on disk, and the fsync
//! cost is shared by everything that arrived meanwhile.
//!
//! Reads use a small pool of separate connections; WAL lets them proceed while the writer writes.

mod ops;
mod rows;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use drover_core::{Event, EventKind, JobId, JobState, NodeId, Reason};
use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::StoreError;

/// How many changes one group commit takes at most.
const MAX_BATCH: usize = 512;
/// How many events a slow subscriber may fall behind before it must resync from the table.
const EVENT_BUFFER: usize = 16 * 1024;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// Called after the batch's COMMIT with its result, to answer the caller.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// One change: runs inside the batch transaction, says whether it succeeded, and how to answer.
/// Given `None` (the transaction could not begin), it does nothing and answers with an error.
type WriteOp = Box<dyn FnOnce(Option<&mut Tx<'_>>) -> (bool, Reply) + Send>;

/// The context a change runs in: the transaction's connection, the events it appends, and the
/// time of the batch (one clock read per batch, so all rows of a change agree).
pub(crate) struct Tx<'c> {
    conn: &'c Connection,
    events: Vec<Event>,
    now_ms: i64,
}

impl Tx<'_> {
    /// Appends an event; its `seq` comes from the events table in commit order.
    fn emit(
        &mut self,
        kind: EventKind,
        job_id: JobId,
        attempt: Option<u32>,
        state: JobState,
        node: Option<&NodeId>,
        reason: Option<&Reason>,
    ) -> Result<(), StoreError> {
        let kind_text = serde_kind(kind);
        self.conn
            .prepare_cached(
                "INSERT INTO events (at, kind, job_id, attempt, state, node, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                self.now_ms,
                kind_text,
                job_id.to_string(),
                attempt,
                state.as_str(),
                node.map(|n| n.0.as_str()),
                reason.map(|r| r.to_string()),
            ])?;
        let seq = self.conn.last_insert_rowid();
        self.events.push(Event {
            seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("event seq {seq}")))?,
            at: ms_to_time(self.now_ms),
            kind,
            job_id,
            attempt,
            state,
            node: node.cloned(),
            reason: reason.cloned(),
        });
        Ok(())
    }
}

fn serde_kind(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Submitted => "submitted",
        EventKind::Claimed => "claimed",
        EventKind::Started => "started",
        EventKind::Finished => "finished",
        EventKind::Requeued => "requeued",
        EventKind::CancelRequested => "cancel_requested",
        EventKind::Cancelled => "cancelled",
        EventKind::Retried => "retried",
        EventKind::Scheduled => "scheduled",
        EventKind::Due => "due",
        EventKind::Reprioritized => "reprioritized",
        EventKind::Dismissed => "dismissed",
        EventKind::Unblocked => "unblocked",
    }
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

/// The SQLite [`Store`](crate::Store).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::UnboundedSender<WriteOp>,
    readers: Mutex<Vec<Connection>>,
    events: broadcast::Sender<Event>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrates it, and starts its writer.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |detail: String| StoreError::Open {
            path: path.display().to_string(),
            detail,
        };
        let mut conn = Connection::open(&path).map_err(|e| open_err(e.to_string()))?;
        configure(&conn).map_err(|e| open_err(e.to_string()))?;
        schema::migrate(&mut conn)?;

        let (writer, ops) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let publisher = events.clone();
        std::thread::Builder::new()
            .name("drover-store-writer".into())
            .spawn(move || write_loop(conn, ops, publisher))
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;

        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer,
                readers: Mutex::new(Vec::new()),
                events,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `change` in the next group commit and returns its result once it is on disk.
    pub(crate) async fn write<T, F>(&self, change: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let op: WriteOp = Box::new(move |tx| {
            let result = match tx {
                Some(tx) => change(tx),
                None => Err(StoreError::Database("could not begin a transaction".into())),
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
    pub(crate) async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    conn.busy_timeout(std::time::Duration::from_secs(5))?;
                    conn.pragma_update(None, "query_only", true)?;
                    conn
                }
            };
            let result = query(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                if pool.len() < MAX_IDLE_READERS {
                    pool.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?
    }

    /// Runs `PRAGMA integrity_check` and returns its verdict (`ok` when sound).
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        self.read(|conn| Ok(conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?))
            .await
    }

    pub(crate) fn publisher(&self) -> &broadcast::Sender<Event> {
        &self.inner.events
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed {mode}"
        )));
    }
    // FULL: a commit is fsynced before it is acknowledged. Group commit pays for it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Runs one of the fixed transaction-control statements through the statement cache: parsing
/// them anew for every change was a measurable share of the writer's time.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The writer thread: group commit until every sender is gone.
fn write_loop(
    conn: Connection,
    mut ops: mpsc::UnboundedReceiver<WriteOp>,
    events: broadcast::Sender<Event>,
) {
    let mut batch: Vec<WriteOp> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = ops.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut tx = Tx {
            conn: &conn,
            events: Vec::new(),
            now_ms: now_ms(),
        };
        let mut replies = Vec::with_capacity(batch.len());
        let begun = control(&conn, "BEGIN IMMEDIATE");
        if let Err(err) = begun {
            tracing::error!(error = %err, "cannot begin a transaction; refusing this batch");
            for op in batch.drain(..) {
                let (_, reply) = op(None);
                reply(Ok(()));
            }
            continue;
        }
        for op in batch.drain(..) {
            let events_before = tx.events.len();
            if control(&conn, "SAVEPOINT op").is_err() {
                let (_, reply) = op(None);
                replies.push(reply);
                continue;
            }
            let (ok, reply) = op(Some(&mut tx));
            if !ok {
                // Undo this change alone; the rest of the batch still commits.
                let _ = control(&conn, "ROLLBACK TO op");
                tx.events.truncate(events_before);
            }
            let _ = control(&conn, "RELEASE op");
            replies.push(reply);
        }
        match control(&conn, "COMMIT") {
            Ok(()) => {
                for event in tx.events.drain(..) {
                    // No subscriber is fine; events are in the table for anyone who resumes.
                    let _ = events.send(event);
                }
                for reply in replies {
                    reply(Ok(()));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "group commit failed; rolling back the batch");
                let _ = control(&conn, "ROLLBACK");
                for reply in replies {
                    reply(Err(StoreError::Database(format!("commit failed: {err}"))));
                }
            }
        }
    }
    tracing::debug!("store writer stopped");
}

#[cfg(test)]
mod tests {
    use super::SqliteStore;

    fn fresh() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("drover.db")).expect("open store");
        (store, dir)
    }

    crate::conformance_tests!(fresh());

    /// Claim cost must not grow with the queue: the claim reads its index from the first entry
    /// and never sorts the queued jobs.
    #[test]
    fn the_claim_reads_its_index_without_sorting() {
        let (store, _dir) = fresh();
        let conn = rusqlite::Connection::open(store.path()).expect("open");
        let sql = "EXPLAIN QUERY PLAN SELECT id, spec, attempt FROM jobs INDEXED BY jobs_claim
                   WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 8";
        let plan: Vec<String> = conn
            .prepare(sql)
            .expect("prepare")
            .query_map([], |row| row.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(
            plan.iter().any(|step| step.contains("jobs_claim")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
        let ops = include_str!("ops.rs");
        assert!(
            ops.contains("FROM jobs INDEXED BY jobs_claim"),
            "the claim query changed"
        );
    }

    #[tokio::test]
    async fn reopening_keeps_everything_and_the_file_is_sound() {
        use crate::Store;
        let (store, dir) = fresh();
        let ids = store
            .submit(vec![drover_core::JobSpec::new(["true"])])
            .await
            .expect("submit");
        drop(store);
        let store = SqliteStore::open(dir.path().join("drover.db")).expect("reopen");
        assert!(store.get(ids[0]).await.expect("get").is_some());
        assert_eq!(store.integrity_check().await.expect("check"), "ok");
        // A newer schema than this build knows is refused rather than misread.
        let conn = rusqlite::Connection::open(dir.path().join("drover.db")).expect("raw");
        conn.pragma_update(None, "user_version", 999).expect("bump");
        assert!(SqliteStore::open(dir.path().join("drover.db")).is_err());
    }
}
