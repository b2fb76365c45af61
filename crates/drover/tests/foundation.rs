//! Issue #3 acceptance, end to end: the real `drover` binary as node and as client.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Node, alive_with, marker_sleep, sleeps_alive, stdout};
use serde_json::Value;

fn time(job: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    job[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {job:#}"))
        .parse()
        .expect("RFC 3339")
}

/// Acceptance 1: hello, with both streams captured and the full job JSON.
#[test]
fn hello_runs_and_captures_both_streams() {
    let node = Node::start(&[]);
    let id = node.submit(&["--", "sh", "-c", "echo hi; echo oops >&2"]);
    let wait = node.drover(&["wait", &id]);
    assert_eq!(
        wait.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&wait.stderr)
    );

    let job = node.job(&id);
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["exit_code"], 0);
    for field in [
        "id",
        "name",
        "state",
        "argv",
        "exit_code",
        "signal",
        "reason",
        "attempt",
        "node",
        "created_at",
        "started_at",
        "finished_at",
        "peak_memory_bytes",
        "cpu_time_ms",
        "attempts",
    ] {
        assert!(job.get(field).is_some(), "job JSON lacks {field}: {job:#}");
    }
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["argv"][0], "sh");
    assert_eq!(job["attempt"], 1);
    assert!(job["peak_memory_bytes"].as_u64().unwrap_or(0) > 0);
    assert!(time(&job, "finished_at") >= time(&job, "started_at"));
    let attempt = &job["attempts"][0];
    for field in [
        "attempt",
        "node",
        "state",
        "started_at",
        "finished_at",
        "exit_code",
        "signal",
        "reason",
        "peak_memory_bytes",
        "cpu_time_ms",
    ] {
        assert!(
            attempt.get(field).is_some(),
            "attempt JSON lacks {field}: {attempt:#}"
        );
    }
    assert_eq!(attempt["state"], "succeeded");

    assert_eq!(stdout(&node.drover(&["logs", "--stdout", &id])), "hi\n");
    assert_eq!(
        stdout(&node.drover(&["logs", &id])),
        "hi\n--- stderr ---\noops\n",
        "both streams by default"
    );
    assert_eq!(stdout(&node.drover(&["logs", "--stderr", &id])), "oops\n");
    // Clients also find the node by URL.
    let by_url = node.drover(&["--server", &node.url(), "status", &id, "--json"]);
    assert!(by_url.status.success());
}

/// Acceptance 2: a non-zero exit is `failed` with its code, and `wait` says so.
#[test]
fn failure_is_recorded_and_wait_fails() {
    let node = Node::start(&[]);
    let id = node.submit(&["--", "sh", "-c", "exit 3"]);
    let wait = node.drover(&["wait", &id]);
    assert_eq!(wait.status.code(), Some(1));
    let job = node.job(&id);
    assert_eq!(job["state"], "failed");
    assert_eq!(job["exit_code"], 3);
    assert_eq!(job["reason"], "exit_code: 3");
}

