//! Resource graphs: the node samples each running job's memory and CPU into a series stored
//! with its attempt; `status --json` shows it and `drover top` shows the latest of it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{Node, stdout};
use serde_json::Value;

/// A Python job that takes 20 MiB more every 0.5 s, eight times, keeping a CPU busy.
const GROW: &str = "import time\nkeep = []\nfor i in range(8):\n    keep.append(b'x' * (20 << 20))\n    t = time.time()\n    while time.time() - t < 0.5: pass\nprint('done')\n";

fn memory_points(job: &Value) -> Vec<(u64, u64)> {
    job["attempts"][0]["usage_series"]["points"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter_map(|p| Some((p["at_ms"].as_u64()?, p["memory_bytes"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_job_that_grows_shows_a_rising_memory_series() {
    grows_on(&[]);
}

/// The rlimit backend (macOS's, and Linux's without cgroups) has no cell files: it sums the
/// processes that carry the attempt's variables.
#[test]
fn a_job_that_grows_shows_a_rising_memory_series_on_the_rlimit_backend() {
    grows_on(&["--backend", "rlimit"]);
}

fn grows_on(backend: &[&str]) {
    let mut flags = vec!["--sample-interval", "250ms"];
    flags.extend_from_slice(backend);
    let node = Node::start(&flags);
    let id = node.submit(&["--memory", "600M", "--", "python3", "-c", GROW]);

    // While it runs, `top` shows it with its memory against its limit.
    let running = node.wait_until(&id, "two samples", |job| memory_points(job).len() >= 2);
    assert_eq!(running["state"], "running");
    let top = node.drover(&["top", "--once"]);
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let screen = stdout(&top);
    assert!(screen.contains("1 running on 1 node"), "{screen}");
    assert!(
        screen.contains("/ 600 MiB ("),
        "memory against the limit: {screen}"
    );
    let top_json: Value =
        serde_json::from_slice(&node.drover(&["--json", "top"]).stdout).expect("top --json");
    assert_eq!(top_json[0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(top_json[0]["memory_limit_bytes"], 600 << 20);
    assert!(top_json[0]["memory_bytes"].as_u64().is_some(), "{top_json}");

    let waited = node.drover(&["wait", &id]);
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let job: Value = serde_json::from_slice(&node.drover(&["--json", "status", &id]).stdout)
        .expect("status --json");
    let points = memory_points(&job);
    assert!(
        points.len() >= 6,
        "a sample every 250 ms of a 4 s job: {points:?}"
    );
    assert!(
        points.windows(2).all(|w| w[0].0 < w[1].0),
        "in time order: {points:?}"
    );
    // Eight steps of 20 MiB, sampled twice a step: the series climbs by most of the 160 MiB,
    // in at least six of the steps. (The job's very last sample may catch it freeing.)
    let first = points[0].1;
    let highest = points.iter().map(|p| p.1).max().unwrap_or(0);
    assert!(
        highest >= first + (120 << 20),
        "memory rises by the 160 MiB taken: {points:?}"
    );
    let rises = points
        .windows(2)
        .filter(|w| w[1].1 > w[0].1 + (10 << 20))
        .count();
    assert!(rises >= 6, "memory rises step by step: {points:?}");
    let cpus: Vec<f64> = job["attempts"][0]["usage_series"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["cpus"].as_f64())
        .collect();
    assert!(
        cpus.iter().any(|c| *c > 0.3),
        "a busy loop shows as CPU use: {cpus:?}"
    );
}

#[test]
fn top_says_when_nothing_runs_and_lists_keep_a_short_series() {
    let node = Node::start(&["--sample-interval", "200ms"]);
    let screen = stdout(&node.drover(&["top", "--once"]));
    assert!(
        screen.contains("0 running") && screen.contains("nothing is running"),
        "{screen}"
    );

    // Lists thin a long series to a sparkline's worth; one job's record keeps all of it.
    let id = node.submit(&["--", "sleep", "8"]);
    node.wait_until(&id, "30 samples", |job| {
        job["attempts"][0]["usage_series"]["points"]
            .as_array()
            .is_some_and(|p| p.len() >= 30)
    });
    let listed: Value =
        serde_json::from_slice(&node.drover(&["--json", "status"]).stdout).expect("status --json");
    let row = listed
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == id.as_str()))
        .expect("listed");
    let kept = row["attempts"][0]["usage_series"]["points"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        (1..=24).contains(&kept),
        "a list keeps at most 24 points: {kept}"
    );
    node.drover(&["cancel", &id]);
}
