//! `drover retry`: run ended jobs again with a fresh retry budget.

use drover_api::{Changes, Retry};

use super::{client, report_changes, resolve};
use crate::cli::{Cli, RetryArgs};

/// `drover retry ID... | --all-dlq`
pub fn retry(cli: &Cli, args: &RetryArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let body = if args.all_dlq {
        Retry {
            all_dlq: true,
            ..Retry::default()
        }
    } else {
        Retry {
            ids: resolve(&client, &args.ids)?,
            ..Retry::default()
        }
    };
    let answer: Changes = client.post("/v1/retry", &body)?;
    report_changes(cli, &answer, "queued again")
}
