//! Attempts' output directories (`$DROVER_OUTPUT_DIR`), reused within one owner.
//!
//! Every attempt gets an empty directory of its own, and most jobs leave it empty. Making one
//! and removing it again cost an inode allocation and a deletion per attempt; on ext4 an
//! allocation made right after deletions also walks past every inode deleted in the last
//! seconds (`recently_deleted`), and together with the log files that was the largest share of
//! an owner's CPU per short job (#18). So an owner keeps the empty directory its last attempt
//! left, under a name of its own (`outputs/.spare-PID`), and renames it into place for the next
//! attempt: a rename allocates and frees nothing.
//!
//! The spare is only ever an empty directory with the mode a new one gets. A spare whose owner
//! died (its pid no longer runs) is removed by the next owner that starts an attempt.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// The mode of an output directory: the job's results are read by the node and the user.
const MODE: u32 = 0o755;

/// Prefix of a spare's name in the outputs root.
const SPARE: &str = ".spare-";

/// This process's spare, while it holds one.
static HELD: Mutex<Option<PathBuf>> = Mutex::new(None);

fn take_spare() -> Option<PathBuf> {
    HELD.lock().map_or(None, |mut held| held.take())
}

/// The outputs root of `dir` (`outputs/XX/JOB.N` → `outputs`).
fn root_of(dir: &Path) -> Option<&Path> {
    dir.parent()?.parent()
}

fn spare_in(root: &Path) -> PathBuf {
    root.join(format!("{SPARE}{}", std::process::id()))
}

/// Makes the empty output directory `dir`, from this owner's spare when it has one.
pub fn make(dir: &Path) -> io::Result<()> {
    let Some(root) = root_of(dir) else {
        return mkdir(dir, MODE);
    };
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| sweep_dead(root));
    if let Some(spare) = take_spare() {
        let moved = match std::fs::rename(&spare, dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // The shard directory may not exist yet (or someone removed the spare).
                if let Some(parent) = dir.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(MODE)
                        .create(parent)?;
                }
                std::fs::rename(&spare, dir)
            }
            other => other,
        };
        match moved {
            Ok(()) => return Ok(()),
            Err(err) => {
                tracing::debug!(spare = %spare.display(), error = %err, "cannot reuse the spare output directory");
                let _ = std::fs::remove_dir(&spare);
            }
        }
    }
    mkdir(dir, MODE)
}

/// Makes `dir` with `mode` if it is missing: one `mkdir` when its parent exists (the usual
/// case), its parents too when not.
pub(crate) fn mkdir(dir: &Path, mode: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir),
        other => other,
    }
}

/// After the attempt's processes are gone: an empty `dir` becomes this owner's spare (or is
/// removed, if it already holds one); one with anything in it stays for the node to read.
pub fn finish(dir: &Path) {
    let empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    if !empty {
        return;
    }
    if let (Some(root), Ok(mut held)) = (root_of(dir), HELD.lock()) {
        if held.is_none() {
            // A job may have changed its directory's mode; the next one gets a fresh one's.
            let spare = spare_in(root);
            let kept = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(MODE))
                .and_then(|()| std::fs::rename(dir, &spare));
            if kept.is_ok() {
                *held = Some(spare);
                return;
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Removes this owner's spare (when it exits).
pub fn release() {
    if let Some(spare) = take_spare() {
        let _ = std::fs::remove_dir(spare);
    }
}

/// Removes the spares of owners that no longer run.
fn sweep_dead(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SPARE))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() as i32 && !crate::sys::process_running(pid) {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, since the spare is per process: an emptied directory is reused by the next
    /// attempt, one with a result is kept, and a dead owner's spare is swept.
    #[test]
    fn an_empty_output_directory_is_reused_and_a_full_one_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let outputs = root.path().join("outputs");
        let first = outputs.join("ab").join("job1.1");
        // A spare left by an owner that died (pid 0x7fff_fff0 does not run here).
        let dead = outputs.join(".spare-2147483632");
        std::fs::create_dir_all(&dead).expect("dead spare");
        make(&first).expect("make");
        assert!(first.is_dir());
        assert!(!dead.exists(), "a dead owner's spare is swept");

        // The job left it empty (and made it private): it becomes the spare.
        std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(&first).expect("stat").ino();
        finish(&first);
        assert!(!first.exists());
        let spare = spare_in(&outputs);
        assert!(spare.is_dir());

        // The next attempt, in another shard, gets the same inode with a new one's mode.
        let second = outputs.join("cd").join("job2.1");
        make(&second).expect("make");
        assert_eq!(std::fs::metadata(&second).expect("stat").ino(), inode);
        assert_eq!(
            std::fs::metadata(&second).expect("stat").mode() & 0o777,
            MODE
        );
        assert!(!spare.exists());

        // A result is kept where the node reads it.
        std::fs::write(second.join("result.json"), "{}").expect("result");
        finish(&second);
        assert!(second.join("result.json").exists());
        assert!(!spare.exists());

        // Without a spare, a directory is made as before; release removes a held spare.
        let third = outputs.join("ef").join("job3.1");
        make(&third).expect("make");
        finish(&third);
        assert!(spare.is_dir());
        release();
        assert!(!spare.exists());
    }
}
