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
        Retry {
            ids: resolve(&client, &args.ids)?,
            spec,
            ..Retry::default()
        }
    };
    let answer: Changes = client.post("/v1/retry", &body)?;
    report_changes(cli, &answer, "queued again")
}
