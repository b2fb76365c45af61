//! The shared store: many nodes on one PostgreSQL database.
//!
//! The operations are the same as SQLite's ([`crate::sql`]); this module connects, migrates,
//! adapts the `postgres` client to [`Conn`], and runs the listener that turns `NOTIFY` into
//! events for this node's subscribers.
//!
//! # Why the blocking client
//! The shared operations run on the store's writer thread and on blocking reader threads, as
//! SQLite's must; the `postgres` crate's blocking client fits that model exactly, so one body of
//! code serves both databases. Connections are never used from async tasks.

mod schema;
mod tls;

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use drover_core::Event;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, NoTls, Statement};
use tokio::sync::broadcast;

use crate::StoreError;
use crate::sql::{Conn, Connector, Dialect, EVENT_BUFFER, Row, SqlStore, Value, params};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the listener waits for a `NOTIFY` before reading the events table anyway: a safety
/// net for a notification lost with a connection, not the way events normally arrive.
const FALLBACK_POLL: Duration = Duration::from_secs(5);
/// Events read per query by the listener.
const LISTEN_PAGE: i64 = 1000;

impl SqlStore {
    /// Connects to the PostgreSQL database at `url` (`postgres://user@host/db`), migrates it,
    /// and starts the writer and the event listener.
    pub async fn postgres(url: &str) -> Result<Self, StoreError> {
        let url = url.to_string();
        tokio::task::spawn_blocking(move || Self::postgres_blocking(&url))
            .await
            .map_err(|e| StoreError::permanent("the connect task failed", Some(Box::new(e))))?
    }

    fn postgres_blocking(url: &str) -> Result<Self, StoreError> {
        let location = redact(url);
        let open_err = |detail: String| StoreError::Open {
            path: location.clone(),
            detail,
        };
        let (mut config, tls) = tls::parse(url).map_err(open_err)?;
        config.connect_timeout(CONNECT_TIMEOUT);
        // A partitioned node must notice a dead server, not wait on TCP for minutes.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.tcp_user_timeout(Duration::from_secs(20));
        config.application_name("drover");
        let target = Target { config, tls };
        let connect: Connector = {
            let target = target.clone();
            Arc::new(move || Ok(Box::new(PgConn::connect(&target)?) as Box<dyn Conn>))
        };
        let mut writer =
            PgConn::connect(&target).map_err(|e| open_err(drover_core::error_chain(&e)))?;
        schema::migrate(writer.client.get_mut())?;
        let last = writer.query_row_first("SELECT last FROM event_seq")?;

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let target = target.clone();
            let events = events.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("drover-store-listener".into())
                .spawn(move || listen_loop(&target, &events, &stop, last))
                .map_err(|e| open_err(format!("cannot start the listener thread: {e}")))?;
        }
        let store = SqlStore::start(
            location,
            Box::new(writer),
            Arc::clone(&connect),
            connect,
            events,
        )?;
        store.on_drop(move || stop.store(true, Ordering::Relaxed));
        Ok(store)
    }
}

/// `url` without its password, for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Where the database is and how to reach it: every connection (writer, readers, listener) is
/// made from one.
#[derive(Clone)]
struct Target {
    config: Config,
    tls: tls::Tls,
}

/// A `postgres` client as a [`Conn`], with its prepared statements.
struct PgConn {
    client: RefCell<Client>,
    statements: RefCell<HashMap<String, Statement>>,
    /// An error said the session is over (closed, or terminated by the server).
    broken: std::cell::Cell<bool>,
}

impl PgConn {
    fn connect(target: &Target) -> Result<Self, StoreError> {
        let client = match &target.tls {
            tls::Tls::Off => target.config.connect(NoTls),
            tls::Tls::On(connector) => target.config.connect(connector.clone()),
        }
        .map_err(pg_error)?;
        Ok(Self {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
            broken: std::cell::Cell::new(false),
        })
    }

    /// Maps an error, noting whether it ended the session: a closed connection, a connection
    /// exception (SQLSTATE class 08) or the server terminating it (57P01–57P03: shutdown,
    /// restart, crash recovery).
    fn fail(&self, err: postgres::Error) -> StoreError {
        let fatal = err.is_closed()
            || err.as_db_error().is_some_and(|db| {
                let code = db.code().code();
                code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
            });
        if fatal {
            self.broken.set(true);
        }
        pg_error(err)
    }

    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .client
            .borrow_mut()
            .prepare(&rewrite(sql))
            .map_err(|e| self.fail(e))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn query_row_first(&mut self, sql: &str) -> Result<u64, StoreError> {
        let n: i64 = (self as &dyn Conn).query_row(sql, params![], |row| row.get(0))?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{sql}: {n}")))
    }
}

fn pg_error(err: postgres::Error) -> StoreError {
    // The server's message says what is wrong; the error's own Display is often only "db error".
    let (context, transient) = match err.as_db_error() {
        // Classes 08 (connection), 40 (serialization, deadlock), 53 (resources: disk, memory,
        // connections), 57 (operator intervention: a shutdown, a terminated backend) and 58
        // (system error) pass; the rest (constraints, syntax, data) will not.
        Some(db) => {
            let code = db.code().code();
            let class = code.get(..2).unwrap_or("");
            (
                format!("{code}: {}", db.message()),
                matches!(class, "08" | "40" | "53" | "57" | "58"),
            )
        }
        // No server answer: the connection broke or could not be made. The error's Display
        // is the context; its cause (a TLS refusal, an I/O error) is the source, so the chain
        // says each once.
        None => {
            let context = err.to_string();
            return StoreError::Database {
                context,
                source: err
                    .into_source()
                    .map(|s| s as Box<dyn std::error::Error + Send + Sync>),
                transient: true,
            };
        }
    };
    StoreError::Database {
        context,
        source: Some(Box::new(err)),
        transient,
    }
}

