//! The report's targets table (issue #18): each target's measured ratio or value, its spread
//! over the run's rounds, and met / not met. Only what the harness measured is judged; a
//! workload that was skipped says so instead of passing.

use std::fmt::Write as _;

use drover_core::units::format_bytes;

use crate::stats::{Spread, percentile, spread};
use crate::workloads;

/// What the targets are judged on.
pub struct Measured<'a> {
    pub throughput: &'a [workloads::Throughput],
    pub cluster: &'a workloads::ClusterThroughput,
    pub submit: &'a workloads::SubmitLatency,
    pub cancel: &'a workloads::CancelLatency,
    pub memory: &'a workloads::Memory,
    pub claim_cost: &'a [workloads::ClaimCost],
    pub events: &'a workloads::EventLatency,
    pub pool: &'a workloads::PoolSweep,
}

/// `a` over `b` with the widest range the rounds allow (the rounds of two tools are not
/// paired, so the smallest of one over the largest of the other bounds it below).
fn ratio(a: &[f64], b: &[f64]) -> Option<Spread> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (a, b) = (spread(a), spread(b));
    Some(Spread {
        median: a.median / b.median,
        min: a.min / b.max,
        max: a.max / b.min,
    })
}

fn rates<'a>(m: &'a Measured<'_>, tool: &str, c: usize) -> Option<&'a [f64]> {
    m.throughput
        .iter()
        .find(|r| r.tool == tool && r.concurrency == c)
        .and_then(|r| r.rates.as_ref().ok())
        .map(Vec::as_slice)
}

/// One row: the target, the median and its spread (formatted by `fmt`), met or not.
fn row(
    md: &mut String,
    target: &str,
    value: Option<Spread>,
    fmt: impl Fn(f64) -> String,
    met: impl Fn(f64) -> bool,
) -> std::fmt::Result {
    match value {
        Some(v) => writeln!(
            md,
            "| {target} | {} | {}–{} | {} |",
            fmt(v.median),
            fmt(v.min),
            fmt(v.max),
            if met(v.median) { "met" } else { "**not met**" }
        ),
        None => writeln!(
            md,
            "| {target} | not measured in this run | | **not met** |"
        ),
    }
}

fn times(x: f64) -> String {
    format!("{x:.2}×")
}

fn millis(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1e3)
}

