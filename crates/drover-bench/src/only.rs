//! `drover-bench --only WORKLOAD`: one workload, its rows printed instead of written up (for
//! profiling a change).

use drover_core::units::format_bytes;

use crate::stats::percentile;
use crate::workloads::{self, Bench};

/// One workload, printed rather than written up.
pub fn run_only(bench: &Bench, only: &str) -> anyhow::Result<()> {
    match only {
        "throughput" => {
            for row in workloads::throughput(bench)? {
                println!("{} c={}: {:?}", row.tool, row.concurrency, row.rates);
            }
        }
        "cluster" => {
            let c = workloads::cluster_throughput(bench)?;
            println!("{} nodes x {} slots: {:?}", c.nodes, c.slots, c.rates);
            println!("1 node on the same database: {:?}", c.one_node_rates);
            println!("jobs per node: {:?}", c.per_node);
        }
        "submit" => {
            let s = workloads::submit_latency(bench)?;
            println!(
                "submit p50 {:.2} ms, batch {:?}",
                percentile(&s.single, 50.0) * 1e3,
                s.batch_rates
            );
        }
        "events" => {
            let e = workloads::event_latency(bench)?;
            println!(
                "events: {} subscribers, p50 {:.2} ms, p99 {:.2} ms",
                e.subscribers,
                percentile(&e.latencies_ms, 50.0),
                percentile(&e.latencies_ms, 99.0)
            );
        }
        "cancel" => {
            let c = workloads::cancel_latency(bench)?;
            println!(
                "cancel p50 {:.2} ms p99 {:.2} ms",
                percentile(&c.drover, 50.0) * 1e3,
                percentile(&c.drover, 99.0) * 1e3
            );
        }
        "sweep" => {
            let s = workloads::sweep(bench)?;
            println!(
                "sweep of {}: drover {:?} s, parallel {:?} s",
                s.jobs, s.drover, s.parallel
            );
        }
        "pool" => {
            let p = workloads::pool_sweep(bench)?;
            for (what, runs) in [("warm pool", &p.pooled), ("cold", &p.cold)] {
                let lines: Vec<f64> = runs.iter().flat_map(|r| r.first_line_ms.clone()).collect();
                println!(
                    "{what}: {} jobs in {:?} s, claim -> first line p50 {:.1} ms p99 {:.1} ms",
                    p.jobs,
                    runs.iter().map(|r| r.seconds).collect::<Vec<_>>(),
                    percentile(&lines, 50.0),
                    percentile(&lines, 99.0)
                );
            }
        }
        "memory" => {
            let m = workloads::memory(bench)?;
            println!(
                "idle {} after {}",
                format_bytes(m.idle_rss),
                format_bytes(m.after_rss)
            );
        }
        "claim-cost" => {
            let (rows, skipped) = workloads::claim_cost(bench)?;
            for row in &rows {
                println!(
                    "{} {} queued, {} held in a paused queue: median {:.0} µs, rounds {:?}",
                    row.backend,
                    row.queued,
                    row.held,
                    percentile(&row.all, 50.0) * 1e6,
                    row.round_medians
                        .iter()
                        .map(|s| (s * 1e6).round())
                        .collect::<Vec<_>>()
                );
            }
            if let Some(why) = skipped {
                println!("PostgreSQL skipped: {why}");
            }
        }
        _ => {
            for row in workloads::claim_scaling(bench)? {
                println!("{} queued: {:.0} ms", row.queued, row.seconds * 1e3);
            }
        }
    }
    Ok(())
}
