//! What a user asks for when submitting a job, and the checks that keep bad input out of the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resources::{Cpus, Resources};
use crate::retry::{Backoff, RETRY_ON_WORDS};
use crate::units::{HumanDuration, Size};

/// The timeout a job gets when its submitter names none. Every job runs with an explicit timeout:
/// the default is written into the stored spec at submit.
pub const DEFAULT_TIMEOUT: HumanDuration = HumanDuration::from_secs(24 * 3600);
/// The SIGTERM → SIGKILL gap a job gets when its submitter names none.
pub const DEFAULT_GRACE: HumanDuration = HumanDuration::from_secs(10);

/// A job as submitted: an argv (never a shell string unless the user runs `sh -c` themselves),
/// its environment and working directory, and how long it may run.
///
/// Its fields are written here and once more, as flags, in the CLI's `SpecArgs`; a test there
/// keeps the two equal. `Default` is every field at its default and an empty argv (which
/// [`JobSpec::validate`] refuses): give the argv with [`JobSpec::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"argv": ["/bin/sh", "-c", "echo hello"], "timeout": "1m", "memory": "64M"}))]
pub struct JobSpec {
    /// The program and its arguments. `argv[0]` is looked up in `PATH` if it has no slash.
    #[schema(min_items = 1)]
    pub argv: Vec<String>,
    /// A label for people; defaults to the program name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Variables set on top of the node's environment, or, with `env_clear`, all of the job's
    /// environment. The CLI captures the submitting shell's whole environment into it (stored
    /// with the job, like the rest of the spec).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Start from an empty environment instead of the node's: the job sees `env`, drover's own
    /// variables, and `PATH=/usr/local/bin:/usr/bin:/bin` when `env` has no `PATH`. The CLI
    /// sets it on every submit, since what it sends is a whole environment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub env_clear: bool,
    /// Run the job on a pseudo-terminal: stdout and stderr both go to it (and to the stdout
    /// log), so that Python, Sage, `gp` and the C library flush output line by line, as on a
    /// terminal, instead of in blocks when writing to a pipe.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pty: bool,
    /// Absolute working directory; the node's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// How long an attempt may run before the kill ladder stops it (state `timed_out`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// How long the kill ladder waits between SIGTERM and SIGKILL.
    #[serde(default = "default_grace")]
    pub grace: HumanDuration,
    /// Higher runs first; equal priorities run in submit order.
    #[serde(default)]
    pub priority: i32,
    /// How many more attempts after the first one fails, times out or is lost.
    #[serde(default)]
    pub retries: u32,
    /// Hard memory limit for the whole process tree (swap included where the backend can say
    /// so). Exceeding it ends the attempt `failed` with reason `memory_limit`. Also what
    /// admission reserves on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// With `memory`: after an attempt is killed for `memory_limit`, the next one gets twice the
    /// measured peak (at least twice the old limit), up to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<Size>,
    /// CPU quota for the whole tree (`0.5` = half a CPU's time). Also what admission reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    /// Most processes (and threads) the tree may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    /// Most open descriptors per process (`RLIMIT_NOFILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// Kill the job (reason `stalled`) when it writes no output and does not touch
    /// `$DROVER_HEARTBEAT_FILE` for this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<HumanDuration>,
    /// Do not start before this time: the job is `scheduled` until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Do not start until this long after submit. The node that takes the submit turns it into
    /// `at`; it is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HumanDuration>,
    /// The wait between attempts: `1s..5m` (exponential, full jitter) or `10s` (fixed). None:
    /// retry at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Which outcomes are retried: end states (`failed`, `timed_out`, `lost`) or reasons
    /// (`memory_limit`, `stalled`...). Default: `failed`, `timed_out`, `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
    /// The queue it waits in (`default` when absent). Queues can be paused and limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Jobs that must succeed first: until they have, this one is `blocked`. If one ends
    /// unsuccessfully for good, this one ends `failed` (`dependency_failed`); if one is
    /// cancelled, this one is cancelled too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<crate::job::JobId>,
    /// A second submit with the same key returns the first job's id and stores nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Labels a node must have to run it (`os=macos`); it waits for such a node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub require: crate::node::Labels,
    /// Sent to the whole tree `signal_before` ahead of the timeout, so the job can save its
    /// progress in `$DROVER_CHECKPOINT_DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_signal: Option<crate::reason::Signal>,
    /// How long before the timeout the checkpoint signal comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_before: Option<HumanDuration>,
    /// The exit code that means "I saved my progress: run me again". Such an attempt is
    /// requeued at once without using a retry. With `checkpoint_signal` it defaults to
    /// [`DEFAULT_CHECKPOINT_EXIT_CODE`]; without either, every exit code is an ordinary one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_exit_code: Option<i32>,
    /// Take the job's result from the last line of its stdout (which must be JSON) instead of
    /// `$DROVER_OUTPUT_DIR/result.json`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_stdout: bool,
    /// A command (run with `sh -c` on the node) when the job ends, with its id, number, name,
    /// state, reason and result in `DROVER_JOB_*` variables. Bounded by the node's notify
    /// timeout; it never holds up other jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// The part of a session this job is (set by `drover session start` and `drover exec`,
    /// never by hand): a session's host runs the interpreter, an exec runs one piece of code in
    /// it. See [`crate::session`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::session::SessionRole>,
}

