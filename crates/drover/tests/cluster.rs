//! Many nodes on one PostgreSQL database (#8), through the real binary. Each test gets a fresh
//! schema of the database named by `DROVER_TEST_DATABASE_URL`; without it the tests skip
//! themselves (and fail instead when `DROVER_REQUIRE_POSTGRES` is set, as in CI).

mod common;

use std::collections::{BTreeMap, BTreeSet};

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
    let work = tempfile::tempdir().expect("tempdir");
    let ledger = work.path().join("ran.txt");
    let line = serde_json::json!({
        "argv": ["sh", "-c", format!("echo $DROVER_JOB_ID >> {}; sleep 0.05", ledger.display())]
    })
    .to_string();
    let batch = work.path().join("batch.jsonl");
    std::fs::write(&batch, vec![line; 300].join("\n")).expect("batch");
    let out = nodes[0].drover(&["submit", "--batch", batch.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let submitted: BTreeSet<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(submitted.len(), 300);

    // Waiting through another node: it sees the whole cluster's jobs.
    let waited = nodes[1].drover(&["wait", "--all", "--quiet"]);
    assert!(
        waited.status.success(),
        "wait: {}\n{}",
        String::from_utf8_lossy(&waited.stderr),
        nodes[1].log()
    );

    let ran = std::fs::read_to_string(&ledger).expect("ledger");
    let mut seen = BTreeMap::<&str, usize>::new();
    for id in ran.lines() {
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs that ran more than once: {twice:?}");
    let ran: BTreeSet<String> = seen.keys().map(|s| s.to_string()).collect();
    assert_eq!(ran, submitted, "every job ran");

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
