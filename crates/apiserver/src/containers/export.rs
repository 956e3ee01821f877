//! `export`: a container's whole file system as one tar stream.

use std::sync::Arc;

use api::v1;
use tokio::sync::mpsc;
use tonic::Request;
use tonic::codegen::BoxStream;

use super::{Res, boxed, ok, runtime_error};
use crate::daemon::Daemon;

pub(super) async fn export(
    daemon: &Arc<Daemon>,
    req: Request<v1::ExportContainerRequest>,
) -> Res<BoxStream<v1::DataChunk>> {
    let id = daemon.lookup(&req.into_inner().id)?;
    let source = daemon.copy_source(&id).await?;
    let mut stream = source.client.export().await.map_err(runtime_error)?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        // A stopped container's maintenance VM lives as long as the stream.
        let _source = source;
        loop {
            match stream.message().await {
                Ok(Some(c)) => {
                    if tx.send(Ok(v1::DataChunk { data: c.data })).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(s) => {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            }
        }
    });
    ok(boxed(rx))
}