/// The checkpoint exit code of a job with a checkpoint signal and no code of its own
/// (HTCondor's convention).
pub const DEFAULT_CHECKPOINT_EXIT_CODE: i32 = 85;

fn default_timeout() -> HumanDuration {
    DEFAULT_TIMEOUT
}

fn default_grace() -> HumanDuration {
    DEFAULT_GRACE
}

impl Default for JobSpec {
    /// Every field at its default, as a spec that leaves them all out is read.
    fn default() -> Self {
        // Deserialising `{"argv": []}` applies each field's serde default: the defaults are
        // written once, on the fields.
        serde_json::from_value(serde_json::json!({ "argv": [] }))
            .unwrap_or_else(|_| unreachable!("every field but argv has a default"))
    }
}

impl JobSpec {
    /// The memory limit for the attempt after one killed at `peak` bytes for exceeding its limit:
    /// twice the peak, at least twice the old limit, at most `memory_max`. `None` when the spec
    /// does not grow (no `memory_max`) or cannot grow any more.
    pub fn grown_memory(&self, peak: Option<u64>) -> Option<Size> {
        let (Some(limit), Some(max)) = (self.memory, self.memory_max) else {
            return None;
        };
        let wanted = limit
            .bytes()
            .saturating_mul(2)
            .max(peak.unwrap_or(0).saturating_mul(2));
        let grown = wanted.min(max.bytes());
        (grown > limit.bytes()).then_some(Size(grown))
    }

    /// A spec for `argv` with every other field at its default.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// The exit code that requeues this job without using a retry, if it has one.
    pub fn checkpoint_code(&self) -> Option<i32> {
        self.checkpoint_exit_code
            .or(self.checkpoint_signal.map(|_| DEFAULT_CHECKPOINT_EXIT_CODE))
    }

    /// The queue's name: the given one or `default`.
    pub fn queue_name(&self) -> &str {
        self.queue.as_deref().unwrap_or(DEFAULT_QUEUE)
    }

    /// Whether the job holds one of its node's slots while it runs (all but a session's host).
    pub fn takes_slot(&self) -> bool {
        crate::session::SessionRole::takes_slot(self.session.as_ref())
    }

    /// What admission reserves for this job on a node: its declared memory and CPUs.
    pub fn resources(&self) -> Resources {
        Resources::of_job(self.memory.map(Size::bytes), self.cpus)
    }

