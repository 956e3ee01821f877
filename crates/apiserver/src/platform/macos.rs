//! Every build but Linux with `linux-host` (macOS above all): no host bridges. Containers
//! use the VMM's own user-mode networking (QEMU's slirp, or VZ's NAT on macOS), as with
//! Apple's `container` on macOS 15, so `auto` picks user mode and `bridge` is refused with
//! the reason.

use std::sync::Arc;

const REASON: &str =
    "host bridges are only managed on linux (this build has no linux-host support)";

/// Why bridge mode is unavailable: always, here.
pub fn bridge_unavailable() -> Option<String> {
    Some(REASON.to_owned())
}

/// There is no host networking to drive here.
pub fn host_network() -> Result<Arc<dyn net::HostNetwork>, String> {
    Err(REASON.to_owned())
}

/// Not measured here: 0.
pub fn process_tree_rss(_pid: u32) -> u64 {
    0
}
