//! `--network name[,mac=XX:XX:XX:XX:XX:XX][,mtu=N]` and `cp`'s `container:path` operands.

use std::fmt;
use std::str::FromStr;

/// Why a network attachment or a copy operand was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// A `--network` value is wrong.
    #[error("invalid network spec {spec:?}: {reason}")]
    Invalid {
        /// What the user typed.
        spec: String,
        /// What was wrong.
        reason: String,
    },
}

/// One `--network` attachment. The name `none` means no network at all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkSpec {
    /// The network's name.
    pub name: String,
    /// A fixed MAC address (must be locally administered), lower case.
    pub mac: Option<String>,
    /// The interface MTU.
    pub mtu: Option<u32>,
}

impl NetworkSpec {
    /// Whether this is `--network none`.
    pub fn is_none(&self) -> bool {
        self.name == "none"
    }
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

impl FromStr for NetworkSpec {
    type Err = NetworkError;

    fn from_str(spec: &str) -> Result<NetworkSpec, NetworkError> {
        let fail = |reason: String| NetworkError::Invalid {
            spec: spec.to_owned(),
            reason,
        };
        let mut fields = spec.split(',');
        let name = fields.next().unwrap_or_default();
        let mut chars = name.bytes();
        let name_ok = chars.next().is_some_and(|b| b.is_ascii_alphanumeric())
            && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !name_ok {
            return Err(fail(format!("{name:?} is not a network name")));
        }
        let (mut mac, mut mtu) = (None, None);
        for field in fields {
            match field.split_once('=') {
                Some(("mac", value)) => {
                    let bytes = parse_mac(value)
                        .ok_or_else(|| fail(format!("mac {value:?} is not a MAC address")))?;
                    if bytes[0] & 0x02 == 0 || bytes[0] & 0x01 != 0 {
                        return Err(fail(format!(
                            "mac {value} must be a locally administered unicast address (second hex digit 2, 6, a or e)"
                        )));
                    }
                    mac = Some(value.to_ascii_lowercase());
                }
                Some(("mtu", value)) => {
                    mtu = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|m| (576..=65535).contains(m))
                            .ok_or_else(|| {
                                fail(format!("mtu {value:?} is not a number from 576 to 65535"))
                            })?,
                    );
                }
                _ => {
                    return Err(fail(format!(
                        "unknown option {field:?} (expected mac= or mtu=)"
                    )));
                }
            }
        }
        if name == "none" && (mac.is_some() || mtu.is_some()) {
            return Err(fail("network none takes no options".to_owned()));
        }
        Ok(NetworkSpec {
            name: name.to_owned(),
            mac,
            mtu,
        })
    }
}

impl fmt::Display for NetworkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(mac) = &self.mac {
            write!(f, ",mac={mac}")?;
        }
        if let Some(mtu) = self.mtu {
            write!(f, ",mtu={mtu}")?;
        }
        Ok(())
    }
}

/// One operand of `container cp`: a host path, or a path in a container (`id:/path`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CopyOperand {
    /// A host path (`-` means a tar stream on stdin/stdout).
    Host(String),
    /// A path in a container.
    Container {
        /// The container's ID or name.
        container: String,
        /// The path inside it (relative paths are relative to `/`).
        path: String,
    },
}

impl CopyOperand {
    /// Reads a `cp` operand like `docker cp`: a `:` before any `/` names a container, and a
    /// path starting with `/` or `.` is always local.
    pub fn parse(text: &str) -> CopyOperand {
        if text.starts_with('/') || text.starts_with('.') {
            return CopyOperand::Host(text.to_owned());
        }
        match text.split_once(':') {
            Some((container, path)) if !container.is_empty() && !container.contains('/') => {
                CopyOperand::Container {
                    container: container.to_owned(),
                    path: path.to_owned(),
                }
            }
            _ => CopyOperand::Host(text.to_owned()),
        }
    }
}

impl fmt::Display for CopyOperand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyOperand::Host(p) => f.write_str(p),
            CopyOperand::Container { container, path } => write!(f, "{container}:{path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn network_specs() {
        let n: NetworkSpec = "backend,mac=02:42:AC:11:00:02,mtu=1400".parse().unwrap();
        assert_eq!(n.to_string(), "backend,mac=02:42:ac:11:00:02,mtu=1400");
        assert!("none".parse::<NetworkSpec>().unwrap().is_none());
        let e = |s: &str| s.parse::<NetworkSpec>().unwrap_err().to_string();
        assert_eq!(
            e("net,mac=00:42:ac:11:00:02"),
            r#"invalid network spec "net,mac=00:42:ac:11:00:02": mac 00:42:ac:11:00:02 must be a locally administered unicast address (second hex digit 2, 6, a or e)"#
        );
        assert_eq!(
            e("net,mtu=10"),
            r#"invalid network spec "net,mtu=10": mtu "10" is not a number from 576 to 65535"#
        );
        assert_eq!(
            e("net,vlan=3"),
            r#"invalid network spec "net,vlan=3": unknown option "vlan=3" (expected mac= or mtu=)"#
        );
        assert_eq!(
            e(""),
            r#"invalid network spec "": "" is not a network name"#
        );
    }

    #[test]
    fn copy_operands() {
        assert_eq!(
            CopyOperand::parse("web:/etc/hosts"),
            CopyOperand::Container {
                container: "web".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(
            CopyOperand::parse("./a:b"),
            CopyOperand::Host("./a:b".into())
        );
        assert_eq!(
            CopyOperand::parse("/tmp/x"),
            CopyOperand::Host("/tmp/x".into())
        );
        assert_eq!(
            CopyOperand::parse("dir/a:b"),
            CopyOperand::Host("dir/a:b".into())
        );
        assert_eq!(CopyOperand::parse("-"), CopyOperand::Host("-".into()));
    }

    proptest! {
        #[test]
        fn network_display_round_trips(name in "[a-z][a-z0-9-]{0,10}", mac in prop::option::of(any::<[u8; 5]>()), mtu in prop::option::of(576u32..=65535)) {
            prop_assume!(name != "none");
            let mac = mac.map(|b| format!("02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4]));
            let n = NetworkSpec { name, mac, mtu };
            prop_assert_eq!(n.to_string().parse::<NetworkSpec>().unwrap(), n);
        }

        #[test]
        fn copy_operand_round_trips(container in "[a-z][a-z0-9]{0,8}", path in "(/[a-z0-9]{1,5}){1,3}") {
            let op = CopyOperand::Container { container, path };
            prop_assert_eq!(CopyOperand::parse(&op.to_string()), op);
        }
    }
}
