//! cgroup v2: one leaf per attempt under `<own cgroup>/drover.<node>`.
//!
//! cgroup v2 lets a cgroup hand controllers to its children only if it has no processes of its
//! own (the "no internal processes" rule). When the node's own cgroup has controllers to give but
//! holds the node, the node moves itself into a leaf `drover.<node>.self` first; if other
//! processes share its cgroup that is not possible, and the backend says so rather than guess.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cgroupfs as fs;
use super::{CellSample, CellUsage, JobLimits, LimitSupport, support};

/// The CFS period drover sets; the quota is a share of it.
const CFS_PERIOD: Duration = Duration::from_millis(100);

/// This node's subtree in the unified hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Tree {
    root: PathBuf,
    controllers: BTreeSet<String>,
}

/// The controllers drover uses, in the order `cgroup.subtree_control` is written.
const WANTED: [&str; 3] = ["memory", "pids", "cpu"];

impl Tree {
    /// Opens the node's subtree. With `strict`, the backend is refused unless the memory and pids
    /// controllers can be handed to attempt cgroups (auto-selection); otherwise it is used with
    /// whatever controllers exist, and `doctor` says which limits that leaves unenforced.
    pub(super) fn open(scope: &str, strict: bool) -> Result<Tree, String> {
        let mount = fs::read_mounts()
            .into_iter()
            .find(|m| m.unified)
            .ok_or("no cgroup v2 hierarchy is mounted")?;
        let own = fs::read_v2_membership().unwrap_or_else(|| "/".into());
        let base = fs::join(&mount.path, &own);
        let available: BTreeSet<String> = fs::read(&base, "cgroup.controllers")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let controllers: BTreeSet<String> = WANTED
            .iter()
            .filter(|c| available.contains(**c))
            .map(|c| c.to_string())
            .collect();
        if strict {
            let missing: Vec<&str> = ["memory", "pids"]
                .into_iter()
                .filter(|c| !controllers.contains(*c))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "{} does not offer the {} controller(s)",
                    base.display(),
                    missing.join(" and ")
                ));
            }
        }
        fs::can_create_under(&base)
            .map_err(|e| format!("cannot create cgroups under {}: {e}", base.display()))?;
        if !controllers.is_empty() {
            enable_in(&base, &controllers, scope)?;
        }
        let root = base.join(scope);
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        // The root cgroup has no cgroup.kill; every other one has it from Linux 5.14.
        if !root.join("cgroup.kill").exists() {
            let _ = std::fs::remove_dir(&root);
            return Err(format!(
                "{} has no cgroup.kill (Linux 5.14 or later is needed)",
                root.display()
            ));
        }
        if !controllers.is_empty() {
            fs::write(&root, "cgroup.subtree_control", &plus(&controllers))
                .map_err(|e| e.to_string())?;
        }
        Ok(Tree { root, controllers })
    }

    pub(super) fn paths(&self) -> Vec<PathBuf> {
        vec![self.root.clone()]
    }

    fn has(&self, controller: &str) -> bool {
        self.controllers.contains(controller)
    }

    pub(super) fn support(&self) -> Vec<LimitSupport> {
        let missing = |c: &str| format!("the `{c}` controller is not available in this cgroup");
        vec![
            if self.has("memory") {
                support(
                    "memory",
                    true,
                    "memory.max and memory.swap.max = 0; OOM kills (memory.events) are named memory_limit",
                )
            } else {
                support("memory", false, missing("memory"))
            },
            if self.has("cpu") {
                support("cpus", true, "cpu.max per 100 ms period")
            } else {
                support("cpus", false, missing("cpu"))
            },
            if self.has("pids") {
                support("pids", true, "pids.max")
            } else {
                support("pids", false, missing("pids"))
            },
            support(
                "escapees",
                true,
                "every process of a job stays in its cgroup, setsid or not; killed with cgroup.kill",
            ),
            support(
                "accounting",
                self.has("memory"),
                if self.has("memory") {
                    "peak memory from memory.peak, CPU time from cpu.stat (whole tree)"
                } else {
                    "CPU time from cpu.stat (whole tree); peak memory from rusage (largest single process)"
                },
            ),
        ]
    }

    pub(super) fn create(&self, name: &str, limits: &JobLimits) -> io::Result<Cell> {
        let cell = Cell {
            dir: self.root.join(name),
        };
        std::fs::create_dir_all(&cell.dir)?;
        let result = cell.apply(limits, &self.controllers);
        if result.is_err() {
            if let Err(err) = cell.remove() {
                tracing::warn!(cell = %name, error = %err, "cannot remove a cell whose limits could not be set");
            }
        }
        result.map(|()| cell)
    }

    pub(super) fn memory_current(&self, name: &str) -> Option<u64> {
        fs::read_u64(&self.root.join(name), "memory.current")
    }

    pub(super) fn sample(&self, name: &str) -> CellSample {
        let dir = self.root.join(name);
        CellSample {
            memory_bytes: fs::read_u64(&dir, "memory.current"),
            cpu_time_ms: fs::keyed(&dir, "cpu.stat", "usage_usec").map(|us| us / 1000),
        }
    }

    pub(super) fn cell(&self, name: &str) -> Cell {
        Cell {
            dir: self.root.join(name),
        }
    }

    pub(super) fn sweep(&self, keep: &dyn Fn(&str) -> bool) -> usize {
        let names: Vec<String> = fs::child_cgroups(&self.root)
            .into_iter()
            .filter(|n| !keep(n))
            .collect();
        for name in &names {
            let cell = Cell {
                dir: self.root.join(name),
            };
            let members = cell.members();
            if !members.is_empty() {
                tracing::warn!(cell = %name, processes = members.len(), "killing processes left in a cgroup by an earlier run");
                cell.kill();
            }
            if let Err(err) = cell.remove() {
                tracing::warn!(cell = %name, error = %err, "cannot remove a cgroup left by an earlier run");
            }
        }
        names.len()
    }

    pub(super) fn close(&self) {
        let _ = std::fs::remove_dir(&self.root);
    }
}

