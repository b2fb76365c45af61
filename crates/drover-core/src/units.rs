//! Durations (`90s`, `1h30m`, `250ms`) and sizes (`512M`, `2G`, `1.5GiB`) as people write them.
//!
//! Both types deserialize from either the human string or a plain number (seconds for durations,
//! bytes for sizes), and serialize back to the canonical human string, so a spec that went through
//! the store reads the way it was written.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration or size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The string was empty.
    #[error("empty value")]
    Empty,
    /// A part of the string is not a number followed by a known unit.
    #[error("invalid {what} `{input}`: {detail}")]
    Invalid {
        /// "duration" or "size".
        what: &'static str,
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The value does not fit in 64 bits.
    #[error("{what} `{input}` is too large")]
    Overflow {
        /// "duration" or "size".
        what: &'static str,
        /// The rejected input.
        input: String,
    },
}

/// A duration written the human way. Wraps [`std::time::Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Builds one from whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
}

const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Splits `1h30m` into `[(1, "h"), (30, "m")]`, with fractional numbers allowed (`1.5s`).
fn split_parts<'a>(what: &'static str, input: &'a str) -> Result<Vec<(f64, &'a str)>, UnitError> {
    let invalid = |detail: &str| UnitError::Invalid {
        what,
        input: input.to_string(),
        detail: detail.to_string(),
    };
    let mut parts = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(invalid("expected a number"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| invalid("malformed number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        parts.push((number, rest[..unit_len].trim()));
        rest = &rest[unit_len..];
    }
    Ok(parts)
}

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(UnitError::Empty);
        }
        let parts = split_parts("duration", input)?;
        let bare_number = parts.len() == 1 && parts[0].1.is_empty();
        let mut total_ns: f64 = 0.0;
        for (number, unit) in parts {
            let unit = if bare_number { "s" } else { unit };
            let factor = DURATION_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, f)| *f)
                .ok_or_else(|| UnitError::Invalid {
                    what: "duration",
                    input: input.to_string(),
                    detail: if unit.is_empty() {
                        "missing unit (use ms, s, m, h or d)".to_string()
                    } else {
                        format!("unknown unit `{unit}` (use ms, s, m, h or d)")
                    },
                })?;
            total_ns += number * factor as f64;
        }
        if !total_ns.is_finite() || total_ns >= u64::MAX as f64 * 1e9 {
            return Err(UnitError::Overflow {
                what: "duration",
                input: input.to_string(),
            });
        }
        Ok(Self(Duration::from_nanos(total_ns.round() as u64)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d.subsec_nanos() != 0 {
            if d.subsec_nanos() % 1_000_000 == 0 {
                return write!(f, "{}ms", d.as_millis());
            }
            return write!(f, "{}ns", d.as_nanos());
        }
        let mut secs = d.as_secs();
        let mut out = String::new();
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                out.push_str(&format!("{}{unit}", secs / size));
                secs %= size;
            }
        }
        f.write_str(&out)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(f64),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a duration such as \"90s\" or a number of seconds")
        })? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Seconds(secs) if (0.0..1e15).contains(&secs) => {
                Ok(Self(Duration::from_secs_f64(secs)))
            }
            Raw::Seconds(secs) => Err(serde::de::Error::custom(format!(
                "{secs} is not a valid number of seconds"
            ))),
        }
    }
}

/// A size in bytes written the human way: `512M`, `2G`, `1.5GiB`, `4096`. Binary multiples:
/// `K`/`KB`/`KiB` all mean 1024, as users of `ulimit`, Slurm and Docker expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

impl Size {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kb", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mb", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gb", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1 << 40),
    ("tb", 1 << 40),
    ("tib", 1 << 40),
];

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(UnitError::Empty);
        }
        let parts = split_parts("size", input)?;
        let [(number, unit)] = parts.as_slice() else {
            return Err(UnitError::Invalid {
                what: "size",
                input: input.to_string(),
                detail: "expected one number and one unit".to_string(),
            });
        };
        let lower = unit.to_ascii_lowercase();
        let factor = SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, f)| *f)
            .ok_or_else(|| UnitError::Invalid {
                what: "size",
                input: input.to_string(),
                detail: format!("unknown unit `{unit}` (use K, M, G or T)"),
            })?;
        let bytes = number * factor as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(UnitError::Overflow {
                what: "size",
                input: input.to_string(),
            });
        }
        Ok(Self(bytes.round() as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("T", 1u64 << 40),
            ("G", 1 << 30),
            ("M", 1 << 20),
            ("K", 1 << 10),
        ] {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bytes(u64),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a size such as \"512M\" or a number of bytes")
        })? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Bytes(b) => Ok(Self(b)),
        }
    }
}

/// Formats a byte count for people: `1.5 GiB`, `312 MiB`, `17 KiB`, `12 B`.
pub fn format_bytes(bytes: u64) -> String {
    let units = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in units {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value < 10.0 {
                format!("{value:.1} {name}")
            } else {
                format!("{value:.0} {name}")
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dur(s: &str) -> Duration {
        s.parse::<HumanDuration>()
            .map(|d| d.0)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn durations_people_write() {
        assert_eq!(dur("90s"), Duration::from_secs(90));
        assert_eq!(dur("1h30m"), Duration::from_secs(5400));
        assert_eq!(dur("250ms"), Duration::from_millis(250));
        assert_eq!(dur("1.5s"), Duration::from_millis(1500));
        assert_eq!(dur("2d"), Duration::from_secs(172_800));
        assert_eq!(dur("10"), Duration::from_secs(10));
        assert_eq!(dur(" 1m 5s "), Duration::from_secs(65));
    }

    #[test]
    fn durations_refused() {
        for bad in ["banana", "", "5x", "1h30", "m", "1..2s", "-5s"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn sizes_people_write() {
        let size = |s: &str| {
            s.parse::<Size>()
                .map(|s| s.0)
                .unwrap_or_else(|e| panic!("{s}: {e}"))
        };
        assert_eq!(size("512M"), 512 << 20);
        assert_eq!(size("2G"), 2 << 30);
        assert_eq!(size("1.5GiB"), 3 << 29);
        assert_eq!(size("4096"), 4096);
        assert_eq!(size("100mb"), 100 << 20);
        assert!("12Q".parse::<Size>().is_err());
        assert!("1G2M".parse::<Size>().is_err());
    }

    #[test]
    fn json_accepts_strings_and_numbers() {
        let d: HumanDuration = serde_json::from_str("\"1h30m\"").unwrap_or_default();
        assert_eq!(d.0, Duration::from_secs(5400));
        let d: HumanDuration = serde_json::from_str("2.5").unwrap_or_default();
        assert_eq!(d.0, Duration::from_millis(2500));
        assert!(serde_json::from_str::<HumanDuration>("\"soon\"").is_err());
        let s: Size = serde_json::from_str("\"2G\"").unwrap_or_default();
        assert_eq!(s.0, 2 << 30);
        assert_eq!(
            serde_json::to_string(&Size(2 << 30)).ok().as_deref(),
            Some("\"2G\"")
        );
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(format_bytes(12), "12 B");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes(312 << 20), "312 MiB");
    }

    proptest! {
        #[test]
        fn duration_display_round_trips(ms in 0u64..10_000_000_000) {
            let d = HumanDuration(Duration::from_millis(ms));
            let back: HumanDuration = d.to_string().parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(back, d);
        }

        #[test]
        fn size_display_round_trips(bytes in 0u64..(1 << 50)) {
            let s = Size(bytes);
            let back: Size = s.to_string().parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(back, s);
        }

        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,12}") {
            let _ = s.parse::<HumanDuration>();
        }
    }
}
