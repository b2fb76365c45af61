//! Durable job state for drover.
//!
//! [`Store`] is the one interface the node uses to read and change jobs. Every method that changes
//! state is ONE transaction that also appends its [`Event`]s, numbered by a global, monotonically
//! increasing `seq` (design.md invariant 2). Attempts carry leases from the first claim, and
//! completion is fenced by `(job_id, attempt)` (invariant 3), so the same trait serves one node on
//! SQLite and many nodes sharing one PostgreSQL database.
//!
//! [`SqlStore`] implements it once for both databases: SQLite, the embedded default
//! ([`SqlStore::sqlite`]), and PostgreSQL, shared by many nodes ([`SqlStore::postgres`]). The
//! `conformance` module (feature `conformance`) holds the behavioural tests every backend must
//! pass; both run them.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drover_core::{
    Admission, AttemptRef, Event, JobId, JobRecord, JobSpec, JobState, NodeId, NodeInfo, NodeLoad,
    NodeRecord, NodeState, Reason, TransitionError,
};
use tokio::sync::broadcast;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod postgres;
mod sql;
mod sqlite;
#[cfg(any(test, feature = "conformance"))]
pub mod testing;

pub use sql::SqlStore;

/// A driver's error, kept as the source of a [`StoreError::Database`].
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store.
///
/// [`StoreError::is_transient`] says which errors may go away if the same call is made again
/// (a lost connection, a busy or full database, a failed commit): callers that must get an
/// answer (recording how an attempt ended) retry those and give up at once on the rest.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation.
    #[error("database error: {context}")]
    Database {
        /// What failed, in words (for a driver error, what the database said).
        context: String,
        /// The driver's error, when one caused it.
        #[source]
        source: Option<DriverError>,
        /// Whether the same call may succeed later.
        transient: bool,
    },
    /// A row holds something this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The requested change breaks the transition table.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// A request names something that does not fit the stored state (a dependency on a job
    /// that does not exist, say). Nothing was stored.
    #[error("{field}: {message}")]
    Invalid {
        /// The request field at fault (`[2].after[0]`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The store's writer is gone (it is shutting down or crashed).
    #[error("the store is closed")]
    Closed,
    /// The database file could not be opened or prepared.
    #[error("cannot open the store at {path}: {detail}")]
    Open {
        /// The database path.
        path: String,
        /// What failed.
        detail: String,
    },
    /// SQLite's `quick_check` (or the file's header) says the database is damaged: serving it
    /// would answer with errors or, worse, with part of the queue.
    #[error(
        "the store {path} is damaged ({verdict}). Keep a copy of the data dir first; drover does not repair a store. Either put back a copy of drover.db from before the damage, or try what SQLite's shell can read (`sqlite3 {path} .recover`, https://sqlite.org/recovery.html), or move {path} away and start an empty queue with `drover serve --init`"
    )]
    Damaged {
        /// The database path.
        path: String,
        /// What the check said (its first lines).
        verdict: String,
    },
}

impl StoreError {
    /// A database failure that may go away on its own (the connection, the disk, a lock).
    pub fn transient(context: impl Into<String>, source: Option<DriverError>) -> Self {
        StoreError::Database {
            context: context.into(),
            source,
            transient: true,
        }
    }

    /// A database failure that the same call will meet again (a broken statement, a value
    /// that cannot be stored, an invariant the store found broken).
    pub fn permanent(context: impl Into<String>, source: Option<DriverError>) -> Self {
        StoreError::Database {
            context: context.into(),
            source,
            transient: false,
        }
    }

    /// Whether making the same call again may succeed. Only database failures the driver
    /// calls temporary are; a corrupt row, an illegal transition, an invalid request, a closed
    /// store and a store that cannot open are not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Database {
                transient: true,
                ..
            }
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        // Busy, locked, I/O and a full disk pass; a constraint or a bad statement does not.
        let transient = matches!(
            err.sqlite_error_code(),
            Some(
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::CannotOpen
                    | ErrorCode::OutOfMemory
            )
        );
        StoreError::Database {
            context: err.to_string(),
            source: Some(Box::new(err)),
            transient,
        }
    }
}

/// A claimed attempt: the node now holds a lease on it and must start it or give it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The fencing token.
    pub attempt: AttemptRef,
    /// What to run.
    pub spec: JobSpec,
    /// The lease, renewed by heartbeat.
    pub lease_expires_at: DateTime<Utc>,
    /// For a job that runs after others: each of them as it ended, with its result.
    pub inputs: Vec<drover_core::Input>,
}

