//! IPv4 and IPv6 subnets of user networks (`network create --subnet`, `--subnet-v6`) and the
//! choice of a free default subnet.
//!
//! A subnet is written in CIDR form with no host bits set (`192.168.64.0/24`, `fd00:1::/64`).
//! Its first host address is the gateway (the host side of the network, where the embedded
//! DNS server listens); containers get the addresses after it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a subnet's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// Not of the form `ADDRESS/PREFIX`.
    #[error("invalid subnet {text:?}: expected ADDRESS/PREFIX such as {example}")]
    Syntax { text: String, example: &'static str },
    /// The address part is not an address of the right family.
    #[error("invalid subnet {text:?}: {address:?} is not an {family} address")]
    Address {
        text: String,
        address: String,
        family: &'static str,
    },
    /// The prefix part is not a number in range.
    #[error("invalid subnet {text:?}: prefix {prefix:?} must be a number from {min} to {max}")]
    Prefix {
        text: String,
        prefix: String,
        min: u8,
        max: u8,
    },
    /// Bits below the prefix are set: the address is a host, not a network.
    #[error("invalid subnet {text:?}: host bits are set (did you mean {suggestion}?)")]
    HostBits { text: String, suggestion: String },
    /// The range cannot carry a container network (loopback, multicast, ...).
    #[error("invalid subnet {text:?}: {why}")]
    Reserved { text: String, why: &'static str },
}

fn mask_v4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask_v6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

/// Splits `ADDRESS/PREFIX`.
fn split<'t>(text: &'t str, example: &'static str) -> Result<(&'t str, &'t str), SubnetError> {
    match text.split_once('/') {
        Some((address, prefix)) if !address.is_empty() && !prefix.is_empty() => {
            Ok((address, prefix))
        }
        _ => Err(SubnetError::Syntax {
            text: text.to_owned(),
            example,
        }),
    }
}

/// Parses the prefix of `text` within `min..=max`.
fn parse_prefix(text: &str, prefix: &str, min: u8, max: u8) -> Result<u8, SubnetError> {
    let bad_prefix = || SubnetError::Prefix {
        text: text.to_owned(),
        prefix: prefix.to_owned(),
        min,
        max,
    };
    if !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
        return Err(bad_prefix());
    }
    let value: u8 = prefix.parse().map_err(|_| bad_prefix())?;
    if !(min..=max).contains(&value) {
        return Err(bad_prefix());
    }
    Ok(value)
}

/// An IPv4 network in CIDR form, prefix 8 to 30 (so it always has a gateway, at least one
/// container address and a broadcast address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Subnet {
    network: u32,
    prefix: u8,
}

impl Ipv4Subnet {
    /// The shortest prefix accepted: nothing wider than a /8 makes sense for one network.
    pub const MIN_PREFIX: u8 = 8;
    /// The longest prefix accepted: a /30 holds the gateway and one container.
    pub const MAX_PREFIX: u8 = 30;

    /// The subnet of `network/prefix`, refusing host bits, prefixes outside 8..=30 and
    /// ranges that overlap 0.0.0.0/8, loopback or multicast.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, SubnetError> {
        format!("{network}/{prefix}").parse()
    }

    /// The network address (all host bits clear).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask (`255.255.255.0` for a /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_v4(self.prefix))
    }

    /// The gateway: the first host address (`.1` of a /24).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// The broadcast address (all host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !mask_v4(self.prefix))
    }

    /// The first address a container may get (the one after the gateway).
    pub fn first_container_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 2)
    }

    /// The last address a container may get (the one before the broadcast address).
    pub fn last_container_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.broadcast()) - 1)
    }

    /// How many addresses containers may get (hosts less the gateway).
    pub fn container_capacity(&self) -> u32 {
        u32::from(self.last_container_address()) - u32::from(self.first_container_address()) + 1
    }

    /// Whether `address` lies in this subnet (network and broadcast addresses included).
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask_v4(self.prefix) == self.network
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Ipv4Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let mask = mask_v4(shorter);
        self.network & mask == other.network & mask
    }
}

impl FromStr for Ipv4Subnet {
    type Err = SubnetError;

