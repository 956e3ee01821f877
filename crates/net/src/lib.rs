//! Container networking, the parts that are logic rather than plumbing: subnets and address
//! management for user networks, MAC addresses, the embedded DNS server that answers
//! container names, the userspace proxies behind `-p`, and the host side of a network on
//! Linux (bridge, TAP devices, NAT). The apiserver owns networks and DNS; each container's
//! runtime helper owns its proxies and TAP device.
