//! What `--add-host` and `--expose` take: an /etc/hosts entry `NAME:IP` (or `NAME=IP`, whose
//! IP may be `host-gateway`), and an exposed port or range `PORT[-END][/tcp|udp]`.

use std::net::IpAddr;

use crate::port::Protocol;

/// The word that stands for the address the container reaches the host at.
pub const HOST_GATEWAY: &str = "host-gateway";

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostsError {
    /// `--add-host` without a separator, name or address.
    #[error("invalid extra host {0:?}: expected NAME:IP (IP may be host-gateway)")]
    Malformed(String),
    /// The address is neither an IP address nor `host-gateway`.
    #[error("invalid extra host {text:?}: {ip:?} is not an IP address or host-gateway")]
    BadAddress {
        /// The entry.
        text: String,
        /// Its address part.
        ip: String,
    },
    /// `--hostname` that is not an RFC 1123 host name.
    #[error(
        "invalid hostname {0:?}: dot-separated labels of letters, digits and '-' (at most 63 each, 253 in all)"
    )]
    BadHostname(String),
    /// `--expose` that is not a port or range.
    #[error("invalid exposed port {0:?}: expected PORT[-END][/tcp|udp] with ports 1-65535")]
    BadPort(String),
}

/// The address of an extra host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIp {
    /// A literal address.
    Ip(IpAddr),
    /// The host as the container reaches it (`host-gateway`), resolved by the daemon.
    HostGateway,
}

/// One `--add-host` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    /// The host name.
    pub name: String,
    /// Its address.
    pub ip: HostIp,
}

impl std::str::FromStr for ExtraHost {
    type Err = HostsError;

    /// `NAME:IP` splits at the first colon (names hold none; IPv6 addresses do), `NAME=IP`
    /// at the first equals sign, as Docker's. An IPv6 address may be in brackets.
    fn from_str(text: &str) -> Result<ExtraHost, HostsError> {
        let bad = || HostsError::Malformed(text.to_owned());
        let (name, ip) = text
            .split_once('=')
            .filter(|(n, _)| !n.contains(':'))
            .or_else(|| text.split_once(':'))
            .ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad());
        }
        let ip_text = ip.trim();
        let ip = if ip_text == HOST_GATEWAY {
            HostIp::HostGateway
        } else {
            let bare = ip_text
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .unwrap_or(ip_text);
            HostIp::Ip(bare.parse().map_err(|_| HostsError::BadAddress {
                text: text.to_owned(),
                ip: ip_text.to_owned(),
            })?)
        };
        Ok(ExtraHost {
            name: name.to_owned(),
            ip,
        })
    }
}

/// Checks a `--hostname`: RFC 1123 labels, as the kernel's uts name and /etc/hosts take them.
pub fn validate_hostname(name: &str) -> Result<(), HostsError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(HostsError::BadHostname(name.to_owned()));
    }
    Ok(())
}

/// Parses `--expose PORT[-END][/tcp|udp]` into its ports and protocol.
pub fn parse_expose(text: &str) -> Result<(u16, u16, Protocol), HostsError> {
    let bad = || HostsError::BadPort(text.to_owned());
    let (ports, proto) = match text.rsplit_once('/') {
        Some((p, "tcp")) => (p, Protocol::Tcp),
        Some((p, "udp")) => (p, Protocol::Udp),
        Some(_) => return Err(bad()),
        None => (text, Protocol::Tcp),
    };
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if last < first {
        return Err(bad());
    }
    Ok((first, last, proto))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn extra_hosts_as_docker_takes_them() {
        let h: ExtraHost = "db:10.0.0.5".parse().unwrap();
        assert_eq!(h.name, "db");
        assert_eq!(h.ip, HostIp::Ip("10.0.0.5".parse().unwrap()));
        let h: ExtraHost = "v6:::1".parse().unwrap();
        assert_eq!(h.ip, HostIp::Ip("::1".parse().unwrap()));
        let h: ExtraHost = "v6=[fe80::1]".parse().unwrap();
        assert_eq!(h.ip, HostIp::Ip("fe80::1".parse().unwrap()));
        let h: ExtraHost = "host.docker.internal:host-gateway".parse().unwrap();
        assert_eq!(h.ip, HostIp::HostGateway);
        for bad in ["db", ":1.2.3.4", "db:", "db:nope", "a b:1.2.3.4"] {
            assert!(bad.parse::<ExtraHost>().is_err(), "{bad}");
        }
        assert_eq!(
            "db:nope".parse::<ExtraHost>().unwrap_err().to_string(),
            "invalid extra host \"db:nope\": \"nope\" is not an IP address or host-gateway"
        );
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        for ok in ["web", "a-1.example.test", "X9"] {
            assert!(validate_hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "under_score", &"x".repeat(64)] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exposed_ports_and_ranges() {
        assert_eq!(parse_expose("80").unwrap(), (80, 80, Protocol::Tcp));
        assert_eq!(parse_expose("53/udp").unwrap(), (53, 53, Protocol::Udp));
        assert_eq!(
            parse_expose("8000-8002/tcp").unwrap(),
            (8000, 8002, Protocol::Tcp)
        );
        for bad in ["0", "80/sctp", "9-8", "x", "70000", ""] {
            assert!(parse_expose(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_ipv4_entry_round_trips(name in "[a-z][a-z0-9.-]{0,20}", ip: std::net::Ipv4Addr) {
            let h: ExtraHost = format!("{name}:{ip}").parse().unwrap();
            prop_assert_eq!(h.name, name);
            prop_assert_eq!(h.ip, HostIp::Ip(ip.into()));
        }
    }
}