    fn from_str(text: &str) -> Result<Self, SubnetError> {
        let (address, prefix) = split(text, "192.168.64.0/24")?;
        let address: Ipv4Addr = address.parse().map_err(|_| SubnetError::Address {
            text: text.to_owned(),
            address: address.to_owned(),
            family: "IPv4",
        })?;
        let prefix = parse_prefix(text, prefix, Self::MIN_PREFIX, Self::MAX_PREFIX)?;
        let bits = u32::from(address);
        let network = bits & mask_v4(prefix);
        if network != bits {
            return Err(SubnetError::HostBits {
                text: text.to_owned(),
                suggestion: format!("{}/{prefix}", Ipv4Addr::from(network)),
            });
        }
        let subnet = Ipv4Subnet { network, prefix };
        let reserved = |a: u8, prefix: u8| Ipv4Subnet {
            network: u32::from(Ipv4Addr::new(a, 0, 0, 0)),
            prefix,
        };
        let why = if subnet.overlaps(&reserved(0, 8)) {
            Some("it overlaps 0.0.0.0/8, which cannot be used")
        } else if subnet.overlaps(&reserved(127, 8)) {
            Some("it overlaps the loopback range 127.0.0.0/8")
        } else if subnet.overlaps(&reserved(224, 3)) {
            Some("it overlaps the multicast and reserved range 224.0.0.0/3")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(SubnetError::Reserved {
                text: text.to_owned(),
                why,
            });
        }
        Ok(subnet)
    }
}

impl fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl Serialize for Ipv4Subnet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Subnet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv6 network in CIDR form, prefix 8 to 126.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Subnet {
    network: u128,
    prefix: u8,
}

impl Ipv6Subnet {
    /// The shortest prefix accepted.
    pub const MIN_PREFIX: u8 = 8;
    /// The longest prefix accepted: a /126 holds the gateway and a few containers.
    pub const MAX_PREFIX: u8 = 126;

    /// The subnet of `network/prefix`, refusing host bits and prefixes outside 8..=126.
    pub fn new(network: Ipv6Addr, prefix: u8) -> Result<Self, SubnetError> {
        format!("{network}/{prefix}").parse()
    }

    /// The network address (all host bits clear).
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The gateway: the first address after the network address (`…::1`).
    pub fn gateway(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.network + 1)
    }

    /// The first address a container may get (the one after the gateway).
    pub fn first_container_address(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.network + 2)
    }

    /// The last address of the subnet (IPv6 has no broadcast, so containers may use it).
    pub fn last_address(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.network | !mask_v6(self.prefix))
    }

    /// Whether `address` lies in this subnet.
    pub fn contains(&self, address: Ipv6Addr) -> bool {
        u128::from(address) & mask_v6(self.prefix) == self.network
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Ipv6Subnet) -> bool {
        let mask = mask_v6(self.prefix.min(other.prefix));
        self.network & mask == other.network & mask
    }
}

impl FromStr for Ipv6Subnet {
    type Err = SubnetError;

    fn from_str(text: &str) -> Result<Self, SubnetError> {
        let (address, prefix) = split(text, "fd00:1::/64")?;
        let address: Ipv6Addr = address.parse().map_err(|_| SubnetError::Address {
            text: text.to_owned(),
            address: address.to_owned(),
            family: "IPv6",
        })?;
        let prefix = parse_prefix(text, prefix, Self::MIN_PREFIX, Self::MAX_PREFIX)?;
        let bits = u128::from(address);
        let network = bits & mask_v6(prefix);
        if network != bits {
            return Err(SubnetError::HostBits {
                text: text.to_owned(),
                suggestion: format!("{}/{prefix}", Ipv6Addr::from(network)),
            });
        }
        let first = Ipv6Addr::from(network);
        let why = if first.is_multicast() {
            Some("it is in the multicast range ff00::/8")
        } else if first.segments()[0] == 0 {
            Some(
                "it overlaps ::/16, which holds the loopback, unspecified and IPv4-mapped addresses",
            )
        } else {
            None
        };
        if let Some(why) = why {
            return Err(SubnetError::Reserved {
                text: text.to_owned(),
                why,
            });
        }
        Ok(Ipv6Subnet { network, prefix })
    }
}

