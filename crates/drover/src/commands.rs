//! One function per subcommand. Each returns the process exit code (see `main::exit`).

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use drover_core::{JobId, JobRecord};
use serde_json::json;

use crate::cli::{
    CancelArgs, Cli, Concurrency, DlqAction, DlqArgs, DoctorArgs, LogsArgs, NodeArgs, NodesArgs,
    PriorityArgs, QueueAction, QueueArgs, RetryArgs, RunArgs, ServeArgs, StatusArgs, SubmitArgs,
    WaitArgs, WatchArgs, WebArgs,
};
use crate::client::{Client, ClientError, default_data_dir};
use crate::exit;
use crate::output;

/// A mistake in what the user typed (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn data_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    match &cli.data_dir {
        Some(dir) => Ok(dir.clone()),
        None => default_data_dir(),
    }
}

fn client(cli: &Cli) -> anyhow::Result<Client> {
    let data_dir = data_dir(cli)?;
    // The token may be in drover.toml in the data dir, like the node's.
    let file = match crate::config::locate(None, &data_dir) {
        Some(path) => Some(crate::config::load(&path)?),
        None => None,
    };
    let token = crate::config::token(cli.token_file.as_deref(), file.as_ref())?;
    Client::locate(cli.server.as_deref(), &data_dir, token)
}

fn job_id(raw: &str) -> Result<JobId, UsageError> {
    raw.parse()
        .map_err(|_| UsageError(format!("`{raw}` is not a job id")))
}

/// Parses every id before talking to the node, so a typo fails fast with exit code 2.
fn job_ids(raw: &[String]) -> Result<Vec<JobId>, UsageError> {
    raw.iter().map(|r| job_id(r)).collect()
}

/// `drover serve`
pub fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<u8> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or the journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let data_dir = data_dir(cli)?;
    let loaded = match crate::config::locate(args.config.as_deref(), &data_dir) {
        Some(path) => {
            tracing::info!(file = %path.display(), "reading settings");
            Some(crate::config::load(&path)?)
        }
        None => None,
    };
    let token = crate::config::token(cli.token_file.as_deref(), loaded.as_ref())?;
    let (file, file_queues) = loaded.map(|l| (l.serve, l.queues)).unwrap_or_default();
    let mut config = drover_node::NodeConfig::new(data_dir);
    config.listen = args.listen;
    config.slots = args.slots.or(file.slots).map(|n| n as usize);
    config.shutdown_timeout = args.shutdown_timeout.get();
    config.stop_jobs_on_exit = args.stop_jobs_on_exit;
    config.heartbeat = args
        .heartbeat
        .or(file.heartbeat)
        .map_or(config.heartbeat, |d| {
            d.get().max(Duration::from_millis(100))
        });
    config.node_ttl = args
        .node_ttl
        .or(file.node_ttl)
        .map_or(config.heartbeat * 3, |d| d.get().max(config.heartbeat * 2));
    config.lease = args
        .lease
        .map_or(config.node_ttl, |d| d.get().max(config.heartbeat * 2));
    config.labels = file.labels.clone();
    config.labels.extend(args.labels.iter().cloned());
    config.log_limit = args.max_log_size.bytes();
    config.memory = args.memory.or(file.memory);
    config.cpus = args.cpus.or(file.cpus);
    if let Some(backend) = args.backend {
        config.backend = backend;
    } else if let Some(backend) = &file.backend {
        config.backend = backend
            .parse()
            .map_err(|e| anyhow::anyhow!("serve.backend: {e}"))?;
    }
    if let Some(wait) = args.reserve_after.or(file.reserve_after) {
        config.reserve_after = wait.get();
    }
    config.queue_defaults = file_queues;
    config.database = args.db.clone().or(file.db);
    config.token = token;
    config.allow_hosts = file.allow_hosts.clone();
    config.allow_hosts.extend(args.allow_hosts.iter().cloned());
    config.events_retention = args.events_retention.get();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("drover-node")
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(drover_node::serve(config));
    // Do not wait without end for blocking tasks (a log read, a cgroup removal) at exit: the
    // node's state is on disk by now.
    runtime.shutdown_timeout(Duration::from_secs(10));
    served?;
    Ok(exit::OK)
}

