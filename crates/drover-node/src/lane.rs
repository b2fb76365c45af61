//! The job lane: one OS thread with a single-threaded async runtime, on which the whole path a
//! job takes through the node runs — the runner loop, the tasks of its store calls, and the
//! executor that talks to the job owners.
//!
//! Why a thread of its own, and not the API's multi-threaded runtime: on that runtime every
//! `tokio::spawn` of a store call and every owner report woke a parked worker, which then stole
//! the task, so one job cost a chain of futex wake-ups and context switches between workers
//! (measured: ~40 switches and ~36 futex calls of the node per `/bin/true` job, and a quarter
//! of the node's CPU per job at 8 slots; see `bench/analysis.md`). On one thread those hand-offs
//! are plain function calls. What still crosses threads is what must: the store's writer (its
//! fsync may not stall the loop), and the API's requests, whose bursts — a web page listing
//! thousands of jobs, a hundred event subscribers — now cannot delay a job's start either.
//!
//! The lane may run only the job path: anything slow on it (a blocking call, a large
//! serialization) holds up every job's start and end.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The thread and a handle to spawn onto its runtime. Dropping it stops the runtime: tasks
/// still on it are dropped (a job's owner goes on without the node, as at any node exit).
pub(crate) struct Lane {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl Lane {
    /// Starts the thread (named `drover-jobs`).
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("drover-jobs")
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("drover-jobs".into())
            .spawn(move || {
                // Runs every task spawned through the handle until the lane is dropped.
                let _ = runtime.block_on(stopped);
                // As the node's main runtime does at exit: blocking work (a cell's removal)
                // gets a moment, not forever.
                runtime.shutdown_timeout(std::time::Duration::from_secs(10));
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }

    /// Runs `work` on the lane and waits for its output. A panic on the lane is resumed here,
    /// so it fails the node as it would have on the caller's own runtime.
    pub(crate) async fn run<F>(&self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(work).await {
            Ok(output) => output,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Cancelled: only by the runtime's shutdown, which comes from dropping `self`,
            // which cannot happen while `self` is borrowed here.
            Err(err) => panic!("the job lane stopped under a running task: {err}"),
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_and_what_it_spawns_run_on_the_lane_thread() {
        let lane = Lane::start().expect("lane");
        let (inner, outer) = lane
            .run(async {
                let outer = std::thread::current().name().map(str::to_string);
                let inner =
                    tokio::spawn(async { std::thread::current().name().map(str::to_string) })
                        .await
                        .expect("inner task");
                (inner, outer)
            })
            .await;
        assert_eq!(outer.as_deref(), Some("drover-jobs"));
        assert_eq!(inner.as_deref(), Some("drover-jobs"));
        assert_ne!(
            std::thread::current().name(),
            Some("drover-jobs"),
            "the caller stays on its own runtime"
        );
    }

    #[tokio::test]
    async fn a_panic_on_the_lane_reaches_the_caller() {
        let lane = Lane::start().expect("lane");
        let caught = tokio::spawn(async move {
            lane.run(async { panic!("boom") }).await;
        })
        .await;
        let err = caught.expect_err("the panic must come through");
        assert!(err.is_panic());
    }
}
