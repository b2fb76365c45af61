//! Workload 9 (#19): a sweep of a short Python script whose module takes a second to import
//! (`slowmod`, which sleeps at import, plus `sympy` where it imports), through a warm pool
//! (`pool create --preload`, `submit --pool --each`) and cold (`submit --each -- python3 …`),
//! run for run. Each job imports the modules, then prints the time as its one line; a job's
//! start latency is that time minus its claim (`claimed_at` of its attempt, same clock).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, ensure};

use super::{Bench, seconds};

/// A module that takes a second to import, as a heavy library does.
const SLOW_MODULE: &str = "import time\ntime.sleep(1)\nVALUE = 7\n";

/// One run of each way: wall time for all the jobs, and each job's claim → first line.
pub struct PoolRun {
    pub seconds: f64,
    pub first_line_ms: Vec<f64>,
}

/// The pooled and the cold runs, and what was preloaded.
pub struct PoolSweep {
    pub jobs: usize,
    pub slots: usize,
    pub preload: Vec<String>,
    pub pooled: Vec<PoolRun>,
    pub cold: Vec<PoolRun>,
}

pub fn pool_sweep(bench: &Bench) -> anyhow::Result<PoolSweep> {
    let n = bench.sizes.pool_jobs;
    let slots = 2;
    let dir = bench.fresh("pool-modules");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("slowmod.py"), SLOW_MODULE)?;
    let mut preload = vec!["slowmod".to_string()];
    if python_imports("sympy") {
        preload.push("sympy".into());
    } else {
        eprintln!("bench: pool: sympy does not import here; preloading slowmod alone");
    }
    let imports = preload.join(", ");
    std::fs::write(
        dir.join("job.py"),
        format!(
            "import sys, json, time\nimport {imports}\nprint(json.dumps({{'n': int(sys.argv[1]), 't': time.time()}}))\n"
        ),
    )?;
    let mut pooled = Vec::new();
    let mut cold = Vec::new();
    for _ in 0..bench.sizes.runs {
        eprintln!("bench: pool, {n} jobs through a warm pool");
        pooled.push(run(bench, &dir, &preload, n, slots, true)?);
        eprintln!("bench: pool, {n} cold jobs");
        cold.push(run(bench, &dir, &preload, n, slots, false)?);
    }
    Ok(PoolSweep {
        jobs: n,
        slots,
        preload,
        pooled,
        cold,
    })
}

fn python_imports(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One sweep of `n` jobs, pooled or cold, from the submit to the results read back (the pool's
/// creation, its one import included, is not counted: it is paid once per pool, not per
/// sweep).
fn run(
    bench: &Bench,
    dir: &Path,
    preload: &[String],
    n: usize,
    slots: usize,
    warm: bool,
) -> anyhow::Result<PoolRun> {
    let node = bench.node("pool", &["--slots", &slots.to_string()])?;
    let pythonpath = format!("PYTHONPATH={}", dir.display());
    let path = format!("PATH={}", std::env::var("PATH").unwrap_or_default());
    let clean = [
        "--env-clear",
        "-e",
        path.as_str(),
        "-e",
        pythonpath.as_str(),
    ];
    let script = dir.join("job.py");
    let script = script.to_str().context("script path")?;
    if warm {
        let preload = preload.join(",");
        let mut create = vec!["pool", "create", "bench", "--kind", "python", "--preload"];
        create.push(&preload);
        create.extend(clean);
        node.cli_ok(&create)?;
    }
    let range = format!("1..{n}");
    let mut submit = vec!["submit", "--result-stdout", "--each", &range];
    if warm {
        submit.extend(["--pool", "bench"]);
    }
    submit.extend(clean);
    submit.push("--");
    if !warm {
        submit.push("python3");
    }
    submit.extend([script, "{}"]);
    let start = Instant::now();
    let group = node.cli_ok(&submit)?;
    let group = group.trim();
    node.cli_ok(&["wait", group, "--quiet"])?;
    let results = node.cli_ok(&["--json", "results", group])?;
    let took = seconds(start);
    if warm {
        // The parents outlive their node like any job: end them before the node stops.
        node.cli_ok(&["pool", "rm", "bench"])?;
    }
    let rows: Vec<serde_json::Value> = serde_json::from_str(&results).context("results")?;
    ensure!(rows.len() == n, "{} results of {n}", rows.len());
    let jobs = node.jobs(n + 10)?;
    let mut first_line_ms = Vec::with_capacity(n);
    for (i, row) in rows.iter().enumerate() {
        ensure!(
            row["result"]["n"] == i as i64 + 1,
            "result {i} is wrong: {row}"
        );
        let printed = row["result"]["t"].as_f64().context("the job's time")?;
        let job = jobs
            .iter()
            .find(|j| j["id"] == row["id"])
            .context("the job's record")?;
        let claimed: chrono::DateTime<chrono::Utc> = job["attempts"][0]["claimed_at"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .context("the attempt's claim time")?;
        let claimed = claimed.timestamp_micros() as f64 / 1e6;
        first_line_ms.push((printed - claimed) * 1e3);
    }
    node.stop()?;
    Ok(PoolRun {
        seconds: took,
        first_line_ms,
    })
}