/// `drover owner`: a job's owner, started by a node (see `drover_exec::owner` in the node's
/// dependencies).
pub fn owner(args: &crate::cli::OwnerArgs) -> anyhow::Result<u8> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let containment = serde_json::from_str(&args.containment).context("--containment")?;
    let span = tracing::info_span!("owner", pid = std::process::id());
    let _entered = span.enter();
    drover_node::run_owner(drover_node::OwnerArgs {
        dir: args.dir.clone(),
        containment,
    })?;
    Ok(exit::OK)
}

/// `drover doctor`: runs locally, like `serve`: it probes this machine, not a node.
pub fn doctor(args: &DoctorArgs) -> anyhow::Result<u8> {
    let info = match drover_node::doctor(args.backend, args.memory, args.cpus, None) {
        Ok(info) => info,
        Err(err) => {
            eprintln!("drover: {err}");
            return Ok(exit::NODE);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print!("{}", crate::output::doctor_text(&info));
    }
    Ok(exit::OK)
}

/// Where a submitted job runs: `--cwd` made absolute, else the caller's directory.
fn job_cwd(args: &SubmitArgs) -> anyhow::Result<PathBuf> {
    match &args.cwd {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("bad --cwd {}", dir.display()))
        }
        None => std::env::current_dir().context("cannot read the current directory; pass --cwd"),
    }
}

/// The JSON spec for `POST /v1/jobs` that `submit` and `run` flags describe.
fn spec_json(args: &SubmitArgs, cwd: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let mut spec = json!({
        "argv": args.argv,
        "cwd": cwd.to_string_lossy(),
        "env": args.env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    });
    // Fields left out take the queue's default (drover.toml), then the built-in one.
    if let Some(priority) = args.priority {
        spec["priority"] = json!(priority);
    }
    if let Some(retries) = args.retries {
        spec["retries"] = json!(retries);
    }
    if let Some(timeout) = args.timeout {
        spec["timeout"] = json!(timeout.to_string());
    }
    if let Some(grace) = args.grace {
        spec["grace"] = json!(grace.to_string());
    }
    if let Some(name) = &args.name {
        spec["name"] = json!(name);
    }
    if let Some(memory) = args.memory {
        spec["memory"] = json!(memory.to_string());
    }
    if let Some(grow_to) = args.memory_max {
        spec["memory_max"] = json!(grow_to.to_string());
    }
    if let Some(cpus) = args.cpus {
        spec["cpus"] = json!(cpus);
    }
    if let Some(pids) = args.pids {
        spec["pids"] = json!(pids);
    }
    if let Some(nofile) = args.nofile {
        spec["nofile"] = json!(nofile);
    }
    if let Some(stall) = args.stall {
        spec["stall"] = json!(stall.to_string());
    }
    if let Some(signal) = args.checkpoint_signal {
        spec["checkpoint_signal"] = json!(signal.to_string());
    }
    if let Some(before) = args.signal_before {
        spec["signal_before"] = json!(before.to_string());
    }
    if let Some(code) = args.checkpoint_exit_code {
        spec["checkpoint_exit_code"] = json!(code);
    }
    if let Some(delay) = args.delay {
        spec["delay"] = json!(delay.to_string());
    }
    if let Some(at) = args.at {
        spec["at"] = json!(at.to_rfc3339());
    }
    if let Some(backoff) = args.backoff {
        spec["backoff"] = json!(backoff.to_string());
    }
    if !args.retry_on.is_empty() {
        spec["retry_on"] = json!(args.retry_on);
    }
    if let Some(key) = &args.idempotency_key {
        spec["idempotency_key"] = json!(key);
    }
    if !args.after.is_empty() {
        spec["after"] = json!(job_ids(&args.after)?);
    }
    if let Some(queue) = &args.queue {
        spec["queue"] = json!(queue);
    }
    if !args.require.is_empty() {
        let require: drover_core::Labels = args.require.iter().cloned().collect();
        spec["require"] = json!(require);
    }
    Ok(spec)
}

