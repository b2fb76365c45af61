//! The supervisor: a router task that hands each attempt's commands to that attempt's own task.
//!
//! Each attempt task owns its process from fork to the last reaped member and reports exactly
//! one [`Report::Exited`]. Nothing here touches the store.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use drover_core::{AttemptRef, LogCut, Stream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use crate::contain::{Cell, Containment};
use crate::ladder::{kill_tree, tree_alive};
use crate::logs::{Activity, Captured, LogFile, capture, pipe_reader, prepare_log_dir, tail_path};
use crate::spawn::spawn_gated;
use crate::wait::ExitWatch;
use crate::{Command, Ending, Outcome, Report, StartRequest, StopReason, sys};

/// How long to wait for the log pipes to close once the tree is gone. Only a process that escaped
/// the group (with `setsid`) can hold them open longer; its later output is not kept.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The supervisor stopped and accepts no more commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the supervisor is gone")]
pub struct SupervisorGone;

/// Starts supervisors.
#[derive(Debug)]
pub struct Supervisor;

/// The node's end of the command channel.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl SupervisorHandle {
    /// Sends a command. Fails only if the supervisor is gone.
    pub fn send(&self, command: Command) -> Result<(), SupervisorGone> {
        self.commands.send(command).map_err(|_| SupervisorGone)
    }
}

impl Supervisor {
    /// Starts a supervisor on the current tokio runtime, containing jobs with `containment`.
    /// Reports arrive on the returned receiver.
    pub fn start(
        containment: Arc<Containment>,
    ) -> (SupervisorHandle, mpsc::UnboundedReceiver<Report>) {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (reports, report_rx) = mpsc::unbounded_channel();
        tokio::spawn(route(command_rx, reports, containment));
        (SupervisorHandle { commands }, report_rx)
    }
}

async fn route(
    mut commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<Report>,
    containment: Arc<Containment>,
) {
    let mut attempts: HashMap<AttemptRef, mpsc::UnboundedSender<Command>> = HashMap::new();
    // Cells of self-released attempts, kept as the record of their start until their outcome
    // is on disk (`Command::Ack`).
    let mut kept: HashMap<AttemptRef, Cell> = HashMap::new();
    let (done_tx, mut done) = mpsc::unbounded_channel::<(AttemptRef, Option<Cell>)>();
    loop {
        tokio::select! {
            // An attempt's end is sent before its outcome is reported, so taking it first means
            // its cell is kept here before any Ack for it can be read.
            biased;
            Some((attempt, cell)) = done.recv() => {
                attempts.remove(&attempt);
                if let Some(cell) = cell {
                    kept.insert(attempt, cell);
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { break };
                match command {
                    Command::Start(req) => {
                        let attempt = req.attempt;
                        if attempts.contains_key(&attempt) {
                            tracing::warn!(%attempt, "duplicate start ignored");
                            continue;
                        }
                        let (tx, rx) = mpsc::unbounded_channel();
                        attempts.insert(attempt, tx);
                        let reports = reports.clone();
                        let done_tx = done_tx.clone();
                        let containment = Arc::clone(&containment);
                        tokio::spawn(async move {
                            let (outcome, cell) = run_attempt(&req, rx, &reports, &containment).await;
                            let _ = done_tx.send((attempt, cell));
                            let _ = reports.send(Report::Exited { attempt, outcome });
                        });
                    }
                    Command::Release(attempt)
                    | Command::Abort(attempt, _)
                    | Command::Stop(attempt, _) => {
                        if let Some(tx) = attempts.get(&attempt) {
                            let _ = tx.send(command);
                        }
                    }
                    Command::Ack(attempt) => {
                        if let Some(cell) = kept.remove(&attempt) {
                            tokio::task::spawn_blocking(move || cell.remove());
                        }
                    }
                    // Owners' business, handled by the executor before a supervisor.
                    Command::Lease { .. }
                    | Command::ReadMemory(_)
                    | Command::Clean { .. }
                    | Command::Sweep { .. } => {}
                }
            }
        }
    }
    // Every sender is gone. The subtree stays: whoever opened the containment closes it (other
    // owners on this node may still use it).
}

/// The node's answer to [`Report::Spawned`], or a stop that arrived first.
enum Verdict {
    Release,
    Abort(StopReason),
}

async fn next_verdict(commands: &mut mpsc::UnboundedReceiver<Command>) -> Verdict {
    loop {
        match commands.recv().await {
            Some(Command::Release(_)) => return Verdict::Release,
            Some(Command::Abort(_, why)) | Some(Command::Stop(_, why)) => {
                return Verdict::Abort(why);
            }
            Some(_) => continue,
            // The node is gone: never run a job nobody will record.
            None => return Verdict::Abort(StopReason::Shutdown),
        }
    }
}

async fn next_stop(commands: &mut mpsc::UnboundedReceiver<Command>) -> StopReason {
    loop {
        match commands.recv().await {
            Some(Command::Stop(_, why)) | Some(Command::Abort(_, why)) => return why,
            Some(_) => continue,
            None => std::future::pending::<()>().await,
        }
    }
}

/// Runs one attempt in a cell of its own, and removes the cell after — or, for a
/// self-released attempt, returns it to be removed once the outcome is on disk.
async fn run_attempt(
    req: &StartRequest,
    commands: mpsc::UnboundedReceiver<Command>,
    reports: &mpsc::UnboundedSender<Report>,
    containment: &Containment,
) -> (Outcome, Option<Cell>) {
    let cell = match containment.create(req.attempt, &req.limits) {
        Ok(cell) => cell,
        Err(err) => {
            let outcome = Outcome::without_process(Ending::SpawnFailed(format!(
                "cannot create the attempt's cgroup: {err}"
            )));
            return (outcome, None);
        }
    };
    let rlimits = containment.child_rlimits(&req.limits, req.timeout);
    let mut outcome = run_in_cell(req, commands, reports, &cell, &rlimits).await;
    outcome.ended_at_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok());
    // The tree is gone and measured; removing its (empty) cell is housekeeping that must not
    // hold the slot: the kernel may need a moment before an emptied cgroup can be removed.
    let heartbeat = req.heartbeat_path.clone();
    // An empty checkpoint directory is nothing to keep (the next attempt makes it again): most
    // jobs never write one, and this spares the node removing it.
    let checkpoints = req.checkpoint_dir.clone();
    // A result taken from stdout must be in place before the outcome is reported: the node
    // reads it then. Otherwise the job wrote its own (or none), and removing an empty
    // directory is housekeeping that need not hold up the report.
    let output = req.output_dir.clone();
    if req.result_stdout {
        if let Some(dir) = output.clone() {
            let stdout = req.stdout_path.clone();
            let _ = tokio::task::spawn_blocking(move || write_stdout_result(&dir, &stdout)).await;
        }
    }
    // A self-released attempt's cell says it may have run until its outcome is on disk.
    let (remove, kept) = if req.self_release {
        (None, Some(cell))
    } else {
        (Some(cell), None)
    };
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = output {
            // Kept when it holds anything; an empty one waits for this owner's next attempt.
            crate::outdir::finish(&dir);
        }
        if let Some(cell) = remove {
            cell.remove();
        }
        if let Some(path) = heartbeat {
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = checkpoints {
            let _ = std::fs::remove_dir(dir);
        }
    });
    (outcome, kept)
}

