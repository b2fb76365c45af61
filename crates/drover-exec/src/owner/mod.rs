//! Job owners: the processes that hold running jobs, apart from the node daemon.
//!
//! A node does not parent its jobs. Each running attempt has an **owner**, a `drover owner`
//! process of its own (as slurmstepd, containerd's shim and conmon are to theirs) in a session of
//! its own: it creates the attempt's cell and process group, is the leader's parent, captures its
//! output into the log files, and runs everything that must happen on time — the timeout and
//! grace, the stall check, the checkpoint signal and, with a shared database, fencing. So a crash,
//! restart or upgrade of the node ends nothing: the owner goes on, and a node that starts again
//! re-attaches to it and collects what ended meanwhile.
//!
//! ```text
//!  node ──(socketpair, then DATA_DIR/owners/PID.sock)──▶ owner ──clone+gate──▶ job tree (its cell)
//!        Start/Release/Stop/Lease/Recorded        ◀── Hello, Spawned, Exited
//! ```
//!
//! - [`protocol`]: the messages, one JSON object per line, and the version handshake every
//!   connection opens with ([`Hello`]). A node refuses (and leaves alone) an owner whose protocol
//!   it does not speak: a job is never killed because its owner is older or newer.
//! - [`process`]: the owner process itself (`drover owner`).
//! - [`executor`]: the node's side: it spawns owners, talks to them, re-attaches after a restart,
//!   and cleans up after an owner that died.
//!
//! An owner holds one attempt at a time. When the node has recorded an outcome it may hand the
//! same owner its next attempt (one owner per slot, not one process per job: that keeps the cost
//! of a short job close to what it was when the node ran jobs itself); an idle owner with no node
//! exits.
//!
//! **An outcome is not lost with the node.** When the job ends the owner reports the outcome and
//! keeps it until the node says it is recorded (in its store, durably). If no node hears it —
//! none is connected, or it goes away before answering — or the owner is told to end, the owner
//! writes it to `owners/JOB.ATTEMPT.outcome` durably (temp file, fsync, rename, fsync of the
//! directory) before it lets go, and the next node collects it. While a node is connected no file
//! is written: it would cost every short job two metadata changes in the journal that the
//! store's fsync then waits for. The one gap: an owner killed with SIGKILL in the instant between
//! its job's end and the node's answer loses that outcome; the node then records the attempt
//! `lost` (`owner_died`) and the retry policy applies.

pub mod executor;
pub mod process;
pub mod protocol;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use drover_core::AttemptRef;
use serde::{Deserialize, Serialize};

pub use executor::{Executor, ExecutorConfig, ExecutorHandle, Found};
pub use protocol::{FromOwner, Hello, Holding, PROTOCOL, Phase, ToOwner};

use crate::Outcome;

/// The socket an owner with process id `pid` listens on, in the owners directory `dir`.
pub fn socket_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.sock"))
}

/// Where the outcome of `attempt` waits for a node, in the owners directory `dir`.
pub fn outcome_path(dir: &Path, attempt: AttemptRef) -> PathBuf {
    dir.join(format!("{}.{}.outcome", attempt.job_id, attempt.attempt))
}

/// The temp file a writer with process id `pid` fills before renaming it to `path`. The pid is
/// in its name so that a node's start-up sweep removes only the torn files of writers that are
/// gone, never one a live owner is writing at that moment.
fn tmp_path(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{pid}.tmp"));
    path.with_file_name(name)
}

/// Whether `name`, a file in an owners directory, is a temp file nobody will finish: its
/// writer's pid (see [`tmp_path`]) is gone, or it has no pid in its name.
pub(crate) fn is_abandoned_tmp(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".tmp") else {
        return false;
    };
    match stem
        .rsplit_once('.')
        .and_then(|(_, pid)| pid.parse::<i32>().ok())
    {
        Some(pid) if pid > 0 => !crate::sys::process_alive(pid),
        _ => true,
    }
}

/// What an outcome file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeFile {
    /// The protocol of the owner that wrote it.
    pub protocol: u32,
    /// The attempt.
    pub attempt: AttemptRef,
    /// How it ended.
    pub outcome: Outcome,
    /// The boot the job ran in.
    pub boot_id: Option<String>,
}

/// Writes an outcome file: temp file, rename; with `durable`, fsynced with its directory before
/// the rename is trusted (for an owner about to exit with no node having heard it).
pub fn write_outcome(dir: &Path, file: &OutcomeFile, durable: bool) -> io::Result<()> {
    let path = outcome_path(dir, file.attempt);
    let tmp = tmp_path(&path, std::process::id());
    let bytes = serde_json::to_vec(file).map_err(io::Error::other)?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        out.write_all(&bytes)?;
        if durable {
            out.sync_all()?;
        }
    }
    std::fs::rename(&tmp, &path)?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads an outcome file; `None` if it is missing or unreadable (a torn write after power loss).
pub fn read_outcome(path: &Path) -> Option<OutcomeFile> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Which boot of the machine this is: `/proc/sys/kernel/random/boot_id` on Linux,
/// `kern.bootsessionuuid` on macOS. `DROVER_TEST_BOOT_ID` stands in for it in tests.
pub fn boot_id() -> Option<String> {
    if let Some(fake) = std::env::var("DROVER_TEST_BOOT_ID")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return Some(fake);
    }
    platform_boot_id()
}

#[cfg(target_os = "linux")]
fn platform_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(target_os = "macos")]
fn platform_boot_id() -> Option<String> {
    let name = c"kern.bootsessionuuid";
    let mut buf = [0u8; 64];
    let mut len = buf.len();
    // SAFETY: sysctlbyname writes at most `len` bytes into `buf` and updates `len`.
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&buf[..len]);
    let id = text.trim_end_matches('\0').trim().to_string();
    (!id.is_empty()).then_some(id)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn platform_boot_id() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ending;

    #[test]
    fn an_outcome_file_round_trips_and_a_torn_one_reads_as_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let attempt = AttemptRef {
            job_id: drover_core::JobId::from_uuid(uuid::Uuid::now_v7()),
            attempt: 3,
        };
        let file = OutcomeFile {
            protocol: PROTOCOL,
            attempt,
            outcome: Outcome::without_process(Ending::Exited(7)),
            boot_id: Some("b".into()),
        };
        write_outcome(dir.path(), &file, true).expect("write");
        let path = outcome_path(dir.path(), attempt);
        assert_eq!(read_outcome(&path), Some(file));
        std::fs::write(&path, b"{\"protocol\":1,\"att").expect("tear");
        assert_eq!(read_outcome(&path), None);
    }

    #[test]
    fn this_machine_has_a_boot_id() {
        if cfg!(target_os = "linux") {
            assert!(platform_boot_id().is_some_and(|id| id.len() >= 32));
        }
    }
}
