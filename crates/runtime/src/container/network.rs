//! The guest's network: published ports; the NICs and /etc files of a container and of the
//! builder VM go into their batched set-up (prepare.rs).

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