/// `drover submit`
pub fn submit(cli: &Cli, args: &SubmitArgs) -> anyhow::Result<u8> {
    let cwd = job_cwd(args)?;
    if let Some(file) = &args.batch {
        return submit_batch(cli, file, &cwd);
    }
    let spec = spec_json(args, &cwd)?;
    let answer: serde_json::Value = client(cli)?.post("/v1/jobs", &spec)?;
    println!("{}", answer["id"].as_str().unwrap_or_default());
    Ok(exit::OK)
}

/// `drover submit --batch FILE`: JSON Lines in, one id per line out. Blank lines are skipped;
/// a spec without `cwd` runs in the caller's directory, as a single submit does. The node
/// stores the whole batch in one transaction, and an error names the line at fault.
fn submit_batch(cli: &Cli, file: &std::path::Path, cwd: &std::path::Path) -> anyhow::Result<u8> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the batch from stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut specs = Vec::new();
    let mut line_of = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut spec: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| UsageError(format!("line {}: not JSON: {e}", index + 1)))?;
        let Some(object) = spec.as_object_mut() else {
            return Err(UsageError(format!(
                "line {}: a job spec must be a JSON object",
                index + 1
            ))
            .into());
        };
        object
            .entry("cwd")
            .or_insert_with(|| json!(cwd.to_string_lossy()));
        specs.push(spec);
        line_of.push(index + 1);
    }
    if specs.is_empty() {
        return Err(UsageError("the batch holds no job".into()).into());
    }
    let answer: serde_json::Value = match client(cli)?.post("/v1/jobs", &json!(specs)) {
        Ok(answer) => answer,
        Err(ClientError::Api { status, message }) if (400..500).contains(&status) => {
            return Err(UsageError(batch_error_by_line(&message, &line_of)).into());
        }
        Err(err) => return Err(err.into()),
    };
    let mut out = std::io::stdout().lock();
    for id in answer["ids"].as_array().into_iter().flatten() {
        writeln!(out, "{}", id.as_str().unwrap_or_default())?;
    }
    Ok(exit::OK)
}

/// Rewrites the node's `[i].field: message` into `line N: field: message`.
fn batch_error_by_line(message: &str, line_of: &[usize]) -> String {
    let parsed = message.strip_prefix('[').and_then(|rest| {
        let (index, tail) = rest.split_once(']')?;
        let line = line_of.get(index.parse::<usize>().ok()?)?;
        Some(format!(
            "line {line}: {}; nothing was submitted",
            tail.trim_start_matches('.')
        ))
    });
    parsed.unwrap_or_else(|| format!("{message}; nothing was submitted"))
}

/// `drover status`
pub fn status(cli: &Cli, args: &StatusArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let now = chrono::Utc::now();
    let mut out = std::io::stdout().lock();
    if args.ids.is_empty() {
        let states: Vec<&str> = args.state.iter().map(|s| s.as_str()).collect();
        let mut path = format!("/v1/jobs?limit={}", args.limit);
        if !states.is_empty() {
            path.push_str(&format!("&state={}", states.join(",")));
        }
        let jobs: Vec<JobRecord> = client.get(&path)?;
        if args.json {
            serde_json::to_writer_pretty(&mut out, &jobs)?;
            writeln!(out)?;
            return Ok(exit::OK);
        }
        let mut rows = vec![
            [
                "ID", "NAME", "STATE", "REASON", "ATTEMPT", "RUNTIME", "PEAK MEM",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for job in jobs.iter().rev() {
            rows.push(vec![
                job.id.to_string(),
                job.name.clone(),
                job.state.to_string(),
                output::outcome(job),
                job.attempt.to_string(),
                output::runtime(job, now),
                output::memory(job),
            ]);
        }
        write!(out, "{}", output::table(&rows))?;
        return Ok(exit::OK);
    }
    let ids = job_ids(&args.ids)?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        jobs.push(client.get::<JobRecord>(&format!("/v1/jobs/{id}"))?);
    }
    if args.json {
        match jobs.as_slice() {
            [one] => serde_json::to_writer_pretty(&mut out, one)?,
            many => serde_json::to_writer_pretty(&mut out, many)?,
        }
        writeln!(out)?;
    } else {
        for (i, job) in jobs.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", output::detail(job, now))?;
        }
    }
    Ok(exit::OK)
}

