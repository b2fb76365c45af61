//! The Linux spawn: `clone(CLONE_VM | CLONE_VFORK)` with the gate in the child.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::raw::{c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;

use super::{ChildFds, GATE_OPEN, PlanInput};
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
    pub(super) fn new(input: PlanInput<'_>) -> io::Result<Self> {
        let PlanInput {
            path,
            argv,
            env,
            cwd,
            fds,
            rlimits,
        } = input;
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
