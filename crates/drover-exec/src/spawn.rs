//! Starting a job in its own process group, held at a gate before `exec`.
//!
//! # Why a gate
//! The store must know a job's process group before that group can run anything, or a crash
//! between `fork` and the write could leave a process tree nobody knows to kill. So the child,
//! before `exec`, puts itself in a new process group, writes its pid to a pipe, and blocks reading
//! a second pipe (the gate). The node records the pid durably and then opens the gate with one
//! byte ([`GATE_OPEN`]); any other byte makes the child exit without `exec`.
//!
//! If the node dies while a child waits at the gate, the child must not wait forever. On Linux it
//! sets `PR_SET_PDEATHSIG` (SIGKILL) before it blocks — it dies with the thread that created it,
//! which stays blocked until the child execs — and clears it after the gate opens. Elsewhere it
//! waits in `poll` with a short timeout and checks whether its parent changed.
//!
//! The gate is always answered with an explicit byte, never by closing the pipe: another child
//! started meanwhile may hold a copy of the write end until it execs, so EOF could come late.
//!
//! # Why not `fork`
//! Forking the node copies its page tables, and every page the node then writes takes a
//! copy-on-write fault plus a TLB shootdown on every other CPU; measured here, that was ~4 ms of
//! node CPU per job. On Linux the child is therefore created the way `posix_spawn` does it:
//! `clone(CLONE_VM | CLONE_VFORK)` on a small stack of its own, touching only that stack and a
//! plan prepared beforehand, making raw system calls only. Other platforms use `fork` through
//! `std::process::Command` with the same gate in a `pre_exec` hook.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use crate::contain::{ChildRlimit, register_leader};
use crate::{StartRequest, sys};

/// The byte that lets a held child `exec`.
pub const GATE_OPEN: u8 = 1;
/// The byte that makes a held child exit without running anything.
pub const GATE_ABORT: u8 = 0;

/// A child in its own process group, waiting at the gate.
#[derive(Debug)]
pub struct GatedChild {
    /// The child's pid, which is also its process group id.
    pub pid: i32,
    /// Its start time, to recognise a reused pid later.
    pub proc_start: Option<u64>,
    gate: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// Answered once the child has exec'd (`Ok`), or failed to (`Err`, child already reaped).
    spawned: oneshot::Receiver<io::Result<()>>,
}

/// A child that passed the gate and has exec'd.
#[derive(Debug)]
pub struct ReleasedChild {
    /// Leader pid = process group id.
    pub pid: i32,
    /// Read end of its stdout pipe.
    pub stdout: OwnedFd,
    /// Read end of its stderr pipe.
    pub stderr: OwnedFd,
}

/// The descriptors a child needs; the parent keeps the other ends.
struct ChildFds {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    pid: OwnedFd,
    gate: OwnedFd,
}

/// Starts the job described by `req` and returns once it waits at the gate.
///
/// An error here means no process is left behind: the program could not be found, or the child
/// failed before the gate (a bad working directory, say) and has been reaped.
pub async fn spawn_gated(req: &StartRequest, rlimits: &[ChildRlimit]) -> io::Result<GatedChild> {
    let Some(program) = req.argv.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
    };
    let env = job_env(&req.env, &req.env_remove, req.env_clear);
    let path = resolve_program(program, &env, req.cwd.as_deref())?;
    let (pid_read, pid_write) = sys::pipe_cloexec()?;
    let (gate_read, gate_write) = sys::pipe_cloexec()?;
    let (stdout_read, stdout_write) = if req.pty {
        sys::pty_cloexec()?
    } else {
        sys::pipe_cloexec()?
    };
    let (stderr_read, stderr_write) = if req.pty {
        // One terminal for both streams, as in a shell: the stderr pipe stays empty, its write
        // end dropped here so that its reader sees the end at once.
        let (read, _) = sys::pipe_cloexec()?;
        (read, stdout_write.try_clone()?)
    } else {
        sys::pipe_cloexec()?
    };
    let stdin = std::fs::File::open("/dev/null")?.into();
    let fds = ChildFds {
        stdin,
        stdout: stdout_write,
        stderr: stderr_write,
        pid: pid_write,
        gate: gate_read,
    };
    let plan = platform::Plan::new(PlanInput {
        path: &path,
        argv: &req.argv,
        env: &env,
        cwd: req.cwd.as_deref(),
        fds,
        rlimits,
    })?;

    let (spawned_tx, mut spawned) = oneshot::channel();
    spawner::run(Box::new(move || {
        // Blocks until the child execs or exits; the gate decides which.
        let _ = spawned_tx.send(platform::start(plan));
    }))?;

    let mut pid_pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(pid_read)?;
    let mut pid_bytes = [0u8; 4];
    tokio::select! {
        read = pid_pipe.read_exact(&mut pid_bytes) => {
            if let Err(read_err) = read {
                // No pid: the child failed before the gate; the start result says why.
                return Err(match spawned.await {
                    Ok(Err(err)) => err,
                    _ => read_err,
                });
            }
        }
        result = &mut spawned => {
            return Err(match result {
                Ok(Err(err)) => err,
                _ => io::Error::other("child ended before the gate"),
            });
        }
    }
    let pid = i32::from_ne_bytes(pid_bytes);
    // From here on the supervisor collects this child's status; a stray-reaper must not.
    register_leader(pid);
    Ok(GatedChild {
        pid,
        proc_start: sys::process_start_time(pid),
        gate: gate_write,
        stdout: stdout_read,
        stderr: stderr_read,
        spawned,
    })
}

