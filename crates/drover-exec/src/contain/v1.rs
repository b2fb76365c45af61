//! cgroup v1: one directory per attempt in each of the memory, pids, cpu, cpuacct and freezer
//! hierarchies, under this node's own cgroup in each (`<mount><own path>/drover.<node>`).
//!
//! The kill is freeze → SIGKILL every member → thaw: a frozen process cannot fork, so a fork
//! bomb cannot outrun the list of pids being killed.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cgroupfs as fs;
use super::{CellSample, CellUsage, JobLimits, LimitSupport, support};

/// The CFS period drover sets; the quota is a share of it.
const CFS_PERIOD: Duration = Duration::from_millis(100);
/// How long a freeze may take before the kill goes ahead anyway.
const FREEZE_WAIT: Duration = Duration::from_secs(1);

/// This node's directory in each hierarchy. `freezer`, `memory` and `pids` are required.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Tree {
    memory: PathBuf,
    pids: PathBuf,
    freezer: PathBuf,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
}

impl Tree {
    /// Finds the hierarchies, and makes this node's directory in each.
    pub(super) fn open(scope: &str) -> Result<Tree, String> {
        let mounts = fs::read_mounts();
        let membership = fs::read_membership();
        let node_dir = |controller: &str| -> Result<PathBuf, String> {
            let mount = mounts
                .iter()
                .find(|m| !m.unified && m.controllers.iter().any(|c| c == controller))
                .ok_or_else(|| format!("no v1 `{controller}` hierarchy is mounted"))?;
            let own = membership
                .iter()
                .find(|(ctrls, _)| ctrls.iter().any(|c| c == controller))
                .map(|(_, path)| path.as_str())
                .unwrap_or("/");
            let parent = fs::join(&mount.path, own);
            fs::can_create_under(&parent)
                .map_err(|e| format!("cannot create cgroups under {}: {e}", parent.display()))?;
            let dir = parent.join(scope);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            Ok(dir)
        };
        Ok(Tree {
            memory: node_dir("memory")?,
            pids: node_dir("pids")?,
            freezer: node_dir("freezer")?,
            cpu: node_dir("cpu").ok(),
            cpuacct: node_dir("cpuacct").ok(),
        })
    }

