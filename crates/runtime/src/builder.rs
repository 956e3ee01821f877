//! `container-runtime --builder DIR`: one builder VM serving the RUN steps of builds.
//!
//! The runtime formats a sparse scratch disk, boots the VM of `<DIR>/builder.json` (the
//! build platform's kernel, a user-mode NIC, the host's cache-mount directory shared), and
//! serves the Builder API (`builder.proto`) on `<DIR>/builder.sock`. Every step of every
//! build it serves shares the VM: a boot costs seconds under TCG, a step's overlay
//! milliseconds. It powers the VM off and removes the scratch disk once its stdin closes
//! (the daemon holds that pipe, so a daemon that dies takes the builder with it) or on
//! SIGTERM.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::container::ContainerError;
use crate::container::builder::BuilderVm;
use crate::held::Release;
use crate::server::{BoxStream, to_status};
use runtime_api::builder::pb;
use runtime_api::builder::pb::builder_server::{Builder, BuilderServer};
use runtime_api::builder::{BUILDER_API_VERSION, BuilderConfig, BuilderDir};

/// Errors that end a builder runtime.
#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    #[error("{0}")]
    Config(#[from] runtime_api::builder::BuilderConfigError),
    #[error("{0}")]
    Container(#[from] ContainerError),
    #[error("serving {path}: {source}")]
    Serve {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

struct Service {
    vm: Arc<BuilderVm>,
}

#[tonic::async_trait]
impl Builder for Service {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            api_version: BUILDER_API_VERSION,
            runtime_pid: std::process::id(),
            cpus: self.vm.config.cpus,
            memory_bytes: self.vm.config.memory_bytes,
            layers: self.vm.layer_keys(),
            steps: self.vm.steps_run(),
        }))
    }

    async fn add_layer(
        &self,
        request: Request<Streaming<pb::AddLayerRequest>>,
    ) -> Result<Response<pb::Empty>, Status> {
        use pb::add_layer_request::Part;
        let mut input = request.into_inner();
        let Some(Part::Header(header)) = input.message().await?.and_then(|m| m.part) else {
            return Err(Status::invalid_argument(
                "the first add_layer message must be the header",
            ));
        };
        let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
        let feed = tokio::spawn(async move {
            while let Ok(Some(m)) = input.message().await {
                if let Some(Part::Data(d)) = m.part
                    && tx.send(d).await.is_err()
                {
                    break;
                }
            }
        });
        let added = self
            .vm
            .add_layer(&header.key, ReceiverStream::new(rx))
            .await
            .map_err(to_status);
        feed.abort();
        added?;
        Ok(Response::new(pb::Empty {}))
    }

    type RunStepStream = BoxStream<pb::RunStepEvent>;

    async fn run_step(
        &self,
        request: Request<pb::RunStepRequest>,
    ) -> Result<Response<Self::RunStepStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let vm = Arc::clone(&self.vm);
        let request = request.into_inner();
        tokio::spawn(async move {
            if let Err(e) = vm.run_step(request, tx.clone()).await {
                let _ = tx.send(Err(to_status(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type CaptureStepStream = BoxStream<wire::v1::DataChunk>;

    async fn capture_step(
        &self,
        request: Request<pb::CaptureStepRequest>,
    ) -> Result<Response<Self::CaptureStepStream>, Status> {
        let r = request.into_inner();
        let chunks = self
            .vm
            .capture(r.step_id, r.source_date_epoch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn keep_step(
        &self,
        request: Request<pb::KeepStepRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        self.vm.keep(r.step_id, &r.key).map_err(to_status)?;
        Ok(Response::new(pb::Empty {}))
    }
}

/// Boots the builder VM of `dir`, serves until stdin closes or SIGTERM, then powers the VM
/// off and removes the scratch disk.
pub async fn run(dir: BuilderDir) -> Result<(), BuilderError> {
    let config = BuilderConfig::load(&dir.config())?;
    let socket = dir.socket();
    let serve_err = |source| BuilderError::Serve {
        path: socket.display().to_string(),
        source,
    };
    let release = Release::listen().map_err(serve_err)?;
    let vm = Arc::new(BuilderVm::boot(&dir, config).await?);
    let router = tonic::transport::Server::builder().add_service(
        BuilderServer::new(Service {
            vm: Arc::clone(&vm),
        })
        .max_decoding_message_size(64 << 20),
    );
    let served = release.serve(&socket, router).await;
    vm.shutdown().await;
    let _ = std::fs::remove_file(dir.scratch());
    served.map_err(serve_err)
}
