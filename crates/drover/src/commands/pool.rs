//! `drover pool create|ls|rm`, `submit --pool`, and the internal `pool-run`: warm pools as the
//! jobs they are made of (see `drover_exec::session::pool_run`). A pool's parents are jobs
//! named after the pool and pinned to the node `pool create` talked to; a pooled job is pinned
//! there too, since it is forked by a parent on that machine.

use std::process::ExitCode;

use drover_api::NodeReport;
use drover_core::{HumanDuration, JobRecord, JobState, SessionKind, SessionRole};

use super::session::{live_with_role, print_id, stop_jobs, wait_started};
use super::submit::{Origin, submit_one};
use super::{UsageError, client};
use crate::cli::{Cli, PoolAction, PoolArgs, PoolCreateArgs, PoolRunCli, SpecArgs};
use crate::client::Client;
use crate::exit;

/// A parent's timeout unless `pool create` gives one: a pool is meant to stay.
const PARENT_TIMEOUT: HumanDuration = HumanDuration::from_secs(30 * 24 * 3600);

/// drover's checkpoint exit code, which a recycled parent exits with: its job is requeued at
/// once, without using a retry, as a fresh parent.
const RECYCLE_EXIT: i32 = drover_core::spec::DEFAULT_CHECKPOINT_EXIT_CODE;

/// No pool of that name (exit code 4, as for a job the node does not have).
#[derive(Debug, thiserror::Error)]
#[error("no pool named `{0}` (`drover pool ls` lists them)")]
pub struct NoSuchPool(String);

/// `drover pool ...`
pub fn pool(cli: &Cli, args: &PoolArgs) -> anyhow::Result<u8> {
    match &args.action {
        PoolAction::Create(create_args) => create(cli, create_args),
        PoolAction::Ls => ls(cli),
        PoolAction::Rm { name } => rm(cli, name),
    }
}

fn is_parent_of(pool: Option<&str>) -> impl Fn(&SessionRole) -> bool + '_ {
    move |role| matches!(role, SessionRole::PoolParent { pool: p, .. } if pool.is_none_or(|want| want == p))
}

/// The parents of `pool` that have not ended and are not being stopped, newest first.
fn parents(client: &Client, pool: &str) -> anyhow::Result<Vec<JobRecord>> {
    let mut parents = live_with_role(client, Some(pool), is_parent_of(Some(pool)))?;
    parents.retain(|p| !p.cancel_requested);
    Ok(parents)
}

fn create(cli: &Cli, args: &PoolCreateArgs) -> anyhow::Result<u8> {
    if !drover_core::valid_queue_name(&args.pool) {
        return Err(UsageError(format!(
            "`{}` is not a pool name: letters, digits, `-`, `_` and `.`",
            args.pool
        ))
        .into());
    }
    if args.kind == SessionKind::Gp {
        return Err(UsageError(
            "a pool forks a Python interpreter (python or sage); for gp, `drover session start --kind gp`"
                .into(),
        )
        .into());
    }
    if args.size == 0 {
        return Err(UsageError("--size must be at least 1".into()).into());
    }
    if args.spec.name.is_some() {
        return Err(UsageError(
            "a pool's parents are named by the pool's NAME; leave out --name".into(),
        )
        .into());
    }
    let client = client(cli)?;
    if let Some(parent) = parents(&client, &args.pool)?.first() {
        return Err(UsageError(format!(
            "a pool named `{}` already exists (job {}, {}); `drover pool rm {}` removes it",
            args.pool, parent.number, parent.state, args.pool
        ))
        .into());
    }
    let node: NodeReport = client.get("/v1/node")?;
    let mut spec: SpecArgs = args.spec.clone();
    spec.name = Some(args.pool.clone());
    spec.timeout = spec.timeout.or(Some(PARENT_TIMEOUT));
    spec.checkpoint_exit_code = Some(RECYCLE_EXIT);
    spec.require.retain(|(key, _)| key != "node");
    spec.require.push(("node".into(), node.node.0.clone()));
    spec.session = Some(SessionRole::PoolParent {
        pool: args.pool.clone(),
        kind: args.kind,
        preload: args
            .preload
            .iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect(),
        max_jobs: args.max_jobs,
        max_memory: args.max_memory,
    });
    if spec.argv.is_empty() {
        spec.argv = args.kind.default_argv();
    }
    let origin = Origin::here(cli)?;
    let mut ids = Vec::new();
    for _ in 0..args.size {
        ids.push(submit_one(&client, &spec, &origin)?);
    }
    for id in &ids {
        wait_started(
            &client,
            *id,
            &format!("a parent of the pool `{}`", args.pool),
            drover_node::session::POOL_READY_LINE,
            " (a --preload module that does not import?)",
        )?;
    }
    if cli.json {
        crate::output::json(&ids)?;
    } else {
        println!(
            "pool {} runs ({}, {} parent{} on node {}); `drover submit --pool {} -- script.py ARGS` runs a job in it",
            args.pool,
            args.kind,
            args.size,
            if args.size == 1 { "" } else { "s" },
            node.node.0,
            args.pool
        );
    }
    Ok(exit::OK)
}

