//! Address management for one IPv4 network.
//!
//! The network address, the gateway (`.1`, the host side) and the broadcast address are never
//! handed out; containers get addresses from `.2` up. An owner (a container id) holds at most
//! one address. Addresses are stable per hostname: the address a hostname last had is
//! remembered after release and given back to that hostname while no one else holds it, and
//! new hostnames prefer addresses nobody remembers, so a container re-created under the same
//! name usually comes back on the same address.
//!
//! `Ipam` is plain data: the daemon keeps one per network and persists it as JSON next to
//! the network's config (it never does I/O itself).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::subnet::Ipv4Subnet;

/// Why an address could not be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Every container address of the subnet is taken.
    #[error("no free address left in subnet {subnet} ({capacity} addresses, all allocated)")]
    Exhausted { subnet: Ipv4Subnet, capacity: u32 },
    /// The requested address is held by another owner.
    #[error("address {address} is already allocated to {owner}")]
    InUse { address: Ipv4Addr, owner: String },
    /// The requested address is not in the subnet.
    #[error("address {address} is outside subnet {subnet}")]
    OutsideSubnet {
        address: Ipv4Addr,
        subnet: Ipv4Subnet,
    },
    /// The requested address is the network, gateway or broadcast address.
    #[error("address {address} is reserved in subnet {subnet} (it is the {role} address)")]
    Reserved {
        address: Ipv4Addr,
        subnet: Ipv4Subnet,
        role: &'static str,
    },
    /// The owner already holds a different address.
    #[error("{owner} already has address {address}")]
    OwnerHasAddress { owner: String, address: Ipv4Addr },
}

/// One owner's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// The address.
    pub address: Ipv4Addr,
    /// The hostname it was allocated for (empty when allocated by address).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
}

