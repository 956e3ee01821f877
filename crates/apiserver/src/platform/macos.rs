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

/// Where macOS installs Rosetta's Linux runtime (`softwareupdate --install-rosetta`).
const ROSETTA_RUNTIME: &str = "/Library/Apple/usr/libexec/oah/libRosettaRuntime";

/// Rosetta can translate for an arm64 guest: an Apple silicon Mac with Rosetta installed.
pub fn rosetta_available() -> bool {
    cfg!(all(target_os = "macos", target_arch = "aarch64"))
        && std::path::Path::new(ROSETTA_RUNTIME).exists()
}

/// Not measured here: 0.
pub fn process_tree_rss(_pid: u32) -> u64 {
    0
}