/// Acceptance 3: a missing binary fails with a spawn_failed reason, promptly.
#[test]
fn spawn_errors_fail_fast() {
    let node = Node::start(&[]);
    let id = node.submit(&["--", "/nonexistent/x"]);
    let wait = node.drover(&["wait", "--timeout", "30s", &id]);
    assert_eq!(wait.status.code(), Some(1), "wait must end (not time out)");
    let job = node.job(&id);
    assert_eq!(job["state"], "failed");
    let reason = job["reason"].as_str().expect("reason");
    assert!(reason.starts_with("spawn_failed: "), "{reason}");
    assert!(reason.contains("No such file"), "{reason}");
    // "Within a second" of being claimed, as recorded by the node itself.
    let attempt = &job["attempts"][0];
    let took = time(attempt, "finished_at") - time(attempt, "claimed_at");
    assert!(
        took < chrono::Duration::seconds(1),
        "spawn failure took {took}"
    );

    // A bad working directory is a spawn failure too.
    let id = node.submit(&["--cwd", "/nonexistent/dir", "--", "true"]);
    assert_eq!(node.drover(&["wait", &id]).status.code(), Some(1));
    assert!(
        node.job(&id)["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("spawn_failed")
    );
}

/// Acceptance 4: a timeout kills the whole tree.
#[test]
fn timeout_kills_the_whole_tree() {
    let node = Node::start(&[]);
    let marker = marker_sleep(4);
    let script = format!("sleep {marker} & sleep {marker} & wait");
    let id = node.submit(&[
        "--timeout",
        "1s",
        "--grace",
        "1s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    node.wait_until(&id, "both sleeps running", |j| {
        j["state"] == "running" && sleeps_alive(&marker) == 2
    });
    assert_eq!(node.drover(&["wait", &id]).status.code(), Some(1));
    let job = node.job(&id);
    assert_eq!(job["state"], "timed_out");
    assert_eq!(job["reason"], "timeout");
    assert_eq!(
        alive_with(&marker),
        Vec::<i32>::new(),
        "sleeps survived the timeout"
    );
}

/// Acceptance 5: a job that ignores SIGTERM is cancelled by SIGKILL after the grace period.
#[test]
fn stubborn_cancel_escalates_and_leaves_nothing() {
    let node = Node::start(&[]);
    let marker = marker_sleep(5);
    let script = format!("trap '' TERM; sleep {marker} & wait");
    let id = node.submit(&["--grace", "1s", "--", "sh", "-c", &script]);
    node.wait_until(&id, "the job running", |j| {
        j["state"] == "running" && sleeps_alive(&marker) == 1
    });
    let asked = chrono::Utc::now();
    let cancel = node.drover(&["cancel", &id]);
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    assert_eq!(node.drover(&["wait", &id]).status.code(), Some(1));
    let job = node.job(&id);
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["reason"], "cancelled_by_user");
    assert_eq!(job["signal"], 9, "SIGTERM was ignored, so SIGKILL ended it");
    let ended = time(&job, "finished_at");
    assert!(
        ended - asked >= chrono::Duration::milliseconds(900),
        "ended before the grace period"
    );
    assert_eq!(alive_with(&marker), Vec::<i32>::new());
    // Cancelling an ended job changes nothing.
    let again = node.drover(&["cancel", &id]);
    assert!(stdout(&again).contains("already ended"));
}

