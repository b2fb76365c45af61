//! Why a job that has not started is still waiting, in words (`JobRecord::waiting_for`): the
//! first that holds of
//!
//! - blocked: `blocked on 3 of 5 jobs: 41, 42, 43` (the jobs it runs after that have not
//!   succeeded, by number);
//! - queued, in a paused queue: `queue sage is paused`;
//! - queued, in a queue at its limit: `queue sage is at its concurrency 1`;
//! - queued, requiring labels no live node has: `no node matches has=sage: ...`;
//! - queued and passed over by this node's last claim: `waiting for 16 GiB memory, 4 GiB free`.
//!
//! A queued job with none of these waits for a free slot. Everything is read from the store at
//! the time of the request (queue settings with their live attempts, nodes, the jobs waited
//! on) except the last, which is what this node saw; nothing here is stored. None of it counts
//! the waiting jobs themselves, so explaining one job stays cheap however long its queue.

use std::collections::HashMap;

use drover_core::node::describe_labels;
use drover_core::{JobId, JobRecord, JobState, NodeState, labels_match};
use drover_store::QueueLimit;

use super::{ApiError, ApiState};

/// `jobs`, each waiting one with what it waits for.
pub(super) async fn explained(
    state: &ApiState,
    mut jobs: Vec<JobRecord>,
) -> Result<Vec<JobRecord>, ApiError> {
    let queued = jobs.iter().any(|j| j.state == JobState::Queued);
    let routed = jobs
        .iter()
        .any(|j| j.state == JobState::Queued && !j.spec.require.is_empty());
    let nodes = if routed {
        state.store.nodes().await?
    } else {
        Vec::new()
    };
    let queues: HashMap<String, QueueLimit> = if queued {
        let listed = state.store.queue_limits().await?;
        listed.into_iter().map(|q| (q.name.clone(), q)).collect()
    } else {
        HashMap::new()
    };
    // The jobs the blocked ones run after, read once each.
    let mut awaited: HashMap<JobId, Option<(u64, JobState)>> = HashMap::new();
    for job in jobs.iter().filter(|j| j.state == JobState::Blocked) {
        for id in &job.spec.after {
            if !awaited.contains_key(id) {
                let head = state.store.get(*id).await?.map(|j| (j.number, j.state));
                awaited.insert(*id, head);
            }
        }
    }
    let notes = state.passed_over.lock().ok();
    for job in &mut jobs {
        job.waiting_for = match job.state {
            JobState::Blocked => Some(blocked_on(&job.spec.after, &awaited)),
            JobState::Queued => {
                let queue = queues.get(job.spec.queue_name());
                let unmatched = !job.spec.require.is_empty()
                    && !nodes.iter().any(|n| {
                        n.state != NodeState::Dead
                            && labels_match(&job.spec.require, &n.info.labels)
                    });
                match queue {
                    Some(q) if q.paused => Some(format!("queue {} is paused", q.name)),
                    Some(QueueLimit {
                        name,
                        concurrency: Some(limit),
                        running,
                        ..
                    }) if *running >= u64::from(*limit) => {
                        Some(format!("queue {name} is at its concurrency {limit}"))
                    }
                    _ if unmatched => Some(format!(
                        "no node matches {}: no live node has these labels",
                        describe_labels(&job.spec.require)
                    )),
                    _ => notes.as_ref().and_then(|n| n.get(&job.id).cloned()),
                }
            }
            _ => None,
        };
    }
    Ok(jobs)
}

/// `blocked on 2 of 3 jobs: 41, 43` — the jobs of `after` that have not succeeded.
fn blocked_on(after: &[JobId], awaited: &HashMap<JobId, Option<(u64, JobState)>>) -> String {
    let pending: Vec<String> = after
        .iter()
        .filter_map(|id| match awaited.get(id) {
            Some(Some((_, JobState::Succeeded))) => None,
            Some(Some((number, state))) => Some(format!("{number} ({state})")),
            _ => Some(id.to_string()),
        })
        .collect();
    let shown: Vec<&str> = pending.iter().take(5).map(String::as_str).collect();
    let more = if pending.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    format!(
        "blocked on {} of {} job{}: {}{more}",
        pending.len(),
        after.len(),
        if after.len() == 1 { "" } else { "s" },
        shown.join(", ")
    )
}
