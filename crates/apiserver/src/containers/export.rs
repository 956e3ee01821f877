//! `export`: a container's whole file system as one tar stream.

use std::sync::Arc;

use api::v1;
use tokio_stream::StreamExt;
use tonic::Request;
use tonic::codegen::BoxStream;
use wire::v1::DataChunk;

use super::{Res, ok, runtime_error};
use crate::daemon::Daemon;

pub(super) async fn export(
    daemon: &Arc<Daemon>,
    req: Request<v1::ExportContainerRequest>,
) -> Res<BoxStream<DataChunk>> {
    let id = daemon.lookup(&req.into_inner().id)?;
    let source = daemon.copy_source(&id).await?;
    let stream = source.client.export().await.map_err(runtime_error)?;
    // The runtime frames the archive as our API does: the chunks go on as they are. A stopped
    // container's maintenance VM lives as long as the stream, which holds it.
    let stream = stream.map(move |chunk| {
        let _holds = &source;
        chunk
    });
    ok(Box::pin(stream))
}
