//! Containment: hard limits, whole-tree kill and whole-tree accounting for each attempt.
//!
//! A [`Containment`] is chosen once when the supervisor starts. It is one of three backends:
//!
//! | backend   | limits                                      | kill                          | accounting                      |
//! |-----------|---------------------------------------------|-------------------------------|---------------------------------|
//! | `cgroup2` | `memory.max`, `memory.swap.max`, `pids.max`, `cpu.max` | `cgroup.kill`      | `memory.peak`, `cpu.stat`, `memory.events` |
//! | `cgroup1` | `memory.limit_in_bytes` (+`memsw`), `pids.max`, `cpu.cfs_quota_us` | freeze → SIGKILL each → thaw | `memory.max_usage_in_bytes`, `cpuacct.usage`, `memory.oom_control` |
//! | `rlimit`  | `RLIMIT_DATA`/`RLIMIT_AS`, `RLIMIT_NPROC`, `RLIMIT_CPU`, per process | process group, plus escapees found as a child subreaper | `wait4` rusage |
//!
//! Each attempt gets a [`Cell`]: a leaf cgroup (or, for `rlimit`, the set of processes that carry
//! the attempt's `DROVER_JOB_ID`/`DROVER_ATTEMPT`). The child is placed in its cell while it waits
//! at the gate, before it can run anything, so every process it ever forks — including one that
//! calls `setsid` or double-forks — is inside. `RLIMIT_NOFILE` is set in the child on every
//! backend.
//!
//! The backend never writes the store and keeps no state beyond paths: a cell can be found again
//! from its attempt alone, which is how a restarted node sweeps cells a crash left behind.

mod cgroupfs;
mod rlimit;
mod scopes;
mod v1;
mod v2;

use std::io;
use std::str::FromStr;
use std::time::Duration;

use drover_core::{AttemptRef, Cpus};
use serde::{Deserialize, Serialize};

pub use rlimit::{ChildRlimit, become_subreaper, reap_strays};
pub(crate) use rlimit::{forget_leader, register_leader};

pub use drover_core::report::{BackendKind, BackendReport, LimitSupport};

/// `--backend`: pick automatically, or insist on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// cgroup v2 with its memory and pids controllers, else cgroup v1, else rlimit.
    #[default]
    Auto,
    /// This backend or an error saying why it cannot be used.
    Only(BackendKind),
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => BackendChoice::Auto,
            "cgroup2" => BackendChoice::Only(BackendKind::CgroupV2),
            "cgroup1" => BackendChoice::Only(BackendKind::CgroupV1),
            "rlimit" => BackendChoice::Only(BackendKind::Rlimit),
            other => {
                return Err(format!(
                    "unknown backend `{other}` (use auto, cgroup2, cgroup1 or rlimit)"
                ));
            }
        })
    }
}

/// The limits one attempt runs under. Plain data, to cross a process boundary later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JobLimits {
    /// Memory for the whole tree, in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU quota for the whole tree.
    pub cpus: Option<Cpus>,
    /// Most processes in the tree at once.
    pub pids: Option<u32>,
    /// Most open descriptors per process.
    pub nofile: Option<u64>,
}

/// Why containment could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ContainError {
    /// The backend asked for with `--backend` is not usable here.
    #[error("the {backend} backend is not usable here: {why}")]
    Unusable {
        /// The backend.
        backend: BackendKind,
        /// Why not.
        why: String,
    },
}

fn support(limit: &str, enforced: bool, how: impl Into<String>) -> LimitSupport {
    LimitSupport {
        limit: limit.into(),
        enforced,
        how: how.into(),
    }
}

/// What a cell measured over an attempt's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CellUsage {
    /// Peak memory of the whole tree, in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// User + system CPU time of the whole tree, in milliseconds.
    pub cpu_time_ms: Option<u64>,
    /// The kernel's OOM killer killed a process of the tree.
    pub oom_killed: bool,
    /// A fork failed because the tree was at its pids limit.
    pub pids_limited: bool,
}

/// What a live cell uses at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellSample {
    /// Memory of the whole tree now, in bytes.
    pub memory_bytes: Option<u64>,
    /// User + system CPU time the tree has used so far, in milliseconds.
    pub cpu_time_ms: Option<u64>,
}

