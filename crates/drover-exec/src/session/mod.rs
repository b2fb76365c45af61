//! Sessions: an interpreter that lives as one job (the **host**) and runs code handed to it by
//! other jobs (the **execs**), keeping its variables in between.
//!
//! ```text
//! drover exec s -- 'print(x)'  ──POST /v1/jobs──▶ node ──▶ owner ──▶ drover session-exec  (the exec job)
//!                                                                       │ Unix socket
//!                                                                       ▼ DATA/sessions/<host job>.sock
//!                            owner ──▶ drover session-host (the host job) ──pipes──▶ python3 / sage / gp
//! ```
//!
//! Both sides are the drover binary, so the shims a user's interpreter runs ship inside it
//! ([`PYTHON_SHIM`]) and nothing is installed on the user's side. Neither side writes state:
//! the exec job's output and exit status are its own, recorded by its owner like any job's.
//!
//! Why the exec is a job of its own rather than a request the node answers: it then has its
//! own log, exit status, timeout, cancel and place in `status` and on the web page with no new
//! code on those paths, and its timeout is the owner's ladder: SIGTERM reaches
//! `session-exec`, which asks the host to interrupt the code (SIGINT to the interpreter), and
//! the session goes on.
//!
//! The host runs one exec at a time, in the order their connections arrive; an exec that comes
//! while another runs waits in the socket's backlog (its timeout counts meanwhile).

mod exec;
mod host;
mod wire;

pub use exec::{ExecError, run_exec};
pub use host::{HostError, run_host};

/// The shim a Python or SageMath session runs in the user's interpreter (`-c`).
pub const PYTHON_SHIM: &str = include_str!("shim.py");

/// What a finished exec reports: the host's last frame to `session-exec`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecStatus {
    /// The code ran to its end without an error.
    pub ok: bool,
    /// The exception's or GP error's message, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// It was interrupted (a timeout or a cancel of the exec).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// The interpreter ended or was given up during the exec: the session is over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub session_ended: bool,
    /// The interpreter already printed the error (a Python traceback) on the exec's stderr.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub printed: bool,
}

/// Exit codes of `drover session-exec`, which become the exec job's.
pub mod exit {
    /// The code ran without an error.
    pub const OK: u8 = 0;
    /// The code raised an exception or a GP error.
    pub const ERROR: u8 = 1;
    /// The session could not be reached (it has ended, or runs on another machine).
    pub const NO_SESSION: u8 = 3;
    /// The session's interpreter ended during the exec.
    pub const SESSION_ENDED: u8 = 4;
    /// The exec was interrupted (its timeout or a cancel); 128 + SIGINT, as a shell says it.
    pub const INTERRUPTED: u8 = 130;
}
