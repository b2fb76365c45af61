//! The drover supervisor: it owns job processes and nothing else.
//!
//! The node talks to it only through messages — [`Command`]s in, [`Report`]s out — and shares no
//! mutable state with it. That keeps the boundary cheap to move: the supervisor is planned to
//! become its own long-lived process (as slurmstepd or Nomad's executor are), so that jobs survive
//! a restart of the node daemon. The supervisor never writes the store; it reports, and the node
//! records.
//!
//! # The life of an attempt
//! 1. [`Command::Start`]: the supervisor creates the job's process in a **new process group**
//!    (`clone(CLONE_VM | CLONE_VFORK)` on Linux, `fork` elsewhere; see [`spawn`]). The child
//!    stops before `exec` at a *gate* and the supervisor sends [`Report::Spawned`] with its pid.
//! 2. The node writes the pid (= pgid) to disk, then sends [`Command::Release`] (or
//!    [`Command::Abort`]). Only then does the child `exec`. So the store always knows every
//!    process group that could exist: after a crash, none is unaccounted for. If the node dies
//!    while a child waits at the gate, the child dies with it (`PR_SET_PDEATHSIG` on Linux).
//! 3. The supervisor waits for the leader's exit without polling (pidfd on Linux, a blocking
//!    `wait4` thread elsewhere), enforces the timeout, and on [`Command::Stop`] or timeout runs
//!    the [kill ladder](ladder): SIGTERM to the group, `grace`, SIGKILL, then a check that no
//!    member is left.
//! 4. Leftover members of the group after the leader exits are killed the same way: no process
//!    outlives its job. Then [`Report::Exited`] carries the outcome and usage.
//!
//! Limits, whole-tree kill and whole-tree accounting come from a [`Containment`] backend chosen at
//! start (cgroup v2, cgroup v1 or rlimit; see [`contain`]). The child is placed in its attempt's
//! cell while it waits at the gate, so nothing it forks — `setsid` or not — is outside.
//!
//! Module map: [`supervisor`] routes commands to one task per attempt; [`spawn`] builds the gated
//! child; [`contain`] holds the backends; [`ladder`] kills trees; [`logs`] captures output;
//! [`host`] reads the machine's free memory and pressure; [`sys`] wraps the few syscalls;
//! [`orphan`] stops process groups left by a crashed node; [`wait`] watches for exits.

use std::path::PathBuf;
use std::time::Duration;

use drover_core::AttemptRef;
use serde::{Deserialize, Serialize};

pub mod contain;
pub mod host;
pub mod ladder;
pub mod logs;
pub mod orphan;
pub mod outdir;
pub mod owner;
pub mod session;
pub mod spawn;
pub mod supervisor;
pub mod sys;
pub mod wait;

/// The `PATH` of a job that starts from an empty environment and names none, and where a
/// program is looked up when the job's environment has no `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub use contain::{BackendChoice, BackendKind, BackendReport, Containment, JobLimits};
pub use supervisor::{RESULT_FILE, Supervisor, SupervisorGone, SupervisorHandle};