/// The containment backend in use, chosen once per node.
#[derive(Debug)]
pub struct Containment {
    backend: Backend,
    why: String,
    /// The node's hold on its scope (see `scopes`); none in an owner, or on rlimit.
    lock: Option<scopes::ScopeLock>,
}

/// A chosen backend as plain data: what a node hands each job owner, so that owners use the
/// node's subtree without probing or creating anything of their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainmentSpec {
    backend: SpecBackend,
    why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SpecBackend {
    V2(v2::Tree),
    V1(v1::Tree),
    Rlimit,
}

#[derive(Debug)]
enum Backend {
    V2(v2::Tree),
    V1(v1::Tree),
    Rlimit(rlimit::Tree),
}

/// The directories of a backend's subtree, one per hierarchy (none for rlimit).
fn tree_dirs(backend: &Backend) -> Vec<std::path::PathBuf> {
    match backend {
        Backend::V2(tree) => tree.paths(),
        Backend::V1(tree) => tree.paths(),
        Backend::Rlimit(_) => Vec::new(),
    }
}

impl Containment {
    /// Chooses a backend. `scope` names this node's own subtree (`drover.<node id>`), so that
    /// nodes sharing a machine never touch each other's cells.
    pub fn detect(choice: BackendChoice, scope: &str) -> Result<Containment, ContainError> {
        let mut refusals = Vec::new();
        let wanted: &[BackendKind] = match choice {
            BackendChoice::Auto => &[
                BackendKind::CgroupV2,
                BackendKind::CgroupV1,
                BackendKind::Rlimit,
            ],
            BackendChoice::Only(kind) => match kind {
                BackendKind::CgroupV2 => &[BackendKind::CgroupV2],
                BackendKind::CgroupV1 => &[BackendKind::CgroupV1],
                BackendKind::Rlimit => &[BackendKind::Rlimit],
            },
        };
        // Taken before the subtree is made: a sweeping node never sees it unlocked.
        let mut lock = scopes::lock(scope);
        for kind in wanted {
            let strict = choice == BackendChoice::Auto;
            let attempt = match kind {
                BackendKind::CgroupV2 => v2::Tree::open(scope, strict).map(Backend::V2),
                BackendKind::CgroupV1 => v1::Tree::open(scope).map(Backend::V1),
                BackendKind::Rlimit => Ok(Backend::Rlimit(rlimit::Tree::open())),
            };
            match attempt {
                Ok(backend) => {
                    let why = match choice {
                        BackendChoice::Only(_) => "chosen with --backend".to_string(),
                        BackendChoice::Auto if refusals.is_empty() => {
                            format!("{kind} is available with every controller drover uses")
                        }
                        BackendChoice::Auto => refusals.join("; "),
                    };
                    if tree_dirs(&backend).is_empty() {
                        lock = None; // no subtree to hold
                        let _ = std::fs::remove_file(scopes::lock_path(scope));
                    }
                    return Ok(Containment { backend, why, lock });
                }
                Err(why) => {
                    if choice != BackendChoice::Auto {
                        return Err(ContainError::Unusable {
                            backend: *kind,
                            why,
                        });
                    }
                    refusals.push(format!("not {kind}: {why}"));
                }
            }
        }
        // rlimit always opens, so Auto never gets here.
        Err(ContainError::Unusable {
            backend: BackendKind::Rlimit,
            why: refusals.join("; "),
        })
    }

    /// The backend as plain data, for a job owner ([`Containment::for_owner`]).
    pub fn spec(&self) -> ContainmentSpec {
        let backend = match &self.backend {
            Backend::V2(tree) => SpecBackend::V2(tree.clone()),
            Backend::V1(tree) => SpecBackend::V1(tree.clone()),
            Backend::Rlimit(_) => SpecBackend::Rlimit,
        };
        ContainmentSpec {
            backend,
            why: self.why.clone(),
        }
    }

    /// The node's backend, in a job owner. With rlimit the owner becomes a child subreaper, so
    /// that its job's escapees are re-parented to it.
    pub fn for_owner(spec: ContainmentSpec) -> Containment {
        let backend = match spec.backend {
            SpecBackend::V2(tree) => Backend::V2(tree),
            SpecBackend::V1(tree) => Backend::V1(tree),
            SpecBackend::Rlimit => {
                become_subreaper();
                Backend::Rlimit(rlimit::Tree::open())
            }
        };
        Containment {
            backend,
            why: spec.why,
            lock: None,
        }
    }

