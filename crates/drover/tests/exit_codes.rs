//! Every exit code `drover --help` names, produced by driving the real binary into it. The last
//! test reads the help and fails if it names a code no test here produces.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Node, stdout};

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A job id no node has (time-ordered, like drover's).
const NO_SUCH_JOB: &str = "01a00000-0000-7000-8000-000000000000";

#[test]
fn success_failure_and_timeouts_of_wait() {
    let node = Node::start(&[]);
    let ok = node.submit(&["--", "true"]);
    let bad = node.submit(&["--", "false"]);
    let slow = node.submit(&["--", "sleep", "30"]);
    assert_eq!(
        code(&node.drover(&["wait", &ok])),
        0,
        "0: every job succeeded"
    );
    assert_eq!(
        code(&node.drover(&["wait", &ok, &bad])),
        1,
        "1: a job failed"
    );
    let timed_out = node.drover(&["wait", &slow, "--timeout", "300ms"]);
    assert_eq!(code(&timed_out), 3, "3: wait --timeout ran out");
    node.drover(&["cancel", &slow]);
}

#[test]
fn bad_usage_exits_2() {
    let node = Node::start(&[]);
    let unknown_flag = node.drover(&["submit", "--bogus", "--", "true"]);
    assert_eq!(code(&unknown_flag), 2, "{}", stderr(&unknown_flag));
    let no_dashes = node.drover(&["submit", "--timeout", "1h", "echo", "hi"]);
    assert_eq!(code(&no_dashes), 2, "{}", stderr(&no_dashes));
    assert!(
        stderr(&no_dashes).contains("drover submit --timeout 1h -- echo hi"),
        "the line that works is suggested: {}",
        stderr(&no_dashes)
    );
    let bad_value = node.drover(&["submit", "--memory", "lots", "--", "true"]);
    assert_eq!(code(&bad_value), 2, "{}", stderr(&bad_value));
    let batch_and_flags = node.drover(&["submit", "--batch", "-", "--timeout", "2s"]);
    assert_eq!(code(&batch_and_flags), 2, "{}", stderr(&batch_and_flags));
    assert!(
        stderr(&batch_and_flags).contains("drop --timeout"),
        "the flag given beside --batch is named: {}",
        stderr(&batch_and_flags)
    );
    // A sweep is not something `run` can stay with; an empty range is no sweep.
    let run_sweep = node.drover(&["run", "--each", "1..2", "--", "true"]);
    assert_eq!(code(&run_sweep), 2, "{}", stderr(&run_sweep));
    assert!(
        stderr(&run_sweep).contains("submit --each"),
        "{}",
        stderr(&run_sweep)
    );
    let backwards = node.drover(&["submit", "--each", "3..1", "--", "true"]);
    assert_eq!(code(&backwards), 2, "{}", stderr(&backwards));
    assert!(
        stderr(&backwards).contains("ends before it starts"),
        "{}",
        stderr(&backwards)
    );
    // A prefix shared by two jobs' ids names no one job.
    let a = node.submit(&["--", "true"]);
    node.submit(&["--", "true"]);
    let ambiguous = node.drover(&["status", &a[..4]]);
    assert_eq!(code(&ambiguous), 2, "{}", stderr(&ambiguous));
    // Refused by the node as an invalid value (422): still the user's mistake.
    let refused = node.drover(&["submit", "--timeout", "0s", "--", "true"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("timeout"), "{}", stderr(&refused));
    let missing_dependency = node.drover(&["submit", "--after", NO_SUCH_JOB, "--", "true"]);
    assert_eq!(
        code(&missing_dependency),
        2,
        "{}",
        stderr(&missing_dependency)
    );
}

#[test]
fn the_node_unreachable_refusing_or_without_the_job_exits_4() {
    let node = Node::start(&[]);
    let unreachable = Command::new(BIN)
        .args(["--server", "http://127.0.0.1:9", "status"])
        .env_remove("DROVER_TOKEN")
        .output()
        .expect("run drover");
    assert_eq!(code(&unreachable), 4, "{}", stderr(&unreachable));
    assert!(stderr(&unreachable).contains("cannot reach"));

    let missing = node.drover(&["status", NO_SUCH_JOB]);
    assert_eq!(code(&missing), 4, "404: no such job: {}", stderr(&missing));
    let unknown = node.drover(&["logs", "not-a-job-name"]);
    assert_eq!(code(&unknown), 4, "a name no job has: {}", stderr(&unknown));

    // 401: a token the node does not know.
    let wrong_token = Command::new(BIN)
        .args(["--server", &node.url(), "status"])
        .env("DROVER_TOKEN", "not-the-token")
        .env_remove("DROVER_DATA_DIR")
        .output()
        .expect("run drover");
    assert_eq!(code(&wrong_token), 4, "401: {}", stderr(&wrong_token));
    assert!(
        stderr(&wrong_token).contains("HTTP 401"),
        "{}",
        stderr(&wrong_token)
    );

    // 409: the priority of a job that has started cannot change.
    let running = node.submit(&["--", "sleep", "30"]);
    node.wait_until(&running, "the job to run", |j| j["state"] == "running");
    let conflict = node.drover(&["priority", &running, "5"]);
    assert_eq!(code(&conflict), 4, "409: {}", stderr(&conflict));
    assert!(
        stderr(&conflict).contains("HTTP 409"),
        "{}",
        stderr(&conflict)
    );
    node.drover(&["cancel", &running]);
}

#[test]
fn run_exits_as_its_job_did() {
    let node = Node::start(&[]);
    let own = node.drover(&["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code(&own), 7, "the job's own exit code");
    let signalled = node.drover(&["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(code(&signalled), 128 + 15, "128+N for signal N");
    let timed_out = node.drover(&["run", "--timeout", "500ms", "--", "sleep", "30"]);
    assert_eq!(code(&timed_out), 124, "timed out");
    let unspawnable = node.drover(&["run", "--", "/nonexistent/program"]);
    assert_eq!(
        code(&unspawnable),
        125,
        "failed without an exit code of its own"
    );
    assert!(
        stderr(&unspawnable).is_empty() || !stderr(&unspawnable).contains("panicked"),
        "{}",
        stderr(&unspawnable)
    );

    // Cancelled while `run` follows it (from another shell, as a user would).
    let mut run = Command::new(BIN)
        .args(["run", "--name", "to-cancel", "--", "sleep", "30"])
        .env("DROVER_DATA_DIR", node.data_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run drover run");
    let started = Instant::now();
    let id = loop {
        let jobs: Vec<serde_json::Value> =
            serde_json::from_slice(&node.drover(&["status", "--json"]).stdout).expect("json");
        if let Some(job) = jobs
            .iter()
            .find(|j| j["name"] == "to-cancel" && j["state"] == "running")
        {
            break job["id"].as_str().expect("id").to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the job never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code(&node.drover(&["cancel", &id])), 0);
    let status = run.wait().expect("wait for drover run");
    assert_eq!(status.code(), Some(130), "cancelled");

    // `logs -f` gives the same codes as `run`.
    let failed = node.submit(&["--", "sh", "-c", "echo out; exit 3"]);
    let followed = node.drover(&["logs", "-f", &failed]);
    assert_eq!(code(&followed), 3);
    assert_eq!(stdout(&followed), "out\n");
}

/// The help names no exit code that the tests above do not produce.
#[test]
fn the_help_names_only_codes_the_tests_produce() {
    let tested = [0, 1, 2, 3, 4, 124, 125, 128, 130];
    let help = Command::new(BIN).arg("--help").output().expect("help");
    let text = stdout(&help);
    let section = text
        .split("Exit codes:")
        .nth(1)
        .expect("the help has an exit code section");
    for word in section.split(|c: char| !c.is_ascii_digit()) {
        let Ok(number) = word.parse::<i32>() else {
            continue;
        };
        assert!(
            tested.contains(&number),
            "the help names exit code {number}, which no test here produces:\n{section}"
        );
    }
}
