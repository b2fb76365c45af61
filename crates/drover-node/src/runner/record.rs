//! How an ending reaches the store: the owner's view of an ending mapped onto the store's
//! states and reasons, and the calls that must get an answer (a completion, a give-back),
//! retried while the store's errors are transient and given up on at once when they are not.
//!
//! This file decides nothing about what runs; it may call the store only for the ending it is
//! handed.

use std::time::Duration;

use drover_core::{AttemptRef, JobState, Reason};
use drover_exec::{Ending as ExecEnding, Outcome, StopReason};
use drover_store::{AttemptOutcome, Completion, Store, StoreError};

use super::effect::Ending;

/// How an ending was answered.
#[derive(Debug)]
pub(crate) enum Recorded {
    /// On disk; the job is now in this state.
    Done(JobState),
    /// The store said the attempt is no longer the job's live one and changed nothing.
    Stale,
}

/// The longest pause between two tries of an ending.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Writes `ending` for `attempt`. `Err` when the store could not take it: a permanent error at
/// once, a transient one only when the node stops first (`stopping` counts its stop signals).
/// The owner keeps the outcome until it is on disk, so whatever stops the retries, the next
/// start of a node collects it. `disk_full` is called at each transient error: it frees the
/// data dir's reserve if its disk is full, so the ending fits.
pub(crate) async fn record(
    store: &dyn Store,
    attempt: AttemptRef,
    ending: Ending,
    stopping: &tokio::sync::watch::Receiver<u32>,
    disk_full: &(dyn Fn() + Send + Sync),
) -> Result<Recorded, StoreError> {
    let retry = Retry {
        stopping,
        on_transient: disk_full,
        max_pause: MAX_PAUSE,
    };
    match ending {
        Ending::Complete(outcome) => {
            until_answered(attempt, "recording a completion", &retry, || {
                store.complete(attempt, outcome.clone())
            })
            .await
        }
        // A database restart must not turn a job that never ran into a lost one.
        Ending::Unrun(reason, proof) => {
            until_answered(attempt, "giving back an unrun attempt", &retry, || {
                store.give_back(attempt, reason.clone(), proof)
            })
            .await
        }
    }
}

/// How long [`until_answered`] goes on: until the node stops, calling `on_transient` at each
/// transient error.
pub(crate) struct Retry<'a> {
    /// The node's stop signals.
    pub stopping: &'a tokio::sync::watch::Receiver<u32>,
    /// Called at each transient error.
    pub on_transient: &'a (dyn Fn() + Send + Sync),
    /// The longest pause between two tries ([`MAX_PAUSE`]; shorter in tests).
    pub max_pause: Duration,
}

/// Calls `ending` until the store answers, retrying transient errors with backoff for as long
/// as the node runs: an outcome is never given up on because the database was away or the
/// disk full for a while (before #16, 20 s of a full disk turned jobs that exited 0 into
/// `lost`). A stale answer is final, and so is a permanent error (a corrupt row, an illegal
/// transition): asking again would meet it again.
pub(crate) async fn until_answered<F, Fut>(
    attempt: AttemptRef,
    what: &str,
    retry: &Retry<'_>,
    ending: F,
) -> Result<Recorded, StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Completion, StoreError>>,
{
    let mut pause = Duration::from_millis(50).min(retry.max_pause);
    let mut tries = 0u64;
    let mut stopping = retry.stopping.clone();
    loop {
        tries += 1;
        match ending().await {
            Ok(Completion::Recorded { state }) => {
                tracing::debug!(%attempt, %state, what, "recorded");
                return Ok(Recorded::Done(state));
            }
            Ok(Completion::Stale {
                current_attempt,
                current_state,
            }) => {
                tracing::warn!(%attempt, current_attempt, %current_state, what, "the attempt is no longer live; the store ignored it");
                return Ok(Recorded::Stale);
            }
            Err(err) if err.is_transient() && *stopping.borrow() == 0 => {
                // Loud at first, then once a minute or so.
                if tries <= 3 || tries % 30 == 0 {
                    tracing::warn!(%attempt, error = %err, what, tries, "store error; the outcome is kept and tried again");
                }
                (retry.on_transient)();
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    _ = stopping.changed() => {}
                }
                pause = (pause * 2).min(retry.max_pause);
            }
            Err(err) => {
                let error = drover_core::error_chain(&err);
                tracing::error!(%attempt, %error, what, tries, "cannot record; the owner keeps the outcome for the next start of a node");
                return Err(err);
            }
        }
    }
}

