//! `-p/--publish`: `[host-ip:][host-port[-end]]:container-port[-end][/tcp|udp]`.
//!
//! A spec publishes `count` consecutive container ports on as many consecutive host ports.
//! The host port may be left out (`-p 80`, `-p 127.0.0.1::80`): the daemon then picks free
//! host ports, as Docker does. An IPv6 host address is written in brackets (`[::1]:8080:80`).
//! `localhost` as the host address binds both loopback addresses, `127.0.0.1` and `::1`, so a
//! client that resolves `localhost` to either reaches the container (Apple's #1180).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The most port specs one container may carry (Apple's limit: each spec is a proxy in the
/// per-container runtime).
pub const MAX_PORT_SPECS: usize = 64;

/// Why a port spec, or a set of them, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The text is not a port spec; `reason` says which part is wrong.
    #[error("invalid port spec {spec:?}: {reason}")]
    Invalid {
        /// What the user typed.
        spec: String,
        /// Which part was wrong and why.
        reason: String,
    },
    /// More than [`MAX_PORT_SPECS`] specs.
    #[error("too many published ports: {count} given, at most {MAX_PORT_SPECS} allowed")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// Two specs claim the same host port.
    #[error("port specs {first:?} and {second:?} overlap on host port {port}/{protocol}")]
    Overlap {
        /// The earlier spec.
        first: String,
        /// The later spec.
        second: String,
        /// The first host port both claim.
        port: u16,
        /// The shared protocol.
        protocol: Protocol,
    },
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP, the default.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The lower-case name: `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host address a published port binds, as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostAddr {
    /// One address: `127.0.0.1`, `[::1]`, `0.0.0.0`, `192.168.1.5`.
    Ip(IpAddr),
    /// `localhost`: both loopback addresses, `127.0.0.1` and `::1`.
    Localhost,
}

impl HostAddr {
    /// The addresses to bind: one, or both loopback addresses for `localhost`.
    pub fn addresses(self) -> Vec<IpAddr> {
        match self {
            HostAddr::Ip(ip) => vec![ip],
            HostAddr::Localhost => vec![
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ],
        }
    }

    /// Whether binding both on one port can conflict: they share an address, or either is
    /// unspecified (`0.0.0.0`, `::`).
    fn clashes(self, other: HostAddr) -> bool {
        self.addresses().iter().any(|x| {
            other
                .addresses()
                .iter()
                .any(|y| x == y || x.is_unspecified() || y.is_unspecified())
        })
    }
}

impl From<IpAddr> for HostAddr {
    fn from(ip: IpAddr) -> HostAddr {
        HostAddr::Ip(ip)
    }
}

/// Writes `localhost` or the bare address (no brackets around IPv6: [`PortSpec`]'s `Display`
/// adds them where the syntax needs them).
impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostAddr::Ip(ip) => write!(f, "{ip}"),
            HostAddr::Localhost => f.write_str("localhost"),
        }
    }
}

/// Parses `localhost` (any case) or an IP address without brackets.
impl FromStr for HostAddr {
    type Err = std::net::AddrParseError;

    fn from_str(text: &str) -> Result<HostAddr, Self::Err> {
        if text.eq_ignore_ascii_case("localhost") {
            return Ok(HostAddr::Localhost);
        }
        text.parse().map(HostAddr::Ip)
    }
}

/// One `-p` spec: a range of container ports published on a range of host ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// The host address to bind; `None` binds every address (`0.0.0.0` and `::`).
    pub host_ip: Option<HostAddr>,
    /// The first host port; `None` lets the daemon pick free ports.
    pub host_port: Option<u16>,
    /// The first container port.
    pub container_port: u16,
    /// How many consecutive ports (1 for a single port). Never 0.
    pub count: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl PortSpec {
    /// The host port range `(first, last)`, when the host port was given.
    pub fn host_range(&self) -> Option<(u16, u16)> {
        self.host_port.map(|p| (p, p + (self.count - 1)))
    }

    /// The container port range `(first, last)`.
    pub fn container_range(&self) -> (u16, u16) {
        (self.container_port, self.container_port + (self.count - 1))
    }

    /// Whether both specs bind a common host port of the same protocol on addresses that
    /// can clash (equal, or either unspecified). Returns the first shared port.
    pub fn overlaps(&self, other: &PortSpec) -> Option<u16> {
        if self.protocol != other.protocol {
            return None;
        }
        let (a, b) = (self.host_range()?, other.host_range()?);
        let addresses_clash = match (self.host_ip, other.host_ip) {
            (None, _) | (_, None) => true,
            (Some(x), Some(y)) => x.clashes(y),
        };
        let first = a.0.max(b.0);
        (addresses_clash && first <= a.1.min(b.1)).then_some(first)
    }
}

fn invalid(spec: &str, reason: impl Into<String>) -> PortError {
    PortError::Invalid {
        spec: spec.to_owned(),
        reason: reason.into(),
    }
}

/// Parses `start[-end]`, naming the part (`host port`, `container port`) in errors.
fn parse_range(spec: &str, what: &str, text: &str) -> Result<(u16, u16), PortError> {
    let number = |t: &str| -> Result<u16, PortError> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(spec, format!("{what} {t:?} is not a number")));
        }
        match t.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
            _ => Err(invalid(
                spec,
                format!("{what} {t} is out of range (1-65535)"),
            )),
        }
    };
    match text.split_once('-') {
        None => {
            let p = number(text)?;
            Ok((p, p))
        }
        Some((start, end)) => {
            let (s, e) = (number(start)?, number(end)?);
            if e < s {
                return Err(invalid(
                    spec,
                    format!("{what} range {text} ends before it starts"),
                ));
            }
            Ok((s, e))
        }
    }
}

impl FromStr for PortSpec {
    type Err = PortError;

    fn from_str(spec: &str) -> Result<PortSpec, PortError> {
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some((_, other)) => {
                return Err(invalid(
                    spec,
                    format!("protocol {other:?} is not tcp or udp"),
                ));
            }
            None => (spec, Protocol::Tcp),
        };
        if rest.is_empty() {
            return Err(invalid(spec, "no container port"));
        }
        // A bracketed IPv6 host address may itself hold colons: take it off first.
        let bracketed = rest.starts_with('[');
        let (host_ip_text, ports) = if let Some(after) = rest.strip_prefix('[') {
            let (ip, tail) = after
                .split_once(']')
                .ok_or_else(|| invalid(spec, "host address has no closing bracket"))?;
            let tail = tail
                .strip_prefix(':')
                .ok_or_else(|| invalid(spec, "expected ':' after the host address"))?;
            (Some(ip), tail)
        } else {
            match rest.matches(':').count() {
                0 | 1 => (None, rest),
                2 => {
                    let (ip, tail) = rest.split_once(':').unwrap_or((rest, ""));
                    (Some(ip), tail)
                }
                _ => {
                    return Err(invalid(
                        spec,
                        "too many ':' (write an IPv6 host address in brackets)",
                    ));
                }
            }
        };
        let host_ip = match host_ip_text {
            None => None,
            // Brackets hold an address, never a name: `[localhost]` is refused.
            Some(text) if bracketed => {
                Some(HostAddr::Ip(text.parse::<IpAddr>().map_err(|_| {
                    invalid(spec, format!("host address [{text}] is not an IP address"))
                })?))
            }
            Some(text) => Some(text.parse::<HostAddr>().map_err(|_| {
                invalid(
                    spec,
                    format!("host address {text:?} is not an IP address or localhost"),
                )
            })?),
        };
        let (host, container) = match ports.split_once(':') {
            Some((host, container)) => (Some(host), container),
            None if host_ip.is_some() => return Err(invalid(spec, "no container port")),
            None => (None, ports),
        };
        let (c_start, c_end) = parse_range(spec, "container port", container)?;
        let count = c_end - c_start + 1;
        let host_port = match host {
            None | Some("") => None,
            Some(text) => {
                let (h_start, h_end) = parse_range(spec, "host port", text)?;
                if h_end - h_start + 1 != count {
                    return Err(invalid(
                        spec,
                        format!(
                            "host range {text} and container range {container} differ in length"
                        ),
                    ));
                }
                Some(h_start)
            }
        };
        Ok(PortSpec {
            host_ip,
            host_port,
            container_port: c_start,
            count,
            protocol,
        })
    }
}

fn write_range(f: &mut fmt::Formatter<'_>, start: u16, count: u16) -> fmt::Result {
    if count == 1 {
        write!(f, "{start}")
    } else {
        write!(f, "{start}-{}", start + (count - 1))
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(HostAddr::Ip(IpAddr::V6(ip))) => write!(f, "[{ip}]:")?,
            Some(host) => write!(f, "{host}:")?,
            None => {}
        }
        if let Some(host) = self.host_port {
            write_range(f, host, self.count)?;
            f.write_str(":")?;
        } else if self.host_ip.is_some() {
            // `ip::cport`: the empty host port keeps the address apart from the port.
            f.write_str(":")?;
        }
        write_range(f, self.container_port, self.count)?;
        if self.protocol != Protocol::Tcp {
            write!(f, "/{}", self.protocol)?;
        }
        Ok(())
    }
}

/// Parses every `-p` value and checks the set: at most [`MAX_PORT_SPECS`], no two claiming
/// the same host port and protocol on clashing addresses.
pub fn parse_ports<S: AsRef<str>>(specs: &[S]) -> Result<Vec<PortSpec>, PortError> {
    if specs.len() > MAX_PORT_SPECS {
        return Err(PortError::TooMany { count: specs.len() });
    }
    let parsed = specs
        .iter()
        .map(|s| s.as_ref().parse::<PortSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    for (i, a) in parsed.iter().enumerate() {
        for b in &parsed[i + 1..] {
            if let Some(port) = a.overlaps(b) {
                return Err(PortError::Overlap {
                    first: a.to_string(),
                    second: b.to_string(),
                    port,
                    protocol: a.protocol,
                });
            }
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn p(s: &str) -> PortSpec {
        s.parse().unwrap()
    }

    fn err(s: &str) -> String {
        s.parse::<PortSpec>().unwrap_err().to_string()
    }

    #[test]
    fn parses_the_common_forms() {
        assert_eq!(
            p("8080:80"),
            PortSpec {
                host_ip: None,
                host_port: Some(8080),
                container_port: 80,
                count: 1,
                protocol: Protocol::Tcp
            }
        );
        let s = p("127.0.0.1:8000-8002:9000-9002/udp");
        assert_eq!(s.host_ip, Some(HostAddr::Ip(Ipv4Addr::LOCALHOST.into())));
        assert_eq!(s.host_range(), Some((8000, 8002)));
        assert_eq!(s.container_range(), (9000, 9002));
        assert_eq!(s.protocol, Protocol::Udp);
        let s = p("[::1]:8080:80");
        assert_eq!(s.host_ip, Some(HostAddr::Ip(Ipv6Addr::LOCALHOST.into())));
        let s = p("localhost:8080:80");
        assert_eq!(s.host_ip, Some(HostAddr::Localhost));
        assert_eq!(s.to_string(), "localhost:8080:80");
        assert_eq!(p("LocalHost::53/udp").to_string(), "localhost::53/udp");
        assert_eq!(
            HostAddr::Localhost.addresses(),
            [
                IpAddr::from(Ipv4Addr::LOCALHOST),
                Ipv6Addr::LOCALHOST.into()
            ]
        );
        assert_eq!(p("80").host_port, None);
        let s = p("127.0.0.1::80");
        assert_eq!((s.host_port, s.container_port), (None, 80));
        assert_eq!(p(":80").host_port, None);
    }

    #[test]
    fn errors_name_the_wrong_part() {
        assert_eq!(
            err("80:x"),
            r#"invalid port spec "80:x": container port "x" is not a number"#
        );
        assert_eq!(
            err("x:80"),
            r#"invalid port spec "x:80": host port "x" is not a number"#
        );
        assert_eq!(
            err("80:80/sctp"),
            r#"invalid port spec "80:80/sctp": protocol "sctp" is not tcp or udp"#
        );
        assert_eq!(
            err("70000:80"),
            r#"invalid port spec "70000:80": host port 70000 is out of range (1-65535)"#
        );
        assert_eq!(
            err("0:80"),
            r#"invalid port spec "0:80": host port 0 is out of range (1-65535)"#
        );
        assert_eq!(
            err("8000-8001:80"),
            r#"invalid port spec "8000-8001:80": host range 8000-8001 and container range 80 differ in length"#
        );
        assert_eq!(
            err("90-80:90-80"),
            r#"invalid port spec "90-80:90-80": container port range 90-80 ends before it starts"#
        );
        assert_eq!(
            err("host:80:80"),
            r#"invalid port spec "host:80:80": host address "host" is not an IP address or localhost"#
        );
        assert_eq!(
            err("::1:80:80"),
            r#"invalid port spec "::1:80:80": too many ':' (write an IPv6 host address in brackets)"#
        );
        assert_eq!(
            err("[localhost]:80:80"),
            r#"invalid port spec "[localhost]:80:80": host address [localhost] is not an IP address"#
        );
        assert_eq!(err(""), r#"invalid port spec "": no container port"#);
        assert_eq!(
            err("1.2.3.4:80"),
            r#"invalid port spec "1.2.3.4:80": host port "1.2.3.4" is not a number"#
        );
    }

    #[test]
    fn overlapping_specs_are_refused() {
        let e = parse_ports(&["8000-8010:8000-8010", "8005:80"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"port specs "8000-8010:8000-8010" and "8005:80" overlap on host port 8005/tcp"#
        );
        // Another protocol, or two distinct addresses, do not clash.
        assert!(parse_ports(&["8000:80", "8000:80/udp"]).is_ok());
        assert!(parse_ports(&["127.0.0.1:8000:80", "127.0.0.2:8000:80"]).is_ok());
        assert!(parse_ports(&["0.0.0.0:8000:80", "127.0.0.2:8000:80"]).is_err());
        // `localhost` is both loopback addresses, so it clashes with either.
        assert!(parse_ports(&["localhost:8000:80", "[::1]:8000:80"]).is_err());
        assert!(parse_ports(&["127.0.0.1:8000:80", "localhost:8000:80"]).is_err());
        assert!(parse_ports(&["localhost:8000:80", "8000:80"]).is_err());
        assert!(parse_ports(&["localhost:8000:80", "127.0.0.2:8000:80"]).is_ok());
        // Random host ports never clash.
        assert!(parse_ports(&["80", "80"]).is_ok());
    }

    #[test]
    fn at_most_64_specs() {
        let specs: Vec<String> = (1..=65).map(|i| format!("{}:80", 10000 + i)).collect();
        assert!(parse_ports(&specs[..64]).is_ok());
        assert_eq!(
            parse_ports(&specs).unwrap_err().to_string(),
            "too many published ports: 65 given, at most 64 allowed"
        );
    }

    fn arb_spec() -> impl Strategy<Value = PortSpec> {
        let ip = prop_oneof![
            Just(None),
            Just(Some(HostAddr::Localhost)),
            any::<[u8; 4]>().prop_map(|b| Some(HostAddr::Ip(IpAddr::from(b)))),
            any::<[u16; 8]>().prop_map(|s| Some(HostAddr::Ip(IpAddr::from(s)))),
        ];
        (
            ip,
            1u16..1000,
            prop::option::of(1u16..60000),
            1u16..60000,
            prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)],
        )
            .prop_map(|(host_ip, count, host_port, container_port, protocol)| {
                let count = count.min(65535 - container_port + 1);
                let count = host_port.map_or(count, |h| count.min(65535 - h + 1));
                PortSpec {
                    host_ip,
                    host_port,
                    container_port,
                    count,
                    protocol,
                }
            })
    }

    proptest! {
        #[test]
        fn display_round_trips(spec in arb_spec()) {
            let text = spec.to_string();
            prop_assert_eq!(text.parse::<PortSpec>().unwrap(), spec);
        }

        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = text.parse::<PortSpec>();
        }
    }
}
