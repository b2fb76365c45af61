//! Why an attempt ended the way it did. Every terminal record carries one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an attempt (and so its job) ended. Serialized as the words in design.md §2, with a detail
/// after a colon where there is one: `exit_code: 3`, `signal: SIGSEGV`,
/// `spawn_failed: No such file or directory (os error 2)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The process exited on its own with this code (0 for success).
    ExitCode(i32),
    /// The process was killed by a signal that drover did not send.
    Signal(i32),
    /// It ran past its timeout and was stopped by the kill ladder.
    Timeout,
    /// A user cancelled it.
    CancelledByUser,
    /// The node that ran it died (or was killed) before the attempt ended.
    NodeLost,
    /// The node shut down and stopped it after the shutdown timeout.
    NodeShutdown,
    /// It could not be started: the OS error says why.
    SpawnFailed(String),
    /// It was killed for exceeding its memory limit.
    MemoryLimit,
    /// It hit its process-count limit.
    PidsLimit,
    /// It produced no output and no heartbeat for its stall period.
    Stalled,
    /// A job it depends on ended unsuccessfully: that job, where it is known (reasons stored
    /// before it was recorded name none).
    DependencyFailed(Option<crate::job::JobId>),
    /// It exited with its checkpoint exit code: it saved its progress and is run again at once,
    /// without using a retry.
    Checkpointed,
    /// The process that owned its tree (its `drover owner`) was killed before the attempt
    /// ended; the tree was stopped.
    OwnerDied,
    /// The job exited 0 but its result could not be taken: `result.json` is larger than the
    /// limit or is not JSON (the detail says which). It counts as a failure.
    ResultInvalid(String),
}

impl Reason {
    /// The reason without its detail: `exit_code`, `spawn_failed`, `timeout`...
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::ExitCode(_) => "exit_code",
            Reason::Signal(_) => "signal",
            Reason::Timeout => "timeout",
            Reason::CancelledByUser => "cancelled_by_user",
            Reason::NodeLost => "node_lost",
            Reason::NodeShutdown => "node_shutdown",
            Reason::SpawnFailed(_) => "spawn_failed",
            Reason::MemoryLimit => "memory_limit",
            Reason::PidsLimit => "pids_limit",
            Reason::Stalled => "stalled",
            Reason::DependencyFailed(_) => "dependency_failed",
            Reason::Checkpointed => "checkpointed",
            Reason::OwnerDied => "owner_died",
            Reason::ResultInvalid(_) => "result_invalid",
        }
    }
}

/// The conventional name of a signal number, for reasons people read.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

fn signal_number(name: &str) -> Option<i32> {
    if let Some(n) = name.strip_prefix("signal ") {
        return n.parse().ok();
    }
    (1..=64).find(|&n| signal_name(n) == name)
}

/// A signal a job can be sent, written by name (`USR1`, `SIGUSR1`) or number (`10`). Numbers
/// are Linux's; on macOS the names map to the same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(pub i32);

impl Signal {
    /// The number to send on this platform.
    pub fn number(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&signal_name(self.0))
    }
}

impl FromStr for Signal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let number = match text.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => {
                let upper = text.to_ascii_uppercase();
                let name = if upper.starts_with("SIG") {
                    upper
                } else {
                    format!("SIG{upper}")
                };
                signal_number(&name)
            }
        };
        match number {
            Some(9) | Some(19) => Err(format!(
                "`{s}` cannot be caught, so a job could not act on it"
            )),
            Some(n) if (1..=64).contains(&n) => Ok(Signal(n)),
            _ => Err(format!(
                "`{s}` is not a signal (use a name such as USR1 or TERM, or a number)"
            )),
        }
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ExitCode(code) => write!(f, "exit_code: {code}"),
            Reason::Signal(sig) => write!(f, "signal: {}", signal_name(*sig)),
            Reason::SpawnFailed(err) => write!(f, "spawn_failed: {err}"),
            Reason::DependencyFailed(Some(id)) => write!(f, "dependency_failed: {id}"),
            Reason::ResultInvalid(why) => write!(f, "result_invalid: {why}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, detail) = match s.split_once(": ") {
            Some((kind, detail)) => (kind, Some(detail)),
            None => (s, None),
        };
        let bad = || format!("unknown reason `{s}`");
        Ok(match (kind, detail) {
            ("exit_code", Some(code)) => Reason::ExitCode(code.parse().map_err(|_| bad())?),
            ("signal", Some(sig)) => Reason::Signal(signal_number(sig).ok_or_else(bad)?),
            ("spawn_failed", Some(err)) => Reason::SpawnFailed(err.to_string()),
            ("timeout", None) => Reason::Timeout,
            ("cancelled_by_user", None) => Reason::CancelledByUser,
            ("node_lost", None) => Reason::NodeLost,
            ("node_shutdown", None) => Reason::NodeShutdown,
            ("memory_limit", None) => Reason::MemoryLimit,
            ("pids_limit", None) => Reason::PidsLimit,
            ("stalled", None) => Reason::Stalled,
            ("dependency_failed", None) => Reason::DependencyFailed(None),
            ("dependency_failed", Some(id)) => {
                Reason::DependencyFailed(Some(id.parse().map_err(|_| bad())?))
            }
            ("checkpointed", None) => Reason::Checkpointed,
            ("owner_died", None) => Reason::OwnerDied,
            ("result_invalid", Some(why)) => Reason::ResultInvalid(why.to_string()),
            _ => return Err(bad()),
        })
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_text() {
        let all = [
            Reason::ExitCode(3),
            Reason::ExitCode(-1),
            Reason::Signal(11),
            Reason::Signal(40),
            Reason::Timeout,
            Reason::CancelledByUser,
            Reason::NodeLost,
            Reason::NodeShutdown,
            Reason::SpawnFailed("No such file or directory (os error 2)".into()),
            Reason::MemoryLimit,
            Reason::PidsLimit,
            Reason::Stalled,
            Reason::DependencyFailed(None),
            Reason::DependencyFailed(Some(crate::job::JobId::from_uuid(uuid::Uuid::now_v7()))),
            Reason::Checkpointed,
            Reason::OwnerDied,
        ];
        for reason in all {
            let text = reason.to_string();
            assert_eq!(text.parse::<Reason>().as_ref(), Ok(&reason), "{text}");
        }
        assert_eq!(Reason::Signal(9).to_string(), "signal: SIGKILL");
        assert!("exit_code".parse::<Reason>().is_err());
        assert!("meteor".parse::<Reason>().is_err());
    }

    #[test]
    fn signals_are_written_by_name_or_number() {
        for text in ["USR1", "usr1", "SIGUSR1", "10"] {
            assert_eq!(text.parse::<Signal>(), Ok(Signal(10)), "{text}");
        }
        assert_eq!(Signal(15).to_string(), "SIGTERM");
        assert_eq!("SIGTERM".parse::<Signal>(), Ok(Signal(15)));
        assert!("KILL".parse::<Signal>().is_err(), "cannot be caught");
        assert!("banana".parse::<Signal>().is_err());
        assert!("0".parse::<Signal>().is_err());
        let json = serde_json::to_string(&Signal(12)).expect("json");
        assert_eq!(json, "\"SIGUSR2\"");
    }
}
