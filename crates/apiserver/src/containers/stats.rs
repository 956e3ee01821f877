//! `stats`: resource usage samples from each running container's runtime.

use std::sync::Arc;
use std::time::Duration;

use api::ApiError;
use api::v1;
use tokio::sync::mpsc;
use tonic::Request;
use tonic::codegen::BoxStream;

use super::{Res, boxed, ok};
use crate::daemon::Daemon;
use crate::record::Phase;

pub(super) async fn stats(
    daemon: &Arc<Daemon>,
    req: Request<v1::StatsRequest>,
) -> Res<BoxStream<v1::StatsResponse>> {
    let r = req.into_inner();
    let ids: Vec<String> = if r.ids.is_empty() {
        daemon
            .records()
            .into_iter()
            .filter(|c| c.phase == Phase::Running)
            .map(|c| c.id)
            .collect()
    } else {
        r.ids
            .iter()
            .map(|k| daemon.lookup(k))
            .collect::<Result<_, _>>()?
    };
    for id in &ids {
        let rec = daemon.record(id)?;
        if rec.phase != Phase::Running {
            return Err(ApiError::failed_precondition(format!(
                "container {} is not running",
                rec.name
            ))
            .into());
        }
    }
    let daemon = Arc::clone(daemon);
    let interval = Duration::from_millis(if r.interval_ms == 0 {
        2000
    } else {
        u64::from(r.interval_ms)
    });
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let mut stats = Vec::new();
            for id in &ids {
                let Ok(client) = daemon.connect(id).await else {
                    continue;
                };
                match client.stats().await {
                    Ok(usage) => stats.push(v1::ContainerStats {
                        id: id.clone(),
                        timestamp_ms: crate::fsutil::now_ms(),
                        usage: Some(usage),
                    }),
                    Err(e) => tracing::debug!(%id, "stats: {e}"),
                }
            }
            if tx.send(Ok(v1::StatsResponse { stats })).await.is_err() || !r.stream {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = tx.closed() => return,
            }
        }
    });
    ok(boxed(rx))
}
