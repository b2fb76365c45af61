//! What the machine has and what runs on it outside drover: total and available memory, CPU
//! count, and pressure stall information (PSI). Read on demand; parsing is separate from reading
//! so it is unit-tested on fixed text.

pub use drover_core::report::{Memory, Pressure, Pressures};

/// Parses `/proc/meminfo` text.
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    Some(Memory {
        total_bytes: field("MemTotal:")?,
        available_bytes: field("MemAvailable:")?,
    })
}

/// Parses the `some` line of a PSI file.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let line = text.lines().find(|l| l.starts_with("some"))?;
    let value = |key: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))?
            .parse()
            .ok()
    };
    Some(Pressure {
        avg10: value("avg10=")?,
        avg60: value("avg60=")?,
    })
}

/// The machine's memory now. `None` where `/proc/meminfo` does not exist (macOS).
pub fn memory() -> Option<Memory> {
    #[cfg(target_os = "linux")]
    {
        parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: sysconf with constant names.
        let (pages, size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        (pages > 0 && size > 0).then(|| {
            let total = pages as u64 * size as u64;
            Memory {
                total_bytes: total,
                available_bytes: total,
            }
        })
    }
}

/// PSI now, where the kernel provides it.
pub fn pressures() -> Pressures {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/pressure/{name}"))
            .ok()
            .and_then(|t| parse_pressure(&t))
    };
    Pressures {
        memory: read("memory"),
        cpu: read("cpu"),
    }
}

/// This process's hard `RLIMIT_NOFILE`: the most descriptors a job it starts can be given
/// (raising it takes a privilege a job's owner does not use). `None` when unlimited or unknown.
pub fn max_nofile() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_max != libc::RLIM_INFINITY).then_some(limit.rlim_max)
}

/// CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   12288000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(Memory {
                total_bytes: 24_576_000 * 1024,
                available_bytes: 12_288_000 * 1024,
            })
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn pressure_reads_the_some_line() {
        let text = "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(
            parse_pressure(text),
            Some(Pressure {
                avg10: 1.5,
                avg60: 0.25
            })
        );
    }
}
