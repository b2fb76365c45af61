//! `drover watch`: every state change as the node pushes it, one line each (or JSON Lines).

use std::collections::HashMap;
use std::io::Write;

use drover_core::{JobId, JobRecord};

use super::{client, resolve_one};
use crate::cli::{Cli, WatchArgs};
use crate::exit;
use crate::output;

/// `drover watch`: one line per state change, as the node pushes them; ends when the node
/// stops or drops the stream.
pub fn watch(cli: &Cli, args: &WatchArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let mut query = Vec::new();
    if let Some(queue) = &args.queue {
        query.push(format!("queue={queue}"));
    }
    if let Some(job) = &args.job {
        query.push(format!("job={}", resolve_one(&client, job)?));
    }
    if let Some(since) = args.since {
        query.push(format!("since={since}"));
    }
    let path = format!("/v1/events?{}", query.join("&"));
    let events = client.events(&path)?;
    let mut out = std::io::stdout().lock();
    if !cli.json {
        writeln!(out, "{}", output::EVENT_HEADER)?;
    }
    // Each job's number and name, read once, the first time one of its events comes.
    let mut names: HashMap<JobId, Option<(u64, String)>> = HashMap::new();
    for event in events {
        if cli.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            let known = names.entry(event.job_id).or_insert_with(|| {
                let job = client.get::<JobRecord>(&format!("/v1/jobs/{}", event.job_id));
                job.ok().map(|job| (job.number, job.name))
            });
            let job = known.as_ref().map(|(n, name)| (*n, name.as_str()));
            writeln!(out, "{}", output::event_line(&event, job))?;
        }
        out.flush()?;
    }
    Ok(exit::OK)
}
