//! `drover session start|ls|stop` and `drover exec`: sessions as the jobs they are made of (see
//! `drover_exec::session`). A session is found by its name among the jobs that have not ended
//! and are a session's host; an exec is a job pinned to its host's node, whose output is
//! streamed here as `drover run` streams a job's.
//!
//! Also the two internal entry points a node runs as those jobs: `session-host` and
//! `session-exec`.

use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

use anyhow::Context;
use drover_api::{CancelAnswer, Submitted};
use drover_core::{JobId, JobRecord, JobState, SessionKind, SessionRole};

use super::run::stay_with;
use super::submit::{Origin, submit_one};
use super::{UsageError, client};
use crate::cli::{
    Cli, ExecArgs, SessionAction, SessionArgs, SessionExecCli, SessionHostCli, SessionStartArgs,
};
use crate::client::Client;
use crate::exit;

/// States in which a session's host has not ended.
const LIVE: &str = "queued,scheduled,blocked,starting,running";

/// How much higher than its session's an exec's priority is: an exec is someone waiting at a
/// prompt, so it goes before the node's other waiting jobs.
const EXEC_PRIORITY_BOOST: i32 = 1000;

/// No session of that name runs (exit code 4, as for a job the node does not have).
#[derive(Debug, thiserror::Error)]
#[error("no session named `{0}` runs (`drover session ls` lists them)")]
pub struct NoSuchSession(String);

/// `drover session ...`
pub fn session(cli: &Cli, args: &SessionArgs) -> anyhow::Result<u8> {
    match &args.action {
        SessionAction::Start(start_args) => start(cli, start_args),
        SessionAction::Ls => ls(cli),
        SessionAction::Stop { name } => stop(cli, name),
    }
}

/// The jobs that have not ended (of `name`, if given) and play a part `is` picks out, newest
/// first.
pub(super) fn live_with_role(
    client: &Client,
    name: Option<&str>,
    is: impl Fn(&SessionRole) -> bool,
) -> anyhow::Result<Vec<JobRecord>> {
    let mut path = format!("/v1/jobs?state={LIVE}&limit=1000");
    if let Some(name) = name {
        path.push_str("&name=");
        path.push_str(&urlencoding(name));
    }
    let jobs: Vec<JobRecord> = client.get(&path)?;
    Ok(jobs
        .into_iter()
        .filter(|job| job.spec.session.as_ref().is_some_and(&is))
        .collect())
}

/// The hosts of sessions that have not ended, newest first.
fn live_sessions(client: &Client, name: Option<&str>) -> anyhow::Result<Vec<JobRecord>> {
    live_with_role(client, name, |role| {
        matches!(role, SessionRole::Host { .. })
    })
}

/// The host of the session `name` (one being stopped is no longer there).
fn find(client: &Client, name: &str) -> anyhow::Result<JobRecord> {
    live_sessions(client, Some(name))?
        .into_iter()
        .find(|job| !job.cancel_requested)
        .ok_or_else(|| NoSuchSession(name.to_string()).into())
}

fn kind_of(job: &JobRecord) -> Option<SessionKind> {
    match &job.spec.session {
        Some(SessionRole::Host { kind }) => Some(*kind),
        _ => None,
    }
}

fn start(cli: &Cli, args: &SessionStartArgs) -> anyhow::Result<u8> {
    if args.session.trim().is_empty() {
        return Err(UsageError("a session needs a name".into()).into());
    }
    if args.spec.name.is_some() {
        return Err(UsageError(
            "a session's job is named by the session's NAME; leave out --name".into(),
        )
        .into());
    }
    let client = client(cli)?;
    if let Some(running) = live_sessions(&client, Some(&args.session))?.first() {
        return Err(UsageError(format!(
            "a session named `{}` already exists (job {}, {}); `drover session stop {}` ends it",
            args.session, running.number, running.state, args.session
        ))
        .into());
    }
    let mut spec = args.spec.clone();
    spec.name = Some(args.session.clone());
    spec.session = Some(SessionRole::Host { kind: args.kind });
    if spec.argv.is_empty() {
        spec.argv = args.kind.default_argv();
    }
    let id = submit_one(&client, &spec, &Origin::here(cli)?)?;
    if args.detach {
        return print_id(cli, id);
    }
    let job = wait_started(
        &client,
        id,
        &format!("the session `{}`", args.session),
        drover_node::session::READY_LINE,
        "",
    )?;
    if cli.json {
        crate::output::json(&job)?;
    } else {
        println!(
            "session {} runs ({}, job {}); `drover exec {} -- CODE` runs code in it",
            args.session, args.kind, job.number, args.session
        );
    }
    Ok(exit::OK)
}

