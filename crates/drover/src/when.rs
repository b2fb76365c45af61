//! Times as people type them, for `--at` and `status --since`: an RFC 3339 time, a local date
//! and time without an offset (`2026-12-03 03:00`), a time of day (`03:00`), `today`/`tomorrow`
//! with an optional time, or a duration from now (`+2h` ahead; for `--since`, `2h` back).

use chrono::{DateTime, Days, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use drover_core::HumanDuration;

/// Which way a bare time of day or duration points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// `--at`: `03:00` is the next 03:00, and `+2h` is two hours from now.
    Future,
    /// `--since`: `09:00` is today's, and `2h` is two hours ago.
    Past,
}

/// Reads `raw` as a time, relative to `now` (in the local time zone where it names no offset).
pub fn parse(raw: &str, now: DateTime<Local>, toward: Toward) -> Result<DateTime<Utc>, String> {
    let text = raw.trim();
    let bad = || {
        format!(
            "`{raw}` is not a time: give e.g. `2026-12-03 03:00`, `03:00`, `tomorrow 03:00`, \
             `+2h` or an RFC 3339 time"
        )
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.to_utc());
    }
    if let Some(ahead) = text.strip_prefix('+') {
        let d: HumanDuration = ahead.parse().map_err(|_| bad())?;
        return shift(now, d, true).ok_or_else(bad);
    }
    if text == "now" {
        return Ok(now.to_utc());
    }
    if let Ok(d) = text.parse::<HumanDuration>() {
        return shift(now, d, toward == Toward::Future).ok_or_else(bad);
    }
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local(naive).ok_or_else(bad);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local(date.and_time(NaiveTime::MIN)).ok_or_else(bad);
    }
    let (day, time) = match text.split_once(' ') {
        Some((day, time)) => (Some(day), Some(time)),
        None if matches!(text, "today" | "tomorrow" | "yesterday") => (Some(text), None),
        None => (None, Some(text)),
    };
    let time = match time {
        Some(time) => time_of_day(time).ok_or_else(bad)?,
        None => NaiveTime::MIN,
    };
    let today = now.date_naive();
    let date = match day {
        Some("today") => today,
        Some("tomorrow") => today.checked_add_days(Days::new(1)).ok_or_else(bad)?,
        Some("yesterday") => today.checked_sub_days(Days::new(1)).ok_or_else(bad)?,
        Some(_) => return Err(bad()),
        // A time of day alone: its next occurrence ahead, or its last one back.
        None => {
            let at = today.and_time(time);
            match toward {
                Toward::Future if at <= now.naive_local() => {
                    today.checked_add_days(Days::new(1)).ok_or_else(bad)?
                }
                Toward::Past if at > now.naive_local() => {
                    today.checked_sub_days(Days::new(1)).ok_or_else(bad)?
                }
                _ => today,
            }
        }
    };
    local(date.and_time(time)).ok_or_else(bad)
}

fn time_of_day(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .ok()
}

fn shift(now: DateTime<Local>, d: HumanDuration, ahead: bool) -> Option<DateTime<Utc>> {
    let d = chrono::Duration::from_std(d.get()).ok()?;
    let at = if ahead {
        now.checked_add_signed(d)
    } else {
        now.checked_sub_signed(d)
    };
    at.map(|at| at.to_utc())
}

/// A local wall-clock time; the earlier one where a clock change makes it happen twice.
fn local(naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|at| at.to_utc())
}

/// `--at` as clap reads it.
pub fn parse_at(raw: &str) -> Result<DateTime<Utc>, String> {
    parse(raw, Local::now(), Toward::Future)
}

/// `status --since` as clap reads it.
pub fn parse_since(raw: &str) -> Result<DateTime<Utc>, String> {
    parse(raw, Local::now(), Toward::Past)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(text: &str) -> DateTime<Local> {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        Local.from_local_datetime(&naive).earliest().unwrap()
    }

    #[test]
    fn people_write_times_many_ways() {
        let now = at("2026-12-02 10:00");
        let future = |raw| parse(raw, now, Toward::Future).unwrap();
        let past = |raw| parse(raw, now, Toward::Past).unwrap();
        assert_eq!(
            future("03:00"),
            at("2026-12-03 03:00").to_utc(),
            "next 03:00"
        );
        assert_eq!(past("03:00"), at("2026-12-02 03:00").to_utc(), "last 03:00");
        assert_eq!(future("tomorrow 03:00"), at("2026-12-03 03:00").to_utc());
        assert_eq!(future("2026-12-05 08:30"), at("2026-12-05 08:30").to_utc());
        assert_eq!(future("2026-12-05T08:30"), at("2026-12-05 08:30").to_utc());
        assert_eq!(future("+2h"), at("2026-12-02 12:00").to_utc());
        assert_eq!(past("2h"), at("2026-12-02 08:00").to_utc());
        assert_eq!(past("yesterday"), at("2026-12-01 00:00").to_utc());
        assert_eq!(
            future("2026-12-05T08:30:00Z"),
            "2026-12-05T08:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        for bad in ["soon", "25:00", "someday 03:00", "+later"] {
            assert!(parse(bad, now, Toward::Future).is_err(), "{bad}");
        }
    }
}
