//! `drover dlq`: the dead-letter queue, and dismissing jobs from it.

use drover_api::{Changes, Dismiss};
use drover_core::JobRecord;

use super::{client, report_changes, resolve};
use crate::cli::{Cli, DlqAction, DlqArgs};
use crate::exit;
use crate::output;

/// `drover dlq [dismiss ID...]`
pub fn dlq(cli: &Cli, args: &DlqArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    if let Some(DlqAction::Dismiss { ids }) = &args.action {
        let body = Dismiss {
            ids: resolve(&client, ids)?,
        };
        let answer: Changes = client.post("/v1/dlq/dismiss", &body)?;
        return report_changes(cli, &answer, "dismissed");
    }
    let jobs: Vec<JobRecord> = client.get(&format!("/v1/dlq?limit={}", args.limit))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(exit::OK);
    }
    print!("{}", output::dead_letters_table(&jobs));
    Ok(exit::OK)
}
