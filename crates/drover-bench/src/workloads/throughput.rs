//! Throughput: jobs per second through drover, pueue and a raw fork-exec baseline, on one
//! node and on a cluster sharing PostgreSQL.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, ensure};

use crate::node::{Node, write_batch};
use crate::peers::Pueue;

use super::*;

/// One tool at one concurrency: jobs per second per run, or why it was skipped.
pub struct Throughput {
    pub tool: String,
    pub concurrency: usize,
    pub rates: Result<Vec<f64>, String>,
}

/// `n` × /bin/true from `c` threads spawning directly: the floor every tool pays.
fn raw_rate(n: usize, c: usize) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..c)
        .map(|_| {
            let next = Arc::clone(&next);
            std::thread::spawn(move || -> std::io::Result<()> {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    Command::new("/bin/true").status()?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("spawn thread panicked"))??;
    }
    Ok(n as f64 / seconds(start))
}

fn drover_rate(bench: &Bench, binary: &Path, n: usize, c: usize) -> anyhow::Result<f64> {
    let node = Node::start(
        binary,
        &bench.fresh("throughput").join("data"),
        &["--slots", &c.to_string()],
    )?;
    let batch = node.data_dir.with_extension("jsonl");
    write_batch(&batch, n, &["/bin/true"])?;
    let start = Instant::now();
    let ids = node.submit_batch(&batch)?;
    node.cli_ok(&["wait", "--all", "--quiet"])?;
    let rate = n as f64 / seconds(start);
    ensure!(ids.len() == n, "submitted {} of {n}", ids.len());
    let jobs = node.jobs(n)?;
    let succeeded = jobs.iter().filter(|j| j["state"] == "succeeded").count();
    ensure!(succeeded == n, "only {succeeded} of {n} jobs succeeded");
    node.stop()?;
    Ok(rate)
}

fn pueue_rate(bench: &Bench, n: usize, c: usize) -> anyhow::Result<f64> {
    let pueue = Pueue::start(&bench.fresh("pueue"))?;
    pueue.run(&["parallel", &c.to_string()])?;
    pueue.run(&["pause"])?;
    for _ in 0..n {
        pueue.run(&["add", "--", "/bin/true"])?;
    }
    let start = Instant::now();
    pueue.run(&["start"])?;
    pueue.run(&["wait"])?;
    Ok(n as f64 / seconds(start))
}

/// Runs workload 1 for every tool and concurrency.
pub fn throughput(bench: &Bench) -> anyhow::Result<Vec<Throughput>> {
    let n = bench.sizes.jobs;
    let mut rows = Vec::new();
    for c in [2, 8] {
        let measure = |tool: &'static str,
                       available: Result<(), String>,
                       f: &dyn Fn() -> anyhow::Result<f64>| {
            eprintln!("bench: throughput {tool} c={c}");
            let rates = available.and_then(|()| {
                (0..bench.sizes.runs)
                    .map(|_| f().map_err(|e| format!("{e:#}")))
                    .collect::<Result<Vec<_>, _>>()
            });
            Throughput {
                tool: tool.to_string(),
                concurrency: c,
                rates,
            }
        };
        rows.push(measure("raw spawn", Ok(()), &|| raw_rate(n, c)));
        match &bench.baseline {
            None => rows.push(measure("drover", Ok(()), &|| {
                drover_rate(bench, &bench.drover, n, c)
            })),
            Some((label, baseline)) => {
                // Side by side, run for run, so that drift in the machine hits both alike.
                eprintln!("bench: throughput drover and drover {label} c={c}, interleaved");
                let mut now = Vec::new();
                let mut before = Vec::new();
                for _ in 0..bench.sizes.runs {
                    now.push(drover_rate(bench, &bench.drover, n, c));
                    before.push(drover_rate(bench, baseline, n, c));
                }
                let collect = |v: Vec<anyhow::Result<f64>>| {
                    v.into_iter()
                        .map(|r| r.map_err(|e| format!("{e:#}")))
                        .collect::<Result<Vec<_>, _>>()
                };
                rows.push(Throughput {
                    tool: "drover".into(),
                    concurrency: c,
                    rates: collect(now),
                });
                rows.push(Throughput {
                    tool: format!("drover {label}"),
                    concurrency: c,
                    rates: collect(before),
                });
            }
        }
        rows.push(measure("xargs -P", Ok(()), &|| {
            let start = Instant::now();
            shell(&format!("seq {n} | xargs -P {c} -I{{}} /bin/true"))?;
            Ok(n as f64 / seconds(start))
        }));
        rows.push(measure("GNU parallel", bench.parallel.clone(), &|| {
            let start = Instant::now();
            shell(&format!("seq {n} | parallel --will-cite -j {c} /bin/true"))?;
            Ok(n as f64 / seconds(start))
        }));
        let pueue_n = bench.sizes.pueue_jobs.min(n);
        rows.push(measure("pueue", bench.pueue.clone(), &|| {
            pueue_rate(bench, pueue_n, c)
        }));
    }
    // drover's correctness is asserted inside drover_rate: every job succeeded.
    if let Some(failed) = rows.iter().find(|r| r.tool == "drover" && r.rates.is_err()) {
        bail!(
            "drover throughput run failed: {}",
            failed.rates.as_ref().err().cloned().unwrap_or_default()
        );
    }
    Ok(rows)
}

/// Workload 1b: the same jobs through three nodes sharing one PostgreSQL database.
pub struct ClusterThroughput {
    pub nodes: usize,
    pub slots: usize,
    /// Jobs per second per run, or why it was skipped.
    pub rates: Result<Vec<f64>, String>,
    /// The same jobs through one node on the same database, run for run beside the cluster:
    /// the cluster over this says whether more nodes add capacity or contend.
    pub one_node_rates: Vec<f64>,
    /// How many jobs each node ran, per run of the cluster (busiest first).
    pub per_node: Vec<Vec<usize>>,
}

/// `n` × /bin/true submitted through one of three nodes on one database (a fresh schema of
/// `DROVER_TEST_DATABASE_URL`), from submit to the last job done as any node sees it. Every
/// job must succeed exactly once and every node must have run some.
pub fn cluster_throughput(bench: &Bench) -> anyhow::Result<ClusterThroughput> {
    let (nodes, slots) = (3, 2);
    let Some(db) = drover_store::testing::TestDatabase::create() else {
        return Ok(ClusterThroughput {
            nodes,
            slots,
            rates: Err("no PostgreSQL: set DROVER_TEST_DATABASE_URL".into()),
            one_node_rates: Vec::new(),
            per_node: Vec::new(),
        });
    };
    let mut rates = Vec::new();
    let mut one_node_rates = Vec::new();
    let mut per_node = Vec::new();
    for _ in 0..bench.sizes.runs {
        let (rate, _) = cluster_run(bench, &db, 1, slots)?;
        one_node_rates.push(rate);
        let (rate, counts) = cluster_run(bench, &db, nodes, slots)?;
        rates.push(rate);
        per_node.push(counts);
    }
    // Drop the schema only after every node has stopped.
    drop(db);
    Ok(ClusterThroughput {
        nodes,
        slots,
        rates: Ok(rates),
        one_node_rates,
        per_node,
    })
}

/// One run of `n` jobs through `nodes` nodes on `db`: the rate, and how many jobs each node ran.
fn cluster_run(
    bench: &Bench,
    db: &drover_store::testing::TestDatabase,
    nodes: usize,
    slots: usize,
) -> anyhow::Result<(f64, Vec<usize>)> {
    let n = bench.sizes.jobs;
    eprintln!("bench: throughput drover, {nodes} node(s) on PostgreSQL");
    let slot_flag = slots.to_string();
    let cluster = (0..nodes)
        .map(|_| bench.node("cluster", &["--db", db.url(), "--slots", &slot_flag]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let batch = cluster[0].data_dir.with_extension("jsonl");
    write_batch(&batch, n, &["/bin/true"])?;
    let start = Instant::now();
    let ids = cluster[0].submit_batch(&batch)?;
    cluster[nodes / 2].cli_ok(&["wait", "--all", "--quiet"])?;
    let rate = n as f64 / seconds(start);
    ensure!(ids.len() == n, "submitted {} of {n}", ids.len());
    let jobs = cluster[nodes - 1].jobs(n)?;
    let succeeded = jobs
        .iter()
        .filter(|j| j["state"] == "succeeded" && j["attempt"] == 1)
        .count();
    ensure!(
        succeeded == n,
        "only {succeeded} of {n} jobs succeeded in one attempt"
    );
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for job in &jobs {
        *per_node.entry(job["node"].to_string()).or_default() += 1;
    }
    ensure!(
        per_node.len() == nodes,
        "not every node ran jobs: {per_node:?}"
    );
    for node in cluster {
        node.stop()?;
    }
    let mut counts: Vec<usize> = per_node.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    Ok((rate, counts))
}

// ---------------------------------------------------------------------------------------------
// 2. Submit latency
