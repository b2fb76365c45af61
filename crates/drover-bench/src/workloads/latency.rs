//! Latencies: from submit to start, from cancel to the last process of a tree gone, and from
//! a commit to its event reaching a subscriber.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::node::write_batch;

use super::*;

pub struct SubmitLatency {
    /// Seconds per single CLI submit, all rounds.
    pub single: Vec<f64>,
    /// The same, round by round (a fresh node each), for the spread of the percentiles.
    pub rounds: Vec<Vec<f64>>,
    /// Seconds per raw spawn of /bin/true (the unit of comparison).
    pub raw_spawn: Vec<f64>,
    /// Jobs per second for each batch run.
    pub batch_rates: Vec<f64>,
    pub batch_size: usize,
}

pub fn submit_latency(bench: &Bench) -> anyhow::Result<SubmitLatency> {
    eprintln!("bench: submit latency");
    let mut rounds = Vec::new();
    let mut raw_spawn = Vec::new();
    for _ in 0..bench.sizes.runs {
        // Each submitted job runs at once, as it would for a user: the submit's commit shares
        // the store with the claims and endings of the jobs before it.
        let node = bench.node("submit", &["--slots", "2", "--shutdown-timeout", "1s"])?;
        let mut round = Vec::new();
        for _ in 0..bench.sizes.submit_samples {
            let start = Instant::now();
            let id = node.cli_ok(&["submit", "--", "/bin/true"])?;
            round.push(seconds(start));
            ensure!(id.trim().len() == 36, "submit printed {id:?}");
            let start = Instant::now();
            Command::new("/bin/true").status()?;
            raw_spawn.push(seconds(start));
        }
        node.cli_ok(&["wait", "--all", "--quiet"])?;
        node.stop()?;
        rounds.push(round);
    }
    let single = rounds.concat();

    let mut batch_rates = Vec::new();
    for _ in 0..bench.sizes.runs {
        let node = bench.node("batch", &["--slots", "1", "--shutdown-timeout", "1s"])?;
        let batch = node.data_dir.with_extension("jsonl");
        write_batch(&batch, bench.sizes.batch, &["/bin/true"])?;
        let start = Instant::now();
        let ids = node.submit_batch(&batch)?;
        batch_rates.push(bench.sizes.batch as f64 / seconds(start));
        ensure!(
            ids.len() == bench.sizes.batch,
            "batch gave {} ids",
            ids.len()
        );
        node.stop()?;
    }
    Ok(SubmitLatency {
        single,
        rounds,
        raw_spawn,
        batch_rates,
        batch_size: bench.sizes.batch,
    })
}

// ---------------------------------------------------------------------------------------------
// 3. Cancel latency

