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

/// The resident memory (VmRSS) of `pid` and every process below it, bytes: a pooled
/// runtime, its QEMU and its vsock helper. 0 when `pid` is gone.
pub fn process_tree_rss(pid: u32) -> u64 {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The command name may hold spaces and parentheses: the fields follow the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|f| f.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree.iter().map(|p| rss_bytes(*p)).sum()
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