    /// Whether attempts get cells (cgroups): directories named by the attempt, which outlive
    /// the node and the owner. The rlimit backend has none.
    pub fn has_cells(&self) -> bool {
        !matches!(self.backend, Backend::Rlimit(_))
    }

    /// Whether `attempt`'s cell exists: made for it and not yet removed. Always false without
    /// cells.
    pub fn cell_exists(&self, attempt: AttemptRef) -> bool {
        match self.cell_of(attempt).inner {
            CellInner::V2(cell) => cell.exists(),
            CellInner::V1(cell) => cell.exists(),
            CellInner::Rlimit(_) => false,
        }
    }

    /// The backend in use.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::V2(_) => BackendKind::CgroupV2,
            Backend::V1(_) => BackendKind::CgroupV1,
            Backend::Rlimit(_) => BackendKind::Rlimit,
        }
    }

    /// What `drover doctor` prints.
    pub fn report(&self) -> BackendReport {
        let nofile = support(
            "nofile",
            true,
            "RLIMIT_NOFILE, set in the child before exec",
        );
        let (cgroup_paths, mut limits) = match &self.backend {
            Backend::V2(tree) => (tree.paths(), tree.support()),
            Backend::V1(tree) => (tree.paths(), tree.support()),
            Backend::Rlimit(tree) => (Vec::new(), tree.support()),
        };
        limits.insert(3.min(limits.len()), nofile);
        BackendReport {
            backend: self.kind(),
            why: self.why.clone(),
            cgroup_paths,
            limits,
        }
    }

    /// Makes the cell for `attempt` with `limits` applied. Nothing runs in it yet.
    pub fn create(&self, attempt: AttemptRef, limits: &JobLimits) -> io::Result<Cell> {
        let inner = match &self.backend {
            Backend::V2(tree) => CellInner::V2(tree.create(&cell_name(attempt), limits)?),
            Backend::V1(tree) => CellInner::V1(tree.create(&cell_name(attempt), limits)?),
            Backend::Rlimit(_) => CellInner::Rlimit(rlimit::Cell::new(attempt)),
        };
        Ok(Cell { attempt, inner })
    }

    /// The per-process limits the child sets on itself before exec: `RLIMIT_NOFILE` always, and
    /// for the rlimit backend its approximations of the tree limits.
    pub fn child_rlimits(&self, limits: &JobLimits, timeout: Duration) -> Vec<ChildRlimit> {
        let mut out = Vec::new();
        if let Some(nofile) = limits.nofile {
            out.push(ChildRlimit::nofile(nofile));
        }
        if let Backend::Rlimit(_) = self.backend {
            out.extend(rlimit::approximations(limits, timeout));
        }
        out
    }

    /// Memory the attempt's tree uses now, where the backend can tell.
    pub fn memory_current(&self, attempt: AttemptRef) -> Option<u64> {
        match &self.backend {
            Backend::V2(tree) => tree.memory_current(&cell_name(attempt)),
            Backend::V1(tree) => tree.memory_current(&cell_name(attempt)),
            Backend::Rlimit(_) => None,
        }
    }

    /// What the cells of `attempts` use now, in the same order: read from the cgroup files, or
    /// on the rlimit backend summed over the processes that carry each attempt's variables
    /// (one scan of the machine's processes for all of them).
    pub fn sample(&self, attempts: &[AttemptRef]) -> Vec<CellSample> {
        match &self.backend {
            Backend::V2(tree) => attempts
                .iter()
                .map(|a| tree.sample(&cell_name(*a)))
                .collect(),
            Backend::V1(tree) => attempts
                .iter()
                .map(|a| tree.cell(&cell_name(*a)).sample())
                .collect(),
            Backend::Rlimit(_) => rlimit::sample(attempts),
        }
    }

    /// Kills whatever is left in cells of this node except those of `keep` (attempts whose
    /// owners still run them), and removes them. Returns how many cells were swept.
    pub fn sweep_except(&self, keep: &[AttemptRef]) -> usize {
        let names: Vec<String> = keep.iter().map(|a| cell_name(*a)).collect();
        let keep = |name: &str| names.iter().any(|n| n == name);
        match &self.backend {
            Backend::V2(tree) => tree.sweep(&keep),
            Backend::V1(tree) => tree.sweep(&keep),
            Backend::Rlimit(_) => 0,
        }
    }

    /// The cell `attempt` was given, found again from the attempt alone (after its owner died).
    pub fn cell_of(&self, attempt: AttemptRef) -> Cell {
        let inner = match &self.backend {
            Backend::V2(tree) => CellInner::V2(tree.cell(&cell_name(attempt))),
            Backend::V1(tree) => CellInner::V1(tree.cell(&cell_name(attempt))),
            Backend::Rlimit(_) => CellInner::Rlimit(rlimit::Cell::new(attempt)),
        };
        Cell { attempt, inner }
    }

    /// Removes this node's subtree if nothing is in it: an `rmdir`, which the kernel refuses
    /// while a cell (a job that outlives the node, say) is left, so it never touches a job.
    /// For a start that failed, and a node that stops: neither leaves an empty
    /// `drover.<node>` behind.
    pub fn release(&self) {
        match &self.backend {
            Backend::V2(tree) => tree.close(),
            Backend::V1(tree) => tree.close(),
            Backend::Rlimit(_) => {}
        }
        self.forget_scope();
    }

    /// Drops the scope's lock file once the subtree is gone; a subtree that a job outlived
    /// keeps its lock file, so that a later node's sweep can tell that nobody holds it.
    fn forget_scope(&self) {
        if let Some(lock) = &self.lock {
            lock.forget_if_gone(&tree_dirs(&self.backend));
        }
    }

    /// Removes the empty subtrees of nodes on this machine that are gone (killed, never
    /// started again): for a node at start, not for a probe such as `drover doctor`. Only a
    /// node that holds its own scope's lock sweeps. Returns how many it removed.
    pub fn sweep_gone_nodes(&self) -> usize {
        if self.lock.is_none() {
            return 0;
        }
        let dirs = tree_dirs(&self.backend);
        let Some(own) = dirs
            .first()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
        else {
            return 0;
        };
        let parents = dirs
            .iter()
            .filter_map(|d| d.parent())
            .map(std::path::Path::to_path_buf)
            .collect();
        scopes::sweep(&parents, &own)
    }

    /// Removes this node's subtree at shutdown, sweeping any cell whose removal had not run yet
    /// (nothing runs any more by then).
    pub fn close(&self) {
        self.sweep_except(&[]);
        self.release();
    }
}

