//! `drover pool-run`: the job that is one job of a pool. Its owner started it like any job, in
//! the job's own cell with the job's limits. It asks one of the pool's warm parents on this node
//! to fork the job, and hands over its stdin, stdout and stderr (the job's logs), its working
//! directory, environment and rlimits, and the `cgroup.procs` files of its cell; the forked
//! child joins that cell before it runs any of the job's code, so the job's limits, whole-tree
//! kill and accounting hold for it exactly as for any job. `pool-run` then waits for the
//! parent to say how the child ended, and ends the same way (the same exit code, or killed by
//! the same signal), so that the owner records the job's own ending.
//!
//! Signals: in a cgroup cell, the owner's SIGTERM (timeout, cancel) and checkpoint signal reach
//! the child directly, as a member of the cell, and `pool-run` ignores them. Without cgroups
//! (the rlimit backend) it passes them on to the child's process group through the parent. If
//! `pool-run` dies, the parent kills the child's group: nothing of a job runs on without it.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::poll_in;

/// How long a job waits for a parent of its pool to answer (one that is being recycled, or
/// starting) before it fails.
pub const PARENT_WAIT: Duration = Duration::from_secs(30);

/// Exit codes of `drover pool-run` for its own failures (a job's own code is passed through).
pub mod exit {
    /// No pool of that name runs on this node, or none of its parents answered in time.
    pub const NO_POOL: u8 = 125;
    /// The parent could not make the forked child the job (its cell, its streams).
    pub const NOT_STARTED: u8 = 126;
}

