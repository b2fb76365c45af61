//! The PostgreSQL schema and its migrations, tracked in `drover_schema`.
//!
//! The tables mirror SQLite's column for column (text ids, integer ms times, integer flags), so
//! that one body of SQL serves both; every integer is BIGINT so that binding never narrows.
//! Nodes starting at once migrate one at a time, under an advisory lock.

use postgres::Client;

use super::pg_error;
use crate::StoreError;

/// The advisory lock key that serializes migrations across nodes ("drover" in ASCII).
const MIGRATION_LOCK: i64 = 0x6472_6f76_6572;

/// Each entry migrates from version `i` to `i + 1`. Append only; never edit a shipped migration.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,      -- UUID v7: sorts by submit time
    name             TEXT NOT NULL,
    state            TEXT NOT NULL,
    priority         BIGINT NOT NULL,
    spec             TEXT NOT NULL,         -- JSON JobSpec, defaults filled in
    attempt          BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    reason           TEXT,
    created_at       BIGINT NOT NULL,       -- ms since the epoch, UTC
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    not_before       BIGINT,                -- set while `scheduled`
    idempotency_key  TEXT,
    dismissed        BIGINT NOT NULL DEFAULT 0,
    queue            TEXT NOT NULL DEFAULT 'default'
);
-- The claim reads this index from its first entry: cost stays flat however long the queue.
CREATE INDEX jobs_claim ON jobs (priority DESC, id) WHERE state = 'queued';
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_queue_live ON jobs (queue) WHERE state IN ('starting', 'running');
CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_due ON jobs (not_before) WHERE state = 'scheduled';
CREATE INDEX jobs_dlq ON jobs (id) WHERE state IN ('failed', 'timed_out', 'lost') AND dismissed = 0;

CREATE TABLE attempts (
    job_id            TEXT NOT NULL REFERENCES jobs (id),
    attempt           BIGINT NOT NULL,
    node              TEXT NOT NULL,
    state             TEXT NOT NULL,
    claimed_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    lease_expires_at  BIGINT,
    pid               BIGINT,
    proc_start        BIGINT,
    exit_code         BIGINT,
    signal            BIGINT,
    reason            TEXT,
    peak_memory_bytes BIGINT,
    cpu_time_ms       BIGINT,
    memory_limit      BIGINT,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX attempts_live ON attempts (node) WHERE state IN ('starting', 'running');

CREATE TABLE events (
    seq      BIGINT PRIMARY KEY,   -- from event_seq, under its row lock: commit order
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    attempt  BIGINT,
    state    TEXT NOT NULL,
    node     TEXT,
    reason   TEXT
);
-- The last seq handed out (kept when events are pruned).
CREATE TABLE event_seq (last BIGINT NOT NULL);
INSERT INTO event_seq VALUES (0);

CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    paused      BIGINT NOT NULL DEFAULT 0,
    concurrency BIGINT
);

CREATE TABLE deps (
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    after_id TEXT NOT NULL REFERENCES jobs (id),
    PRIMARY KEY (job_id, after_id)
);
CREATE INDEX deps_after ON deps (after_id);

-- The nodes of the cluster, written by their heartbeats.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    labels       TEXT NOT NULL,      -- JSON object
    url          TEXT,               -- its API, where other nodes read its jobs' logs
    capacity     TEXT NOT NULL,      -- JSON Resources
    slots        BIGINT NOT NULL,
    load         TEXT NOT NULL,      -- JSON NodeLoad at the last heartbeat
    state        TEXT NOT NULL,      -- alive | draining | dead
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
"#,
    r#"
-- A job's number: short, typed by people (`drover logs 42`), given in submit order (the
-- sequence hands them out, so nodes submitting at once never share one).
CREATE SEQUENCE jobs_seq_numbers;
ALTER TABLE jobs ADD COLUMN seq BIGINT;
UPDATE jobs SET seq = numbered.n
    FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM jobs) AS numbered
    WHERE jobs.id = numbered.id;
SELECT setval('jobs_seq_numbers', COALESCE((SELECT MAX(seq) FROM jobs), 0) + 1, false);
ALTER TABLE jobs ALTER COLUMN seq SET DEFAULT nextval('jobs_seq_numbers');
CREATE UNIQUE INDEX jobs_seq ON jobs (seq);
CREATE INDEX jobs_name ON jobs (name);
"#,
    r#"
