//! `drover logs`: a job's output, read once or followed (`-f`) to the end of its attempt.

use drover_core::JobRecord;

use super::follow::{copy_counting, follow_output, job_exit_code};
use super::{client, job_id};
use crate::cli::{Cli, LogsArgs};
use crate::exit;

/// `drover logs`
pub fn logs(cli: &Cli, args: &LogsArgs) -> anyhow::Result<u8> {
    let id = job_id(&args.id)?;
    let stream = if args.stderr { "stderr" } else { "stdout" };
    let mut client = client(cli)?;
    if !args.follow {
        let mut path = format!("/v1/jobs/{id}/logs?stream={stream}");
        if let Some(attempt) = args.attempt {
            path.push_str(&format!("&attempt={attempt}"));
        }
        let mut body = client.stream(&path)?;
        copy_counting(&mut body, &mut std::io::stdout(), &mut 0)?;
        return Ok(exit::OK);
    }
    follow_output(
        &mut client,
        id,
        stream,
        args.attempt,
        &mut std::io::stdout(),
    )?;
    // Followed to the end: say how the job ended, as `run` does.
    let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
    Ok(job_exit_code(&job))
}
