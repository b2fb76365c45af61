//! The partial job spec: every field of `drover_core::JobSpec`, each optional, as `submit` and
//! `run` flags, as a line of `submit --batch`, and as a queue's defaults in drover.toml.
//!
//! It is written twice in all — the domain's `JobSpec`, and here with its flags — and
//! serialises to the request body of `POST /v1/jobs` with exactly the fields that were given,
//! so the node fills the rest from the queue's defaults and then its own. A test below keeps the
//! two lists equal. Adding a job field means adding it to `JobSpec`, here (flag and docs), and to
//! the README's table; nothing else lists the fields.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use drover_core::{Backoff, Cpus, HumanDuration, Signal, Size};
use serde::{Deserialize, Serialize};

/// A job spec with every field optional. Left out, a field takes its queue's default, then the
/// built-in one.
#[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecArgs {
    /// Stop the job after this long (default 24h): SIGTERM, then SIGKILL after --grace.
    #[arg(long, value_name = "D")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Time between SIGTERM and SIGKILL when the job is stopped (default 10s).
    #[arg(long, value_name = "D")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<HumanDuration>,
    /// A name for people (default: the program's name).
    #[arg(long, value_name = "NAME")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Set an environment variable for the job (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = parse_env)]
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "pairs")]
    pub env: Vec<(String, String)>,
    /// Do not give the job this shell's environment: it starts from an empty one, with only
    /// the -e variables, drover's own, and a default PATH. By default a job gets the whole
    /// environment of the shell that submits it, stored with the job.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub env_clear: bool,
    /// Run the job on a pseudo-terminal, so that Python, Sage and gp print line by line as on
    /// a terminal instead of in blocks (stdout and stderr then arrive as one stream, in stdout).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pty: bool,
    /// Working directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Higher runs first (default 0, or the queue's default).
    #[arg(long, allow_negative_numbers = true)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Attempts after the first if it fails, times out or is lost (default 0, or the queue's).
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Memory limit for the whole process tree (e.g. 512M, 16G); exceeding it ends the job
    /// `failed` with reason memory_limit. The node also reserves this much for it.
    #[arg(long, value_name = "SIZE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// With --memory: after an attempt is killed for memory_limit, the next gets twice its
    /// measured peak (at least twice the limit), up to this: the memory ceiling.
    #[arg(long, value_name = "SIZE", requires = "memory")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<Size>,
    /// CPU quota for the whole tree, fractional (0.5 = half a CPU); also reserved on the node.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    /// Most processes and threads the tree may have at once.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    /// Most open files per process.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// Stop the job (reason stalled) when it writes no output and does not touch
    /// $DROVER_HEARTBEAT_FILE for this long.
    #[arg(long, value_name = "D")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<HumanDuration>,
    /// Send this signal (USR1, TERM, a number) to the whole tree --signal-before ahead of the
    /// timeout, so the job can save its progress in $DROVER_CHECKPOINT_DIR.
    #[arg(long, value_name = "SIG", requires = "signal_before")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_signal: Option<Signal>,
    /// How long before the timeout the checkpoint signal comes.
    #[arg(long, value_name = "D", requires = "checkpoint_signal")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_before: Option<HumanDuration>,
    /// The exit code that means "progress saved: run me again"; such an attempt is requeued at
    /// once without using a retry (default 85 with --checkpoint-signal).
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_exit_code: Option<i32>,
    /// Start no sooner than this long from now (the job is `scheduled` until then).
    #[arg(long, value_name = "D", conflicts_with = "at")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HumanDuration>,
    /// Start no sooner than this time: `03:00` (the next one), `tomorrow 03:00`,
    /// `2026-12-24 18:00` (local time), `+2h`, or RFC 3339 (`2026-12-01T03:00:00Z`).
    #[arg(long, value_name = "TIME", value_parser = crate::when::parse_at)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Wait between attempts: MIN..MAX for exponential backoff with full jitter (1s..5m), or
    /// one duration for a fixed wait.
    #[arg(long, value_name = "BACKOFF")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Which endings are retried (comma-separated): failed, timed_out, lost, or a reason such
    /// as memory_limit or stalled. Default: failed, timed_out, lost.
    #[arg(long, value_delimiter = ',', value_name = "OUTCOMES")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
    /// The queue to wait in (default: `default`); see `drover queue`.
    #[arg(long, value_name = "NAME")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Run only after these jobs succeeded (comma-separated ids, numbers or names); the job is
    /// `blocked` until then, and fails with dependency_failed if one of them fails for good.
    #[arg(long, value_delimiter = ',', value_name = "JOBS")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Submitting again with the same key returns the first job's id and creates nothing.
    #[arg(long, value_name = "KEY")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Run only on a node with this label (repeatable): `--require os=macos`.
    #[arg(long = "require", value_name = "KEY=VALUE", value_parser = drover_core::node::parse_label)]
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "pairs")]
    pub require: Vec<(String, String)>,
    /// Take the job's result from the last line of its stdout (JSON) instead of
    /// `$DROVER_OUTPUT_DIR/result.json`.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_stdout: bool,
    /// Run this shell command on the node when the job ends (for a sweep: when all of it has),
    /// with DROVER_JOB_ID, _NUMBER, _NAME, _STATE, _REASON and _RESULT set (DROVER_GROUP_* for a
    /// group). Killed after the node's notify timeout; never holds up other jobs.
    #[arg(long, value_name = "CMD")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// The part of a session the job is: set by `drover session start` and `drover exec`,
    /// not a flag of `submit`.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<drover_core::SessionRole>,
    /// The program and its arguments (no shell: use `sh -c '...'` to ask for one).
    #[arg(last = true, value_name = "ARGV")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
}