/// Waits until the attempt has been silent for `stall`: no output and no touch of the
/// heartbeat file. Sleeps until the earliest moment that could be true, then looks again.
async fn stall_watch(stall: Duration, activity: &Activity, heartbeat: Option<&Path>) {
    loop {
        let output_idle = activity.idle();
        let heartbeat_idle = match heartbeat {
            Some(path) => tokio::fs::metadata(path)
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or(output_idle),
            None => output_idle,
        };
        let idle = output_idle.min(heartbeat_idle);
        if idle >= stall {
            return;
        }
        tokio::time::sleep(stall - idle).await;
    }
}

/// Runs one attempt from fork to the last reaped member, inside `cell`.
async fn run_in_cell(
    req: &StartRequest,
    mut commands: mpsc::UnboundedReceiver<Command>,
    reports: &mpsc::UnboundedSender<Report>,
    cell: &Cell,
    rlimits: &[crate::contain::ChildRlimit],
) -> Outcome {
    let attempt = req.attempt;
    let gated = match spawn_gated(req, rlimits).await {
        Ok(gated) => gated,
        Err(err) => return Outcome::without_process(Ending::SpawnFailed(err.to_string())),
    };
    let pid = gated.pid;
    // Into the cell before it can run anything: everything it forks is inside too.
    if let Err(err) = cell.attach(pid) {
        gated.abort().await;
        return Outcome::without_process(Ending::SpawnFailed(format!(
            "cannot place the job in its cgroup: {err}"
        )));
    }
    let _ = reports.send(Report::Spawned {
        attempt,
        pid,
        proc_start: gated.proc_start,
    });
    // Self-released, the child is in its cell, which records that it may run: no verdict to
    // wait for. A stop that came while the child was made still keeps it from running; one
    // that comes later goes through the kill ladder below.
    let verdict = if req.self_release {
        match commands.try_recv() {
            Ok(Command::Abort(_, why) | Command::Stop(_, why)) => Verdict::Abort(why),
            _ => Verdict::Release,
        }
    } else {
        next_verdict(&mut commands).await
    };
    if let Verdict::Abort(why) = verdict {
        gated.abort().await;
        return Outcome::without_process(Ending::Aborted(why));
    }
    if let Err(err) = prepare_files(req) {
        gated.abort().await;
        return Outcome::without_process(Ending::SpawnFailed(err));
    }
    let (out_file, err_file) = (LogFile::at(&req.stdout_path), LogFile::at(&req.stderr_path));
    let child = match gated.release().await {
        Ok(child) => child,
        Err(err) => return Outcome::without_process(Ending::SpawnFailed(err.to_string())),
    };
    let started = Instant::now();
    let mut leader = match ExitWatch::new(pid) {
        Ok(watch) => watch,
        Err(err) => {
            tracing::error!(%attempt, error = %err, "cannot watch the job; stopping it");
            let _ = sys::signal_group(pid, libc::SIGKILL);
            return Outcome::without_process(Ending::SpawnFailed(format!(
                "cannot watch process: {err}"
            )));
        }
    };
    let activity = req.stall.map(|_| Arc::new(Activity::new()));
    let capture_into = |source, file, path: &std::path::Path| {
        tokio::spawn(capture(
            source,
            file,
            req.log_limit,
            Some(tail_path(path)),
            activity.clone(),
        ))
    };
    let logs = match (pipe_reader(child.stdout), pipe_reader(child.stderr)) {
        (Ok(out), Ok(err)) => Some((
            capture_into(out, out_file, &req.stdout_path),
            capture_into(err, err_file, &req.stderr_path),
        )),
        (out, err) => {
            let problem = out.err().or(err.err());
            tracing::error!(%attempt, error = ?problem, "cannot capture logs; output is discarded");
            None
        }
    };

    enum Trigger {
        Exited,
        TimedOut,
        Stalled,
        Stop(StopReason),
    }
    let stalled = async {
        match (req.stall, &activity) {
            (Some(stall), Some(activity)) => {
                stall_watch(stall, activity, req.heartbeat_path.as_deref()).await
            }
            _ => std::future::pending().await,
        }
    };
    tokio::pin!(stalled);
    // The checkpoint signal comes once, `before` ahead of the timeout; the job goes on after it.
    let mut checkpoint = req.checkpoint.map(|plan| {
        (
            started + req.timeout.saturating_sub(plan.before),
            plan.signal,
        )
    });
    let trigger = loop {
        let checkpoint_at = checkpoint.map(|(at, _)| at);
        tokio::select! {
            _ = leader.wait() => break Trigger::Exited,
            _ = sleep_until(started + req.timeout) => break Trigger::TimedOut,
            _ = &mut stalled => break Trigger::Stalled,
            why = next_stop(&mut commands) => break Trigger::Stop(why),
            _ = sleep_until(checkpoint_at.unwrap_or(started)), if checkpoint_at.is_some() => {
                if let Some((_, signal)) = checkpoint.take() {
                    tracing::info!(%attempt, signal, "checkpoint signal to the tree");
                    let _ = sys::signal_group(pid, signal);
                    cell.signal(signal);
                }
            }
        }
    };
    let mut outcome_ending = None;
    let mut leftovers_killed = false;
    let ladder = match trigger {
        Trigger::Exited => {
            // The leader is gone; anything left of its tree goes with it — in its group, or
            // (with a cell) anywhere, even in a session of its own.
            if tree_alive(pid, Some(cell)) {
                leftovers_killed = true;
                tracing::info!(%attempt, "killing processes left after the leader exited");
                Some(kill_tree(pid, Some(cell), req.grace, Some(&mut leader)).await)
            } else {
                None
            }
        }
        Trigger::TimedOut => {
            tracing::info!(%attempt, timeout = ?req.timeout, "timed out; stopping the tree");
            outcome_ending = Some(Ending::TimedOut);
            Some(kill_tree(pid, Some(cell), req.grace, Some(&mut leader)).await)
        }
        Trigger::Stalled => {
            tracing::info!(%attempt, stall = ?req.stall, "no output or heartbeat; stopping the tree");
            outcome_ending = Some(Ending::Stalled);
            Some(kill_tree(pid, Some(cell), req.grace, Some(&mut leader)).await)
        }
        Trigger::Stop(why) => {
            tracing::info!(%attempt, ?why, "stopping the tree");
            outcome_ending = Some(Ending::Stopped(why));
            // A lost lease allows no grace: another node may be about to run this job.
            let grace = if why == StopReason::LeaseLost {
                Duration::ZERO
            } else {
                req.grace
            };
            Some(kill_tree(pid, Some(cell), grace, Some(&mut leader)).await)
        }
    };
    let reaped = leader.wait().await.ok();

    let mut log_cuts = Vec::new();
    if let Some((out, err)) = logs {
        for (stream, task) in [(Stream::Stdout, out), (Stream::Stderr, err)] {
            let abort = task.abort_handle();
            match timeout(LOG_DRAIN_TIMEOUT, task).await {
                Ok(Ok(Ok(Captured {
                    seen,
                    kept,
                    write_error,
                }))) if seen > kept || write_error.is_some() => {
                    match &write_error {
                        Some(error) => {
                            tracing::error!(%attempt, %stream, seen, kept, %error, "log cut: the file stopped taking output")
                        }
                        None => {
                            tracing::info!(%attempt, %stream, seen, kept, "log truncated at its limit")
                        }
                    }
                    log_cuts.push(LogCut {
                        stream,
                        written_bytes: seen,
                        kept_bytes: kept,
                        error: write_error,
                    });
                }
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(err))) => {
                    tracing::warn!(%attempt, %stream, error = %err, "log capture failed")
                }
                Ok(Err(err)) => tracing::warn!(%attempt, %stream, error = %err, "log task failed"),
                Err(_) => {
                    abort.abort();
                    tracing::warn!(%attempt, %stream, "log pipe still open after the tree ended (an escaped process?); stopped capturing");
                }
            }
        }
    }

    let ending = outcome_ending.unwrap_or(match reaped {
        Some(r) => match (r.exit_code, r.signal) {
            (Some(code), _) if Some(code) == req.checkpoint_exit_code => Ending::Checkpointed(code),
            (Some(code), _) => Ending::Exited(code),
            (None, Some(sig)) => Ending::Signaled(sig),
            (None, None) => Ending::Exited(-1),
        },
        None => Ending::Exited(-1),
    });
    // The cell measures the whole tree; rusage only the leader and what it waited for.
    let usage = cell.usage();
    Outcome {
        ending,
        exit_code: reaped.and_then(|r| r.exit_code),
        signal: reaped.and_then(|r| r.signal),
        peak_memory_bytes: usage.peak_memory_bytes.or(reaped.map(|r| r.max_rss_bytes)),
        cpu_time_ms: usage.cpu_time_ms.or(reaped.map(|r| r.cpu_time_ms)),
        leftovers_killed,
        survivors: ladder.is_some_and(|l| l.survivors),
        oom_killed: usage.oom_killed,
        pids_limited: usage.pids_limited,
        ended_at_ms: None,
        log_cuts,
    }
}

