//! Queue semantics through the real binary: priorities, delays, retries with backoff, the
//! dead-letter queue, idempotency, cancel of waiting jobs, and scheduled jobs across a crash.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Utc};
use common::{Node, marker_sleep, stdout};
use serde_json::Value;

fn at(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap()
}

fn ended(node: &Node, id: &str) -> Value {
    node.drover(&["wait", "--timeout", "60s", "--quiet", id]);
    node.wait_until(id, "the job to end", |j| {
        matches!(
            j["state"].as_str(),
            Some("succeeded" | "failed" | "timed_out" | "cancelled" | "lost")
        )
    })
}

/// Acceptance 1: higher priority first, FIFO among equals; `drover priority` reorders a waiting
/// job.
#[test]
fn priorities_order_the_starts() {
    let node = Node::start(&["--slots", "1"]);
    let marker = marker_sleep(61);
    let blocker = node.submit(&["--", "sleep", &marker]);
    node.wait_until(&blocker, "the blocker running", |j| j["state"] == "running");
    let p1 = node.submit(&["--priority", "1", "--", "true"]);
    let p5 = node.submit(&["--priority", "5", "--", "true"]);
    let p3 = node.submit(&["--priority", "3", "--", "true"]);
    let moved = node.submit(&["--", "true"]);
    let out = node.drover(&["priority", &moved, "9"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(node.job(&moved)["spec"]["priority"], 9);
    assert!(node.drover(&["cancel", &blocker]).status.success());
    let labelled = [(&moved, "9"), (&p5, "5"), (&p3, "3"), (&p1, "1")];
    for (id, _) in labelled {
        ended(&node, id);
    }
    // The order of the `started` events: start times have millisecond resolution, and these
    // jobs start within a few of each other.
    let db = rusqlite::Connection::open(common::db_path(&node)).expect("open");
    let mut started = db
        .prepare("SELECT job_id FROM events WHERE kind = 'started' ORDER BY seq")
        .expect("prepare");
    let order: Vec<&str> = started
        .query_map([], |row| row.get::<_, String>(0))
        .expect("query")
        .map(|id| id.expect("row"))
        .filter_map(|id| labelled.iter().find(|(j, _)| **j == id).map(|(_, l)| *l))
        .collect();
    assert_eq!(order, vec!["9", "5", "3", "1"]);
    // A job that already ran cannot be reprioritized.
    assert!(!node.drover(&["priority", &p1, "2"]).status.success());
}

/// Acceptance 2: a delayed job is `scheduled`, then starts at its time (and not much later on
/// an idle node).
#[test]
fn a_delayed_job_starts_at_its_time() {
    let node = Node::start(&[]);
    let id = node.submit(&["--delay", "2s", "--", "true"]);
    let job = node.job(&id);
    assert_eq!(job["state"], "scheduled", "{job:#}");
    let shown = stdout(&node.drover(&["status", &id]));
    assert!(shown.contains("not before"), "{shown}");
    let job = ended(&node, &id);
    assert_eq!(job["state"], "succeeded");
    let waited = at(&job["started_at"]) - at(&job["created_at"]);
    assert!(
        (2000..2500).contains(&waited.num_milliseconds()),
        "started {waited} after submit"
    );
}

/// Acceptance 3: retries with backoff, then the dead-letter queue, then `drover retry`.
#[test]
fn retries_end_in_the_dead_letter_queue_and_can_run_again() {
    let node = Node::start(&[]);
    let id = node.submit(&[
        "--retries",
        "2",
        "--backoff",
        "100ms",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    let job = ended(&node, &id);
    assert_eq!(job["state"], "failed");
    let attempts = job["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "{job:#}");
    // Each retry waited its backoff after the attempt before it ended.
    for pair in attempts.windows(2) {
        let gap = at(&pair[1]["claimed_at"]) - at(&pair[0]["finished_at"]);
        assert!(gap.num_milliseconds() >= 100, "retried after {gap}");
    }
    let dlq: Vec<Value> =
        serde_json::from_str(&stdout(&node.drover(&["dlq", "--json"]))).expect("dlq json");
    assert!(dlq.iter().any(|j| j["id"] == id.as_str()), "not in the dlq");
    assert!(stdout(&node.drover(&["dlq"])).contains("exit_code: 1"));

    assert!(node.drover(&["retry", &id]).status.success());
    // A fresh budget: attempt 4, then its two retries; the first three are kept.
    let job = node.wait_until(&id, "the fresh budget to be used up", |j| {
        j["attempts"].as_array().map_or(0, Vec::len) == 6 && j["state"] == "failed"
    });
    assert_eq!(job["attempts"][3]["attempt"], 4);
    assert_eq!(job["attempts"][0]["reason"], "exit_code: 1");

    // Dismissed jobs leave the dead-letter queue.
    let out = node.drover(&["dlq", "dismiss", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dlq: Vec<Value> =
        serde_json::from_str(&stdout(&node.drover(&["dlq", "--json"]))).expect("dlq json");
    assert!(!dlq.iter().any(|j| j["id"] == id.as_str()));
}

/// `--retry-on` narrows what is retried.
#[test]
fn retry_on_chooses_the_endings_that_are_retried() {
    let node = Node::start(&[]);
    let id = node.submit(&[
        "--retries",
        "3",
        "--retry-on",
        "timed_out",
        "--",
        "sh",
        "-c",
        "exit 2",
    ]);
    let job = ended(&node, &id);
    assert_eq!(job["attempts"].as_array().map(Vec::len), Some(1), "{job:#}");
    let bad = node.drover(&["submit", "--retry-on", "sometimes", "--", "true"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("retry_on"));
}

/// Acceptance 5: one key, one job — in one node's life and across a restart.
#[test]
fn idempotency_keys_survive_a_restart() {
    let mut node = Node::start(&[]);
    let first = node.submit(&["--idempotency-key", "nightly-2026-11-25", "--", "true"]);
    let second = node.submit(&["--idempotency-key", "nightly-2026-11-25", "--", "true"]);
    assert_eq!(first, second);
    assert!(node.terminate().success());
    node.restart();
    let third = node.submit(&["--idempotency-key", "nightly-2026-11-25", "--", "true"]);
    assert_eq!(first, third);
    let all: Vec<Value> =
        serde_json::from_str(&stdout(&node.drover(&["status", "--json"]))).expect("json");
    assert_eq!(all.len(), 1);
}

/// Cancel reaches scheduled jobs, and `cancel --all` every job that has not ended.
#[test]
fn waiting_jobs_are_cancelled_one_by_one_or_all_at_once() {
    let node = Node::start(&["--slots", "1"]);
    let later = node.submit(&["--delay", "1h", "--", "true"]);
    let out = stdout(&node.drover(&["cancel", &later]));
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(node.job(&later)["reason"], "cancelled_by_user");

    let marker = marker_sleep(62);
    let running = node.submit(&["--", "sleep", &marker]);
    node.wait_until(&running, "running", |j| j["state"] == "running");
    let queued = node.submit(&["--", "true"]);
    let scheduled = node.submit(&["--delay", "1h", "--", "true"]);
    let out = node.drover(&["cancel", "--all", "--state", "queued,scheduled"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(node.job(&queued)["state"], "cancelled");
    assert_eq!(node.job(&scheduled)["state"], "cancelled");
    assert_eq!(
        node.job(&running)["state"],
        "running",
        "not in the states named"
    );
    // Only the named queue.
    let in_q = node.submit(&["--queue", "q", "--delay", "1h", "--", "true"]);
    let elsewhere = node.submit(&["--delay", "1h", "--", "true"]);
    assert!(
        node.drover(&["cancel", "--all", "--queue", "q"])
            .status
            .success()
    );
    assert_eq!(node.job(&in_q)["state"], "cancelled");
    assert_eq!(node.job(&elsewhere)["state"], "scheduled");
    assert!(node.drover(&["cancel", "--all"]).status.success());
    assert_eq!(ended(&node, &running)["state"], "cancelled");
    assert_eq!(node.job(&elsewhere)["state"], "cancelled");
}

/// Acceptance 8: jobs waiting out a backoff survive kill -9 of the node and run at their time,
/// their attempt counts intact.
#[test]
fn scheduled_retries_survive_a_crash() {
    let mut node = Node::start(&[]);
    let id = node.submit(&[
        "--retries",
        "1",
        "--backoff",
        "2s",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    let waiting = node.wait_until(&id, "the retry to be scheduled", |j| {
        j["state"] == "scheduled"
    });
    let due = at(&waiting["not_before"]);
    node.kill9();
    node.restart();
    let job = ended(&node, &id);
    assert_eq!(job["state"], "failed", "{job:#}");
    let attempts = job["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{job:#}");
    assert!(
        at(&attempts[1]["claimed_at"]) >= due,
        "the retry ran before its time"
    );
}

/// Acceptance 6: `--after` holds a job until its dependencies succeed; a failure for good fails
/// the dependents down the chain.
#[test]
fn dependencies_hold_run_and_fail_down_the_chain() {
    let node = Node::start(&[]);
    let a = node.submit(&["--", "sh", "-c", "sleep 0.3; exit 1"]);
    let b = node.submit(&["--after", &a, "--", "true"]);
    let c = node.submit(&["--after", &b, "--", "true"]);
    assert_eq!(node.job(&b)["state"], "blocked");
    let shown = stdout(&node.drover(&["status", &b]));
    assert!(
        shown.contains(&a),
        "status names what it waits for: {shown}"
    );
    for (id, failed) in [(&b, &a), (&c, &b)] {
        let job = ended(&node, id);
        assert_eq!(job["state"], "failed", "{job:#}");
        assert_eq!(
            job["reason"],
            format!("dependency_failed: {failed}"),
            "names the job that failed"
        );
        assert!(
            job["attempts"].as_array().is_some_and(Vec::is_empty),
            "it never ran"
        );
    }

    let first = node.submit(&["--", "sleep", "0.3"]);
    let second = node.submit(&["--after", &first, "--", "true"]);
    let (first, second) = (ended(&node, &first), ended(&node, &second));
    assert_eq!(second["state"], "succeeded");
    assert!(at(&second["started_at"]) >= at(&first["finished_at"]));

    let bad = node.drover(&[
        "submit",
        "--after",
        "01a21434-1507-7608-96b7-aabcde46f75a",
        "--",
        "true",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("after"));
}

/// Acceptance 7: a queue limited to one runs its jobs one at a time; a paused queue holds its
/// jobs until resumed, while other queues go on.
#[test]
fn named_queues_limit_and_pause() {
    let node = Node::start(&["--slots", "4"]);
    let out = node.drover(&["queue", "set", "q", "--concurrency", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = (0..4)
        .map(|_| node.submit(&["--queue", "q", "--", "sleep", "0.3"]))
        .collect();
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = ids
        .iter()
        .map(|id| {
            let job = ended(&node, id);
            assert_eq!(job["state"], "succeeded");
            (at(&job["started_at"]), at(&job["finished_at"]))
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "two jobs of q overlapped: {pair:?}");
    }

    assert!(node.drover(&["queue", "pause", "q"]).status.success());
    let held = node.submit(&["--queue", "q", "--", "true"]);
    let free = node.submit(&["--", "true"]);
    assert_eq!(
        ended(&node, &free)["state"],
        "succeeded",
        "other queues go on"
    );
    // No pause is needed to see that nothing started: `held` was submitted first, so the claim
    // that took `free` (which has ended) met `held` before it, and passed it over.
    assert_eq!(
        node.job(&held)["state"],
        "queued",
        "a paused queue starts nothing"
    );
    let listed = stdout(&node.drover(&["queue", "ls"]));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("q ") && l.contains("paused")),
        "{listed}"
    );
    assert!(node.drover(&["queue", "resume", "q"]).status.success());
    assert_eq!(ended(&node, &held)["state"], "succeeded");
}

/// `[queues.NAME]` in drover.toml fills what a job in that queue leaves out.
#[test]
fn queue_defaults_come_from_drover_toml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("drover.toml");
    std::fs::write(&file, "[queues.sage]\ntimeout = \"12h\"\nretries = 2\n").expect("write");
    let node = Node::start(&["--config", file.to_str().expect("utf-8")]);
    let defaulted = node.submit(&["--queue", "sage", "--", "true"]);
    let job = node.job(&defaulted);
    assert_eq!(job["spec"]["timeout"], "12h");
    assert_eq!(job["spec"]["retries"], 2);
    let explicit = node.submit(&[
        "--queue",
        "sage",
        "--retries",
        "0",
        "--timeout",
        "1m",
        "--",
        "true",
    ]);
    let job = node.job(&explicit);
    assert_eq!(
        job["spec"]["timeout"], "1m",
        "a flag wins over the queue's default"
    );
    let other = node.submit(&["--", "true"]);
    assert_eq!(
        node.job(&other)["spec"]["timeout"],
        "1d",
        "the built-in default"
    );
}
