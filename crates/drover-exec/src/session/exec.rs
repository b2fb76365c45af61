//! `drover session-exec`: the job that is one exec. It hands its code to the session's host,
//! writes what the code prints to its own stdout and stderr (the exec job's logs), and exits
//! with the code's status. SIGTERM or SIGINT — its timeout or a cancel — asks the host to
//! interrupt the code; the exec then ends with what the code printed until then.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use super::wire::{self, Request};
use super::{ExecStatus, exit};

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

/// The write end of the pipe the signal handler wakes the loop with (-1 when none).
static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(_: libc::c_int) {
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; a full pipe only drops the byte.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Runs `code` in the session listening on `socket`. The host is given `interrupt_wait` to
/// bring its interpreter back after an interrupt. Returns the exit code (see [`exit`]).
pub fn run_exec(socket: &Path, code: &str, interrupt_wait: Duration) -> Result<u8, ExecError> {
    let mut conn = UnixStream::connect(socket).map_err(|source| ExecError::NoSession {
        path: socket.to_path_buf(),
        source,
    })?;
    let wake = stop_signals().map_err(ExecError::HostGone)?;
    let request = Request {
        code: code.to_string(),
        interrupt_wait_ms: u64::try_from(interrupt_wait.as_millis()).unwrap_or(u64::MAX),
    };
    let body = serde_json::to_vec(&request).map_err(|e| ExecError::HostGone(e.into()))?;
    wire::write_frame(&mut conn, wire::RUN, &body).map_err(ExecError::HostGone)?;
    let mut interrupt_sent = false;
    loop {
        let mut fds = [poll_in(conn.as_raw_fd()), poll_in(wake.as_raw_fd())];
        // SAFETY: a valid array of two pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(ExecError::HostGone(io::Error::last_os_error()));
        }
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

/// SIGTERM and SIGINT write to a pipe that the loop polls; returns its read end.
fn stop_signals() -> io::Result<OwnedFd> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just made; the write end is kept open for the process's life (the
    // handler may run at any time), so it is leaked on purpose.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    WAKE.store(fds[1], Ordering::SeqCst);
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only does an atomic load and a write(2).
        unsafe {
            libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t);
        }
    }
    Ok(read)
}

fn poll_in(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
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
