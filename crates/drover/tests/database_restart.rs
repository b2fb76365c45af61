//! Acceptance 5 of #8: a PostgreSQL restart in the middle of a run loses nothing and runs
//! nothing twice. It restarts the server, so it lives in a test binary of its own (cargo runs
//! test binaries one at a time). `DROVER_TEST_PG_RESTART` is the shell command that restarts the
//! server; without it the test skips itself, and fails when `DROVER_REQUIRE_POSTGRES` is set.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Node, stdout};
use drover_store::testing::TestDatabase;

#[test]
fn a_database_restart_during_a_run_loses_nothing() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let Ok(restart) = std::env::var("DROVER_TEST_PG_RESTART") else {
        assert!(
            std::env::var_os("DROVER_REQUIRE_POSTGRES").is_none(),
            "DROVER_REQUIRE_POSTGRES is set but DROVER_TEST_PG_RESTART is not"
        );
        eprintln!("skipped: set DROVER_TEST_PG_RESTART to the command that restarts PostgreSQL");
        return;
    };
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::start(&["--db", db.url(), "--slots", "4", "--heartbeat", "1s"]))
        .collect();
    let work = tempfile::tempdir().expect("tempdir");
    let ledger = work.path().join("ran.txt");
    let line = serde_json::json!({
        "argv": ["sh", "-c", format!("echo $DROVER_JOB_ID >> {}; sleep 0.05", ledger.display())]
    })
    .to_string();
    let batch = work.path().join("batch.jsonl");
    std::fs::write(&batch, vec![line; 200].join("\n")).expect("batch");
    let out = nodes[0].drover(&["submit", "--batch", batch.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 200);

    // Restart once some jobs have run and many have not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&ledger)
        .unwrap_or_default()
        .lines()
        .count()
        < 30
    {
        assert!(std::time::Instant::now() < deadline, "jobs did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let restarted = Command::new("sh")
        .args(["-c", &restart])
        .status()
        .expect("restart");
    assert!(restarted.success(), "`{restart}` failed");

    // The nodes reconnect by themselves; `wait` retries until the node answers again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let waited = nodes[1].drover(&["wait", "--all", "--quiet"]);
        if waited.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "wait: {}\n{}\n{}",
            String::from_utf8_lossy(&waited.stderr),
            nodes[0].log(),
            nodes[1].log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut seen = BTreeMap::<String, usize>::new();
    for id in std::fs::read_to_string(&ledger).expect("ledger").lines() {
        *seen.entry(id.to_string()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs that ran twice: {twice:?}");
    let unhappy: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| nodes[0].job(id))
        .filter(|job| job["state"] != "succeeded")
        .collect();
    assert!(
        unhappy.is_empty(),
        "{} jobs did not succeed; the first: {:#}\n{}",
        unhappy.len(),
        unhappy[0],
        nodes[0].log()
    );
    assert_eq!(seen.len(), 200, "every job ran");
}
