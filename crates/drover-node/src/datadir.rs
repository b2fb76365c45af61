//! The node's data directory: created with mode 0700, locked so one node owns it, and holding
//! the database, the logs, the node's stable id and the address clients use to find it.
//!
//! ```text
//! DATA_DIR/
//!   drover.db         the SQLite store (plus -wal and -shm)
//!   node-id           this node's stable id, written once
//!   node.lock         flock'ed while a node runs here
//!   token             the node's local API token (mode 0600), made at first start
//!   serve.json        {"url": ..., "pid": ..., "node": ...} while a node serves
//!   boot-id           the machine's boot the node last started in (a change means a reboot)
//!   reserve           8 MiB set aside, freed when the disk fills so outcomes still fit
//!   logs/XX/JOB.N.stdout  per-attempt output (N = attempt number, XX = the id's last byte)
//!   owners/PID.sock   the socket of each job owner (see drover_exec::owner)
//!   owners/JOB.N.outcome  an outcome no node has recorded yet
//!   checkpoints/JOB/  $DROVER_CHECKPOINT_DIR: kept across a job's attempts
//!   sessions/JOB.sock the socket of a session's host (see drover_exec::session)
//!   pools/NAME/ID.sock the socket of each parent of pool NAME (ID: its job id's last 12 digits)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use drover_core::{AttemptRef, JobId, NodeId};
use serde::{Deserialize, Serialize};

/// Space set aside in the data dir for a full disk (`DATA_DIR/reserve`): enough for the store
/// to write many endings.
pub const RESERVE_BYTES: u64 = 8 << 20;

/// Bytes free for this user on the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct it is given; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // widths differ by OS
    Some(u64::from(stat.f_bavail as u64) * u64::from(stat.f_frsize as u64))
}

/// The file a serving node writes its address into.
pub const ADDRESS_FILE: &str = "serve.json";

/// The file holding the node's local API token.
pub const TOKEN_FILE: &str = "token";

/// What `serve.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeInfo {
    /// Base URL of the API, e.g. `http://127.0.0.1:7878`.
    pub url: String,
    /// The node's process id.
    pub pid: u32,
    /// The node's id.
    pub node: NodeId,
}

pub use drover_core::Stream;

/// An open, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another node holds the lock.
    #[error("another drover node is already using {0} (see its serve.json)")]
    Busy(PathBuf),
    /// Some file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> DataDirError + 'p {
    move |source| DataDirError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

