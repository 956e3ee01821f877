//! Container networking, the parts that are logic rather than plumbing: subnets and address
//! management for user networks, MAC addresses, the embedded DNS server that answers
//! container names, the userspace proxies behind `-p`, and the host side of a network on
//! Linux (bridge, TAP devices, NAT). The apiserver owns networks and DNS; each container's
//! runtime helper owns its proxies and TAP device.

pub mod bridge;
#[cfg(feature = "dns")]
pub mod dns;
#[cfg(all(target_os = "linux", feature = "host"))]
pub mod host;
pub mod ipam;
pub mod mac;
#[cfg(all(target_os = "linux", feature = "testing"))]
pub mod netns;
pub mod proxy;
pub mod resolv;
pub mod subnet;

pub use bridge::{BridgeConfig, HostError, HostNetwork, Ipv6Gateway, bridge_name, tap_name};
#[cfg(feature = "dns")]
pub use dns::{DnsError, DnsRecords, DnsServer};
#[cfg(all(target_os = "linux", feature = "host"))]
pub use host::{LinuxBridge, can_manage_host_network};
pub use ipam::{Allocation, Ipam, IpamError};
pub use mac::{MacAddress, MacError};
#[cfg(all(target_os = "linux", feature = "testing"))]
pub use netns::TestNetns;
pub use proxy::{BoundPort, PortProxies, ProxyError, ProxyOptions};
pub use resolv::{ResolvConf, ResolvError, host_resolvers};
pub use subnet::{Ipv4Subnet, Ipv6Subnet, SubnetError, first_free_subnet};
