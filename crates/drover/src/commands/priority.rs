//! `drover priority`: change a waiting job's priority.

use drover_api::{ChangeResult, SetPriority};

use super::{client, resolve_one};
use crate::cli::{Cli, PriorityArgs};
use crate::exit;

/// `drover priority ID N`
pub fn priority(cli: &Cli, args: &PriorityArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let id = resolve_one(&client, &args.id)?;
    let body = SetPriority {
        priority: args.priority,
    };
    let answer: ChangeResult = client.post(&format!("/v1/jobs/{id}/priority"), &body)?;
    if cli.json {
        crate::output::json(&answer)?;
    } else {
        println!("{id}: priority {}", args.priority);
    }
    Ok(exit::OK)
}
