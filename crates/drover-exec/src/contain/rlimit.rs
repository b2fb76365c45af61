//! The rlimit backend (macOS, or Linux without cgroup access), and the per-process limits every
//! backend sets in the child.
//!
//! Without cgroups a job's tree has no kernel boundary. Two things stand in for one on Linux:
//! - the node becomes a **child subreaper** (`PR_SET_CHILD_SUBREAPER`), so a process that leaves
//!   its job's process group and is orphaned (`setsid`, double fork) is re-parented to the node
//!   instead of to PID 1, and stays findable among the node's descendants;
//! - each such process still carries the `DROVER_JOB_ID` and `DROVER_ATTEMPT` variables it
//!   inherited, which say which attempt it belongs to.
//!
//! A process that both escapes its group and clears its environment cannot be attributed; doctor
//! says so. On macOS there is no subreaper: an escapee is re-parented to launchd, so an
//! attempt's processes are looked for among all of the user's, by the same variables, read with
//! `sysctl(KERN_PROCARGS2)`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use drover_core::AttemptRef;

use super::{JobLimits, LimitSupport, support};

/// A resource limit the child sets on itself before exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildRlimit {
    /// The `RLIMIT_*` resource.
    pub resource: i32,
    /// Soft and hard value.
    pub value: u64,
}

impl ChildRlimit {
    /// `RLIMIT_NOFILE`.
    // The RLIMIT_* constants are u32 on Linux and i32 on macOS: the cast is needed on one.
    #[allow(clippy::unnecessary_cast)]
    pub fn nofile(value: u64) -> Self {
        Self {
            resource: libc::RLIMIT_NOFILE as i32,
            value,
        }
    }
}

/// The rlimit backend's stand-ins for the tree limits. All are per process.
// The RLIMIT_* constants are u32 on Linux and i32 on macOS: the casts are needed on one.
#[allow(clippy::unnecessary_cast)]
pub(super) fn approximations(limits: &JobLimits, timeout: Duration) -> Vec<ChildRlimit> {
    let mut out = Vec::new();
    if let Some(bytes) = limits.memory_bytes {
        // RLIMIT_DATA counts heap and private mappings since Linux 4.7; macOS ignores it for
        // mmap, so there the address-space limit is the closest.
        #[cfg(target_os = "linux")]
        let resource = libc::RLIMIT_DATA as i32;
        #[cfg(not(target_os = "linux"))]
        let resource = libc::RLIMIT_AS as i32;
        out.push(ChildRlimit {
            resource,
            value: bytes,
        });
    }
    if let Some(pids) = limits.pids {
        out.push(ChildRlimit {
            resource: libc::RLIMIT_NPROC as i32,
            value: u64::from(pids),
        });
    }
    if let Some(cpus) = limits.cpus {
        // No rate limit exists per process: cap the total instead, at what the quota would allow
        // over the whole timeout.
        let seconds = timeout.as_secs_f64() * f64::from(cpus.millis()) / 1000.0;
        out.push(ChildRlimit {
            resource: libc::RLIMIT_CPU as i32,
            value: seconds.ceil().max(1.0) as u64,
        });
    }
    out
}

/// The rlimit backend: nothing to set up but the subreaper, which each job's owner becomes
/// ([`become_subreaper`]).
#[derive(Debug)]
pub(super) struct Tree {
    subreaper: bool,
}

impl Tree {
    pub(super) fn open() -> Tree {
        Tree {
            subreaper: cfg!(target_os = "linux"),
        }
    }

    pub(super) fn support(&self) -> Vec<LimitSupport> {
        vec![
            support(
                "memory",
                false,
                "RLIMIT_DATA (RLIMIT_AS on macOS) per process, not per tree; the program sees failed allocations, so the end is not named memory_limit",
            ),
            support(
                "cpus",
                false,
                "no rate limit: RLIMIT_CPU caps each process's total at cpus × timeout",
            ),
            support(
                "pids",
                false,
                "RLIMIT_NPROC counts every process of the user, not the job, and root is exempt",
            ),
            if self.subreaper {
                support(
                    "escapees",
                    true,
                    "each job's owner is a child subreaper; processes that left the job's group are found by their DROVER_JOB_ID/DROVER_ATTEMPT (one that also clears its environment is missed)",
                )
            } else {
                support(
                    "escapees",
                    true,
                    "no subreaper: processes that left the job's group are found among all of the user's by their DROVER_JOB_ID/DROVER_ATTEMPT (sysctl KERN_PROCARGS2), at every ending and at recovery (one that also clears its environment is missed)",
                )
            },
            support(
                "accounting",
                false,
                "rusage of the leader: CPU time of descendants it waited for, peak memory of the largest single process",
            ),
        ]
    }
}

