//! The guest's network over rtnetlink: list links, set them up/down/MTU/name, add addresses
//! and routes; plus the per-link counters from /sys/class/net.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Errors of network configuration.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no link named {0:?}")]
    NoLink(String),
    #[error("invalid {what} {value:?}")]
    Invalid { what: &'static str, value: String },
    #[error("netlink {op}")]
    Netlink {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// One network link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
}

fn request(
    op: &'static str,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, NetError> {
    let nl_err = |source: io::Error| NetError::Netlink { op, source };
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(nl_err)?;
    sock.bind_auto().map_err(nl_err)?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(nl_err)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = 1;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    sock.send(&buf, 0).map_err(nl_err)?;
    let mut out = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full().map_err(nl_err)?;
        let mut off = 0;
        while off < data.len() {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                .map_err(|e| nl_err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
            let len = m.header.length as usize;
            if len == 0 {
                return Ok(out);
            }
            off += (len + 3) & !3;
            match m.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return match e.code {
                        Some(code) => Err(nl_err(io::Error::from_raw_os_error(-code.get()))),
                        None => Ok(out),
                    };
                }
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                _ => {}
            }
        }
        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
            return Ok(out);
        }
    }
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Every link of the guest.
pub fn list_links() -> Result<Vec<Link>, NetError> {
    let msgs = request(
        "dump links",
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
    )?;
    let mut links = Vec::new();
    for m in msgs {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
        let mut link = Link {
            index: l.header.index,
            name: String::new(),
            mac: String::new(),
            mtu: 0,
            up: l.header.flags.contains(LinkFlags::Up),
        };
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Address(mac) if mac.iter().any(|b| *b != 0) => {
                    link.mac = format_mac(mac)
                }
                _ => {}
            }
        }
        links.push(link);
    }
    Ok(links)
}

fn find_link(name: &str, mac: &str) -> Result<Link, NetError> {
    let links = list_links()?;
    let mac = mac.to_ascii_lowercase();
    links
        .into_iter()
        .find(|l| {
            if name.is_empty() {
                !mac.is_empty() && l.mac == mac
            } else {
                l.name == name
            }
        })
        .ok_or_else(|| {
            NetError::NoLink(if name.is_empty() {
                mac
            } else {
                name.to_string()
            })
        })
}

fn set_link(
    index: u32,
    up: Option<bool>,
    mtu: u32,
    rename: &str,
    mac: Option<[u8; 6]>,
) -> Result<(), NetError> {
    let mut msg = LinkMessage::default();
    if let Some(mac) = mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    msg.header.index = index;
    if let Some(up) = up {
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
    }
    if mtu != 0 {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if !rename.is_empty() {
        msg.attributes
            .push(LinkAttribute::IfName(rename.to_string()));
    }
    request("set link", RouteNetlinkMessage::SetLink(msg), NLM_F_ACK).map(|_| ())
}

/// Parses "02:42:ac:11:00:02".
pub fn parse_mac(text: &str) -> Result<[u8; 6], NetError> {
    let bad = || NetError::Invalid {
        what: "mac address",
        value: text.to_string(),
    };
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// Sets a link's state, MTU, name and MAC. The link is found by name, or by MAC when name is
/// empty.
pub fn link_set(
    name: &str,
    mac: &str,
    up: bool,
    mtu: u32,
    rename_to: &str,
    set_mac: &str,
) -> Result<(), NetError> {
    let new_mac = if set_mac.is_empty() {
        None
    } else {
        Some(parse_mac(set_mac)?)
    };
    if !rename_to.is_empty() && (rename_to.len() > 15 || rename_to.contains(['/', ' ', ':'])) {
        return Err(NetError::Invalid {
            what: "link name",
            value: rename_to.to_string(),
        });
    }
    let link = find_link(name, mac)?;
    if !rename_to.is_empty() && rename_to != link.name {
        // The kernel refuses to rename a link that is up.
        set_link(link.index, Some(false), 0, "", None)?;
        set_link(link.index, None, 0, rename_to, None)?;
    }
    if new_mac.is_some() {
        // A down link takes a new address whatever its driver supports live.
        set_link(link.index, Some(false), 0, "", new_mac)?;
    }
    set_link(link.index, Some(up), mtu, "", None)
}

/// Parses "addr/prefix".
pub fn parse_cidr(cidr: &str) -> Result<(IpAddr, u8), NetError> {
    let bad = || NetError::Invalid {
        what: "cidr",
        value: cidr.to_string(),
    };
    let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok((ip, len))
}

fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Adds an address to a link.
pub fn address_add(link: &str, link_mac: &str, cidr: &str) -> Result<(), NetError> {
    let (ip, len) = parse_cidr(cidr)?;
    let l = find_link(link, link_mac)?;
    let mut msg = AddressMessage::default();
    msg.header.family = family(&ip);
    msg.header.prefix_len = len;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = l.index;
    if ip.is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(ip));
    }
    msg.attributes.push(AddressAttribute::Address(ip));
    request(
        "add address",
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(|_| ())
}

/// Adds a route on a link; an empty destination is the default route.
pub fn route_add(
    link: &str,
    link_mac: &str,
    destination: &str,
    gateway: &str,
) -> Result<(), NetError> {
    let l = find_link(link, link_mac)?;
    let dest = if destination.is_empty() {
        None
    } else {
        Some(parse_cidr(destination)?)
    };
    let gw: Option<IpAddr> = if gateway.is_empty() {
        None
    } else {
        Some(gateway.parse().map_err(|_| NetError::Invalid {
            what: "gateway",
            value: gateway.to_string(),
        })?)
    };
    let fam_ip = dest.map(|d| d.0).or(gw).ok_or_else(|| NetError::Invalid {
        what: "route",
        value: "neither destination nor gateway".into(),
    })?;
    if let (Some((d, _)), Some(g)) = (dest, gw)
        && d.is_ipv4() != g.is_ipv4()
    {
        return Err(NetError::Invalid {
            what: "gateway family",
            value: gateway.to_string(),
        });
    }
    let mut msg = RouteMessage::default();
    msg.header.address_family = family(&fam_ip);
    msg.header.destination_prefix_length = dest.map(|d| d.1).unwrap_or(0);
    msg.header.table = libc::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = if gw.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    msg.header.kind = RouteType::Unicast;
    if let Some((d, _)) = dest {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(d)));
    }
    if let Some(g) = gw {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(g)));
    }
    msg.attributes.push(RouteAttribute::Oif(l.index));
    request(
        "add route",
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(|_| ())
}

