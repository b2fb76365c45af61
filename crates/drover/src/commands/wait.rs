//! `drover wait`: until the jobs named (or, with `--all`, every job) have ended.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use drover_api::Idle;
use drover_core::{JobId, JobRecord};

use super::client;
use crate::cli::{Cli, WaitArgs};
use crate::exit;

/// `drover wait`: follows the node's event stream and checks each job once, so an ending is seen
/// the moment it commits; if the stream ends (the node stops or drops it), it long-polls the
/// jobs' `wait` endpoints instead. `--all` long-polls `/v1/wait`, which the node answers once
/// no job is left that has not ended (scheduled and blocked ones count). Every request waits out a restart of the node.
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
    if args.jobs.all {
        loop {
            let Some(slice) = slice() else {
                if !args.quiet {
                    eprintln!("drover: timed out waiting for the queue to drain");
                }
                return Ok(exit::TIMEOUT);
            };
            let path = format!("/v1/wait?timeout={}ms", slice.as_millis().max(1));
            let answer: Idle = client.patiently(|c| c.get(&path))?;
            if answer.idle {
                if cli.json {
                    crate::output::json(&answer)?;
                } else if !args.quiet {
                    println!("every job has ended");
                }
                return Ok(exit::OK);
            }
        }
    }
    // A group stands for its members; its ending is told as one line.
    let mut ids = Vec::new();
    let mut groups = Vec::new();
    for target in super::refs::targets(&client, &args.jobs.ids)? {
        match target {
            super::refs::Target::Job(id) => ids.push(id),
            super::refs::Target::Group(id, _) => {
                let members = super::refs::members(&client, id)?;
                groups.push((id, members.iter().map(|j| j.id).collect::<HashSet<JobId>>()));
                ids.extend(members.into_iter().map(|j| j.id));
            }
        }
    }
    // Subscribe first, then look: an ending between the two is seen by one or the other.
    let events = client.patiently(|c| c.events("/v1/events"))?;
    let mut pending: HashSet<JobId> = ids.iter().copied().collect();
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
    if cli.json {
        let jobs: Vec<&JobRecord> = ids.iter().filter_map(|id| ended.get(id)).collect();
        crate::output::json(&jobs)?;
    }
    let in_group: HashSet<JobId> = groups.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    for id in &ids {
        let Some(job) = ended.get(id) else { continue };
        all_succeeded &= job.state == drover_core::JobState::Succeeded;
        if !args.quiet && !cli.json && !in_group.contains(id) {
            let reason = job
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            println!("{id} {}{reason}", job.state);
        }
    }
    if !args.quiet && !cli.json {
        for (id, _) in &groups {
            let detail: drover_api::GroupDetail =
                client.patiently(|c| c.get(&format!("/v1/groups/{id}")))?;
            println!("{}", super::group::group_line(&detail.group));
        }
    }
    Ok(if all_succeeded {
        exit::OK
    } else {
        exit::JOB_FAILED
    })
}