/// Makes the attempt's output directory (its parent too, the first time) and writes its inputs
/// file, before the job may exec.
/// Everything an attempt needs on disk before it may exec: its log directory (the files are
/// made at their first byte, `LogFile`), its checkpoint directory, its output directory and
/// inputs, and its heartbeat file.
fn prepare_files(req: &StartRequest) -> Result<(), String> {
    prepare_log_dir(&req.stdout_path)
        .and_then(
            |()| match (req.stdout_path.parent(), req.stderr_path.parent()) {
                (a, b) if a == b => Ok(()),
                _ => prepare_log_dir(&req.stderr_path),
            },
        )
        .map_err(|err| format!("cannot create the log directory: {err}"))?;
    if let Some(dir) = &req.checkpoint_dir {
        // One mkdir, done here: its parent normally exists, and a thread hand-off would cost
        // more than the call.
        crate::outdir::mkdir(dir, 0o700).map_err(|err| {
            format!(
                "cannot create the checkpoint directory {}: {err}",
                dir.display()
            )
        })?;
    }
    prepare_output(req)?;
    if let Some(path) = &req.heartbeat_path {
        std::fs::File::create(path)
            .map_err(|err| format!("cannot create the heartbeat file {}: {err}", path.display()))?;
    }
    Ok(())
}

