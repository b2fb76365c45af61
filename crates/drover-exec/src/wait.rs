//! Waiting for a job's leader to exit, without polling.
//!
//! On Linux a pidfd becomes readable when the process exits; tokio wakes us and we reap it with
//! `wait4`, which also hands back its resource usage. Elsewhere a dedicated thread blocks in
//! `wait4`. Either way the result is kept, so waiting again after the exit is free.

use std::io;

use crate::sys::{self, Reaped};

/// Watches one child process until it exits and is reaped.
#[derive(Debug)]
pub struct ExitWatch {
    pid: i32,
    reaped: Option<Reaped>,
    source: Source,
}

#[derive(Debug)]
enum Source {
    #[cfg(target_os = "linux")]
    PidFd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
    Thread(tokio::sync::oneshot::Receiver<io::Result<Option<Reaped>>>),
}

impl ExitWatch {
    /// Starts watching `pid`, which must be a child of this process not reaped by anyone else.
    pub fn new(pid: i32) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        if let Ok(fd) = sys::pidfd_open(pid) {
            return Ok(Self {
                pid,
                reaped: None,
                // SAFETY: an OwnedFd keeps its descriptor open and unchanged until dropped.
                source: Source::PidFd(
                    unsafe {
                        tokio::io::unix::AsyncFd::register_with_interest(
                            fd,
                            tokio::io::Interest::READABLE,
                        )
                    }
                    .map_err(|e| e.into_parts().1)?,
                ),
            });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("drover-wait".into())
            .spawn(move || {
                let _ = tx.send(sys::wait4(pid, true));
            })?;
        Ok(Self {
            pid,
            reaped: None,
            source: Source::Thread(rx),
        })
    }

    /// The watched pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// True once the leader has been reaped.
    pub fn is_reaped(&self) -> bool {
        self.reaped.is_some()
    }

    /// Waits for the exit and returns how it ended. Cancel-safe; returns at once after the first
    /// success.
    pub async fn wait(&mut self) -> io::Result<Reaped> {
        if let Some(reaped) = self.reaped {
            return Ok(reaped);
        }
        let reaped = match &mut self.source {
            #[cfg(target_os = "linux")]
            Source::PidFd(fd) => loop {
                let mut guard = fd.readable().await?;
                match sys::wait4(self.pid, false)? {
                    Some(reaped) => break reaped,
                    None => guard.clear_ready(),
                }
            },
            Source::Thread(rx) => match rx.await {
                Ok(Ok(Some(reaped))) => reaped,
                Ok(Ok(None)) => return Err(io::Error::other("wait4 returned no status")),
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(io::Error::other("wait thread vanished")),
            },
        };
        crate::contain::forget_leader(self.pid);
        self.reaped = Some(reaped);
        Ok(reaped)
    }
}
