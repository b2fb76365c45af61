//! Which `drover.<node>` subtrees belong to a node that is alive. A node holds an exclusive
//! `flock` on `<locks>/drover.<node>.lock` for as long as it runs (the kernel lets go when it
//! dies, kill -9 or not; the descriptor closes on exec, so no job owner inherits it). A node that
//! starts takes its own lock before it makes its subtree, then sweeps its siblings: one whose lock
//! it can take belongs to a node that is gone, and is removed if it is empty — `rmdir` of its empty
//! cells, then of it, which the kernel refuses while a process is left in it, so a job that
//! outlives its node (its owner alive) is never touched. Siblings with no lock file (a drover
//! from before locks, or another program's) are left alone.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A node's hold on its scope.
#[derive(Debug)]
pub(super) struct ScopeLock {
    _file: File,
    path: PathBuf,
}

impl ScopeLock {
    /// Removes the lock file once the scope is gone from every hierarchy: a scope left behind
    /// (a job outlived the node) keeps it, so that a later sweep can tell it is unowned.
    pub(super) fn forget_if_gone(&self, dirs: &[PathBuf]) {
        if dirs.iter().all(|dir| !dir.exists()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where the lock files live: `/run/drover/scopes` for root, `$XDG_RUNTIME_DIR/drover/scopes`
/// (or a private directory in the temp dir) for anyone else. Emptied by a reboot, as cgroups are.
fn locks_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 && Path::new("/run").is_dir() {
        return PathBuf::from("/run/drover/scopes");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("drover").join("scopes"),
        None => std::env::temp_dir()
            .join(format!("drover-{uid}"))
            .join("scopes"),
    }
}

pub(super) fn lock_path(scope: &str) -> PathBuf {
    locks_dir().join(format!("{scope}.lock"))
}

/// Tries `flock(LOCK_EX | LOCK_NB)` on `file`.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor this File owns.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Takes this node's lock. A sweeping node may hold it for a moment, so this waits up to 2 s;
/// `None` (with a warning) if it cannot be had — the node then works without one, and no
/// sweep can remove its empty subtree while it runs, as before locks.
pub(super) fn lock(scope: &str) -> Option<ScopeLock> {
    use std::os::unix::fs::DirBuilderExt;
    if !cfg!(target_os = "linux") {
        return None; // no cgroups, no subtrees to hold
    }
    let path = lock_path(scope);
    let dir = path.parent()?;
    if let Err(err) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot make the directory for cgroup scope locks");
        return None;
    }
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot open this node's cgroup scope lock");
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !try_lock(&file) {
        if Instant::now() > deadline {
            tracing::warn!(path = %path.display(), "another process holds this node's cgroup scope lock");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(ScopeLock { _file: file, path })
}

/// Removes the empty subtrees of nodes that are gone, under `parents` (the directories this
/// node's own scope `own` is in, one per hierarchy). Returns how many it removed.
pub(super) fn sweep(parents: &BTreeSet<PathBuf>, own: &str) -> usize {
    let mut names = BTreeSet::new();
    for parent in parents {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("drover.") && name != own && entry.path().is_dir() {
                names.insert(name);
            }
        }
    }
    let mut removed = 0;
    for name in names {
        let path = lock_path(&name);
        let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue; // no lock file: not ours to judge
        };
        if !try_lock(&file) {
            continue; // its node is alive
        }
        let dirs: Vec<PathBuf> = parents.iter().map(|p| p.join(&name)).collect();
        for dir in &dirs {
            remove_if_empty(dir);
        }
        if dirs.iter().all(|dir| !dir.exists()) {
            let _ = std::fs::remove_file(&path);
            removed += 1;
            tracing::info!(scope = %name, "removed the empty cgroup tree of a node that is gone");
        }
        // Dropping `file` lets the lock go.
    }
    removed
}

/// `rmdir` of a scope's cells and then of the scope; the kernel refuses each while a process
/// is in it.
fn remove_if_empty(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
