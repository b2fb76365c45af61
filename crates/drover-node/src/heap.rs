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
//!
//! A trim returns only whole free pages, and every arena keeps its own partly used ones, so the
//! node also caps the arenas at [`ARENAS`] before its threads start ([`limit_arenas`]): glibc's
//! default is eight per core, and each new API worker, blocking thread or lane thread took one.
//! Measured on 2 cores after 100,000 jobs and a trim: 32.7 MiB of anonymous memory with glibc's
//! default against 19.2 MiB with the cap, and 2000 jobs at 8 slots within noise either way (the threads' own
//! caches serve most small allocations without the arena's lock). The cap is set in the node's
//! process only; an environment variable (`MALLOC_ARENA_MAX`) would reach the owners and the jobs.
//! Other allocators (macOS's, musl's) return memory themselves; there this does nothing.

use std::time::Duration;

/// Between trims.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// Most arenas the node's allocator keeps (see the module's comment).
pub const ARENAS: i32 = 2;

/// Caps glibc's arenas at [`ARENAS`] for this process. Call it before the node's threads start:
/// an arena, once made, stays. Elsewhere it does nothing.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers; M_ARENA_MAX only bounds arenas made after it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
#[allow(clippy::expect_used, clippy::panic)]
mod tests {
    use std::process::Command;
    use std::sync::{Arc, Barrier};

    /// Set in the child process the test below starts: "limit" or "default".
    const CHILD: &str = "DROVER_HEAP_TEST_CHILD";

    /// The arenas glibc has made in this process, as `malloc_info` lists them.
    fn arenas(dir: &std::path::Path) -> usize {
        let path = dir.join("malloc_info.xml");
        let c_path = std::ffi::CString::new(path.to_str().expect("a UTF-8 temporary path"))
            .expect("no NUL in the path");
        // SAFETY: a FILE opened here, written by malloc_info and closed before it is read.
        unsafe {
            let file = libc::fopen(c_path.as_ptr(), c"w".as_ptr());
            assert!(!file.is_null(), "cannot open {}", path.display());
            assert_eq!(libc::malloc_info(0, file), 0);
            libc::fclose(file);
        }
        let xml = std::fs::read_to_string(&path).expect("malloc_info's output");
        xml.matches("<heap nr=").count()
    }

    /// Not a test of its own (so ignored): the body of the child process `arenas_are_capped`
    /// starts, where no other test has made threads. Eight threads allocate at once, then the
    /// arenas are counted.
    #[test]
    #[ignore = "the body of arenas_are_capped's child process"]
    fn arena_probe() {
        let Some(mode) = std::env::var_os(CHILD) else {
            return;
        };
        if mode == "limit" {
            super::limit_arenas();
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    // Held until every thread has allocated, so none can reuse another's arena.
                    let held = std::hint::black_box(vec![1u8; 64 * 1024]);
                    barrier.wait();
                    drop(held);
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("an allocating thread");
        }
        println!("arenas={}", arenas(dir.path()));
    }

    fn probe(mode: &str) -> usize {
        let out = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "--ignored",
                "heap::tests::arena_probe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, mode)
            .output()
            .expect("the child test process");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "the probe failed: {stdout}");
        stdout
            .lines()
            .find_map(|l| l.split_once("arenas=").map(|(_, n)| n))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no arena count in: {stdout}"))
    }

    #[test]
    fn arenas_are_capped() {
        let capped = probe("limit");
        let default = probe("default");
        assert!(
            capped <= super::ARENAS as usize,
            "{capped} arenas with the cap of {}",
            super::ARENAS
        );
        // The probe sees arenas at all: without the cap, eight threads made more.
        assert!(default > capped, "{default} arenas without the cap");
    }
}