/// Acceptance 6: bad input gets a 4xx naming the problem; the node keeps serving.
#[test]
fn bad_input_is_refused_by_field() {
    let node = Node::start(&[]);
    let url = format!("{}/v1/jobs", node.url());
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let post = |body: &str| -> (u16, Value) {
        let mut response = agent
            .post(&url)
            .header("Authorization", &node.bearer())
            .header("content-type", "application/json")
            .send(body)
            .expect("request");
        let status = response.status().as_u16();
        let json = response
            .body_mut()
            .read_json::<Value>()
            .expect("JSON error body");
        (status, json)
    };
    let (status, body) = post("{not json");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].is_string());

    let (status, body) = post(r#"{"argv": "true"}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "argv");

    let (status, body) = post(r#"{"argv": ["true"], "timeout": "banana"}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "timeout");

    let (status, body) = post(r#"{"argv": ["true"], "timout": "5s"}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "timout");

    let (status, body) = post(r#"{"argv": []}"#);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "argv");

    // An oversized body is refused from its Content-Length, before it is read.
    let (status, body) = raw_post(&node, 9 * 1024 * 1024);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["field"], "body");

    let bad_id = agent
        .get(format!("{}/v1/jobs/not-an-id", node.url()))
        .header("Authorization", &node.bearer())
        .call()
        .expect("request");
    assert_eq!(bad_id.status().as_u16(), 400);

    // The CLI refuses a bad duration before it reaches the node, naming the flag.
    let out = node.drover(&["submit", "--timeout", "banana", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timeout"));

    // Still serving, and still running jobs.
    let id = node.submit(&["--", "true"]);
    assert_eq!(node.drover(&["wait", &id]).status.code(), Some(0));
}

/// Acceptance 7: kill -9 mid-run, restart: every job ends, nothing is orphaned, the file is sound.
#[test]
fn crash_mid_run_loses_nothing() {
    let mut node = Node::start(&["--slots", "4"]);
    let marker = format!("0.{:04}7", std::process::id() % 10_000);
    let ids: Vec<String> = (0..40)
        .map(|_| node.submit(&["--", "sh", "-c", &format!("sleep {marker}")]))
        .collect();
    // Let some finish and some run, then pull the plug.
    node.wait_until(&ids[5], "the sixth job to start", |j| j["attempt"] == 1);
    node.kill9();
    let orphans_before = alive_with(&marker).len();
    node.restart();

    let mut wait_args = vec!["wait", "--timeout", "60s", "--quiet"];
    wait_args.extend(ids.iter().map(String::as_str));
    let wait = node.drover(&wait_args);
    assert_ne!(
        wait.status.code(),
        Some(3),
        "jobs still not terminal after restart:\n{}",
        node.log()
    );
    let mut states = std::collections::BTreeMap::new();
    for id in &ids {
        let job = node.job(id);
        let state = job["state"].as_str().unwrap_or("?").to_string();
        assert!(
            ["succeeded", "lost"].contains(&state.as_str()),
            "job {id} ended {state}: {job:#}"
        );
        if state == "lost" {
            assert_eq!(job["reason"], "node_lost");
        }
        *states.entry(state).or_insert(0) += 1;
    }
    eprintln!(
        "after the crash: {states:?}; job processes alive right after kill -9: {orphans_before}"
    );
    assert_eq!(
        alive_with(&marker),
        Vec::<i32>::new(),
        "orphaned job processes"
    );
    let conn = rusqlite::Connection::open(common::db_path(&node)).expect("open db");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
}

/// When a node and the owner of its job both die, nothing holds the job's tree: the node's next
/// start stops it (its pid checked first) and records the attempt lost, naming why.
#[test]
fn crash_recovery_stops_orphaned_trees() {
    let mut node = Node::start(&[]);
    let marker = marker_sleep(8);
    let id = node.submit(&[
        "--grace",
        "1s",
        "--",
        "sh",
        "-c",
        &format!("sleep {marker} & sleep {marker}"),
    ]);
    node.wait_until(&id, "the job running", |j| {
        j["state"] == "running" && sleeps_alive(&marker) == 2
    });
    node.kill9_with_owners();
    assert_eq!(
        sleeps_alive(&marker),
        2,
        "the tree outlives a kill -9 of its node and its owner"
    );
    node.restart();
    let job = node.wait_until(&id, "recovery to end the attempt", |j| j["state"] == "lost");
    assert_eq!(job["reason"], "owner_died");
    assert_eq!(
        alive_with(&marker),
        Vec::<i32>::new(),
        "recovery left the tree running"
    );
}

/// With --stop-jobs-on-exit, SIGTERM drains: running jobs past the shutdown timeout are stopped
/// and recorded as lost.
#[test]
fn graceful_shutdown_stops_and_records_running_jobs() {
    let mut node = Node::start(&["--stop-jobs-on-exit", "--shutdown-timeout", "500ms"]);
    let marker = marker_sleep(9);
    let long = node.submit(&["--grace", "1s", "--", "sleep", &marker]);
    let quick = node.submit(&["--", "true"]);
    node.wait_until(&long, "the long job running", |j| j["state"] == "running");
    assert_eq!(node.drover(&["wait", &quick]).status.code(), Some(0));
    let status = node.terminate();
    assert!(status.success(), "node exit: {status}\n{}", node.log());
    assert_eq!(alive_with(&marker), Vec::<i32>::new());
    assert!(
        !node.data_dir().join("serve.json").exists(),
        "address file removed on exit"
    );
    node.restart();
    let job = node.job(&long);
    assert_eq!(job["state"], "lost");
    assert_eq!(job["reason"], "node_shutdown");
}

/// A job with retries that is lost in a crash of its node and its owner runs again after the
/// restart.
#[test]
fn lost_jobs_with_retries_run_again() {
    let mut node = Node::start(&[]);
    let marker = marker_sleep(10);
    let script = format!("[ \"$DROVER_ATTEMPT\" = 2 ] || sleep {marker}");
    let id = node.submit(&["--retries", "1", "--", "sh", "-c", &script]);
    node.wait_until(&id, "attempt 1 running", |j| j["state"] == "running");
    node.kill9_with_owners();
    node.restart();
    assert_eq!(
        node.drover(&["wait", "--timeout", "30s", &id])
            .status
            .code(),
        Some(0)
    );
    let job = node.job(&id);
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["attempts"][0]["state"], "lost");
    assert_eq!(job["attempts"][1]["state"], "succeeded");
    assert_eq!(alive_with(&marker), Vec::<i32>::new());
}

/// `status` with no ids prints a table of recent jobs; `wait --timeout` gives up with code 3.
#[test]
fn status_table_and_wait_timeout() {
    let node = Node::start(&[]);
    let marker = marker_sleep(11);
    let id = node.submit(&["--name", "nightly-run", "--", "sleep", &marker]);
    let out = node.drover(&["wait", "--timeout", "300ms", &id]);
    assert_eq!(out.status.code(), Some(3));
    let table = stdout(&node.drover(&["status"]));
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("JOB") && header.contains("STATE"),
        "{table}"
    );
    assert!(table.contains("nightly-run"), "{table}");
    let cancel = node.drover(&["cancel", &id]);
    assert!(cancel.status.success());
    assert_eq!(node.drover(&["wait", &id]).status.code(), Some(1));
}

/// Sends only the headers of a POST announcing `length` bytes, and reads the answer.
fn raw_post(node: &Node, length: usize) -> (u16, Value) {
    use std::io::{Read, Write};
    let base = node.url();
    let addr = base.trim_start_matches("http://");
    let bearer = node.bearer();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /v1/jobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {bearer}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
    )
    .expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}}") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `logs -f` prints output as it comes and ends when the attempt ends.