/// Writes the targets section.
pub fn render(md: &mut String, m: &Measured<'_>) -> std::fmt::Result {
    writeln!(md, "\n## Targets (issues #18 and #19)\n")?;
    writeln!(
        md,
        "The median, then the lowest and highest the rounds allow: for a ratio of two tools measured in separate rounds, the lowest of one over the highest of the other and back. Met or not is judged on the median.\n"
    )?;
    writeln!(md, "| target | measured | min–max | |\n|---|---|---|---|")?;
    for c in [2, 8] {
        let drover = rates(m, "drover", c);
        let xargs = rates(m, "xargs -P", c);
        let raw = rates(m, "raw spawn", c);
        row(
            md,
            &format!("throughput ≥ 0.8× `xargs -P` at {c} slots"),
            drover.zip(xargs).and_then(|(d, x)| ratio(d, x)),
            times,
            |r| r >= 0.8,
        )?;
        // The floor: how much of a bare spawn loop's rate drover keeps. Informational.
        if let Some(v) = drover.zip(raw).and_then(|(d, r)| ratio(d, r)) {
            writeln!(
                md,
                "| (the floor) drover / raw spawn at {c} slots | {} | {}–{} | — |",
                times(v.median),
                times(v.min),
                times(v.max)
            )?;
        }
    }
    let submit_at = |p: f64| {
        let per_round: Vec<f64> = m.submit.rounds.iter().map(|r| percentile(r, p)).collect();
        (!m.submit.single.is_empty()).then(|| {
            let mut s = spread(&per_round);
            s.median = percentile(&m.submit.single, p);
            s
        })
    };
    row(
        md,
        "`drover submit` p50 < 2 ms (whole CLI process)",
        submit_at(50.0),
        millis,
        |v| v < 0.002,
    )?;
    row(
        md,
        "`drover submit` p99 < 5 ms (whole CLI process)",
        submit_at(99.0),
        millis,
        |v| v < 0.005,
    )?;
    let cluster = m.cluster.rates.as_ref().ok();
    row(
        md,
        &format!(
            "{} nodes × {} slots on PostgreSQL ≥ 1.0× one SQLite node at 2 slots",
            m.cluster.nodes, m.cluster.slots
        ),
        cluster
            .zip(rates(m, "drover", 2))
            .and_then(|(c, one)| ratio(c, one)),
        times,
        |r| r >= 1.0,
    )?;
    // Run for run beside each other, so the rounds pair up.
    let paired: Vec<f64> = cluster
        .map(|c| {
            c.iter()
                .zip(&m.cluster.one_node_rates)
                .map(|(many, one)| many / one)
                .collect()
        })
        .unwrap_or_default();
    row(
        md,
        &format!(
            "{} nodes add capacity: > 1.0× one node on the same PostgreSQL",
            m.cluster.nodes
        ),
        (!paired.is_empty()).then(|| {
            let mut s = spread(&paired);
            s.median = spread(cluster.map_or(&[][..], Vec::as_slice)).median
                / spread(&m.cluster.one_node_rates).median;
            s
        }),
        times,
        |r| r > 1.0,
    )?;
    for backend in ["SQLite", "PostgreSQL"] {
        let sizes: Vec<usize> = m
            .claim_cost
            .iter()
            .filter(|r| r.backend == backend && r.held == 0)
            .map(|r| r.queued)
            .collect();
        let label = match (sizes.first(), sizes.last()) {
            (Some(a), Some(b)) => format!("claim with {b} queued ≤ 1.2× that with {a}, {backend}"),
            _ => format!("claim cost flat (≤ 1.2× from 1k to 1M queued), {backend}"),
        };
        row(
            md,
            &label,
            workloads::flatness(m.claim_cost, backend),
            times,
            |r| r <= 1.2,
        )?;
    }
    let one = |v: f64| Spread {
        median: v,
        min: v,
        max: v,
    };
    let events_p99 = percentile(&m.events.latencies_ms, 99.0) / 1e3;
    row(
        md,
        "event latency p99 < 5 ms",
        (!m.events.latencies_ms.is_empty()).then(|| one(events_p99)),
        millis,
        |v| v < 0.005,
    )?;
    row(
        md,
        "cancel → tree gone p99 < 50 ms",
        (!m.cancel.drover.is_empty()).then(|| one(percentile(&m.cancel.drover, 99.0))),
        millis,
        |v| v < 0.050,
    )?;
    let bytes = |v: f64| format_bytes(v as u64);
    row(
        md,
        "idle RSS < 15 MB",
        Some(one(m.memory.idle_rss as f64)),
        bytes,
        |v| v < 15e6,
    )?;
    row(
        md,
        &format!("RSS < 60 MB after {} jobs", m.memory.jobs),
        Some(one(m.memory.after_rss as f64)),
        bytes,
        |v| v < 60e6,
    )?;
    // #19: a pooled job's start, per-round p50s for the spread.
    let per_round: Vec<f64> = m
        .pool
        .pooled
        .iter()
        .map(|r| percentile(&r.first_line_ms, 50.0) / 1e3)
        .collect();
    let all: Vec<f64> = m
        .pool
        .pooled
        .iter()
        .flat_map(|r| r.first_line_ms.iter().map(|ms| ms / 1e3))
        .collect();
    row(
        md,
        "(#19) a pooled job, claim → first output line, p50 < 50 ms",
        (!all.is_empty()).then(|| {
            let mut s = spread(&per_round);
            s.median = percentile(&all, 50.0);
            s
        }),
        millis,
        |v| v < 0.050,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_of_unpaired_rounds_spans_the_extremes() {
        let r = ratio(&[8.0, 10.0, 12.0], &[4.0, 5.0, 6.0]).expect("both measured");
        assert_eq!(r.median, 10.0 / 5.0);
        assert_eq!((r.min, r.max), (8.0 / 6.0, 12.0 / 4.0));
        assert!(ratio(&[], &[1.0]).is_none());
    }

    #[test]
    fn a_target_not_measured_is_not_met() {
        let mut md = String::new();
        row(&mut md, "x", None, times, |_| true).expect("writes");
        assert!(
            md.contains("not measured") && md.contains("**not met**"),
            "{md}"
        );
        let mut md = String::new();
        let v = Spread {
            median: 0.9,
            min: 0.8,
            max: 1.0,
        };
        row(&mut md, "x", Some(v), times, |r| r >= 0.8).expect("writes");
        assert!(md.contains("| 0.90× | 0.80×–1.00× | met |"), "{md}");
    }
}