/// Why a pooled job could not be run.
#[derive(Debug, thiserror::Error)]
pub enum PoolRunError {
    /// The pool has no parent here.
    #[error("no parent of the pool `{pool}` came up on this node within {}s ({} has none): is the pool there (`drover pool ls`)?", PARENT_WAIT.as_secs(), dir.display())]
    NoPool {
        /// The pool.
        pool: String,
        /// Where its parents' sockets would be.
        dir: PathBuf,
    },
    /// Parents exist but none answered in time.
    #[error("no parent of the pool `{pool}` answered within {}s (all recycling or starting?)", PARENT_WAIT.as_secs())]
    NoAnswer {
        /// The pool.
        pool: String,
    },
    /// The parent said it could not start the job.
    #[error("the pool's parent could not start the job: {0}")]
    Refused(String),
    /// The parent went away before the job ended.
    #[error("the pool's parent went away before the job ended")]
    ParentGone(#[source] io::Error),
    /// Something this process needs failed.
    #[error("{what}")]
    Io {
        /// What it was doing.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// How the forked child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    /// It exited with this code.
    Exited(u8),
    /// A signal killed it.
    Signalled(i32),
}

impl ChildEnd {
    /// Ends this process the way the child ended.
    pub fn reproduce(self) -> u8 {
        match self {
            ChildEnd::Exited(code) => code,
            ChildEnd::Signalled(signal) => {
                // SAFETY: restoring the default action and raising a signal at ourselves.
                unsafe {
                    libc::signal(signal, libc::SIG_DFL);
                    libc::raise(signal);
                }
                // A signal whose default is not to die (SIGCHLD, say): say so as a shell would.
                u8::try_from(128 + signal).unwrap_or(255)
            }
        }
    }
}

/// The signals passed on to the child without cgroups.
const PASSED_ON: [i32; 5] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Runs `argv` (a script and its arguments, `-c CODE` or `-m MODULE`) in a parent of the pool
/// `pool`, whose sockets are in `dir`, as this job. Returns how the child ended.
pub fn run_pooled(pool: &str, dir: &Path, argv: &[String]) -> Result<ChildEnd, PoolRunError> {
    let cell = match (
        std::env::var("DROVER_JOB_ID"),
        std::env::var("DROVER_ATTEMPT"),
    ) {
        (Ok(job), Ok(attempt)) => format!("{job}.{attempt}"),
        _ => String::new(),
    };
    let cgroup_procs = if cell.is_empty() {
        Vec::new()
    } else {
        crate::contain::own_cell_procs(&cell)
    };
    let in_cell = !cgroup_procs.is_empty();
    let signals = watch_signals(in_cell)?;
    let request = serde_json::json!({
        "argv": argv,
        "cwd": std::env::current_dir().map_err(|source| PoolRunError::Io { what: "cannot read the working directory", source })?,
        "env": std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "cgroup_procs": cgroup_procs,
        "rlimits": rlimits(),
    });
    let mut body = serde_json::to_vec(&request).map_err(|e| PoolRunError::Io {
        what: "cannot write the request",
        source: e.into(),
    })?;
    body.push(b'\n');
    let mut conn = connect(pool, dir)?;
    send_with_fds(&conn, &body, &[0, 1, 2]).map_err(PoolRunError::ParentGone)?;
    let mut replies = BufReader::new(conn.try_clone().map_err(PoolRunError::ParentGone)?);
    let mut line = String::new();
    loop {
        let mut fds = [poll_in(conn.as_raw_fd()), poll_in(signals.as_raw_fd())];
        super::poll(&mut fds, None).map_err(PoolRunError::ParentGone)?;
        if fds[1].revents != 0 {
            let mut got = [0u8; 16];
            // SAFETY: reading into a local buffer from our own pipe.
            let n = unsafe { libc::read(signals.as_raw_fd(), got.as_mut_ptr().cast(), got.len()) };
            for signal in got.iter().take(usize::try_from(n).unwrap_or(0)) {
                let message = format!("{{\"signal\": {signal}}}\n");
                let _ = conn.write_all(message.as_bytes());
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        line.clear();
        match replies.read_line(&mut line) {
            Ok(0) => {
                return Err(PoolRunError::ParentGone(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(_) => {}
            Err(err) => return Err(PoolRunError::ParentGone(err)),
        }
        let reply: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| PoolRunError::ParentGone(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        if let Some(code) = reply.get("exit").and_then(serde_json::Value::as_u64) {
            return Ok(ChildEnd::Exited(u8::try_from(code).unwrap_or(255)));
        }
        if let Some(signal) = reply.get("signal").and_then(serde_json::Value::as_i64) {
            return Ok(ChildEnd::Signalled(
                i32::try_from(signal).unwrap_or(libc::SIGKILL),
            ));
        }
        if let Some(error) = reply.get("error").and_then(serde_json::Value::as_str) {
            return Err(PoolRunError::Refused(error.to_string()));
        }
        // {"pid": N}: the child runs.
    }
}

/// A connection to one of the pool's parents: each socket in `dir` is tried, starting at one
/// picked by this process's pid so that jobs spread over the parents; while none answers (a
/// parent still importing its modules, or being recycled), again until [`PARENT_WAIT`].
fn connect(pool: &str, dir: &Path) -> Result<UnixStream, PoolRunError> {
    let deadline = Instant::now() + PARENT_WAIT;
    let mut seen = false;
    loop {
        let mut sockets: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => {
                seen = true;
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                    .collect()
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(PoolRunError::Io {
                    what: "cannot list the pool's parents",
                    source,
                });
            }
        };
        sockets.sort();
        if !sockets.is_empty() {
            let start = std::process::id() as usize % sockets.len();
            sockets.rotate_left(start);
            for socket in &sockets {
                if let Ok(conn) = UnixStream::connect(socket) {
                    return Ok(conn);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(if seen {
                PoolRunError::NoAnswer {
                    pool: pool.to_string(),
                }
            } else {
                PoolRunError::NoPool {
                    pool: pool.to_string(),
                    dir: dir.to_path_buf(),
                }
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rlimits this process runs under, which the child takes on: on the rlimit backend they
/// are the job's limits; on every backend `RLIMIT_NOFILE` is the job's. `None` is unlimited.
fn rlimits() -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let resources = [
        ("RLIMIT_AS", libc::RLIMIT_AS),
        ("RLIMIT_DATA", libc::RLIMIT_DATA),
        ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        ("RLIMIT_CPU", libc::RLIMIT_CPU),
        ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ];
    for (name, resource) in resources {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
            continue;
        }
        let value = |v: libc::rlim_t| {
            if v == libc::RLIM_INFINITY {
                serde_json::Value::Null
            } else {
                serde_json::Value::from(v)
            }
        };
        out.insert(
            name.to_string(),
            serde_json::json!([value(limit.rlim_cur), value(limit.rlim_max)]),
        );
    }
    serde_json::Value::Object(out)
}

/// In a cell the signals reach the child directly: ignore them here. Without one, report them
/// on a pipe the loop passes on.
fn watch_signals(in_cell: bool) -> Result<OwnedFd, PoolRunError> {
    let failed = |source| PoolRunError::Io {
        what: "cannot watch for signals",
        source,
    };
    if !in_cell {
        return super::signal_pipe(&PASSED_ON).map_err(failed);
    }
    for signal in PASSED_ON {
        // SAFETY: ignoring a signal has no preconditions.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    // Nothing will be written to it; it keeps the loop's shape the same.
    let (read, _write) = crate::sys::pipe_cloexec().map_err(failed)?;
    Ok(read)
}

/// Sends `bytes` with `fds` attached (SCM_RIGHTS) on `conn`, the rest of the bytes after.
fn send_with_fds(conn: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: zeroed msghdr is a valid starting point; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one header with `fds` (CMSG_SPACE above).
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(header), fd_bytes);
    }
    // SAFETY: msg is fully set up above.
    let sent = unsafe { libc::sendmsg(conn.as_raw_fd(), &msg, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let rest = &bytes[usize::try_from(sent).unwrap_or(0)..];
    let mut writer = conn;
    writer.write_all(rest)
}
