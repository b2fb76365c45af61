//! The drover domain: what a job is, which states it moves through, what an event says, and how
//! people write durations and sizes.
//!
//! This crate does no I/O and reads no clock: every time it needs is handed to it. That keeps the
//! rules here testable by property tests, and lets the store (SQLite or PostgreSQL) and the node
//! share one definition of what is legal.

pub mod event;
pub mod job;
pub mod node;
pub mod reason;
pub mod resources;
pub mod retry;
pub mod spec;
pub mod state;
pub mod units;

pub use event::{Event, EventKind};
pub use job::{AttemptRecord, AttemptRef, JobId, JobRecord, NodeId};
pub use node::{Labels, NodeInfo, NodeLoad, NodeRecord, NodeState, labels_match};
pub use reason::{Reason, Signal};
pub use resources::{Admission, Cpus, Decision, Resources};
pub use retry::Backoff;
pub use spec::{DEFAULT_QUEUE, JobSpec, Limits, SpecError, valid_queue_name};
pub use state::{JobState, TransitionError};
pub use units::{HumanDuration, Size, UnitError};
