//! A container's networks after create: detaching a container that is not running from one
//! of them (Docker's `network disconnect`).
//!
//! A running container's VM got its network devices at boot and the guest holds their
//! addresses; taking one away would need NIC hot-unplug through the VMM, which the QEMU
//! microvm and VZ backends do not offer. So only a container that is not running changes its
//! networks: its record says which to join at the next start.

use std::sync::Arc;

use api::ApiError;
use api::v1;
use tonic::Request;

use super::{Res, ok};
use crate::daemon::Daemon;
use crate::options::NetworkOption;
use crate::record::Phase;

/// The networks a container's options name, `default` when they name none.
fn joined(networks: &[NetworkOption]) -> Vec<String> {
    if networks.is_empty() {
        vec!["default".to_owned()]
    } else {
        networks.iter().map(|n| n.name.clone()).collect()
    }
}

pub(super) async fn disconnect(
    daemon: &Arc<Daemon>,
    req: Request<v1::DisconnectNetworkRequest>,
) -> Res<v1::DisconnectNetworkResponse> {
    let r = req.into_inner();
    let id = daemon.lookup(&r.id)?;
    let lock = daemon.op_lock(&id)?;
    let _held = lock.lock().await;
    let record = daemon.record(&id)?;
    if record.phase == Phase::Running {
        return Err(ApiError::failed_precondition(format!(
            "container {} is running: its VM keeps its network devices until it stops; stop it, disconnect it, then start it",
            record.name
        ))
        .into());
    }
    let current = joined(&record.options.networks);
    if r.network == "none" || !current.contains(&r.network) {
        return Err(ApiError::failed_precondition(format!(
            "container {} is not connected to network {}",
            record.name, r.network
        ))
        .into());
    }
    let mut keep: Vec<NetworkOption> = if record.options.networks.is_empty() {
        Vec::new()
    } else {
        record
            .options
            .networks
            .iter()
            .filter(|n| n.name != r.network)
            .cloned()
            .collect()
    };
    if keep.is_empty() {
        keep.push(NetworkOption {
            name: "none".into(),
            mac_address: String::new(),
            mtu: 0,
        });
    }
    let names = joined(&keep);
    daemon.update(&id, |rec| rec.options.networks = keep)?;
    daemon.network_event("disconnect", &r.network, &[("container", &id)]);
    tracing::info!(%id, network = %r.network, "container disconnected from network");
    ok(v1::DisconnectNetworkResponse { networks: names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_networks_means_the_default_one() {
        assert_eq!(joined(&[]), ["default"]);
        let n = |name: &str| NetworkOption {
            name: name.into(),
            mac_address: String::new(),
            mtu: 0,
        };
        assert_eq!(joined(&[n("a"), n("b")]), ["a", "b"]);
    }
}
