//! The guest's network: published ports, NICs, addresses, routes, DNS and /etc files (hostname, hosts, resolv.conf).

use super::prepare::Steps;
use super::*;
use agent::v1::prepare_step::Step;

/// Binds the host side of every published port (bridge networking) and proxies it to the
/// container's first address; nothing is bound when one port cannot be.
pub(super) async fn publish_ports(
    config: &RuntimeConfig,
) -> Result<Option<net::proxy::PortProxies>, ContainerError> {
    if config.published_ports.is_empty() {
        return Ok(None);
    }
    let target = config
        .networks
        .first()
        .and_then(|n| n.address.as_deref())
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        .ok_or_else(|| {
            ContainerError::InvalidArgument(
                "ports are published but the container has no address".into(),
            )
        })?;
    let specs = config
        .published_ports
        .iter()
        .map(|p| p.parse::<spec::PortSpec>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ContainerError::InvalidArgument(e.to_string()))?;
    net::proxy::PortProxies::start(&specs, target, net::proxy::ProxyOptions::default())
        .await
        .map(Some)
        .map_err(|e| ContainerError::FailedPrecondition(one_line(&e.to_string())))
}

/// The IPv6 lines Docker puts in every /etc/hosts after the localhost lines.
pub(super) const DOCKER_IPV6_HOSTS: &[(&str, &str)] = &[
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
];

/// The steps that bring up each NIC (found by the MAC the host gave it), give it its
/// address, and the first one the default route.
pub(super) fn network_steps(steps: &mut Steps, config: &RuntimeConfig) {
    for (i, net) in config.networks.iter().enumerate() {
        let mac = net.mac.clone();
        steps.push(
            format!("bringing up the link with mac {mac}"),
            "LinkSet",
            Step::LinkSet(pb::LinkSetRequest {
                name: String::new(),
                mac: mac.clone(),
                up: true,
                mtu: net.mtu.unwrap_or(0),
                rename_to: String::new(),
                set_mac: String::new(),
            }),
        );
        if let Some(cidr) = &net.address {
            steps.push(
                format!("adding {cidr} to the link with mac {mac}"),
                "AddressAdd",
                Step::AddressAdd(pb::AddressAddRequest {
                    link: String::new(),
                    link_mac: mac.clone(),
                    cidr: cidr.clone(),
                }),
            );
        }
        if i == 0
            && let Some(gw) = &net.gateway
        {
            steps.push(
                format!("adding the default route via {gw}"),
                "RouteAdd",
                Step::RouteAdd(pb::RouteAddRequest {
                    link: String::new(),
                    link_mac: mac,
                    destination: String::new(),
                    gateway: gw.clone(),
                }),
            );
        }
    }
}

/// The steps that write the container's /etc/hostname, /etc/hosts and (unless DNS is off)
/// /etc/resolv.conf under the guest's etc/ directory.
pub(super) fn etc_steps(steps: &mut Steps, config: &RuntimeConfig, write_resolv: bool) {
    let etc = format!("{GUEST_DIR}/etc");
    steps.push(
        "writing /etc/hostname",
        "WriteFile",
        Step::WriteFile(pb::WriteFileRequest {
            path: format!("{etc}/hostname"),
            data: format!("{}\n", config.hostname).into_bytes(),
            mode: 0o644,
            append: false,
            create_parents: true,
        }),
    );
    let mut entries: Vec<pb::HostsEntry> = DOCKER_IPV6_HOSTS
        .iter()
        .map(|(ip, name)| pb::HostsEntry {
            ip: ip.to_string(),
            names: vec![name.to_string()],
        })
        .collect();
    if let Some(ip) = config
        .networks
        .first()
        .and_then(|n| n.address.as_deref())
        .and_then(|a| a.split('/').next())
    {
        entries.push(pb::HostsEntry {
            ip: ip.to_string(),
            names: vec![config.hostname.clone()],
        });
    }
    entries.extend(config.extra_hosts.iter().map(|h| pb::HostsEntry {
        ip: h.ip.clone(),
        names: h.names.clone(),
    }));
    steps.push(
        "writing /etc/hosts",
        "ConfigureHosts",
        Step::ConfigureHosts(pb::ConfigureHostsRequest {
            path: format!("{etc}/hosts"),
            entries,
        }),
    );
    if write_resolv {
        let mut nameservers = config.dns.nameservers.clone();
        if nameservers.is_empty()
            && let Some(gw) = config.networks.first().and_then(|n| n.gateway.clone())
        {
            nameservers.push(gw);
        }
        steps.push(
            "writing /etc/resolv.conf",
            "ConfigureDns",
            Step::ConfigureDns(pb::ConfigureDnsRequest {
                path: format!("{etc}/resolv.conf"),
                nameservers,
                search: config.dns.search.clone(),
                options: config.dns.options.clone(),
            }),
        );
    }
}

/// Brings up the NICs of `networks` (found by MAC), their addresses and the first one's
/// default route: a container's VM and the builder VM the same way.
pub(super) async fn configure_links(
    agent: &AgentClient,
    networks: &[runtime_api::config::NetworkAttachment],
) -> Result<(), ContainerError> {
    if networks.is_empty() {
        return Ok(());
    }
    let links = agent
        .list_links(pb::Empty {})
        .await
        .map_err(agent_err("listing the guest's links"))?;
    for (i, net) in networks.iter().enumerate() {
        let name = links
            .links
            .iter()
            .find(|l| l.mac.eq_ignore_ascii_case(&net.mac))
            .map(|l| l.name.clone())
            .ok_or_else(|| {
                ContainerError::FailedPrecondition(format!(
                    "the guest has no link with mac {}",
                    net.mac
                ))
            })?;
        agent
            .link_set(pb::LinkSetRequest {
                name: name.clone(),
                mac: String::new(),
                up: true,
                mtu: net.mtu.unwrap_or(0),
                rename_to: String::new(),
                set_mac: String::new(),
            })
            .await
            .map_err(agent_err(format!("bringing up {name}")))?;
        if let Some(cidr) = &net.address {
            agent
                .address_add(pb::AddressAddRequest {
                    link: name.clone(),
                    link_mac: String::new(),
                    cidr: cidr.clone(),
                })
                .await
                .map_err(agent_err(format!("adding {cidr} to {name}")))?;
        }
        if i == 0
            && let Some(gw) = &net.gateway
        {
            agent
                .route_add(pb::RouteAddRequest {
                    link: name.clone(),
                    link_mac: String::new(),
                    destination: String::new(),
                    gateway: gw.clone(),
                })
                .await
                .map_err(agent_err(format!("adding the default route via {gw}")))?;
        }
    }
    Ok(())
}