pub use drover_core::QueueInfo;

/// What a request to change one job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Done; the job is now in this state.
    Done(JobState),
    /// The job is in a state where the change does not apply.
    NotApplicable(JobState),
    /// No such job.
    NotFound,
}

/// How many queued jobs a claim looks at beyond the number it may take, to find ones that fit.
pub const ADMISSION_WINDOW: usize = 64;

/// What one claim took, and what it left waiting for resources.
#[derive(Debug, Clone, Default)]
pub struct ClaimBatch {
    /// The jobs claimed, in claim order.
    pub claims: Vec<Claim>,
    /// Queued jobs admission passed over, with what each waits for (`waiting for 24 GiB
    /// memory, 9 GiB free`).
    pub passed_over: Vec<(JobId, String)>,
}

/// How the store answered a request to mark a `starting` attempt `running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartVerdict {
    /// The pid is on disk; the process may exec.
    Run,
    /// A cancel arrived while it was starting: do not exec; complete it as cancelled.
    Cancelled,
    /// The attempt is no longer the live one (fenced): do not exec.
    Stale,
}

/// The outcome of an attempt, as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// One of `succeeded`, `failed`, `timed_out`, `lost`, `cancelled`; for reason
    /// `checkpointed`, the store decides (`queued`, or `cancelled` if a cancel is pending).
    pub state: JobState,
    /// Why (always set).
    pub reason: Reason,
    /// Exit code, if the process exited on its own.
    pub exit_code: Option<i32>,
    /// Terminating signal, if any.
    pub signal: Option<i32>,
    /// Peak memory of the tree.
    pub peak_memory_bytes: Option<u64>,
    /// CPU time of the tree.
    pub cpu_time_ms: Option<u64>,
    /// When it ended, if earlier than it is recorded (its owner kept the outcome while no node
    /// listened): the attempt's and job's `finished_at`.
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The result it gave (JSON text, checked by the node), kept as the job's result.
    pub result: Option<String>,
    /// Output that did not reach its log files.
    pub log_cuts: Vec<drover_core::LogCut>,
    /// Its owner let it run without waiting for its pid record (a self-released start, whose
    /// cell is the record): it ran even if it is still `starting` in the store, and recording
    /// the ending then records the start first, so the job goes through `running` as always.
    /// Without it an ending of a `starting` attempt is one that never ran.
    pub started: bool,
}

impl AttemptOutcome {
    /// An outcome with no exit status or usage (lost, cancelled before exec, spawn failures).
    pub fn bare(state: JobState, reason: Reason) -> Self {
        Self {
            state,
            reason,
            exit_code: None,
            signal: None,
            peak_memory_bytes: None,
            cpu_time_ms: None,
            ended_at: None,
            result: None,
            log_cuts: Vec::new(),
            started: false,
        }
    }
}

/// How the caller of [`Store::give_back`] knows the attempt never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrun {
    /// The attempt is `starting` with no pid on record. The gate opens only after the pid is
    /// on disk, so the process never exec'd; the store checks this itself (recovery and the
    /// reaper, which cannot ask the process).
    NoPid,
    /// The node that holds the attempt stopped its process at the gate, before exec. The pid
    /// may be on record — a start that raced the stop, or whose commit's answer was lost to a
    /// database fault — but the node saw the process die unrun.
    StoppedAtGate,
}

/// How the store answered a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Recorded; the job is now in `state` (terminal, or `queued` again for a retry).
    Recorded {
        /// The job's state after the completion.
        state: JobState,
    },
    /// Refused: the attempt is not the job's live attempt any more. Nothing was changed.
    Stale {
        /// The job's latest attempt number.
        current_attempt: u32,
        /// The job's state.
        current_state: JobState,
    },
}

/// How the store answered a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was waiting and is now `cancelled`.
    Cancelled,
    /// The job has a live attempt; its node must stop the tree and then complete it.
    Requested {
        /// The live attempt.
        attempt: AttemptRef,
        /// The node that holds it.
        node: NodeId,
    },
    /// The job had already ended in this state; nothing changed.
    AlreadyEnded(JobState),
    /// No such job.
    NotFound,
}

/// A heartbeat's answer for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Lease extended.
    Held {
        /// A cancel is pending: stop the tree.
        cancel_requested: bool,
    },
    /// The attempt is no longer live (fenced): stop the tree, do not complete it.
    Lost,
}

