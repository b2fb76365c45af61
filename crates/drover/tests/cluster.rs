//! Many nodes on one PostgreSQL database (#8), through the real binary. Each test gets a fresh
//! schema of the database named by `DROVER_TEST_DATABASE_URL`; without it the tests skip
//! themselves (and fail instead when `DROVER_REQUIRE_POSTGRES` is set, as in CI).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Node, stdout};
use drover_store::testing::TestDatabase;
use serde_json::Value;

/// `n` nodes, each with its own data dir, all on `db`.
fn cluster(db: &TestDatabase, n: usize, extra: &[&str]) -> Vec<Node> {
    (0..n)
        .map(|_| {
            let mut args = vec!["--db", db.url()];
            args.extend_from_slice(extra);
            Node::start(&args)
        })
        .collect()
}

/// Every job as any node reports it (they all read the one database).
fn jobs(node: &Node, limit: usize) -> Vec<Value> {
    let out = node.drover(&["status", "--json", "--limit", &limit.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// Acceptance 2: three nodes on one database run 300 jobs, each exactly once, and all three
/// take part.
#[test]
fn three_nodes_run_each_job_exactly_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let nodes = cluster(&db, 3, &["--slots", "4"]);
    let ledger = common::Ledger::new();
    let ids = ledger.submit(&nodes[0], 300, "sleep 0.05");

    // Waiting through another node: it sees the whole cluster's jobs.
    let waited = nodes[1].drover(&["wait", "--all", "--quiet"]);
    assert!(
        waited.status.success(),
        "wait: {}\n{}",
        String::from_utf8_lossy(&waited.stderr),
        nodes[1].log()
    );

    ledger.assert_each_ran_once(&ids);

    let mut per_node = BTreeMap::<String, usize>::new();
    for job in jobs(&nodes[2], 1000) {
        assert_eq!(job["state"], "succeeded", "{job:#}");
        assert_eq!(job["attempt"], 1, "one attempt each: {job:#}");
        *per_node
            .entry(job["node"].as_str().expect("node").to_string())
            .or_default() += 1;
    }
    assert_eq!(per_node.values().sum::<usize>(), 300);
    assert_eq!(
        per_node.len(),
        3,
        "the work is spread across all three nodes: {per_node:?}"
    );
}

/// The node's id, from `drover nodes --json` as seen by `via`, for the node `who`.
fn node_id(via: &Node, who: &Node) -> String {
    std::fs::read_to_string(who.data_dir().join("node-id"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| panic!("node-id of a node; cluster seen by {}", via.url()))
}

fn nodes_json(node: &Node) -> Vec<Value> {
    let out = node.drover(&["nodes", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nodes json")
}

/// Acceptance 3: `kill -9` a node while it runs 5 long jobs. Within the node TTL (plus a
/// heartbeat for the reaper and a margin) they are `lost`, then run to success on the other
/// nodes, each with 2 attempts; the first attempts' trees are gone, killed by their owners when
/// the dead node's leases ran out (#12).
#[test]
fn a_dead_nodes_jobs_run_again_elsewhere() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let fast = ["--heartbeat", "1s", "--slots", "5"];
    let mut victim = cluster(&db, 1, &fast).remove(0);
    let marker = common::marker_sleep(31);
    // The first attempt runs "forever"; the retry ends at once.
    let script = format!("[ \"$DROVER_ATTEMPT\" = 1 ] && exec sleep {marker}; exit 0");
    let ids: Vec<String> = (0..5)
        .map(|_| victim.submit(&["--retries", "1", "--", "sh", "-c", &script]))
        .collect();
    for id in &ids {
        victim.wait_until(id, "running on the victim", |j| j["state"] == "running");
    }
    let others = cluster(&db, 2, &fast);
    let victim_id = node_id(&others[0], &victim);

    victim.kill9();
    let killed_at = chrono::Utc::now();

    for id in &ids {
        let job = others[0].wait_until(id, "success elsewhere", |j| j["state"] == "succeeded");
        let attempts = job["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 2, "{job:#}");
        assert_eq!(attempts[0]["state"], "lost");
        assert_eq!(attempts[0]["reason"], "node_lost");
        assert_eq!(attempts[0]["node"], victim_id.as_str());
        assert_ne!(
            attempts[1]["node"],
            victim_id.as_str(),
            "the retry ran elsewhere"
        );
        let lost_at: chrono::DateTime<chrono::Utc> = attempts[0]["finished_at"]
            .as_str()
            .expect("finished_at")
            .parse()
            .expect("time");
        // TTL 3 s, a reaper pass every heartbeat (1 s), and a generous margin for a busy machine.
        let after = (lost_at - killed_at).num_milliseconds();
        assert!(
            after <= 3_000 + 1_000 + 6_000,
            "lost {after} ms after the kill"
        );
    }
    let nodes = nodes_json(&others[0]);
    let dead = nodes
        .iter()
        .find(|n| n["id"] == victim_id.as_str())
        .expect("the victim is listed");
    assert_eq!(dead["state"], "dead");
    assert_eq!(nodes.len(), 3);
    assert_eq!(
        common::alive_with(&marker),
        Vec::<i32>::new(),
        "the dead node's owners fenced its jobs"
    );
}

/// Acceptance 6: a job no live node can match stays queued and says so; a label only one node
/// has routes every such job there.
#[test]
fn labels_route_jobs_and_unmatchable_ones_say_so() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let plain = cluster(&db, 2, &["--slots", "4"]);
    let sage = Node::start(&["--db", db.url(), "--slots", "4", "--label", "has=sage"]);
    let sage_id = node_id(&plain[0], &sage);

    let nowhere = plain[0].submit(&["--require", "os=none", "--", "true"]);
    let ids: Vec<String> = (0..8)
        .map(|i| plain[i % 2].submit(&["--require", "has=sage", "--", "sh", "-c", "sleep 0.1"]))
        .collect();
    for id in &ids {
        let job = plain[1].wait_until(id, "success", |j| j["state"] == "succeeded");
        assert_eq!(
            job["node"],
            sage_id.as_str(),
            "routed to the only node with has=sage"
        );
    }
    let job = plain[1].job(&nowhere);
    assert_eq!(job["state"], "queued");
    let why = job["waiting_for"].as_str().unwrap_or_default();
    assert!(why.contains("no node matches os=none"), "{job:#}");
    let text = stdout(&plain[0].drover(&["status", &nowhere]));
    assert!(text.contains("no node matches os=none"), "{text}");
    let labels = &nodes_json(&sage)
        .into_iter()
        .find(|n| n["id"] == sage_id.as_str())
        .expect("listed")["labels"];
    assert_eq!(labels["has"], "sage");
    assert_eq!(labels["os"], std::env::consts::OS, "os is detected");
}

/// Acceptance 7: a drained node finishes its running job and claims no more; undrained, it
/// claims again.
#[test]
fn a_drained_node_finishes_its_job_and_claims_no_more() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let busy = Node::start(&["--db", db.url(), "--slots", "1"]);
    let busy_id = node_id(&busy, &busy);
    let long = busy.submit(&["--", "sleep", "1.5"]);
    busy.wait_until(&long, "running", |j| j["state"] == "running");
    let out = busy.drover(&["drain", &busy_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("draining"));
    let other = Node::start(&["--db", db.url(), "--slots", "2"]);
    let more: Vec<String> = (0..6).map(|_| busy.submit(&["--", "true"])).collect();
    let job = busy.wait_until(&long, "the running job to finish", |j| {
        j["state"] == "succeeded"
    });
    assert_eq!(job["node"], busy_id.as_str());
    for id in &more {
        let job = other.wait_until(id, "success", |j| j["state"] == "succeeded");
        assert_ne!(
            job["node"],
            busy_id.as_str(),
            "a drained node claims nothing"
        );
    }
    let listed = nodes_json(&other);
    let me = listed
        .iter()
        .find(|n| n["id"] == busy_id.as_str())
        .expect("listed");
    assert_eq!(me["state"], "draining");

    // Undrained, it claims again: stop the other node so only it can.
    drop(other);
    assert!(busy.drover(&["undrain", &busy_id]).status.success());
    let last = busy.submit(&["--", "true"]);
    let job = busy.wait_until(&last, "success", |j| j["state"] == "succeeded");
    assert_eq!(job["node"], busy_id.as_str());
}

/// Acceptance 4: a node cut from the database past its TTL stops its jobs before its leases
/// expire, the other nodes take them over, and once healed its stale completions change
/// nothing: every job succeeds exactly once.
#[test]
fn a_partitioned_node_stops_its_jobs_before_its_leases_expire() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let proxy = common::Proxy::before(db.url());
    // Heartbeat 2 s: lease and TTL 6 s; the node fences itself a heartbeat before expiry.
    let lease = std::time::Duration::from_secs(6);
    let cut_off = Node::start(&[
        "--db",
        &proxy.url(db.url()),
        "--heartbeat",
        "2s",
        "--slots",
        "3",
    ]);
    let cut_off_id = node_id(&cut_off, &cut_off);
    let work = tempfile::tempdir().expect("tempdir");
    let ledger = work.path().join("succeeded.txt");
    let marker = common::marker_sleep(41);
    let script = format!(
        "[ \"$DROVER_ATTEMPT\" = 1 ] && exec sleep {marker}; echo $DROVER_JOB_ID >> {}",
        ledger.display()
    );
    let ids: Vec<String> = (0..3)
        .map(|_| cut_off.submit(&["--retries", "1", "--", "sh", "-c", &script]))
        .collect();
    for id in &ids {
        cut_off.wait_until(id, "running on the node to cut off", |j| {
            j["state"] == "running"
        });
    }
    let others = cluster(&db, 2, &["--heartbeat", "2s"]);

    proxy.cut();
    let cut_at = std::time::Instant::now();
    while !common::alive_with(&marker).is_empty() {
        assert!(
            cut_at.elapsed() < lease,
            "the jobs still ran when the leases expired:\n{}",
            cut_off.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stopped_after = cut_at.elapsed();

    for id in &ids {
        let job = others[0].wait_until(id, "success elsewhere", |j| j["state"] == "succeeded");
        let attempts = job["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 2, "{job:#}");
        assert_eq!(attempts[0]["node"], cut_off_id.as_str());
        assert_eq!(attempts[0]["state"], "lost");
        assert_ne!(attempts[1]["node"], cut_off_id.as_str());
    }

    proxy.heal();
    // It rejoins: alive again at its next heartbeats.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let nodes = nodes_json(&others[1]);
        let me = nodes
            .iter()
            .find(|n| n["id"] == cut_off_id.as_str())
            .expect("listed");
        if me["state"] == "alive" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "it did not rejoin: {me:#}\n{}",
            cut_off.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Its stale completions changed nothing.
    for id in &ids {
        let job = others[1].job(id);
        assert_eq!(job["state"], "succeeded");
        assert_eq!(job["attempts"][0]["state"], "lost", "{job:#}");
    }
    let ran = std::fs::read_to_string(&ledger).expect("ledger");
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(lines, want, "every job succeeded exactly once");
    assert!(
        cut_off
            .log()
            .contains("stopping every job before the leases expire"),
        "stopped after {stopped_after:?}:\n{}",
        cut_off.log()
    );
}

/// Logs stay where the job ran; any node serves them (proxied from the owner), `logs -f`
/// included, with the job's exit code.
#[test]
fn any_node_serves_any_jobs_logs() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let runner = Node::start(&["--db", db.url(), "--label", "role=runner"]);
    let reader = Node::start(&["--db", db.url()]);
    let runner_id = node_id(&runner, &runner);
    let id = reader.submit(&[
        "--require",
        "role=runner",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done; echo oops >&2; exit 3",
    ]);
    // Followed through the node that did not run it, from before the first line.
    let followed = reader.drover(&["logs", "-f", &id]);
    assert_eq!(followed.status.code(), Some(3), "the job's exit code");
    assert_eq!(
        stdout(&followed),
        "line 1\nline 2\nline 3\nline 4\nline 5\n"
    );
    let job = reader.job(&id);
    assert_eq!(job["node"], runner_id.as_str(), "it ran on the other node");
    let err = reader.drover(&["logs", "--stderr", &id]);
    assert_eq!(stdout(&err), "oops\n");
}

/// Issue #16, defect 3: a node stopped for 2 s against a 3 s lease loses no job. Its owners
/// fence by the lease's real expiry, less a margin for clock drift and the kill itself, and the
/// node tries a renewal before it fences; before, the fence fell a third of a lease early and
/// all four jobs were SIGKILLed and retried.
#[test]
fn a_short_stop_of_a_node_costs_no_job() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let mut args = vec!["--db", db.url()];
    args.extend(["--slots", "4", "--heartbeat", "1s", "--lease", "3s"]);
    let node = Node::start(&args);
    let ids: Vec<String> = (0..4)
        .map(|_| node.submit(&["--retries", "1", "--", "sleep", "7"]))
        .collect();
    for id in &ids {
        node.wait_until(id, "running", |j| j["state"] == "running");
    }
    // Let a renewal or two happen, then freeze the node for 2 s.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signals to a pid we own.
    unsafe { libc::kill(node.pid(), libc::SIGSTOP) };
    std::thread::sleep(std::time::Duration::from_secs(2));
    unsafe { libc::kill(node.pid(), libc::SIGCONT) };
    for id in &ids {
        let job = node.wait_until(id, "the end of the job", |j| {
            ["succeeded", "failed", "timed_out", "cancelled", "lost"]
                .contains(&j["state"].as_str().unwrap_or(""))
                && j["attempt"] != 2
                || j["attempt"] == 2
        });
        assert_eq!(job["state"], "succeeded", "{job:#}\n{}", node.log());
        assert_eq!(job["attempt"], 1, "no retry was spent: {job:#}");
    }
}

/// Issue #16, defect 5: a snapshot another session holds on the shared database (a forgotten
/// `BEGIN` in psql, here) shows on `/metrics` with its age, so that a claim time that climbs
/// can be traced to it.
#[test]
fn a_held_snapshot_shows_on_metrics() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let node = Node::start(&["--db", db.url()]);
    let mut holder = std::process::Command::new("psql")
        .args([
            "-q",
            "-X",
            db.url(),
            "-c",
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1; SELECT pg_sleep(6); COMMIT;",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let text = ureq::get(format!("{}/metrics", node.url()))
        .header("Authorization", &node.bearer())
        .call()
        .expect("GET /metrics")
        .into_body()
        .read_to_string()
        .expect("body");
    let _ = holder.kill();
    let _ = holder.wait();
    let age: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("drover_store_oldest_snapshot_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gauge in:\n{text}"));
    assert!(age >= 2.0, "the snapshot held for 3 s shows as {age} s");
}
