//! Resources: what a job declares it needs, what a node has, and the admission rule between them.
//!
//! Admission is arithmetic on two numbers — memory bytes and thousandths of a CPU — so it lives
//! here, with no I/O: the node measures what is free, the store walks the queue, and both ask
//! [`Resources::fits_in`] and [`Admission::consider`] the same question.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::units::format_bytes;

/// A CPU count, possibly fractional (`0.5`, `2`, `1.25`), kept in thousandths so it compares
/// exactly. As a limit it is a CPU *quota*: `0.5` means half of one CPU's time, however many
/// CPUs the job's threads spread over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cpus(u32);

impl Cpus {
    /// The smallest quota drover sets: one hundredth of a CPU (the kernel's own floor is 1 ms
    /// per 100 ms period).
    pub const MIN: Cpus = Cpus(10);

    /// `millis` thousandths of a CPU.
    pub const fn from_millis(millis: u32) -> Self {
        Self(millis)
    }

    /// Whole CPUs.
    pub const fn whole(cpus: u32) -> Self {
        Self(cpus.saturating_mul(1000))
    }

    /// Thousandths of a CPU.
    pub const fn millis(self) -> u32 {
        self.0
    }

    /// The CFS quota for `period`: how much CPU time the job may use per period.
    pub fn quota_per(self, period: Duration) -> Duration {
        period * self.0 / 1000
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1000 == 0 {
            write!(f, "{}", self.0 / 1000)
        } else {
            let text = format!("{}.{:03}", self.0 / 1000, self.0 % 1000);
            f.write_str(text.trim_end_matches('0'))
        }
    }
}

impl FromStr for Cpus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a CPU count (write 0.5, 2 or 1.25)"))?;
        Self::try_from(value)
    }
}

impl TryFrom<f64> for Cpus {
    type Error = String;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        if !value.is_finite() || value <= 0.0 {
            return Err(format!("{value} is not a positive CPU count"));
        }
        let millis = (value * 1000.0).round();
        if millis > f64::from(u32::MAX) {
            return Err(format!("{value} CPUs is too many"));
        }
        Ok(Self(millis as u32))
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(f64::from(self.0) / 1000.0)
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom("expected a CPU count such as 0.5 or 2"))?
        {
            Raw::Number(n) => Cpus::try_from(n).map_err(serde::de::Error::custom),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// An amount of the two resources admission counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resources {
    /// Memory, in bytes.
    pub memory_bytes: u64,
    /// CPUs, in thousandths.
    pub cpu_millis: u64,
}

impl Resources {
    /// Nothing.
    pub const ZERO: Resources = Resources {
        memory_bytes: 0,
        cpu_millis: 0,
    };

    /// What a job reserves: its declared memory and CPUs, zero for what it leaves undeclared.
    pub fn of_job(memory: Option<u64>, cpus: Option<Cpus>) -> Self {
        Self {
            memory_bytes: memory.unwrap_or(0),
            cpu_millis: cpus.map_or(0, |c| u64::from(c.millis())),
        }
    }

