//! `drover edit`: change a waiting job's settings; and the patch `retry` sends with new ones.

use drover_api::ChangeResult;

use super::submit::absolute_cwd;
use super::{UsageError, client, resolve_one};
use crate::cli::{Cli, EditArgs, SpecArgs};
use crate::exit;

/// `drover edit JOB [FLAGS] [-- ARGV...]`
pub fn edit(cli: &Cli, args: &EditArgs) -> anyhow::Result<u8> {
    let Some(patch) = patch(&args.spec)? else {
        return Err(
            UsageError("nothing to change: give a flag of `submit`, or `-- ARGV`".into()).into(),
        );
    };
    let client = client(cli)?;
    let id = resolve_one(&client, &args.id)?;
    let answer: ChangeResult = client.post(&format!("/v1/jobs/{id}/edit"), &patch)?;
    if cli.json {
        crate::output::json(&answer)?;
    }
    match answer.change {
        drover_api::Change::Done { .. } => {
            if !cli.json {
                println!("{id}: changed");
            }
            Ok(exit::OK)
        }
        drover_api::Change::NotApplicable { state } => {
            eprintln!("drover: {id}: only a job that waits can be edited, and it is {state}");
            Ok(exit::NODE)
        }
        drover_api::Change::NotFound => {
            eprintln!("drover: {id}: no such job");
            Ok(exit::NODE)
        }
    }
}

/// The fields `spec` gives, as the patch the node lays over a stored spec; `None` when it gives
/// none. `--env-clear` has no meaning there (a patch adds variables), and `--after` cannot
/// change; a relative `--cwd` is made absolute here, as at submit.
pub(super) fn patch(
    spec: &SpecArgs,
) -> anyhow::Result<Option<serde_json::Map<String, serde_json::Value>>> {
    if spec.env_clear {
        return Err(UsageError("--env-clear applies at submit only".into()).into());
    }
    let mut spec = spec.clone();
    absolute_cwd(&mut spec)?;
    let fields = spec.to_json();
    Ok((!fields.is_empty()).then_some(fields))
}
