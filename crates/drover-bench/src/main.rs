//! `drover-bench`: drover against the tools users would pick instead, on the same workloads in
//! the same run, written up as `docs/benchmarks.md`. Run it through `bench/run` (which builds the
//! release binaries first). `quick` runs tiny sizes and checks correctness only; CI runs it so the
//! harness cannot rot. Speed is never asserted: these machines are shared and noisy.

mod node;
mod only;
mod peers;
mod reliability;
mod stats;
mod targets;
mod workloads;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use drover_core::units::format_bytes;

use crate::stats::{percentile, spread};
use crate::workloads::{Bench, Sizes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The full sizes of issue #4; installs the peers; writes docs/benchmarks.md.
    All,
    /// Tiny sizes, correctness only; installs nothing; writes target/bench-quick.md.
    Quick,
    /// The reliability suite of #16 (crash burst, power loss, API fuzzer); writes
    /// docs/reliability.md and fails on any fault.
    Reliability,
    /// The reliability suite at small sizes, for CI; writes target/reliability-quick.md.
    ReliabilityQuick,
}

/// Benchmarks drover against xargs -P, GNU parallel and pueue.
#[derive(Debug, Parser)]
struct Args {
    #[arg(value_enum, default_value = "all")]
    mode: Mode,
    /// The drover binary to measure.
    #[arg(long, default_value = "target/release/drover")]
    drover: PathBuf,
    /// Where to write the report (default by mode).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Another drover binary to measure beside this one in the throughput workload (the commit
    /// before a change), run for run.
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// The baseline's label in the report.
    #[arg(long, value_name = "TEXT", default_value = "before")]
    baseline_label: String,
    /// Run one workload only and print its rows instead of writing a report (for profiling).
    #[arg(long, value_parser = ["throughput", "cluster", "submit", "cancel", "memory", "claim", "claim-cost", "events", "sweep", "pool"])]
    only: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let quick = args.mode == Mode::Quick;
    let drover = std::path::absolute(&args.drover)?;
    anyhow::ensure!(
        drover.exists(),
        "no drover binary at {} (run bench/run, which builds it)",
        drover.display()
    );
    if matches!(args.mode, Mode::Reliability | Mode::ReliabilityQuick) {
        let quick = args.mode == Mode::ReliabilityQuick;
        let out = args.out.unwrap_or_else(|| {
            PathBuf::from(if quick {
                "target/reliability-quick.md"
            } else {
                "docs/reliability.md"
            })
        });
        std::fs::create_dir_all("target")?;
        let scratch = tempfile::Builder::new()
            .prefix("reliability-")
            .tempdir_in("target")?;
        return reliability::main(&drover, scratch.path(), quick, &out);
    }
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(if quick {
            "target/bench-quick.md"
        } else {
            "docs/benchmarks.md"
        })
    });
    let parallel = peers::ensure_parallel(!quick).map_err(|e| format!("{e:#}"));
    let pueue = peers::ensure_pueue(!quick).map_err(|e| format!("{e:#}"));
    for (name, state) in [("GNU parallel", &parallel), ("pueue", &pueue)] {
        if let Err(why) = state {
            eprintln!("bench: SKIPPING {name}: {why}");
        }
    }
    std::fs::create_dir_all("target")?;
    let scratch = tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in("target")?;
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let mut bench = Bench::new(drover, scratch.path().to_path_buf(), sizes, parallel, pueue);
    if let Some(baseline) = &args.baseline {
        let path = std::path::absolute(baseline)?;
        anyhow::ensure!(path.exists(), "no baseline binary at {}", path.display());
        bench.baseline = Some((args.baseline_label.clone(), path));
    }

    if let Some(only) = args.only.as_deref() {
        return only::run_only(&bench, only);
    }
    // Read before the run: the commit measured is the one built, whatever lands meanwhile.
    let facts = machine_facts();
    let throughput = workloads::throughput(&bench)?;
    let cluster = workloads::cluster_throughput(&bench)?;
    let submit = workloads::submit_latency(&bench)?;
    let cancel = workloads::cancel_latency(&bench)?;
    let memory = workloads::memory(&bench)?;
    let claims = workloads::claim_scaling(&bench)?;
    let claim_cost = workloads::claim_cost(&bench)?;
    let events = workloads::event_latency(&bench)?;
    let sweep = workloads::sweep(&bench)?;
    let pool = workloads::pool_sweep(&bench)?;

    let report = render(
        &bench,
        quick,
        &facts,
        &throughput,
        &cluster,
        &submit,
        &cancel,
        &memory,
        &claims,
        &claim_cost,
        &events,
        &sweep,
        &pool,
    )?;
    std::fs::write(&out, report).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("bench: wrote {}", out.display());
    println!("bench: all drover jobs succeeded in every workload");
    Ok(())
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".to_string())
}