    /// Whether `self` fits in `free`.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.memory_bytes <= free.memory_bytes && self.cpu_millis <= free.cpu_millis
    }

    /// `self + other`.
    pub fn plus(&self, other: &Resources) -> Resources {
        Resources {
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
        }
    }

    /// `self - other`, never below zero.
    pub fn minus(&self, other: &Resources) -> Resources {
        Resources {
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
        }
    }

    /// Says what is missing for `self` to fit in `free`, the way `status` shows it:
    /// `waiting for 24 GiB memory, 9 GiB free`. `None` if it fits.
    pub fn shortfall(&self, free: &Resources, why_memory: Option<&str>) -> Option<String> {
        let mut parts = Vec::new();
        if self.memory_bytes > free.memory_bytes {
            parts.push(format!(
                "waiting for {} memory, {} free{}",
                format_bytes(self.memory_bytes),
                format_bytes(free.memory_bytes),
                why_memory.map(|w| format!(" ({w})")).unwrap_or_default()
            ));
        }
        if self.cpu_millis > free.cpu_millis {
            parts.push(format!(
                "waiting for {} CPUs, {} free",
                millis_text(self.cpu_millis),
                millis_text(free.cpu_millis)
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

fn millis_text(millis: u64) -> String {
    Cpus(u32::try_from(millis).unwrap_or(u32::MAX)).to_string()
}

/// What the claim walk decides for one queued job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Claim it; its needs are now taken from the free amount.
    Claim,
    /// Leave it queued and look at the next job.
    Skip(String),
    /// Leave it queued and claim nothing behind it: it has waited long enough that the node
    /// keeps what frees up for it (anti-starvation reservation).
    Reserve(String),
}

/// The admission walk over the queue in claim order (priority, then age). It hands out the free
/// amount to jobs that fit, skips those that do not — unless one has waited longer than
/// `reserve_after`, in which case everything behind it waits too, so that small jobs cannot starve
/// a large one forever.
#[derive(Debug, Clone)]
pub struct Admission {
    capacity: Resources,
    free: Resources,
    reserve_after: Duration,
    memory_note: Option<String>,
}

impl Admission {
    /// A walk with `free` to give out on a node of `capacity`. `memory_note` explains a free
    /// memory figure lowered by what runs outside drover (`MemAvailable`), for people reading
    /// `status`.
    pub fn new(
        capacity: Resources,
        free: Resources,
        reserve_after: Duration,
        memory_note: Option<String>,
    ) -> Self {
        Self {
            capacity,
            free,
            reserve_after,
            memory_note,
        }
    }

    /// A walk that admits everything (no declared resources are counted).
    pub fn unlimited() -> Self {
        let all = Resources {
            memory_bytes: u64::MAX,
            cpu_millis: u64::MAX,
        };
        Self::new(all, all, Duration::MAX, None)
    }

    /// What is still free.
    pub fn free(&self) -> Resources {
        self.free
    }

    /// Decides for a job that needs `needs` and has been queued for `queued_for`.
    pub fn consider(&mut self, needs: &Resources, queued_for: Duration) -> Decision {
        // Larger than the whole node (submitted before a restart with less): never reserve for
        // it, or it would hold the queue forever.
        if let Some(why) = needs.shortfall(&self.capacity, None) {
            return Decision::Skip(format!("larger than this node: {why}"));
        }
        match needs.shortfall(&self.free, self.memory_note.as_deref()) {
            None => {
                self.free = self.free.minus(needs);
                Decision::Claim
            }
            Some(why) if queued_for >= self.reserve_after => {
                Decision::Reserve(format!("{why}; reserving: nothing behind it starts"))
            }
            Some(why) => Decision::Skip(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn mem(gib: u64) -> Resources {
        Resources {
            memory_bytes: gib * GIB,
            cpu_millis: 0,
        }
    }

    #[test]
    fn cpus_parse_print_and_serialize() {
        assert_eq!("0.5".parse::<Cpus>(), Ok(Cpus::from_millis(500)));
        assert_eq!("2".parse::<Cpus>(), Ok(Cpus::whole(2)));
        assert_eq!(Cpus::from_millis(1250).to_string(), "1.25");
        assert_eq!(Cpus::whole(8).to_string(), "8");
        assert!("0".parse::<Cpus>().is_err());
        assert!("-1".parse::<Cpus>().is_err());
        assert!("lots".parse::<Cpus>().is_err());
        assert_eq!(
            serde_json::to_string(&Cpus::from_millis(500)).ok(),
            Some("0.5".into())
        );
        assert_eq!(
            serde_json::from_str::<Cpus>("\"1.5\"").ok(),
            Some(Cpus::from_millis(1500))
        );
        assert_eq!(
            Cpus::from_millis(500).quota_per(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn shortfall_names_what_is_missing() {
        let free = mem(9);
        assert_eq!(mem(8).shortfall(&free, None), None);
        assert_eq!(
            mem(24).shortfall(&free, None).as_deref(),
            Some("waiting for 24 GiB memory, 9.0 GiB free")
        );
        let cpus = Resources {
            memory_bytes: 0,
            cpu_millis: 4000,
        };
        let text = cpus.shortfall(&Resources::ZERO, None).unwrap_or_default();
        assert!(text.contains("4 CPUs, 0 free"), "{text}");
    }

    #[test]
    fn the_walk_skips_what_does_not_fit_and_fills_with_what_does() {
        let mut walk = Admission::new(mem(1), mem(1), Duration::from_secs(60), None);
        let six = Resources {
            memory_bytes: 600 << 20,
            cpu_millis: 0,
        };
        assert_eq!(walk.consider(&six, Duration::ZERO), Decision::Claim);
        assert!(matches!(
            walk.consider(&six, Duration::ZERO),
            Decision::Skip(_)
        ));
        // A job that declares nothing always fits.
        assert_eq!(
            walk.consider(&Resources::ZERO, Duration::ZERO),
            Decision::Claim
        );
        assert_eq!(walk.free().memory_bytes, GIB - (600 << 20));
    }

    #[test]
    fn a_job_that_waited_long_enough_reserves() {
        let mut walk = Admission::new(mem(16), mem(4), Duration::from_secs(30), None);
        let big = mem(8);
        assert!(matches!(
            walk.consider(&big, Duration::from_secs(29)),
            Decision::Skip(_)
        ));
        match walk.consider(&big, Duration::from_secs(30)) {
            Decision::Reserve(why) => assert!(why.contains("reserving"), "{why}"),
            other => panic!("expected a reservation, got {other:?}"),
        }
        // Larger than the node itself: skipped, never reserved for.
        let mut walk = Admission::new(mem(4), mem(4), Duration::ZERO, None);
        assert!(matches!(
            walk.consider(&mem(8), Duration::from_secs(3600)),
            Decision::Skip(_)
        ));
    }
}
