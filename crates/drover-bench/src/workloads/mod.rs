//! The benchmark workloads, each run against drover and, where it makes sense, the peers and a
//! raw baseline measured in the same run: throughput (one node and a cluster), latencies (submit,
//! cancel, events), and footprint (memory, claim cost as the queue grows). This file holds the
//! sizes and the harness they share.

mod claim_cost;
mod footprint;
mod latency;
mod pool;
mod sweep;
mod throughput;

pub use claim_cost::{ClaimCost, claim_cost, flatness, write_section as write_claim_cost};
pub use footprint::{ClaimScaling, Memory, claim_scaling, memory};
pub use latency::{
    CancelLatency, EventLatency, SubmitLatency, cancel_latency, event_latency, submit_latency,
};
pub use pool::{PoolSweep, pool_sweep};
pub use sweep::{Sweep, sweep};
pub use throughput::{ClusterThroughput, Throughput, cluster_throughput, throughput};

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::ensure;

use crate::node::Node;

/// How big each workload is.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub jobs: usize,
    /// Jobs per pueue throughput run: pueue starts jobs on a ~300 ms tick (a few jobs/s), so
    /// `jobs` of them would take most of the run to show the same steady rate.
    pub pueue_jobs: usize,
    pub runs: usize,
    pub submit_samples: usize,
    pub batch: usize,
    pub cancel_runs: usize,
    pub memory_jobs: usize,
    pub claim_queues: Vec<usize>,
    pub claim_jobs: usize,
    /// Rounds of single-job claims timed per store in the claim-cost workload (5b).
    pub claim_rounds: usize,
    /// Claims per round.
    pub claim_samples: usize,
    pub event_subscribers: usize,
    pub event_changes: usize,
    /// Jobs in the sweep workload (a short Python script each).
    pub sweep_jobs: usize,
    /// Jobs per run of the pool workload (through a warm pool, then cold).
    pub pool_jobs: usize,
}

impl Sizes {
    /// Seconds, for CI: correctness only.
    pub fn quick() -> Self {
        Self {
            jobs: 200,
            pueue_jobs: 50,
            runs: 1,
            submit_samples: 10,
            batch: 1000,
            cancel_runs: 5,
            memory_jobs: 1000,
            claim_queues: vec![1000, 10_000],
            claim_jobs: 100,
            claim_rounds: 1,
            claim_samples: 20,
            event_subscribers: 10,
            event_changes: 20,
            sweep_jobs: 20,
            pool_jobs: 5,
        }
    }

    /// The sizes issue #4 names.
    pub fn full() -> Self {
        Self {
            jobs: 2000,
            pueue_jobs: 300,
            runs: 3,
            submit_samples: 100,
            batch: 10_000,
            cancel_runs: 50,
            memory_jobs: 100_000,
            claim_queues: vec![1000, 100_000, 1_000_000],
            claim_jobs: 1000,
            claim_rounds: 3,
            claim_samples: 100,
            event_subscribers: 100,
            event_changes: 200,
            sweep_jobs: 200,
            pool_jobs: 50,
        }
    }
}

/// Shared context.
pub struct Bench {
    pub drover: PathBuf,
    /// Another drover binary measured beside this one in the throughput workload, with its
    /// label (`before (abc1234)`).
    pub baseline: Option<(String, PathBuf)>,
    pub scratch: PathBuf,
    pub sizes: Sizes,
    pub parallel: Result<(), String>,
    pub pueue: Result<(), String>,
    counter: AtomicUsize,
}

impl Bench {
    pub fn new(
        drover: PathBuf,
        scratch: PathBuf,
        sizes: Sizes,
        parallel: Result<(), String>,
        pueue: Result<(), String>,
    ) -> Self {
        Self {
            drover,
            baseline: None,
            scratch,
            sizes,
            parallel,
            pueue,
            counter: AtomicUsize::new(0),
        }
    }

    /// A fresh directory under the scratch dir.
    pub(crate) fn fresh(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.scratch.join(format!("{what}-{n}"))
    }

    pub(crate) fn node(&self, what: &str, flags: &[&str]) -> anyhow::Result<Node> {
        Node::start(&self.drover, &self.fresh(what).join("data"), flags)
    }
}

pub(crate) fn seconds(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

pub(crate) fn shell(script: &str) -> anyhow::Result<()> {
    let status = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    ensure!(status.success(), "`{script}` failed: {status}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Throughput
