//! Giving the guest's free memory back to the host.
//!
//! Every page the guest has once touched stays in the host's memory (QEMU's guest RAM) until
//! the guest tells the host it is free: virtio-balloon's free page reporting does that for
//! free blocks of at least `page_reporting_order`. Linux 6.1 fixes that order at 2^9 pages
//! (2 MiB) when the balloon registers, and what a booted guest frees (the initramfs, the
//! kernel's init sections, vminitd's first copy, page cache) lies mostly in smaller blocks,
//! so at that order nothing came back (docs/benchmarks.md). Lowering it at boot, after the
//! balloon has registered, lets those pages go back too.

use std::path::Path;

/// `page_reporting_order`'s parameter file (absent when the kernel has no page reporting).
pub const REPORTING_ORDER_PARAM: &str =
    "/sys/module/page_reporting/parameters/page_reporting_order";

/// The smallest free block reported to the host, as a power of two of 4 KiB pages.
pub const REPORTING_ORDER: u32 = 0;

/// The reporting order: the kernel command line word `vminitd_page_reporting_order=N`
/// (handed to init as an environment variable; for measuring other orders), else
/// [`REPORTING_ORDER`].
pub fn reporting_order() -> u32 {
    std::env::var("vminitd_page_reporting_order")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|o| *o <= 10)
        .unwrap_or(REPORTING_ORDER)
}

/// Sets the reporting order in `param`; a kernel without page reporting (no file) is left
/// alone, since the guest works the same without it.
pub fn tune_page_reporting(param: &Path, order: u32) {
    if !param.exists() {
        return;
    }
    if let Err(e) = std::fs::write(param, order.to_string()) {
        crate::warn!("setting the page reporting order to {order}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_written_and_a_kernel_without_reporting_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let param = dir.path().join("page_reporting_order");
        std::fs::write(&param, "9\n").unwrap();
        tune_page_reporting(&param, 0);
        assert_eq!(std::fs::read_to_string(&param).unwrap(), "0");
        let absent = dir.path().join("absent");
        tune_page_reporting(&absent, 0);
        assert!(!absent.exists());
    }
}
