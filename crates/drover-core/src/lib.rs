//! The drover domain: what a job is, which states it moves through, what an event says, and how
//! people write durations and sizes.
//!
//! This crate does no I/O and reads no clock: every time it needs is handed to it. That keeps the
//! rules here testable by property tests, and lets the store (SQLite or PostgreSQL) and the node
//! share one definition of what is legal.

pub mod event;
pub mod flow;
pub mod group;
pub mod job;
pub mod node;
pub mod queue;
pub mod reason;
pub mod report;
pub mod resources;
pub mod retry;
mod schema;
pub mod session;
pub mod spec;
pub mod state;
pub mod units;
pub mod usage;

pub use event::{Event, EventKind};
pub use group::{GroupId, GroupKind, GroupRecord, GroupStep, Input, Membership, Sweep};
pub use job::{AttemptRecord, AttemptRef, JobId, JobRecord, LogCut, NodeId, Stream};
pub use node::{Labels, NodeInfo, NodeLoad, NodeRecord, NodeState, labels_match};
pub use queue::QueueInfo;
pub use reason::{Reason, Signal};
pub use report::{BackendKind, BackendReport, Capacity, LimitSupport, Memory, Pressure, Pressures};
pub use resources::{Admission, Cpus, Decision, Resources};
pub use retry::Backoff;
pub use session::{SessionKind, SessionRole};
pub use spec::{DEFAULT_QUEUE, JobSpec, Limits, SpecError, valid_queue_name};
pub use state::{JobState, TransitionError};
pub use units::{HumanDuration, Size, UnitError};
pub use usage::{UsagePoint, UsageSeries};

/// An error and its sources, one after the other (`outer: cause: root cause`), for a log line
/// or a message that must say why, not only what. A cause that only repeats what the text
/// already ends with (a wrapper whose message is its source's) is said once.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Link {
        text: &'static str,
        #[source]
        next: Option<Box<Link>>,
    }

    fn chain(texts: &[&'static str]) -> Link {
        texts
            .iter()
            .rev()
            .fold(None, |next, text| {
                Some(Link {
                    text,
                    next: next.map(Box::new),
                })
            })
            .expect("one link at least")
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        assert_eq!(super::error_chain(&chain(&["a", "b", "c"])), "a: b: c");
        assert_eq!(
            super::error_chain(&chain(&[
                "store: handshake failed",
                "handshake failed",
                "bad cert"
            ])),
            "store: handshake failed: bad cert"
        );
    }
}
