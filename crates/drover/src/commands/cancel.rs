//! `drover cancel`: waiting jobs at once, running ones through the kill ladder.

use drover_api::{CancelAll, CancelAllAnswer, CancelAnswer, CancelResult};

use super::client;
use crate::cli::{CancelArgs, Cli};
use crate::client::ClientError;
use crate::exit;

/// `drover cancel`
pub fn cancel(cli: &Cli, args: &CancelArgs) -> anyhow::Result<u8> {
    if args.jobs.all {
        let request = CancelAll {
            states: args.state.clone(),
            queue: args.queue.clone(),
        };
        let answer: CancelAllAnswer = client(cli)?.post("/v1/cancel", &request)?;
        if cli.json {
            crate::output::json(&answer)?;
            return Ok(exit::OK);
        }
        for result in &answer.results {
            println!("{}: {}", result.id, cancel_words(&result.result));
        }
        let n = answer.results.len();
        eprintln!("drover: {n} job{}", if n == 1 { "" } else { "s" });
        return Ok(exit::OK);
    }
    let client = client(cli)?;
    let mut ids = Vec::new();
    for target in super::refs::targets(&client, &args.jobs.ids)? {
        match target {
            super::refs::Target::Job(id) => ids.push(id),
            super::refs::Target::Group(id, _) => {
                super::group::cancel(cli, &client, id)?;
            }
        }
    }
    let mut code = exit::OK;
    let mut answers = Vec::new();
    for id in ids {
        let path = format!("/v1/jobs/{id}/cancel");
        match client.post::<CancelAnswer>(&path, &serde_json::json!({})) {
            Ok(answer) if cli.json => answers.push(answer),
            Ok(answer) => println!("{id}: {}", cancel_words(&answer.result)),
            Err(err @ ClientError::Api { status: 404, .. }) => {
                eprintln!("drover: {id}: {err}");
                code = exit::NODE;
            }
            Err(err) => return Err(err.into()),
        }
    }
    if cli.json {
        crate::output::json(&CancelAllAnswer { results: answers })?;
    }
    Ok(code)
}

/// What a cancel did, for people.
fn cancel_words(result: &CancelResult) -> String {
    match result {
        CancelResult::Cancelled { .. } => "cancelled".to_string(),
        CancelResult::CancelRequested { .. } => {
            "cancel requested; stopping its process tree".to_string()
        }
        CancelResult::AlreadyEnded { state } => format!("already ended ({state})"),
        CancelResult::NotFound => "no such job".to_string(),
    }
}