fn ls(cli: &Cli) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let parents = live_with_role(&client, None, is_parent_of(None))?;
    if cli.json {
        crate::output::json(&parents)?;
        return Ok(exit::OK);
    }
    if parents.is_empty() {
        println!("no pools (`drover pool create NAME --kind python --preload MODULES` starts one)");
        return Ok(exit::OK);
    }
    // One line per pool, its parents counted by state.
    let mut pools: std::collections::BTreeMap<String, (String, String, Vec<&JobRecord>)> =
        Default::default();
    for job in &parents {
        if let Some(SessionRole::PoolParent {
            pool,
            kind,
            preload,
            ..
        }) = &job.spec.session
        {
            let entry = pools
                .entry(pool.clone())
                .or_insert_with(|| (kind.to_string(), preload.join(","), Vec::new()));
            entry.2.push(job);
        }
    }
    let mut rows = vec![
        ["NAME", "KIND", "PARENTS", "JOBS", "NODE", "PRELOAD"]
            .map(String::from)
            .to_vec(),
    ];
    for (name, (kind, preload, jobs)) in &pools {
        let running = jobs.iter().filter(|j| j.state == JobState::Running).count();
        let numbers: Vec<String> = jobs.iter().map(|j| j.number.to_string()).collect();
        rows.push(vec![
            name.clone(),
            kind.clone(),
            format!("{running}/{} running", jobs.len()),
            numbers.join(","),
            jobs.iter()
                .find_map(|j| j.node.as_ref().map(|n| n.0.clone()))
                .unwrap_or_default(),
            preload.clone(),
        ]);
    }
    print!("{}", crate::output::table(&rows));
    Ok(exit::OK)
}

fn rm(cli: &Cli, name: &str) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let parents = parents(&client, name)?;
    if parents.is_empty() {
        return Err(NoSuchPool(name.to_string()).into());
    }
    let ids: Vec<_> = parents.iter().map(|p| p.id).collect();
    stop_jobs(&client, &ids)?;
    if cli.json {
        crate::output::json(&ids)?;
    } else {
        println!(
            "pool {name} removed ({} parent{} stopped)",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" }
        );
    }
    Ok(exit::OK)
}

/// `submit --pool NAME` / `run --pool NAME`: makes `spec` a job of the pool, pinned to the
/// pool's node.
pub(super) fn into_pool(client: &Client, pool: &str, spec: &mut SpecArgs) -> anyhow::Result<()> {
    let parents = parents(client, pool)?;
    let Some(node) = parents
        .iter()
        .find_map(|p| p.spec.require.get("node").cloned())
    else {
        return Err(NoSuchPool(pool.to_string()).into());
    };
    spec.require.retain(|(key, _)| key != "node");
    spec.require.push(("node".into(), node));
    spec.session = Some(SessionRole::Pooled {
        pool: pool.to_string(),
    });
    if spec.name.is_none() {
        spec.name = Some(pooled_name(&spec.argv));
    }
    Ok(())
}

/// A pooled job's default name: its script's file name, or the module of `-m`, or `-c`.
fn pooled_name(argv: &[String]) -> String {
    match argv.first().map(String::as_str) {
        Some("-m") => argv.get(1).cloned().unwrap_or_else(|| "-m".into()),
        Some("-c") | None => "-c".into(),
        Some(script) => script.rsplit('/').next().unwrap_or(script).to_string(),
    }
}

/// A pooled job for `drover submit`/`run` that gave `--pool`: submitted, its id printed.
pub(super) fn submit_pooled(cli: &Cli, pool: &str, spec: &SpecArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let mut spec = spec.clone();
    into_pool(&client, pool, &mut spec)?;
    let id = submit_one(&client, &spec, &Origin::here(cli)?)?;
    print_id(cli, id)
}

/// `drover pool-run` (internal): one pooled job. Ends as the forked child ended.
pub fn pool_run(args: &PoolRunCli) -> ExitCode {
    use drover_node::session::pool_run::exit as code;
    use drover_node::session::{PoolRunError, run_pooled};
    match run_pooled(&args.pool, &args.dir, &args.argv) {
        Ok(end) => ExitCode::from(end.reproduce()),
        Err(err) => {
            eprintln!("drover: {}", drover_core::error_chain(&err));
            ExitCode::from(match err {
                PoolRunError::NoPool { .. } | PoolRunError::NoAnswer { .. } => code::NO_POOL,
                PoolRunError::Refused(_) => code::NOT_STARTED,
                _ => exit::NODE,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_job_is_named_after_what_it_runs() {
        let argv = |words: &[&str]| words.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(pooled_name(&argv(&["work/sim.py", "3"])), "sim.py");
        assert_eq!(pooled_name(&argv(&["-m", "pkg.main"])), "pkg.main");
        assert_eq!(pooled_name(&argv(&["-c", "print(1)"])), "-c");
    }
}