/// A cell's directory name: the attempt, spelled the way logs and the API spell it.
fn cell_name(attempt: AttemptRef) -> String {
    format!("{}.{}", attempt.job_id, attempt.attempt)
}

/// Where one attempt's processes live. Cloning copies paths, not processes.
#[derive(Debug, Clone)]
pub struct Cell {
    attempt: AttemptRef,
    inner: CellInner,
}

#[derive(Debug, Clone)]
enum CellInner {
    V2(v2::Cell),
    V1(v1::Cell),
    Rlimit(rlimit::Cell),
}

impl Cell {
    /// The attempt this cell holds.
    pub fn attempt(&self) -> AttemptRef {
        self.attempt
    }

    /// Moves `pid` (waiting at the gate) into the cell.
    pub fn attach(&self, pid: i32) -> io::Result<()> {
        match &self.inner {
            CellInner::V2(cell) => cell.attach(pid),
            CellInner::V1(cell) => cell.attach(pid),
            CellInner::Rlimit(_) => Ok(()),
        }
    }

    /// Live processes in the cell (never zombies).
    pub fn members(&self) -> Vec<i32> {
        match &self.inner {
            CellInner::V2(cell) => cell.members(),
            CellInner::V1(cell) => cell.members(),
            CellInner::Rlimit(cell) => cell.members(),
        }
    }

    /// Sends `signal` to every process in the cell.
    pub fn signal(&self, signal: i32) {
        match &self.inner {
            CellInner::V2(cell) => cell.signal(signal),
            CellInner::V1(cell) => cell.signal(signal),
            CellInner::Rlimit(cell) => cell.signal(signal),
        }
    }

    /// Live processes of the cell wherever they are, for an attempt whose owner is gone: as
    /// [`Cell::members`] with cgroups; without, every process on the machine that carries the
    /// attempt's variables (nobody adopted them as subreaper).
    pub fn orphaned_members(&self) -> Vec<i32> {
        match &self.inner {
            CellInner::Rlimit(cell) => cell.members_anywhere(),
            _ => self.members(),
        }
    }

