//! The five workloads of issue #4, each run against drover and, where it makes sense, the peers
//! and a raw baseline measured in the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::node::{Node, write_batch};
use crate::peers::Pueue;

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
    pub event_subscribers: usize,
    pub event_changes: usize,
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
            event_subscribers: 10,
            event_changes: 20,
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
            event_subscribers: 100,
            event_changes: 200,
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
    fn fresh(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.scratch.join(format!("{what}-{n}"))
    }

    fn node(&self, what: &str, flags: &[&str]) -> anyhow::Result<Node> {
        Node::start(&self.drover, &self.fresh(what).join("data"), flags)
    }
}

fn seconds(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

fn shell(script: &str) -> anyhow::Result<()> {
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
        });
    };
    let n = bench.sizes.jobs;
    let mut rates = Vec::new();
    for _ in 0..bench.sizes.runs {
        eprintln!("bench: throughput drover, {nodes} nodes on PostgreSQL");
        let slot_flag = slots.to_string();
        let cluster = (0..nodes)
            .map(|_| bench.node("cluster", &["--db", db.url(), "--slots", &slot_flag]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let batch = cluster[0].data_dir.with_extension("jsonl");
        write_batch(&batch, n, &["/bin/true"])?;
        let start = Instant::now();
        let ids = cluster[0].submit_batch(&batch)?;
        cluster[1].cli_ok(&["wait", "--all", "--quiet"])?;
        let rate = n as f64 / seconds(start);
        ensure!(ids.len() == n, "submitted {} of {n}", ids.len());
        let jobs = cluster[2].jobs(n)?;
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
        rates.push(rate);
    }
    // Drop the schema only after every node has stopped.
    drop(db);
    Ok(ClusterThroughput {
        nodes,
        slots,
        rates: Ok(rates),
    })
}

// ---------------------------------------------------------------------------------------------
// 2. Submit latency

pub struct SubmitLatency {
    /// Seconds per single CLI submit.
    pub single: Vec<f64>,
    /// Seconds per raw spawn of /bin/true (the unit of comparison).
    pub raw_spawn: Vec<f64>,
    /// Jobs per second for each batch run.
    pub batch_rates: Vec<f64>,
    pub batch_size: usize,
}

pub fn submit_latency(bench: &Bench) -> anyhow::Result<SubmitLatency> {
    eprintln!("bench: submit latency");
    let node = bench.node("submit", &["--slots", "2", "--shutdown-timeout", "1s"])?;
    let mut single = Vec::new();
    let mut raw_spawn = Vec::new();
    for _ in 0..bench.sizes.submit_samples {
        let start = Instant::now();
        let id = node.cli_ok(&["submit", "--", "/bin/true"])?;
        single.push(seconds(start));
        ensure!(id.trim().len() == 36, "submit printed {id:?}");
        let start = Instant::now();
        Command::new("/bin/true").status()?;
        raw_spawn.push(seconds(start));
    }
    node.cli_ok(&["wait", "--all", "--quiet"])?;
    node.stop()?;

    let mut batch_rates = Vec::new();
    for _ in 0..bench.sizes.runs {
        let node = bench.node("batch", &["--slots", "1", "--shutdown-timeout", "1s"])?;
        let batch = node.data_dir.with_extension("jsonl");
        write_batch(&batch, bench.sizes.batch, &["/bin/true"])?;
        let start = Instant::now();
        let ids = node.submit_batch(&batch)?;
        batch_rates.push(bench.sizes.batch as f64 / seconds(start));
        ensure!(
            ids.len() == bench.sizes.batch,
            "batch gave {} ids",
            ids.len()
        );
        node.stop()?;
    }
    Ok(SubmitLatency {
        single,
        raw_spawn,
        batch_rates,
        batch_size: bench.sizes.batch,
    })
}

// ---------------------------------------------------------------------------------------------
// 3. Cancel latency

/// Live (non-zombie) members of process group `pgid`.
fn group_members(pgid: i32) -> usize {
    // SAFETY: kill with signal 0 only checks existence.
    if unsafe { libc::killpg(pgid, 0) } != 0 {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter(|stat| {
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z")
                && fields.get(2).and_then(|p| p.parse::<i32>().ok()) == Some(pgid)
        })
        .count()
}

/// Waits until `pgid` has no live member; returns how long that took.
fn until_gone(pgid: i32, limit: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    while group_members(pgid) > 0 {
        ensure!(
            start.elapsed() < limit,
            "process group {pgid} still alive after {limit:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(seconds(start))
}

pub struct CancelLatency {
    /// Seconds from `drover cancel` returning to the tree gone.
    pub drover: Vec<f64>,
    /// Seconds from a raw `killpg(SIGTERM)` to the same tree gone.
    pub raw: Vec<f64>,
}

const TREE: &str = "sleep 1000 & sleep 1000 & wait";

pub fn cancel_latency(bench: &Bench) -> anyhow::Result<CancelLatency> {
    eprintln!("bench: cancel latency");
    let node = bench.node("cancel", &["--slots", "2"])?;
    let mut drover = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..bench.sizes.cancel_runs {
        let id = node.cli_ok(&["submit", "--grace", "5s", "--", "sh", "-c", TREE])?;
        let id = id.trim();
        let deadline = Instant::now() + Duration::from_secs(30);
        let pgid = loop {
            let job: serde_json::Value =
                serde_json::from_str(&node.cli_ok(&["status", id, "--json"])?)?;
            let pid = job["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|a| a["pid"].as_i64());
            if let (Some(pid), "running") = (pid, job["state"].as_str().unwrap_or("")) {
                if group_members(pid as i32) == 3 {
                    break pid as i32;
                }
            }
            ensure!(Instant::now() < deadline, "job {id} never ran its tree");
            std::thread::sleep(Duration::from_millis(5));
        };
        node.cli_ok(&["cancel", id])?;
        drover.push(until_gone(pgid, Duration::from_secs(30))?);
        node.cli_ok(&["wait", "--quiet", id]).ok();

        let mut child = Command::new("sh")
            .args(["-c", TREE])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pgid = child.id() as i32;
        while group_members(pgid) < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: signalling a process group we created.
        unsafe { libc::killpg(pgid, libc::SIGTERM) };
        let start = Instant::now();
        child.wait()?;
        while group_members(pgid) > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        raw.push(seconds(start));
    }
    node.stop()?;
    Ok(CancelLatency { drover, raw })
}

use std::os::unix::process::CommandExt;

// ---------------------------------------------------------------------------------------------
// 4. Memory

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

/// Milliseconds from an event's commit timestamp to its arrival at each subscriber.
pub struct EventLatency {
    pub subscribers: usize,
    pub latencies_ms: Vec<f64>,
}

/// `subscribers` clients on `GET /v1/events`; `changes` submits, one at a time, into a paused
/// queue (so each is exactly one event and nothing else runs). Each arrival is timed against
/// the event's `at`, which the store stamps in the committing transaction (ms resolution; it
/// includes that transaction's fsync).
pub fn event_latency(bench: &Bench) -> anyhow::Result<EventLatency> {
    eprintln!("bench: event latency");
    let subscribers = bench.sizes.event_subscribers;
    let changes = bench.sizes.event_changes;
    let node = bench.node("events", &["--slots", "1", "--shutdown-timeout", "1s"])?;
    node.cli_ok(&["queue", "pause", "bench"])?;
    let info = std::fs::read_to_string(node.data_dir.join("serve.json"))?;
    let url = serde_json::from_str::<serde_json::Value>(&info)?["url"]
        .as_str()
        .context("serve.json has no url")?
        .to_string();
    let bearer = format!("Bearer {}", node.token()?);
    let (tx, rx) = std::sync::mpsc::channel::<anyhow::Result<Vec<f64>>>();
    for _ in 0..subscribers {
        let response = ureq::get(format!("{url}/v1/events"))
            .header("Authorization", &bearer)
            .call()?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            let reader = std::io::BufReader::new(response.into_body().into_reader());
            let mut seen = Vec::with_capacity(changes);
            for line in std::io::BufRead::lines(reader) {
                let Ok(line) = line else { break };
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let now = chrono::Utc::now();
                let at = serde_json::from_str::<serde_json::Value>(data.trim())
                    .ok()
                    .and_then(|v| {
                        v["at"]
                            .as_str()
                            .and_then(|a| a.parse::<chrono::DateTime<chrono::Utc>>().ok())
                    });
                if let Some(at) = at {
                    seen.push((now - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                }
                if seen.len() == changes {
                    break;
                }
            }
            let _ = tx.send(Ok(seen));
        });
    }
    drop(tx);
    // Every subscriber is connected once the node counts it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = ureq::get(format!("{url}/metrics"))
            .header("Authorization", &bearer)
            .call()?
            .body_mut()
            .read_to_string()?;
        let connected = metrics
            .lines()
            .find_map(|l| l.strip_prefix("drover_event_subscribers "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if connected as usize >= subscribers {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {connected} of {subscribers} subscribers connected"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let body = serde_json::json!({"argv": ["true"], "cwd": "/", "queue": "bench"});
    for _ in 0..changes {
        ureq::post(format!("{url}/v1/jobs"))
            .header("Authorization", &bearer)
            .send_json(&body)?;
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut latencies_ms = Vec::with_capacity(subscribers * changes);
    for _ in 0..subscribers {
        let seen = rx
            .recv_timeout(Duration::from_secs(60))
            .context("a subscriber never got every event")??;
        ensure!(
            seen.len() == changes,
            "a subscriber got {} of {changes} events",
            seen.len()
        );
        latencies_ms.extend(seen);
    }
    node.cli_ok(&["cancel", "--all"])?;
    node.stop()?;
    Ok(EventLatency {
        subscribers,
        latencies_ms,
    })
}