    fn all_dirs(&self) -> BTreeSet<PathBuf> {
        fs::distinct([
            Some(&self.memory),
            Some(&self.pids),
            Some(&self.freezer),
            self.cpu.as_ref(),
            self.cpuacct.as_ref(),
        ])
    }

    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.all_dirs().into_iter().collect()
    }

    pub(super) fn support(&self) -> Vec<LimitSupport> {
        let swap = self.memory.join("memory.memsw.limit_in_bytes").exists();
        vec![
            support(
                "memory",
                true,
                if swap {
                    "memory.limit_in_bytes and memory.memsw.limit_in_bytes (no swap beyond the limit); OOM kills are named memory_limit"
                } else {
                    "memory.limit_in_bytes (swap accounting is off in this kernel: swap is not limited); OOM kills are named memory_limit"
                },
            ),
            match &self.cpu {
                Some(_) => support("cpus", true, "cpu.cfs_quota_us per 100 ms period"),
                None => support("cpus", false, "no v1 `cpu` hierarchy is usable"),
            },
            support("pids", true, "pids.max"),
            support(
                "escapees",
                true,
                "every process of a job stays in its cgroup, setsid or not; killed by freeze → SIGKILL → thaw",
            ),
            match &self.cpuacct {
                Some(_) => support(
                    "accounting",
                    true,
                    "peak memory from memory.max_usage_in_bytes, CPU time from cpuacct.usage (whole tree)",
                ),
                None => support(
                    "accounting",
                    false,
                    "peak memory from memory.max_usage_in_bytes; CPU time from rusage (only descendants that were waited for)",
                ),
            },
        ]
    }

    /// A cell's directories. The pids and cpu hierarchies are joined only for an attempt that
    /// limits them: a cgroup costs a mkdir, an attach and an rmdir per attempt, and without a
    /// limit those two measure nothing the others do not.
    fn cell_dirs(&self, name: &str, pids: bool, cpu: bool) -> Cell {
        Cell {
            memory: self.memory.join(name),
            pids: pids.then(|| self.pids.join(name)),
            freezer: self.freezer.join(name),
            cpu: self.cpu.as_ref().filter(|_| cpu).map(|d| d.join(name)),
            cpuacct: self.cpuacct.as_ref().map(|d| d.join(name)),
        }
    }

    pub(super) fn create(&self, name: &str, limits: &JobLimits) -> io::Result<Cell> {
        let cell = self.cell_dirs(name, limits.pids.is_some(), limits.cpus.is_some());
        for dir in cell.all_dirs() {
            std::fs::create_dir_all(&dir)?;
        }
        let result = cell.apply(limits);
        if result.is_err() {
            if let Err(err) = cell.remove() {
                tracing::warn!(cell = %name, error = %err, "cannot remove a cell whose limits could not be set");
            }
        }
        result.map(|()| cell)
    }

    pub(super) fn memory_current(&self, name: &str) -> Option<u64> {
        fs::read_u64(&self.memory.join(name), "memory.usage_in_bytes")
    }

    pub(super) fn cell(&self, name: &str) -> Cell {
        self.cell_dirs(name, true, true)
    }

    pub(super) fn sweep(&self, keep: &dyn Fn(&str) -> bool) -> usize {
        let names: Vec<String> = fs::child_cgroups(&self.freezer)
            .into_iter()
            .filter(|n| !keep(n))
            .collect();
        for name in &names {
            // A leftover may have been made with any limits: look in every hierarchy.
            let cell = self.cell_dirs(name, true, true);
            let members = cell.members();
            if !members.is_empty() {
                tracing::warn!(cell = %name, processes = members.len(), "killing processes left in a cgroup by an earlier run");
                cell.kill();
                wait_empty(&cell.freezer, Duration::from_secs(5));
            }
            if let Err(err) = cell.remove() {
                tracing::warn!(cell = %name, error = %err, "cannot remove a cgroup left by an earlier run");
            }
        }
        names.len()
    }

    pub(super) fn close(&self) {
        for dir in self.all_dirs() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Waits (briefly polling; used only while killing) until `dir` lists no process.
fn wait_empty(dir: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !fs::procs(dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One attempt's directory in each hierarchy it uses.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    memory: PathBuf,
    pids: Option<PathBuf>,
    freezer: PathBuf,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
}

impl Cell {
    fn all_dirs(&self) -> BTreeSet<PathBuf> {
        fs::distinct([
            Some(&self.memory),
            self.pids.as_ref(),
            Some(&self.freezer),
            self.cpu.as_ref(),
            self.cpuacct.as_ref(),
        ])
    }

    fn apply(&self, limits: &JobLimits) -> io::Result<()> {
        if let Some(bytes) = limits.memory_bytes {
            fs::write(&self.memory, "memory.limit_in_bytes", &bytes.to_string())?;
            // memsw (memory + swap) must be at least the memory limit; equal means no swap.
            if self.memory.join("memory.memsw.limit_in_bytes").exists() {
                fs::write(
                    &self.memory,
                    "memory.memsw.limit_in_bytes",
                    &bytes.to_string(),
                )?;
            }
        }
        if let (Some(pids), Some(dir)) = (limits.pids, &self.pids) {
            fs::write(dir, "pids.max", &pids.to_string())?;
        }
        if let (Some(cpus), Some(cpu)) = (limits.cpus, &self.cpu) {
            let quota = cpus.quota_per(CFS_PERIOD).as_micros().max(1000);
            fs::write(
                cpu,
                "cpu.cfs_period_us",
                &CFS_PERIOD.as_micros().to_string(),
            )?;
            fs::write(cpu, "cpu.cfs_quota_us", &quota.to_string())?;
        }
        Ok(())
    }

    pub(super) fn attach(&self, pid: i32) -> io::Result<()> {
        for dir in self.all_dirs() {
            fs::attach(&dir, pid)?;
        }
        Ok(())
    }

    pub(super) fn members(&self) -> Vec<i32> {
        fs::procs(&self.freezer)
    }

    pub(super) fn signal(&self, signal: i32) {
        fs::signal_all(&self.freezer, signal);
    }

    /// Freeze, SIGKILL every member, thaw: the signals are delivered on thaw, and nothing forked
    /// between the listing and the kill because nothing could run.
    pub(super) fn kill(&self) {
        let froze = fs::write(&self.freezer, "freezer.state", "FROZEN").is_ok();
        if froze {
            let deadline = Instant::now() + FREEZE_WAIT;
            while fs::read(&self.freezer, "freezer.state").is_ok_and(|s| s != "FROZEN")
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        fs::signal_all(&self.freezer, libc::SIGKILL);
        if froze {
            let _ = fs::write(&self.freezer, "freezer.state", "THAWED");
        }
    }

    /// The tree's CPU time so far, from `cpuacct.usage` (nanoseconds), in milliseconds.
    fn cpu_time_ms(&self) -> Option<u64> {
        self.cpuacct
            .as_ref()
            .and_then(|d| fs::read_u64(d, "cpuacct.usage"))
            .map(|ns| ns / 1_000_000)
    }

    pub(super) fn sample(&self) -> CellSample {
        CellSample {
            memory_bytes: fs::read_u64(&self.memory, "memory.usage_in_bytes"),
            cpu_time_ms: self.cpu_time_ms(),
        }
    }

    pub(super) fn usage(&self) -> CellUsage {
        CellUsage {
            peak_memory_bytes: fs::read_u64(&self.memory, "memory.max_usage_in_bytes"),
            cpu_time_ms: self.cpu_time_ms(),
            oom_killed: fs::keyed(&self.memory, "memory.oom_control", "oom_kill")
                .is_some_and(|n| n > 0),
            pids_limited: self
                .pids
                .as_ref()
                .and_then(|d| fs::keyed(d, "pids.events", "max"))
                .is_some_and(|n| n > 0),
        }
    }

    /// Whether any of its directories exists (a cell made in part counts: it may hold the
    /// child).
    pub(super) fn exists(&self) -> bool {
        self.all_dirs().iter().any(|d| d.exists())
    }

    pub(super) fn remove(&self) -> io::Result<()> {
        let mut result = Ok(());
        for dir in self.all_dirs().into_iter().filter(|d| d.exists()) {
            if let Err(err) = fs::remove(&dir) {
                result = Err(err);
            }
        }
        result
    }
}