/// Turns the shared SQL into PostgreSQL's: `?N` and `?` placeholders become `$N`, SQLite's
/// `INDEXED BY` hints go, and the lock markers become row locks.
fn rewrite(sql: &str) -> String {
    let sql = sql
        .replace("/*skip locked*/", "FOR UPDATE SKIP LOCKED")
        .replace("/*lock*/", "FOR UPDATE");
    let mut out = String::with_capacity(sql.len() + 8);
    let mut anonymous = 0;
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(d) = chars.next_if(char::is_ascii_digit) {
                        out.push(d);
                    }
                } else {
                    anonymous += 1;
                    out.push_str(&anonymous.to_string());
                }
            }
            _ => out.push(c),
        }
    }
    // `INDEXED BY name` (SQLite's planner hint) has no PostgreSQL equivalent.
    while let Some(start) = out.find("INDEXED BY ") {
        let rest = &out[start + "INDEXED BY ".len()..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        out.replace_range(start..start + "INDEXED BY ".len() + name_len, "");
    }
    out
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
            },
            Value::Text(text) => text.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn from_pg(row: &postgres::Row, index: usize) -> Result<Value, StoreError> {
    let ty = row.columns()[index].type_().clone();
    let value = |e: postgres::Error| StoreError::Corrupt(format!("column {index}: {e}"));
    Ok(match ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(index)
            .map_err(value)?
            .map_or(Value::Null, Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map_err(value)?
            .map_or(Value::Null, |n| Value::Int(n.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)
            .map_err(value)?
            .map_or(Value::Null, |n| Value::Int(n.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)
            .map_err(value)?
            .map_or(Value::Null, |b| Value::Int(b.into())),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => row
            .try_get::<_, Option<String>>(index)
            .map_err(value)?
            .map_or(Value::Null, Value::Text),
        Type::VOID => Value::Null,
        other => {
            return Err(StoreError::Corrupt(format!(
                "column {index} has type {other}, which the store does not read"
            )));
        }
    })
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn begin(&self) -> Result<i64, StoreError> {
        // Both in one simple-protocol message: the explicit BEGIN's block outlasts it.
        let messages = self
            .client
            .borrow_mut()
            .simple_query("BEGIN; SELECT CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)")
            .map_err(|e| self.fail(e))?;
        messages
            .iter()
            .find_map(|message| match message {
                postgres::SimpleQueryMessage::Row(row) => row.get(0),
                _ => None,
            })
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or_else(|| StoreError::permanent("the server did not say what time it is", None))
    }

    fn next_savepoint(&self) -> Result<(), StoreError> {
        self.client
            .borrow_mut()
            .batch_execute("RELEASE op; SAVEPOINT op")
            .map_err(|e| self.fail(e))
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        self.client
            .borrow_mut()
            .execute(&statement, &params)
            .map_err(|e| self.fail(e))
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let rows = self
            .client
            .borrow_mut()
            .query(&statement, &params)
            .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| from_pg(row, i))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })
            .collect()
    }

    fn is_broken(&self) -> bool {
        self.broken.get() || self.client.borrow().is_closed()
    }
}

/// The listener thread: publishes every node's events to this node's subscribers, in `seq`
/// order, after each `NOTIFY` (and every [`FALLBACK_POLL`] in case one was lost). Reconnects
/// with backoff; after a reconnect it catches up from the table, so nothing is skipped.
fn listen_loop(
    target: &Target,
    events: &broadcast::Sender<Event>,
    stop: &AtomicBool,
    mut last: u64,
) {
    let mut delay = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        let conn = match PgConn::connect(target) {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "event listener cannot connect");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        if let Err(err) = conn
            .client
            .borrow_mut()
            .batch_execute("LISTEN drover_events")
        {
            tracing::warn!(error = %err, "event listener cannot LISTEN");
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            if let Err(err) = publish_since(&conn, events, &mut last) {
                tracing::warn!(error = %err, "event listener lost its connection; reconnecting");
                break;
            }
            let mut client = conn.client.borrow_mut();
            let mut notifications = client.notifications();
            // Any number of NOTIFYs are answered by one read of the table.
            let first = notifications.timeout_iter(FALLBACK_POLL).next();
            let drained = first.and_then(|_| notifications.iter().count());
            if let Err(err) = drained {
                tracing::warn!(error = %err, "event listener lost its connection; reconnecting");
                break;
            }
        }
    }
}

/// Publishes the events after `last`, in order.
fn publish_since(
    conn: &PgConn,
    events: &broadcast::Sender<Event>,
    last: &mut u64,
) -> Result<(), StoreError> {
    loop {
        let after = i64::try_from(*last).unwrap_or(i64::MAX);
        let page = (conn as &dyn Conn).query_map(
            "SELECT seq, at, kind, job_id, attempt, state, node, reason FROM events
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            params![after, LISTEN_PAGE],
            crate::sql::event_row,
        )?;
        let full = page.len() as i64 == LISTEN_PAGE;
        for event in page {
            *last = event.seq;
            let _ = events.send(event);
        }
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