#[test]
fn logs_follow_streams_until_the_job_ends() {
    use std::io::{BufRead, BufReader};
    let node = Node::start(&[]);
    let id = node.submit(&[
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; sleep 0.1; done",
    ]);
    let mut follower = std::process::Command::new(common::BIN)
        .args(["logs", "-f", &id])
        .env("DROVER_DATA_DIR", node.data_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let lines: Vec<String> = BufReader::new(follower.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = follower.wait().expect("reap");
    assert!(status.success());
    assert_eq!(lines, ["line1", "line2", "line3", "line4", "line5"]);
    assert_eq!(
        node.job(&id)["state"],
        "succeeded",
        "logs -f ended only when the job did"
    );
}

/// Jobs claimed ahead of a free slot never ran: a shutdown or a crash gives them back to the
/// queue with their retry budget untouched, so they still run (and succeed) afterwards.
#[test]
fn claimed_but_unrun_jobs_survive_shutdown_and_crash() {
    let mut node = Node::start(&[
        "--slots",
        "1",
        "--stop-jobs-on-exit",
        "--shutdown-timeout",
        "200ms",
    ]);
    // A node claims ahead only while recent jobs were short: show it some.
    let warm_up = |node: &Node| {
        for _ in 0..3 {
            let id = node.submit(&["--", "true"]);
            assert_eq!(
                node.drover(&["wait", "--quiet", &id]).status.code(),
                Some(0)
            );
        }
    };
    warm_up(&node);
    let marker = marker_sleep(12);
    let long = node.submit(&["--grace", "1s", "--", "sleep", &marker]);
    node.wait_until(&long, "the long job running", |j| j["state"] == "running");
    let next = node.submit(&["--", "true"]);
    node.wait_until(&next, "the next job claimed ahead", |j| {
        j["state"] == "starting"
    });
    let status = node.terminate();
    assert!(status.success(), "{}", node.log());

    node.restart();
    assert_eq!(node.job(&long)["reason"], "node_shutdown");
    assert_eq!(
        node.drover(&["wait", "--timeout", "30s", &next])
            .status
            .code(),
        Some(0)
    );
    let job = node.job(&next);
    assert_eq!(
        job["attempts"][0]["state"], "queued",
        "attempt 1 was given back: {job:#}"
    );
    assert_eq!(job["attempts"][0]["reason"], "node_shutdown");
    assert_eq!(job["attempts"][1]["state"], "succeeded");

    // The same after kill -9: the waiting claim had no pid, so recovery gives it back.
    warm_up(&node);
    let long = node.submit(&["--", "sleep", &marker]);
    node.wait_until(&long, "the long job running", |j| j["state"] == "running");
    let next = node.submit(&["--", "true"]);
    node.wait_until(&next, "the next job claimed ahead", |j| {
        j["state"] == "starting"
    });
    node.kill9();
    node.restart();
    // The long job outlived the crash under its owner; the claim behind it had no pid, so it
    // went back to the queue. It runs once the long job is out of the way.
    let long_job = node.job(&long);
    assert_eq!(long_job["state"], "running", "{long_job:#}");
    assert_eq!(long_job["attempt"], 1);
    assert!(node.drover(&["cancel", &long]).status.success());
    assert_eq!(
        node.drover(&["wait", "--timeout", "30s", &next])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(node.job(&next)["attempts"][0]["reason"], "node_lost");
    assert_eq!(node.job(&long)["state"], "cancelled");
    assert_eq!(alive_with(&marker), Vec::<i32>::new());
}

/// A job inherits no descriptor of the node: listing /proc/self/fd from inside shows 0, 1 and 2,
/// plus the one `ls` opens to read the directory.
#[test]
fn jobs_inherit_only_stdio() {
    let node = Node::start(&[]);
    let id = node.submit(&["--", "ls", "-1", "/proc/self/fd"]);
    assert_eq!(node.drover(&["wait", &id]).status.code(), Some(0));
    let listed = stdout(&node.drover(&["logs", &id]));
    let fds: Vec<&str> = listed.lines().collect();
    assert!(fds.starts_with(&["0", "1", "2"]), "{fds:?}");
    assert!(fds.len() <= 4, "the job inherited descriptors: {fds:?}");
}