    /// The name people see: the given one, else the program's file name.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let program = self.argv.first().map(String::as_str).unwrap_or("");
        program.rsplit('/').next().unwrap_or(program).to_string()
    }

    /// Checks the spec against `limits`. The error names the offending field the way the API
    /// spells it (`argv[2]`, `env.PATH`, `timeout`).
    pub fn validate(&self, limits: &Limits) -> Result<(), SpecError> {
        if self.argv.is_empty() {
            return Err(SpecError::new("argv", "must name a program"));
        }
        if self.argv[0].is_empty() {
            return Err(SpecError::new("argv[0]", "must not be empty"));
        }
        match &self.session {
            Some(crate::session::SessionRole::Exec { .. }) if self.argv.len() != 1 => {
                return Err(SpecError::new(
                    "argv",
                    "of a session's exec must be the code, as one entry",
                ));
            }
            Some(
                crate::session::SessionRole::PoolParent { pool, .. }
                | crate::session::SessionRole::Pooled { pool },
            ) if !valid_queue_name(pool) => {
                return Err(SpecError::new(
                    "session.pool",
                    format!("`{pool}` is not a pool name: letters, digits, `-`, `_` and `.`"),
                ));
            }
            Some(crate::session::SessionRole::PoolParent { preload, .. })
                if preload.iter().any(|m| {
                    m.is_empty()
                        || !m
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
                }) =>
            {
                return Err(SpecError::new(
                    "session.preload",
                    "names modules: letters, digits, `_` and `.`",
                ));
            }
            _ => {}
        }
        if self.argv.len() > limits.max_argv_len {
            return Err(SpecError::new(
                "argv",
                format!(
                    "has {} entries; the limit is {}",
                    self.argv.len(),
                    limits.max_argv_len
                ),
            ));
        }
        let mut argv_bytes = 0;
        for (i, arg) in self.argv.iter().enumerate() {
            no_nul(&format!("argv[{i}]"), arg)?;
            argv_bytes += arg.len() + 1;
        }
        if argv_bytes > limits.max_argv_bytes {
            return Err(SpecError::new(
                "argv",
                format!(
                    "is {argv_bytes} bytes; the limit is {}",
                    limits.max_argv_bytes
                ),
            ));
        }
        if self.env.len() > limits.max_env_len {
            return Err(SpecError::new(
                "env",
                format!(
                    "has {} variables; the limit is {}",
                    self.env.len(),
                    limits.max_env_len
                ),
            ));
        }
        let mut env_bytes = 0;
        for (key, value) in &self.env {
            let field = format!("env.{key}");
            if key.is_empty() || key.contains('=') {
                return Err(SpecError::new(
                    field,
                    "a variable name must be non-empty and contain no `=`",
                ));
            }
            no_nul(&field, key)?;
            no_nul(&field, value)?;
            env_bytes += key.len() + value.len() + 2;
        }
        if env_bytes > limits.max_env_bytes {
            return Err(SpecError::new(
                "env",
                format!(
                    "is {env_bytes} bytes; the limit is {}",
                    limits.max_env_bytes
                ),
            ));
        }
        if let Some(name) = &self.name {
            if name.chars().count() > limits.max_name_len {
                return Err(SpecError::new(
                    "name",
                    format!("is longer than {} characters", limits.max_name_len),
                ));
            }
            no_nul("name", name)?;
        }
        if let Some(notify) = &self.notify {
            if notify.trim().is_empty() {
                return Err(SpecError::new("notify", "must be a command"));
            }
            if notify.len() > limits.max_argv_bytes {
                return Err(SpecError::new(
                    "notify",
                    format!("is longer than {} bytes", limits.max_argv_bytes),
                ));
            }
            no_nul("notify", notify)?;
        }
        if let Some(cwd) = &self.cwd {
            if !cwd.starts_with('/') {
                return Err(SpecError::new("cwd", "must be an absolute path"));
            }
            no_nul("cwd", cwd)?;
        }
        if self.timeout.get().is_zero() {
            return Err(SpecError::new("timeout", "must be greater than zero"));
        }
        if self.timeout.get() > limits.max_timeout.get() {
            return Err(SpecError::new(
                "timeout",
                format!("must be at most {}", limits.max_timeout),
            ));
        }
        if self.grace.get() > limits.max_grace.get() {
            return Err(SpecError::new(
                "grace",
                format!("must be at most {}", limits.max_grace),
            ));
        }
        if let Some(memory) = self.memory {
            if memory.bytes() < MIN_MEMORY.bytes() {
                return Err(SpecError::new(
                    "memory",
                    format!("must be at least {MIN_MEMORY} (the process itself needs that much)"),
                ));
            }
        }
        if let (Some(memory), Some(max)) = (self.memory, limits.max_memory) {
            if memory > max {
                return Err(SpecError::new(
                    "memory",
                    format!(
                        "asks for {} but the node has {} in all; it could never start",
                        crate::units::format_bytes(memory.bytes()),
                        crate::units::format_bytes(max.bytes())
                    ),
                ));
            }
        }
        if let Some(grow_to) = self.memory_max {
            match self.memory {
                None => {
                    return Err(SpecError::new(
                        "memory_max",
                        "needs `memory`: it is how far a memory limit may grow",
                    ));
                }
                Some(memory) if grow_to < memory => {
                    return Err(SpecError::new("memory_max", "must be at least `memory`"));
                }
                _ => {}
            }
            if let Some(max) = limits.max_memory {
                if grow_to > max {
                    return Err(SpecError::new(
                        "memory_max",
                        format!(
                            "is more than the node has ({}); a grown job could never start",
                            crate::units::format_bytes(max.bytes())
                        ),
                    ));
                }
            }
        }
        if let (Some(cpus), Some(max)) = (self.cpus, limits.max_cpus) {
            if cpus > max {
                return Err(SpecError::new(
                    "cpus",
                    format!("asks for {cpus} CPUs but the node has {max}; it could never start"),
                ));
            }
        }
        if let Some(cpus) = self.cpus {
            if cpus < Cpus::MIN {
                return Err(SpecError::new(
                    "cpus",
                    format!("must be at least {}", Cpus::MIN),
                ));
            }
        }
        match (self.checkpoint_signal, self.signal_before) {
            (None, Some(_)) => {
                return Err(SpecError::new(
                    "signal_before",
                    "needs `checkpoint_signal`: it says when that signal comes",
                ));
            }
            (Some(_), Some(before)) if before.get() >= self.timeout.get() => {
                return Err(SpecError::new(
                    "signal_before",
                    format!("must be shorter than the timeout ({})", self.timeout),
                ));
            }
            (Some(_), None) => {
                return Err(SpecError::new(
                    "checkpoint_signal",
                    "needs `signal_before`: how long before the timeout to send it",
                ));
            }
            _ => {}
        }
        if let Some(code) = self.checkpoint_exit_code {
            if !(1..=255).contains(&code) {
                return Err(SpecError::new(
                    "checkpoint_exit_code",
                    "must be an exit code from 1 to 255",
                ));
            }
        }
        if let Some(pids) = self.pids {
            if !(1..=MAX_PIDS).contains(&pids) {
                return Err(SpecError::new(
                    "pids",
                    format!("must be 1 to {MAX_PIDS} (the most processes a kernel allows)"),
                ));
            }
        }
        if let Some(nofile) = self.nofile {
            if nofile < MIN_NOFILE {
                return Err(SpecError::new(
                    "nofile",
                    format!("must be at least {MIN_NOFILE} (stdin, stdout, stderr and a few more)"),
                ));
            }
            if nofile > MAX_NOFILE {
                return Err(SpecError::new(
                    "nofile",
                    format!(
                        "must be at most {MAX_NOFILE} (Linux's default fs.nr_open; a process cannot be given more)"
                    ),
                ));
            }
            if let Some(max) = limits.max_nofile.filter(|max| nofile > *max) {
                return Err(SpecError::new(
                    "nofile",
                    format!(
                        "must be at most {max}, the node's own hard limit (`ulimit -Hn`): a job cannot be given more"
                    ),
                ));
            }
        }
        crate::node::check_labels(&self.require).map_err(|e| SpecError::new("require", e))?;
        if self.stall.is_some_and(|s| s.get().is_zero()) {
            return Err(SpecError::new("stall", "must be greater than zero"));
        }
        if let Some(queue) = &self.queue {
            if !valid_queue_name(queue) {
                return Err(SpecError::new(
                    "queue",
                    "must be 1 to 64 letters, digits, `-`, `_` or `.`",
                ));
            }
        }
        if self.at.is_some() && self.delay.is_some() {
            return Err(SpecError::new("delay", "give `delay` or `at`, not both"));
        }
        if let Some(words) = &self.retry_on {
            if words.is_empty() {
                return Err(SpecError::new("retry_on", "name at least one outcome"));
            }
            for (i, word) in words.iter().enumerate() {
                if !RETRY_ON_WORDS.contains(&word.as_str()) {
                    return Err(SpecError::new(
                        format!("retry_on[{i}]"),
                        format!("`{word}` is not one of {}", RETRY_ON_WORDS.join(", ")),
                    ));
                }
            }
        }
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.chars().count() > limits.max_name_len {
                return Err(SpecError::new(
                    "idempotency_key",
                    format!("must be 1 to {} characters", limits.max_name_len),
                ));
            }
            no_nul("idempotency_key", key)?;
        }
        if self.retries > limits.max_retries {
            return Err(SpecError::new(
                "retries",
                format!("must be at most {}", limits.max_retries),
            ));
        }
        Ok(())
    }
}

