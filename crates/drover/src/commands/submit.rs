//! `drover submit`: one job from flags, or many from JSON Lines (`--batch`), all or nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use drover_api::{Submitted, SubmittedBatch};
use drover_core::JobId;

use super::{UsageError, client};
use crate::cli::{Cli, SpecArgs, SubmitArgs};
use crate::client::{Client, ClientError};
use crate::exit;

/// `drover submit`
pub fn submit(cli: &Cli, args: &SubmitArgs) -> anyhow::Result<u8> {
    if let Some(file) = &args.batch {
        // Each line is a whole spec: a flag beside --batch would be silently ignored.
        let given: Vec<String> = args
            .spec
            .to_json()
            .keys()
            .map(|field| match field.as_str() {
                "argv" => "a program after --".to_string(),
                other => format!("--{}", other.replace('_', "-")),
            })
            .collect();
        if !given.is_empty() {
            return Err(UsageError(format!(
                "--batch takes every setting from its lines; drop {}",
                given.join(", ")
            ))
            .into());
        }
        return submit_batch(cli, file, &Origin::here(cli)?);
    }
    if !args.each.is_empty() || args.each_line.is_some() {
        return super::group::submit_sweep(cli, args);
    }
    require_program(&args.spec)?;
    if let Some(pool) = &args.pool {
        return super::pool::submit_pooled(cli, pool, &args.spec);
    }
    let id = submit_one(&client(cli)?, &args.spec, &Origin::here(cli)?)?;
    if cli.json {
        crate::output::json(&Submitted { id })?;
    } else {
        println!("{id}");
    }
    Ok(exit::OK)
}

/// A job needs a program: `drover submit -- PROGRAM ARGS...`.
pub(super) fn require_program(spec: &SpecArgs) -> Result<(), UsageError> {
    if spec.argv.is_empty() {
        return Err(UsageError(
            "no program: give it after `--`, as in `drover submit -- python3 sim.py`".into(),
        ));
    }
    Ok(())
}

/// Submits the job `spec` describes from `origin`.
pub(super) fn submit_one(
    client: &Client,
    spec: &SpecArgs,
    origin: &Origin,
) -> anyhow::Result<JobId> {
    let mut spec = spec.clone();
    origin.fill(&mut spec)?;
    resolve_after(client, &mut spec)?;
    let answer: Submitted = client.post("/v1/jobs", &spec)?;
    Ok(answer.id)
}

/// Turns the jobs `--after` names (numbers, names, prefixes) into their ids.
fn resolve_after(client: &Client, spec: &mut SpecArgs) -> anyhow::Result<()> {
    if !spec.after.is_empty() {
        let ids = super::resolve(client, &spec.after)?;
        spec.after = ids.iter().map(ToString::to_string).collect();
    }
    Ok(())
}

/// Where a job submitted from here runs, and with what, unless its spec says otherwise: this
/// process's working directory and its whole environment, as a Slurm or pueue job gets them.
pub(super) struct Origin {
    cwd: PathBuf,
    /// The environment to give jobs, or `None` when drover.toml says `[submit] env_clear`.
    env: Option<BTreeMap<String, String>>,
}

impl Origin {
    /// This process's directory and environment, less the variables that are drover's own
    /// secrets (a token, a database URL): those never go into a stored spec.
    pub(super) fn here(cli: &Cli) -> anyhow::Result<Self> {
        let cwd =
            std::env::current_dir().context("cannot read the current directory; pass --cwd")?;
        let clear = super::settings(cli)?.is_some_and(|file| file.submit.env_clear);
        let env = (!clear).then(|| {
            std::env::vars_os()
                .filter_map(|(key, value)| {
                    Some((key.into_string().ok()?, value.into_string().ok()?))
                })
                .filter(|(key, _)| !drover_node::NODE_SECRETS.contains(&key.as_str()))
                .collect()
        });
        Ok(Self { cwd, env })
    }

