//! Following a job's output to the end of its attempt, across restarts of the node, and the
//! exit code a followed job gives (`run`, `logs -f`).

use std::io::{Read, Write};

use drover_core::{JobId, JobRecord};

use crate::client::Client;
use crate::exit;

/// Copies a job's output to `out` as it is written, to the end of its attempt — across
/// restarts of the node: a stream that breaks, or that the node ends because it stops while
/// the attempt still runs, is picked up again (from the node started again) at the byte it got
/// to, of the same attempt.
pub(super) fn follow_output(
    client: &mut Client,
    id: JobId,
    stream: &str,
    attempt: Option<u32>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut attempt = attempt;
    let mut offset = 0u64;
    let mut finishing = false;
    loop {
        let path = format!(
            "/v1/jobs/{id}/logs?stream={stream}&follow=true&offset={offset}{}",
            attempt.map(|a| format!("&attempt={a}")).unwrap_or_default()
        );
        let (said, mut body) = client.patiently(|c| c.stream_with_attempt(&path))?;
        attempt = attempt.or(said);
        let broke = copy_counting(&mut body, out, &mut offset)?;
        if finishing {
            return Ok(());
        }
        let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
        let live = match attempt {
            Some(a) => job.attempt == a && job.state.has_live_attempt(),
            None => job.state.has_live_attempt(),
        };
        // Over: one more request from where this one stopped gets whatever the attempt wrote
        // after it (the stream may have ended because the node stopped, and the attempt ended
        // while it was down); for an attempt that was over when the stream ended, it is empty.
        // Still running (the node went away or is stopping), or broken: ask again.
        finishing = !live && !broke;
    }
}

/// Copies `body` to `out`, flushing as data arrives and counting into `offset`. Returns whether
/// the stream broke (rather than ended).
pub(super) fn copy_counting(
    body: &mut dyn Read,
    out: &mut dyn Write,
    offset: &mut u64,
) -> anyhow::Result<bool> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(true),
        };
        out.write_all(&buf[..n])?;
        // Followed output should appear as it arrives, not when a buffer fills.
        out.flush()?;
        *offset += n as u64;
    }
}

/// The exit code `run` and `logs -f` give for how a job ended (see `--help`).
pub fn job_exit_code(job: &JobRecord) -> u8 {
    use drover_core::JobState;
    match (job.state, job.exit_code, job.signal) {
        (JobState::Succeeded, _, _) => exit::OK,
        (JobState::TimedOut, _, _) => 124,
        (JobState::Cancelled, _, _) => 130,
        (JobState::Failed, Some(code), _)
            if job.reason.as_ref().is_some_and(|r| r.kind() == "exit_code") =>
        {
            u8::try_from(code).unwrap_or(1)
        }
        (JobState::Failed, _, Some(signal))
            if job.reason.as_ref().is_some_and(|r| r.kind() == "signal") =>
        {
            u8::try_from(128 + signal).unwrap_or(1)
        }
        _ => 125,
    }
}
