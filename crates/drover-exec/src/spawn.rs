//! Forking a job into its own process group, held at a gate before `exec`.
//!
//! # Why a gate
//! The store must know a job's process group before that group can run anything, or a crash
//! between `fork` and the write could leave a process tree nobody knows to kill. So the child,
//! after `fork` and before `exec`, puts itself in a new process group, writes its pid to a pipe,
//! and blocks reading a second pipe (the gate). The node records the pid durably and then opens
//! the gate with one byte ([`GATE_OPEN`]); any other byte makes the child exit without `exec`.
//!
//! If the node dies while a child waits at the gate, the child must not wait forever. On Linux it
//! sets `PR_SET_PDEATHSIG` (SIGKILL) before it blocks — safe because the forking thread stays
//! blocked inside `spawn` until the child execs — and clears it after the gate opens. Elsewhere it
//! waits in `poll` with a short timeout and checks whether its parent changed.
//!
//! The gate is always answered with an explicit byte, never by closing the pipe: another child
//! forked meanwhile may hold a copy of the write end until it execs, so EOF could come late.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Stdio};

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::{StartRequest, sys};

/// The byte that lets a held child `exec`.
pub const GATE_OPEN: u8 = 1;
/// The byte that makes a held child exit without running anything.
pub const GATE_ABORT: u8 = 0;

/// A forked child in its own process group, waiting at the gate.
#[derive(Debug)]
pub struct GatedChild {
    /// The child's pid, which is also its process group id.
    pub pid: i32,
    /// Its start time, to recognise a reused pid later.
    pub proc_start: Option<u64>,
    gate: OwnedFd,
    spawned: oneshot::Receiver<io::Result<Child>>,
}

/// A child that passed the gate and has exec'd.
#[derive(Debug)]
pub struct ReleasedChild {
    /// Leader pid = process group id.
    pub pid: i32,
    /// Its stdout pipe.
    pub stdout: ChildStdout,
    /// Its stderr pipe.
    pub stderr: ChildStderr,
}

/// Forks the job described by `req` and returns once it waits at the gate.
///
/// An error here means no process is left behind: either the fork failed, or the child failed
/// before the gate (a bad working directory, say) and was reaped by `std`.
pub async fn spawn_gated(req: &StartRequest) -> io::Result<GatedChild> {
    let Some(program) = req.argv.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
    };
    let (pid_read, pid_write) = sys::pipe_cloexec()?;
    let (gate_read, gate_write) = sys::pipe_cloexec()?;

    let mut cmd = std::process::Command::new(program);
    cmd.args(&req.argv[1..])
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    let parent = std::process::id() as i32;
    let (pid_fd, gate_fd) = (pid_write.as_raw_fd(), gate_read.as_raw_fd());
    // SAFETY: the closure only makes async-signal-safe calls (setpgid, prctl, getppid, getpid,
    // write, read, poll) on descriptors that stay open in the parent until `spawn` returns.
    unsafe {
        cmd.pre_exec(move || child_at_gate(parent, pid_fd, gate_fd));
    }

    let (spawned_tx, mut spawned) = oneshot::channel();
    std::thread::Builder::new()
        .name("drover-spawn".into())
        .spawn(move || {
            // Blocks until the child execs or fails; the gate decides which.
            let result = cmd.spawn();
            drop((pid_write, gate_read));
            let _ = spawned_tx.send(result);
        })?;

    let mut pid_pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(pid_read)?;
    let mut pid_bytes = [0u8; 4];
    tokio::select! {
        read = pid_pipe.read_exact(&mut pid_bytes) => {
            if let Err(read_err) = read {
                // No pid: the child failed before the gate; the spawn result says why.
                return Err(spawn_error(spawned.await, read_err));
            }
        }
        result = &mut spawned => {
            return Err(spawn_error(result, io::Error::other("child ended before the gate")));
        }
    }
    let pid = i32::from_ne_bytes(pid_bytes);
    Ok(GatedChild {
        pid,
        proc_start: sys::process_start_time(pid),
        gate: gate_write,
        spawned,
    })
}

/// The error to report when no pid came through the pipe.
fn spawn_error(
    result: Result<io::Result<Child>, oneshot::error::RecvError>,
    fallback: io::Error,
) -> io::Error {
    match result {
        Ok(Err(err)) => err,
        Ok(Ok(mut child)) => {
            // Cannot happen (exec needs the gate), but never leave a process behind.
            let _ = child.kill();
            let _ = child.wait();
            fallback
        }
        Err(_) => fallback,
    }
}

impl GatedChild {
    /// Opens the gate. Returns the running child, or the `exec` error (missing binary, no
    /// permission) — in which case the child is already gone.
    pub async fn release(self) -> io::Result<ReleasedChild> {
        sys::write_byte(&self.gate, GATE_OPEN)?;
        let mut child = self
            .spawned
            .await
            .map_err(|_| io::Error::other("spawn thread vanished"))??;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(io::Error::other("child pipes missing"));
        };
        Ok(ReleasedChild {
            pid: self.pid,
            stdout,
            stderr,
        })
    }

    /// Tells the child to exit without running anything, and waits until it has.
    pub async fn abort(self) {
        let _ = sys::write_byte(&self.gate, GATE_ABORT);
        if let Ok(Ok(mut child)) = self.spawned.await {
            // Only if the gate was somehow opened: stop what started.
            let _ = sys::signal_group(self.pid, libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Runs in the child between `fork` and `exec`. Async-signal-safe calls only: no allocation.
fn child_at_gate(parent: i32, pid_fd: RawFd, gate_fd: RawFd) -> io::Result<()> {
    // SAFETY (whole function): plain syscalls on integers and stack buffers.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        #[cfg(target_os = "linux")]
        {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the line above took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ECANCELED));
            }
        }
        let pid_bytes = libc::getpid().to_ne_bytes();
        let mut written = 0;
        while written < pid_bytes.len() {
            let rc = libc::write(
                pid_fd,
                pid_bytes[written..].as_ptr().cast(),
                pid_bytes.len() - written,
            );
            if rc > 0 {
                written += rc as usize;
            } else if rc < 0 && *errno() != libc::EINTR {
                return Err(io::Error::last_os_error());
            }
        }
        let mut byte = GATE_ABORT;
        loop {
            #[cfg(not(target_os = "linux"))]
            {
                let mut fds = libc::pollfd {
                    fd: gate_fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                if libc::poll(&mut fds, 1, 100) == 0 {
                    if libc::getppid() != parent {
                        return Err(io::Error::from_raw_os_error(libc::ECANCELED));
                    }
                    continue;
                }
            }
            let rc = libc::read(gate_fd, (&mut byte as *mut u8).cast(), 1);
            if rc == 1 {
                break;
            }
            if rc == 0 || *errno() != libc::EINTR {
                return Err(io::Error::from_raw_os_error(libc::ECANCELED));
            }
        }
        if byte != GATE_OPEN {
            return Err(io::Error::from_raw_os_error(libc::ECANCELED));
        }
        #[cfg(target_os = "linux")]
        if libc::prctl(libc::PR_SET_PDEATHSIG, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
unsafe fn errno() -> *mut libc::c_int {
    // SAFETY: __errno_location always returns this thread's errno.
    unsafe { libc::__errno_location() }
}

#[cfg(target_os = "macos")]
unsafe fn errno() -> *mut libc::c_int {
    // SAFETY: __error always returns this thread's errno.
    unsafe { libc::__error() }
}
