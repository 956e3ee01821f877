//! The guest's network: published ports and NICs (the builder VM's links); the container's NICs and /etc files go into its batched set-up (prepare.rs).

use super::*;

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