/// The addresses of one network: who holds which, and which hostname had which last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    subnet: Ipv4Subnet,
    /// Owner (container id) -> its address.
    #[serde(default)]
    allocations: BTreeMap<String, Allocation>,
    /// Hostname -> the address it had last. At most one hostname per address, so this never
    /// grows beyond the subnet's size.
    #[serde(default)]
    remembered: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    /// An empty allocator for `subnet`.
    pub fn new(subnet: Ipv4Subnet) -> Ipam {
        Ipam {
            subnet,
            allocations: BTreeMap::new(),
            remembered: BTreeMap::new(),
        }
    }

    /// The subnet addresses come from.
    pub fn subnet(&self) -> Ipv4Subnet {
        self.subnet
    }

    /// The owner's address: the one it already has, else the address remembered for
    /// `hostname` if that is free, else the lowest free address no other hostname remembers,
    /// else the lowest free address.
    pub fn allocate(&mut self, owner: &str, hostname: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some(existing) = self.allocations.get(owner) {
            return Ok(existing.address);
        }
        let taken = self.taken();
        let hostname = hostname.to_ascii_lowercase();
        let remembered = self
            .remembered
            .get(&hostname)
            .copied()
            .filter(|a| self.is_container_address(*a) && !taken.contains(a));
        let address = match remembered {
            Some(address) => address,
            None => {
                let promised: BTreeSet<Ipv4Addr> = self.remembered.values().copied().collect();
                self.lowest_free(&taken, |a| !promised.contains(&a))
                    .or_else(|| self.lowest_free(&taken, |_| true))
                    .ok_or(IpamError::Exhausted {
                        subnet: self.subnet,
                        capacity: self.subnet.container_capacity(),
                    })?
            }
        };
        self.record(owner, &hostname, address);
        Ok(address)
    }

    /// Gives `owner` exactly `address` (`--ip`). Refused when the address is outside the
    /// subnet, reserved, held by someone else, or the owner already holds another address.
    pub fn allocate_specific(&mut self, owner: &str, address: Ipv4Addr) -> Result<(), IpamError> {
        if !self.subnet.contains(address) {
            return Err(IpamError::OutsideSubnet {
                address,
                subnet: self.subnet,
            });
        }
        let role = if address == self.subnet.network() {
            Some("network")
        } else if address == self.subnet.gateway() {
            Some("gateway")
        } else if address == self.subnet.broadcast() {
            Some("broadcast")
        } else {
            None
        };
        if let Some(role) = role {
            return Err(IpamError::Reserved {
                address,
                subnet: self.subnet,
                role,
            });
        }
        if let Some(existing) = self.allocations.get(owner) {
            if existing.address == address {
                return Ok(());
            }
            return Err(IpamError::OwnerHasAddress {
                owner: owner.to_owned(),
                address: existing.address,
            });
        }
        if let Some((other, _)) = self.allocations.iter().find(|(_, a)| a.address == address) {
            return Err(IpamError::InUse {
                address,
                owner: other.clone(),
            });
        }
        self.record(owner, "", address);
        Ok(())
    }

    /// Frees the owner's address, returning it (None when the owner had none). The hostname
    /// keeps its claim on the address until another hostname is given it.
    pub fn release(&mut self, owner: &str) -> Option<Ipv4Addr> {
        self.allocations.remove(owner).map(|a| a.address)
    }

    /// The owner's address, if it has one.
    pub fn address_of(&self, owner: &str) -> Option<Ipv4Addr> {
        self.allocations.get(owner).map(|a| a.address)
    }

    /// Every owner with its allocation, in owner order.
    pub fn allocations(&self) -> impl Iterator<Item = (&str, &Allocation)> {
        self.allocations.iter().map(|(o, a)| (o.as_str(), a))
    }

    /// How many owners hold an address.
    pub fn len(&self) -> usize {
        self.allocations.len()
    }

    /// Whether no owner holds an address.
    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    fn taken(&self) -> BTreeSet<Ipv4Addr> {
        self.allocations.values().map(|a| a.address).collect()
    }

    fn is_container_address(&self, address: Ipv4Addr) -> bool {
        address >= self.subnet.first_container_address()
            && address <= self.subnet.last_container_address()
    }

    fn lowest_free(
        &self,
        taken: &BTreeSet<Ipv4Addr>,
        acceptable: impl Fn(Ipv4Addr) -> bool,
    ) -> Option<Ipv4Addr> {
        let first = u32::from(self.subnet.first_container_address());
        let last = u32::from(self.subnet.last_container_address());
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|a| !taken.contains(a) && acceptable(*a))
    }

    fn record(&mut self, owner: &str, hostname: &str, address: Ipv4Addr) {
        if !hostname.is_empty() {
            // The address now belongs to this hostname: whoever remembered it loses the claim.
            self.remembered
                .retain(|h, a| *a != address || h == hostname);
            self.remembered.insert(hostname.to_owned(), address);
        }
        self.allocations.insert(
            owner.to_owned(),
            Allocation {
                address,
                hostname: hostname.to_owned(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ipam(text: &str) -> Ipam {
        Ipam::new(text.parse().unwrap())
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn hands_out_from_dot_two_and_keeps_an_owners_address() {
        let mut m = ipam("192.168.64.0/24");
        assert_eq!(m.allocate("c1", "web").unwrap(), ip("192.168.64.2"));
        assert_eq!(m.allocate("c2", "db").unwrap(), ip("192.168.64.3"));
        assert_eq!(m.allocate("c1", "web").unwrap(), ip("192.168.64.2"));
        assert_eq!(m.address_of("c2"), Some(ip("192.168.64.3")));
        assert_eq!(m.address_of("c3"), None);
        assert_eq!(m.len(), 2);
        let owners: Vec<_> = m.allocations().map(|(o, a)| (o, a.address)).collect();
        assert_eq!(
            owners,
            [("c1", ip("192.168.64.2")), ("c2", ip("192.168.64.3"))]
        );
    }

    #[test]
    fn a_recreated_container_gets_its_address_back_while_free() {
        let mut m = ipam("192.168.64.0/24");
        m.allocate("c1", "web").unwrap();
        assert_eq!(m.allocate("c2", "db").unwrap(), ip("192.168.64.3"));
        assert_eq!(m.release("c2"), Some(ip("192.168.64.3")));
        assert_eq!(m.release("c2"), None);
        // A new hostname skips .3, which "db" still remembers.
        assert_eq!(m.allocate("c3", "cache").unwrap(), ip("192.168.64.4"));
        // "db" re-created under a new id comes back on .3; case does not matter.
        assert_eq!(m.allocate("c4", "DB").unwrap(), ip("192.168.64.3"));
    }

    #[test]
    fn a_remembered_address_taken_by_someone_else_is_not_stolen() {
        let mut m = ipam("10.0.0.0/29"); // containers .2 to .6
        m.allocate("c1", "web").unwrap(); // .2
        m.release("c1");
        // Fill every address not promised to "web", then one more: that one must be .2.
        for (i, expected) in (3..=6).enumerate() {
            let got = m.allocate(&format!("x{i}"), &format!("h{i}")).unwrap();
            assert_eq!(got, Ipv4Addr::new(10, 0, 0, expected));
        }
        assert_eq!(m.allocate("x9", "h9").unwrap(), ip("10.0.0.2"));
        // "web" comes back: its address is held, so it gets whatever is free (nothing).
        assert_eq!(
            m.allocate("c2", "web").unwrap_err().to_string(),
            "no free address left in subnet 10.0.0.0/29 (5 addresses, all allocated)"
        );
        m.release("x0"); // frees .3
        assert_eq!(m.allocate("c2", "web").unwrap(), ip("10.0.0.3"));
    }

    #[test]
    fn specific_addresses() {
        let mut m = ipam("192.168.64.0/24");
        m.allocate_specific("c1", ip("192.168.64.10")).unwrap();
        m.allocate_specific("c1", ip("192.168.64.10")).unwrap();
        assert_eq!(m.address_of("c1"), Some(ip("192.168.64.10")));
        let e = |m: &mut Ipam, owner: &str, a: &str| {
            m.allocate_specific(owner, ip(a)).unwrap_err().to_string()
        };
        assert_eq!(
            e(&mut m, "c2", "192.168.64.10"),
            "address 192.168.64.10 is already allocated to c1"
        );
        assert_eq!(
            e(&mut m, "c2", "192.168.65.10"),
            "address 192.168.65.10 is outside subnet 192.168.64.0/24"
        );
        assert_eq!(
            e(&mut m, "c2", "192.168.64.1"),
            "address 192.168.64.1 is reserved in subnet 192.168.64.0/24 (it is the gateway address)"
        );
        assert!(e(&mut m, "c2", "192.168.64.0").contains("network address"));
        assert!(e(&mut m, "c2", "192.168.64.255").contains("broadcast address"));
        assert_eq!(
            e(&mut m, "c1", "192.168.64.11"),
            "c1 already has address 192.168.64.10"
        );
        // Dynamic allocation goes around it.
        for n in 2..=9 {
            m.allocate(&format!("d{n}"), "").unwrap();
        }
        assert_eq!(m.allocate("d10", "").unwrap(), ip("192.168.64.11"));
    }

    #[test]
    fn exhausting_a_small_subnet_is_a_clear_error() {
        let mut m = ipam("10.9.0.4/30");
        assert_eq!(m.allocate("a", "a").unwrap(), ip("10.9.0.6"));
        assert_eq!(
            m.allocate("b", "b").unwrap_err(),
            IpamError::Exhausted {
                subnet: "10.9.0.4/30".parse().unwrap(),
                capacity: 1
            }
        );
    }

    #[test]
    fn json_round_trip_keeps_memory() {
        let mut m = ipam("192.168.64.0/24");
        m.allocate("c1", "web").unwrap();
        m.allocate("c2", "db").unwrap();
        m.release("c1");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"subnet":"192.168.64.0/24","allocations":{"c2":{"address":"192.168.64.3","hostname":"db"}},"remembered":{"db":"192.168.64.3","web":"192.168.64.2"}}"#
        );
        let mut back: Ipam = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.allocate("c9", "web").unwrap(), ip("192.168.64.2"));
        assert!(serde_json::from_str::<Ipam>(r#"{"subnet":"192.168.64.0/24","x":1}"#).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Allocate(u8, u8),
        Specific(u8, u8),
        Release(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..20, 0u8..8).prop_map(|(o, h)| Op::Allocate(o, h)),
            (0u8..20, any::<u8>()).prop_map(|(o, last)| Op::Specific(o, last)),
            (0u8..20).prop_map(Op::Release),
        ]
    }

    proptest! {
        #[test]
        fn owners_never_share_and_addresses_stay_usable(
            prefix in 26u8..=30,
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let subnet = Ipv4Subnet::new(Ipv4Addr::new(10, 1, 2, 0), prefix).unwrap();
            let mut m = Ipam::new(subnet);
            for op in ops {
                match op {
                    Op::Allocate(o, h) => {
                        let before = m.address_of(&format!("o{o}"));
                        match m.allocate(&format!("o{o}"), &format!("h{h}")) {
                            Ok(a) => if let Some(b) = before { prop_assert_eq!(a, b) },
                            Err(IpamError::Exhausted { .. }) => {
                                prop_assert!(before.is_none());
                                prop_assert_eq!(m.len() as u32, subnet.container_capacity());
                            }
                            Err(e) => prop_assert!(false, "unexpected {e}"),
                        }
                    }
                    Op::Specific(o, last) => {
                        let _ = m.allocate_specific(&format!("o{o}"), Ipv4Addr::new(10, 1, 2, last));
                    }
                    Op::Release(o) => { m.release(&format!("o{o}")); }
                }
                let mut seen = BTreeSet::new();
                for (_, a) in m.allocations() {
                    prop_assert!(seen.insert(a.address), "{} handed out twice", a.address);
                    prop_assert!(subnet.contains(a.address));
                    prop_assert!(a.address != subnet.network());
                    prop_assert!(a.address != subnet.gateway());
                    prop_assert!(a.address != subnet.broadcast());
                }
                prop_assert!(m.remembered.len() as u32 <= subnet.container_capacity());
                let back: Ipam = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
                prop_assert_eq!(&back, &m);
            }
        }
    }
}
