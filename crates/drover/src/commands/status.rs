//! `drover status`: one or more jobs in detail, or a table of recent ones.

use std::io::Write;

use drover_core::JobRecord;

use super::{client, resolve};
use crate::cli::{Cli, StatusArgs};
use crate::exit;
use crate::output;

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
        if let Some(name) = &args.name {
            path.push_str(&format!(
                "&name={}",
                drover_node::auth::percent_encode(name)
            ));
        }
        if let Some(queue) = &args.queue {
            path.push_str(&format!(
                "&queue={}",
                drover_node::auth::percent_encode(queue)
            ));
        }
        if let Some(since) = args.since {
            let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            path.push_str(&format!(
                "&since={}",
                drover_node::auth::percent_encode(&since)
            ));
        }
        let jobs: Vec<JobRecord> = client.get(&path)?;
        if cli.json {
            serde_json::to_writer_pretty(&mut out, &jobs)?;
            writeln!(out)?;
            return Ok(exit::OK);
        }
        write!(out, "{}", output::jobs_table(&jobs, now))?;
        return Ok(exit::OK);
    }
    let ids = resolve(&client, &args.ids)?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        jobs.push(client.get::<JobRecord>(&format!("/v1/jobs/{id}"))?);
    }
    if cli.json {
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
