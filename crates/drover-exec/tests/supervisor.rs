//! The supervisor against real process trees: outcomes, logs, the gate, and the kill ladder.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_core::{AttemptRef, JobId};
use drover_exec::{Command, Ending, Outcome, Report, StartRequest, StopReason, Supervisor, sys};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

fn request(dir: &Path, argv: &[&str]) -> StartRequest {
    let attempt = AttemptRef {
        job_id: JobId::from_uuid(uuid_v7()),
        attempt: 1,
    };
    StartRequest {
        attempt,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("DROVER_TEST".into(), "yes".into())],
        env_clear: false,
        pty: false,
        env_remove: Vec::new(),
        cwd: None,
        timeout: Duration::from_secs(60),
        grace: Duration::from_secs(5),
        stdout_path: dir.join("stdout"),
        stderr_path: dir.join("stderr"),
        log_limit: 1 << 20,
        limits: Default::default(),
        stall: None,
        heartbeat_path: None,
        checkpoint: None,
        checkpoint_exit_code: None,
        checkpoint_dir: None,
        fence_in: None,
        output_dir: None,
        result_stdout: false,
        inputs: None,
        self_release: false,
    }
}

/// Removes a test's cgroup subtree when the test ends.
struct Scope(std::sync::Arc<drover_exec::Containment>);

impl Drop for Scope {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A supervisor on the backend this machine picks by itself, in a scope of its own.
fn supervisor() -> (
    drover_exec::SupervisorHandle,
    UnboundedReceiver<Report>,
    Scope,
) {
    let scope = format!("drover.test-{}-{}", std::process::id(), uuid_v7().simple());
    let containment = drover_exec::Containment::detect(drover_exec::BackendChoice::Auto, &scope)
        .expect("some backend");
    let containment = std::sync::Arc::new(containment);
    let (handle, reports) = Supervisor::start(std::sync::Arc::clone(&containment));
    (handle, reports, Scope(containment))
}

fn uuid_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

async fn next(reports: &mut UnboundedReceiver<Report>) -> Report {
    timeout(Duration::from_secs(30), reports.recv())
        .await
        .expect("a report within 30 s")
        .expect("supervisor alive")
}

/// Starts `req`, releases it at the gate, and returns (pid, outcome).
async fn run(req: StartRequest) -> (i32, Outcome) {
    let (sup, mut reports, _scope) = supervisor();
    let attempt = req.attempt;
    sup.send(Command::Start(Box::new(req))).expect("send");
    let pid = match next(&mut reports).await {
        Report::Spawned { pid, .. } => pid,
        Report::Exited { outcome, .. } => return (0, outcome),
        other => panic!("unexpected {other:?}"),
    };
    sup.send(Command::Release(attempt)).expect("send");
    match next(&mut reports).await {
        Report::Exited { outcome, .. } => (pid, outcome),
        other => panic!("unexpected {other:?}"),
    }
}

/// Non-zombie processes in group `pgid`, by scanning /proc.
#[cfg(target_os = "linux")]
fn live_in_group(pgid: i32) -> usize {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(sys::read_stat)
        .filter(|s| s.pgrp == pgid && s.state != 'Z')
        .count()
}

/// Non-zombie processes in group `pgid`, as `ps` lists them (macOS has no /proc).
#[cfg(not(target_os = "linux"))]
fn live_in_group(pgid: i32) -> usize {
    let out = std::process::Command::new("ps")
        .args(["-A", "-o", "pgid=,stat="])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse::<i32>().ok()?, f.next()?.to_string()))
        })
        .filter(|(g, stat)| *g == pgid && !stat.starts_with('Z'))
        .count()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn captures_both_streams_and_the_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let req = request(
        dir.path(),
        &[
            "sh",
            "-c",
            "echo hi; echo oops >&2; echo $DROVER_TEST; exit 3",
        ],
    );
    let (_, outcome) = run(req).await;
    assert_eq!(outcome.ending, Ending::Exited(3));
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(read(dir.path().join("stdout")), "hi\nyes\n");
    assert_eq!(read(dir.path().join("stderr")), "oops\n");
    assert!(
        outcome.peak_memory_bytes.unwrap_or(0) > 0,
        "rusage recorded"
    );
}