/// Counters of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub link: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// Counters of every link but lo, from `sys_class_net` (normally /sys/class/net).
pub fn counters(sys_class_net: &std::path::Path) -> Vec<LinkCounters> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys_class_net) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name == "lo" {
            continue;
        }
        let read = |f: &str| -> u64 {
            std::fs::read_to_string(e.path().join("statistics").join(f))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        out.push(LinkCounters {
            rx_bytes: read("rx_bytes"),
            tx_bytes: read("tx_bytes"),
            rx_packets: read("rx_packets"),
            tx_packets: read("tx_packets"),
            link: name,
        });
    }
    out.sort_by(|a, b| a.link.cmp(&b.link));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("192.168.64.2/24").unwrap(),
            ("192.168.64.2".parse().unwrap(), 24)
        );
        assert_eq!(parse_cidr("fd00::2/64").unwrap().1, 64);
        for bad in [
            "192.168.64.2",
            "1.2.3.4/33",
            "fd00::1/129",
            "x/8",
            "1.2.3.4/",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_format() {
        assert_eq!(
            format_mac(&[0x52, 0x54, 0, 0x12, 0x34, 0xab]),
            "52:54:00:12:34:ab"
        );
    }

    #[test]
    fn loopback_is_listed_by_netlink() {
        let links = list_links().unwrap();
        let lo = links
            .iter()
            .find(|l| l.name == "lo")
            .expect("lo exists in every network namespace");
        assert_eq!(lo.mac, "");
        assert!(lo.mtu > 0);
        assert!(matches!(
            find_link("no-such-link0", ""),
            Err(NetError::NoLink(_))
        ));
    }

    #[test]
    fn counters_from_sysfs_layout() {
        let d = tempfile::tempdir().unwrap();
        for (name, rx) in [("eth0", "100"), ("lo", "5")] {
            let s = d.path().join(name).join("statistics");
            std::fs::create_dir_all(&s).unwrap();
            std::fs::write(s.join("rx_bytes"), rx).unwrap();
            std::fs::write(s.join("tx_packets"), "3\n").unwrap();
        }
        let c = counters(d.path());
        assert_eq!(
            c,
            vec![LinkCounters {
                link: "eth0".into(),
                rx_bytes: 100,
                tx_packets: 3,
                ..Default::default()
            }]
        );
    }
}