/// `drover logs`
pub fn logs(cli: &Cli, args: &LogsArgs) -> anyhow::Result<u8> {
    let id = job_id(&args.id)?;
    let stream = if args.stderr { "stderr" } else { "stdout" };
    let mut client = client(cli)?;
    if !args.follow {
        let mut path = format!("/v1/jobs/{id}/logs?stream={stream}");
        if let Some(attempt) = args.attempt {
            path.push_str(&format!("&attempt={attempt}"));
        }
        let mut body = client.stream(&path)?;
        copy_counting(&mut body, &mut std::io::stdout(), &mut 0)?;
        return Ok(exit::OK);
    }
    follow_output(
        &mut client,
        id,
        stream,
        args.attempt,
        &mut std::io::stdout(),
    )?;
    // Followed to the end: say how the job ended, as `run` does.
    let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
    Ok(job_exit_code(&job))
}

/// Copies a job's output to `out` as it is written, to the end of its attempt — across
/// restarts of the node: a stream that breaks, or that the node ends because it stops while
/// the attempt still runs, is picked up again (from the node started again) at the byte it got
/// to, of the same attempt.
fn follow_output(
    client: &mut Client,
    id: JobId,
    stream: &str,
    attempt: Option<u32>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut attempt = attempt;
    let mut offset = 0u64;
    let mut finishing = false;
    loop {
        let path = format!(
            "/v1/jobs/{id}/logs?stream={stream}&follow=true&offset={offset}{}",
            attempt.map(|a| format!("&attempt={a}")).unwrap_or_default()
        );
        let (said, mut body) = client.patiently(|c| c.stream_with_attempt(&path))?;
        attempt = attempt.or(said);
        let broke = copy_counting(&mut body, out, &mut offset)?;
        if finishing {
            return Ok(());
        }
        let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
        let live = match attempt {
            Some(a) => job.attempt == a && job.state.has_live_attempt(),
            None => job.state.has_live_attempt(),
        };
        // Over: one more request from where this one stopped gets whatever the attempt wrote
        // after it (the stream may have ended because the node stopped, and the attempt ended
        // while it was down); for an attempt that was over when the stream ended, it is empty.
        // Still running (the node went away or is stopping), or broken: ask again.
        finishing = !live && !broke;
    }
}

/// Copies `body` to `out`, flushing as data arrives and counting into `offset`. Returns whether
/// the stream broke (rather than ended).
fn copy_counting(
    body: &mut dyn Read,
    out: &mut dyn Write,
    offset: &mut u64,
) -> anyhow::Result<bool> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(true),
        };
        out.write_all(&buf[..n])?;
        // Followed output should appear as it arrives, not when a buffer fills.
        out.flush()?;
        *offset += n as u64;
    }
}

/// The exit code `run` and `logs -f` give for how a job ended (see `--help`).
pub fn job_exit_code(job: &JobRecord) -> u8 {
    use drover_core::JobState;
    match (job.state, job.exit_code, job.signal) {
        (JobState::Succeeded, _, _) => exit::OK,
        (JobState::TimedOut, _, _) => 124,
        (JobState::Cancelled, _, _) => 130,
        (JobState::Failed, Some(code), _)
            if job.reason.as_ref().is_some_and(|r| r.kind() == "exit_code") =>
        {
            u8::try_from(code).unwrap_or(1)
        }
        (JobState::Failed, _, Some(signal))
            if job.reason.as_ref().is_some_and(|r| r.kind() == "signal") =>
        {
            u8::try_from(128 + signal).unwrap_or(1)
        }
        _ => 125,
    }
}

