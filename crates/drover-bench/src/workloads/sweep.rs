//! Workload 8: a parameter sweep of a short Python script, to the last result collected —
//! through drover (`submit --each`, `wait`, `results --json`) and through GNU parallel
//! (`parallel ::: …`, each job printing its result, collected in order with `--keep-order`).

use std::time::Instant;

use anyhow::{Context, ensure};

use super::{Bench, seconds};

/// The script each job runs: its result is `{"n": N, "sq": N*N}`.
const SCRIPT: &str =
    "import sys, json; n = int(sys.argv[1]); print(json.dumps({'n': n, 'sq': n * n}))";

/// Seconds per run for each tool, or why it was skipped.
pub struct Sweep {
    pub jobs: usize,
    pub slots: usize,
    pub drover: Result<Vec<f64>, String>,
    pub parallel: Result<Vec<f64>, String>,
}

pub fn sweep(bench: &Bench) -> anyhow::Result<Sweep> {
    let n = bench.sizes.sweep_jobs;
    let slots = 2;
    let mut drover = Vec::new();
    let mut parallel = Vec::new();
    // Run for run, side by side, so that drift in the machine hits both alike.
    for _ in 0..bench.sizes.runs {
        eprintln!("bench: sweep drover, {n} jobs");
        drover.push(drover_sweep(bench, n, slots)?);
        if bench.parallel.is_ok() {
            eprintln!("bench: sweep GNU parallel, {n} jobs");
            parallel.push(parallel_sweep(bench, n, slots).map_err(|e| format!("{e:#}")));
        }
    }
    let parallel = match bench.parallel.clone() {
        Err(why) => Err(why),
        Ok(()) => parallel.into_iter().collect(),
    };
    Ok(Sweep {
        jobs: n,
        slots,
        drover: Ok(drover),
        parallel,
    })
}

/// From the submit to the results read back, every one checked.
fn drover_sweep(bench: &Bench, n: usize, slots: usize) -> anyhow::Result<f64> {
    let node = bench.node("sweep", &["--slots", &slots.to_string()])?;
    let range = format!("1..{n}");
    let start = Instant::now();
    let group = node.cli_ok(&[
        "submit",
        "--env-clear",
        "--result-stdout",
        "--each",
        &range,
        "--",
        "python3",
        "-c",
        SCRIPT,
        "{}",
    ])?;
    let group = group.trim();
    node.cli_ok(&["wait", group, "--quiet"])?;
    let results = node.cli_ok(&["--json", "results", group])?;
    let took = seconds(start);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&results).context("results")?;
    ensure!(rows.len() == n, "{} results of {n}", rows.len());
    for (i, row) in rows.iter().enumerate() {
        let k = i as i64 + 1;
        ensure!(row["result"]["sq"] == k * k, "result {i} is wrong: {row}");
    }
    node.stop()?;
    Ok(took)
}

/// The same through GNU parallel: `--keep-order` collects stdout in input order.
fn parallel_sweep(bench: &Bench, n: usize, slots: usize) -> anyhow::Result<f64> {
    let out = bench.fresh("parallel-sweep").with_extension("jsonl");
    let start = Instant::now();
    // A clean environment, as drover's jobs get with --env-clear: the variables a shell carries
    // change how long Python takes to start (this machine's made it 4× slower), and both tools
    // must start the same interpreter.
    let status = std::process::Command::new("parallel")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(std::env::var_os("HOME").map(|home| ("HOME", home)))
        .args([
            "--will-cite",
            "--keep-order",
            // The command as words, not a shell line: the script's parentheses stay its own.
            "--quote",
            "-j",
            &slots.to_string(),
            "python3",
            "-c",
            SCRIPT,
            ":::",
        ])
        .args((1..=n).map(|i| i.to_string()))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .status()?;
    let took = seconds(start);
    ensure!(status.success(), "parallel failed: {status}");
    let text = std::fs::read_to_string(&out)?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parallel's output")?;
    ensure!(rows.len() == n, "{} results of {n}", rows.len());
    for (i, row) in rows.iter().enumerate() {
        let k = i as i64 + 1;
        ensure!(row["sq"] == k * k, "result {i} is wrong: {row}");
    }
    Ok(took)
}