/// The fields that name one job rather than describe a kind of job: a queue cannot give them
/// as defaults.
const PER_JOB: [&str; 9] = [
    "argv",
    "name",
    "env_clear",
    "queue",
    "after",
    "idempotency_key",
    "at",
    "delay",
    "session",
];

impl SpecArgs {
    /// The fields given, as the JSON object `POST /v1/jobs` takes.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields,
            // A struct of plain fields serialises to an object; nothing else can come out.
            _ => serde_json::Map::new(),
        }
    }

    /// Checks that these fields may be a queue's defaults: none that names one job, and values
    /// that make a valid spec. The error names the field.
    pub fn check_as_defaults(&self) -> Result<(), String> {
        let fields = self.to_json();
        if let Some(key) = PER_JOB.iter().find(|key| fields.contains_key(**key)) {
            return Err(format!(
                "{key}: names one job; a queue cannot give it as a default"
            ));
        }
        let mut probe = self.clone();
        probe.argv = vec!["true".into()];
        let spec: drover_core::JobSpec =
            serde_json::from_value(serde_json::Value::Object(probe.to_json()))
                .map_err(|e| e.to_string())?;
        spec.validate(&drover_core::Limits::default())
            .map_err(|e| e.to_string())
    }
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{raw}` is not KEY=VALUE")),
    }
}

/// `KEY=VALUE` flags as the JSON object the spec has (`env`, `require`).
mod pairs {
    use super::BTreeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, &str> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        map.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        Ok(BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use drover_core::{JobId, JobSpec};

    /// A spec with every field set, so that a field one side lacks cannot go unnoticed.
    fn full_spec() -> JobSpec {
        let mut spec = JobSpec::new(["python3", "sim.py"]);
        spec.name = Some("sim".into());
        spec.env.insert("P".into(), "42".into());
        spec.env_clear = true;
        spec.pty = true;
        spec.cwd = Some("/tmp".into());
        spec.timeout = HumanDuration::from_secs(60);
        spec.grace = HumanDuration::from_secs(2);
        spec.priority = 3;
        spec.retries = 2;
        spec.memory = Some(Size(1 << 30));
        spec.memory_max = Some(Size(4 << 30));
        spec.cpus = Some(Cpus::from_millis(1500));
        spec.pids = Some(100);
        spec.nofile = Some(1024);
        spec.stall = Some(HumanDuration::from_secs(30));
        spec.at = Some(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        spec.delay = Some(HumanDuration::from_secs(5));
        spec.backoff = Some("1s..5m".parse().unwrap());
        spec.retry_on = Some(vec!["memory_limit".into()]);
        spec.queue = Some("sage".into());
        spec.after = vec![JobId::from_uuid(uuid::Uuid::now_v7())];
        spec.idempotency_key = Some("k".into());
        spec.require.insert("has".into(), "sage".into());
        spec.checkpoint_signal = Some("USR1".parse().unwrap());
        spec.signal_before = Some(HumanDuration::from_secs(10));
        spec.checkpoint_exit_code = Some(85);
        spec.result_stdout = true;
        spec.notify = Some("echo done".into());
        spec.session = Some(drover_core::SessionRole::Host {
            kind: drover_core::SessionKind::Python,
        });
        spec
    }

    /// The flags and the domain spec list the same fields: each side reads everything the other
    /// writes (both refuse unknown fields), and nothing is lost on the way.
    #[test]
    fn the_flags_and_the_spec_have_the_same_fields() {
        let spec = full_spec();
        let json = serde_json::to_value(&spec).unwrap();
        let args: SpecArgs = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("a spec field has no flag: {e}"));
        let back: JobSpec = serde_json::from_value(serde_json::Value::Object(args.to_json()))
            .unwrap_or_else(|e| panic!("a flag is not a spec field: {e}"));
        assert_eq!(back, spec);
        assert_eq!(serde_json::Value::Object(args.to_json()), json);
    }

    #[test]
    fn only_given_fields_are_sent() {
        let args = SpecArgs {
            retries: Some(0),
            argv: vec!["true".into()],
            ..SpecArgs::default()
        };
        let mut keys: Vec<String> = args.to_json().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["argv", "retries"], "a default left out is not sent");
    }

    #[test]
    fn queue_defaults_describe_a_kind_of_job() {
        let ok = SpecArgs {
            timeout: Some(HumanDuration::from_secs(3600)),
            require: vec![("has".into(), "sage".into())],
            ..SpecArgs::default()
        };
        assert_eq!(ok.check_as_defaults(), Ok(()));
        let per_job = SpecArgs {
            idempotency_key: Some("k".into()),
            ..SpecArgs::default()
        };
        assert!(
            per_job
                .check_as_defaults()
                .unwrap_err()
                .starts_with("idempotency_key")
        );
        let bad = SpecArgs {
            timeout: Some(HumanDuration::from_secs(0)),
            ..SpecArgs::default()
        };
        assert!(bad.check_as_defaults().is_err(), "a zero timeout");
    }
}
