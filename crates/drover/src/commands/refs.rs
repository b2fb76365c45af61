//! The words people use for a job or a group — a whole id, its number (`42`, `#42`), a unique
//! prefix of its id, its name — turned into ids, by the node (`POST /v1/resolve`) in one
//! request, so a hundred numbers cost one round trip. Commands that act on jobs take a group as
//! its members.

use drover_api::{Found, GroupDetail, Resolve, Resolved};
use drover_core::{GroupId, JobId};

use super::UsageError;
use crate::client::Client;

/// A reference that names no job (exit code 4, as for any job the node does not have).
#[derive(Debug, thiserror::Error)]
#[error("no job {0}")]
pub struct NoSuchJob(String);

/// What a reference names: a job, or a group of jobs (a sweep or a flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// One job.
    Job(JobId),
    /// A group, by id and number.
    Group(GroupId, u64),
}

/// What `refs` name, in order, jobs or groups. An ambiguous reference is a usage error listing
/// what it may mean; one that names nothing is [`NoSuchJob`]. One request for them all.
pub(super) fn targets(client: &Client, refs: &[String]) -> anyhow::Result<Vec<Target>> {
    targets_preferring(client, refs, false)
}

/// [`targets`], trying groups before jobs when `groups_first` (for commands that take a group
/// only: a job that shares a sweep's name must not hide the sweep).
fn targets_preferring(
    client: &Client,
    refs: &[String],
    groups_first: bool,
) -> anyhow::Result<Vec<Target>> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let answer: Resolved = client.post(
        "/v1/resolve",
        &Resolve {
            refs: refs.to_vec(),
            groups_first,
        },
    )?;
    if answer.results.len() != refs.len() {
        anyhow::bail!("the node answered fewer references than it was asked");
    }
    let mut found = Vec::with_capacity(refs.len());
    let mut missing = Vec::new();
    for resolution in answer.results {
        match resolution.found {
            Found::One { id, .. } => found.push(Target::Job(id)),
            Found::Group { id, number } => found.push(Target::Group(id, number)),
            // A whole id the node does not know goes on as it is: the request that uses it says
            // what is wrong (`--after` a job that does not exist is refused by field).
            Found::None => match resolution.reference.trim().parse::<JobId>() {
                Ok(id) => found.push(Target::Job(id)),
                Err(_) => missing.push(format!("`{}`", resolution.reference)),
            },
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
    Ok(found)
}

/// The jobs `refs` name, in order, a group standing for its members (in sweep order).
pub(super) fn resolve(client: &Client, refs: &[String]) -> anyhow::Result<Vec<JobId>> {
    let mut ids = Vec::new();
    for target in targets(client, refs)? {
        match target {
            Target::Job(id) => ids.push(id),
            Target::Group(id, _) => ids.extend(members(client, id)?.into_iter().map(|j| j.id)),
        }
    }
    Ok(ids)
}

/// A group's members, in sweep order.
pub(super) fn members(client: &Client, id: GroupId) -> anyhow::Result<Vec<drover_core::JobRecord>> {
    let detail: GroupDetail = client.get(&format!("/v1/groups/{id}"))?;
    Ok(detail.jobs)
}

/// The job one reference names (a group is refused: it names many).
pub(super) fn resolve_one(client: &Client, reference: &str) -> anyhow::Result<JobId> {
    match targets(client, &[reference.to_string()])?.first() {
        Some(Target::Job(id)) => Ok(*id),
        Some(Target::Group(_, number)) => Err(UsageError(format!(
            "`{reference}` is group {number}; name one of its jobs (`drover status {number}` lists them)"
        ))
        .into()),
        None => Err(NoSuchJob(format!("`{reference}`")).into()),
    }
}

/// The group one reference names.
pub(super) fn resolve_group(client: &Client, reference: &str) -> anyhow::Result<GroupId> {
    match targets_preferring(client, &[reference.to_string()], true)?.first() {
        Some(Target::Group(id, _)) => Ok(*id),
        Some(Target::Job(_)) => {
            Err(UsageError(format!("`{reference}` is a job, not a sweep or flow")).into())
        }
        None => Err(NoSuchJob(format!("`{reference}`")).into()),
    }
}
