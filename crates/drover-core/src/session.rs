//! Sessions: a long-lived interpreter (Python, SageMath, PARI/GP) that keeps its variables
//! between `drover exec`s, as a notebook kernel does.
//!
//! A session is two kinds of job. Its **host** is one job that runs the interpreter for as long
//! as the session lives: limited, accounted and timed out like any other, and owned by a job
//! owner, so it outlives a restart of its node. Each **exec** is a job of its own that hands one
//! piece of code to the host and relays what it printed, so it has its own output, exit status,
//! timeout and place in `status`, the web page and the metrics. The node turns both into the
//! argv of its own binary (`drover session-host`, `drover session-exec`); this module only says
//! what a spec asks for.

use serde::{Deserialize, Serialize};

use crate::job::JobId;

/// The interpreter a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// CPython 3 (`python3`).
    Python,
    /// SageMath (`sage -python`, with `sage.all` imported and Sage's preparser on the code).
    Sage,
    /// PARI/GP (`gp`).
    Gp,
}

impl SessionKind {
    /// Every kind, in the order help texts list them.
    pub const ALL: [SessionKind; 3] = [SessionKind::Python, SessionKind::Sage, SessionKind::Gp];

    /// The name people write: `python`, `sage`, `gp`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Python => "python",
            SessionKind::Sage => "sage",
            SessionKind::Gp => "gp",
        }
    }

    /// The interpreter's command when the session or pool names none.
    pub fn default_argv(self) -> Vec<String> {
        let words: &[&str] = match self {
            SessionKind::Python => &["python3"],
            SessionKind::Sage => &["sage", "-python"],
            SessionKind::Gp => &["gp"],
        };
        words.iter().map(ToString::to_string).collect()
    }
}

impl std::fmt::Display for SessionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SessionKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown session kind `{s}` (use python, sage or gp)"))
    }
}

/// What part of a session or of a pool a job is. A pool is warm sessions that do not keep
/// state: each of its parents has imported the pool's modules once and forks a fresh child for
/// every job of the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum SessionRole {
    /// The session's interpreter; the job's argv is the interpreter's command (`python3`).
    /// A host takes no slot: it sits idle between execs, and each exec takes one while it runs.
    Host {
        /// Which interpreter it is, which decides how code is handed to it.
        kind: SessionKind,
    },
    /// One piece of code run in the session whose host is the job `session`; the job's argv is
    /// that code, as one entry. It runs on the host's node.
    Exec {
        /// The host's job id.
        session: JobId,
    },
    /// One warm parent of the pool `pool`; the job's argv is the interpreter's command. Like a
    /// host it takes no slot: the pool's jobs each take one.
    PoolParent {
        /// The pool's name.
        pool: String,
        /// Which interpreter.
        kind: SessionKind,
        /// Modules imported once, before the first fork (`sympy`, `numpy.linalg`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        preload: Vec<String>,
        /// Recycle the parent (a fresh attempt of its job) after it has forked this many.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_jobs: Option<u32>,
        /// Recycle the parent when its own memory grows past this many bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_memory: Option<crate::units::Size>,
    },
    /// A job run in a forked child of a parent of the pool `pool`, in its own cell; the job's
    /// argv is a script and its arguments, `-c CODE` or `-m MODULE`.
    Pooled {
        /// The pool's name.
        pool: String,
    },
}

impl SessionRole {
    /// Whether a job of this role holds one of its node's slots while it runs.
    pub fn takes_slot(role: Option<&SessionRole>) -> bool {
        !matches!(
            role,
            Some(SessionRole::Host { .. } | SessionRole::PoolParent { .. })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_as_they_are_written() {
        for kind in SessionKind::ALL {
            assert_eq!(kind.as_str().parse::<SessionKind>(), Ok(kind));
        }
        assert!("julia".parse::<SessionKind>().is_err());
    }

    #[test]
    fn only_a_host_sits_outside_the_slots() {
        let host = SessionRole::Host {
            kind: SessionKind::Gp,
        };
        let exec = SessionRole::Exec {
            session: JobId::from_uuid(uuid::Uuid::nil()),
        };
        assert!(!SessionRole::takes_slot(Some(&host)));
        assert!(SessionRole::takes_slot(Some(&exec)));
        assert!(SessionRole::takes_slot(None));
    }

    #[test]
    fn a_role_is_tagged_in_json() {
        let json = serde_json::to_value(SessionRole::Host {
            kind: SessionKind::Python,
        })
        .unwrap();
        assert_eq!(json, serde_json::json!({"role": "host", "kind": "python"}));
    }
}
