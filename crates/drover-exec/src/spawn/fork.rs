//! The spawn elsewhere (macOS): `fork` through `std::process::Command`, the gate in `pre_exec`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{ChildFds, GATE_ABORT, GATE_OPEN, PlanInput};

pub(super) struct Plan {
    command: Command,
    _fds: ChildFds,
}

impl Plan {
    pub(super) fn new(input: PlanInput<'_>) -> io::Result<Self> {
        let (path, argv, env, cwd) = (input.path, input.argv, input.env, input.cwd);
        let (fds, rlimits) = (input.fds, input.rlimits);
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