/// A job that starts from an empty environment sees only its own variables, and a default
/// `PATH` to find programs with; one that does not inherits the supervisor's.
#[tokio::test]
async fn an_env_clear_job_sees_only_its_own_variables() {
    let home = std::env::var("HOME").expect("the tests run with HOME set");
    let script = "echo $HOME; echo $DROVER_TEST; echo $PATH";
    let dir = tempfile::tempdir().expect("tempdir");
    let mut req = request(dir.path(), &["sh", "-c", script]);
    req.env_clear = true;
    let (_, outcome) = run(req).await;
    assert_eq!(outcome.ending, Ending::Exited(0));
    let expected = format!("\nyes\n{}\n", drover_exec::DEFAULT_PATH);
    assert_eq!(read(dir.path().join("stdout")), expected);

    let dir = tempfile::tempdir().expect("tempdir");
    let (_, outcome) = run(request(dir.path(), &["sh", "-c", script])).await;
    assert_eq!(outcome.ending, Ending::Exited(0));
    let out = read(dir.path().join("stdout"));
    assert!(out.starts_with(&format!("{home}\nyes\n")), "{out}");
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, outcome) = run(request(dir.path(), &["/nonexistent/x"])).await;
    match outcome.ending {
        Ending::SpawnFailed(err) => assert!(err.contains("No such file"), "{err}"),
        other => panic!("expected a spawn failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_cwd_is_a_spawn_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut req = request(dir.path(), &["true"]);
    req.cwd = Some(PathBuf::from("/nonexistent/dir"));
    let (_, outcome) = run(req).await;
    assert!(
        matches!(outcome.ending, Ending::SpawnFailed(_)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn nothing_runs_before_the_gate_opens_and_abort_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let argv = ["touch", marker.to_str().expect("utf-8")];
    let (sup, mut reports, _scope) = supervisor();

    let held = request(dir.path(), &argv);
    sup.send(Command::Start(Box::new(held.clone())))
        .expect("send");
    let Report::Spawned {
        pid, proc_start, ..
    } = next(&mut reports).await
    else {
        panic!("expected Spawned");
    };
    assert!(proc_start.is_some());
    assert_eq!(live_in_group(pid), 1, "the child exists in its own group");
    // Not exec'd: the child is still an image of this test binary, not `touch`. The pause gives
    // an ungated child a hundred times what it needs to exec and touch the marker (~1 ms), so a
    // marker that is still absent after it means the gate held, not that the child was slow.
    let own = std::fs::read_link("/proc/self/exe").ok();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        own,
        "it has not exec'd"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!marker.exists(), "the program ran before the gate opened");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
        own,
        "nor later"
    );

    sup.send(Command::Abort(held.attempt, StopReason::Cancel))
        .expect("send");
    let Report::Exited { outcome, .. } = next(&mut reports).await else {
        panic!("expected Exited");
    };
    assert_eq!(outcome.ending, Ending::Aborted(StopReason::Cancel));
    assert!(!marker.exists(), "an aborted child must never exec");
    assert_eq!(live_in_group(pid), 0);

    // The same program released at the gate does run.
    let (_, outcome) = run(request(dir.path(), &argv)).await;
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert!(marker.exists());
}

/// Self-released, the child runs as soon as it is in its cell, with no word from the node; its
/// cell (where there are cells) stays as the record of the start until the outcome is
/// acknowledged, and a stop that comes after the start goes through the kill ladder.
#[tokio::test]
async fn a_self_released_child_runs_at_once_and_its_cell_waits_for_the_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let (sup, mut reports, scope) = supervisor();
    let mut req = request(dir.path(), &["touch", marker.to_str().expect("utf-8")]);
    req.self_release = true;
    let attempt = req.attempt;
    sup.send(Command::Start(Box::new(req))).expect("send");
    assert!(matches!(next(&mut reports).await, Report::Spawned { .. }));
    let Report::Exited { outcome, .. } = next(&mut reports).await else {
        panic!("expected Exited");
    };
    assert_eq!(
        outcome.ending,
        Ending::Exited(0),
        "it ran without a release"
    );
    assert!(marker.exists());
    let containment = &scope.0;

    // A stop that reaches the supervisor before the child is made keeps it from running.
    let stopped_marker = dir.path().join("stopped-ran");
    let mut early = request(
        dir.path(),
        &["touch", stopped_marker.to_str().expect("utf-8")],
    );
    early.self_release = true;
    let early_attempt = early.attempt;
    sup.send(Command::Start(Box::new(early))).expect("send");
    sup.send(Command::Stop(early_attempt, StopReason::Cancel))
        .expect("send");
    let ended = loop {
        match next(&mut reports).await {
            Report::Spawned { .. } => continue,
            Report::Exited { outcome, .. } => break outcome,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(ended.ending, Ending::Aborted(StopReason::Cancel));
    assert!(
        !stopped_marker.exists(),
        "a child stopped before its start never execs"
    );
    sup.send(Command::Ack(early_attempt)).expect("send");
    until_cell_gone(containment, early_attempt).await;
    if containment.has_cells() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            containment.cell_exists(attempt),
            "the cell records the start until the outcome is on disk"
        );
        sup.send(Command::Ack(attempt)).expect("send");
        until_cell_gone(containment, attempt).await;
    }

    let mut req = request(dir.path(), &["sleep", "30"]);
    req.self_release = true;
    let attempt = req.attempt;
    sup.send(Command::Start(Box::new(req))).expect("send");
    let Report::Spawned { pid, .. } = next(&mut reports).await else {
        panic!("expected Spawned");
    };
    until_group_has(pid, 1).await;
    sup.send(Command::Stop(attempt, StopReason::Cancel))
        .expect("send");
    let Report::Exited { outcome, .. } = next(&mut reports).await else {
        panic!("expected Exited");
    };
    assert_eq!(outcome.ending, Ending::Stopped(StopReason::Cancel));
    assert_eq!(live_in_group(pid), 0);
    sup.send(Command::Ack(attempt)).expect("send");
    until_cell_gone(containment, attempt).await;
}