impl fmt::Display for Ipv6Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl Serialize for Ipv6Subnet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv6Subnet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The first of 192.168.64.0/24, 192.168.65.0/24, … 192.168.127.0/24 that overlaps none of
/// `taken`, or `None` when all 64 are taken. This is where the default network and networks
/// created without `--subnet` get their range (as Apple's `container` does).
pub fn first_free_subnet(taken: &[Ipv4Subnet]) -> Option<Ipv4Subnet> {
    (64u8..=127)
        .map(|third| Ipv4Subnet {
            network: u32::from(Ipv4Addr::new(192, 168, third, 0)),
            prefix: 24,
        })
        .find(|candidate| taken.iter().all(|t| !t.overlaps(candidate)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(text: &str) -> Ipv4Subnet {
        text.parse().unwrap()
    }

    fn err4(text: &str) -> String {
        text.parse::<Ipv4Subnet>().unwrap_err().to_string()
    }

    #[test]
    fn parses_and_describes_a_slash_24() {
        let s = v4("192.168.64.0/24");
        assert_eq!(s.network(), Ipv4Addr::new(192, 168, 64, 0));
        assert_eq!(s.prefix(), 24);
        assert_eq!(s.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(s.gateway(), Ipv4Addr::new(192, 168, 64, 1));
        assert_eq!(s.first_container_address(), Ipv4Addr::new(192, 168, 64, 2));
        assert_eq!(s.last_container_address(), Ipv4Addr::new(192, 168, 64, 254));
        assert_eq!(s.broadcast(), Ipv4Addr::new(192, 168, 64, 255));
        assert_eq!(s.container_capacity(), 253);
        assert_eq!(s.to_string(), "192.168.64.0/24");
        assert!(s.contains(Ipv4Addr::new(192, 168, 64, 77)));
        assert!(!s.contains(Ipv4Addr::new(192, 168, 65, 1)));
    }

    #[test]
    fn slash_30_has_room_for_one_container() {
        let s = v4("10.0.0.4/30");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(s.first_container_address(), Ipv4Addr::new(10, 0, 0, 6));
        assert_eq!(s.last_container_address(), Ipv4Addr::new(10, 0, 0, 6));
        assert_eq!(s.container_capacity(), 1);
    }

    #[test]
    fn refuses_bad_text_with_one_line_naming_it() {
        assert_eq!(
            err4("192.168.64.1/24"),
            r#"invalid subnet "192.168.64.1/24": host bits are set (did you mean 192.168.64.0/24?)"#
        );
        assert_eq!(
            err4("10.0.0.0/31"),
            r#"invalid subnet "10.0.0.0/31": prefix "31" must be a number from 8 to 30"#
        );
        assert_eq!(
            err4("10.0.0.0"),
            r#"invalid subnet "10.0.0.0": expected ADDRESS/PREFIX such as 192.168.64.0/24"#
        );
        assert_eq!(
            err4("banana/24"),
            r#"invalid subnet "banana/24": "banana" is not an IPv4 address"#
        );
        assert_eq!(
            err4("10.0.0.0/+8"),
            r#"invalid subnet "10.0.0.0/+8": prefix "+8" must be a number from 8 to 30"#
        );
        assert!(err4("127.0.0.0/24").contains("loopback"));
        assert!(err4("224.0.0.0/24").contains("multicast"));
        assert!(err4("0.0.0.0/8").contains("0.0.0.0/8"));
        assert!(err4("64.0.0.0/2").contains("from 8 to 30"));
        assert!(err4("126.0.0.0/7").contains("from 8 to 30"));
        assert!(err4("240.0.0.0/8").contains("reserved"));
        assert!(err4("fd00::/64").contains("not an IPv4 address"));
        for bad in [
            "",
            "/",
            "/24",
            "10.0.0.0/",
            "10.0.0.0/24/1",
            "10.0.0.0/0240",
        ] {
            assert!(bad.parse::<Ipv4Subnet>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        let a = v4("10.1.0.0/16");
        let b = v4("10.1.200.0/24");
        let c = v4("10.2.0.0/24");
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
        assert!(a.overlaps(&a));
    }

    #[test]
    fn serde_is_the_string_form() {
        let s = v4("172.30.0.0/16");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""172.30.0.0/16""#);
        assert_eq!(
            serde_json::from_str::<Ipv4Subnet>(r#""172.30.0.0/16""#).unwrap(),
            s
        );
        let e = serde_json::from_str::<Ipv4Subnet>(r#""172.30.0.1/16""#).unwrap_err();
        assert!(e.to_string().contains("host bits are set"), "{e}");
        let s6: Ipv6Subnet = "fd00:1::/64".parse().unwrap();
        assert_eq!(serde_json::to_string(&s6).unwrap(), r#""fd00:1::/64""#);
        assert_eq!(
            serde_json::from_str::<Ipv6Subnet>(r#""fd00:1::/64""#).unwrap(),
            s6
        );
    }

    #[test]
    fn ipv6_subnets() {
        let s: Ipv6Subnet = "fd00:1::/64".parse().unwrap();
        assert_eq!(s.gateway(), "fd00:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            s.first_container_address(),
            "fd00:1::2".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            s.last_address(),
            "fd00:1::ffff:ffff:ffff:ffff".parse::<Ipv6Addr>().unwrap()
        );
        assert!(s.contains("fd00:1::abcd".parse().unwrap()));
        assert!(!s.contains("fd00:2::1".parse().unwrap()));
        let wide: Ipv6Subnet = "fd00::/16".parse().unwrap();
        assert!(wide.overlaps(&s) && s.overlaps(&wide));
        let e = "fd00:1::1/64"
            .parse::<Ipv6Subnet>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"invalid subnet "fd00:1::1/64": host bits are set (did you mean fd00:1::/64?)"#
        );
        assert!(
            "fd00::/127"
                .parse::<Ipv6Subnet>()
                .unwrap_err()
                .to_string()
                .contains("from 8 to 126")
        );
        assert!("::1/128".parse::<Ipv6Subnet>().is_err());
        assert!(
            "ff02::/16"
                .parse::<Ipv6Subnet>()
                .unwrap_err()
                .to_string()
                .contains("multicast")
        );
        assert!(
            "192.168.0.0/16"
                .parse::<Ipv6Subnet>()
                .unwrap_err()
                .to_string()
                .contains("not an IPv6 address")
        );
    }

    #[test]
    fn first_free_skips_what_is_taken() {
        assert_eq!(first_free_subnet(&[]), Some(v4("192.168.64.0/24")));
        assert_eq!(
            first_free_subnet(&[v4("192.168.64.0/24"), v4("10.0.0.0/8")]),
            Some(v4("192.168.65.0/24"))
        );
        // A wide network covering 192.168.64.0-192.168.71.255 pushes past all eight.
        assert_eq!(
            first_free_subnet(&[v4("192.168.64.0/21")]),
            Some(v4("192.168.72.0/24"))
        );
        assert_eq!(first_free_subnet(&[v4("192.168.64.0/18")]), None);
        assert_eq!(
            first_free_subnet(&[v4("192.168.0.0/16")]),
            None,
            "a /16 covers every candidate"
        );
    }

    proptest! {
        #[test]
        fn display_round_trips(addr in any::<u32>(), prefix in 8u8..=30) {
            let network = addr & mask_v4(prefix);
            if let Ok(s) = Ipv4Subnet::new(Ipv4Addr::from(network), prefix) {
                prop_assert_eq!(s.to_string().parse::<Ipv4Subnet>().unwrap(), s);
                prop_assert!(s.contains(s.gateway()));
                prop_assert!(s.contains(s.broadcast()));
                prop_assert!(s.first_container_address() <= s.last_container_address());
            }
        }

        #[test]
        fn overlap_matches_shared_addresses(a in any::<u32>(), pa in 20u8..=30, b in any::<u32>(), pb in 20u8..=30) {
            // Compare with a brute-force walk over the smaller subnet's addresses.
            let sa = Ipv4Subnet { network: a & mask_v4(pa), prefix: pa };
            let sb = Ipv4Subnet { network: (a & mask_v4(12)) | (b & !mask_v4(12)) & mask_v4(pb), prefix: pb };
            let (small, big) = if sa.prefix >= sb.prefix { (sa, sb) } else { (sb, sa) };
            let first = small.network;
            let last = u32::from(small.broadcast());
            let shared = (first..=last).any(|x| big.contains(Ipv4Addr::from(x)));
            prop_assert_eq!(sa.overlaps(&sb), shared);
            prop_assert_eq!(sb.overlaps(&sa), shared);
        }

        #[test]
        fn first_free_never_overlaps(taken in prop::collection::vec((64u8..=130, 16u8..=26), 0..8)) {
            let taken: Vec<Ipv4Subnet> = taken
                .into_iter()
                .map(|(third, prefix)| {
                    let addr = u32::from(Ipv4Addr::new(192, 168, third, 0));
                    Ipv4Subnet { network: addr & mask_v4(prefix), prefix }
                })
                .collect();
            if let Some(free) = first_free_subnet(&taken) {
                prop_assert!(taken.iter().all(|t| !t.overlaps(&free)));
            }
        }

        #[test]
        fn never_panics_on_garbage(text in ".{0,24}") {
            let _ = text.parse::<Ipv4Subnet>();
            let _ = text.parse::<Ipv6Subnet>();
        }
    }
}