    /// SIGKILLs every process in the cell in a way that nothing can fork away meanwhile (where
    /// the backend allows it).
    pub fn kill(&self) {
        match &self.inner {
            CellInner::V2(cell) => cell.kill(),
            CellInner::V1(cell) => cell.kill(),
            CellInner::Rlimit(cell) => cell.signal(libc::SIGKILL),
        }
    }

    /// What the cell measured. Read before [`Cell::remove`].
    pub fn usage(&self) -> CellUsage {
        match &self.inner {
            CellInner::V2(cell) => cell.usage(),
            CellInner::V1(cell) => cell.usage(),
            CellInner::Rlimit(_) => CellUsage::default(),
        }
    }

    /// Removes the cell once it is empty.
    pub fn remove(&self) {
        let result = match &self.inner {
            CellInner::V2(cell) => cell.remove(),
            CellInner::V1(cell) => cell.remove(),
            // No directory; but orphans the node adopted as subreaper are reaped now. (With
            // cgroups the node adopts nothing, so there is nothing to look for.)
            CellInner::Rlimit(_) => {
                reap_strays();
                Ok(())
            }
        };
        if let Err(err) = result {
            tracing::warn!(attempt = %self.attempt, error = %err, "cannot remove the attempt's cgroup");
        }
    }
}

/// The `cgroup.procs` files of this process's own cell, where it runs in one named
/// `cell_name` (`JOB.ATTEMPT`): one per hierarchy on cgroup v1, one on v2, none on the rlimit
/// backend or off Linux. A process that writes its pid into each joins the cell whole — how a
/// pool's forked child becomes its job (see `session`).
pub fn own_cell_procs(cell_name: &str) -> Vec<std::path::PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    own_cell_procs_in(&text, &cgroupfs::read_mounts(), cell_name)
}

fn own_cell_procs_in(
    membership: &str,
    mounts: &[cgroupfs::Mount],
    cell_name: &str,
) -> Vec<std::path::PathBuf> {
    let in_cell = |path: &str| path.rsplit('/').next() == Some(cell_name);
    let mut files = std::collections::BTreeSet::new();
    if let Some(path) = cgroupfs::parse_v2_membership(membership).filter(|p| in_cell(p)) {
        if let Some(mount) = mounts.iter().find(|m| m.unified) {
            files.insert(cgroupfs::join(&mount.path, &path).join("cgroup.procs"));
        }
    }
    for (controllers, path) in cgroupfs::parse_membership(membership) {
        if controllers.is_empty() || !in_cell(&path) {
            continue;
        }
        if let Some(mount) = mounts
            .iter()
            .find(|m| !m.unified && m.controllers.iter().any(|c| controllers.contains(c)))
        {
            files.insert(cgroupfs::join(&mount.path, &path).join("cgroup.procs"));
        }
    }
    files.into_iter().collect()
}

#[cfg(test)]
mod own_cell_tests {
    use super::cgroupfs::Mount;
    use super::*;

    #[test]
    fn the_cell_is_found_in_every_hierarchy_that_holds_it() {
        let mounts = vec![
            Mount {
                path: "/sys/fs/cgroup/memory".into(),
                unified: false,
                controllers: vec!["memory".into()],
            },
            Mount {
                path: "/sys/fs/cgroup/cpu,cpuacct".into(),
                unified: false,
                controllers: vec!["cpu".into(), "cpuacct".into()],
            },
            Mount {
                path: "/sys/fs/cgroup/unified".into(),
                unified: true,
                controllers: vec![],
            },
        ];
        let membership = "12:memory:/drover.n/J.1\n4:cpu,cpuacct:/drover.n/J.1\n1:name=systemd:/x\n0::/user.slice\n";
        assert_eq!(
            own_cell_procs_in(membership, &mounts, "J.1"),
            vec![
                std::path::PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/drover.n/J.1/cgroup.procs"),
                std::path::PathBuf::from("/sys/fs/cgroup/memory/drover.n/J.1/cgroup.procs"),
            ]
        );
        // Outside a cell (the rlimit backend): nothing to join.
        assert!(own_cell_procs_in("0::/user.slice\n", &mounts, "J.1").is_empty());
        assert_eq!(
            own_cell_procs_in("0::/drover.n/J.1\n", &mounts, "J.1"),
            vec![std::path::PathBuf::from(
                "/sys/fs/cgroup/unified/drover.n/J.1/cgroup.procs"
            )]
        );
    }
}