/// Makes this process a child subreaper (Linux), so that processes that leave a job's group are
/// re-parented to the job's owner and stay findable. Returns whether it worked.
pub fn become_subreaper() -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments.
    return unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } == 0;
    #[cfg(not(target_os = "linux"))]
    false
}

/// The pids of live job leaders: [`reap_strays`] must never reap one of them, because the
/// supervisor collects their exit status itself.
/// Counted, so that a pid reused by a new leader between the old one's reaping and its
/// forgetting stays registered.
static LEADERS: Mutex<Option<HashMap<i32, u32>>> = Mutex::new(None);

/// Marks `pid` as a job leader whose status the supervisor will collect.
pub(crate) fn register_leader(pid: i32) {
    if let Ok(mut leaders) = LEADERS.lock() {
        *leaders
            .get_or_insert_with(HashMap::new)
            .entry(pid)
            .or_insert(0) += 1;
    }
}

/// Forgets a leader once it is reaped.
pub(crate) fn forget_leader(pid: i32) {
    if let Ok(mut leaders) = LEADERS.lock() {
        if let Some(map) = leaders.as_mut() {
            if let Some(count) = map.get_mut(&pid) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&pid);
                }
            }
        }
    }
}

fn is_leader(pid: i32) -> bool {
    LEADERS
        .lock()
        .ok()
        .is_some_and(|l| l.as_ref().is_some_and(|m| m.contains_key(&pid)))
}

/// Reaps zombie children of the node that are not job leaders: orphans re-parented to the node
/// as subreaper. Returns how many were reaped.
pub fn reap_strays() -> usize {
    if !cfg!(target_os = "linux") {
        return 0;
    }
    let mut reaped = 0;
    for pid in adopted() {
        if is_leader(pid) {
            continue;
        }
        if is_zombie(pid) {
            let _ = crate::sys::wait4(pid, false);
            reaped += 1;
        }
    }
    reaped
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: i32) -> bool {
    crate::sys::read_stat(pid).is_some_and(|s| s.state == 'Z')
}

#[cfg(not(target_os = "linux"))]
fn is_zombie(_pid: i32) -> bool {
    false
}

