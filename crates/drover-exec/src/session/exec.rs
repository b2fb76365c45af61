//! `drover session-exec`: the job that is one exec. It hands its code to the session's host,
//! writes what the code prints to its own stdout and stderr (the exec job's logs), and exits
//! with the code's status. SIGTERM or SIGINT — its timeout or a cancel — asks the host to
//! interrupt the code; the exec then ends with what the code printed until then.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::wire::{self, Request};
use super::{ExecStatus, exit, poll_in};

/// Why an exec could not be handed to its session.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Nothing listens on the session's socket: the host has ended, or runs elsewhere.
    #[error(
        "the session is not running on this node (nothing listens on {}): it has ended, or its node is another one",
        path.display()
    )]
    NoSession {
        /// The socket.
        path: std::path::PathBuf,
        /// Why the connection failed.
        #[source]
        source: io::Error,
    },
    /// The host went away before it said how the exec ended.
    #[error("the session's host went away during the exec")]
    HostGone(#[source] io::Error),
}

/// Runs `code` in the session listening on `socket`. The host is given `interrupt_wait` to
/// bring its interpreter back after an interrupt. Returns the exit code (see [`exit`]).
pub fn run_exec(socket: &Path, code: &str, interrupt_wait: Duration) -> Result<u8, ExecError> {
    let mut conn = UnixStream::connect(socket).map_err(|source| ExecError::NoSession {
        path: socket.to_path_buf(),
        source,
    })?;
    let wake = super::signal_pipe(&[libc::SIGTERM, libc::SIGINT]).map_err(ExecError::HostGone)?;
    let request = Request {
        code: code.to_string(),
        interrupt_wait_ms: u64::try_from(interrupt_wait.as_millis()).unwrap_or(u64::MAX),
    };
    let body = serde_json::to_vec(&request).map_err(|e| ExecError::HostGone(e.into()))?;
    wire::write_frame(&mut conn, wire::RUN, &body).map_err(ExecError::HostGone)?;
    let mut interrupt_sent = false;
    loop {
        let mut fds = [poll_in(conn.as_raw_fd()), poll_in(wake.as_raw_fd())];
        super::poll(&mut fds, None).map_err(ExecError::HostGone)?;
        if fds[1].revents != 0 {
            let mut sink = [0u8; 64];
            // SAFETY: reading into a local buffer from our own pipe.
            unsafe { libc::read(wake.as_raw_fd(), sink.as_mut_ptr().cast(), sink.len()) };
            if !interrupt_sent {
                interrupt_sent = true;
                // The host may be gone already; the read below says so.
                let _ = wire::write_frame(&mut conn, wire::INTERRUPT, &[]);
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        match wire::read_frame(&mut conn) {
            Ok(Some((wire::STDOUT, bytes))) => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
            }
            Ok(Some((wire::STDERR, bytes))) => {
                let _ = io::stderr().write_all(&bytes);
            }
            Ok(Some((wire::DONE, body))) => {
                let status: ExecStatus =
                    serde_json::from_slice(&body).map_err(|e| ExecError::HostGone(e.into()))?;
                return Ok(report(&status));
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(ExecError::HostGone(io::ErrorKind::UnexpectedEof.into()));
            }
            Err(err) => return Err(ExecError::HostGone(err)),
        }
    }
}

/// Says how the exec ended on stderr (unless the interpreter already did) and picks the exit
/// code.
fn report(status: &ExecStatus) -> u8 {
    if status.ok {
        return exit::OK;
    }
    if let Some(error) = status.error.as_deref().filter(|_| !status.printed) {
        eprintln!("{error}");
    }
    if status.interrupted {
        exit::INTERRUPTED
    } else if status.session_ended {
        exit::SESSION_ENDED
    } else {
        exit::ERROR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ending_picks_its_exit_code() {
        let ended = |ok, interrupted, session_ended| ExecStatus {
            ok,
            error: Some("E".into()),
            interrupted,
            session_ended,
            printed: true,
        };
        assert_eq!(report(&ended(true, false, false)), exit::OK);
        assert_eq!(report(&ended(false, false, false)), exit::ERROR);
        assert_eq!(report(&ended(false, true, false)), exit::INTERRUPTED);
        assert_eq!(report(&ended(false, false, true)), exit::SESSION_ENDED);
    }
}
