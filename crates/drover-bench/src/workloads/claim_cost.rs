//! Workload 5b: what one claim costs as the queue grows, on SQLite and on PostgreSQL.
//!
//! Section 5 times 1000 jobs end to end behind N queued ones, so every claim there also waits
//! on fsyncs, whose latency on a VM swings more between runs than the claim does. This times the
//! claim alone: `Store::claim` (its whole transaction: the walk of the claim index, the attempt
//! row, the job's new state, the event) called directly against a store prefilled with N queued
//! jobs, with durability out of the loop — the SQLite file lives on tmpfs (its fsync is a no-op)
//! and the PostgreSQL session runs with `synchronous_commit = off`. The prefill and the claims
//! are the same code the node runs; only the disk is taken away. Every size is prefilled
//! first and the sizes are then timed side by side, round by round.
//!
//! One more row per backend holds the largest size in a paused queue, at a higher priority than
//! the smallest size queued beside it: the claim must not read past the jobs it may not take.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::ensure;
use drover_core::{JobSpec, NodeId};
use drover_store::{SqlStore, Store};

use crate::stats::percentile;
use crate::workloads::Bench;

/// One backend at one queue length.
pub struct ClaimCost {
    pub backend: &'static str,
    pub queued: usize,
    /// Jobs held besides, ahead of the queued ones, in a paused queue.
    pub held: usize,
    /// Median seconds per claim in each round.
    pub round_medians: Vec<f64>,
    /// Every claim's seconds, all rounds.
    pub all: Vec<f64>,
}

/// The claim timed on both backends at every size of `claim_queues`; PostgreSQL is skipped
/// (with the reason) when `DROVER_TEST_DATABASE_URL` is not set.
pub fn claim_cost(bench: &Bench) -> anyhow::Result<(Vec<ClaimCost>, Option<String>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let shapes = shapes(&bench.sizes.claim_queues);
    let tmpfs = Path::new("/dev/shm");
    ensure!(tmpfs.is_dir(), "no /dev/shm to hold the SQLite store");
    let mut dirs = Vec::new();
    let mut stores = Vec::new();
    for &(queued, held) in &shapes {
        eprintln!("bench: claim cost, SQLite, prefilling {queued} queued, {held} held");
        let dir = tempfile::Builder::new()
            .prefix("drover-claim-")
            .tempdir_in(tmpfs)?;
        let db = dir.path().join("drover.db");
        dirs.push(dir);
        stores.push(runtime.block_on(async {
            let store = SqlStore::sqlite(&db)?;
            prepare(&store, queued, held).await?;
            anyhow::Ok(store)
        })?);
    }
    let mut rows = runtime.block_on(side_by_side(bench, "SQLite", &shapes, &stores))?;
    drop(stores);
    drop(dirs);
    let mut schemas = Vec::new();
    let mut stores = Vec::new();
    for &(queued, held) in &shapes {
        let Some(db) = drover_store::testing::TestDatabase::create() else {
            return Ok((
                rows,
                Some("no PostgreSQL: set DROVER_TEST_DATABASE_URL".into()),
            ));
        };
        eprintln!("bench: claim cost, PostgreSQL, prefilling {queued} queued, {held} held");
        // Commits return before their WAL reaches the disk: the claim's own work is measured.
        let url = format!("{}%20-csynchronous_commit%3Doff", db.url());
        schemas.push(db);
        stores.push(runtime.block_on(async {
            let store = SqlStore::postgres(&url).await?;
            prepare(&store, queued, held).await?;
            anyhow::Ok(store)
        })?);
    }
    rows.extend(runtime.block_on(side_by_side(bench, "PostgreSQL", &shapes, &stores))?);
    drop(stores);
    drop(schemas);
    Ok((rows, None))
}

/// Each size with nothing held, then the smallest size behind the largest held in a paused
/// queue.
fn shapes(sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut shapes: Vec<(usize, usize)> = sizes.iter().map(|&n| (n, 0)).collect();
    if let (Some(&small), Some(&large)) = (sizes.first(), sizes.last()) {
        shapes.push((small, large));
    }
    shapes
}

/// Prefills `store` with `held` jobs in a paused queue ahead of `queued` jobs.
async fn prepare(store: &SqlStore, queued: usize, held: usize) -> anyhow::Result<()> {
    let mut ahead = JobSpec::new(["/bin/true"]);
    ahead.queue = Some("held".into());
    ahead.priority = 10;
    prefill(store, &ahead, held).await?;
    if held > 0 {
        store.set_queue("held".into(), Some(true), None).await?;
    }
    prefill(store, &JobSpec::new(["/bin/true"]), queued).await
}

