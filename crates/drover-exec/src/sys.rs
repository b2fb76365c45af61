//! The few OS calls the supervisor needs, each wrapped once with its error handling.
//!
//! Everything `unsafe` in this crate lives here or in the child-side code of [`crate::spawn`].

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Sends `signal` to every member of process group `pgid`. `Ok(false)` means the group is empty.
pub fn signal_group(pgid: i32, signal: i32) -> io::Result<bool> {
    if pgid <= 1 {
        // killpg(0) or (1) would hit our own group or everything: never a job's group.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal pgid {pgid}"),
        ));
    }
    // SAFETY: killpg has no memory-safety preconditions.
    let rc = unsafe { libc::killpg(pgid, signal) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(err),
    }
}

/// Whether process `pid` exists (as any user's process; a zombie counts).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks; it has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether process `pid` exists and is not a zombie (on Linux, not one that is exiting either):
/// what it uses now is still its own.
pub fn process_running(pid: i32) -> bool {
    #[cfg(target_os = "linux")]
    return pid > 0 && read_stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'));
    #[cfg(not(target_os = "linux"))]
    return process_alive(pid);
}

/// True if process group `pgid` has a member that is not a zombie.
///
/// `kill(-pgid, 0)` alone is not enough: a member whose parent never reaps it (an orphan under
/// an init that does not reap, as in some containers) stays a zombie in the group forever,
/// although it holds no resources and runs no code.
pub fn group_has_live_members(pgid: i32) -> bool {
    match signal_group(pgid, 0) {
        Ok(false) => false,
        Err(_) => true,
        Ok(true) => live_members_beyond_zombies(pgid),
    }
}

#[cfg(target_os = "linux")]
fn live_members_beyond_zombies(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(stat) = read_stat(pid) {
            if stat.pgrp == pgid && !matches!(stat.state, 'Z' | 'X') {
                return true;
            }
        }
    }
    false
}

#[cfg(not(target_os = "linux"))]
fn live_members_beyond_zombies(_pgid: i32) -> bool {
    // Without /proc we cannot tell zombies apart; launchd reaps orphans promptly on macOS.
    true
}

/// The fields of `/proc/PID/stat` the supervisor uses.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// R, S, D, Z, T...
    pub state: char,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
    /// User + system CPU time of the process and of the children it has waited for, in clock
    /// ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Reads `/proc/PID/stat`, or `None` if the process is gone.
#[cfg(target_os = "linux")]
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

#[cfg(target_os = "linux")]
fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); pgrp is field 5; starttime is field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
        // utime, stime, cutime, cstime: fields 14 to 17.
        cpu_ticks: (11..=14)
            .map(|i| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum(),
        rss_pages: fields.get(21)?.parse().ok()?,
    })
}

/// What macOS's `proc_pidinfo` tells of process `pid` for `flavor`, or `None` if it is gone.
///
/// # Safety
/// `T` must be the plain C struct `flavor` fills (`proc_bsdinfo` for `PROC_PIDTBSDINFO`,
/// `proc_taskinfo` for `PROC_PIDTASKINFO`): all-zero must be a valid value of it.
#[cfg(target_os = "macos")]
pub(crate) unsafe fn pid_info<T>(pid: i32, flavor: libc::c_int) -> Option<T> {
    // SAFETY: the caller promises all-zero is a valid T.
    let mut info: T = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<T>() as libc::c_int;
    // SAFETY: `info` is a properly sized, writable T of the kind `flavor` writes.
    let rc = unsafe { libc::proc_pidinfo(pid, flavor, 0, (&mut info as *mut T).cast(), size) };
    (rc == size).then_some(info)
}

/// What macOS tells of process `pid` (its parent, its start time), or `None` if it is gone.
#[cfg(target_os = "macos")]
fn bsd_info(pid: i32) -> Option<libc::proc_bsdinfo> {
    // SAFETY: proc_bsdinfo is the plain C struct PROC_PIDTBSDINFO fills.
    unsafe { pid_info(pid, libc::PROC_PIDTBSDINFO) }
}

