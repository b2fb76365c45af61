//! What this node offers to admission: its memory and CPUs, from flags or from the machine.

use drover_core::units::format_bytes;
use drover_core::{Cpus, Size};

/// The memory left to the OS and everything else when `--memory` is not given: a tenth of the
/// machine, at least 1 GiB, at most half.
pub fn os_reserve(total: u64) -> u64 {
    (total / 10).max(1 << 30).min(total / 2)
}

pub use drover_core::Capacity;

/// The capacity from the flags given, filling the rest from the machine: its memory less
/// [`os_reserve`], its CPU count, and one slot per CPU.
pub fn resolve(memory: Option<Size>, cpus: Option<Cpus>, slots: Option<usize>) -> Capacity {
    let machine_cpus = drover_exec::host::cpus();
    let memory_bytes = match memory {
        Some(size) => size.bytes(),
        None => drover_exec::host::memory()
            .map(|m| m.total_bytes.saturating_sub(os_reserve(m.total_bytes)))
            .unwrap_or(u64::MAX),
    };
    Capacity {
        memory_bytes,
        cpus: cpus.unwrap_or(Cpus::whole(u32::try_from(machine_cpus).unwrap_or(u32::MAX))),
        slots: slots.unwrap_or(machine_cpus).max(1),
    }
}

/// Free memory for admission: what the capacity leaves (`by_capacity`), capped by what the
/// machine has available (`MemAvailable`) less `growth` — the headroom running and claimed
/// attempts are entitled to but do not use yet. Returns the figure and, when the machine is what
/// limits it, a note for people saying so.
pub fn free_memory(
    by_capacity: u64,
    host_available: Option<u64>,
    growth: u64,
) -> (u64, Option<String>) {
    let Some(available) = host_available else {
        return (by_capacity, None);
    };
    let host_free = available.saturating_sub(growth);
    if host_free < by_capacity {
        (
            host_free,
            Some(format!(
                "the machine has {} available; processes outside drover hold the rest",
                format_bytes(available)
            )),
        )
    } else {
        (by_capacity, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_keeps_a_tenth_but_at_least_a_gib_and_at_most_half() {
        assert_eq!(os_reserve(64 << 30), (64u64 << 30) / 10);
        assert_eq!(os_reserve(4 << 30), 1 << 30);
        assert_eq!(os_reserve(1 << 30), 1 << 29);
    }

    #[test]
    fn memory_held_outside_drover_lowers_what_is_free_and_says_so() {
        const GIB: u64 = 1 << 30;
        // Plenty available: capacity decides, no note.
        assert_eq!(free_memory(8 * GIB, Some(20 * GIB), 0), (8 * GIB, None));
        // Another program holds most of the machine: 3 GiB available, a running job may still
        // grow by 1 GiB into its reservation, so 2 GiB is free, and the note says why.
        let (free, note) = free_memory(8 * GIB, Some(3 * GIB), GIB);
        assert_eq!(free, 2 * GIB);
        let note = note.unwrap_or_default();
        assert!(
            note.contains("3.0 GiB available") && note.contains("outside drover"),
            "{note}"
        );
        // Nothing to read (macOS before a reading exists): capacity alone.
        assert_eq!(free_memory(8 * GIB, None, 5 * GIB), (8 * GIB, None));
    }

    #[test]
    fn flags_win_over_the_machine() {
        let cap = resolve(Some(Size(1 << 30)), Some(Cpus::from_millis(1500)), Some(3));
        assert_eq!(cap.memory_bytes, 1 << 30);
        assert_eq!(cap.cpus, Cpus::from_millis(1500));
        assert_eq!(cap.slots, 3);
        assert_eq!(cap.resources().cpu_millis, 1500);
        let machine = resolve(None, None, None);
        assert!(machine.slots >= 1);
        assert!(machine.memory_bytes > 0);
    }
}