fn plus(controllers: &BTreeSet<String>) -> String {
    WANTED
        .iter()
        .filter(|c| controllers.contains(**c))
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes `controllers` available to children of `base`, moving the node into a leaf of its own
/// first when `base` holds the node and nothing else.
fn enable_in(base: &Path, controllers: &BTreeSet<String>, scope: &str) -> Result<(), String> {
    let enabled = fs::read(base, "cgroup.subtree_control").unwrap_or_default();
    if controllers
        .iter()
        .all(|c| enabled.split_whitespace().any(|e| e == c))
    {
        return Ok(());
    }
    if fs::write(base, "cgroup.subtree_control", &plus(controllers)).is_ok() {
        return Ok(());
    }
    let me = std::process::id() as i32;
    let others: Vec<i32> = fs::procs(base).into_iter().filter(|p| *p != me).collect();
    if !others.is_empty() {
        return Err(format!(
            "{} holds other processes, so it cannot hand controllers to drover's cgroups; run drover in a cgroup of its own (systemd: Delegate=yes)",
            base.display()
        ));
    }
    let leaf = base.join(format!("{scope}.self"));
    std::fs::create_dir_all(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
    fs::attach(&leaf, me).map_err(|e| e.to_string())?;
    fs::write(base, "cgroup.subtree_control", &plus(controllers)).map_err(|e| e.to_string())
}

/// One attempt's leaf cgroup.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    dir: PathBuf,
}

impl Cell {
    fn apply(&self, limits: &JobLimits, controllers: &BTreeSet<String>) -> io::Result<()> {
        if controllers.contains("memory") {
            if let Some(bytes) = limits.memory_bytes {
                fs::write(&self.dir, "memory.max", &bytes.to_string())?;
                if self.dir.join("memory.swap.max").exists() {
                    fs::write(&self.dir, "memory.swap.max", "0")?;
                }
            }
            // One OOM kill takes the whole tree: a half-killed job is worse than a stopped one.
            if self.dir.join("memory.oom.group").exists() {
                fs::write(&self.dir, "memory.oom.group", "1")?;
            }
        }
        if let (Some(pids), true) = (limits.pids, controllers.contains("pids")) {
            fs::write(&self.dir, "pids.max", &pids.to_string())?;
        }
        if let (Some(cpus), true) = (limits.cpus, controllers.contains("cpu")) {
            let quota = cpus.quota_per(CFS_PERIOD).as_micros().max(1000);
            fs::write(
                &self.dir,
                "cpu.max",
                &format!("{quota} {}", CFS_PERIOD.as_micros()),
            )?;
        }
        Ok(())
    }

    pub(super) fn attach(&self, pid: i32) -> io::Result<()> {
        fs::attach(&self.dir, pid)
    }

    pub(super) fn members(&self) -> Vec<i32> {
        fs::procs(&self.dir)
    }

    pub(super) fn signal(&self, signal: i32) {
        fs::signal_all(&self.dir, signal);
    }

    pub(super) fn kill(&self) {
        if fs::write(&self.dir, "cgroup.kill", "1").is_err() {
            fs::signal_all(&self.dir, libc::SIGKILL);
        }
    }

    pub(super) fn usage(&self) -> CellUsage {
        usage_from(&self.dir)
    }

    pub(super) fn exists(&self) -> bool {
        self.dir.exists()
    }

    pub(super) fn remove(&self) -> io::Result<()> {
        fs::remove(&self.dir)
    }
}

/// Reads a v2 cell's accounting files; a missing file means "not measured".
fn usage_from(dir: &Path) -> CellUsage {
    CellUsage {
        peak_memory_bytes: fs::read_u64(dir, "memory.peak"),
        cpu_time_ms: fs::keyed(dir, "cpu.stat", "usage_usec").map(|us| us / 1000),
        oom_killed: fs::keyed(dir, "memory.events", "oom_kill").is_some_and(|n| n > 0),
        pids_limited: fs::keyed(dir, "pids.events", "max").is_some_and(|n| n > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_core::Cpus;

    /// A fake cgroup directory: the files a kernel would offer, as plain files.
    fn fake_cell(files: &[(&str, &str)]) -> (tempfile::TempDir, Cell) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
        }
        let cell = Cell {
            dir: dir.path().to_path_buf(),
        };
        (dir, cell)
    }

    #[test]
    fn limits_land_in_the_v2_files() {
        let (dir, cell) = fake_cell(&[
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("memory.oom.group", "0"),
            ("pids.max", "max"),
            ("cpu.max", "max 100000"),
        ]);
        let limits = JobLimits {
            memory_bytes: Some(100 << 20),
            cpus: Some(Cpus::from_millis(500)),
            pids: Some(50),
            nofile: None,
        };
        let all: BTreeSet<String> = WANTED.iter().map(|c| c.to_string()).collect();
        cell.apply(&limits, &all).unwrap_or_else(|e| panic!("{e}"));
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        assert_eq!(read("memory.max"), (100u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("pids.max"), "50");
        assert_eq!(read("cpu.max"), "50000 100000");
    }

    #[test]
    fn limits_without_their_controller_are_not_written() {
        let (dir, cell) = fake_cell(&[]);
        let limits = JobLimits {
            memory_bytes: Some(1 << 30),
            cpus: Some(Cpus::whole(1)),
            pids: Some(10),
            nofile: None,
        };
        cell.apply(&limits, &BTreeSet::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!dir.path().join("memory.max").exists());
        assert!(!dir.path().join("cpu.max").exists());
    }

    #[test]
    fn accounting_and_limit_hits_are_read_from_v2_files() {
        let (_dir, cell) = fake_cell(&[
            ("memory.peak", "209715200\n"),
            (
                "cpu.stat",
                "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n",
            ),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\noom_group_kill 1\n",
            ),
            ("pids.events", "max 3\n"),
        ]);
        let usage = cell.usage();
        assert_eq!(usage.peak_memory_bytes, Some(200 << 20));
        assert_eq!(usage.cpu_time_ms, Some(1234));
        assert!(usage.oom_killed);
        assert!(usage.pids_limited);
        let (_dir, quiet) = fake_cell(&[("memory.events", "oom 0\noom_kill 0\n")]);
        let usage = quiet.usage();
        assert!(!usage.oom_killed && !usage.pids_limited);
        assert_eq!(usage.peak_memory_bytes, None);
    }

    #[test]
    fn controllers_are_enabled_in_a_fixed_order() {
        let some: BTreeSet<String> = ["pids", "memory"].iter().map(|c| c.to_string()).collect();
        assert_eq!(plus(&some), "+memory +pids");
    }
}
