//! `container-runtime --bundle DIR --maintenance [--writable]`: a stopped container's files,
//! served read-only for `export`, `diff` and `cp` out of it, or writable for `cp` into it.
//!
//! The VM boots with the image's rootfs and the container's writable layer only (no network,
//! no volumes, no process) and joins them read-only, or with `--writable` as a running
//! container has them (changes go into the writable layer). The runtime serves CopyOut,
//! CaptureLayer, CopyIn when writable (into the layer only: a path under a volume or bind
//! mount, which are not attached, is refused), and State, which clients check first, on
//! `<bundle>/maint.sock`, never writes state.json (the
//! container stays stopped in every record), and powers the VM off once its stdin closes:
//! the daemon holds that pipe for as long as it reads, so a daemon that dies takes the
//! maintenance VM with it.

use tonic::{Request, Response, Status, Streaming};

use crate::container::{ContainerError, GUEST_ROOTFS, MaintenanceVm};
use crate::held::Release;
use crate::server::{BoxStream, copy_in_destination, relay_copy_in, relay_copy_out, to_status};
use runtime_api::bundle::Bundle;
use runtime_api::config::RuntimeConfig;
use runtime_api::pb;
use runtime_api::pb::runtime_server::{Runtime, RuntimeServer};

/// Errors that end a maintenance runtime.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The VM could not be booted or prepared.
    #[error("{0}")]
    Container(#[from] ContainerError),
    /// The socket could not be served.
    #[error("serving {path}: {source}")]
    Serve {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

struct Service {
    config: RuntimeConfig,
    vm: std::sync::Arc<MaintenanceVm>,
    /// The root is mounted writable: copies in are accepted.
    writable: bool,
}

fn stopped() -> Status {
    Status::failed_precondition("the container is stopped: only copying out is possible")
}

#[tonic::async_trait]
impl Runtime for Service {
    async fn state(
        &self,
        _: Request<pb::StateRequest>,
    ) -> Result<Response<pb::StateResponse>, Status> {
        Ok(Response::new(pb::StateResponse {
            api_version: runtime_api::RUNTIME_API_VERSION,
            id: self.config.id.clone(),
            status: pb::Status::Stopped.into(),
            runtime_pid: std::process::id(),
            ..Default::default()
        }))
    }

    async fn start(
        &self,
        _: Request<pb::StartRequest>,
    ) -> Result<Response<pb::StartResponse>, Status> {
        Err(stopped())
    }

    type AttachStream = BoxStream<wire::v1::StdioOutput>;

    async fn attach(
        &self,
        _: Request<Streaming<wire::v1::StdioInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        Err(stopped())
    }

    type ExecStream = BoxStream<pb::ExecResponse>;

    async fn exec(
        &self,
        _: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Err(stopped())
    }

    async fn kill(&self, _: Request<pb::KillRequest>) -> Result<Response<pb::Empty>, Status> {
        Err(stopped())
    }

    async fn resize(&self, _: Request<pb::ResizeRequest>) -> Result<Response<pb::Empty>, Status> {
        Err(stopped())
    }

    async fn freeze(&self, _: Request<pb::FreezeRequest>) -> Result<Response<pb::Empty>, Status> {
        Err(stopped())
    }

    async fn wait(
        &self,
        _: Request<pb::WaitRequest>,
    ) -> Result<Response<pb::WaitResponse>, Status> {
        Err(stopped())
    }

    async fn stop(
        &self,
        _: Request<pb::StopRequest>,
    ) -> Result<Response<pb::StopResponse>, Status> {
        Err(stopped())
    }

    async fn stats(
        &self,
        _: Request<pb::StatsRequest>,
    ) -> Result<Response<wire::v1::ContainerStats>, Status> {
        Err(stopped())
    }

    type CopyOutStream = BoxStream<wire::v1::DataChunk>;

    type CaptureLayerStream = BoxStream<wire::v1::DataChunk>;

    async fn capture_layer(
        &self,
        request: Request<pb::CaptureLayerRequest>,
    ) -> Result<Response<Self::CaptureLayerStream>, Status> {
        crate::server::relay_capture_layer(&self.vm.agent, request.into_inner()).await
    }

    async fn copy_out(
        &self,
        request: Request<pb::CopyOutRequest>,
    ) -> Result<Response<Self::CopyOutStream>, Status> {
        let r = request.into_inner();
        let path = if r.export {
            "/".to_string()
        } else {
            let trimmed = crate::container::check_container_path(&r.path).map_err(to_status)?;
            if trimmed.is_empty() { "/" } else { trimmed }.to_string()
        };
        relay_copy_out(
            &self.vm.agent,
            agent::v1::CopyOutRequest {
                path,
                root: GUEST_ROOTFS.into(),
                export: r.export,
            },
        )
        .await
    }

    async fn copy_in(
        &self,
        request: Request<Streaming<pb::CopyInRequest>>,
    ) -> Result<Response<pb::Empty>, Status> {
        if !self.writable {
            return Err(stopped());
        }
        let mut input = request.into_inner();
        let dest = copy_in_destination(&mut input).await?;
        let (root, destination) =
            crate::container::stopped_write_dir(&self.config, &dest).map_err(to_status)?;
        relay_copy_in(&self.vm.agent, root, destination, input).await
    }
}

/// Boots the maintenance VM for `bundle` (its root `writable` or read-only), serves until
/// stdin closes or SIGTERM, then powers the VM off.
pub async fn run(bundle: Bundle, writable: bool) -> Result<(), MaintenanceError> {
    let config = RuntimeConfig::load(&bundle.maintenance_config()).map_err(ContainerError::from)?;
    let socket = bundle.maintenance_socket();
    let serve_err = |source| MaintenanceError::Serve {
        path: socket.display().to_string(),
        source,
    };
    let release = Release::listen().map_err(serve_err)?;
    let vm = std::sync::Arc::new(MaintenanceVm::boot(&bundle, &config, writable).await?);
    let router = tonic::transport::Server::builder().add_service(RuntimeServer::new(Service {
        config,
        vm: std::sync::Arc::clone(&vm),
        writable,
    }));
    let served = release.serve(&socket, router).await;
    vm.shutdown().await;
    served.map_err(serve_err)
}
