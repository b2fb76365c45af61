//! `drover retry`: run ended jobs again with a fresh retry budget.

use drover_api::{Changes, Retry};

use super::{UsageError, client, report_changes, resolve};
use crate::cli::{Cli, RetryArgs};

/// `drover retry ID... | --all-dlq`
pub fn retry(cli: &Cli, args: &RetryArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let spec = super::edit::patch(&args.spec)?;
    let body = if args.all_dlq {
        if spec.is_some() {
            return Err(UsageError(
                "new settings go to jobs named one by one, not to --all-dlq".into(),
            )
            .into());
        }
        Retry {
            all_dlq: true,
            ..Retry::default()
        }
    } else {
        let targets = super::refs::targets(&client, &args.ids)?;
        let groups: Vec<_> = targets
            .iter()
            .filter_map(|t| match t {
                super::refs::Target::Group(id, _) => Some(*id),
                super::refs::Target::Job(_) => None,
            })
            .collect();
        if !groups.is_empty() {
            if targets.len() > 1 || spec.is_some() {
                return Err(UsageError(
                    "retry a sweep or flow on its own, without new settings".into(),
                )
                .into());
            }
            return super::group::retry(cli, &client, groups[0], args.failed);
        }
        if args.failed {
            return Err(UsageError("--failed is for a sweep or flow".into()).into());
        }
        Retry {
            ids: resolve(&client, &args.ids)?,
            spec,
            ..Retry::default()
        }
    };
    let answer: Changes = client.post("/v1/retry", &body)?;
    report_changes(cli, &answer, "queued again")
}
