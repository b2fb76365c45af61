//! `drover logs`: a job's output, read once or followed (`-f`) to the end of its attempt. Both
//! streams by default: read once, stdout and then stderr under a marker line, all on stdout (so
//! that `drover logs 42 | less` shows a traceback too); followed, each to its own stream as it is
//! written, as `drover run` does.

use std::io::{Read, Write};

use drover_core::{JobId, JobRecord};

use super::follow::{copy_counting, follow_output, job_exit_code};
use super::{client, resolve_one};
use crate::cli::{Cli, LogsArgs};
use crate::client::Client;
use crate::exit;

/// `drover logs`
pub fn logs(cli: &Cli, args: &LogsArgs) -> anyhow::Result<u8> {
    let mut client = client(cli)?;
    let streams: &[&str] = match (args.stdout, args.stderr) {
        (true, _) => &["stdout"],
        (_, true) => &["stderr"],
        _ => &["stdout", "stderr"],
    };
    let target = super::refs::targets(&client, std::slice::from_ref(&args.id))?;
    if let Some(super::refs::Target::Group(group, _)) = target.first() {
        if args.follow || cli.json {
            return Err(super::UsageError(
                "a group's logs are printed once, job by job; for one job's, name it".into(),
            )
            .into());
        }
        // Each member's output under a header line, in sweep order (as `tail` prints files).
        let mut out = std::io::stdout().lock();
        let on = crate::output::colour();
        for job in super::refs::members(&client, *group)? {
            if job.attempt == 0 {
                continue;
            }
            let header = format!("==> {} (job {}, {}) <==", job.name, job.number, job.state);
            writeln!(out, "{}", crate::output::paint(&header, Some("1"), on))?;
            print_streams(&mut out, &client, job.id, streams, args.attempt, args.tail)?;
        }
        out.flush()?;
        return Ok(exit::OK);
    }
    let id = resolve_one(&client, &args.id)?;
    if cli.json {
        if args.follow {
            return Err(super::UsageError("--json prints what was written; drop -f".into()).into());
        }
        return print_json(&client, id, args.attempt, args.tail);
    }
    if !args.follow {
        let mut out = std::io::stdout().lock();
        print_streams(&mut out, &client, id, streams, args.attempt, args.tail)?;
        out.flush()?;
        let job: JobRecord = client.get(&format!("/v1/jobs/{id}"))?;
        say_cuts(&job, streams, args.attempt);
        return Ok(exit::OK);
    }
    let threads: Vec<_> = streams
        .iter()
        .map(|stream| {
            let stream = stream.to_string();
            let mut client = self::client(cli)?;
            let attempt = args.attempt;
            Ok(std::thread::spawn(move || -> anyhow::Result<()> {
                if stream == "stdout" {
                    follow_output(&mut client, id, &stream, attempt, &mut std::io::stdout())
                } else {
                    follow_output(&mut client, id, &stream, attempt, &mut std::io::stderr())
                }
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    for thread in threads {
        match thread.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("a log reader failed"),
        }
    }
    // Followed to the end: say how the job ended, as `run` does.
    let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
    say_cuts(&job, streams, args.attempt);
    Ok(job_exit_code(&job))
}

/// Says on stderr, after the output, which of the streams shown did not all reach the log (a
/// full disk, the log limit): the file's own marker line may not have fit on a full disk.
fn say_cuts(job: &JobRecord, streams: &[&str], attempt: Option<u32>) {
    let attempt = attempt.unwrap_or(job.attempt);
    let Some(record) = job.attempts.iter().find(|a| a.attempt == attempt) else {
        return;
    };
    for cut in &record.log_cuts {
        if streams.contains(&cut.stream.name()) {
            eprintln!(
                "drover: job {}'s output was cut: {}",
                job.number,
                crate::output::log_cut(cut)
            );
        }
    }
}

fn read(
    client: &Client,
    id: JobId,
    stream: &str,
    attempt: Option<u32>,
    tail: Option<u64>,
) -> anyhow::Result<Box<dyn Read>> {
    let mut path = format!("/v1/jobs/{id}/logs?stream={stream}");
    if let Some(attempt) = attempt {
        path.push_str(&format!("&attempt={attempt}"));
    }
    if let Some(lines) = tail {
        path.push_str(&format!("&tail={lines}"));
    }
    Ok(Box::new(client.stream(&path)?))
}

/// `logs --json`: the job, its attempt and both streams in one object.
fn print_json(
    client: &Client,
    id: JobId,
    attempt: Option<u32>,
    tail: Option<u64>,
) -> anyhow::Result<u8> {
    let job: JobRecord = client.get(&format!("/v1/jobs/{id}"))?;
    let mut texts = Vec::new();
    for stream in ["stdout", "stderr"] {
        let mut bytes = Vec::new();
        copy_counting(
            &mut read(client, id, stream, attempt, tail)?,
            &mut bytes,
            &mut 0,
        )?;
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    let [stdout, stderr] =
        <[String; 2]>::try_from(texts).map_err(|_| anyhow::anyhow!("two streams were read"))?;
    let value = serde_json::json!({
        "job": job.number,
        "id": job.id,
        "attempt": attempt.unwrap_or(job.attempt),
        "state": job.state,
        "stdout": stdout,
        "stderr": stderr,
        "log_cuts": job
            .attempts
            .iter()
            .find(|a| a.attempt == attempt.unwrap_or(job.attempt))
            .map(|a| a.log_cuts.clone())
            .unwrap_or_default(),
    });
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(exit::OK)
}

/// One job's streams as they were written, stderr under a marker line when both are shown.
fn print_streams(
    out: &mut impl Write,
    client: &Client,
    id: JobId,
    streams: &[&str],
    attempt: Option<u32>,
    tail: Option<u64>,
) -> anyhow::Result<()> {
    let mut ended_with_newline = true;
    for stream in streams {
        let mut body = read(client, id, stream, attempt, tail)?;
        let mut text = Vec::new();
        body.read_to_end(&mut text)?;
        if text.is_empty() {
            continue;
        }
        if streams.len() > 1 && *stream == "stderr" {
            // Marked only when both are shown; a stream of its own is as it was written.
            if !ended_with_newline {
                writeln!(out)?;
            }
            let on = crate::output::colour();
            writeln!(
                out,
                "{}",
                crate::output::paint("--- stderr ---", Some("2"), on)
            )?;
        }
        out.write_all(&text)?;
        ended_with_newline = text.ends_with(b"\n");
    }
    Ok(())
}
