//! What a node reports about itself — its capacity, its containment backend and what that
//! enforces, the machine's memory and pressure — as plain data, so that the API contract can
//! name it without depending on the code that measures it (`drover-exec` fills it in).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::resources::{Cpus, Resources};
use crate::units::format_bytes;

/// A node's capacity, as `drover doctor` and `GET /v1/node` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Capacity {
    /// Memory admission may hand out, in bytes.
    pub memory_bytes: u64,
    /// CPUs admission may hand out.
    pub cpus: Cpus,
    /// Attempts that may run at once.
    pub slots: usize,
}

impl Capacity {
    /// The part admission counts.
    pub fn resources(&self) -> Resources {
        Resources {
            memory_bytes: self.memory_bytes,
            cpu_millis: u64::from(self.cpus.millis()),
        }
    }

    /// `16 GiB memory, 8 CPUs, 8 slots`.
    pub fn describe(&self) -> String {
        format!(
            "{} memory, {} CPUs, {} slots",
            format_bytes(self.memory_bytes),
            self.cpus,
            self.slots
        )
    }
}

/// Which containment backend runs jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum BackendKind {
    /// A cgroup v2 leaf per attempt.
    #[serde(rename = "cgroup2")]
    CgroupV2,
    /// A cgroup per attempt in each v1 hierarchy (memory, pids, cpu, cpuacct, freezer).
    #[serde(rename = "cgroup1")]
    CgroupV1,
    /// Per-process resource limits and process-group kill (macOS, or no cgroup access).
    #[serde(rename = "rlimit")]
    Rlimit,
}

impl BackendKind {
    /// The name used by `--backend` and `drover doctor`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::CgroupV2 => "cgroup2",
            BackendKind::CgroupV1 => "cgroup1",
            BackendKind::Rlimit => "rlimit",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How one kind of limit is enforced by the chosen backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitSupport {
    /// `memory`, `cpus`, `pids`, `nofile`, `escapees` or `accounting`.
    pub limit: String,
    /// Whether drover can guarantee it for the whole tree.
    pub enforced: bool,
    /// How, or what is missing.
    pub how: String,
}

/// What `drover doctor` shows about containment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackendReport {
    /// The backend in use.
    pub backend: BackendKind,
    /// Why it was chosen (and why the ones before it were not).
    pub why: String,
    /// The directories under which attempt cgroups are made.
    #[schema(value_type = Vec<String>)]
    pub cgroup_paths: Vec<PathBuf>,
    /// Each limit kind and whether it is enforced.
    pub limits: Vec<LimitSupport>,
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Memory {
    /// `MemTotal`.
    pub total_bytes: u64,
    /// `MemAvailable`: what can be allocated without swapping, by anyone.
    pub available_bytes: u64,
}

/// One PSI line: the share of time some task was stalled on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pressure {
    /// Percent of the last 10 s.
    pub avg10: f64,
    /// Percent of the last 60 s.
    pub avg60: f64,
}

/// PSI for memory and CPU (`some` lines), where the kernel has it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pressures {
    /// `/proc/pressure/memory`.
    pub memory: Option<Pressure>,
    /// `/proc/pressure/cpu`.
    pub cpu: Option<Pressure>,
}