    /// Completes `spec` as submitted from here: its `cwd` made absolute (this directory when it
    /// names none), and its environment made whole — this one with the spec's variables on top,
    /// or the spec's alone with `env_clear` — so the node adds none of its own.
    fn fill(&self, spec: &mut SpecArgs) -> anyhow::Result<()> {
        absolute_cwd(spec)?;
        spec.cwd.get_or_insert_with(|| self.cwd.clone());
        if let (false, Some(captured)) = (spec.env_clear, &self.env) {
            let mut env = captured.clone();
            env.extend(std::mem::take(&mut spec.env));
            spec.env = env.into_iter().collect();
        }
        spec.env_clear = true;
        Ok(())
    }

    /// What every job of a batch from here shares, sent once (`common`): this directory, and
    /// this environment unless turned off. A line that gives `env_clear` itself takes none of
    /// this environment (the node's rule for `common`).
    pub(super) fn common(&self) -> SpecArgs {
        SpecArgs {
            cwd: Some(self.cwd.clone()),
            env: self.env.clone().unwrap_or_default().into_iter().collect(),
            env_clear: true,
            ..SpecArgs::default()
        }
    }
}

/// Makes the spec's `cwd`, if it names one, absolute against this process's directory.
pub(super) fn absolute_cwd(spec: &mut SpecArgs) -> anyhow::Result<()> {
    if let Some(dir) = &spec.cwd {
        spec.cwd =
            Some(std::path::absolute(dir).with_context(|| format!("bad cwd {}", dir.display()))?);
    }
    Ok(())
}

/// `drover submit --batch FILE`: JSON Lines in, one id per line out. Blank lines are skipped;
/// each line runs in the caller's directory and environment unless it says otherwise, as a
/// single submit does. Each line is
/// read as a partial spec here, so a typo names its line before anything is sent; the node
/// stores the whole batch in one transaction.
fn submit_batch(cli: &Cli, file: &Path, origin: &Origin) -> anyhow::Result<u8> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the batch from stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut specs = Vec::new();
    let mut line_of = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut spec = parse_line(line).map_err(|message| {
            UsageError(format!(
                "line {}: {message}; nothing was submitted",
                index + 1
            ))
        })?;
        absolute_cwd(&mut spec)?;
        specs.push(spec);
        line_of.push(index + 1);
    }
    if specs.is_empty() {
        return Err(UsageError("the batch holds no job".into()).into());
    }
    let client = client(cli)?;
    for spec in &mut specs {
        resolve_after(&client, spec)?;
    }
    let body = serde_json::json!({ "common": origin.common(), "jobs": specs });
    let answer: SubmittedBatch = match client.post("/v1/jobs", &body) {
        Ok(answer) => answer,
        Err(ClientError::Api { status, message }) if (400..500).contains(&status) => {
            return Err(UsageError(batch_error_by_line(&message, &line_of)).into());
        }
        Err(err) => return Err(err.into()),
    };
    if cli.json {
        crate::output::json(&answer)?;
        return Ok(exit::OK);
    }
    let mut out = std::io::stdout().lock();
    for id in answer.ids {
        writeln!(out, "{id}")?;
    }
    Ok(exit::OK)
}

/// One batch line as a partial spec; the error names the field at fault where there is one.
fn parse_line(line: &str) -> Result<SpecArgs, String> {
    let mut de = serde_json::Deserializer::from_str(line);
    let spec: SpecArgs = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        // serde_json says where in the line; the line number is what people need.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(head, _)| head)
            .to_string();
        match path.as_str() {
            // serde names an unknown field itself.
            _ if message.starts_with("unknown field") => message,
            "" | "." | "?" => message,
            field => format!("{field}: {message}"),
        }
    })?;
    de.end()
        .map_err(|_| "trailing characters after the JSON object".to_string())?;
    Ok(spec)
}

/// Rewrites the node's `[i].field: message` into `line N: field: message`.
fn batch_error_by_line(message: &str, line_of: &[usize]) -> String {
    let parsed = message.strip_prefix('[').and_then(|rest| {
        let (index, tail) = rest.split_once(']')?;
        let line = line_of.get(index.parse::<usize>().ok()?)?;
        Some(format!(
            "line {line}: {}; nothing was submitted",
            tail.trim_start_matches('.')
        ))
    });
    parsed.unwrap_or_else(|| format!("{message}; nothing was submitted"))
}