fn no_nul(field: &str, value: &str) -> Result<(), SpecError> {
    if value.contains('\0') {
        Err(SpecError::new(field, "must not contain a NUL byte"))
    } else {
        Ok(())
    }
}

/// The queue of a job that names none.
pub const DEFAULT_QUEUE: &str = "default";

/// Whether `name` can name a queue: 1 to 64 of letters, digits, `-`, `_` and `.`.
pub fn valid_queue_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The smallest memory limit accepted: below it even a shell cannot start.
pub const MIN_MEMORY: Size = Size(4 << 20);
/// The smallest descriptor limit accepted.
pub const MIN_NOFILE: u64 = 8;
/// The largest descriptor limit accepted: Linux's default `fs.nr_open`, past which
/// `setrlimit(RLIMIT_NOFILE)` fails at spawn (macOS allows less still and clamps).
pub const MAX_NOFILE: u64 = 1 << 20;
/// The largest process limit accepted: Linux's `PID_MAX_LIMIT`; `pids.max` refuses more.
pub const MAX_PIDS: u32 = 1 << 22;

/// Upper bounds on every size in a spec (design.md invariant 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most argv entries.
    pub max_argv_len: usize,
    /// Most argv bytes in all.
    pub max_argv_bytes: usize,
    /// Most environment variables.
    pub max_env_len: usize,
    /// Most environment bytes in all.
    pub max_env_bytes: usize,
    /// Longest name, in characters.
    pub max_name_len: usize,
    /// Longest timeout.
    pub max_timeout: HumanDuration,
    /// Longest grace period.
    pub max_grace: HumanDuration,
    /// Most retries.
    pub max_retries: u32,
    /// Most memory a job may declare: the node's capacity. `None`: no bound.
    pub max_memory: Option<Size>,
    /// Most CPUs a job may declare: the node's capacity. `None`: no bound.
    pub max_cpus: Option<Cpus>,
    /// Most descriptors a job may declare: the node's hard `RLIMIT_NOFILE`, which an
    /// unprivileged process cannot raise. `None`: [`MAX_NOFILE`] only.
    pub max_nofile: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_argv_len: 4096,
            max_argv_bytes: 256 * 1024,
            max_env_len: 1024,
            max_env_bytes: 256 * 1024,
            max_name_len: 256,
            max_timeout: HumanDuration::from_secs(365 * 24 * 3600),
            max_grace: HumanDuration::from_secs(3600),
            max_retries: 1000,
            max_memory: None,
            max_cpus: None,
            max_nofile: None,
        }
    }
}

/// A spec field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The field, spelled as in the API (`argv[0]`, `env.HOME`, `timeout`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl SpecError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