/// Waits until job `id` — `what`, for messages — runs and has written `line` (its interpreter
/// is ready); fails if it ended first, saying how and where its output is, then `hint`.
pub(super) fn wait_started(
    client: &Client,
    id: JobId,
    what: &str,
    line: &str,
    hint: &str,
) -> anyhow::Result<JobRecord> {
    let job = wait_running(client, id, what)?;
    let job = if job.state == JobState::Running {
        wait_ready(client, id, line)?
    } else {
        job
    };
    if job.state != JobState::Running {
        let why = crate::output::ending(&job).unwrap_or_else(|| job.state.to_string());
        anyhow::bail!(
            "{what} ended as it started: {why}; `drover logs {}` shows what it printed{hint}",
            job.number
        );
    }
    Ok(job)
}

/// Waits until job `id` (a session's host, a pool's parent) has written `line` to its stderr
/// log — its interpreter has started and imported what it imports — or has ended; returns the
/// job as it then is.
fn wait_ready(client: &Client, id: JobId, line: &str) -> anyhow::Result<JobRecord> {
    let began = Instant::now();
    let mut said = false;
    loop {
        let mut log = String::new();
        client
            .stream(&format!("/v1/jobs/{id}/logs?stream=stderr"))?
            .read_to_string(&mut log)
            .context("cannot read the session's log")?;
        let job: JobRecord = client.get(&format!("/v1/jobs/{id}"))?;
        if log.contains(line) || job.state.is_terminal() {
            return Ok(job);
        }
        if !said && began.elapsed() > Duration::from_secs(2) {
            said = true;
            eprintln!(
                "drover: job {} is starting its interpreter (importing takes a while: Sage's takes seconds)",
                job.number
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until job `id` (`what`: "the session", "a parent of the pool") runs or ends; says once
/// if it is still waiting for room.
fn wait_running(client: &Client, id: JobId, what: &str) -> anyhow::Result<JobRecord> {
    let began = Instant::now();
    let mut said = false;
    loop {
        let job: JobRecord = client.get(&format!("/v1/jobs/{id}"))?;
        if job.state == JobState::Running || job.state.is_terminal() {
            return Ok(job);
        }
        if !said && began.elapsed() > Duration::from_secs(2) {
            said = true;
            eprintln!(
                "drover: {what} is {} (job {}): it starts when its node claims it; Ctrl-C leaves it waiting",
                job.state, job.number
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn ls(cli: &Cli) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let sessions = live_sessions(&client, None)?;
    if cli.json {
        crate::output::json(&sessions)?;
        return Ok(exit::OK);
    }
    if sessions.is_empty() {
        println!("no sessions (`drover session start NAME --kind python` starts one)");
        return Ok(exit::OK);
    }
    let now = chrono::Utc::now();
    let mut rows = vec![
        [
            "NAME", "KIND", "STATE", "JOB", "NODE", "UP", "MEMORY", "COMMAND",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for job in &sessions {
        rows.push(vec![
            job.name.clone(),
            kind_of(job).map(|k| k.to_string()).unwrap_or_default(),
            job.state.to_string(),
            job.number.to_string(),
            job.node.as_ref().map(|n| n.0.clone()).unwrap_or_default(),
            crate::output::runtime(job, now),
            crate::output::memory(job),
            crate::output::shell_words(&job.argv),
        ]);
    }
    print!("{}", crate::output::table(&rows));
    Ok(exit::OK)
}

fn stop(cli: &Cli, name: &str) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let host = find(&client, name)?;
    stop_jobs(&client, &[host.id])?;
    if !cli.json {
        println!("session {name} stopped (job {})", host.number);
    } else {
        crate::output::json(&Submitted { id: host.id })?;
    }
    Ok(exit::OK)
}

/// Cancels `ids` and waits until each has ended (their trees go by the kill ladder), so that
/// the name is free once this returns.
pub(super) fn stop_jobs(client: &Client, ids: &[JobId]) -> anyhow::Result<()> {
    for id in ids {
        let _: CancelAnswer =
            client.post(&format!("/v1/jobs/{id}/cancel"), &serde_json::json!({}))?;
    }
    for id in ids {
        loop {
            let job: JobRecord = client.get(&format!("/v1/jobs/{id}"))?;
            if job.state.is_terminal() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    Ok(())
}

/// `drover exec`
pub fn exec(cli: &Cli, args: &ExecArgs) -> anyhow::Result<u8> {
    let code = code_of(args)?;
    let client = client(cli)?;
    let host = find(&client, &args.session)?;
    let node = match (&host.state, &host.node) {
        (JobState::Running, Some(node)) => node.clone(),
        _ => {
            return Err(UsageError(format!(
                "the session `{}` is {} (job {}), not running yet: wait for it, or see `drover status {}`",
                args.session, host.state, host.number, host.number
            ))
            .into());
        }
    };
    let mut spec = crate::spec_args::SpecArgs {
        name: Some(format!("{}/exec", args.session)),
        argv: vec![code],
        session: Some(SessionRole::Exec { session: host.id }),
        timeout: args.timeout,
        grace: args.grace,
        priority: Some(host.spec.priority.saturating_add(EXEC_PRIORITY_BOOST)),
        queue: host.spec.queue.clone(),
        ..Default::default()
    };
    spec.require = vec![("node".to_string(), node.0)];
    let answer: Submitted = client.post("/v1/jobs", &spec)?;
    if args.detach {
        return print_id(cli, answer.id);
    }
    stay_with(cli, client, answer.id)
}

/// The code: after `--`, else from `--file` (`-` for stdin), else from stdin when it is not a
/// terminal.
fn code_of(args: &ExecArgs) -> anyhow::Result<String> {
    let from_stdin = || -> anyhow::Result<String> {
        let mut code = String::new();
        std::io::stdin()
            .read_to_string(&mut code)
            .context("cannot read the code from stdin")?;
        Ok(code)
    };
    let code = match (&args.file, args.code.is_empty()) {
        (Some(_), false) => {
            return Err(
                UsageError("give the code after `--` or with --file, not both".into()).into(),
            );
        }
        (Some(path), true) if path.as_os_str() == "-" => from_stdin()?,
        (Some(path), true) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        (None, false) => args.code.join(" "),
        (None, true) if std::io::stdin().is_terminal() => {
            return Err(UsageError(
                "give the code after `--` (`drover exec NAME -- 'print(1)'`), with --file, or on stdin"
                    .into(),
            )
            .into());
        }
        (None, true) => from_stdin()?,
    };
    if code.trim().is_empty() {
        return Err(UsageError("the code is empty".into()).into());
    }
    Ok(code)
}

pub(super) fn print_id(cli: &Cli, id: JobId) -> anyhow::Result<u8> {
    if cli.json {
        crate::output::json(&Submitted { id })?;
    } else {
        println!("{id}");
    }
    Ok(exit::OK)
}

/// A query value with the characters a URL reserves escaped.
fn urlencoding(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `drover session-host` (internal): the session's job.
pub fn session_host(args: &SessionHostCli) -> anyhow::Result<u8> {
    Ok(drover_node::session::run_host(
        args.kind,
        &args.command,
        &args.socket,
    )?)
}

/// `drover session-exec` (internal): one exec's job. Its failures are said on stderr, which
/// is the exec's log, and its exit code tells them apart.
pub fn session_exec(args: &SessionExecCli) -> anyhow::Result<u8> {
    use drover_node::session::{ExecError, exit as code};
    let wait = Duration::from_millis(args.interrupt_wait_ms);
    match drover_node::session::run_exec(&args.socket, &args.code.join(" "), wait) {
        Ok(status) => Ok(status),
        Err(err @ ExecError::NoSession { .. }) => {
            eprintln!("drover: {}", drover_core::error_chain(&err));
            Ok(code::NO_SESSION)
        }
        Err(err @ ExecError::HostGone(_)) => {
            eprintln!("drover: {}", drover_core::error_chain(&err));
            Ok(code::SESSION_ENDED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_escaped_for_the_query() {
        assert_eq!(urlencoding("py 1&x=ü"), "py%201%26x%3D%C3%BC");
        assert_eq!(urlencoding("sage-7.a_b~"), "sage-7.a_b~");
    }
}