/// Ctrl-C presses seen by `drover run` (counted by a signal handler).
static INTERRUPTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn count_interrupt(_: libc::c_int) {
    // Only an atomic add: async-signal-safe.
    INTERRUPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// `drover run`: submit, stream both outputs until the job ends, exit with its code. The first
/// Ctrl-C cancels the job (its tree goes by the usual ladder, and the output keeps streaming to
/// the end); a second one leaves it running and returns.
pub fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<u8> {
    if args.submit.batch.is_some() {
        return Err(UsageError("`run` takes one job; use `submit --batch` for many".into()).into());
    }
    let cwd = job_cwd(&args.submit)?;
    let spec = spec_json(&args.submit, &cwd)?;
    let client = client(cli)?;
    let answer: serde_json::Value = client.post("/v1/jobs", &spec)?;
    let id = answer["id"].as_str().unwrap_or_default().to_string();
    if args.detach {
        println!("{id}");
        return Ok(exit::OK);
    }
    // SAFETY: installs a handler that only does an atomic add.
    unsafe {
        libc::signal(
            libc::SIGINT,
            count_interrupt as *const () as libc::sighandler_t,
        );
    }
    let job_id = self::job_id(&id)?;
    let streams: Vec<_> = ["stdout", "stderr"]
        .into_iter()
        .map(|stream| {
            let mut client = self::client(cli)?;
            Ok(std::thread::spawn(move || -> anyhow::Result<()> {
                if stream == "stdout" {
                    follow_output(&mut client, job_id, stream, None, &mut std::io::stdout())
                } else {
                    follow_output(&mut client, job_id, stream, None, &mut std::io::stderr())
                }
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut client = client;
    let mut cancelled = false;
    while !streams.iter().all(|s| s.is_finished()) {
        match INTERRUPTS.load(std::sync::atomic::Ordering::SeqCst) {
            0 => {}
            1 if !cancelled => {
                cancelled = true;
                eprintln!("drover: cancelling {id} (Ctrl-C again to leave it running)");
                let _: serde_json::Value =
                    client.patiently(|c| c.post(&format!("/v1/jobs/{id}/cancel"), &json!({})))?;
            }
            1 => {}
            _ => {
                eprintln!("drover: left {id} running");
                return Ok(exit::OK);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for stream in streams {
        if let Ok(Err(err)) = stream.join() {
            eprintln!("drover: {err:#}");
        }
    }
    let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
    Ok(job_exit_code(&job))
}

/// `drover cancel`
pub fn cancel(cli: &Cli, args: &CancelArgs) -> anyhow::Result<u8> {
    if args.all {
        let answer: serde_json::Value = client(cli)?.post(
            "/v1/cancel",
            &json!({"states": args.state, "queue": args.queue}),
        )?;
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        for result in &results {
            println!(
                "{}: {}",
                result["id"].as_str().unwrap_or("?"),
                cancel_words(result)
            );
        }
        eprintln!("drover: {} jobs", results.len());
        return Ok(exit::OK);
    }
    let ids = job_ids(&args.ids)?;
    let client = client(cli)?;
    let mut code = exit::OK;
    for id in ids {
        match client.post::<serde_json::Value>(&format!("/v1/jobs/{id}/cancel"), &json!({})) {
            Ok(answer) => println!("{id}: {}", cancel_words(&answer)),
            Err(err @ ClientError::Api { status: 404, .. }) => {
                eprintln!("drover: {id}: {err}");
                code = exit::NODE;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(code)
}

/// What a cancel did, for people.
fn cancel_words(answer: &serde_json::Value) -> String {
    match answer["result"].as_str() {
        Some("cancelled") => "cancelled".to_string(),
        Some("cancel_requested") => "cancel requested; stopping its process tree".to_string(),
        Some("already_ended") => format!(
            "already ended ({})",
            answer["state"].as_str().unwrap_or("?")
        ),
        _ => answer.to_string(),
    }
}

/// Prints per-job results of a change (`retry`, `dlq dismiss`); exit 4 if any job was missing
/// or in a state the change does not apply to.
fn report_changes(answer: &serde_json::Value, done: &str) -> u8 {
    let mut code = exit::OK;
    for result in answer["results"].as_array().into_iter().flatten() {
        let id = result["id"].as_str().unwrap_or("?");
        match result["result"].as_str() {
            Some("done") => println!("{id}: {done}"),
            Some("not_applicable") => {
                eprintln!(
                    "drover: {id}: not possible while it is {}",
                    result["state"].as_str().unwrap_or("?")
                );
                code = exit::NODE;
            }
            _ => {
                eprintln!("drover: {id}: no such job");
                code = exit::NODE;
            }
        }
    }
    code
}

/// `drover watch`: one line per state change, as the node pushes them; ends when the node
/// stops or drops the stream.
pub fn watch(cli: &Cli, args: &WatchArgs) -> anyhow::Result<u8> {
    let mut query = Vec::new();
    if let Some(queue) = &args.queue {
        query.push(format!("queue={queue}"));
    }
    if let Some(job) = &args.job {
        query.push(format!("job={}", job_id(job)?));
    }
    if let Some(since) = args.since {
        query.push(format!("since={since}"));
    }
    let path = format!("/v1/events?{}", query.join("&"));
    let events = client(cli)?.events(&path)?;
    let mut out = std::io::stdout().lock();
    for event in events {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            let reason = event
                .reason
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default();
            let attempt = event.attempt.map(|a| format!("#{a}")).unwrap_or_default();
            writeln!(
                out,
                "{:>8}  {}  {}  {:<3} {:<16} {:<10} {}",
                event.seq,
                event.at.format("%H:%M:%S%.3f"),
                event.job_id,
                attempt,
                serde_json::to_value(event.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                event.state,
                reason
            )?;
        }
        out.flush()?;
    }
    Ok(exit::OK)
}

/// `drover priority ID N`
pub fn priority(cli: &Cli, args: &PriorityArgs) -> anyhow::Result<u8> {
    let id = job_id(&args.id)?;
    let _: serde_json::Value = client(cli)?.post(
        &format!("/v1/jobs/{id}/priority"),
        &json!({"priority": args.priority}),
    )?;
    println!("{id}: priority {}", args.priority);
    Ok(exit::OK)
}

/// `drover dlq [dismiss ID...]`
pub fn dlq(cli: &Cli, args: &DlqArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    if let Some(DlqAction::Dismiss { ids }) = &args.action {
        let ids = job_ids(ids)?;
        let answer: serde_json::Value = client.post("/v1/dlq/dismiss", &json!({"ids": ids}))?;
        return Ok(report_changes(&answer, "dismissed"));
    }
    let jobs: Vec<JobRecord> = client.get(&format!("/v1/dlq?limit={}", args.limit))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(exit::OK);
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "NAME".to_string(),
        "STATE".to_string(),
        "ATTEMPTS".to_string(),
        "LAST REASON".to_string(),
    ]];
    for job in &jobs {
        rows.push(vec![
            job.id.to_string(),
            job.name.clone(),
            job.state.to_string(),
            job.attempt.to_string(),
            output::outcome(job),
        ]);
    }
    print!("{}", output::table(&rows));
    Ok(exit::OK)
}

/// `drover queue ls|pause|resume|set`
pub fn queue(cli: &Cli, args: &QueueArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let (name, body) = match &args.action {
        QueueAction::Ls { json } => {
            let queues: Vec<serde_json::Value> = client.get("/v1/queues")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&queues)?);
                return Ok(exit::OK);
            }
            let mut rows = vec![
                [
                    "QUEUE",
                    "STATE",
                    "CONCURRENCY",
                    "QUEUED",
                    "WAITING",
                    "RUNNING",
                ]
                .map(str::to_string)
                .to_vec(),
            ];
            for q in &queues {
                rows.push(vec![
                    q["name"].as_str().unwrap_or("?").to_string(),
                    if q["paused"].as_bool() == Some(true) {
                        "paused"
                    } else {
                        "active"
                    }
                    .to_string(),
                    q["concurrency"]
                        .as_u64()
                        .map_or("-".to_string(), |n| n.to_string()),
                    q["queued"].to_string(),
                    q["waiting"].to_string(),
                    q["running"].to_string(),
                ]);
            }
            print!("{}", output::table(&rows));
            return Ok(exit::OK);
        }
        QueueAction::Pause { name } => (name, json!({"paused": true})),
        QueueAction::Resume { name } => (name, json!({"paused": false})),
        QueueAction::Set { name, concurrency } => match concurrency {
            Some(Concurrency(limit)) => (name, json!({"concurrency": limit})),
            None => return Err(UsageError("nothing to set: give --concurrency".into()).into()),
        },
    };
    let info: serde_json::Value = client.post(&format!("/v1/queues/{name}"), &body)?;
    println!(
        "{}: {}, concurrency {}",
        name,
        if info["paused"].as_bool() == Some(true) {
            "paused"
        } else {
            "active"
        },
        info["concurrency"]
            .as_u64()
            .map_or("unlimited".to_string(), |n| n.to_string())
    );
    Ok(exit::OK)
}

/// `drover retry ID... | --all-dlq`
pub fn retry(cli: &Cli, args: &RetryArgs) -> anyhow::Result<u8> {
    let body = if args.all_dlq {
        json!({"all_dlq": true})
    } else {
        json!({"ids": job_ids(&args.ids)?})
    };
    let answer: serde_json::Value = client(cli)?.post("/v1/retry", &body)?;
    Ok(report_changes(&answer, "queued again"))
}

/// `drover wait`: long-polls each job's `wait` endpoint, which the node answers when the job
/// ends (pushed by its event stream), so waiting costs one request per 30 s per job.
pub fn wait(cli: &Cli, args: &WaitArgs) -> anyhow::Result<u8> {
    // Every request waits out a restart of the node: `wait` outlives it, as the jobs do.
    let mut client = client(cli)?;
    let deadline = args.timeout.map(|t| Instant::now() + t.get());
    // The next long-poll slice, or None once the deadline has passed.
    let slice = || match deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(Duration::from_secs(30)))
        }
        None => Some(Duration::from_secs(30)),
    };
    if args.all {
        loop {
            let Some(slice) = slice() else {
                if !args.quiet {
                    eprintln!("drover: timed out waiting for the queue to drain");
                }
                return Ok(exit::TIMEOUT);
            };
            let path = format!("/v1/wait?timeout={}ms", slice.as_millis().max(1));
            let answer: serde_json::Value = client.patiently(|c| c.get(&path))?;
            if answer["idle"] == true {
                if !args.quiet {
                    println!("no job queued or running");
                }
                return Ok(exit::OK);
            }
        }
    }
    let ids = job_ids(&args.ids)?;
    // Subscribe first, then look: an ending between the two is seen by one or the other.
    let events = client.patiently(|c| c.events("/v1/events"))?;
    let mut pending: std::collections::HashSet<JobId> = ids.iter().copied().collect();
    let mut ended: HashMap<JobId, JobRecord> = HashMap::new();
    for id in &ids {
        let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
        if job.state.is_terminal() {
            pending.remove(id);
            ended.insert(*id, job);
        }
    }
    let progress = (!args.quiet && ids.len() > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(ids.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} ended  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(ended.len() as u64);
        bar
    });
    let mut stream_open = true;
    while !pending.is_empty() {
        let wait = match deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if wait.is_zero() {
            if let Some(bar) = &progress {
                bar.abandon();
            }
            if !args.quiet {
                eprintln!("drover: timed out waiting for {} job(s)", pending.len());
            }
            return Ok(exit::TIMEOUT);
        }
        let next = if stream_open {
            match events.recv_timeout(wait) {
                Ok(event) => Some(event.job_id).filter(|_| event.state.is_terminal()),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // The stream ended (node stopping, or it dropped us): long-poll instead.
                    stream_open = false;
                    None
                }
            }
        } else {
            let id = *pending.iter().next().unwrap_or(&ids[0]);
            let slice = wait.min(Duration::from_secs(30));
            let path = format!("/v1/jobs/{id}/wait?timeout={}ms", slice.as_millis().max(1));
            let job: JobRecord = client.patiently(|c| c.get(&path))?;
            job.state.is_terminal().then_some(id)
        };
        if let Some(id) = next.filter(|id| pending.contains(id)) {
            pending.remove(&id);
            let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
            if let Some(bar) = &progress {
                bar.inc(1);
                bar.set_message(format!("{id} {}", job.state));
            }
            ended.insert(id, job);
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut all_succeeded = true;
    for id in &ids {
        let Some(job) = ended.get(id) else { continue };
        all_succeeded &= job.state == drover_core::JobState::Succeeded;
        if !args.quiet {
            let reason = job
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            println!("{id} {}{reason}", job.state);
        }
    }
    Ok(if all_succeeded {
        exit::OK
    } else {
        exit::JOB_FAILED
    })
}

/// `drover nodes`: the cluster as the database knows it.
pub fn nodes(cli: &Cli, args: &NodesArgs) -> anyhow::Result<u8> {
    let nodes: Vec<drover_core::NodeRecord> = client(cli)?.get("/v1/nodes")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(exit::OK);
    }
    let mut rows = vec![
        [
            "NODE",
            "HOST",
            "STATE",
            "LABELS",
            "SLOTS",
            "RUNNING",
            "MEMORY",
            "CPUS",
            "HEARTBEAT",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    let now = chrono::Utc::now();
    for node in &nodes {
        let ago = (now - node.heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0;
        rows.push(vec![
            node.info.id.to_string(),
            node.info.hostname.clone(),
            node.state.to_string(),
            drover_core::node::describe_labels(&node.info.labels),
            node.info.slots.to_string(),
            node.load.running.to_string(),
            format!(
                "{}/{}",
                drover_core::Size(node.load.reserved.memory_bytes),
                drover_core::Size(node.info.capacity.memory_bytes)
            ),
            format!(
                "{}/{}",
                f64::from(u32::try_from(node.load.reserved.cpu_millis).unwrap_or(u32::MAX))
                    / 1000.0,
                f64::from(u32::try_from(node.info.capacity.cpu_millis).unwrap_or(u32::MAX))
                    / 1000.0
            ),
            format!("{ago:.1}s ago"),
        ]);
    }
    print!("{}", output::table(&rows));
    Ok(exit::OK)
}

/// `drover drain NODE` / `drover undrain NODE`.
pub fn drain(cli: &Cli, args: &NodeArgs, draining: bool) -> anyhow::Result<u8> {
    let action = if draining { "drain" } else { "undrain" };
    let node: drover_core::NodeRecord =
        client(cli)?.post(&format!("/v1/nodes/{}/{action}", args.node), &json!({}))?;
    println!("{} {}", node.info.id, node.state);
    Ok(exit::OK)
}

/// `drover web`: the login link, `URL/?token=…`. Opening it makes the node set its login cookie
/// and send the browser on to the page without the token in the address.
pub fn web(cli: &Cli, args: &WebArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let token = client.token().ok_or_else(|| {
        anyhow::anyhow!(
            "no token for {}: the CLI finds a local node's in its data dir; for another node set DROVER_TOKEN or --token-file",
            client.base()
        )
    })?;
    let link = format!(
        "{}/?token={}",
        client.base(),
        drover_node::auth::percent_encode(token)
    );
    if !args.open {
        println!("{link}");
        if std::io::stderr().is_terminal() {
            eprintln!("open this link in a browser to log it in; it is as secret as the token");
        }
        return Ok(exit::OK);
    }
    // A command line is visible to every user (ps), so the opener gets a private file that
    // sends the browser on, as Jupyter does.
    let dir = data_dir(cli)?;
    let dir = if dir.is_dir() {
        dir
    } else {
        std::env::temp_dir()
    };
    let file = dir.join("web-login.html");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&file);
        let mut out = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("cannot write {}", file.display()))?;
        let escaped = link.replace('&', "&amp;").replace('"', "&quot;");
        writeln!(
            out,
            "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={escaped}\"><a href=\"{escaped}\">drover</a>"
        )?;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let status = std::process::Command::new(opener)
        .arg(&file)
        .status()
        .with_context(|| {
            format!("cannot run {opener}; run `drover web` and open the link by hand")
        })?;
    anyhow::ensure!(
        status.success(),
        "{opener} failed ({status}); run `drover web` and open the link by hand"
    );
    Ok(exit::OK)
}
