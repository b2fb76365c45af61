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
    let env = merged_env(&req.env, &req.env_remove);
    let path = resolve_program(program, &env, req.cwd.as_deref())?;
    let (pid_read, pid_write) = sys::pipe_cloexec()?;
    let (gate_read, gate_write) = sys::pipe_cloexec()?;
    let (stdout_read, stdout_write) = sys::pipe_cloexec()?;
    let (stderr_read, stderr_write) = sys::pipe_cloexec()?;
    let stdin = std::fs::File::open("/dev/null")?.into();
    let fds = ChildFds {
        stdin,
        stdout: stdout_write,
        stderr: stderr_write,
        pid: pid_write,
        gate: gate_read,
    };
    let plan = platform::Plan::new(&path, &req.argv, &env, req.cwd.as_deref(), fds, rlimits)?;

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

/// The node's environment less `removed`, with the job's variables on top.
fn merged_env(overrides: &[(String, String)], removed: &[String]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| OsStr::new(o) == k))
        .filter(|(k, _)| !removed.iter().any(|r| OsStr::new(r) == k))
        .collect();
    env.extend(overrides.iter().map(|(k, v)| (k.into(), v.into())));
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
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
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

#[cfg(target_os = "linux")]
mod platform {
    //! `clone(CLONE_VM | CLONE_VFORK)` with the gate in the child.

    use std::ffi::{CString, OsString};
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::raw::{c_char, c_int, c_void};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::{ChildFds, GATE_OPEN};
    use crate::contain::ChildRlimit;
    use crate::sys;

