//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Everything but connecting lives in [`crate::sql`]; this module opens and configures
//! connections, migrates the schema, and adapts rusqlite to [`Conn`].

mod schema;

use std::path::Path;
use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::broadcast;

use crate::StoreError;
use crate::sql::{Conn, Connector, Dialect, EVENT_BUFFER, Row, SqlStore, Value};

/// How many prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 64;

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path`, migrates it, and starts its
    /// writer.
    pub fn sqlite(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |detail: String| StoreError::Open {
            path: path.display().to_string(),
            detail,
        };
        let damaged = |verdict: String| StoreError::Damaged {
            path: path.display().to_string(),
            verdict,
        };
        // A file that is not a database, or whose pages are broken, fails here (header) or in
        // the check below, before anything is served from it.
        let opening = |err: rusqlite::Error| match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                damaged(err.to_string())
            }
            _ => open_err(err.to_string()),
        };
        make_private(&path).map_err(|e| open_err(e.to_string()))?;
        let mut conn = Connection::open(&path).map_err(opening)?;
        configure(&conn).map_err(opening)?;
        let verdict = quick_check(&conn).map_err(opening)?;
        if verdict != "ok" {
            return Err(damaged(verdict));
        }
        schema::migrate(&mut conn)?;
        let writer_path = path.clone();
        let connect_writer: Connector = Arc::new(move || {
            let conn = Connection::open(&writer_path)?;
            configure(&conn)?;
            Ok(Box::new(SqliteConn::new(conn)) as Box<dyn Conn>)
        });
        let reader_path = path.clone();
        let connect_reader: Connector = Arc::new(move || {
            let conn = Connection::open_with_flags(
                &reader_path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            stable_plans(&conn)?;
            conn.pragma_update(None, "query_only", true)?;
            Ok(Box::new(SqliteConn::new(conn)) as Box<dyn Conn>)
        });
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        SqlStore::start(
            path.display().to_string(),
            Box::new(SqliteConn::new(conn)),
            connect_writer,
            connect_reader,
            events,
        )
    }

    /// Runs SQLite's `PRAGMA integrity_check` and returns its verdict (`ok` when sound).
    pub async fn integrity_check(&self) -> Result<String, StoreError> {
        self.read(|conn| conn.query_row("PRAGMA integrity_check", &[], |row| row.get(0)))
            .await
    }
}

/// `PRAGMA quick_check`: every page and row readable, without the index cross-checks of
/// `integrity_check` (so it takes seconds, not minutes, on a large store). Its first lines.
fn quick_check(conn: &Connection) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let lines: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    let text = lines.join("; ").replace('\n', "; ");
    Ok(match text.char_indices().nth(400) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    })
}

/// Creates the database file readable by its owner only, and tightens the files of an existing
/// one: jobs' argv, env and output paths are private. SQLite gives the `-wal` and `-shm` files
/// it creates later the database file's mode.
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    let mut name = path.as_os_str().to_owned();
    for suffix in ["", "-wal", "-shm"] {
        name.clear();
        name.push(path.as_os_str());
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    Ok(())
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
    stable_plans(conn)?;
    Ok(())
}

/// Turns on SQLite's query planner stability guarantee: a statement's plan never depends on
/// the values bound to it. Without it, a bound `LIMIT ?1` (the claim's walk) marks the cached
/// statement stale whenever a new value is bound, and SQLite parses and plans it again on every
/// claim — 8% of the writer's time at 2 slots before this was set. drover's hot statements
/// name their index (`INDEXED BY`), so a value-dependent plan could only ever pick the same.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// A rusqlite connection as a [`Conn`]. Every statement goes through the statement cache:
/// parsing even the transaction-control statements anew for every change was a measurable share
/// of the writer's time.
struct SqliteConn {
    conn: Connection,
}

impl SqliteConn {
    fn new(conn: Connection) -> Self {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Self { conn }
    }
}

fn to_sqlite(value: &Value) -> rusqlite::types::Value {
    match value {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(n) => rusqlite::types::Value::Integer(*n),
        Value::Text(text) => rusqlite::types::Value::Text(text.clone()),
    }
}

fn from_sqlite(value: ValueRef<'_>) -> Result<Value, StoreError> {
    match value {
        ValueRef::Null => Ok(Value::Null),
        ValueRef::Integer(n) => Ok(Value::Int(n)),
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
            .map(Value::Text)
            .map_err(|e| StoreError::Corrupt(format!("text that is not UTF-8: {e}"))),
        ValueRef::Real(x) => Err(StoreError::Corrupt(format!("unexpected real {x}"))),
        ValueRef::Blob(_) => Err(StoreError::Corrupt("unexpected blob".into())),
    }
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn begin(&self) -> Result<i64, StoreError> {
        // IMMEDIATE: take the write lock now, not at the first write, so that a batch never
        // fails halfway on a lock another process took.
        self.execute("BEGIN IMMEDIATE", &[])?;
        Ok(crate::sql::now_ms())
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let changed = stmt.execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))?;
        Ok(changed as u64)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(to_sqlite)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..width)
                .map(|i| from_sqlite(row.get_ref(i)?))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::SqlStore;

    fn fresh() -> (SqlStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqlStore::sqlite(dir.path().join("drover.db")).expect("open store");
        (store, dir)
    }

    crate::conformance_tests!(fresh());

    /// Claim cost must not grow with the queue: the claim reads its index from the first entry
    /// and never sorts the queued jobs.
    #[test]
    fn the_claim_reads_its_index_without_sorting() {
        let (store, _dir) = fresh();
        let conn = rusqlite::Connection::open(store.location()).expect("open");
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
        let ops = include_str!("../sql/ops/claim.rs");
        assert!(
            ops.contains("FROM jobs INDEXED BY jobs_claim"),
            "the claim query changed"
        );
    }

    /// A cached statement is planned once, whatever is bound to it: the claim's walk binds a
    /// new `LIMIT` on most claims, and without the planner stability guarantee SQLite parsed
    /// and planned it again each time.
    #[test]
    fn the_claims_walk_is_not_prepared_again_for_each_limit() {
        let (store, _dir) = fresh();
        let conn = rusqlite::Connection::open(store.location()).expect("open");
        super::configure(&conn).expect("configure");
        let sql = crate::sql::claim_candidates(crate::sql::Dialect::Sqlite);
        for limit in [1, 4, 2, 8, 3] {
            let mut stmt = conn.prepare_cached(sql).expect("prepare");
            let _: Vec<String> = stmt
                .query_map([limit], |row| row.get::<_, String>(0))
                .expect("walk")
                .collect::<Result<_, _>>()
                .expect("rows");
        }
        let stmt = conn.prepare_cached(sql).expect("prepare");
        assert_eq!(
            stmt.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "the walk was prepared again for a new limit"
        );
    }

    /// While a queue is paused the claim finds the other queues by skipping through
    /// `jobs_claim_queue` and walks each by it: index searches only, no scan, no sort.
    #[test]
    fn the_claim_around_a_paused_queue_searches_its_index() {
        let (store, _dir) = fresh();
        let conn = rusqlite::Connection::open(store.location()).expect("open");
        let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Vec<String> {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("prepare")
                .query_map(params, |row| row.get::<_, String>(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        use crate::sql::Dialect::Sqlite;
        let queues = plan(crate::sql::queued_queues(Sqlite), &[]);
        let walk = plan(crate::sql::queue_candidates(Sqlite), &[&"q", &8]);
        for steps in [&queues, &walk] {
            let on_jobs: Vec<&String> = steps.iter().filter(|s| s.contains(" jobs")).collect();
            assert!(!on_jobs.is_empty(), "{steps:?}");
            assert!(
                on_jobs
                    .iter()
                    .all(|s| s.starts_with("SEARCH jobs USING")
                        && s.contains("INDEX jobs_claim_queue")),
                "{steps:?}"
            );
            assert!(
                !steps.iter().any(|s| s.contains("TEMP B-TREE")),
                "{steps:?}"
            );
        }
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
        let store = SqlStore::sqlite(dir.path().join("drover.db")).expect("reopen");
        assert!(store.get(ids[0]).await.expect("get").is_some());
        assert_eq!(store.integrity_check().await.expect("check"), "ok");
        // A newer schema than this build knows is refused rather than misread.
        let conn = rusqlite::Connection::open(dir.path().join("drover.db")).expect("raw");
        conn.pragma_update(None, "user_version", 999).expect("bump");
        assert!(SqlStore::sqlite(dir.path().join("drover.db")).is_err());
    }
}
