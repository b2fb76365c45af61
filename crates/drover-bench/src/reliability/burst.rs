//! The crash burst: clients submit as fast as they can while the node is killed with SIGKILL,
//! round after round on the same data dir. Every job the node acknowledged (answered 2xx with
//! its id) must be found after the restart, reach an end, run at most once, and leave no
//! process behind; the store must pass `integrity_check` as each crash left it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::http::{Conn, Rng};
use super::{integrity_check, processes_with};
use crate::node::Node;

/// One crash.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Jobs the node answered 2xx for, with their ids.
    pub acknowledged: usize,
    /// Requests in flight when the node died, or sent while it was down (not acknowledged).
    pub refused: usize,
    /// Acknowledged jobs found in the store after the restart.
    pub found: usize,
    /// Acknowledged jobs not found: lost.
    pub lost: usize,
    /// Acknowledged jobs not ended within the deadline after the restart.
    pub stuck: usize,
    /// How the acknowledged jobs ended.
    pub states: BTreeMap<String, usize>,
    /// `PRAGMA integrity_check` of the store as the crash left it.
    pub integrity: String,
}

/// The whole burst.
#[derive(Debug, Clone, Default)]
pub struct Burst {
    pub rounds: Vec<Round>,
    /// Acknowledged jobs whose command ran more than once, over all rounds.
    pub run_twice: usize,
    /// Job processes alive after everything ended.
    pub leaked: usize,
}

impl Burst {
    pub fn total(&self, field: impl Fn(&Round) -> usize) -> usize {
        self.rounds.iter().map(field).sum()
    }
}

/// Runs `rounds` crashes with `clients` submitting for about `window` each.
pub fn run(
    drover: &Path,
    scratch: &Path,
    rounds: usize,
    clients: usize,
    window: Duration,
) -> anyhow::Result<Burst> {
    let dir = scratch.join("burst");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data");
    let ledger = dir.join("ledger");
    // Every 25th job sleeps a little past the crash, under a marker no other process has.
    let marker = format!("2.{:06}1", std::process::id() % 1_000_000);
    let mut burst = Burst::default();
    let mut all_acknowledged: Vec<String> = Vec::new();
    let mut rng = Rng::new(0x5eed_0001);
    for round in 0..rounds {
        let mut node = Node::start(drover, &data, &["--slots", "4"])?;
        let submitting = Clients::start(&node, clients, &ledger, &marker)?;
        // Kill somewhere in the second half of the window, not at a round number.
        let half = window.as_millis() as usize / 2;
        std::thread::sleep(Duration::from_millis(
            (half + rng.below(half.max(1))) as u64,
        ));
        node.kill9()?;
        let (acknowledged, refused) = submitting.finish()?;
        let integrity = integrity_check(&data.join("drover.db"))?;
        // The next start recovers what the crash left.
        let node = Node::start(drover, &data, &["--slots", "4"])?;
        let stuck = wait_for_ends(&node, Duration::from_secs(180))?;
        let states = states_of(&node)?;
        let found: Vec<&String> = acknowledged
            .iter()
            .filter(|id| states.contains_key(*id))
            .collect();
        let mut ended = BTreeMap::new();
        for id in &found {
            *ended.entry(states[*id].clone()).or_insert(0) += 1;
        }
        all_acknowledged.extend(acknowledged.iter().cloned());
        burst.rounds.push(Round {
            acknowledged: acknowledged.len(),
            refused,
            found: found.len(),
            lost: acknowledged.len() - found.len(),
            stuck,
            states: ended,
            integrity,
        });
        node.stop()?;
        eprintln!(
            "reliability: burst round {} of {rounds}: {:?}",
            round + 1,
            burst.rounds.last()
        );
    }
    // Runs per job, from the ledger each job appends its id to.
    let text = std::fs::read_to_string(&ledger).unwrap_or_default();
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        *runs.entry(line.trim()).or_insert(0) += 1;
    }
    burst.run_twice = all_acknowledged
        .iter()
        .filter(|id| runs.get(id.as_str()).copied().unwrap_or(0) > 1)
        .count();
    std::thread::sleep(Duration::from_secs(1));
    burst.leaked = processes_with(&marker);
    Ok(burst)
}

