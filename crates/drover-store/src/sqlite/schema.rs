//! The SQLite schema and its migrations, applied in order and tracked by `PRAGMA user_version`.

use rusqlite::Connection;

use crate::StoreError;

/// Each entry migrates from version `i` to `i + 1`. Append only; never edit a shipped migration.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,      -- UUID v7: sorts by submit time
    name             TEXT NOT NULL,
    state            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    spec             TEXT NOT NULL,         -- JSON JobSpec, defaults filled in
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    reason           TEXT,                  -- why it ended, when no attempt says it
    created_at       INTEGER NOT NULL,      -- ms since the epoch, UTC
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
) STRICT;

-- The claim reads this index from its first entry: cost stays flat however long the queue.
CREATE INDEX jobs_claim ON jobs (priority DESC, id) WHERE state = 'queued';
CREATE INDEX jobs_state ON jobs (state, id);

CREATE TABLE attempts (
    job_id            TEXT NOT NULL REFERENCES jobs (id),
    attempt           INTEGER NOT NULL,
    node              TEXT NOT NULL,
    state             TEXT NOT NULL,        -- starting | running | the outcome
    claimed_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    lease_expires_at  INTEGER,
    pid               INTEGER,              -- leader pid = process group id
    proc_start        INTEGER,              -- leader start time, to tell a reused pid apart
    exit_code         INTEGER,
    signal            INTEGER,
    reason            TEXT,
    peak_memory_bytes INTEGER,
    cpu_time_ms       INTEGER,
    PRIMARY KEY (job_id, attempt)
) STRICT, WITHOUT ROWID;

CREATE INDEX attempts_live ON attempts (node) WHERE state IN ('starting', 'running');

-- AUTOINCREMENT: a seq is never reused, even after old events are pruned.
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    attempt  INTEGER,
    state    TEXT NOT NULL,
    node     TEXT,
    reason   TEXT
) STRICT;
"#,
    r#"
-- #6: scheduled jobs (delays, backoff between attempts), idempotency keys, the dead-letter queue.
ALTER TABLE jobs ADD COLUMN not_before INTEGER;        -- ms; set while `scheduled`
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE jobs ADD COLUMN dismissed INTEGER NOT NULL DEFAULT 0;  -- left the dead-letter queue
-- Named queues: a job's queue, and each queue's settings (a queue with no row has none).
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    concurrency INTEGER                      -- most starting + running at once; NULL: no limit
) STRICT;
CREATE INDEX jobs_queue_live ON jobs (queue) WHERE state IN ('starting', 'running');

-- Dependencies: `job_id` runs only after every `after_id` succeeded.
CREATE TABLE deps (
    job_id   TEXT NOT NULL REFERENCES jobs (id),
    after_id TEXT NOT NULL REFERENCES jobs (id),
    PRIMARY KEY (job_id, after_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX deps_after ON deps (after_id);

-- The memory limit each attempt ran under (it grows after an OOM kill with --memory-max).
ALTER TABLE attempts ADD COLUMN memory_limit INTEGER;

CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The timer reads the earliest due job from here.
CREATE INDEX jobs_due ON jobs (not_before) WHERE state = 'scheduled';
-- The dead-letter queue: ended unsuccessfully after its retries, not retried or dismissed.
CREATE INDEX jobs_dlq ON jobs (id) WHERE state IN ('failed', 'timed_out', 'lost') AND dismissed = 0;
"#,
    r#"
-- #8: the nodes of a cluster (one row on a single machine), written by their heartbeats.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    labels       TEXT NOT NULL,      -- JSON object
    url          TEXT,               -- its API, where other nodes read its jobs' logs
    capacity     TEXT NOT NULL,      -- JSON Resources
    slots        INTEGER NOT NULL,
    load         TEXT NOT NULL,      -- JSON NodeLoad at the last heartbeat
    state        TEXT NOT NULL,      -- alive | draining | dead
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) STRICT;
"#,
    r#"
-- A job's number: short, typed by people (`drover logs 42`), given in submit order.
ALTER TABLE jobs ADD COLUMN seq INTEGER;
UPDATE jobs SET seq = numbered.n
    FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM jobs) AS numbered
    WHERE jobs.id = numbered.id;
CREATE UNIQUE INDEX jobs_seq ON jobs (seq);
CREATE INDEX jobs_name ON jobs (name);
"#,
    r#"
-- #15: groups (a sweep's or a flow's jobs), results, notices. A group's number is taken from
-- the jobs' numbers (its members come right after it), so a number names one job or one group.
CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,        -- sweep | flow
    steps      TEXT NOT NULL,        -- JSON [GroupStep]
    notify     TEXT,                 -- command run when the group ends
    notified   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX groups_seq ON groups (seq);
CREATE INDEX groups_name ON groups (name);
ALTER TABLE jobs ADD COLUMN group_id TEXT;
ALTER TABLE jobs ADD COLUMN member TEXT;                -- JSON Membership
ALTER TABLE jobs ADD COLUMN result TEXT;                -- JSON, the latest result given
ALTER TABLE jobs ADD COLUMN notified INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_group ON jobs (group_id, seq) WHERE group_id IS NOT NULL;
"#,
    r#"
-- #16: output that did not reach an attempt's log files (a full disk, the log limit).
ALTER TABLE attempts ADD COLUMN log_cuts TEXT;          -- JSON [LogCut], NULL if none
"#,
    r#"
-- #17: memory and CPU sampled while an attempt runs, bounded (drover_core::UsageSeries).
ALTER TABLE attempts ADD COLUMN usage_series TEXT;      -- JSON UsageSeries, NULL if none
"#,
    r#"
-- #18: while a queue is paused, the claim walks each other queue's queued jobs by this index
-- (and finds the queues by skipping through it), instead of walking past every paused job.
CREATE INDEX jobs_claim_queue ON jobs (queue, priority DESC, id) WHERE state = 'queued';
"#,
];

/// Brings the database to the latest schema, one transaction per migration.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this drover ({}); upgrade drover",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
