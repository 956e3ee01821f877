//! Container networking, the parts that are logic rather than plumbing: subnets and address
//! management for user networks, MAC addresses, the embedded DNS server that answers
//! container names, the userspace proxies behind `-p`, and the host side of a network on
//! Linux (bridge, TAP devices, NAT). The apiserver owns networks and DNS; each container's
//! runtime helper owns its proxies and TAP device.

#[cfg(target_os = "linux")]
pub mod host;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod proxy;

#[cfg(target_os = "linux")]
pub use host::{BridgeConfig, HostError, HostNetwork, Ipv6Gateway, LinuxBridge};
#[cfg(target_os = "linux")]
pub use host::{bridge_name, can_manage_host_network, tap_name};
#[cfg(target_os = "linux")]
pub use netns::TestNetns;
pub use proxy::{BoundPort, PortProxies, ProxyError, ProxyOptions};