fn machine_facts() -> Vec<(&'static str, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or("?".into(), |kb| format_bytes(kb * 1024));
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2 present"
    } else if std::path::Path::new("/sys/fs/cgroup/memory").exists() {
        "cgroup v1 controllers present"
    } else {
        "no cgroups"
    };
    vec![
        ("cores", command_line("nproc", &[])),
        ("cpu", cpu),
        ("memory", mem),
        ("kernel", command_line("uname", &["-r"])),
        (
            "cgroup backend",
            format!(
                "{cgroup}; drover's {}",
                command_line("target/release/drover", &["doctor"])
                    .lines()
                    .next()
                    .unwrap_or("backend: unknown")
            ),
        ),
        (
            "drover",
            format!(
                "{} (git {})",
                env!("CARGO_PKG_VERSION"),
                command_line("git", &["rev-parse", "--short", "HEAD"])
            ),
        ),
        (
            "date",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        ),
    ]
}

fn ms(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

/// Section 7: the warm pool against cold starts (#19).
fn write_pool(md: &mut String, pool: &workloads::PoolSweep) -> std::fmt::Result {
    writeln!(
        md,
        "\n## 7. A warm pool: {} × a Python script whose imports take over a second\n",
        pool.jobs
    )?;
    writeln!(
        md,
        "Each job imports {} (`slowmod` sleeps 1 s at import, as a heavy library's import costs), then prints the time as its result; {} at once. Pooled: `pool create --preload {}` once (not timed), then `submit --pool --each 1..{}`; cold: `submit --each 1..{} -- python3 job.py {{}}`. Both in a clean environment, run for run. \"claim → first line\" is the job's printed time less its attempt's `claimed_at`.\n",
        pool.preload.join(" and "),
        pool.slots,
        pool.preload.join(","),
        pool.jobs,
        pool.jobs
    )?;
    writeln!(
        md,
        "| | seconds for all | claim → first line p50 | p99 |\n|---|---|---|---|"
    )?;
    for (what, runs) in [("warm pool", &pool.pooled), ("cold", &pool.cold)] {
        let secs = spread(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>());
        let lines: Vec<f64> = runs.iter().flat_map(|r| r.first_line_ms.clone()).collect();
        writeln!(
            md,
            "| {what} | {:.2} [{:.2}–{:.2}] | {:.1} ms | {:.1} ms |",
            secs.median,
            secs.min,
            secs.max,
            percentile(&lines, 50.0),
            percentile(&lines, 99.0)
        )?;
    }
    let warm = spread(&pool.pooled.iter().map(|r| r.seconds).collect::<Vec<_>>());
    let cold = spread(&pool.cold.iter().map(|r| r.seconds).collect::<Vec<_>>());
    writeln!(
        md,
        "\ncold / warm pool, time for all {} jobs: {:.1}×",
        pool.jobs,
        cold.median / warm.median
    )
}

#[allow(clippy::too_many_arguments)]
fn render(
    bench: &Bench,
    quick: bool,
    facts: &[(&'static str, String)],
    throughput: &[workloads::Throughput],
    cluster: &workloads::ClusterThroughput,
    submit: &workloads::SubmitLatency,
    cancel: &workloads::CancelLatency,
    memory: &workloads::Memory,
    claims: &[workloads::ClaimScaling],
    claim_cost: &(Vec<workloads::ClaimCost>, Option<String>),
    events: &workloads::EventLatency,
    sweep: &workloads::Sweep,
    pool: &workloads::PoolSweep,
) -> anyhow::Result<String> {
    let s = &bench.sizes;
    let mut md = String::new();
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Generated by `bench/run{}` — do not edit by hand; the prose at the end comes from `bench/analysis.md`.",
        if quick { " quick" } else { "" }
    )?;
    writeln!(
        md,
        "Every number below comes from one run of the harness on the machine described here. Medians with [min–max] over {} run(s).\n",
        s.runs
    )?;
    writeln!(md, "## Machine\n\n| | |\n|---|---|")?;
    for (k, v) in facts {
        writeln!(md, "| {k} | {v} |")?;
    }

    writeln!(md, "\n## 1. Throughput: {} × `/bin/true`\n", s.jobs)?;
    writeln!(
        md,
        "From submit to the last job done. drover keeps every job durable (SQLite WAL, `synchronous=FULL`). \"raw spawn\" is the harness itself spawning `/bin/true` from N threads: the floor every tool pays. pueue runs {} jobs per run, not {}: it starts jobs on a ~300 ms tick, and its rate is steady long before.\n",
        s.pueue_jobs.min(s.jobs),
        s.jobs
    )?;
    writeln!(
        md,
        "| tool | concurrency | jobs/s | ratio to raw spawn | ratio to xargs -P |\n|---|---|---|---|---|"
    )?;
    let median_of = |tool: &str, c: usize| {
        throughput
            .iter()
            .find(|r| r.tool == tool && r.concurrency == c)
            .and_then(|r| r.rates.as_ref().ok())
            .map(|v| spread(v).median)
    };
    for row in throughput {
        match &row.rates {
            Ok(rates) => {
                let sp = spread(rates);
                let raw = median_of("raw spawn", row.concurrency).unwrap_or(f64::NAN);
                let xargs = median_of("xargs -P", row.concurrency).unwrap_or(f64::NAN);
                writeln!(
                    md,
                    "| {} | {} | {:.0} [{:.0}–{:.0}] | {:.2}× | {:.2}× |",
                    row.tool,
                    row.concurrency,
                    sp.median,
                    sp.min,
                    sp.max,
                    sp.median / raw,
                    sp.median / xargs
                )?;
            }
            Err(why) => writeln!(
                md,
                "| {} | {} | skipped: {} | | |",
                row.tool,
                row.concurrency,
                why.replace('|', "/")
            )?,
        }
    }
    if let Some((label, _)) = &bench.baseline {
        let before = format!("drover {label}");
        writeln!(
            md,
            "\n`drover {label}` is the build of the commit before the change measured, run for run beside this one (`--baseline`): drover now / before ="
        )?;
        for c in [2, 8] {
            let now = median_of("drover", c).unwrap_or(f64::NAN);
            let then = median_of(&before, c).unwrap_or(f64::NAN);
            writeln!(
                md,
                "- {c} slots: {:.2}× ({now:.0} / {then:.0} jobs/s)",
                now / then
            )?;
        }
    }

    writeln!(md, "\n## 1b. Throughput across nodes\n")?;
    writeln!(
        md,
        "The same {} × `/bin/true`, submitted through one of {} nodes that share one PostgreSQL database ({} slots each), until every job is done as another node sees it. All nodes and the database run on this one machine, so this measures what coordinating through PostgreSQL costs (claims with `SKIP LOCKED`, events by `NOTIFY`, commits over a socket), not how a cluster of machines scales.\n",
        s.jobs, cluster.nodes, cluster.slots
    )?;
    writeln!(
        md,
        "| setup | jobs/s | ratio to one node on SQLite at 2 slots |\n|---|---|---|"
    )?;
    let one_node = median_of("drover", 2).unwrap_or(f64::NAN);
    match &cluster.rates {
        Ok(rates) => {
            let one = spread(&cluster.one_node_rates);
            writeln!(
                md,
                "| drover, 1 node × {} slots, PostgreSQL | {:.0} [{:.0}–{:.0}] | {:.2}× |",
                cluster.slots,
                one.median,
                one.min,
                one.max,
                one.median / one_node
            )?;
            let sp = spread(rates);
            writeln!(
                md,
                "| drover, {} nodes × {} slots, PostgreSQL | {:.0} [{:.0}–{:.0}] | {:.2}× |",
                cluster.nodes,
                cluster.slots,
                sp.median,
                sp.min,
                sp.max,
                sp.median / one_node
            )?;
            let splits: Vec<String> = cluster
                .per_node
                .iter()
                .map(|counts| {
                    counts
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
                .collect();
            writeln!(
                md,
                "\nPer node: {:.0} jobs/s each ({} nodes, {:.2}× one node on the same database, run for run). Jobs each node ran, per run: {}.",
                sp.median / cluster.nodes as f64,
                cluster.nodes,
                sp.median / one.median,
                splits.join("; ")
            )?;
        }
        Err(why) => writeln!(
            md,
            "| drover, {} nodes × {} slots, PostgreSQL | skipped: {} | |",
            cluster.nodes,
            cluster.slots,
            why.replace('|', "/")
        )?,
    }

    writeln!(md, "\n## 2. Submit latency\n")?;
    let raw_p50 = percentile(&submit.raw_spawn, 50.0);
    writeln!(
        md,
        "| measure | value | ratio to one raw spawn ({}) |\n|---|---|---|",
        ms(raw_p50)
    )?;
    for p in [50.0, 99.0] {
        let v = percentile(&submit.single, p);
        let per_round = spread(
            &submit
                .rounds
                .iter()
                .map(|r| percentile(r, p))
                .collect::<Vec<_>>(),
        );
        writeln!(
            md,
            "| `drover submit` (whole CLI process), p{p:.0} over {} ({} rounds: {}–{}) | {} | {:.1}× |",
            submit.single.len(),
            submit.rounds.len(),
            ms(per_round.min),
            ms(per_round.max),
            ms(v),
            v / raw_p50
        )?;
    }
    let b = spread(&submit.batch_rates);
    writeln!(
        md,
        "| `drover submit --batch` of {} jobs | {:.0} jobs/s [{:.0}–{:.0}] | |",
        submit.batch_size, b.median, b.min, b.max
    )?;

    writeln!(md, "\n## 3. Cancel latency\n")?;
    writeln!(
        md,
        "From `drover cancel` returning to every process of a running 3-process tree (`sh` + 2 × `sleep`) being gone, over {} runs. \"raw\" is `killpg(SIGTERM)` on the same tree by the harness.\n",
        cancel.drover.len()
    )?;
    writeln!(md, "| | p50 | p99 |\n|---|---|---|")?;
    writeln!(
        md,
        "| drover | {} | {} |",
        ms(percentile(&cancel.drover, 50.0)),
        ms(percentile(&cancel.drover, 99.0))
    )?;
    writeln!(
        md,
        "| raw killpg | {} | {} |",
        ms(percentile(&cancel.raw, 50.0)),
        ms(percentile(&cancel.raw, 99.0))
    )?;

    writeln!(md, "\n## 3b. Event latency\n")?;
    writeln!(
        md,
        "From an event's commit timestamp (`at`, stamped in the committing transaction: ms resolution, fsync included) to its arrival at each of {} SSE subscribers on loopback; {} events. Target: p99 < 5 ms.\n",
        events.subscribers,
        events.latencies_ms.len() / events.subscribers.max(1)
    )?;
    writeln!(md, "| | p50 | p99 | max |\n|---|---|---|---|")?;
    writeln!(
        md,
        "| commit → subscriber | {:.1} ms | {:.1} ms | {:.1} ms |",
        percentile(&events.latencies_ms, 50.0),
        percentile(&events.latencies_ms, 99.0),
        events.latencies_ms.iter().copied().fold(0.0, f64::max)
    )?;

    writeln!(md, "\n## 4. Memory of the node\n")?;
    writeln!(md, "| | RSS |\n|---|---|")?;
    writeln!(
        md,
        "| idle, just started | {} |",
        format_bytes(memory.idle_rss)
    )?;
    writeln!(
        md,
        "| after {} jobs ran through it and are in the store | {} (peak {}) |",
        memory.jobs,
        format_bytes(memory.after_rss),
        format_bytes(memory.after_peak)
    )?;
    writeln!(
        md,
        "\n({} jobs took {:.1} s: {:.0} jobs/s sustained at 8 slots.)",
        memory.jobs,
        memory.seconds,
        memory.jobs as f64 / memory.seconds
    )?;

    writeln!(md, "\n## 5. Claim scaling\n")?;
    writeln!(
        md,
        "Time from the first claim to the last completion of {} jobs, with N lower-priority jobs queued behind them (node records, 8 slots).\n",
        s.claim_jobs
    )?;
    writeln!(
        md,
        "| queued behind | time | ratio to the smallest queue |\n|---|---|---|"
    )?;
    let base = claims.first().map_or(f64::NAN, |c| c.seconds);
    for c in claims {
        writeln!(
            md,
            "| {} | {} | {:.2}× |",
            c.queued,
            ms(c.seconds),
            c.seconds / base
        )?;
    }

    workloads::write_claim_cost(&mut md, &claim_cost.0, claim_cost.1.as_deref())?;

    writeln!(
        md,
        "\n## 6. A sweep: {} × a short Python script, to the last result collected\n",
        sweep.jobs
    )?;
    writeln!(
        md,
        "Each job prints `{{\"n\": N, \"sq\": N*N}}`; {} at once. drover: `submit --each 1..{}` (results from the last line of stdout), `wait`, `results --json`, every result checked. GNU parallel: `parallel --keep-order --quote -j {} python3 -c … ::: 1 … {}`, its output collected and checked. Both start the jobs in a clean environment (drover's `--env-clear`; `PATH` and `HOME` alone for parallel). Run for run, side by side.\n",
        sweep.slots, sweep.jobs, sweep.slots, sweep.jobs
    )?;
    writeln!(md, "| tool | seconds | jobs/s |\n|---|---|---|")?;
    for (tool, runs) in [("drover", &sweep.drover), ("GNU parallel", &sweep.parallel)] {
        match runs {
            Ok(runs) if !runs.is_empty() => {
                let sp = spread(runs);
                writeln!(
                    md,
                    "| {tool} | {:.2} [{:.2}–{:.2}] | {:.0} |",
                    sp.median,
                    sp.min,
                    sp.max,
                    sweep.jobs as f64 / sp.median
                )?;
            }
            Ok(_) => writeln!(md, "| {tool} | no run | |")?,
            Err(why) => writeln!(md, "| {tool} | skipped: {} | |", why.replace('|', "/"))?,
        }
    }
    if let (Ok(d), Ok(p)) = (&sweep.drover, &sweep.parallel) {
        if !d.is_empty() && !p.is_empty() {
            writeln!(
                md,
                "\ndrover / GNU parallel, time to the last result: {:.2}×",
                spread(d).median / spread(p).median
            )?;
        }
    }

    write_pool(&mut md, pool)?;

    targets::render(
        &mut md,
        &targets::Measured {
            throughput,
            cluster,
            submit,
            cancel,
            memory,
            claim_cost: &claim_cost.0,
            events,
            pool,
        },
    )?;

    if let Ok(analysis) = std::fs::read_to_string("bench/analysis.md") {
        writeln!(md, "\n{}", analysis.trim_end())?;
    }
    Ok(md)
}
