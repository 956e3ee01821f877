//! Containers and the `Containers` service, one module per concern:
//! - [`lifecycle`]: create, start, stop, kill, delete, wait, and the monitor of each runtime;
//! - [`stdio`]: attach and exec streams, resizes;
//! - [`logs`]: `logs` and `logs -f`;
//! - [`copy`]: `cp` in and out, `stat` of a path;
//! - [`export`]: a container's file system as a tar stream;
//! - [`health`]: the healthcheck probe loop of each running container;
//! - [`stats`]: resource usage;
//! - [`pause`]: pause and unpause (the guest's cgroup freezer);
//! - [`rename`]: a new name.
//!
//! This module holds the service itself (thin: it parses requests and calls the modules)
//! and the helpers they share. No module names another: they meet only in the daemon's
//! methods (`stdio` starts a container through [`lifecycle`]'s, `export` reads files through
//! [`copy`]'s copy source).

pub mod commit;
pub mod copy;
pub mod export;
pub mod health;
pub mod lifecycle;
pub mod logs;
pub mod networking;
pub mod pause;
pub mod rename;
pub mod stats;
pub mod stdio;

use std::sync::Arc;
use std::time::Duration;

use api::ApiError;
use api::v1;
use api::v1::containers_server::Containers;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::daemon::Daemon;
use crate::errors::one_line;
use crate::record::Phase;

/// How long a runtime may take to boot its VM and serve its socket.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one connection attempt to a runtime's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// gRPC metadata key of a failed Start: the container's exit code when its program could
/// not be run (126 cannot execute, 127 not found), so the CLI can exit with it.
pub const EXIT_CODE_METADATA: &str = "container-exit-code";
/// Chunk size of streamed files.
const CHUNK: usize = 256 << 10;

fn runtime_error(e: runtime_api::client::ClientError) -> ApiError {
    let code = e.code();
    let msg = one_line(&e.to_string());
    match code {
        Some(tonic::Code::NotFound) => ApiError::not_found(msg),
        Some(tonic::Code::InvalidArgument) => ApiError::invalid_argument(msg),
        Some(tonic::Code::FailedPrecondition) => ApiError::failed_precondition(msg),
        Some(tonic::Code::Internal) => ApiError::internal(msg),
        _ => ApiError::unavailable(msg),
    }
}

fn state_enum(phase: Phase) -> v1::ContainerState {
    match phase {
        Phase::Created => v1::ContainerState::Created,
        Phase::Running => v1::ContainerState::Running,
        Phase::Stopped => v1::ContainerState::Stopped,
    }
}

/// The Containers service.
#[derive(Debug, Clone)]
pub struct ContainersService(pub Arc<Daemon>);

type Res<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> Res<T> {
    Ok(Response::new(v))
}