/// A live attempt a node owns, as recovery needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAttempt {
    /// The fencing token.
    pub attempt: AttemptRef,
    /// `starting` or `running`.
    pub state: JobState,
    /// The recorded leader pid (= pgid), if it got that far.
    pub pid: Option<i32>,
    /// The leader's start time as the OS reports it, to tell a reused pid apart.
    pub proc_start: Option<u64>,
    /// A cancel is pending.
    pub cancel_requested: bool,
    /// The job's grace period.
    pub grace: Duration,
    /// What the job reserves on its node (for a node that re-attaches to it).
    pub resources: drover_core::Resources,
    /// Whether it holds one of its node's slots (all but a session's host).
    pub takes_slot: bool,
}

/// What one pass of the reaper did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Nodes it declared dead.
    pub dead_nodes: Vec<NodeId>,
    /// Attempts whose lease had expired, and the state each job is in now (`queued` again for a
    /// retry or an unrun claim given back, `lost` when its retries are spent).
    pub attempts: Vec<(AttemptRef, JobState)>,
    /// Another node was reaping; this pass did nothing.
    pub skipped: bool,
}

/// A queue's settings and how many of its attempts are live ([`Store::queue_limits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLimit {
    /// Its name.
    pub name: String,
    /// No new attempt starts while paused.
    pub paused: bool,
    /// Most attempts starting or running at once (none: no limit).
    pub concurrency: Option<u32>,
    /// Attempts starting or running now.
    pub running: u64,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs in one of these states (all when empty).
    pub states: Vec<JobState>,
    /// Only jobs in this queue.
    pub queue: Option<String>,
    /// Only jobs of this name.
    pub name: Option<String>,
    /// Only the job of this number.
    pub number: Option<u64>,
    /// Only jobs whose id starts with this (lower-case hex digits and dashes).
    pub id_prefix: Option<String>,
    /// Only jobs submitted at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only jobs older than this one (the next page of a listing, newest first).
    pub before: Option<JobId>,
    /// At most this many, newest first (a default applies when 0).
    pub limit: usize,
}

/// A group to store ([`Store::submit_group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    /// Its id, minted by the caller (its members' environments name it).
    pub id: drover_core::GroupId,
    /// Its name.
    pub name: String,
    /// Sweep or flow.
    pub kind: drover_core::GroupKind,
    /// Its steps as written.
    pub steps: Vec<drover_core::GroupStep>,
    /// Run when every member has ended.
    pub notify: Option<String>,
}

/// One member of a group to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    /// What to run (its `after` may name jobs outside the group; `after` below adds members).
    pub spec: JobSpec,
    /// Where it sits in the group.
    pub membership: drover_core::Membership,
    /// Earlier members (positions in the submit) it runs after.
    pub after: Vec<usize>,
}

/// What [`Store::submit_group`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedGroup {
    /// The group.
    pub id: drover_core::GroupId,
    /// Its number.
    pub number: u64,
    /// Its members' ids, in the order given.
    pub jobs: Vec<JobId>,
}

/// Which groups to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFilter {
    /// Only groups of this name.
    pub name: Option<String>,
    /// Only the group of this number.
    pub number: Option<u64>,
    /// Only groups whose id starts with this.
    pub id_prefix: Option<String>,
    /// Only groups with a member that has not ended.
    pub active: bool,
    /// Only groups submitted at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many, newest first (100 when 0).
    pub limit: usize,
}

/// What a notice is about ([`Store::take_notice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A job ended.
    Job(JobId),
    /// Every member of a group ended.
    Group(drover_core::GroupId),
}

/// How many jobs are in each state.
pub type StateCounts = Vec<(JobState, u64)>;

