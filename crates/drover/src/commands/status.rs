//! `drover status`: one or more jobs in detail (a group as one line of counts, a flow as its
//! tree), or a table of recent jobs.

use std::io::Write;

use drover_core::JobRecord;

use super::client;
use super::refs::Target;
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
        let mut path = String::from("/v1/jobs?");
        if !states.is_empty() {
            path.push_str(&format!("state={}&", states.join(",")));
        }
        if let Some(name) = &args.name {
            path.push_str(&format!(
                "name={}&",
                drover_node::auth::percent_encode(name)
            ));
        }
        if let Some(queue) = &args.queue {
            path.push_str(&format!(
                "queue={}&",
                drover_node::auth::percent_encode(queue)
            ));
        }
        if let Some(since) = args.since {
            let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            path.push_str(&format!(
                "since={}&",
                drover_node::auth::percent_encode(&since)
            ));
        }
        // Page by page: a node answers at most MAX_PAGE jobs at a time.
        let mut jobs: Vec<JobRecord> = Vec::new();
        while jobs.len() < args.limit {
            let want = (args.limit - jobs.len()).min(drover_api::MAX_PAGE);
            let mut page_path = format!("{path}limit={want}");
            if let Some(last) = jobs.last() {
                page_path.push_str(&format!("&before={}", last.id));
            }
            let page: Vec<JobRecord> = client.get(&page_path)?;
            let done = page.len() < want;
            jobs.extend(page);
            if done {
                break;
            }
        }
        if cli.json {
            serde_json::to_writer_pretty(&mut out, &jobs)?;
            writeln!(out)?;
            return Ok(exit::OK);
        }
        write!(out, "{}", output::jobs_table(&jobs, now))?;
        return Ok(exit::OK);
    }
    let targets = super::refs::targets(&client, &args.ids)?;
    let mut shown: Vec<serde_json::Value> = Vec::with_capacity(targets.len());
    let mut text = String::new();
    for (i, target) in targets.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match *target {
            Target::Job(id) => {
                let job = client.get::<JobRecord>(&format!("/v1/jobs/{id}"))?;
                text.push_str(&output::detail(&job, now));
                shown.push(serde_json::to_value(&job)?);
            }
            Target::Group(id, _) => {
                let detail: drover_api::GroupDetail = client.get(&format!("/v1/groups/{id}"))?;
                if detail.group.kind == drover_core::GroupKind::Flow {
                    text.push_str(&super::flow::tree(&detail));
                } else {
                    text.push_str(&format!("{}\n", super::group::group_line(&detail.group)));
                }
                shown.push(serde_json::to_value(&detail.group)?);
            }
        }
    }
    if cli.json {
        match shown.as_slice() {
            [one] => serde_json::to_writer_pretty(&mut out, one)?,
            many => serde_json::to_writer_pretty(&mut out, many)?,
        }
        writeln!(out)?;
    } else {
        write!(out, "{text}")?;
    }
    Ok(exit::OK)
}