/// Clients submitting to one node until told to stop.
pub(super) struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(Vec<String>, usize)>>,
}

impl Clients {
    /// Starts `n` clients on `node`; their jobs append their ids to `ledger`, and every 25th
    /// sleeps under `marker`.
    pub(super) fn start(
        node: &Node,
        n: usize,
        ledger: &Path,
        marker: &str,
    ) -> anyhow::Result<Clients> {
        let port = node.port()?;
        let bearer = format!("Bearer {}", node.token()?);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|client| {
                let stop = Arc::clone(&stop);
                let bearer = bearer.clone();
                let ledger = ledger.to_path_buf();
                let marker = marker.to_string();
                std::thread::spawn(move || {
                    submit_until(port, &bearer, &ledger, &marker, client, &stop)
                })
            })
            .collect();
        Ok(Clients { stop, threads })
    }

    /// Stops them: the ids the node acknowledged, and how many requests got no answer.
    pub(super) fn finish(self) -> anyhow::Result<(Vec<String>, usize)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut acknowledged = Vec::new();
        let mut refused = 0;
        for thread in self.threads {
            let (ids, failed) = thread
                .join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))?;
            acknowledged.extend(ids);
            refused += failed;
        }
        Ok((acknowledged, refused))
    }
}

/// One client: submits single jobs on a keep-alive connection until `stop`; the ids the node
/// acknowledged, and how many requests got no answer.
fn submit_until(
    port: u16,
    bearer: &str,
    ledger: &Path,
    marker: &str,
    client: usize,
    stop: &AtomicBool,
) -> (Vec<String>, usize) {
    let quick = serde_json::json!({
        "argv": ["sh", "-c", format!("echo \"$DROVER_JOB_ID\" >> '{}'", ledger.display())],
        "cwd": "/",
    })
    .to_string();
    let slow = serde_json::json!({
        "argv": ["sh", "-c", format!("echo \"$DROVER_JOB_ID\" >> '{}'; exec sleep {marker}", ledger.display())],
        "cwd": "/",
    })
    .to_string();
    let mut ids = Vec::new();
    let mut failed = 0;
    let mut conn = None;
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        if conn.is_none() {
            match Conn::open(port, bearer) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    failed += 1;
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let body = if (n + client) % 25 == 0 {
            &slow
        } else {
            &quick
        };
        match c.request("POST", "/v1/jobs", body.as_bytes(), None) {
            Ok(answer) if (200..300).contains(&answer.status) => {
                let id = serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| id_of(&v));
                match id {
                    Some(id) => ids.push(id),
                    None => failed += 1,
                }
                if answer.close {
                    conn = None;
                }
            }
            Ok(_) | Err(_) => {
                failed += 1;
                conn = None;
            }
        }
    }
    (ids, failed)
}

/// The id in a submit's answer (`{"id": ...}` or `{"ids": [...]}`).
fn id_of(value: &serde_json::Value) -> Option<String> {
    value["id"]
        .as_str()
        .or_else(|| value["ids"][0].as_str())
        .map(str::to_string)
}

/// Waits until no job is queued, starting or running; how many still are at the deadline.
pub(super) fn wait_for_ends(node: &Node, deadline: Duration) -> anyhow::Result<usize> {
    let until = Instant::now() + deadline;
    loop {
        let out = node.cli_ok(&[
            "status",
            "--json",
            "--state",
            "queued,starting,running",
            "--limit",
            "1000",
        ])?;
        let left: Vec<serde_json::Value> = serde_json::from_str(&out).context("status --json")?;
        if left.is_empty() || Instant::now() > until {
            return Ok(left.len());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every job's state, by id.
pub(super) fn states_of(node: &Node) -> anyhow::Result<HashMap<String, String>> {
    Ok(node
        .jobs(10_000_000)?
        .into_iter()
        .filter_map(|job| {
            Some((
                job["id"].as_str()?.to_string(),
                job["state"].as_str()?.to_string(),
            ))
        })
        .collect())
}