async fn until_cell_gone(containment: &drover_exec::Containment, attempt: AttemptRef) {
    let gone = tokio::time::Instant::now() + Duration::from_secs(10);
    while containment.cell_exists(attempt) {
        assert!(
            tokio::time::Instant::now() < gone,
            "the cell outlived its Ack"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut req = request(dir.path(), &["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    req.timeout = Duration::from_millis(500);
    req.grace = Duration::from_millis(500);
    let (pid, outcome) = run(req).await;
    assert_eq!(outcome.ending, Ending::TimedOut);
    assert!(!outcome.survivors);
    assert_eq!(live_in_group(pid), 0, "no member of the tree survives");
}

#[tokio::test]
async fn a_stubborn_job_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut req = request(dir.path(), &["sh", "-c", "trap '' TERM; sleep 1000 & wait"]);
    req.grace = Duration::from_millis(300);
    let attempt = req.attempt;
    let (sup, mut reports, _scope) = supervisor();
    sup.send(Command::Start(Box::new(req))).expect("send");
    let Report::Spawned { pid, .. } = next(&mut reports).await else {
        panic!("expected Spawned");
    };
    sup.send(Command::Release(attempt)).expect("send");
    // The shell has set its trap once it has started `sleep` (the line after the trap).
    until_group_has(pid, 2).await;
    let asked = std::time::Instant::now();
    sup.send(Command::Stop(attempt, StopReason::Cancel))
        .expect("send");
    let Report::Exited { outcome, .. } = next(&mut reports).await else {
        panic!("expected Exited");
    };
    assert_eq!(outcome.ending, Ending::Stopped(StopReason::Cancel));
    assert_eq!(
        outcome.signal,
        Some(libc::SIGKILL),
        "SIGTERM was ignored, so SIGKILL ended it"
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "the grace period was honoured"
    );
    assert_eq!(live_in_group(pid), 0);
}

#[tokio::test]
async fn processes_left_behind_by_the_leader_are_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut req = request(dir.path(), &["sh", "-c", "sleep 1000 & echo started"]);
    req.grace = Duration::from_millis(300);
    let (pid, outcome) = run(req).await;
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert!(outcome.leftovers_killed);
    assert_eq!(live_in_group(pid), 0);
    assert_eq!(read(dir.path().join("stdout")), "started\n");
}

#[tokio::test]
async fn cpu_time_is_accounted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let req = request(
        dir.path(),
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
        ],
    );
    let (_, outcome) = run(req).await;
    assert_eq!(outcome.ending, Ending::Exited(0));
    assert!(outcome.cpu_time_ms.unwrap_or(0) > 10, "{outcome:?}");
}

#[tokio::test]
async fn orphaned_groups_are_stopped_but_reused_pids_are_not() {
    use drover_exec::orphan::{OrphanVerdict, stop_orphan_group};
    // A process group this test owns, standing in for one left by a crashed node.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "sleep 1000 & sleep 1000"])
        .process_group(0)
        .spawn()
        .expect("spawn");
    let pgid = child.id() as i32;
    // Both sleeps exist (the shell may have become the second one).
    until_group_has(pgid, 2).await;
    let start = sys::process_start_time(pgid);

    let reused = stop_orphan_group(pgid, start.map(|s| s + 1), Duration::from_millis(200)).await;
    assert_eq!(reused, OrphanVerdict::PidReused);
    assert!(
        live_in_group(pgid) >= 2,
        "a pid that looks reused must not be touched"
    );

    let verdict = stop_orphan_group(pgid, start, Duration::from_millis(200)).await;
    assert!(
        matches!(verdict, OrphanVerdict::Stopped(l) if !l.survivors),
        "{verdict:?}"
    );
    let _ = child.wait();
    assert_eq!(live_in_group(pgid), 0);
    assert_eq!(
        stop_orphan_group(pgid, start, Duration::from_millis(200)).await,
        OrphanVerdict::AlreadyGone
    );
}

use std::os::unix::process::CommandExt;

/// Waits until process group `pgid` has at least `n` live members (at most 10 s).
async fn until_group_has(pgid: i32, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while live_in_group(pgid) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "group {pgid} never had {n} members"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
