//! `drover priority`: change a waiting job's priority.

use drover_api::{ChangeResult, SetPriority};

use super::{client, job_id};
use crate::cli::{Cli, PriorityArgs};
use crate::exit;

/// `drover priority ID N`
pub fn priority(cli: &Cli, args: &PriorityArgs) -> anyhow::Result<u8> {
    let id = job_id(&args.id)?;
    let body = SetPriority {
        priority: args.priority,
    };
    let _: ChangeResult = client(cli)?.post(&format!("/v1/jobs/{id}/priority"), &body)?;
    println!("{id}: priority {}", args.priority);
    Ok(exit::OK)
}