    fn cstring(bytes: &[u8]) -> io::Result<CString> {
        CString::new(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a NUL byte in argv, env or cwd",
            )
        })
    }

    /// Stack for the child until it execs. It runs a few dozen system calls and nothing else.
    const CHILD_STACK: usize = 64 * 1024;

    /// Everything the child reads, prepared by the parent: the child must not allocate.
    pub(super) struct Plan {
        path: CString,
        argv: Vec<*const c_char>,
        envp: Vec<*const c_char>,
        cwd: Option<CString>,
        fds: ChildFds,
        /// Where the child reports an errno before exiting, if it cannot exec.
        err_read: OwnedFd,
        err_write: OwnedFd,
        parent: libc::pid_t,
        rlimits: Vec<(c_int, libc::rlimit)>,
        _strings: Vec<CString>,
    }

    // SAFETY: the raw pointers point into `_strings`, which the plan owns and never changes.
    unsafe impl Send for Plan {}

    impl Plan {
        pub(super) fn new(
            path: &Path,
            argv: &[String],
            env: &[(OsString, OsString)],
            cwd: Option<&Path>,
            fds: ChildFds,
            rlimits: &[ChildRlimit],
        ) -> io::Result<Self> {
            let mut strings = Vec::with_capacity(argv.len() + env.len());
            let mut argv_ptrs = Vec::with_capacity(argv.len() + 1);
            for arg in argv {
                let s = cstring(arg.as_bytes())?;
                argv_ptrs.push(s.as_ptr());
                strings.push(s);
            }
            argv_ptrs.push(std::ptr::null());
            let mut envp = Vec::with_capacity(env.len() + 1);
            for (key, value) in env {
                let mut entry = key.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                let s = cstring(&entry)?;
                envp.push(s.as_ptr());
                strings.push(s);
            }
            envp.push(std::ptr::null());
            let (err_read, err_write) = sys::pipe_cloexec()?;
            sys::set_nonblocking(&err_read)?;
            Ok(Self {
                path: cstring(path.as_os_str().as_bytes())?,
                argv: argv_ptrs,
                envp,
                cwd: cwd.map(|c| cstring(c.as_os_str().as_bytes())).transpose()?,
                fds,
                err_read,
                err_write,
                parent: std::process::id() as libc::pid_t,
                rlimits: rlimits
                    .iter()
                    .map(|r| {
                        let value = r.value as libc::rlim_t;
                        (
                            r.resource as c_int,
                            libc::rlimit {
                                rlim_cur: value,
                                rlim_max: value,
                            },
                        )
                    })
                    .collect(),
                _strings: strings,
            })
        }
    }

    thread_local! {
        /// Each spawner thread reuses one child stack: only one of its children runs at a time.
        static STACK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHILD_STACK]);
    }

    /// Creates the child and blocks until it has exec'd (`Ok`) or exited. An exec failure is
    /// returned as its OS error, with the child reaped. A child told to abort at the gate also
    /// returns `Ok`: the caller, who aborted it, reaps it.
    pub(super) fn start(plan: Plan) -> io::Result<()> {
        STACK.with(|stack| start_on(&plan, &mut stack.borrow_mut()))
    }

    fn start_on(plan: &Plan, stack: &mut [u8]) -> io::Result<()> {
        // SAFETY: one past the end of the allocation, rounded down to 16 bytes as the ABI needs.
        let top = unsafe { stack.as_mut_ptr().add(stack.len()) };
        let top = (top as usize & !15) as *mut c_void;
        // SAFETY: all-ones sigset from sigfillset; the old mask is restored below. Blocking every
        // signal here means no signal handler of the node can run in the child (which shares the
        // node's memory) before it execs.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::clone(
                child_main,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (plan as *const Plan).cast_mut().cast(),
            );
            let clone_error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err(clone_error);
            }
            pid
        };
        // The child has exec'd or exited: if it wrote an errno, it failed.
        let mut errno = [0u8; 4];
        // SAFETY: reads into a 4-byte stack buffer from a non-blocking descriptor we own.
        let n = unsafe { libc::read(plan.err_read.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
        if n == 4 {
            let _ = sys::wait4(pid, true);
            return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
        }
        Ok(())
    }

    /// Closes descriptors `first..=last`; on kernels without close_range (before 5.9) the extra
    /// descriptors simply stay open until exec closes them.
    unsafe fn close_range(first: c_int, last: c_int) {
        // SAFETY: close_range takes plain integers.
        unsafe {
            libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32);
        }
    }

    /// Reports `errno` to the parent and exits without exec.
    unsafe fn fail(plan: &Plan) -> ! {
        // SAFETY: raw system calls on descriptors the plan holds open.
        unsafe {
            let code = (*libc::__errno_location()).to_ne_bytes();
            libc::write(plan.err_write.as_raw_fd(), code.as_ptr().cast(), 4);
            libc::_exit(127)
        }
    }

    /// The child, between clone and exec. It shares the node's memory, so it only reads the plan,
    /// writes its own stack, and makes system calls.
    extern "C" fn child_main(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the plan, alive until the parent's clone call returns, which is after
        // this function execs or exits.
        unsafe {
            let plan = &*(arg as *const Plan);
            if libc::setpgid(0, 0) != 0 {
                fail(plan);
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                fail(plan);
            }
            // The parent may have died before the line above took effect.
            if libc::syscall(libc::SYS_getppid) as libc::pid_t != plan.parent {
                libc::_exit(126);
            }
            // Before the gate: a bad working directory fails before the job counts as running.
            for (fd, target) in [
                (plan.fds.stdin.as_raw_fd(), 0),
                (plan.fds.stdout.as_raw_fd(), 1),
                (plan.fds.stderr.as_raw_fd(), 2),
            ] {
                // dup2 onto itself is a no-op that keeps close-on-exec: clear it instead.
                let ok = if fd == target {
                    libc::fcntl(fd, libc::F_SETFD, 0) == 0
                } else {
                    libc::dup2(fd, target) >= 0
                };
                if !ok {
                    fail(plan);
                }
            }
            if let Some(cwd) = &plan.cwd {
                if libc::chdir(cwd.as_ptr()) != 0 {
                    fail(plan);
                }
            }
            // Limits before the gate too: one the kernel refuses fails the start, not the job.
            for (resource, limit) in &plan.rlimits {
                if libc::setrlimit(*resource as _, limit) != 0 {
                    fail(plan);
                }
            }
            // Keep only what the child needs. Every other descriptor of the node is close-on-exec
            // anyway, but a child waiting at the gate would hold them until it execs — among them
            // other jobs' output pipes, whose end-of-file (and so completion) it would delay.
            let mut keep = [
                plan.fds.pid.as_raw_fd(),
                plan.fds.gate.as_raw_fd(),
                plan.err_write.as_raw_fd(),
            ];
            keep.sort_unstable();
            let mut first = 3;
            for fd in keep {
                if fd > first {
                    close_range(first, fd - 1);
                }
                first = first.max(fd + 1);
            }
            close_range(first, c_int::MAX);
            let pid = (libc::syscall(libc::SYS_getpid) as libc::pid_t).to_ne_bytes();
            let mut written = 0;
            while written < pid.len() {
                let rc = libc::write(
                    plan.fds.pid.as_raw_fd(),
                    pid[written..].as_ptr().cast(),
                    pid.len() - written,
                );
                if rc > 0 {
                    written += rc as usize;
                } else if *libc::__errno_location() != libc::EINTR {
                    fail(plan);
                }
            }
            let mut byte = 0u8;
            loop {
                let rc = libc::read(plan.fds.gate.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                if rc == 1 {
                    break;
                }
                if rc == 0 || *libc::__errno_location() != libc::EINTR {
                    libc::_exit(126);
                }
            }
            if byte != GATE_OPEN {
                libc::_exit(126);
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, 0) != 0 {
                fail(plan);
            }
            // The job starts with default signal dispositions (the node ignores SIGPIPE, say)
            // and nothing blocked. This process has its own copy of the handler table.
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            for signal in 1..65 {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::sigaction(signal, &default, std::ptr::null_mut());
                }
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::execve(plan.path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            fail(plan)
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    //! `fork` through `std::process::Command`, with the gate in a `pre_exec` hook.

    use std::ffi::OsString;
    use std::io;
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::{ChildFds, GATE_ABORT, GATE_OPEN};
    use crate::contain::ChildRlimit;

    pub(super) struct Plan {
        command: Command,
        _fds: ChildFds,
    }

    impl Plan {
        pub(super) fn new(
            path: &Path,
            argv: &[String],
            env: &[(OsString, OsString)],
            cwd: Option<&Path>,
            fds: ChildFds,
            rlimits: &[ChildRlimit],
        ) -> io::Result<Self> {
            let mut command = Command::new(path);
            command
                .arg0(&argv[0])
                .args(&argv[1..])
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::from(fds.stdin.try_clone()?))
                .stdout(Stdio::from(fds.stdout.try_clone()?))
                .stderr(Stdio::from(fds.stderr.try_clone()?));
            if let Some(cwd) = cwd {
                command.current_dir(cwd);
            }
            let parent = std::process::id() as i32;
            let (pid_fd, gate_fd) = (fds.pid.as_raw_fd(), fds.gate.as_raw_fd());
            let rlimits: Vec<(i32, libc::rlimit)> = rlimits
                .iter()
                .map(|r| {
                    let value = r.value as libc::rlim_t;
                    (
                        r.resource,
                        libc::rlimit {
                            rlim_cur: value,
                            rlim_max: value,
                        },
                    )
                })
                .collect();
            // SAFETY: the hook makes only async-signal-safe calls on descriptors that stay open
            // in the parent (held by `_fds`) until `spawn` returns.
            unsafe {
                command.pre_exec(move || {
                    for (resource, limit) in &rlimits {
                        if libc::setrlimit(*resource as _, limit) != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    child_at_gate(parent, pid_fd, gate_fd)
                });
            }
            Ok(Self { command, _fds: fds })
        }
    }

    pub(super) fn start(mut plan: Plan) -> io::Result<()> {
        // A child told to abort fails its pre_exec hook; std reaps it and reports ECANCELED.
        plan.command.spawn().map(drop)
    }

    fn child_at_gate(parent: i32, pid_fd: RawFd, gate_fd: RawFd) -> io::Result<()> {
        // SAFETY (whole function): plain system calls on integers and stack buffers.
        unsafe {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            let pid_bytes = libc::getpid().to_ne_bytes();
            if libc::write(pid_fd, pid_bytes.as_ptr().cast(), 4) != 4 {
                return Err(io::Error::last_os_error());
            }
            let mut byte = GATE_ABORT;
            loop {
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
                let rc = libc::read(gate_fd, (&mut byte as *mut u8).cast(), 1);
                if rc == 1 {
                    break;
                }
                if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    return Err(io::Error::from_raw_os_error(libc::ECANCELED));
                }
            }
            if byte != GATE_OPEN {
                return Err(io::Error::from_raw_os_error(libc::ECANCELED));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_the_jobs_path() {
        let env = vec![(
            OsString::from("PATH"),
            OsString::from("/nonexistent:/bin:/usr/bin"),
        )];
        let sh = resolve_program("sh", &env, None).expect("sh is on PATH");
        assert!(sh.ends_with("sh"));
        let missing = resolve_program("no-such-program-xyz", &env, None).expect_err("missing");
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(
            resolve_program("./x", &env, None).expect("as is"),
            PathBuf::from("./x")
        );
    }

    #[test]
    fn job_variables_override_the_nodes() {
        let env = merged_env(&[("PATH".into(), "/only/here".into())], &[]);
        let paths: Vec<_> = env.iter().filter(|(k, _)| k == "PATH").collect();
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].1, OsString::from("/only/here"));
    }

    #[test]
    fn removed_variables_are_not_inherited_but_may_be_set() {
        // HOME is in every test's environment; PATH is removed and then set by the job.
        let removed = ["HOME".to_string(), "PATH".to_string()];
        let env = merged_env(&[("PATH".into(), "/mine".into())], &removed);
        assert!(env.iter().all(|(k, _)| k != "HOME"), "HOME was removed");
        let paths: Vec<_> = env.iter().filter(|(k, _)| k == "PATH").collect();
        assert_eq!(paths, [&(OsString::from("PATH"), OsString::from("/mine"))]);
    }
}
