//! The words people use for a job — a whole id, its number (`42`, `#42`), a unique prefix of
//! its id, its name — turned into ids. Whole ids need no request; the rest are resolved by the
//! node (`POST /v1/resolve`) in one request, so a hundred numbers cost one round trip.

use drover_api::{Found, Resolve, Resolved};
use drover_core::JobId;

use super::UsageError;
use crate::client::Client;

/// A reference that names no job (exit code 4, as for any job the node does not have).
#[derive(Debug, thiserror::Error)]
#[error("no job {0}")]
pub struct NoSuchJob(String);

/// The ids `refs` name, in order. An ambiguous reference is a usage error listing what it may
/// mean; one that names nothing is [`NoSuchJob`].
pub(super) fn resolve(client: &Client, refs: &[String]) -> anyhow::Result<Vec<JobId>> {
    let mut ids: Vec<Option<JobId>> = refs.iter().map(|r| r.trim().parse().ok()).collect();
    let asked: Vec<String> = refs
        .iter()
        .zip(&ids)
        .filter(|(_, id)| id.is_none())
        .map(|(r, _)| r.clone())
        .collect();
    if asked.is_empty() {
        return Ok(ids.into_iter().flatten().collect());
    }
    let answer: Resolved = client.post("/v1/resolve", &Resolve { refs: asked })?;
    let mut answers = answer.results.into_iter();
    let mut missing = Vec::new();
    for slot in ids.iter_mut().filter(|id| id.is_none()) {
        let Some(resolution) = answers.next() else {
            anyhow::bail!("the node answered fewer references than it was asked");
        };
        match resolution.found {
            Found::One { id, .. } => *slot = Some(id),
            Found::None => missing.push(format!("`{}`", resolution.reference)),
            Found::Many { candidates, more } => {
                let mut lines: Vec<String> = candidates
                    .iter()
                    .map(|c| format!("  {:>6}  {}  {}  ({})", c.number, c.id, c.name, c.state))
                    .collect();
                if more {
                    lines.push("  ...".into());
                }
                return Err(UsageError(format!(
                    "`{}` names more than one job; say which by its number or a longer id:\n{}",
                    resolution.reference,
                    lines.join("\n")
                ))
                .into());
            }
        }
    }
    if !missing.is_empty() {
        return Err(NoSuchJob(missing.join(", ")).into());
    }
    Ok(ids.into_iter().flatten().collect())
}

/// The id one reference names.
pub(super) fn resolve_one(client: &Client, reference: &str) -> anyhow::Result<JobId> {
    let ids = resolve(client, &[reference.to_string()])?;
    ids.into_iter()
        .next()
        .ok_or_else(|| NoSuchJob(format!("`{reference}`")).into())
}
