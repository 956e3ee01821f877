//! The platform-neutral side of host networking: what a network's bridge is
//! ([`BridgeConfig`]), the [`HostNetwork`] boundary a platform implements, and the stable
//! names of bridges and TAP devices. The Linux implementation is [`crate::host`]
//! (`LinuxBridge`, feature `host`); this module does no I/O, so code that only plans
//! networks compiles on every platform.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest network interface name Linux takes (`IFNAMSIZ` - 1).
pub const IFNAME_MAX: usize = 15;

/// The start of every bridge name [`bridge_name`] makes.
pub const BRIDGE_PREFIX: &str = "cbr-";

/// The start of every TAP name [`tap_name`] makes.
pub const TAP_PREFIX: &str = "ctap-";

/// The start of the nftables table of each network (`inet container-<bridge>`).
pub const TABLE_PREFIX: &str = "container-";

/// Why the host side of a network could not be set up or removed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A device name Linux or nft would refuse.
    #[error("invalid device name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A bridge configuration that cannot work.
    #[error("invalid bridge configuration for {name}: {reason}")]
    InvalidConfig {
        /// The bridge.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A device of that name exists and is something else.
    #[error("device {name} exists and is a {found}, not a {wanted}")]
    WrongKind {
        /// The device.
        name: String,
        /// What it is (`veth`, `bridge`, `device` when it has no kind).
        found: String,
        /// What we wanted.
        wanted: &'static str,
    },
    /// A TAP device that a running process (a VM) has open.
    #[error("tap device {name} is in use by a running process")]
    TapInUse {
        /// The device.
        name: String,
    },
    /// A program this needs is not installed.
    #[error("cannot find `{program}` (install {package})")]
    MissingProgram {
        /// The program.
        program: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A program could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A program failed; `message` is what it printed.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output on one line.
        message: String,
    },
    /// A program printed something this does not understand.
    #[error("cannot understand the output of `{command}`: {reason}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong.
        reason: String,
    },
    /// A sysctl (`/proc/sys/...`) could not be read or written.
    #[error("cannot set {path}")]
    Sysctl {
        /// The file under `/proc/sys`.
        path: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// An IPv6 gateway address and prefix of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Gateway {
    /// The gateway address, put on the bridge.
    pub gateway: Ipv6Addr,
    /// The subnet prefix length.
    pub prefix: u8,
}

/// What the host side of one network looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The bridge's interface name (see [`bridge_name`]).
    pub name: String,
    /// The gateway address, put on the bridge; the network's DNS server listens there.
    pub gateway: Ipv4Addr,
    /// The subnet prefix length (the subnet is `gateway/prefix`).
    pub prefix: u8,
    /// No way out: nothing is forwarded between the bridge and other interfaces.
    pub internal: bool,
    /// The bridge's MTU; `None` keeps the kernel's.
    pub mtu: Option<u32>,
    /// An IPv6 gateway and subnet, for networks with `--subnet-v6`.
    pub ipv6: Option<Ipv6Gateway>,
}

impl BridgeConfig {
    /// The IPv4 subnet as `a.b.c.d/n`, host bits cleared.
    pub fn subnet(&self) -> String {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        format!(
            "{}/{}",
            Ipv4Addr::from(u32::from(self.gateway) & mask),
            self.prefix
        )
    }

    /// The IPv6 subnet as `addr/n`, host bits cleared, when the bridge has one.
    pub fn subnet_v6(&self) -> Option<String> {
        self.ipv6.map(|v6| {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6.prefix))
                .unwrap_or(0);
            format!(
                "{}/{}",
                Ipv6Addr::from(u128::from(v6.gateway) & mask),
                v6.prefix
            )
        })
    }

    /// Checks the names, prefixes, gateway and MTU before anything is created.
    pub fn validate(&self) -> Result<(), HostError> {
        check_name(&self.name)?;
        let bad = |reason: String| HostError::InvalidConfig {
            name: self.name.clone(),
            reason,
        };
        if !(1..=30).contains(&self.prefix) {
            return Err(bad(format!(
                "IPv4 prefix /{} is not between /1 and /30",
                self.prefix
            )));
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        let host_bits = u32::from(self.gateway) & !mask;
        if host_bits == 0 || host_bits == !mask {
            return Err(bad(format!(
                "gateway {} is the network or broadcast address of {}",
                self.gateway,
                self.subnet()
            )));
        }
        if let Some(v6) = self.ipv6
            && !(1..=126).contains(&v6.prefix)
        {
            return Err(bad(format!(
                "IPv6 prefix /{} is not between /1 and /126",
                v6.prefix
            )));
        }
        if let Some(mtu) = self.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(bad(format!("MTU {mtu} is not between 68 and 65535")));
        }
        Ok(())
    }
}

/// The host side of user networks: bridges and the TAP devices of container VMs.
///
/// Calls block (they run programs); async callers use `spawn_blocking`.
pub trait HostNetwork: Send + Sync {
    /// Creates the bridge of a network, or brings an existing one to `config`: gateway
    /// address, MTU, up, IP forwarding on, and the network's nftables rules.
    fn create_bridge(&self, config: &BridgeConfig) -> Result<(), HostError>;

    /// Removes a bridge and its nftables rules; a missing bridge is not an error.
    fn delete_bridge(&self, name: &str) -> Result<(), HostError>;

    /// Creates a persistent TAP device attached to `bridge` and up, for QEMU to open with
    /// `-netdev tap,ifname=NAME,script=no,downscript=no`. A leftover TAP of that name that
    /// no process holds is replaced.
    fn create_tap(&self, name: &str, bridge: &str, mtu: Option<u32>) -> Result<(), HostError>;

    /// Removes a TAP device; a missing one is not an error.
    fn delete_tap(&self, name: &str) -> Result<(), HostError>;
}

/// The bridge name of a network: [`BRIDGE_PREFIX`] and a hash of the network's name, so
/// any network name fits Linux's 15 characters and the same network always gets the same
/// bridge.
pub fn bridge_name(network: &str) -> String {
    hashed_name(BRIDGE_PREFIX, network)
}

/// The TAP device name of a container's VM: [`TAP_PREFIX`] and a hash of the container's
/// id.
pub fn tap_name(container_id: &str) -> String {
    hashed_name(TAP_PREFIX, container_id)
}

fn hashed_name(prefix: &str, key: &str) -> String {
    // FNV-1a: stable across Rust releases, unlike std's hasher, so names survive upgrades.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut name = prefix.to_owned();
    let digits = IFNAME_MAX - prefix.len();
    let _ = write!(name, "{:016x}", hash);
    name.truncate(prefix.len() + digits);
    name
}

/// Refuses names the kernel or an nft rule would choke on: 1 to 15 characters of letters,
/// digits, `_`, `.` and `-`, starting with a letter.
pub(crate) fn check_name(name: &str) -> Result<(), HostError> {
    let bad = |reason| HostError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(bad("must be 1 to 15 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad("must start with a letter"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(bad("may hold only letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}
