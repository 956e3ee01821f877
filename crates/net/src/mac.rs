//! MAC addresses of container NICs: parsed from `--mac-address` / `--network NAME,mac=…`, or
//! derived from the container and network so a container keeps its MAC across restarts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why a MAC address's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {text:?}: expected six hex pairs such as 02:42:ac:11:00:02")]
pub struct MacError {
    text: String,
}

/// A 48-bit Ethernet address. Shown in lower case, colon form (`02:42:ac:11:00:02`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// A locally administered unicast address derived from `seed` (for example the container
    /// id followed by the network name): the same seed always gives the same address, and
    /// different seeds practically never collide on one network (46 bits of SHA-256).
    pub fn derived(seed: &[u8]) -> MacAddress {
        let digest = Sha256::digest(seed);
        let mut bytes = [0u8; 6];
        bytes.copy_from_slice(&digest[..6]);
        // Locally administered (bit 1 set), unicast (bit 0 clear).
        bytes[0] = (bytes[0] | 0b10) & !0b01;
        MacAddress(bytes)
    }

    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether the address is locally administered (bit 1 of the first octet), as every
    /// address we hand out must be so it cannot clash with a vendor's.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0b10 != 0
    }

    /// Whether the address is unicast (bit 0 of the first octet clear).
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0b01 == 0
    }
}

impl FromStr for MacAddress {
    type Err = MacError;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case.
    fn from_str(text: &str) -> Result<Self, MacError> {
        let fail = || MacError {
            text: text.to_owned(),
        };
        let separator = if text.contains('-') { '-' } else { ':' };
        let mut bytes = [0u8; 6];
        let mut parts = text.split(separator);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(fail)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fail());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| fail())?;
        }
        if parts.next().is_some() {
            return Err(fail());
        }
        Ok(MacAddress(bytes))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_lower_case_colon_form() {
        let mac: MacAddress = "02:42:AC:11:00:02".parse().unwrap();
        assert_eq!(mac.octets(), [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
        assert_eq!(
            "02-42-ac-11-00-02".parse::<MacAddress>().unwrap(),
            MacAddress([0x02, 0x42, 0xac, 0x11, 0x00, 0x02])
        );
        assert!(mac.is_locally_administered() && mac.is_unicast());
        let vendor: MacAddress = "00:1a:2b:3c:4d:5e".parse().unwrap();
        assert!(!vendor.is_locally_administered());
        let multicast: MacAddress = "03:00:00:00:00:01".parse().unwrap();
        assert!(!multicast.is_unicast());
    }

    #[test]
    fn refuses_garbage_naming_it() {
        assert_eq!(
            "02:42:ac:11:00"
                .parse::<MacAddress>()
                .unwrap_err()
                .to_string(),
            r#"invalid MAC address "02:42:ac:11:00": expected six hex pairs such as 02:42:ac:11:00:02"#
        );
        for bad in [
            "",
            "02:42:ac:11:00:02:03",
            "2:42:ac:11:00:02",
            "02:42:ac:11:00:0g",
            "02:42-ac:11:00:02",
            "0242ac110002",
            "02:42:ac:11:00:+2",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_is_the_string_form() {
        let mac = MacAddress([0x0e, 0, 0, 0, 0, 0xff]);
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, r#""0e:00:00:00:00:ff""#);
        assert_eq!(serde_json::from_str::<MacAddress>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<MacAddress>(r#""nope""#).is_err());
    }

    #[test]
    fn derived_is_deterministic_and_differs_by_seed() {
        let a = MacAddress::derived(b"0123abcd/default");
        // Pinned (the first six bytes of the seed's SHA-256, a2:6f:fd:4d:c3:f5, with the
        // local bit set and the multicast bit clear): state written today must mean the same
        // address tomorrow.
        assert_eq!(a.to_string(), "a2:6f:fd:4d:c3:f5");
        assert_eq!(MacAddress::derived(b"x").octets()[0] & 0b11, 0b10);
        assert_eq!(a, MacAddress::derived(b"0123abcd/default"));
        assert_ne!(a, MacAddress::derived(b"0123abcd/backend"));
        assert_ne!(a, MacAddress::derived(b"0123abce/default"));
        // 1000 seeds: all distinct (a collision among 1000 in 2^46 would be a broken hash).
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000u32 {
            assert!(seen.insert(MacAddress::derived(format!("c{i}/net").as_bytes())));
        }
    }

    proptest! {
        #[test]
        fn derived_is_local_unicast(seed in prop::collection::vec(any::<u8>(), 0..64)) {
            let mac = MacAddress::derived(&seed);
            prop_assert!(mac.is_locally_administered());
            prop_assert!(mac.is_unicast());
        }

        #[test]
        fn display_round_trips(bytes in any::<[u8; 6]>()) {
            let mac = MacAddress(bytes);
            prop_assert_eq!(mac.to_string().parse::<MacAddress>().unwrap(), mac);
            prop_assert_eq!(mac.to_string().to_uppercase().parse::<MacAddress>().unwrap(), mac);
        }
    }
}