/// Times `claim_rounds` rounds of `claim_samples` single-job claims on every prefilled store
/// (`stores[i]` holds `shapes[i]`), side by side: each round times every store in turn, starting
/// one further along each round, so that a slower minute of this shared machine falls on every
/// size rather than on whichever was measured then. The ratios between sizes are what the
/// targets judge, and timing the sizes one after another let them swing by a third between runs.
async fn side_by_side(
    bench: &Bench,
    backend: &'static str,
    shapes: &[(usize, usize)],
    stores: &[SqlStore],
) -> anyhow::Result<Vec<ClaimCost>> {
    let node = NodeId("bench-claim".into());
    let lease = Duration::from_secs(3600);
    let (rounds, samples) = (bench.sizes.claim_rounds, bench.sizes.claim_samples);
    for &(queued, _) in shapes {
        ensure!(
            rounds * samples <= queued,
            "{rounds} rounds of {samples} claims need {} queued jobs",
            rounds * samples
        );
    }
    eprintln!("bench: claim cost, {backend}, {rounds} rounds of every size");
    // A few claims first, so that the caches hold what a node's steady state holds.
    for (&(queued, _), store) in shapes.iter().zip(stores) {
        for _ in 0..10.min(queued - rounds * samples) {
            store.claim(&node, lease, 1).await?;
        }
    }
    let mut rows: Vec<ClaimCost> = shapes
        .iter()
        .map(|&(queued, held)| ClaimCost {
            backend,
            queued,
            held,
            round_medians: Vec::with_capacity(rounds),
            all: Vec::with_capacity(rounds * samples),
        })
        .collect();
    for round in 0..rounds {
        for turn in 0..stores.len() {
            let i = (round + turn) % stores.len();
            let mut times = Vec::with_capacity(samples);
            for _ in 0..samples {
                let start = Instant::now();
                let claimed = stores[i].claim(&node, lease, 1).await?;
                times.push(start.elapsed().as_secs_f64());
                ensure!(
                    claimed.len() == 1,
                    "a claim with {} queued took nothing",
                    rows[i].queued
                );
            }
            rows[i].round_medians.push(percentile(&times, 50.0));
            rows[i].all.extend(times);
        }
    }
    Ok(rows)
}

/// Submits `n` copies of `spec`, in batches.
async fn prefill(store: &SqlStore, spec: &JobSpec, n: usize) -> anyhow::Result<()> {
    let mut left = n;
    while left > 0 {
        let batch = left.min(20_000);
        store.submit(vec![spec.clone(); batch]).await?;
        left -= batch;
    }
    Ok(())
}

/// Section 5b of the report.
pub fn write_section(
    md: &mut String,
    rows: &[ClaimCost],
    skipped: Option<&str>,
) -> std::fmt::Result {
    use std::fmt::Write as _;
    writeln!(md, "\n## 5b. Claim cost\n")?;
    writeln!(
        md,
        "One `Store::claim` of one job (its whole transaction) called directly against a store holding N queued jobs, with durability out of the loop: SQLite on tmpfs, PostgreSQL with `synchronous_commit = off`. Every store of a backend is prefilled first, then each round times every size in turn, so that the ratios compare claims made minutes apart, not tens of minutes. Median per claim over every round, [min–max] of the rounds' medians, and the 90th percentile. The last row of each backend holds the largest queue besides, in a paused queue at a higher priority: jobs the claim may not take, ahead of those it may.\n"
    )?;
    writeln!(
        md,
        "| backend | queued | per claim | p90 | ratio to the smallest queue |\n|---|---|---|---|---|"
    )?;
    for row in rows {
        let base = rows
            .iter()
            .find(|r| r.backend == row.backend)
            .map_or(f64::NAN, |r| percentile(&r.all, 50.0));
        let rounds = crate::stats::spread(&row.round_medians);
        let median = percentile(&row.all, 50.0);
        writeln!(
            md,
            "| {} | {}{} | {:.0} µs [{:.0}–{:.0}] | {:.0} µs | {:.2}× |",
            row.backend,
            row.queued,
            if row.held > 0 {
                format!(" (+ {} in a paused queue)", row.held)
            } else {
                String::new()
            },
            median * 1e6,
            rounds.min * 1e6,
            rounds.max * 1e6,
            percentile(&row.all, 90.0) * 1e6,
            median / base
        )?;
    }
    if let Some(why) = skipped {
        writeln!(
            md,
            "| PostgreSQL | | skipped: {} | | |",
            why.replace('|', "/")
        )?;
    }
    Ok(())
}

/// For backend `backend`: the largest queue's median claim over the smallest's, with the
/// spread of the same ratio taken round by round.
pub fn flatness(rows: &[ClaimCost], backend: &str) -> Option<crate::stats::Spread> {
    let mine: Vec<&ClaimCost> = rows
        .iter()
        .filter(|r| r.backend == backend && r.held == 0)
        .collect();
    let (first, last) = (mine.first()?, mine.last()?);
    if first.queued == last.queued {
        return None;
    }
    let by_round: Vec<f64> = first
        .round_medians
        .iter()
        .zip(&last.round_medians)
        .map(|(small, large)| large / small)
        .collect();
    let mut spread = crate::stats::spread(&by_round);
    spread.median = percentile(&last.all, 50.0) / percentile(&first.all, 50.0);
    Some(spread)
}