/// Everything the supervisor needs to run one attempt. Plain data, so it can cross a process
/// boundary later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRequest {
    /// The attempt this process belongs to.
    pub attempt: AttemptRef,
    /// Program and arguments; `argv[0]` is searched in `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// Variables added to the supervisor's own environment (or, with `env_clear`, the whole
    /// environment).
    pub env: Vec<(String, String)>,
    /// Start from an empty environment instead of the supervisor's: the job gets `env` alone,
    /// and [`DEFAULT_PATH`] when `env` has no `PATH`.
    #[serde(default)]
    pub env_clear: bool,
    /// Variables of the supervisor's own environment the job must not inherit (the node's
    /// secrets, such as its token). `env` may still set them.
    #[serde(default)]
    pub env_remove: Vec<String>,
    /// Give the job a pseudo-terminal for stdout and stderr (both then go to the stdout log),
    /// so that programs that buffer output unless it goes to a terminal write line by line.
    #[serde(default)]
    pub pty: bool,
    /// Working directory; the supervisor's own when absent.
    pub cwd: Option<PathBuf>,
    /// Wall-clock limit, counted from `exec`.
    pub timeout: Duration,
    /// SIGTERM → SIGKILL gap of the kill ladder.
    pub grace: Duration,
    /// Where stdout goes.
    pub stdout_path: PathBuf,
    /// Where stderr goes.
    pub stderr_path: PathBuf,
    /// Bytes kept per stream; the rest is counted and dropped.
    pub log_limit: u64,
    /// Hard limits for the attempt's whole tree.
    pub limits: JobLimits,
    /// Stop the job (ending [`Ending::Stalled`]) after this long without output or a touch of
    /// `heartbeat_path`.
    pub stall: Option<Duration>,
    /// The file the job may touch to show it is alive (`$DROVER_HEARTBEAT_FILE`); the supervisor
    /// creates it before exec and removes it at the end.
    pub heartbeat_path: Option<PathBuf>,
    /// A signal sent to the whole tree some time before the timeout, so the job can save its
    /// progress.
    #[serde(default)]
    pub checkpoint: Option<CheckpointPlan>,
    /// The exit code that means "I saved my progress: run me again" ([`Ending::Checkpointed`]).
    #[serde(default)]
    pub checkpoint_exit_code: Option<i32>,
    /// The job's checkpoint directory (`$DROVER_CHECKPOINT_DIR`), kept across its attempts;
    /// created (mode 0700) before exec if missing.
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
    /// With a shared database, how long the job may run before its owner must have heard of a
    /// lease renewal: past it, the owner kills the tree without grace (fencing). `None` with the
    /// embedded store, where nothing else could run the job again.
    #[serde(default)]
    pub fence_in: Option<Duration>,
    /// The attempt's own directory (`$DROVER_OUTPUT_DIR`), created before exec. At the end it
    /// is removed if the job left it empty; a `result.json` in it is the job's result, which
    /// the node reads.
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    /// Take the result from the last line of stdout: at the end, unless the job wrote a
    /// `result.json` itself, that line is written there.
    #[serde(default)]
    pub result_stdout: bool,
    /// A file to write before exec, and its contents (`$DROVER_INPUTS`: what the jobs this one
    /// runs after gave).
    #[serde(default)]
    pub inputs: Option<(PathBuf, String)>,
    /// The owner opens the gate itself as soon as the child is in its cell, instead of waiting
    /// for [`Command::Release`]; the node records the pid afterwards. The cell, named by the
    /// attempt, is then the durable record that the attempt may have run: it exists before the
    /// child may `exec`, outlives a crash of the node and of the owner (only a reboot removes
    /// it, and then nothing of the attempt runs), and is removed only once the outcome is on
    /// disk — recorded by a node ([`Command::Ack`]) or written to the outcome file. Only with
    /// cgroup cells and a store that no other machine recovers from: another machine's reaper
    /// cannot look for a cell here.
    #[serde(default)]
    pub self_release: bool,
}

/// When and how a job is told to checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPlan {
    /// The signal number.
    pub signal: i32,
    /// How long before the timeout it is sent.
    pub before: Duration,
}

/// Why the node asks the supervisor to stop a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A user cancelled it.
    Cancel,
    /// The node is shutting down and the shutdown timeout ran out.
    Shutdown,
    /// The node lost the lease: another attempt may be about to run.
    LeaseLost,
}

/// Messages from the node. The first four are an attempt's life and are what a [`Supervisor`]
/// acts on; the rest concern owners and the [`owner::Executor`] handles them (a supervisor
/// ignores them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Fork the job and hold it at the gate; answer with [`Report::Spawned`] or, if it cannot
    /// even be forked, [`Report::Exited`].
    Start(Box<StartRequest>),
    /// The pid is on disk: let the held child `exec`.
    Release(AttemptRef),
    /// Do not run the held child after all (cancelled or fenced while starting).
    Abort(AttemptRef, StopReason),
    /// Stop a running job through the kill ladder.
    Stop(AttemptRef, StopReason),
    /// The attempt's outcome is recorded: its owner may forget it (and its outcome file go).
    /// A supervisor then removes the cell of a [`StartRequest::self_release`] attempt, which it
    /// kept as the record of the start until now.
    Ack(AttemptRef),
    /// These leases were renewed: each owner kills its tree (no grace) unless it hears of the
    /// next renewal within `fence_in` (`None`: no fencing, nothing else can rerun the job).
    Lease {
        /// The attempts.
        attempts: Vec<AttemptRef>,
        /// From now.
        fence_in: Option<Duration>,
    },
    /// Ask how much memory these attempts' trees use now ([`Report::Memory`] answers).
    ReadMemory(Vec<AttemptRef>),
    /// Stop whatever is left of an attempt whose owner is gone: its process group (if the
    /// leader's start time still matches) and its cell. [`Report::Cleaned`] answers.
    Clean {
        /// The attempt.
        attempt: AttemptRef,
        /// Its recorded leader pid = process group id.
        pid: Option<i32>,
        /// The leader's recorded start time.
        proc_start: Option<u64>,
        /// SIGTERM → SIGKILL gap.
        grace: Duration,
    },
    /// Kill and remove the cells a crash left, except those of `keep` (attempts whose owners
    /// still hold them).
    Sweep {
        /// The attempts to leave alone.
        keep: Vec<AttemptRef>,
    },
}