fn boxed<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> BoxStream<T> {
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn create(
        &self,
        req: Request<v1::CreateContainerRequest>,
    ) -> Res<v1::CreateContainerResponse> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| ApiError::invalid_argument("no container configuration given"))?;
        let pull = req.pull.unwrap_or_default();
        let (id, warnings) = self.0.create_container(config, pull).await?;
        ok(v1::CreateContainerResponse { id, warnings })
    }

    async fn start(
        &self,
        req: Request<v1::StartContainerRequest>,
    ) -> Res<v1::StartContainerResponse> {
        let key = req.into_inner().id;
        let id = self.0.lookup(&key)?;
        self.0.update(&id, |r| r.restart_count = 0)?;
        if let Err(e) = self.0.start_container(&id).await {
            let mut status = Status::from(e);
            // The program could not run: say so as Docker's 126/127 beside the error.
            if let Some(code) = self
                .0
                .record(&id)
                .ok()
                .filter(|r| r.phase == Phase::Stopped)
                .and_then(|r| r.exit_code)
                .filter(|c| matches!(c, 126 | 127))
            {
                status
                    .metadata_mut()
                    .insert(EXIT_CODE_METADATA, code.into());
            }
            return Err(status);
        }
        ok(v1::StartContainerResponse {})
    }

    async fn stop(&self, req: Request<v1::StopContainerRequest>) -> Res<v1::StopContainerResponse> {
        let r = req.into_inner();
        let exit_code = self
            .0
            .stop_container(&r.id, r.signal, r.timeout_seconds)
            .await?;
        ok(v1::StopContainerResponse { exit_code })
    }

    async fn kill(&self, req: Request<v1::KillContainerRequest>) -> Res<v1::KillContainerResponse> {
        let r = req.into_inner();
        self.0.kill_container(&r.id, r.signal).await?;
        ok(v1::KillContainerResponse {})
    }

    async fn delete(
        &self,
        req: Request<v1::DeleteContainerRequest>,
    ) -> Res<v1::DeleteContainerResponse> {
        let r = req.into_inner();
        let id = self
            .0
            .delete_container(&r.id, r.force, r.remove_volumes)
            .await?;
        ok(v1::DeleteContainerResponse { id })
    }

    async fn list(
        &self,
        req: Request<v1::ListContainersRequest>,
    ) -> Res<v1::ListContainersResponse> {
        let req = req.into_inner();
        let filters = crate::list_filters::ContainerFilters::parse(&req.filters)
            .map_err(crate::list_filters::invalid)?;
        let all = req.all || filters.wants_stopped();
        let containers = self
            .0
            .records()
            .iter()
            .filter(|r| all || r.phase == Phase::Running)
            .map(|r| self.0.info(r))
            .filter(|c| filters.matches(c))
            .collect();
        ok(v1::ListContainersResponse { containers })
    }

    async fn inspect(
        &self,
        req: Request<v1::InspectContainerRequest>,
    ) -> Res<v1::InspectContainerResponse> {
        let id = self.0.lookup(&req.into_inner().id)?;
        let r = self.0.record(&id)?;
        ok(v1::InspectContainerResponse {
            container: Some(self.0.info(&r)),
        })
    }

    async fn logs(&self, req: Request<v1::LogsRequest>) -> Res<BoxStream<v1::LogChunk>> {
        logs::logs(&self.0, req).await
    }

    async fn attach(
        &self,
        req: Request<Streaming<v1::StdioRequest>>,
    ) -> Res<BoxStream<v1::StdioResponse>> {
        stdio::attach(&self.0, req).await
    }

    async fn exec(
        &self,
        req: Request<Streaming<v1::StdioRequest>>,
    ) -> Res<BoxStream<v1::StdioResponse>> {
        stdio::exec(&self.0, req).await
    }

    async fn resize(&self, req: Request<v1::ResizeRequest>) -> Res<v1::ResizeResponse> {
        stdio::resize(&self.0, req).await
    }

    async fn stats(&self, req: Request<v1::StatsRequest>) -> Res<BoxStream<v1::StatsResponse>> {
        stats::stats(&self.0, req).await
    }

    async fn commit(
        &self,
        req: Request<v1::CommitContainerRequest>,
    ) -> Res<v1::CommitContainerResponse> {
        commit::commit(&self.0, req).await
    }

    async fn diff(&self, req: Request<v1::DiffContainerRequest>) -> Res<v1::DiffContainerResponse> {
        commit::diff(&self.0, req).await
    }

    async fn export(
        &self,
        req: Request<v1::ExportContainerRequest>,
    ) -> Res<BoxStream<wire::v1::DataChunk>> {
        export::export(&self.0, req).await
    }

    async fn copy_in(&self, req: Request<Streaming<v1::CopyInRequest>>) -> Res<v1::CopyInResponse> {
        copy::copy_in(&self.0, req).await
    }

    async fn copy_out(
        &self,
        req: Request<v1::CopyOutRequest>,
    ) -> Res<BoxStream<v1::CopyOutResponse>> {
        copy::copy_out(&self.0, req).await
    }

    async fn stat_path(&self, req: Request<v1::StatPathRequest>) -> Res<v1::StatPathResponse> {
        copy::stat_path(&self.0, req).await
    }

    async fn disconnect_network(
        &self,
        req: Request<v1::DisconnectNetworkRequest>,
    ) -> Res<v1::DisconnectNetworkResponse> {
        networking::disconnect(&self.0, req).await
    }

    async fn prune(&self, _: Request<v1::PruneContainersRequest>) -> Res<v1::PruneResponse> {
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for r in self.0.records() {
            if r.phase == Phase::Running {
                continue;
            }
            let size = crate::fsutil::disk_usage(&self.0.dirs.dir(&r.id));
            if self.0.delete_container(&r.id, false, false).await.is_ok() {
                deleted.push(r.id);
                reclaimed += size;
            }
        }
        ok(v1::PruneResponse {
            deleted,
            reclaimed_bytes: reclaimed,
        })
    }

    async fn wait(&self, req: Request<v1::WaitContainerRequest>) -> Res<v1::WaitContainerResponse> {
        let r = req.into_inner();
        let condition =
            v1::WaitCondition::try_from(r.condition).unwrap_or(v1::WaitCondition::NotRunning);
        let exit_code = self.0.wait_container(&r.id, condition).await?;
        ok(v1::WaitContainerResponse { exit_code })
    }

    async fn rename(
        &self,
        req: Request<v1::RenameContainerRequest>,
    ) -> Res<v1::RenameContainerResponse> {
        let r = req.into_inner();
        self.0.rename_container(&r.id, &r.name)?;
        ok(v1::RenameContainerResponse {})
    }

    async fn pause(
        &self,
        req: Request<v1::PauseContainerRequest>,
    ) -> Res<v1::PauseContainerResponse> {
        self.0.set_paused(&req.into_inner().id, true).await?;
        ok(v1::PauseContainerResponse {})
    }

    async fn unpause(
        &self,
        req: Request<v1::UnpauseContainerRequest>,
    ) -> Res<v1::UnpauseContainerResponse> {
        self.0.set_paused(&req.into_inner().id, false).await?;
        ok(v1::UnpauseContainerResponse {})
    }
}
