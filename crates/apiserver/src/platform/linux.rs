//! Linux: host bridges, TAP devices and nftables through crates/net's `LinuxBridge`.

use std::sync::Arc;

/// Why bridge mode is unavailable to this process, or `None` when it may manage host
/// networking (CAP_NET_ADMIN, `/dev/net/tun`, the `ip` and `nft` programs).
pub fn bridge_unavailable() -> Option<String> {
    (!net::host::can_manage_host_network())
        .then(|| "it needs CAP_NET_ADMIN, /dev/net/tun and the ip and nft programs".to_owned())
}

/// The host networking that bridge mode drives.
pub fn host_network() -> Result<Arc<dyn net::HostNetwork>, String> {
    let bridge = net::host::LinuxBridge::new().map_err(|e| e.to_string())?;
    Ok(Arc::new(bridge))
}

/// Rosetta exists only on Apple silicon Macs.
pub fn rosetta_available() -> bool {
    false
}
