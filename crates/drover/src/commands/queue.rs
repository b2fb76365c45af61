//! `drover queue`: list named queues, pause or resume one, limit its concurrency.

use drover_api::{QueueChange, QueueInfo};

use super::{UsageError, client};
use crate::cli::{Cli, Concurrency, QueueAction, QueueArgs};
use crate::exit;
use crate::output;

/// `drover queue ls|pause|resume|set`
pub fn queue(cli: &Cli, args: &QueueArgs) -> anyhow::Result<u8> {
    let client = client(cli)?;
    let (name, change) = match &args.action {
        QueueAction::Ls => {
            let queues: Vec<QueueInfo> = client.get("/v1/queues")?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&queues)?);
            } else {
                print!("{}", output::queues_table(&queues));
            }
            return Ok(exit::OK);
        }
        QueueAction::Pause { name } => (
            name,
            QueueChange {
                paused: Some(true),
                ..QueueChange::default()
            },
        ),
        QueueAction::Resume { name } => (
            name,
            QueueChange {
                paused: Some(false),
                ..QueueChange::default()
            },
        ),
        QueueAction::Set { name, concurrency } => match concurrency {
            Some(Concurrency(limit)) => (
                name,
                QueueChange {
                    concurrency: Some(*limit),
                    ..QueueChange::default()
                },
            ),
            None => return Err(UsageError("nothing to set: give --concurrency".into()).into()),
        },
    };
    let info: QueueInfo = client.post(&format!("/v1/queues/{name}"), &change)?;
    if cli.json {
        crate::output::json(&info)?;
        return Ok(exit::OK);
    }
    println!(
        "{}: {}, concurrency {}",
        name,
        if info.paused { "paused" } else { "active" },
        info.concurrency
            .map_or("unlimited".to_string(), |n| n.to_string())
    );
    Ok(exit::OK)
}