/// Live (non-zombie) members of process group `pgid`.
fn group_members(pgid: i32) -> usize {
    // SAFETY: kill with signal 0 only checks existence.
    if unsafe { libc::killpg(pgid, 0) } != 0 {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter(|stat| {
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z")
                && fields.get(2).and_then(|p| p.parse::<i32>().ok()) == Some(pgid)
        })
        .count()
}

/// Waits until `pgid` has no live member; returns how long that took.
fn until_gone(pgid: i32, limit: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    while group_members(pgid) > 0 {
        ensure!(
            start.elapsed() < limit,
            "process group {pgid} still alive after {limit:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(seconds(start))
}

pub struct CancelLatency {
    /// Seconds from `drover cancel` returning to the tree gone.
    pub drover: Vec<f64>,
    /// Seconds from a raw `killpg(SIGTERM)` to the same tree gone.
    pub raw: Vec<f64>,
}

const TREE: &str = "sleep 1000 & sleep 1000 & wait";

pub fn cancel_latency(bench: &Bench) -> anyhow::Result<CancelLatency> {
    eprintln!("bench: cancel latency");
    let node = bench.node("cancel", &["--slots", "2"])?;
    let mut drover = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..bench.sizes.cancel_runs {
        let id = node.cli_ok(&["submit", "--grace", "5s", "--", "sh", "-c", TREE])?;
        let id = id.trim();
        let deadline = Instant::now() + Duration::from_secs(30);
        let pgid = loop {
            let job: serde_json::Value =
                serde_json::from_str(&node.cli_ok(&["status", id, "--json"])?)?;
            let pid = job["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|a| a["pid"].as_i64());
            if let (Some(pid), "running") = (pid, job["state"].as_str().unwrap_or("")) {
                if group_members(pid as i32) == 3 {
                    break pid as i32;
                }
            }
            ensure!(Instant::now() < deadline, "job {id} never ran its tree");
            std::thread::sleep(Duration::from_millis(5));
        };
        node.cli_ok(&["cancel", id])?;
        drover.push(until_gone(pgid, Duration::from_secs(30))?);
        node.cli_ok(&["wait", "--quiet", id]).ok();

        let mut child = Command::new("sh")
            .args(["-c", TREE])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pgid = child.id() as i32;
        while group_members(pgid) < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: signalling a process group we created.
        unsafe { libc::killpg(pgid, libc::SIGTERM) };
        let start = Instant::now();
        child.wait()?;
        while group_members(pgid) > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        raw.push(seconds(start));
    }
    node.stop()?;
    Ok(CancelLatency { drover, raw })
}

use std::os::unix::process::CommandExt;

// ---------------------------------------------------------------------------------------------
// 4. Memory

/// Milliseconds from an event's commit timestamp to its arrival at each subscriber.
pub struct EventLatency {
    pub subscribers: usize,
    pub latencies_ms: Vec<f64>,
}

/// `subscribers` clients on `GET /v1/events`; `changes` submits, one at a time, into a paused
/// queue (so each is exactly one event and nothing else runs). Each arrival is timed against
/// the event's `at`, which the store stamps in the committing transaction (ms resolution; it
/// includes that transaction's fsync).
pub fn event_latency(bench: &Bench) -> anyhow::Result<EventLatency> {
    eprintln!("bench: event latency");
    let subscribers = bench.sizes.event_subscribers;
    let changes = bench.sizes.event_changes;
    let node = bench.node("events", &["--slots", "1", "--shutdown-timeout", "1s"])?;
    node.cli_ok(&["queue", "pause", "bench"])?;
    let info = std::fs::read_to_string(node.data_dir.join("serve.json"))?;
    let url = serde_json::from_str::<serde_json::Value>(&info)?["url"]
        .as_str()
        .context("serve.json has no url")?
        .to_string();
    let bearer = format!("Bearer {}", node.token()?);
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<Vec<f64>>>();
    for _ in 0..subscribers {
        let response = ureq::get(format!("{url}/v1/events"))
            .header("Authorization", &bearer)
            .call()?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            let reader = std::io::BufReader::new(response.into_body().into_reader());
            let mut seen = Vec::with_capacity(changes);
            for line in std::io::BufRead::lines(reader) {
                let Ok(line) = line else { break };
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let now = chrono::Utc::now();
                let at = serde_json::from_str::<serde_json::Value>(data.trim())
                    .ok()
                    .and_then(|v| {
                        v["at"]
                            .as_str()
                            .and_then(|a| a.parse::<chrono::DateTime<chrono::Utc>>().ok())
                    });
                if let Some(at) = at {
                    seen.push((now - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                }
                if seen.len() == changes {
                    break;
                }
            }
            let _ = tx.send(Ok(seen));
        });
    }
    drop(tx);
    // Every subscriber is connected once the node counts it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = ureq::get(format!("{url}/metrics"))
            .header("Authorization", &bearer)
            .call()?
            .body_mut()
            .read_to_string()?;
        let connected = metrics
            .lines()
            .find_map(|l| l.strip_prefix("drover_event_subscribers "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if connected as usize >= subscribers {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {connected} of {subscribers} subscribers connected"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let body = serde_json::json!({"argv": ["true"], "cwd": "/", "queue": "bench"});
    for _ in 0..changes {
        ureq::post(format!("{url}/v1/jobs"))
            .header("Authorization", &bearer)
            .send_json(&body)?;
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut latencies_ms = Vec::with_capacity(subscribers * changes);
    for _ in 0..subscribers {
        let seen = rx
            .recv_timeout(Duration::from_secs(60))
            .context("a subscriber never got every event")??;
        ensure!(
            seen.len() == changes,
            "a subscriber got {} of {changes} events",
            seen.len()
        );
        latencies_ms.extend(seen);
    }
    node.cli_ok(&["cancel", "--all"])?;
    node.stop()?;
    Ok(EventLatency {
        subscribers,
        latencies_ms,
    })
}