impl GatedChild {
    /// Opens the gate. Returns the running child, or the `exec` error (no permission, not an
    /// executable) — in which case the child is already gone.
    pub async fn release(self) -> io::Result<ReleasedChild> {
        sys::write_byte(&self.gate, GATE_OPEN)?;
        self.spawned
            .await
            .map_err(|_| io::Error::other("spawn thread vanished"))??;
        Ok(ReleasedChild {
            pid: self.pid,
            stdout: self.stdout,
            stderr: self.stderr,
        })
    }

    /// Tells the child to exit without running anything, and waits until it is reaped.
    pub async fn abort(self) {
        let _ = sys::write_byte(&self.gate, GATE_ABORT);
        let _ = self.spawned.await;
        // The child exited at the gate; reap it so it does not linger as a zombie.
        let pid = self.pid;
        let _ = tokio::task::spawn_blocking(move || sys::wait4(pid, true)).await;
        crate::contain::forget_leader(pid);
    }
}

mod spawner {
    //! Long-lived threads that create children. Each blocks while its child waits at the gate,
    //! so there are as many as children waiting at once; idle ones wait for the next job.
    //! They never exit, which also keeps `PR_SET_PDEATHSIG` (tied to the creating thread) from
    //! firing while the node lives.

    use std::io;
    use std::sync::Mutex;
    use std::sync::mpsc::{Sender, channel};

    type Work = Box<dyn FnOnce() + Send>;

    static IDLE: Mutex<Vec<Sender<Work>>> = Mutex::new(Vec::new());

    /// Runs `work` on an idle spawner thread, starting a new one if none is idle.
    pub(super) fn run(work: Work) -> io::Result<()> {
        let idle = IDLE.lock().ok().and_then(|mut idle| idle.pop());
        let work = match idle {
            Some(worker) => match worker.send(work) {
                Ok(()) => return Ok(()),
                Err(returned) => returned.0,
            },
            None => work,
        };
        let (tx, rx) = channel::<Work>();
        std::thread::Builder::new()
            .name("drover-spawn".into())
            .spawn(move || {
                let mut next = Some(work);
                while let Some(work) = next.take() {
                    work();
                    if let Ok(mut idle) = IDLE.lock() {
                        idle.push(tx.clone());
                    }
                    next = rx.recv().ok();
                }
            })?;
        Ok(())
    }
}

/// The job's environment: the node's less the variables `removed` names with the job's on top,
/// or, when `clear`, the job's alone (with a default `PATH` if it has none).
fn job_env(
    overrides: &[(String, String)],
    removed: &[String],
    clear: bool,
) -> Vec<(OsString, OsString)> {
    let inherited = std::env::vars_os().filter(|_| !clear);
    let mut env: Vec<(OsString, OsString)> = inherited
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| OsStr::new(o) == k))
        .filter(|(k, _)| !removed.iter().any(|r| OsStr::new(r) == k))
        .collect();
    env.extend(overrides.iter().map(|(k, v)| (k.into(), v.into())));
    if clear && !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), crate::DEFAULT_PATH.into()));
    }
    env
}

/// Finds the file to exec: `program` itself if it has a slash, else the first executable match
/// in the job's `PATH`. Done before the child exists, so a missing program never forks.
fn resolve_program(
    program: &str,
    env: &[(OsString, OsString)],
    cwd: Option<&Path>,
) -> io::Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from(crate::DEFAULT_PATH));
    for dir in std::env::split_paths(&path_var) {
        let dir = match (dir.is_relative(), cwd) {
            (true, Some(cwd)) => cwd.join(dir),
            _ => dir,
        };
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOENT))
}

fn is_executable(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access reads a NUL-terminated path we own.
    let executable = unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0;
    executable && path.metadata().is_ok_and(|m| m.is_file())
}

/// What a platform's plan is made from.
struct PlanInput<'a> {
    path: &'a Path,
    argv: &'a [String],
    env: &'a [(OsString, OsString)],
    cwd: Option<&'a Path>,
    fds: ChildFds,
    rlimits: &'a [ChildRlimit],
}

#[cfg(target_os = "linux")]
#[path = "spawn/linux.rs"]
mod platform;

#[cfg(not(target_os = "linux"))]
#[path = "spawn/fork.rs"]
mod platform;

#[cfg(test)]
mod tests;
