//! Sessions: an interpreter that lives as one job (the **host**) and runs code handed to it by
//! other jobs (the **execs**), keeping its variables in between.
//!
//! ```text
//! drover exec s -- 'print(x)'  ──POST /v1/jobs──▶ node ──▶ owner ──▶ drover session-exec  (the exec job)
//!                                                                       │ Unix socket
//!                                                                       ▼ DATA/sessions/<host job>.sock
//!                            owner ──▶ drover session-host (the host job) ──pipes──▶ python3 / sage / gp
//! ```
//!
//! Both sides are the drover binary, so the shims a user's interpreter runs ship inside it
//! ([`PYTHON_SHIM`]) and nothing is installed on the user's side. Neither side writes state:
//! the exec job's output and exit status are its own, recorded by its owner like any job's.
//!
//! Why the exec is a job of its own rather than a request the node answers: it then has its
//! own log, exit status, timeout, cancel and place in `status` and on the web page with no new
//! code on those paths, and its timeout is the owner's ladder: SIGTERM reaches
//! `session-exec`, which asks the host to interrupt the code (SIGINT to the interpreter), and
//! the session goes on.
//!
//! The host runs one exec at a time, in the order their connections arrive; an exec that comes
//! while another runs waits in the socket's backlog (its timeout counts meanwhile).

mod exec;
mod host;
pub mod pool_run;
mod wire;

pub use exec::{ExecError, run_exec};
pub use host::{HostError, READY_LINE, run_host};
pub use pool_run::{ChildEnd, PoolRunError, run_pooled};

/// The shim a Python or SageMath session runs in the user's interpreter (`-c`).
pub const PYTHON_SHIM: &str = include_str!("shim.py");

/// The line a pool's parent writes to its stderr (its job's log) once it has imported the
/// pool's modules and listens: `drover pool create` returns when every parent has said it.
pub const POOL_READY_LINE: &str = "drover: the pool's parent is ready";

/// The shim a pool's parent runs in the user's interpreter (`-c`): it imports the pool's
/// modules once, then forks a child for each of the pool's jobs (see [`pool_run`]).
pub const POOL_SHIM: &str = include_str!("pool.py");

/// What a finished exec reports: the host's last frame to `session-exec`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecStatus {
    /// The code ran to its end without an error.
    pub ok: bool,
    /// The exception's or GP error's message, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// It was interrupted (a timeout or a cancel of the exec).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// The interpreter ended or was given up during the exec: the session is over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session_ended: bool,
    /// The interpreter already printed the error (a Python traceback) on the exec's stderr.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub printed: bool,
}

/// Write end of the pipe [`signal_pipe`]'s handler reports to (-1 before it is made).
static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write is async-signal-safe; a full pipe only drops the byte.
        unsafe { libc::write(fd, [byte].as_ptr().cast(), 1) };
    }
}

/// Makes `signals` write their number to a pipe whose read end is returned, for a loop that
/// polls it beside its socket (a self-pipe: the handler does nothing else). Once per process.
pub(crate) fn signal_pipe(signals: &[i32]) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::IntoRawFd;
    let (read, write) = crate::sys::pipe_cloexec()?;
    crate::sys::set_nonblocking(&read)?;
    crate::sys::set_nonblocking(&write)?;
    // The write end stays open for the process's life: the handler may run at any time.
    SIGNAL_PIPE.store(write.into_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    for signal in signals {
        // SAFETY: the handler only does an atomic load and a write(2).
        unsafe { libc::signal(*signal, on_signal as *const () as libc::sighandler_t) };
    }
    Ok(read)
}

/// A `pollfd` waiting for input on `fd`.
pub(crate) fn poll_in(fd: std::os::fd::RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// `poll(2)` on `fds` for at most `timeout` (forever without); an interrupted wait is no error.
pub(crate) fn poll(
    fds: &mut [libc::pollfd],
    timeout: Option<std::time::Duration>,
) -> std::io::Result<()> {
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
    // SAFETY: `fds` is a valid array of pollfd of the length given.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pool_shim_says_it_is_ready_as_the_cli_expects() {
        assert!(super::POOL_SHIM.contains(super::POOL_READY_LINE));
    }
}

/// Exit codes of `drover session-exec`, which become the exec job's.
pub mod exit {
    /// The code ran without an error.
    pub const OK: u8 = 0;
    /// The code raised an exception or a GP error.
    pub const ERROR: u8 = 1;
    /// The session could not be reached (it has ended, or runs on another machine).
    pub const NO_SESSION: u8 = 3;
    /// The session's interpreter ended during the exec.
    pub const SESSION_ENDED: u8 = 4;
    /// The exec was interrupted (its timeout or a cancel); 128 + SIGINT, as a shell says it.
    pub const INTERRUPTED: u8 = 130;
}