/// Children of the node's main thread. The kernel re-parents an orphan to the first live thread
/// of its subreaper, which is the main thread; job leaders are children of the spawner threads
/// that created them, so they are not listed here. One small read, so it is cheap to ask after
/// every attempt.
fn adopted() -> Vec<i32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .map(|t| {
            t.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The direct children of `pid` (every thread's), from `/proc/<pid>/task/*/children`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// Every process id of the machine (those this user may see, on macOS).
#[cfg(target_os = "linux")]
fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// Every process id of the machine (those this user may see, on macOS).
#[cfg(target_os = "macos")]
fn all_pids() -> Vec<i32> {
    // SAFETY: a null buffer asks for the count.
    let count = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
    if count <= 0 {
        return Vec::new();
    }
    // Room for processes started between the two calls.
    let mut pids = vec![0i32; count as usize + 64];
    let bytes = (pids.len() * std::mem::size_of::<i32>()) as libc::c_int;
    // SAFETY: the buffer holds `bytes` bytes of pid_t.
    let got = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast(), bytes) };
    pids.truncate(got.max(0) as usize);
    pids.retain(|p| *p > 0);
    pids
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn all_pids() -> Vec<i32> {
    Vec::new()
}

/// The environment a process started with: `KEY=VALUE` entries separated by NULs.
#[cfg(target_os = "linux")]
fn environ_of(pid: i32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// The environment a process started with, from `sysctl(KERN_PROCARGS2)`: `KEY=VALUE` entries
/// separated by NULs (macOS answers only for the user's own processes).
#[cfg(target_os = "macos")]
fn environ_of(pid: i32) -> Option<Vec<u8>> {
    let mut argmax_mib = [libc::CTL_KERN, libc::KERN_ARGMAX];
    let mut argmax: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    // SAFETY: sysctl writes an int into `argmax`, of `len` bytes.
    let ok = unsafe {
        libc::sysctl(
            argmax_mib.as_mut_ptr(),
            2,
            (&mut argmax as *mut libc::c_int).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    } == 0;
    if !ok || argmax <= 0 {
        return None;
    }
    let mut buf = vec![0u8; argmax as usize];
    let mut size: libc::size_t = buf.len();
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
    // SAFETY: sysctl writes at most `size` bytes into `buf` and sets `size`.
    let ok = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    } == 0;
    if !ok {
        return None;
    }
    buf.truncate(size);
    procargs_environ(&buf)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn environ_of(_pid: i32) -> Option<Vec<u8>> {
    None
}

/// The environment part of a `KERN_PROCARGS2` answer: an `int` argc, the executable's path,
/// NUL padding, argc arguments, then the environment, each NUL-terminated, up to an empty
/// string.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn procargs_environ(buf: &[u8]) -> Option<Vec<u8>> {
    let argc = i32::from_ne_bytes(buf.get(..4)?.try_into().ok()?);
    let mut rest = &buf[4..];
    let path_end = rest.iter().position(|b| *b == 0)?;
    rest = &rest[path_end..];
    let start = rest.iter().position(|b| *b != 0)?;
    rest = &rest[start..];
    for _ in 0..argc.max(0) {
        let end = rest.iter().position(|b| *b == 0)?;
        rest = rest.get(end + 1..)?;
    }
    let mut env = Vec::new();
    for var in rest.split(|b| *b == 0) {
        if var.is_empty() {
            break;
        }
        env.extend_from_slice(var);
        env.push(0);
    }
    Some(env)
}

/// What the processes of each attempt use now, summed: every live process of the machine that
/// carries an attempt's `DROVER_JOB_ID` and `DROVER_ATTEMPT`, found in one scan for all of them.
/// CPU time counts each process's own and that of the children it has waited for; a child that
/// exited unwaited-for (its parent gone too) no longer counts, so the total can step down.
pub(super) fn sample(attempts: &[AttemptRef]) -> Vec<super::CellSample> {
    let mut out = vec![super::CellSample::default(); attempts.len()];
    if attempts.is_empty() {
        return out;
    }
    let wanted: HashMap<(String, String), usize> = attempts
        .iter()
        .enumerate()
        .map(|(i, a)| ((a.job_id.to_string(), a.attempt.to_string()), i))
        .collect();
    let me = std::process::id() as i32;
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let Some(environ) = environ_of(pid) else {
            continue;
        };
        let (mut job, mut attempt) = (None, None);
        for var in environ.split(|b| *b == 0) {
            if let Some(v) = var.strip_prefix(b"DROVER_JOB_ID=") {
                job = std::str::from_utf8(v).ok();
            } else if let Some(v) = var.strip_prefix(b"DROVER_ATTEMPT=") {
                attempt = std::str::from_utf8(v).ok();
            }
        }
        let (Some(job), Some(attempt)) = (job, attempt) else {
            continue;
        };
        let Some(&index) = wanted.get(&(job.to_string(), attempt.to_string())) else {
            continue;
        };
        // A process on its way out has given its memory back: it no longer counts.
        if let Some((memory, cpu_ms)) = process_usage(pid).filter(|(memory, _)| *memory > 0) {
            let slot = &mut out[index];
            slot.memory_bytes = Some(slot.memory_bytes.unwrap_or(0) + memory);
            slot.cpu_time_ms = Some(slot.cpu_time_ms.unwrap_or(0) + cpu_ms);
        }
    }
    out
}

/// A live process's resident memory (bytes) and CPU time (ms).
#[cfg(target_os = "linux")]
fn process_usage(pid: i32) -> Option<(u64, u64)> {
    let stat = crate::sys::read_stat(pid).filter(|s| s.state != 'Z')?;
    // SAFETY: sysconf with constant names.
    let (page, ticks) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    let page = u64::try_from(page).ok().filter(|p| *p > 0)?;
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    Some((stat.rss_pages * page, stat.cpu_ticks * 1000 / ticks))
}

/// A live process's resident memory (bytes) and CPU time (ms), from `proc_pidinfo`. Its times
/// are in Mach absolute time units, converted with the machine's timebase (1:1 on Intel).
/// libc marks its Mach items deprecated in favour of the `mach2` crate; `mach_timebase_info`
/// is a stable system call, not worth a dependency for one struct.
#[cfg(target_os = "macos")]
#[allow(deprecated)]
fn process_usage(pid: i32) -> Option<(u64, u64)> {
    // SAFETY: proc_taskinfo is the plain C struct PROC_PIDTASKINFO fills.
    let info: libc::proc_taskinfo = unsafe { crate::sys::pid_info(pid, libc::PROC_PIDTASKINFO) }?;
    let mut timebase = libc::mach_timebase_info { numer: 0, denom: 0 };
    // SAFETY: writes the two fields of `timebase`.
    let ok = unsafe { libc::mach_timebase_info(&mut timebase) } == 0;
    let (numer, denom) = if ok && timebase.denom > 0 {
        (u64::from(timebase.numer), u64::from(timebase.denom))
    } else {
        (1, 1)
    };
    let nanos = (info.pti_total_user + info.pti_total_system).saturating_mul(numer) / denom;
    Some((info.pti_resident_size, nanos / 1_000_000))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn process_usage(_pid: i32) -> Option<(u64, u64)> {
    None
}

/// An attempt's processes, found by the variables they inherited.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    job_var: Vec<u8>,
    attempt_var: Vec<u8>,
}

impl Cell {
    pub(super) fn new(attempt: AttemptRef) -> Cell {
        Cell {
            job_var: format!("DROVER_JOB_ID={}", attempt.job_id).into_bytes(),
            attempt_var: format!("DROVER_ATTEMPT={}", attempt.attempt).into_bytes(),
        }
    }

    /// Live processes the node adopted (and their descendants) that carry this attempt's
    /// variables. Processes still in the job's group are the ladder's to find; these are the
    /// ones that left it and were orphaned. On macOS, with no subreaper, the whole machine's.
    pub(super) fn members(&self) -> Vec<i32> {
        if !cfg!(target_os = "linux") {
            return self.members_anywhere();
        }
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut frontier: Vec<i32> = adopted().into_iter().filter(|p| !is_leader(*p)).collect();
        while let Some(pid) = frontier.pop() {
            if !seen.insert(pid) {
                continue;
            }
            frontier.extend(children_of(pid));
            let live = !is_zombie(pid);
            if live && self.marks(pid) {
                found.push(pid);
            }
        }
        found
    }

    /// Every live process of this machine that carries this attempt's variables, wherever it
    /// was re-parented: used when the attempt's owner is gone, so nobody adopted them (and on
    /// macOS always, where nothing adopts them: an orphan goes to launchd).
    pub(super) fn members_anywhere(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        all_pids()
            .into_iter()
            .filter(|pid| *pid != me && !is_zombie(*pid) && self.marks(*pid))
            .collect()
    }

    fn marks(&self, pid: i32) -> bool {
        let Some(environ) = environ_of(pid) else {
            return false;
        };
        let mut job = false;
        let mut attempt = false;
        for var in environ.split(|b| *b == 0) {
            job |= var == self.job_var.as_slice();
            attempt |= var == self.attempt_var.as_slice();
        }
        job && attempt
    }

    pub(super) fn signal(&self, signal: i32) {
        for pid in self.members() {
            // SAFETY: kill with plain integers.
            unsafe {
                libc::kill(pid, signal);
            }
        }
        reap_strays();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::Cpus;

    #[test]
    #[allow(clippy::unnecessary_cast)] // u32 on Linux, i32 on macOS
    fn approximations_cover_each_limit() {
        let limits = JobLimits {
            memory_bytes: Some(100 << 20),
            cpus: Some(Cpus::from_millis(500)),
            pids: Some(50),
            nofile: Some(64),
        };
        let got = approximations(&limits, Duration::from_secs(10));
        assert_eq!(got.len(), 3, "nofile is set for every backend, not here");
        let cpu = got
            .iter()
            .find(|r| r.resource == libc::RLIMIT_CPU as i32)
            .map(|r| r.value);
        assert_eq!(cpu, Some(5), "half a CPU over 10 s is 5 CPU-seconds");
        assert!(
            got.iter()
                .any(|r| r.resource == libc::RLIMIT_NPROC as i32 && r.value == 50)
        );
        assert!(approximations(&JobLimits::default(), Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn the_environment_is_read_from_a_procargs2_answer() {
        let mut buf = 2i32.to_ne_bytes().to_vec();
        buf.extend_from_slice(
            b"/bin/sleep\0\0\0\0sleep\0x600\0DROVER_JOB_ID=j\0DROVER_ATTEMPT=2\0\0junk",
        );
        assert_eq!(
            procargs_environ(&buf).as_deref(),
            Some(&b"DROVER_JOB_ID=j\0DROVER_ATTEMPT=2\0"[..])
        );
        assert_eq!(procargs_environ(&buf[..3]), None, "too short");
    }

    #[test]
    fn a_process_is_attributed_by_both_variables() {
        let attempt = AttemptRef {
            job_id: drover_core::JobId::from_uuid(uuid::Uuid::now_v7()),
            attempt: 2,
        };
        let cell = Cell::new(attempt);
        let child = std::process::Command::new("sleep")
            .arg("5")
            .env("DROVER_JOB_ID", attempt.job_id.to_string())
            .env("DROVER_ATTEMPT", "2")
            .spawn();
        let Ok(mut child) = child else {
            panic!("cannot start sleep");
        };
        let pid = child.id() as i32;
        // The spawn returns once exec has begun; the new environment appears a moment later.
        for _ in 0..200 {
            if std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| !e.is_empty()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(cell.marks(pid));
        assert!(
            !Cell::new(AttemptRef {
                attempt: 3,
                ..attempt
            })
            .marks(pid)
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
