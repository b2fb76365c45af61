//! `drover top`: the running jobs with their live memory and CPU, refreshed in place, like
//! `htop` for jobs. Everything comes from the node's API: each running attempt's usage series,
//! which the node that runs it samples from its cell (`serve --sample-interval`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use drover_core::JobRecord;
use drover_core::units::format_bytes;

use super::client;
use crate::cli::{Cli, TopArgs};
use crate::exit;
use crate::output;

/// Most running jobs one screen asks for.
const MOST: usize = 500;

/// `drover top`
pub fn top(cli: &Cli, args: &TopArgs) -> anyhow::Result<u8> {
    let mut client = client(cli)?;
    let once = args.once || cli.json || !std::io::stdout().is_terminal();
    loop {
        let jobs: Vec<JobRecord> =
            client.patiently(|c| c.get(&format!("/v1/jobs?state=running&limit={MOST}")))?;
        if cli.json {
            let rows: Vec<serde_json::Value> = jobs.iter().map(row_json).collect();
            output::json(&rows)?;
            return Ok(exit::OK);
        }
        let screen = screen(&jobs, chrono::Utc::now(), args.interval.get(), once);
        let mut out = std::io::stdout().lock();
        if !once {
            // Home and clear, then the screen: no scrollback fills up.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{screen}")?;
        out.flush()?;
        if once {
            return Ok(exit::OK);
        }
        std::thread::sleep(args.interval.get());
    }
}

/// The latest sample of a job's current attempt: (memory bytes, thousandths of a CPU).
fn latest(job: &JobRecord) -> (Option<u64>, Option<u32>) {
    job.current_attempt()
        .and_then(|a| a.usage_series.as_ref())
        .and_then(|s| s.latest())
        .map_or((None, None), |p| (p.memory_bytes, p.cpu_millis))
}

fn memory_limit(job: &JobRecord) -> Option<u64> {
    job.current_attempt()
        .and_then(|a| a.memory_limit_bytes)
        .or(job.spec.memory.map(|m| m.0))
}

fn row_json(job: &JobRecord) -> serde_json::Value {
    let (memory, cpu) = latest(job);
    serde_json::json!({
        "id": job.id,
        "number": job.number,
        "name": job.name,
        "node": job.node,
        "started_at": job.started_at,
        "memory_bytes": memory,
        "memory_limit_bytes": memory_limit(job),
        "cpus": cpu.map(|m| f64::from(m) / 1000.0),
        "cpu_quota": job.spec.cpus,
        "usage_series": job.current_attempt().and_then(|a| a.usage_series.clone()),
    })
}

/// One screen: a title line, then a row per running job, busiest memory first.
pub(crate) fn screen(
    jobs: &[JobRecord],
    now: chrono::DateTime<chrono::Utc>,
    every: Duration,
    once: bool,
) -> String {
    let mut jobs: Vec<&JobRecord> = jobs.iter().collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(latest(j).0.unwrap_or(0)));
    let nodes: std::collections::BTreeSet<_> =
        jobs.iter().filter_map(|j| j.node.as_ref()).collect();
    let mut out = format!(
        "drover top: {} running on {} node{} at {}",
        jobs.len(),
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        now.with_timezone(&chrono::Local).format("%H:%M:%S"),
    );
    if !once {
        out.push_str(&format!(
            " (every {}; Ctrl-C quits)",
            drover_core::HumanDuration(every)
        ));
    }
    out.push('\n');
    if jobs.is_empty() {
        out.push_str("nothing is running\n");
        return out;
    }
    let mut rows = vec![vec![
        "JOB".to_string(),
        "NAME".into(),
        "NODE".into(),
        "RUNTIME".into(),
        "MEMORY".into(),
        "CPU".into(),
        "MEMORY OVER TIME".into(),
    ]];
    for job in jobs {
        let (memory, cpu) = latest(job);
        let memory = match (memory, memory_limit(job)) {
            (Some(m), Some(limit)) => format!(
                "{} / {} ({}%)",
                format_bytes(m),
                format_bytes(limit),
                m.saturating_mul(100) / limit.max(1)
            ),
            (Some(m), None) => format_bytes(m),
            (None, _) => "-".into(),
        };
        let cpu = match (cpu, job.spec.cpus) {
            (Some(c), Some(quota)) => format!(
                "{:.2} / {}",
                f64::from(c) / 1000.0,
                f64::from(quota.millis()) / 1000.0
            ),
            (Some(c), None) => format!("{:.2}", f64::from(c) / 1000.0),
            (None, _) => "-".into(),
        };
        let spark = job
            .current_attempt()
            .and_then(|a| a.usage_series.as_ref())
            .map(|s| {
                let values: Vec<u64> = s
                    .points
                    .iter()
                    .map(|p| p.memory_bytes.unwrap_or(0))
                    .collect();
                output::sparkline(&values, memory_limit(job))
            })
            .unwrap_or_default();
        rows.push(vec![
            job.number.to_string(),
            output::clip(&job.name, 28),
            job.node.as_ref().map_or("-".into(), |n| n.0.clone()),
            output::runtime(job, now),
            memory,
            cpu,
            spark,
        ]);
    }
    out.push_str(&output::table(&rows));
    out
}