impl DataDir {
    /// Creates `root` (mode 0700) if needed and takes its lock.
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err("cannot create", root))?;
        // An existing directory keeps its mode unless we tighten it: job logs are private.
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(io_err("cannot set the mode of", root))?;
        // Log directories made by older versions were 0755; the files in them are 0600.
        let logs = root.join("logs");
        if let Ok(shards) = fs::read_dir(&logs) {
            for dir in shards.flatten().map(|e| e.path()).chain([logs.clone()]) {
                if dir.is_dir() {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                        .map_err(io_err("cannot set the mode of", &dir))?;
                }
            }
        }
        let lock_path = root.join("node.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("cannot open", &lock_path))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(DataDirError::Busy(root.to_path_buf()));
        }
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database file.
    pub fn database(&self) -> PathBuf {
        self.root.join("drover.db")
    }

    /// Why serving an empty queue from this data dir would be wrong, if it would: its SQLite
    /// store is missing or empty although a node has run here (a `node-id`, or logs). That is
    /// a deleted or truncated database, not a first start, and starting over would silently
    /// drop every job it held. (SQLite itself, opening a 0-byte database, deletes the `-wal`
    /// beside it, which may hold every recent commit: asked first, this stops that too.) Ask
    /// before [`DataDir::node_id`], which writes `node-id`.
    pub fn lost_store(&self) -> Option<String> {
        let db = self.database();
        let state = match fs::metadata(&db).map(|m| m.len()) {
            Err(_) => "missing",
            Ok(0) => "empty",
            Ok(_) => return None,
        };
        let ran_here = self.root.join("node-id").exists()
            || fs::read_dir(self.root.join("logs")).is_ok_and(|mut d| d.next().is_some());
        if !ran_here {
            return None;
        }
        let wal = db.with_file_name("drover.db-wal");
        let keep_wal = if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            format!(
                " Keep {}: it holds the latest commits, and SQLite deletes it when it opens an empty database.",
                wal.display()
            )
        } else {
            String::new()
        };
        Some(format!(
            "{} is {state}, but a node has run in {} before (it has a node-id or logs): starting now would serve an empty queue and forget every job it held.{keep_wal} If you have a copy of the database, put it back as {}; to start an empty queue here on purpose, run `drover serve --init`",
            db.display(),
            self.root.display(),
            db.display()
        ))
    }

    /// Makes sure `DATA_DIR/reserve` holds [`RESERVE_BYTES`] of the disk: space set aside, so
    /// that when the disk fills up, freeing it ([`DataDir::release_reserve_if_full`]) leaves
    /// room for the endings the store must still write. Best effort: a disk too full for it
    /// at start gets none.
    pub fn ensure_reserve(&self) {
        let path = self.reserve_path();
        if fs::metadata(&path).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
            return;
        }
        let made = File::create(&path).and_then(|mut file| {
            // Written, not just sized: a sparse file would reserve nothing.
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..RESERVE_BYTES / (1 << 20) {
                file.write_all(&zeros)?;
            }
            file.sync_all()
        });
        if let Err(err) = made {
            let _ = fs::remove_file(&path);
            tracing::warn!(error = %err, path = %path.display(), "cannot set space aside for a full disk");
        }
    }

    /// Frees the reserve if the data dir's disk is (nearly) full: called when the store could
    /// not write, so that outcomes fit. It is made again at the next start.
    pub fn release_reserve_if_full(&self) {
        let path = self.reserve_path();
        if !path.exists() || free_bytes(&self.root).is_none_or(|free| free > RESERVE_BYTES) {
            return;
        }
        match fs::remove_file(&path) {
            Ok(()) => tracing::warn!(
                freed = RESERVE_BYTES,
                "the data dir's disk is full: freed the space set aside for this, so outcomes can be written; free some space"
            ),
            Err(err) => tracing::warn!(error = %err, "cannot free the reserve"),
        }
    }

    fn reserve_path(&self) -> PathBuf {
        self.root.join("reserve")
    }

    /// This node's stable id: read from `node-id`, or made up (`HOSTNAME-xxxxxx`) and written.
    pub fn node_id(&self) -> Result<NodeId, DataDirError> {
        let path = self.root.join("node-id");
        match fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => return Ok(NodeId(text.trim().to_string())),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err("cannot read", &path)(err)),
        }
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let id = format!("{}-{}", hostname(), &suffix[suffix.len() - 6..]);
        write_atomically(&path, id.as_bytes())?;
        Ok(NodeId(id))
    }

    /// The file holding the node's local API token (`$DROVER_TOKEN_FILE` of its jobs).
    pub fn token_path(&self) -> PathBuf {
        self.root.join(TOKEN_FILE)
    }

    /// The node's local API token: read from `token`, or made (32 random bytes, hex) and
    /// written with mode 0600. Only the node's user can read it, which is what keeps other
    /// users and web pages out while the user's own CLI finds it with no setup.
    pub fn local_token(&self) -> Result<String, DataDirError> {
        let path = self.root.join(TOKEN_FILE);
        match fs::read_to_string(&path) {
            Ok(text) if text.trim().len() >= 32 => {
                // A copy restored from a backup may have lost its mode.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .map_err(io_err("cannot set the mode of", &path))?;
                return Ok(text.trim().to_string());
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err("cannot read", &path)(err)),
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| DataDirError::Io {
            what: "cannot make a random token for",
            path: path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_atomically(&path, format!("{token}\n").as_bytes())?;
        Ok(token)
    }

    /// Where an attempt's stream is captured.
    pub fn log_path(&self, attempt: AttemptRef, stream: Stream) -> PathBuf {
        log_path(&self.root, attempt.job_id, attempt.attempt, stream)
    }

    /// The file a job with a stall period touches to show it is alive
    /// (`$DROVER_HEARTBEAT_FILE`), beside its logs.
    pub fn heartbeat_path(&self, attempt: AttemptRef) -> PathBuf {
        log_path(&self.root, attempt.job_id, attempt.attempt, Stream::Stdout)
            .with_extension("heartbeat")
    }

    /// The attempt's own directory (`$DROVER_OUTPUT_DIR`): `outputs/XX/JOB.N/`, sharded as the
    /// logs are.
    pub fn output_dir(&self, attempt: AttemptRef) -> PathBuf {
        output_dir(&self.root, attempt.job_id, attempt.attempt)
    }

    /// The file a job that runs after others reads them in (`$DROVER_INPUTS`), beside its
    /// output directory.
    pub fn inputs_path(&self, attempt: AttemptRef) -> PathBuf {
        let dir = self.output_dir(attempt);
        let name = format!("{}.{}.inputs.json", attempt.job_id, attempt.attempt);
        dir.parent()
            .map_or_else(|| PathBuf::from(&name), |p| p.join(&name))
    }

    /// Where job owners keep their sockets and the outcomes no node has recorded yet.
    pub fn owners_dir(&self) -> PathBuf {
        self.root.join("owners")
    }

    /// The socket of the session whose host is the job `host` (made by the host itself).
    pub fn session_socket(&self, host: JobId) -> PathBuf {
        self.root.join("sessions").join(format!("{host}.sock"))
    }

    /// Where the parents of the pool `pool` keep their sockets.
    pub fn pool_dir(&self, pool: &str) -> PathBuf {
        self.root.join("pools").join(pool)
    }

    /// The socket of the pool parent `parent` (made by the parent). Short, for the ~100 bytes
    /// a socket's path may have: the last 12 hex digits of a v7 id are random, which tells the
    /// parents of one pool apart.
    pub fn pool_socket(&self, pool: &str, parent: JobId) -> PathBuf {
        let id = parent.to_string();
        let tail = &id[id.len().saturating_sub(12)..];
        self.pool_dir(pool).join(format!("{tail}.sock"))
    }

    /// The checkpoint directory of `job` (`$DROVER_CHECKPOINT_DIR`), kept across its attempts.
    pub fn checkpoint_dir(&self, job: JobId) -> PathBuf {
        self.root.join("checkpoints").join(job.to_string())
    }

    /// The boot the node last started in, if one did here before.
    pub fn last_boot_id(&self) -> Option<String> {
        fs::read_to_string(self.root.join("boot-id"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Records the boot the node runs in.
    pub fn write_boot_id(&self, boot: &str) -> Result<(), DataDirError> {
        write_atomically(&self.root.join("boot-id"), boot.as_bytes())
    }

    /// Records the address clients should use.
    pub fn write_serve_info(&self, info: &ServeInfo) -> Result<(), DataDirError> {
        let json = serde_json::to_vec_pretty(info).map_err(|e| DataDirError::Io {
            what: "cannot encode",
            path: self.root.join(ADDRESS_FILE),
            source: io::Error::other(e),
        })?;
        write_atomically(&self.root.join(ADDRESS_FILE), &json)
    }

    /// Removes the address file (on clean shutdown).
    pub fn remove_serve_info(&self) {
        let _ = fs::remove_file(self.root.join(ADDRESS_FILE));
    }
}

/// Where attempt `attempt` of `job` keeps `stream`, under data dir `root`:
/// `logs/XX/JOB.N.stdout`, where `XX` is the last byte of the id in hex. The id's tail is random,
/// so 256 directories share the files evenly, and a job costs no directory of its own.
pub fn log_path(root: &Path, job: JobId, attempt: u32, stream: Stream) -> PathBuf {
    let id = job.to_string();
    let shard = &id[id.len() - 2..];
    root.join("logs")
        .join(shard)
        .join(format!("{id}.{attempt}.{}", stream.name()))
}

/// Where attempt `attempt` of `job` keeps its outputs, under data dir `root`.
pub fn output_dir(root: &Path, job: JobId, attempt: u32) -> PathBuf {
    let id = job.to_string();
    let shard = &id[id.len() - 2..];
    root.join("outputs")
        .join(shard)
        .join(format!("{id}.{attempt}"))
}

/// Reads the local API token of the node whose data dir is `root`.
pub fn read_local_token(root: &Path) -> io::Result<String> {
    let text = fs::read_to_string(root.join(TOKEN_FILE))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the token file is empty",
        ));
    }
    Ok(token.to_string())
}

/// Reads the address a node in `root` serves on, if one does.
pub fn read_serve_info(root: &Path) -> io::Result<ServeInfo> {
    let text = fs::read(root.join(ADDRESS_FILE))?;
    serde_json::from_slice(&text).map_err(io::Error::other)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("cannot create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("cannot rename into", path))
}

/// The host name as the OS has it (`mac.lan`), if it has one.
pub(crate) fn os_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The machine's host name: its first label, cleaned for use in ids (`node` when it has none).
pub fn hostname() -> String {
    let name = os_hostname().unwrap_or_default();
    let clean: String = name
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if clean.is_empty() {
        "node".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_is_private_locked_and_keeps_its_node_id() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("data");
        let dir = DataDir::open(&root).expect("open");
        let mode = fs::metadata(&root).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(matches!(DataDir::open(&root), Err(DataDirError::Busy(_))));
        let id = dir.node_id().expect("id");
        assert_eq!(dir.node_id().expect("id again"), id);
        let token = dir.local_token().expect("token");
        assert_eq!(token.len(), 64);
        assert_eq!(dir.local_token().expect("token again"), token);
        assert_eq!(read_local_token(&root).expect("read"), token);
        let mode = fs::metadata(root.join(TOKEN_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "only the node's user may read the token"
        );
        drop(dir);
        let again = DataDir::open(&root).expect("reopen after the lock is released");
        assert_eq!(again.node_id().expect("id"), id);
        assert_eq!(
            again.local_token().expect("token"),
            token,
            "made once, kept"
        );
    }
}
