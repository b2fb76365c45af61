//! The read side of a job: what the store returns and the API shows.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::reason::Reason;
use crate::spec::JobSpec;
use crate::state::JobState;

/// A job's id: a UUID v7, so ids sort by submit time.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// Wraps a UUID minted by the caller (the store mints v7 ids at submit).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A node's stable id (kept in its data dir).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fencing token of one attempt: a completion or heartbeat is accepted only for the attempt
/// the store currently considers live.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub struct AttemptRef {
    /// The job.
    pub job_id: JobId,
    /// The attempt number, starting at 1.
    pub attempt: u32,
}

impl fmt::Display for AttemptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.job_id, self.attempt)
    }
}

/// Which stream of a job's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`: as the API, the CLI and the log files' names spell it.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Output of an attempt that did not all reach its log file: the disk refused a write (the
/// rest was read and dropped, so the job never blocked), or the log limit was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogCut {
    /// Which stream.
    pub stream: Stream,
    /// Bytes the job wrote to it.
    pub written_bytes: u64,
    /// Bytes its log file kept.
    pub kept_bytes: u64,
    /// The error that cut it (`No space left on device (os error 28)`); none when the log
    /// limit did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One attempt at running a job, kept forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The node that claimed it.
    pub node: NodeId,
    /// `starting` or `running` while live, else the outcome.
    pub state: JobState,
    /// When the node claimed it.
    pub claimed_at: DateTime<Utc>,
    /// When its process was allowed to exec.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The lease: past this instant, a live attempt with no heartbeat is presumed lost.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The leader's pid (also the process group id).
    pub pid: Option<i32>,
    /// The exit code, when it exited on its own.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Why it ended.
    pub reason: Option<Reason>,
    /// Peak resident memory of the tree, in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// User + system CPU time of the tree, in milliseconds.
    pub cpu_time_ms: Option<u64>,
    /// The memory limit this attempt ran under, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// Output that did not reach its log file, per stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_cuts: Vec<LogCut>,
    /// Memory and CPU sampled from its cell while it ran (see [`crate::usage`]). Lists give
    /// the latest attempt's only, thinned for a sparkline; one job's record gives them whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_series: Option<crate::UsageSeries>,
}

/// A job as the API shows it: its spec, where it is, and every attempt.
///
/// The top-level outcome fields (`exit_code`, `signal`, `reason`, `node`, times, usage) are those
/// of the latest attempt, so scripts need not dig into `attempts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRecord {
    /// Time-ordered id.
    pub id: JobId,
    /// The job's number: short, for people to type (`drover logs 42`), given in submit order
    /// and never reused. Commands take it wherever they take an id.
    pub number: u64,
    /// The display name.
    pub name: String,
    /// The current state.
    pub state: JobState,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The latest attempt number (0 before the first claim).
    pub attempt: u32,
    /// The node of the latest attempt.
    pub node: Option<NodeId>,
    /// Exit code of the latest attempt.
    pub exit_code: Option<i32>,
    /// Terminating signal of the latest attempt.
    pub signal: Option<i32>,
    /// Why the latest attempt (or the job, if it never ran) ended.
    pub reason: Option<Reason>,
    /// When the job was submitted.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached its current terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Peak memory of the latest attempt.
    pub peak_memory_bytes: Option<u64>,
    /// CPU time of the latest attempt.
    pub cpu_time_ms: Option<u64>,
    /// A cancel was asked for and is being carried out.
    pub cancel_requested: bool,
    /// The spec as stored (defaults filled in).
    pub spec: JobSpec,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
    /// For a `scheduled` job: when it becomes `queued` (a delay, or a backoff between attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// For a job that has not started (blocked or queued): what it waits for, when the node
    /// knows (`queue sage is paused`, `blocked on 1 of 2 jobs: 41 (running)`, `waiting for 24
    /// GiB memory, 9.0 GiB free`). Filled in by the node that answers, not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Its group and its place in it, for a member of a sweep or flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<crate::group::Membership>,
    /// What its latest attempt gave as its result (`$DROVER_OUTPUT_DIR/result.json`, or the
    /// last line of stdout with `result_stdout`). Lists leave it out; one job's record and a
    /// group's results carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl JobRecord {
    /// The latest attempt, if the job was ever claimed.
    pub fn current_attempt(&self) -> Option<&AttemptRecord> {
        self.attempts.last()
    }
}
