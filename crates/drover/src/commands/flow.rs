//! `drover flow`: a DAG of steps from a TOML file. The file is read here (so a TOML mistake
//! names its line) and checked here as the node will check it (so a bad `after` or a cycle is
//! named before anything is sent); the node checks it again, plans its jobs and stores them in
//! one change.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use drover_api::{GroupDetail, SubmitGroup, SubmittedGroup};
use drover_core::{GroupKind, JobRecord, JobState};

use super::UsageError;
use super::refs::resolve_group;
use super::submit::Origin;
use crate::cli::{Cli, FlowAction, FlowArgs};
use crate::exit;

/// `drover flow …`
pub fn flow(cli: &Cli, args: &FlowArgs) -> anyhow::Result<u8> {
    match &args.action {
        FlowAction::Submit { file, dry_run } => submit(cli, file, *dry_run),
        FlowAction::Status { flow } => status(cli, flow),
        FlowAction::Cancel { flow } => {
            let client = super::client(cli)?;
            let id = resolve_group(&client, flow)?;
            super::group::cancel(cli, &client, id)
        }
        FlowAction::Retry { flow, failed } => {
            let client = super::client(cli)?;
            let id = resolve_group(&client, flow)?;
            super::group::retry(cli, &client, id, *failed)
        }
    }
}

/// Reads a flow file into the JSON document the API takes: TOML as written, the flow named
/// after its file when it names itself nothing, and each step's relative `cwd` made absolute.
fn read_document(file: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let mut document = serde_json::to_value(table).context("the flow as JSON")?;
    if let Some(top) = document.as_object_mut() {
        if !top.contains_key("name") {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "flow".into());
            top.insert("name".into(), stem.into());
        }
        if let Some(steps) = top.get_mut("steps").and_then(|s| s.as_object_mut()) {
            for step in steps.values_mut() {
                if let Some(cwd) = step.get_mut("cwd") {
                    if let Some(dir) = cwd.as_str().filter(|d| !d.starts_with('/')) {
                        let absolute =
                            std::path::absolute(dir).with_context(|| format!("bad cwd {dir}"))?;
                        *cwd = absolute.to_string_lossy().into_owned().into();
                    }
                }
            }
        }
    }
    Ok(document)
}

fn submit(cli: &Cli, file: &Path, dry_run: bool) -> anyhow::Result<u8> {
    let document = read_document(file)?;
    // The shape and the graph, checked before anything is sent.
    let checked = drover_core::flow::parse(document.clone())
        .map_err(|e| UsageError(format!("{}: {e}; nothing was submitted", file.display())))?;
    if dry_run {
        for step in &checked.steps {
            let jobs = step.each.as_ref().map_or(1, drover_core::Sweep::len);
            let after = if step.after.is_empty() {
                String::new()
            } else {
                format!(" after {}", step.after.join(", "))
            };
            println!(
                "{}: {jobs} job{}{after}",
                step.name,
                if jobs == 1 { "" } else { "s" }
            );
        }
        return Ok(exit::OK);
    }
    let client = super::client(cli)?;
    let request = SubmitGroup {
        kind: GroupKind::Flow,
        flow: document,
        common: Some(Origin::here(cli)?.common().to_json()),
    };
    let answer: SubmittedGroup = client
        .post("/v1/groups", &request)
        .map_err(|err| match err {
            crate::client::ClientError::Api { status, message } if (400..500).contains(&status) => {
                anyhow::Error::from(UsageError(format!(
                    "{}: {message}; nothing was submitted",
                    file.display()
                )))
            }
            other => other.into(),
        })?;
    super::group::print_submitted(cli, &answer, "flow")
}

/// `drover flow status`: the steps as a tree (each under the step it runs after; a step after
/// several is drawn under the first and names the others), with each step's states.
fn status(cli: &Cli, reference: &str) -> anyhow::Result<u8> {
    let client = super::client(cli)?;
    let id = resolve_group(&client, reference)?;
    let detail: GroupDetail = client.get(&format!("/v1/groups/{id}"))?;
    if cli.json {
        crate::output::json(&detail)?;
        return Ok(exit::OK);
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{}", tree(&detail))?;
    Ok(exit::OK)
}

/// The tree `flow status` prints.
pub(super) fn tree(detail: &GroupDetail) -> String {
    let group = &detail.group;
    let mut by_step: HashMap<&str, Vec<&JobRecord>> = HashMap::new();
    for job in &detail.jobs {
        let step = job
            .group
            .as_ref()
            .and_then(|m| m.step.as_deref())
            .unwrap_or(group.name.as_str());
        by_step.entry(step).or_default().push(job);
    }
    let mut text = format!("{}\n", super::group::group_line(group));
    fn walk(
        text: &mut String,
        step: &drover_core::GroupStep,
        depth: usize,
        by_step: &HashMap<&str, Vec<&JobRecord>>,
        steps: &[drover_core::GroupStep],
    ) {
        let jobs = by_step.get(step.name.as_str()).cloned().unwrap_or_default();
        let indent = if depth == 0 {
            String::new()
        } else {
            format!("{}└─ ", "   ".repeat(depth - 1))
        };
        let states = step_states(&jobs);
        let also = if step.after.len() > 1 {
            format!("  (also after {})", step.after[1..].join(", "))
        } else {
            String::new()
        };
        let which = match jobs.as_slice() {
            [one] => format!("  job {}", one.number),
            many if !many.is_empty() => format!(
                "  jobs {}–{}",
                many.iter().map(|j| j.number).min().unwrap_or(0),
                many.iter().map(|j| j.number).max().unwrap_or(0)
            ),
            _ => String::new(),
        };
        text.push_str(&format!("{indent}{}  {states}{which}{also}\n", step.name));
        for child in children(steps, Some(step.name.as_str())) {
            walk(text, child, depth + 1, by_step, steps);
        }
    }
    for root in children(&group.steps, None) {
        walk(&mut text, root, 0, &by_step, &group.steps);
    }
    text
}

/// The steps drawn under `parent` (the first step each runs after); `None`: the roots.
fn children<'a>(
    steps: &'a [drover_core::GroupStep],
    parent: Option<&str>,
) -> Vec<&'a drover_core::GroupStep> {
    steps
        .iter()
        .filter(|s| s.after.first().map(String::as_str) == parent)
        .collect()
}

/// A step's jobs by state, `3 succeeded, 2 running`; a single job's state (and reason).
fn step_states(jobs: &[&JobRecord]) -> String {
    if let [one] = jobs {
        return match (&one.reason, one.state.is_terminal()) {
            (Some(reason), true) if one.state != JobState::Succeeded => {
                format!("{} ({reason})", one.state)
            }
            _ => one.state.to_string(),
        };
    }
    JobState::ALL
        .iter()
        .filter_map(|s| {
            let n = jobs.iter().filter(|j| j.state == *s).count();
            (n > 0).then(|| format!("{n} {s}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