/// Maps an owner's view of an ending onto the store's states and reasons.
pub fn to_attempt_outcome(outcome: &Outcome) -> AttemptOutcome {
    // A tree that hit a hard limit and then failed failed *because of* the limit: name that,
    // not the exit code or signal it produced (those stay on the attempt).
    let limit_reason = if outcome.oom_killed {
        Some(Reason::MemoryLimit)
    } else if outcome.pids_limited {
        Some(Reason::PidsLimit)
    } else {
        None
    };
    let (state, reason) = match &outcome.ending {
        ExecEnding::Exited(0) => (JobState::Succeeded, Reason::ExitCode(0)),
        ExecEnding::Exited(code) => (
            JobState::Failed,
            limit_reason.unwrap_or(Reason::ExitCode(*code)),
        ),
        ExecEnding::Signaled(sig) => (
            JobState::Failed,
            limit_reason.unwrap_or(Reason::Signal(*sig)),
        ),
        ExecEnding::TimedOut => (JobState::TimedOut, Reason::Timeout),
        ExecEnding::Stalled => (JobState::Failed, Reason::Stalled),
        ExecEnding::SpawnFailed(err) => (JobState::Failed, Reason::SpawnFailed(err.clone())),
        // The store decides between `queued` and, with a cancel pending, `cancelled`.
        ExecEnding::Checkpointed(_) => (JobState::Queued, Reason::Checkpointed),
        ExecEnding::Stopped(why) | ExecEnding::Aborted(why) => match why {
            StopReason::Cancel => (JobState::Cancelled, Reason::CancelledByUser),
            StopReason::Shutdown => (JobState::Lost, Reason::NodeShutdown),
            StopReason::LeaseLost => (JobState::Lost, Reason::NodeLost),
        },
    };
    AttemptOutcome {
        state,
        reason,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        peak_memory_bytes: outcome.peak_memory_bytes,
        cpu_time_ms: outcome.cpu_time_ms,
        ended_at: outcome
            .ended_at_ms
            .and_then(|ms| i64::try_from(ms).ok())
            .and_then(chrono::DateTime::from_timestamp_millis),
        result: None,
        log_cuts: outcome.log_cuts.clone(),
        started: false,
    }
}

/// Most bytes a job's result may have.
pub const MAX_RESULT_BYTES: u64 = 1 << 20;

/// Takes the result an attempt that exited left in `dir` (`result.json`) into its outcome. A
/// result over [`MAX_RESULT_BYTES`] or that is not JSON fails an attempt that succeeded
/// (`result_invalid`, saying which); an attempt that failed keeps its own reason, and a bad
/// result is only dropped. Blocking file I/O: call it off the loop.
pub(crate) fn take_result(outcome: &mut AttemptOutcome, dir: &std::path::Path) {
    if outcome.exit_code.is_none() {
        return;
    }
    let path = dir.join(drover_exec::RESULT_FILE);
    let Ok(meta) = std::fs::metadata(&path) else {
        return;
    };
    let problem = if meta.len() > MAX_RESULT_BYTES {
        format!(
            "{} is {}; the limit is {}",
            drover_exec::RESULT_FILE,
            drover_core::units::format_bytes(meta.len()),
            drover_core::units::format_bytes(MAX_RESULT_BYTES)
        )
    } else {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
            }) {
            Ok(value) => {
                outcome.result = Some(value.to_string());
                return;
            }
            Err(err) => format!("{} is not JSON: {err}", drover_exec::RESULT_FILE),
        }
    };
    tracing::warn!(path = %path.display(), %problem, "the result cannot be taken");
    if outcome.state == JobState::Succeeded {
        outcome.state = JobState::Failed;
        outcome.reason = Reason::ResultInvalid(problem);
    }
}
