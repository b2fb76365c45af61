//! Giving freed heap back to the system.
//!
//! glibc's allocator gives each thread that allocates an arena of its own, and keeps what is
//! freed inside an arena for reuse instead of returning it. A node's allocations come in bursts
//! (a batch of 10,000 specs parsed, encoded and written; a listing of jobs), on whichever
//! tokio worker or blocking thread served them, so each arena grows to its largest burst and
//! stays there: before #18 a node that had run 100,000 jobs held 256 MiB, of which ~220 MiB
//! were free memory in four 64 MiB arenas. `malloc_trim` returns the free pages of every arena;
//! it runs off the async threads every [`EVERY`], which costs a few milliseconds of one blocking
//! thread when there is something to give back and next to nothing when there is not.
//! Other allocators (macOS's, musl's) return memory themselves; there this does nothing.

use std::time::Duration;

/// Between trims.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// Starts the trimmer (a housekeeping timer: nothing waits on it). Where the allocator returns
/// memory itself there is nothing to start.
pub(crate) fn spawn_trimmer() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    tokio::spawn(async {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
        loop {
            every.tick().await;
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
