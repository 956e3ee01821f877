//! The one place the daemon chooses its platform-specific parts.
//!
//! Everything else in this crate is platform-neutral: it plans networks, writes bundles and
//! talks to runtimes the same way everywhere. What only Linux can do sits in [`linux`]
//! (compiled on Linux with the `linux-host` feature, on by default); [`macos`] stands beside
//! it with the same functions for every other build: macOS, where the VZ backend gives each
//! VM its own NAT, and a Linux build without `linux-host`, which `cargo xtask test` checks so
//! that Linux-only code cannot leak into neutral code (`cargo check -p apiserver
//! --no-default-features`). A new platform adds a file here and edits no logic.
//!
//! What is chosen here:
//! - whether this process may manage host networking (bridge mode), and the
//!   [`net::HostNetwork`] that does it (`net::host::LinuxBridge`: bridges, TAP devices,
//!   nftables);
//! - whether Rosetta can translate x86_64 programs in an arm64 guest (Apple silicon only).

#[cfg(all(target_os = "linux", feature = "linux-host", not(check_macos)))]
mod linux;
#[cfg(all(target_os = "linux", feature = "linux-host", not(check_macos)))]
use linux as imp;

// Also under `--cfg check_macos`: `cargo xtask check-macos` builds the daemon as macOS would.
#[cfg(not(all(target_os = "linux", feature = "linux-host", not(check_macos))))]
mod macos;
#[cfg(not(all(target_os = "linux", feature = "linux-host", not(check_macos))))]
use macos as imp;

pub use imp::{bridge_unavailable, host_network, process_tree_rss, rosetta_available};
