//! Resource graphs: every few seconds, what each running attempt of this node uses — memory
//! and CPU, read from its cell by the containment backend — added to a bounded series per
//! attempt ([`drover_core::UsageSeries`]) and stored with the attempt, so any node's API, the
//! web page's plot and `drover top` read it from the store.
//!
//! The sampler only reads cells and writes series: it never decides anything about a job.
//! A node that restarts picks each re-attached attempt's series up from the store and goes on.
//! An ending keeps the series as last written (up to one interval before the end).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_core::{AttemptRef, JobState, NodeId, UsagePoint, UsageSeries};
use drover_exec::Containment;
use drover_store::Store;

/// How often attempts are sampled unless `serve --sample-interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// One attempt being followed.
struct Followed {
    /// When its process started (the series' zero).
    started_at: chrono::DateTime<chrono::Utc>,
    series: UsageSeries,
    /// The CPU time of the last sample, and when it was read: CPU use is its growth.
    last_cpu: Option<(u64, Instant)>,
}

/// Starts the sampler; it runs as long as the node.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    containment: Arc<Containment>,
    node: NodeId,
    interval: Duration,
) {
    tokio::spawn(async move {
        let mut followed: HashMap<AttemptRef, Followed> = HashMap::new();
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(err) =
                sample_once(store.as_ref(), &containment, &node, interval, &mut followed).await
            {
                tracing::debug!(error = %drover_core::error_chain(&err), "usage sampling skipped a round");
            }
        }
    });
}

async fn sample_once(
    store: &dyn Store,
    containment: &Arc<Containment>,
    node: &NodeId,
    interval: Duration,
    followed: &mut HashMap<AttemptRef, Followed>,
) -> Result<(), drover_store::StoreError> {
    let live = store.live_attempts(node).await?;
    let leaders: HashMap<AttemptRef, i32> = live
        .iter()
        .filter(|a| a.state == JobState::Running)
        .filter_map(|a| Some((a.attempt, a.pid?)))
        .collect();
    let running: Vec<AttemptRef> = leaders.keys().copied().collect();
    followed.retain(|attempt, _| leaders.contains_key(attempt));
    for attempt in &running {
        if followed.contains_key(attempt) {
            continue;
        }
        // First seen (it just started, or this node restarted): its start, and what was kept.
        let Some(job) = store.get(attempt.job_id).await? else {
            continue;
        };
        let Some(record) = job.attempts.iter().find(|a| a.attempt == attempt.attempt) else {
            continue;
        };
        let Some(started_at) = record.started_at else {
            continue;
        };
        followed.insert(
            *attempt,
            Followed {
                started_at,
                series: record
                    .usage_series
                    .clone()
                    .unwrap_or_else(|| UsageSeries::new(millis(interval))),
                last_cpu: None,
            },
        );
    }
    let attempts: Vec<AttemptRef> = followed.keys().copied().collect();
    if attempts.is_empty() {
        return Ok(());
    }
    let samples = {
        let containment = Arc::clone(containment);
        let attempts = attempts.clone();
        let leaders: Vec<i32> = attempts
            .iter()
            .map(|a| leaders.get(a).copied().unwrap_or(0))
            .collect();
        tokio::task::spawn_blocking(move || {
            let samples = containment.sample(&attempts);
            // Read after the sample: a leader that is gone now may have been exiting while
            // its cell was read, and an exiting tree's memory is not what it used.
            let running: Vec<bool> = leaders
                .iter()
                .map(|pid| drover_exec::sys::process_running(*pid))
                .collect();
            (samples, running)
        })
        .await
        .unwrap_or_default()
    };
    let (samples, still_running) = samples;
    let now = Instant::now();
    let wall = chrono::Utc::now();
    let mut writes = Vec::with_capacity(attempts.len());
    for ((attempt, sample), running) in attempts.iter().zip(samples).zip(still_running) {
        let Some(f) = followed.get_mut(attempt) else {
            continue;
        };
        if !running {
            continue; // it is ending: its last sample stands
        }
        let at_ms = u64::try_from((wall - f.started_at).num_milliseconds()).unwrap_or(0);
        let cpu_millis = match (f.last_cpu, sample.cpu_time_ms) {
            (Some((before, then)), Some(cpu)) => {
                rate(cpu.saturating_sub(before), now.duration_since(then))
            }
            // The first sample: the average since the start.
            (None, Some(cpu)) => rate(cpu, Duration::from_millis(at_ms)),
            (_, None) => None,
        };
        f.last_cpu = sample.cpu_time_ms.map(|cpu| (cpu, now));
        if sample.memory_bytes.is_none() && cpu_millis.is_none() {
            continue; // the backend measures nothing here
        }
        f.series.push(UsagePoint {
            at_ms,
            memory_bytes: sample.memory_bytes,
            cpu_millis,
        });
        writes.push((*attempt, f.series.clone()));
    }
    store.record_usage(node, writes).await
}

/// Thousandths of a CPU that `cpu_ms` of CPU time over `elapsed` is.
fn rate(cpu_ms: u64, elapsed: Duration) -> Option<u32> {
    let elapsed = millis(elapsed);
    (elapsed > 0).then(|| u32::try_from(cpu_ms.saturating_mul(1000) / elapsed).unwrap_or(u32::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_use_is_time_over_time() {
        assert_eq!(
            rate(2000, Duration::from_secs(1)),
            Some(2000),
            "two CPUs busy"
        );
        assert_eq!(rate(250, Duration::from_secs(1)), Some(250));
        assert_eq!(rate(5, Duration::ZERO), None);
    }
}