-- #15: groups (a sweep's or a flow's jobs), results, notices. A group's number comes from the
-- jobs' sequence, so a number names one job or one group, never both.
CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,        -- sweep | flow
    steps      TEXT NOT NULL,        -- JSON [GroupStep]
    notify     TEXT,                 -- command run when the group ends
    notified   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX groups_seq ON groups (seq);
CREATE INDEX groups_name ON groups (name);
ALTER TABLE jobs ADD COLUMN group_id TEXT;
ALTER TABLE jobs ADD COLUMN member TEXT;                -- JSON Membership
ALTER TABLE jobs ADD COLUMN result TEXT;                -- JSON, the latest result given
ALTER TABLE jobs ADD COLUMN notified BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_group ON jobs (group_id, seq) WHERE group_id IS NOT NULL;
"#,
    r#"
-- #16: output that did not reach an attempt's log files (a full disk, the log limit).
ALTER TABLE attempts ADD COLUMN log_cuts TEXT;          -- JSON [LogCut], NULL if none
"#,
    r#"
-- #16: the claim walks a narrow table of the queued jobs instead of the partial index on jobs.
-- Under a snapshot some session holds (an idle transaction, a long report), nothing that
-- earlier claims left behind can be vacuumed, and a walk from the front of the queue visits
-- all of it: through jobs_claim, one wide jobs page per ten claimed jobs; here, one small page
-- per ~150 (a row is two numbers and a queue name, keyed by the job's number). A trigger keeps
-- the table exact, so no write path can forget it. Claim order: priority, then job number.
CREATE TABLE ready (
    seq      BIGINT PRIMARY KEY,   -- jobs.seq
    priority BIGINT NOT NULL,
    queue    TEXT NOT NULL
);
CREATE INDEX ready_order ON ready (priority DESC, seq);
CREATE FUNCTION drover_ready() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM ready WHERE seq = OLD.seq;
    ELSIF NEW.state = 'queued' THEN
        INSERT INTO ready (seq, priority, queue) VALUES (NEW.seq, NEW.priority, NEW.queue)
        ON CONFLICT (seq) DO UPDATE SET priority = EXCLUDED.priority, queue = EXCLUDED.queue
        WHERE (ready.priority, ready.queue) IS DISTINCT FROM (EXCLUDED.priority, EXCLUDED.queue);
    ELSIF TG_OP = 'UPDATE' AND OLD.state = 'queued' THEN
        DELETE FROM ready WHERE seq = OLD.seq;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_ready AFTER INSERT OR DELETE OR UPDATE OF state, priority, queue ON jobs
    FOR EACH ROW EXECUTE FUNCTION drover_ready();
INSERT INTO ready (seq, priority, queue) SELECT seq, priority, queue FROM jobs WHERE state = 'queued';
DROP INDEX jobs_claim;
"#,
    r#"
-- #17: memory and CPU sampled while an attempt runs, bounded (drover_core::UsageSeries).
ALTER TABLE attempts ADD COLUMN usage_series TEXT;      -- JSON UsageSeries, NULL if none
"#,
    r#"
-- #18: while a queue is paused, the claim walks each other queue's ready jobs by this index
-- (and finds the queues by skipping through it), instead of walking past every paused job.
CREATE INDEX ready_queue ON ready (queue, priority DESC, seq);
"#,
];

/// Brings the database to the latest schema, in one transaction, one node at a time.
pub(super) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg_error)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS drover_schema (version BIGINT NOT NULL)")
        .map_err(pg_error)?;
    let current: i64 = match tx
        .query_opt("SELECT version FROM drover_schema", &[])
        .map_err(pg_error)?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO drover_schema VALUES (0)", &[])
                .map_err(pg_error)?;
            0
        }
    };
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this drover ({}); upgrade drover",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).map_err(pg_error)?;
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        tx.execute("UPDATE drover_schema SET version = $1", &[&version])
            .map_err(pg_error)?;
    }
    tx.commit().map_err(pg_error)
}
