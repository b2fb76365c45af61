//! `drover submit`: one job from flags, or many from JSON Lines (`--batch`), all or nothing.

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
        return submit_batch(cli, file, &caller_cwd()?);
    }
    let id = submit_one(&client(cli)?, &args.spec)?;
    println!("{id}");
    Ok(exit::OK)
}

/// Submits the job `spec` describes, in `--cwd` (made absolute) or the caller's directory.
pub(super) fn submit_one(client: &Client, spec: &SpecArgs) -> anyhow::Result<JobId> {
    let mut spec = spec.clone();
    spec.cwd = Some(match &spec.cwd {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("bad --cwd {}", dir.display()))?
        }
        None => caller_cwd()?,
    });
    let answer: Submitted = client.post("/v1/jobs", &spec)?;
    Ok(answer.id)
}

fn caller_cwd() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory; pass --cwd")
}

/// `drover submit --batch FILE`: JSON Lines in, one id per line out. Blank lines are skipped;
/// a spec without `cwd` runs in the caller's directory, as a single submit does. Each line is
/// read as a partial spec here, so a typo names its line before anything is sent; the node
/// stores the whole batch in one transaction.
fn submit_batch(cli: &Cli, file: &Path, cwd: &Path) -> anyhow::Result<u8> {
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
        spec.cwd.get_or_insert_with(|| cwd.to_path_buf());
        specs.push(spec);
        line_of.push(index + 1);
    }
    if specs.is_empty() {
        return Err(UsageError("the batch holds no job".into()).into());
    }
    let answer: SubmittedBatch = match client(cli)?.post("/v1/jobs", &specs) {
        Ok(answer) => answer,
        Err(ClientError::Api { status, message }) if (400..500).contains(&status) => {
            return Err(UsageError(batch_error_by_line(&message, &line_of)).into());
        }
        Err(err) => return Err(err.into()),
    };
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
