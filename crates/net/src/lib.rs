//! Container networking, the parts that are logic rather than plumbing: subnets and address
//! management for user networks, MAC addresses, the embedded DNS server that answers
//! container names, the userspace proxies behind `-p`, and the host side of a network on
//! Linux (bridge, TAP devices, NAT). The apiserver owns networks and DNS; each container's
//! runtime helper owns its proxies and TAP device.

pub mod dns;
pub mod ipam;
pub mod mac;
pub mod resolv;
pub mod subnet;

pub use dns::{DnsError, DnsRecords, DnsServer};
pub use ipam::{Allocation, Ipam, IpamError};
pub use mac::{MacAddress, MacError};
pub use resolv::{ResolvConf, ResolvError, host_resolvers};
pub use subnet::{Ipv4Subnet, Ipv6Subnet, SubnetError, first_free_subnet};
