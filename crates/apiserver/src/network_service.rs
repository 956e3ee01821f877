//! The `Networks` service: the API over the daemon's [`crate::networks::Networks`].

use std::sync::Arc;

use api::v1;

use crate::daemon::Daemon;
use crate::networks::DEFAULT_NETWORK;

/// The Networks service.
#[derive(Debug)]
pub struct NetworksService(pub Arc<Daemon>);

type Res<T> = Result<tonic::Response<T>, tonic::Status>;

#[tonic::async_trait]
impl v1::networks_server::Networks for NetworksService {
    async fn create(&self, req: tonic::Request<v1::NetworkCreateRequest>) -> Res<v1::Network> {
        let network = self.0.networks.create(req.into_inner()).await?;
        self.0.network_event("create", &network.name, &[]);
        Ok(tonic::Response::new(network))
    }

    async fn list(
        &self,
        _: tonic::Request<v1::NetworkListRequest>,
    ) -> Res<v1::NetworkListResponse> {
        // Endpoints carry the names the containers were started with (their DNS names).
        let networks = self.0.networks.list().await;
        Ok(tonic::Response::new(v1::NetworkListResponse { networks }))
    }

    async fn inspect(&self, req: tonic::Request<v1::NetworkInspectRequest>) -> Res<v1::Network> {
        Ok(tonic::Response::new(
            self.0.networks.inspect(&req.into_inner().name).await?,
        ))
    }

    async fn delete(
        &self,
        req: tonic::Request<v1::NetworkDeleteRequest>,
    ) -> Res<v1::NetworkDeleteResponse> {
        let req = req.into_inner();
        let names = if req.all {
            let mut all = self.0.networks.names().await;
            all.retain(|n| n != DEFAULT_NETWORK);
            all
        } else {
            req.names
        };
        let deleted = self
            .0
            .networks
            .delete(&names, |n| self.0.network_user(n))
            .await?;
        for name in &deleted {
            self.0.network_event("destroy", name, &[]);
        }
        Ok(tonic::Response::new(v1::NetworkDeleteResponse { deleted }))
    }

    async fn prune(
        &self,
        _: tonic::Request<v1::NetworkPruneRequest>,
    ) -> Res<v1::NetworkDeleteResponse> {
        let mut unused = self.0.networks.names().await;
        unused.retain(|n| n != DEFAULT_NETWORK && self.0.network_user(n).is_none());
        let deleted = self
            .0
            .networks
            .delete(&unused, |n| self.0.network_user(n))
            .await?;
        for name in &deleted {
            self.0.network_event("destroy", name, &[]);
        }
        Ok(tonic::Response::new(v1::NetworkDeleteResponse { deleted }))
    }

    async fn dns_domain_create(
        &self,
        req: tonic::Request<v1::DnsDomainRequest>,
    ) -> Res<v1::DnsDomainListResponse> {
        let domains = self
            .0
            .networks
            .domain_create(&req.into_inner().domain)
            .await?;
        Ok(tonic::Response::new(v1::DnsDomainListResponse { domains }))
    }

    async fn dns_domain_delete(
        &self,
        req: tonic::Request<v1::DnsDomainRequest>,
    ) -> Res<v1::DnsDomainListResponse> {
        let domains = self
            .0
            .networks
            .domain_delete(&req.into_inner().domain)
            .await?;
        Ok(tonic::Response::new(v1::DnsDomainListResponse { domains }))
    }

    async fn dns_domain_list(
        &self,
        _: tonic::Request<v1::DnsDomainListRequest>,
    ) -> Res<v1::DnsDomainListResponse> {
        Ok(tonic::Response::new(v1::DnsDomainListResponse {
            domains: self.0.networks.domains(),
        }))
    }
}
