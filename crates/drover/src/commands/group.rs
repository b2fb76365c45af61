//! Groups from the command line: `drover submit --each …` (a sweep), and what `status`,
//! `cancel`, `retry` and `logs` do when given a group instead of a job. A sweep is sent as a
//! flow of one step (`POST /v1/groups`, kind `sweep`), which the node plans into its jobs.

use std::io::{BufRead, Read};

use anyhow::Context;
use drover_api::{CancelAllAnswer, Changes, GroupRetry, SubmitGroup, SubmittedGroup};
use drover_core::{GroupId, GroupKind, GroupRecord, JobState, Sweep};

use super::UsageError;
use super::submit::{Origin, absolute_cwd, require_program};
use crate::cli::{Cli, SubmitArgs};
use crate::client::Client;
use crate::exit;

/// `drover submit --each … -- PROGRAM {}`: prints the group's id (with `--json`, its number,
/// name and member ids too).
pub(super) fn submit_sweep(cli: &Cli, args: &SubmitArgs) -> anyhow::Result<u8> {
    require_program(&args.spec)?;
    let sweep = sweep_of(args)?;
    let client = super::client(cli)?;
    let origin = Origin::here(cli)?;
    let mut spec = args.spec.clone();
    if let Some(pool) = &args.pool {
        super::pool::into_pool(&client, pool, &mut spec)?;
    }
    absolute_cwd(&mut spec)?;
    if !spec.after.is_empty() {
        let ids = super::resolve(&client, &spec.after)?;
        spec.after = ids.iter().map(ToString::to_string).collect();
    }
    // The group is named as a job would be; its members are NAME[VALUES].
    let name = spec.name.take().unwrap_or_else(|| {
        let program = spec.argv.first().map(String::as_str).unwrap_or("sweep");
        program.rsplit('/').next().unwrap_or(program).to_string()
    });
    // A sweep's `--notify` is said once, when all of it has ended.
    let notify = spec.notify.take();
    let mut step = spec.to_json();
    step.insert("each".into(), each_json(&sweep));
    let mut flow = serde_json::Map::new();
    flow.insert("name".into(), name.into());
    if let Some(notify) = notify {
        flow.insert("notify".into(), notify.into());
    }
    flow.insert(
        "steps".into(),
        serde_json::Value::Object([("sweep".to_string(), step.into())].into_iter().collect()),
    );
    let request = SubmitGroup {
        kind: GroupKind::Sweep,
        flow: flow.into(),
        common: Some(origin.common().to_json()),
    };
    let answer: SubmittedGroup = client.post("/v1/groups", &request)?;
    print_submitted(cli, &answer, "sweep")
}

/// Prints what a group submit stored: the id alone on stdout (for `G=$(drover submit …)`), a
/// line for people on stderr when it is a terminal.
pub(super) fn print_submitted(
    cli: &Cli,
    answer: &SubmittedGroup,
    kind: &str,
) -> anyhow::Result<u8> {
    if cli.json {
        crate::output::json(answer)?;
        return Ok(exit::OK);
    }
    println!("{}", answer.id);
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let n = answer.jobs.len();
        eprintln!(
            "drover: {kind} {} ({}): {n} job{}; `drover wait {}`, `drover results {}`",
            answer.number,
            answer.name,
            if n == 1 { "" } else { "s" },
            answer.number,
            answer.number
        );
    }
    Ok(exit::OK)
}

/// The sweep `--each` and `--each-line` describe.
fn sweep_of(args: &SubmitArgs) -> anyhow::Result<Sweep> {
    let mut axes = Vec::new();
    for each in &args.each {
        axes.push(
            Sweep::axis_from_arg(each).map_err(|e| UsageError(format!("--each {each}: {e}")))?,
        );
    }
    if let Some(file) = &args.each_line {
        axes.push(drover_core::group::Axis {
            name: String::new(),
            values: lines_of(file)?,
        });
    }
    let sweep = Sweep { axes };
    sweep
        .check()
        .map_err(|e| UsageError(format!("--each: {e}")))?;
    Ok(sweep)
}

/// The non-empty lines of FILE (`-`: stdin), without their line ends.
fn lines_of(file: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading values from stdin")?;
    } else {
        let reader = std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?,
        );
        for line in reader.lines() {
            text.push_str(&line.with_context(|| format!("reading {}", file.display()))?);
            text.push('\n');
        }
    }
    Ok(text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// `each` as a flow document writes it: a list for one unnamed axis, else a table of named
/// axes in the order given (each a list: values were read here, not re-parsed there).
fn each_json(sweep: &Sweep) -> serde_json::Value {
    match sweep.axes.as_slice() {
        [only] if only.name.is_empty() => only.values.clone().into(),
        axes => serde_json::Value::Object(
            axes.iter()
                .map(|a| (a.name.clone(), a.values.clone().into()))
                .collect(),
        ),
    }
}

/// One line for a group: its number, kind, name, state, and counts by state.
pub(super) fn group_line(group: &GroupRecord) -> String {
    let counts: Vec<String> = JobState::ALL
        .iter()
        .filter_map(|s| group.counts.get(s).map(|n| format!("{n} {s}")))
        .collect();
    let on = crate::output::colour();
    format!(
        "{} {} {}: {} ({} job{}: {})",
        group.kind.as_str(),
        group.number,
        group.name,
        crate::output::paint(group.state.as_str(), state_colour(group.state), on),
        group.jobs,
        if group.jobs == 1 { "" } else { "s" },
        counts.join(", ")
    )
}

fn state_colour(state: JobState) -> Option<&'static str> {
    match state {
        JobState::Succeeded => Some("32"),
        JobState::Failed | JobState::TimedOut | JobState::Lost => Some("31"),
        JobState::Running | JobState::Starting => Some("33"),
        _ => None,
    }
}

/// `drover cancel GROUP`: every member that has not ended.
pub(super) fn cancel(cli: &Cli, client: &Client, id: GroupId) -> anyhow::Result<u8> {
    let answer: CancelAllAnswer =
        client.post(&format!("/v1/groups/{id}/cancel"), &serde_json::json!({}))?;
    if cli.json {
        crate::output::json(&answer)?;
    } else {
        let n = answer.results.len();
        println!("{id}: {n} job{} cancelled", if n == 1 { "" } else { "s" });
    }
    Ok(exit::OK)
}

/// `drover retry GROUP [--failed]`: its unsuccessful members, upstream ones first.
pub(super) fn retry(cli: &Cli, client: &Client, id: GroupId, failed: bool) -> anyhow::Result<u8> {
    let answer: Changes = client.post(&format!("/v1/groups/{id}/retry"), &GroupRetry { failed })?;
    if answer.results.is_empty() && !cli.json {
        eprintln!("drover: {id}: nothing to run again");
        return Ok(exit::OK);
    }
    super::report_changes(cli, &answer, "queued again")
}