fn prepare_output(req: &StartRequest) -> Result<(), String> {
    if let Some(dir) = &req.output_dir {
        crate::outdir::make(dir).map_err(|err| {
            format!(
                "cannot create the output directory {}: {err}",
                dir.display()
            )
        })?;
    }
    if let Some((path, contents)) = &req.inputs {
        std::fs::write(path, contents)
            .map_err(|err| format!("cannot write the inputs file {}: {err}", path.display()))?;
    }
    Ok(())
}

/// The name of a job's result in its output directory.
pub const RESULT_FILE: &str = "result.json";

/// At the end of an attempt with `--result-stdout`: the last non-empty line of stdout becomes
/// `result.json`, unless the job wrote one itself. (An output directory left empty is removed
/// after the report: most jobs write nothing there, and a directory per attempt would pile up.)
fn write_stdout_result(dir: &Path, stdout: &Path) {
    let result = dir.join(RESULT_FILE);
    if result.exists() {
        return;
    }
    if let Some(line) = last_line(stdout) {
        if let Err(err) = std::fs::write(&result, line) {
            tracing::warn!(path = %result.display(), error = %err, "cannot write the result from stdout");
        }
    }
}

/// The last non-empty line of a file, read from its end (at most the last 2 MiB: a result
/// longer than that is over the limit anyway).
fn last_line(path: &Path) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 2 << 20;
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    tail.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .rfind(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
}