/// The durable state of jobs, attempts and events.
///
/// Implementations must make every state-changing method a single transaction that appends its
/// events, and publish those events to [`Store::subscribe`] only after commit.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores new jobs (all or none) as `queued`, returning their ids in input order.
    async fn submit(&self, specs: Vec<JobSpec>) -> Result<Vec<JobId>, StoreError>;

    /// One job with all its attempts (and its result).
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>, StoreError>;

    /// Stores a group and its members (all or none) in one change: the group takes the next
    /// number and its members the ones after it; a member's `after` positions become ids.
    async fn submit_group(
        &self,
        group: NewGroup,
        members: Vec<NewMember>,
    ) -> Result<SubmittedGroup, StoreError>;

    /// One group, with its members counted by state.
    async fn group(
        &self,
        id: drover_core::GroupId,
    ) -> Result<Option<drover_core::GroupRecord>, StoreError>;

    /// Groups matching `filter`, newest first.
    async fn groups(
        &self,
        filter: &GroupFilter,
    ) -> Result<Vec<drover_core::GroupRecord>, StoreError>;

    /// A group's members in submit order (which is sweep order), with their results if asked.
    async fn members(
        &self,
        id: drover_core::GroupId,
        results: bool,
    ) -> Result<Vec<JobRecord>, StoreError>;

    /// Takes the right to send a notice: `true` once, to one caller, when the job has ended (or
    /// every member of the group has); `false` to every other caller, and before then. Nodes
    /// that share a database thus send each notice once.
    async fn take_notice(&self, notice: Notice) -> Result<bool, StoreError>;

    /// Which of `ids` someone asked to be told of when they end — by their own `notify`, or
    /// their group's — and were not yet: what the notifier must look at when the node itself
    /// wants no notices. One query for many endings.
    async fn wanting_notice(&self, ids: Vec<JobId>) -> Result<Vec<JobId>, StoreError>;

    /// Jobs matching `filter`, newest first.
    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// How many jobs are in each state.
    async fn counts(&self) -> Result<StateCounts, StoreError>;

    /// Moves every `scheduled` job whose time has come to `queued` (event `Due`), and says when
    /// the next one is due. The node calls it when that time comes — a timer, not a poll.
    async fn promote_due(&self) -> Result<(usize, Option<DateTime<Utc>>), StoreError>;

    /// Changes the priority of a waiting (`queued`, `scheduled` or `blocked`) job.
    async fn set_priority(&self, id: JobId, priority: i32) -> Result<Change, StoreError>;

    /// Replaces the spec of a job in one of `states` (event `edited`): its name, priority,
    /// queue and retry budget follow the new spec. What fixes a job's place among others — its
    /// dependencies (`after`), its time (`at`) and its idempotency key — cannot change: a spec
    /// that changes them is refused, naming the field.
    async fn edit(
        &self,
        id: JobId,
        spec: JobSpec,
        states: &[JobState],
    ) -> Result<Change, StoreError>;

    /// The dead-letter queue: jobs that ended `failed`, `timed_out` or `lost` after their
    /// retries and were neither retried nor dismissed, newest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<JobRecord>, StoreError>;

    /// Re-queues ended unsuccessful jobs (dead letters, or cancelled ones) with a fresh retry
    /// budget; their attempts are kept and numbering goes on. `None` = every dead letter.
    async fn retry(&self, ids: Option<Vec<JobId>>) -> Result<Vec<(JobId, Change)>, StoreError>;

    /// Takes dead letters out of the dead-letter queue without running them again.
    async fn dismiss(&self, ids: Vec<JobId>) -> Result<Vec<(JobId, Change)>, StoreError>;

    /// Every queue that has settings or jobs that have not ended, with its load.
    async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError>;

    /// The queues that have settings, with how many of their attempts are starting or running:
    /// what decides whether a queued job may start, read without counting the waiting jobs (so
    /// it stays cheap however long the queue, for every job `GET /v1/jobs/{id}` explains).
    async fn queue_limits(&self) -> Result<Vec<QueueLimit>, StoreError>;

    /// Changes a queue's settings: `paused` if given, and `concurrency` if given (`Some(None)`
    /// removes the limit). Creates the queue's settings if it had none.
    async fn set_queue(
        &self,
        name: String,
        paused: Option<bool>,
        concurrency: Option<Option<u32>>,
    ) -> Result<QueueInfo, StoreError>;

    /// Whether any job has not ended (blocked, scheduled, queued, starting or running). One
    /// index probe, however long the queue: `wait --all` asks after every batch of events.
    async fn has_active(&self) -> Result<bool, StoreError>;

    /// Claims up to `max` of the best queued jobs (highest priority, then oldest) for `node`, in
    /// one transaction: each becomes `starting` with a new attempt holding a lease of `lease`.
    /// Fewer than `max` (possibly none) means the queue ran dry. Declared resources are not
    /// counted; see [`Store::claim_within`].
    async fn claim(
        &self,
        node: &NodeId,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        Ok(self
            .claim_within(node, lease, max, Admission::unlimited())
            .await?
            .claims)
    }

    /// Like [`Store::claim`], but walks the queue through `admission`: a job whose declared
    /// memory and CPUs do not fit what is free is left queued and reported in
    /// [`ClaimBatch::passed_over`]; one that has waited past the reservation time stops the walk.
    /// Looks at most [`ADMISSION_WINDOW`] jobs past `max`, so a claim stays cheap however long
    /// the queue.
    async fn claim_within(
        &self,
        node: &NodeId,
        lease: Duration,
        max: usize,
        admission: Admission,
    ) -> Result<ClaimBatch, StoreError>;

    /// Records the leader pid (= pgid) of a `starting` attempt and makes it `running` — unless it
    /// was cancelled or fenced meanwhile. `started_at`: when it started, if that was before this
    /// record (a self-released start, recorded with later writes); else the commit's time.
    async fn mark_running(
        &self,
        attempt: AttemptRef,
        pid: i32,
        proc_start: Option<u64>,
        started_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<StartVerdict, StoreError>;

    /// Extends the leases of `node`'s live attempts, and reports pending cancels and lost leases.
    async fn renew_leases(
        &self,
        node: &NodeId,
        attempts: &[AttemptRef],
        lease: Duration,
    ) -> Result<Vec<(AttemptRef, LeaseStatus)>, StoreError>;

    /// Ends an attempt. Accepted only while `attempt` is the job's live attempt; applies the
    /// retry budget (a failed, timed-out or lost attempt with retries left re-queues the job).
    async fn complete(
        &self,
        attempt: AttemptRef,
        outcome: AttemptOutcome,
    ) -> Result<Completion, StoreError>;

    /// Gives a claimed attempt back unrun, when `proof` shows it never exec'd (see [`Unrun`]).
    /// The attempt is kept with state `queued` and `reason`; the job is `queued` again (or
    /// `cancelled`, if a cancel is pending) and its retry budget is untouched. Anything else is
    /// refused as stale and changes nothing.
    async fn give_back(
        &self,
        attempt: AttemptRef,
        reason: Reason,
        proof: Unrun,
    ) -> Result<Completion, StoreError>;

    /// Cancels a job: at once if it is waiting, else by asking its node.
    async fn cancel(&self, id: JobId) -> Result<CancelOutcome, StoreError>;

    /// Stores the usage series sampled for `node`'s live attempts, each replacing the one
    /// stored. A series for an attempt that is no longer live on `node` is dropped: an ending
    /// keeps the last series written before it.
    async fn record_usage(
        &self,
        node: &NodeId,
        series: Vec<(AttemptRef, drover_core::UsageSeries)>,
    ) -> Result<(), StoreError>;

    /// The attempts `node` holds that are still `starting` or `running`.
    async fn live_attempts(&self, node: &NodeId) -> Result<Vec<LiveAttempt>, StoreError>;

    /// Events with `seq > after`, oldest first, at most `limit`.
    async fn events_since(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Deletes events committed before `before` (the retention). Returns how many went.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The oldest event still kept, and the newest ever given (0 if none): a resume after
    /// `seq` is complete only if `seq + 1 >= oldest` (or nothing is kept and `seq >= newest`).
    async fn event_bounds(&self) -> Result<(Option<u64>, u64), StoreError>;

    /// Events committed from now on, in commit order.
    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// How long the oldest snapshot another session holds on this database has been held:
    /// on PostgreSQL, a transaction left open that long keeps vacuum from removing the row
    /// versions every claim and ending since has left, and each claim walks more of them.
    /// `None` when there is none, and on SQLite (no other session can hold one).
    async fn oldest_snapshot(&self) -> Result<Option<Duration>, StoreError>;

    /// Records a node's heartbeat: what it is and how loaded. A node that was declared dead is
    /// alive again; a draining one stays draining. Returns its state.
    async fn heartbeat(&self, node: &NodeInfo, load: NodeLoad) -> Result<NodeState, StoreError>;

    /// Every node that ever heartbeat, by id.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Drains a node (it claims nothing more and finishes what it runs) or undrains it. `None`
    /// when there is no such node.
    async fn set_draining(
        &self,
        node: &NodeId,
        draining: bool,
    ) -> Result<Option<NodeRecord>, StoreError>;

    /// Declares nodes silent for longer than `ttl` dead, and ends every live attempt whose lease
    /// has expired: one that never started goes back to the queue unrun, one that ran is `lost`
    /// (`node_lost`) and retried by its policy. Safe because a node that cannot renew stops its
    /// jobs before its leases expire. One node reaps at a time; the others skip.
    async fn reap(&self, ttl: Duration) -> Result<Reaped, StoreError>;
}
