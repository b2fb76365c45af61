//! `drover watch`: every state change as the node pushes it, one line each (or JSON Lines).

use std::io::Write;

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
    for event in events {
        if cli.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            writeln!(out, "{}", output::event_line(&event))?;
        }
        out.flush()?;
    }
    Ok(exit::OK)
}