/// Messages from the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// The child exists in its own process group and waits at the gate.
    Spawned {
        /// The attempt.
        attempt: AttemptRef,
        /// Leader pid, which is also the process group id.
        pid: i32,
        /// The leader's start time as the OS counts it, to recognise a reused pid later.
        proc_start: Option<u64>,
    },
    /// The attempt is over and its whole tree is gone.
    Exited {
        /// The attempt.
        attempt: AttemptRef,
        /// What happened.
        outcome: Outcome,
    },
    /// The attempt's owner ended without reporting an outcome (it was killed): its tree may
    /// still run unsupervised. The node sends [`Command::Clean`] and records the attempt lost.
    OwnerDied {
        /// The attempt.
        attempt: AttemptRef,
    },
    /// The answer to [`Command::ReadMemory`].
    Memory {
        /// The attempt.
        attempt: AttemptRef,
        /// Bytes its tree uses now, where the backend can tell.
        bytes: Option<u64>,
    },
    /// The answer to [`Command::Clean`]: what the clean-up found and killed.
    Cleaned {
        /// The attempt.
        attempt: AttemptRef,
        /// Processes of the attempt were still alive and were killed.
        killed: usize,
        /// A process survived SIGKILL (should never be).
        survivors: bool,
    },
}

/// How an attempt ended, from the supervisor's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The leader exited with this code.
    Exited(i32),
    /// The leader died of this signal, not sent by drover.
    Signaled(i32),
    /// The timeout ran out; the ladder stopped it.
    TimedOut,
    /// The node asked for it to stop; the ladder stopped it.
    Stopped(StopReason),
    /// It could not be started; the OS error says why.
    SpawnFailed(String),
    /// It was held at the gate and never ran.
    Aborted(StopReason),
    /// It wrote nothing and touched no heartbeat for its stall period; the ladder stopped it.
    Stalled,
    /// The leader exited with the job's checkpoint exit code: it saved its progress and asks to
    /// be run again.
    Checkpointed(i32),
}

/// The outcome and usage of an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// How it ended.
    pub ending: Ending,
    /// The leader's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed the leader, when one did.
    pub signal: Option<i32>,
    /// Peak resident memory (the leader and the descendants it waited for), in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// User + system CPU time (the leader and the descendants it waited for), in milliseconds.
    pub cpu_time_ms: Option<u64>,
    /// Members of the group still alive after the leader ended, that the ladder had to kill.
    pub leftovers_killed: bool,
    /// Whether a member survived even SIGKILL within the verification window (should never be).
    pub survivors: bool,
    /// The kernel's OOM killer killed a process of the tree (it hit its memory limit).
    pub oom_killed: bool,
    /// A fork failed because the tree was at its pids limit.
    pub pids_limited: bool,
    /// When the attempt was over (its tree gone), in milliseconds since the Unix epoch: the
    /// owner's clock, which keeps running while no node records anything.
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
    /// Output that did not reach its log file (a full disk, or the log limit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_cuts: Vec<drover_core::LogCut>,
}

impl Outcome {
    /// An outcome with no process behind it.
    pub fn without_process(ending: Ending) -> Self {
        Self {
            ending,
            exit_code: None,
            signal: None,
            peak_memory_bytes: None,
            cpu_time_ms: None,
            leftovers_killed: false,
            survivors: false,
            oom_killed: false,
            pids_limited: false,
            ended_at_ms: None,
            log_cuts: Vec::new(),
        }
    }
}

/// How long the ladder keeps checking that SIGKILL emptied the group before reporting survivors.
pub const KILL_VERIFY_WINDOW: Duration = Duration::from_secs(5);
