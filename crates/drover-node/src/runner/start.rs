//! What an owner is told to start: a claim turned into a [`StartRequest`] — the argv, the
//! environment drover adds, the paths of the attempt's logs, heartbeat file and checkpoints,
//! its limits and its fence, its output directory and its inputs. Nothing here creates a file
//! or touches the store (it only looks whether an upstream's output directory is on this disk).

use drover_core::SessionRole;
use drover_exec::{CheckpointPlan, JobLimits, StartRequest};
use drover_store::Claim;

use super::RunnerConfig;
use crate::datadir::{DataDir, Stream};

/// The variables drover sets for every job (a few more only for some: `DROVER_AFTER`,
/// `DROVER_HEARTBEAT_FILE`).
const OWN_VARIABLES: [&str; 10] = [
    "DROVER_JOB_ID",
    "DROVER_ATTEMPT",
    "DROVER_NODE",
    "DROVER_SERVER",
    "DROVER_TOKEN_FILE",
    "DROVER_AFTER",
    "DROVER_CHECKPOINT_DIR",
    "DROVER_HEARTBEAT_FILE",
    "DROVER_OUTPUT_DIR",
    "DROVER_INPUTS",
];

/// The start request of `claim` on this node.
pub(crate) fn request(config: &RunnerConfig, data: &DataDir, claim: Claim) -> StartRequest {
    let attempt = claim.attempt;
    let spec = claim.spec;
    let output_dir = data.output_dir(attempt);
    let inputs = (!spec.after.is_empty()).then(|| {
        let path = data.inputs_path(attempt);
        (path, inputs_json(config, data, claim.inputs))
    });
    let checkpoint_exit_code = spec.checkpoint_code();
    let checkpoint = spec
        .checkpoint_signal
        .zip(spec.signal_before)
        .map(|(signal, before)| CheckpointPlan {
            signal: signal.number(),
            before: before.get(),
        });
    let checkpoint_dir = data.checkpoint_dir(attempt.job_id);
    // Made for jobs that checkpoint; every job gets the variable and may make it itself.
    // (A directory made and removed for every job cost short jobs ~9% of their throughput.)
    let checkpoints = spec.checkpoint_signal.is_some() || spec.checkpoint_exit_code.is_some();
    // Drover's own variables come last: they win over any of the same name in `env` (a job
    // submitted from inside another job carries that job's).
    let mut env: Vec<(String, String)> = spec
        .env
        .into_iter()
        .filter(|(key, _)| !OWN_VARIABLES.contains(&key.as_str()))
        .collect();
    env.push(("DROVER_JOB_ID".into(), attempt.job_id.to_string()));
    env.push(("DROVER_ATTEMPT".into(), attempt.attempt.to_string()));
    env.push(("DROVER_NODE".into(), config.node.0.clone()));
    // So that a job can talk to drover itself (`drover status`, `drover submit`): the node's
    // address, and its token as a file, never as a value in the environment.
    env.push(("DROVER_SERVER".into(), config.server_url.clone()));
    env.push((
        "DROVER_TOKEN_FILE".into(),
        data.token_path().to_string_lossy().into_owned(),
    ));
    if !spec.after.is_empty() {
        let after: Vec<String> = spec.after.iter().map(ToString::to_string).collect();
        env.push(("DROVER_AFTER".into(), after.join(" ")));
    }
    env.push((
        "DROVER_CHECKPOINT_DIR".into(),
        checkpoint_dir.to_string_lossy().into_owned(),
    ));
    env.push((
        "DROVER_OUTPUT_DIR".into(),
        output_dir.to_string_lossy().into_owned(),
    ));
    if let Some((path, _)) = &inputs {
        env.push(("DROVER_INPUTS".into(), path.to_string_lossy().into_owned()));
    }
    // The file a job touches to say it is alive (only for jobs with a stall timeout).
    let heartbeat_path = spec.stall.map(|_| data.heartbeat_path(attempt));
    if let Some(path) = &heartbeat_path {
        env.push((
            "DROVER_HEARTBEAT_FILE".into(),
            path.to_string_lossy().into_owned(),
        ));
    }
    let argv = match spec.session {
        None => spec.argv,
        Some(role) => session_argv(
            config,
            data,
            attempt.job_id,
            role,
            spec.argv,
            spec.grace.get(),
        ),
    };
    StartRequest {
        attempt,
        argv,
        env,
        env_clear: spec.env_clear,
        pty: spec.pty,
        env_remove: crate::NODE_SECRETS.iter().map(|s| s.to_string()).collect(),
        cwd: spec.cwd.map(Into::into),
        timeout: spec.timeout.get(),
        grace: spec.grace.get(),
        stdout_path: data.log_path(attempt, Stream::Stdout),
        stderr_path: data.log_path(attempt, Stream::Stderr),
        log_limit: config.log_limit,
        limits: JobLimits {
            memory_bytes: spec.memory.map(|m| m.bytes()),
            cpus: spec.cpus,
            pids: spec.pids,
            nofile: spec.nofile,
        },
        stall: spec.stall.map(|s| s.get()),
        heartbeat_path,
        checkpoint,
        checkpoint_exit_code,
        checkpoint_dir: checkpoints.then_some(checkpoint_dir),
        // The claim just took a lease: it runs out `lease` from about now, and the owner kills
        // the job a margin before that unless a renewal reaches it.
        fence_in: config.fence.then(|| config.lease - config.fence_margin()),
        output_dir: Some(output_dir),
        result_stdout: spec.result_stdout,
        inputs,
        self_release: config.self_release,
    }
}

