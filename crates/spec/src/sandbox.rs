//! Docker's default sandbox of `/proc` and `/sys`: the paths a container sees masked
//! (an empty read-only file or directory over them) and the ones it sees read-only, unless
//! `--privileged` or `--security-opt systempaths=unconfined` lift them.
//!
//! Kept once here, beside Docker's capability set, because two parts apply them: the
//! daemon writes them into every runtime spec, and vminitd falls back to them when a spec
//! names none.

/// Docker's masked paths.
pub const DOCKER_MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const DOCKER_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute_distinct_and_under_proc_or_sys() {
        let all: Vec<&str> = DOCKER_MASKED_PATHS
            .iter()
            .chain(DOCKER_READONLY_PATHS.iter())
            .copied()
            .collect();
        for p in &all {
            assert!(
                p.starts_with("/proc/") || p.starts_with("/sys/"),
                "{p} is outside /proc and /sys"
            );
        }
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "a path is listed twice");
        assert!(DOCKER_MASKED_PATHS.contains(&"/proc/kcore"));
        assert!(DOCKER_READONLY_PATHS.contains(&"/proc/sys"));
    }
}
