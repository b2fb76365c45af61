//! `drover run`: submit one job and stay with it — both outputs streamed here, Ctrl-C to
//! cancel, and the job's own exit code at the end.

use std::time::Duration;

use drover_api::CancelAnswer;
use drover_core::{JobId, JobRecord};

use super::follow::{follow_output, job_exit_code};
use super::submit::{Origin, require_program, submit_one};
use super::{UsageError, client};
use crate::cli::{Cli, RunArgs};
use crate::client::Client;
use crate::exit;

/// Ctrl-C presses seen by `drover run` (counted by a signal handler).
static INTERRUPTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn count_interrupt(_: libc::c_int) {
    // Only an atomic add: async-signal-safe.
    INTERRUPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// How long after the first Ctrl-C the cancel is sent: a second Ctrl-C within it leaves the job
/// running instead (as `srun` gives a second to change one's mind).
const CHANGE_OF_MIND: Duration = Duration::from_secs(2);

/// `drover run`: submit, stream both outputs until the job ends, exit with its code. The first
/// Ctrl-C cancels the job [`CHANGE_OF_MIND`] later (its tree goes by the usual ladder, and the
/// output keeps streaming to the end); a second one within that time leaves it running and
/// returns. Once the cancel is sent it stands: a later Ctrl-C only stops following.
pub fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<u8> {
    if args.submit.batch.is_some() {
        return Err(UsageError("`run` takes one job; use `submit --batch` for many".into()).into());
    }
    if !args.submit.each.is_empty() || args.submit.each_line.is_some() {
        return Err(UsageError(
            "`run` stays with one job; for a sweep, `submit --each …` then `drover wait` and `drover results`"
                .into(),
        )
        .into());
    }
    require_program(&args.submit.spec)?;
    let client = client(cli)?;
    let mut spec = args.submit.spec.clone();
    if let Some(pool) = &args.submit.pool {
        super::pool::into_pool(&client, pool, &mut spec)?;
    }
    let id = submit_one(&client, &spec, &Origin::here(cli)?)?;
    if args.detach {
        if cli.json {
            crate::output::json(&drover_api::Submitted { id })?;
        } else {
            println!("{id}");
        }
        return Ok(exit::OK);
    }
    stay_with(cli, client, id)
}

/// Streams job `id`'s output here until it ends and returns its exit code, with `run`'s Ctrl-C
/// handling (shared with `drover exec`).
pub(super) fn stay_with(cli: &Cli, client: Client, id: JobId) -> anyhow::Result<u8> {
    // SAFETY: installs a handler that only does an atomic add.
    unsafe {
        libc::signal(
            libc::SIGINT,
            count_interrupt as *const () as libc::sighandler_t,
        );
    }
    let job_id = id;
    let streams: Vec<_> = ["stdout", "stderr"]
        .into_iter()
        .map(|stream| {
            let mut client = self::client(cli)?;
            Ok(std::thread::spawn(move || -> anyhow::Result<()> {
                if stream == "stdout" {
                    follow_output(&mut client, job_id, stream, None, &mut std::io::stdout())
                } else {
                    follow_output(&mut client, job_id, stream, None, &mut std::io::stderr())
                }
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut client = client;
    // When the first Ctrl-C came, until the cancel is sent; then whether it was.
    let mut first_interrupt: Option<std::time::Instant> = None;
    let mut cancel_sent = false;
    while !streams.iter().all(|s| s.is_finished()) {
        match INTERRUPTS.load(std::sync::atomic::Ordering::SeqCst) {
            0 => {}
            1 => match first_interrupt {
                None => {
                    first_interrupt = Some(std::time::Instant::now());
                    eprintln!(
                        "drover: cancelling job {id} in {}s; Ctrl-C again to leave it running",
                        CHANGE_OF_MIND.as_secs()
                    );
                }
                Some(at) if !cancel_sent && at.elapsed() >= CHANGE_OF_MIND => {
                    cancel_sent = true;
                    let _: CancelAnswer = client.patiently(|c| {
                        c.post(&format!("/v1/jobs/{id}/cancel"), &serde_json::json!({}))
                    })?;
                    eprintln!("drover: cancelled job {id}; its output follows to the end");
                }
                Some(_) => {}
            },
            _ if cancel_sent => {
                eprintln!("drover: job {id} is being cancelled; no longer following it");
                return Ok(exit::OK);
            }
            _ => {
                eprintln!("drover: left job {id} running; `drover logs -f {id}` follows it again");
                return Ok(exit::OK);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for stream in streams {
        if let Ok(Err(err)) = stream.join() {
            eprintln!("drover: {err:#}");
        }
    }
    let job: JobRecord = client.patiently(|c| c.get(&format!("/v1/jobs/{id}")))?;
    // The job's own stderr ends above this line: say how it ended, unless it succeeded (with
    // --json: the whole record, whatever the ending, on stderr — stdout is the job's).
    if cli.json {
        eprintln!("{}", serde_json::to_string(&job)?);
    } else if let Some(line) = crate::output::ending(&job) {
        eprintln!("drover: {line}");
    }
    Ok(job_exit_code(&job))
}
