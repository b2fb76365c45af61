//! Footprint: the memory a node and its owners hold, and how a claim's cost grows with the queue.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::node::{Node, write_batch};

use super::*;

pub struct Memory {
    pub idle_rss: u64,
    pub after_rss: u64,
    pub after_peak: u64,
    pub jobs: usize,
    pub seconds: f64,
}

pub fn memory(bench: &Bench) -> anyhow::Result<Memory> {
    eprintln!("bench: memory ({} jobs)", bench.sizes.memory_jobs);
    let node = bench.node("memory", &["--slots", "8"])?;
    std::thread::sleep(Duration::from_secs(1));
    let (idle_rss, _) = node.rss()?;
    let chunk = 10_000.min(bench.sizes.memory_jobs);
    let batch = node.data_dir.with_extension("jsonl");
    write_batch(&batch, chunk, &["/bin/true"])?;
    let start = Instant::now();
    let mut submitted = 0;
    while submitted < bench.sizes.memory_jobs {
        submitted += node.submit_batch(&batch)?.len();
    }
    node.cli_ok(&["wait", "--all", "--quiet"])?;
    let seconds = seconds(start);
    // A status query of recent jobs, as a user would make, before reading memory.
    let recent = node.jobs(1000)?;
    ensure!(
        recent.iter().all(|j| j["state"] == "succeeded"),
        "a job did not succeed"
    );
    let (after_rss, after_peak) = node.rss()?;
    node.stop()?;
    Ok(Memory {
        idle_rss,
        after_rss,
        after_peak,
        jobs: submitted,
        seconds,
    })
}

// ---------------------------------------------------------------------------------------------
// 5. Claim scaling

pub struct ClaimScaling {
    pub queued: usize,
    /// Seconds from the first claim to the last completion of the measured jobs.
    pub seconds: f64,
}

/// Fills a fresh store with `queued` low-priority jobs and `measured` high-priority ones,
/// directly through drover-store (the node would take minutes to accept a million).
fn prefill(db: &Path, queued: usize, measured: usize) -> anyhow::Result<Vec<drover_core::JobId>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        use drover_store::Store;
        let store = drover_store::SqlStore::sqlite(db)?;
        let mut low = drover_core::JobSpec::new(["/bin/true"]);
        low.priority = -1;
        let mut left = queued;
        while left > 0 {
            let n = left.min(20_000);
            store.submit(vec![low.clone(); n]).await?;
            left -= n;
        }
        let high = drover_core::JobSpec::new(["/bin/true"]);
        Ok(store.submit(vec![high; measured]).await?)
    })
}

pub fn claim_scaling(bench: &Bench) -> anyhow::Result<Vec<ClaimScaling>> {
    let mut rows = Vec::new();
    for &queued in &bench.sizes.claim_queues {
        eprintln!(
            "bench: claim scaling, {queued} queued behind {}",
            bench.sizes.claim_jobs
        );
        let dir = bench.fresh("claim").join("data");
        std::fs::create_dir_all(&dir)?;
        let ids = prefill(&dir.join("drover.db"), queued, bench.sizes.claim_jobs)?;
        // Flush the prefill's dirty pages first: otherwise the kernel writes them back during the
        // measurement, and the node's fsyncs queue behind hundreds of megabytes.
        shell("sync")?;
        let node = Node::start(
            &bench.drover,
            &dir,
            &["--slots", "8", "--shutdown-timeout", "1s"],
        )?;
        // Jobs are claimed in id order, so the last one ends within a slot's worth of jobs of
        // the window closing: wait for it alone (one request while the node works), then
        // confirm the rest once the window is over.
        let last = ids.last().context("no measured jobs")?.to_string();
        node.cli(&["wait", "--quiet", &last])?;
        let mut args = vec!["wait".to_string(), "--quiet".to_string()];
        args.extend(ids.iter().map(ToString::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        node.cli_ok(&args)
            .context("waiting for the measured jobs")?;
        node.stop()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (first, last) = runtime.block_on(async {
            use drover_store::Store;
            let store = drover_store::SqlStore::sqlite(dir.join("drover.db"))?;
            let mut first = None;
            let mut last = None;
            for id in &ids {
                let job = store.get(*id).await?.context("measured job missing")?;
                ensure!(
                    job.state == drover_core::JobState::Succeeded,
                    "job {id} ended {}",
                    job.state
                );
                let attempt = job.attempts.last().context("no attempt")?;
                let claimed = attempt.claimed_at;
                let finished = attempt.finished_at.context("not finished")?;
                first =
                    Some(first.map_or(claimed, |f: chrono::DateTime<chrono::Utc>| f.min(claimed)));
                last =
                    Some(last.map_or(finished, |l: chrono::DateTime<chrono::Utc>| l.max(finished)));
            }
            Ok::<_, anyhow::Error>((first, last))
        })?;
        let (Some(first), Some(last)) = (first, last) else {
            bail!("no measured jobs")
        };
        rows.push(ClaimScaling {
            queued,
            seconds: (last - first).num_milliseconds() as f64 / 1000.0,
        });
        let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// 6. Event latency
