//! Acceptance 5 of #8 and the PostgreSQL faults of #16: a server restart, or every backend of
//! drover's database terminated (`pg_terminate_backend`), in the middle of a run loses nothing and
//! runs nothing twice, at a fast and a slow heartbeat. It restarts the server, so it lives in a
//! test binary of its own (cargo runs test binaries one at a time). `DROVER_TEST_PG_RESTART` is
//! the shell command that restarts the server; without it the test skips itself, and fails when
//! `DROVER_REQUIRE_POSTGRES` is set.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::Node;
use drover_store::testing::TestDatabase;

/// What is done to the server mid-run.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Restart,
    TerminateBackends,
}

#[test]
fn database_faults_during_a_run_lose_nothing() {
    let Some(restart) = drover_store::testing::postgres_setting("DROVER_TEST_PG_RESTART") else {
        return;
    };
    for fault in [Fault::Restart, Fault::TerminateBackends] {
        for heartbeat in ["1s", "3s"] {
            let Some(db) = TestDatabase::create() else {
                return;
            };
            eprintln!("{fault:?} at heartbeat {heartbeat}");
            run_through(&db, fault, heartbeat, &restart);
        }
    }
}

fn run_through(db: &TestDatabase, fault: Fault, heartbeat: &str, restart: &str) {
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::start(&["--db", db.url(), "--slots", "4", "--heartbeat", heartbeat]))
        .collect();
    let ledger = common::Ledger::new();
    let ids = ledger.submit(&nodes[0], 200, "sleep 0.05");

    // The fault comes once some jobs have run and many have not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ledger.runs().len() < 30 {
        assert!(std::time::Instant::now() < deadline, "jobs did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let command = match fault {
        Fault::Restart => restart.to_string(),
        Fault::TerminateBackends => format!(
            "psql -q -X '{}' -c 'SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()'",
            db.url()
        ),
    };
    let done = Command::new("sh")
        .args(["-c", &command])
        .status()
        .expect("the fault");
    assert!(done.success(), "`{command}` failed");

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
    ledger.assert_each_ran_once(&ids);
}