/// What a session's or pool's job runs. A session's host and each exec are this node's own
/// binary (`session-host` with the interpreter's command, `session-exec` with the code); a
/// pool's parent is the user's interpreter running drover's pool shim; a pool's job is this
/// binary's `pool-run` with the job's argv. An exec gives the host three quarters of its grace
/// to bring the interpreter back after an interrupt, so that it can still say how the exec
/// ended before the owner's SIGKILL.
fn session_argv(
    config: &RunnerConfig,
    data: &DataDir,
    job: drover_core::JobId,
    role: SessionRole,
    argv: Vec<String>,
    grace: std::time::Duration,
) -> Vec<String> {
    let program = config.program.to_string_lossy().into_owned();
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    let mut out = match role {
        SessionRole::Host { kind } => vec![
            program,
            "session-host".into(),
            "--kind".into(),
            kind.to_string(),
            "--socket".into(),
            path(data.session_socket(job)),
        ],
        SessionRole::Exec { session } => {
            let wait = (grace * 3 / 4).max(std::time::Duration::from_millis(100));
            vec![
                program,
                "session-exec".into(),
                "--interrupt-wait-ms".into(),
                wait.as_millis().to_string(),
                "--socket".into(),
                path(data.session_socket(session)),
            ]
        }
        SessionRole::PoolParent {
            pool,
            kind,
            preload,
            max_jobs,
            max_memory,
        } => {
            // The interpreter itself, with the shim and its settings after its own arguments.
            let mut out = argv;
            out.extend([
                "-u".to_string(),
                "-c".to_string(),
                drover_exec::session::POOL_SHIM.to_string(),
                kind.to_string(),
                path(data.pool_socket(&pool, job)),
                preload.join(","),
                max_jobs.unwrap_or(0).to_string(),
                max_memory.map_or(0, |m| m.bytes()).to_string(),
            ]);
            return out;
        }
        SessionRole::Pooled { pool } => vec![
            program,
            "pool-run".into(),
            "--pool".into(),
            pool.clone(),
            "--dir".into(),
            path(data.pool_dir(&pool)),
        ],
    };
    out.push("--".into());
    out.extend(argv);
    out
}

/// `$DROVER_INPUTS`: the upstream jobs as a JSON array, each with its output directory when its
/// last attempt ran on this node (another node's disk is not this one's to name).
fn inputs_json(config: &RunnerConfig, data: &DataDir, inputs: Vec<drover_core::Input>) -> String {
    let inputs: Vec<drover_core::Input> = inputs
        .into_iter()
        .map(|mut input| {
            if input.node.as_ref() == Some(&config.node) && input.attempt > 0 {
                let dir = crate::datadir::output_dir(data.root(), input.id, input.attempt);
                if dir.is_dir() {
                    input.output_dir = Some(dir.to_string_lossy().into_owned());
                }
            }
            input
        })
        .collect();
    serde_json::to_string_pretty(&inputs).unwrap_or_else(|_| "[]".to_string())
}
