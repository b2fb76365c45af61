//! Retry policy: which outcomes are retried, and how long to wait before the next attempt.
//!
//! Pure rules: the randomness of the jitter is handed in, so the same inputs give the same delay
//! and the rules are tested without a clock or a random source.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::reason::Reason;
use crate::state::JobState;
use crate::units::HumanDuration;

/// How long to wait between attempts. `1s..5m` is exponential with full jitter: before retry
/// `n` (1-based) the wait is uniform in `[0, min(5m, 1s × 2^(n-1))]`. `10s` is a fixed wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// The same wait before every retry.
    Fixed(HumanDuration),
    /// Exponential growth from `base`, capped at `cap`, with full jitter.
    Exponential {
        /// The ceiling of the first wait.
        base: HumanDuration,
        /// The ceiling of every wait.
        cap: HumanDuration,
    },
}

impl Backoff {
    /// The wait before retry number `retry` (1 for the first retry). `unit` is a random number
    /// in `[0, 1)` for the jitter.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        match *self {
            Backoff::Fixed(wait) => wait.get(),
            Backoff::Exponential { base, cap } => {
                let doublings = retry.saturating_sub(1).min(62);
                let ceiling = base
                    .get()
                    .checked_mul(1u32 << doublings.min(31))
                    .unwrap_or(cap.get())
                    .min(cap.get());
                ceiling.mul_f64(unit.clamp(0.0, 1.0))
            }
        }
    }
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backoff::Fixed(wait) => write!(f, "{wait}"),
            Backoff::Exponential { base, cap } => write!(f, "{base}..{cap}"),
        }
    }
}

impl FromStr for Backoff {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| {
            part.trim()
                .parse::<HumanDuration>()
                .map_err(|e| format!("backoff `{s}`: {e}"))
        };
        match s.split_once("..") {
            Some((base, cap)) => {
                let (base, cap) = (parse(base)?, parse(cap)?);
                if base.get().is_zero() || cap.get() < base.get() {
                    return Err(format!(
                        "backoff `{s}`: write MIN..MAX with 0 < MIN <= MAX, e.g. 1s..5m"
                    ));
                }
                Ok(Backoff::Exponential { base, cap })
            }
            None => Ok(Backoff::Fixed(parse(s)?)),
        }
    }
}

impl Serialize for Backoff {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Backoff {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The outcomes retried when a job names none: every unsuccessful ending but a cancel.
pub const DEFAULT_RETRY_ON: &[&str] = &["failed", "timed_out", "lost"];

/// The words `--retry-on` accepts: end states, and reasons that narrow `failed`.
pub const RETRY_ON_WORDS: &[&str] = &[
    "failed",
    "timed_out",
    "lost",
    "memory_limit",
    "pids_limit",
    "stalled",
    "spawn_failed",
    "node_lost",
    "node_shutdown",
    "owner_died",
];

/// Whether an attempt that ended in `state` for `reason` is retried under `retry_on` (the
/// default when `None`). A word matches the end state (`failed`) or the reason's kind
/// (`memory_limit`), so `--retry-on memory_limit` retries only OOM kills.
pub fn retried(retry_on: Option<&[String]>, state: JobState, reason: &Reason) -> bool {
    if !matches!(
        state,
        JobState::Failed | JobState::TimedOut | JobState::Lost
    ) {
        return false;
    }
    let matches = |word: &str| word == state.as_str() || word == reason.kind();
    match retry_on {
        None => DEFAULT_RETRY_ON.iter().any(|w| matches(w)),
        Some(words) => words.iter().any(|w| matches(w)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_parses_both_forms() {
        assert_eq!(
            "100ms".parse::<Backoff>(),
            Ok(Backoff::Fixed(HumanDuration(Duration::from_millis(100))))
        );
        let exp: Backoff = "1s..5m"
            .parse()
            .unwrap_or(Backoff::Fixed(HumanDuration::default()));
        assert_eq!(exp.to_string(), "1s..5m");
        assert!("5m..1s".parse::<Backoff>().is_err());
        assert!("0s..1s".parse::<Backoff>().is_err());
        assert!("soon".parse::<Backoff>().is_err());
    }

    #[test]
    fn exponential_backoff_grows_caps_and_jitters() {
        let b: Backoff = "1s..5m"
            .parse()
            .unwrap_or(Backoff::Fixed(HumanDuration::default()));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(4, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(300), "capped");
        assert_eq!(
            b.delay(4, 0.5),
            Duration::from_secs(4),
            "full jitter scales the ceiling"
        );
        assert_eq!(b.delay(4, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_on_matches_states_and_reasons() {
        let oom = Reason::MemoryLimit;
        let exit = Reason::ExitCode(1);
        assert!(retried(None, JobState::Failed, &exit));
        assert!(retried(None, JobState::Lost, &Reason::NodeLost));
        assert!(!retried(
            None,
            JobState::Cancelled,
            &Reason::CancelledByUser
        ));
        assert!(!retried(None, JobState::Succeeded, &Reason::ExitCode(0)));
        let only_oom = vec!["memory_limit".to_string()];
        assert!(retried(Some(&only_oom), JobState::Failed, &oom));
        assert!(!retried(Some(&only_oom), JobState::Failed, &exit));
        assert!(!retried(
            Some(&only_oom),
            JobState::TimedOut,
            &Reason::Timeout
        ));
    }
}