/// The start time of process `pid` as the OS counts it (opaque, comparable for equality), or
/// `None` if it is gone or the platform cannot tell.
pub fn process_start_time(pid: i32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        read_stat(pid).map(|s| s.start_time)
    }
    #[cfg(target_os = "macos")]
    {
        bsd_info(pid).map(|info| info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        None
    }
}

/// The parent of process `pid`, or `None` if it is gone or the platform cannot tell.
pub fn parent_pid(pid: i32) -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        read_stat(pid).map(|s| s.ppid)
    }
    #[cfg(target_os = "macos")]
    {
        bsd_info(pid).map(|info| info.pbi_ppid as i32)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        None
    }
}

/// A pipe whose both ends close on exec.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    #[cfg(target_os = "linux")]
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above; CLOEXEC is set right after, before any fork can see them (the
    // supervisor forks only from its spawn threads, which hold no pipe under construction).
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe returned two fresh descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    for fd in [&read, &write] {
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((read, write))
}

/// A pseudo-terminal for a job's output: (master, slave), both close-on-exec. The slave does no
/// output processing (no `\n` → `\r\n`), so what the job writes is what the log keeps.
pub fn pty_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (0 as RawFd, 0 as RawFd);
    // SAFETY: openpty writes two fresh descriptors into the integers; name, termios and window
    // size are optional and left null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty returned two descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: a zeroed termios is a valid buffer for tcgetattr to fill.
    let mut modes: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr/tcsetattr on the slave we own, with a termios it filled.
    unsafe {
        if libc::tcgetattr(slave.as_raw_fd(), &mut modes) != 0 {
            return Err(io::Error::last_os_error());
        }
        modes.c_oflag &= !libc::OPOST;
        if libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &modes) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((master, slave))
}

/// Puts a descriptor in non-blocking mode.
pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes one byte, retrying on EINTR.
pub fn write_byte(fd: &OwnedFd, byte: u8) -> io::Result<()> {
    loop {
        // SAFETY: writes one byte from a live stack variable to a descriptor we own.
        let rc = unsafe { libc::write(fd.as_raw_fd(), (&byte as *const u8).cast(), 1) };
        if rc == 1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// How a reaped process ended, with its resource usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Signal, if one killed it.
    pub signal: Option<i32>,
    /// Peak RSS in bytes of it and the descendants it waited for.
    pub max_rss_bytes: u64,
    /// User + system CPU time in milliseconds, likewise.
    pub cpu_time_ms: u64,
}

fn reaped(status: libc::c_int, usage: &libc::rusage) -> Reaped {
    let exited = libc::WIFEXITED(status);
    let signaled = libc::WIFSIGNALED(status);
    let millis = |tv: libc::timeval| (tv.tv_sec as u64) * 1000 + (tv.tv_usec as u64) / 1000;
    // Linux reports ru_maxrss in KiB, macOS in bytes.
    let rss_unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
    Reaped {
        exit_code: exited.then(|| libc::WEXITSTATUS(status)),
        signal: signaled.then(|| libc::WTERMSIG(status)),
        max_rss_bytes: (usage.ru_maxrss.max(0) as u64) * rss_unit,
        cpu_time_ms: millis(usage.ru_utime) + millis(usage.ru_stime),
    }
}

/// `wait4(pid)`: reaps `pid` and returns its status and usage. With `block == false` returns
/// `Ok(None)` if it has not exited yet.
pub fn wait4(pid: i32, block: bool) -> io::Result<Option<Reaped>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: all-zero is a valid rusage.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: status and usage are valid, writable locals.
        let rc = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if rc == pid {
            return Ok(Some(reaped(status, &usage)));
        }
        if rc == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A pidfd for `pid`: readable once the process exits (Linux 5.3+).
#[cfg(target_os = "linux")]
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor; it is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.start_time, 123456);
    }

    #[test]
    fn our_own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let first = process_start_time(me);
        assert!(first.is_some());
        assert_eq!(first, process_start_time(me));
    }

    #[test]
    fn refuses_to_signal_init_or_own_group_by_zero() {
        assert!(signal_group(0, 0).is_err());
        assert!(signal_group(1, 0).is_err());
    }
}
