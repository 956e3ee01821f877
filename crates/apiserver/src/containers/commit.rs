//! `commit` and `diff`: a container's changes, captured by its runtime from the overlay upper
//! (the guest's layer tar), checked by `oci::capture` before anything is stored or shown.
//!
//! A stopped container is read through a maintenance VM (the same route as `export`), so
//! both work whatever the container's state. `commit` freezes a running container's
//! processes (the cgroup freezer `pause` uses) while the layer streams and thaws them after,
//! whatever happened, as Docker's `commit --pause` does; with `no_pause` (or an already
//! paused container) it leaves them as they are, and a file written while the layer streams
//! is captured whole or not at all per file, as the guest archives each file from one open
//! descriptor.

use crate::chan_reader::ChanReader;
use std::sync::Arc;

use api::ApiError;
use api::v1;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::Request;

use super::{Res, ok, runtime_error};
use crate::daemon::Daemon;
use crate::errors::oci_error;
use crate::record::Phase;
use oci::capture::{CaptureLimits, CapturedLayer, changes, image_paths, ingest_layer};

/// Captures the container's changes and runs `f` on them (blocking) with the checked layer,
/// stored in the content store when `store` is set.
async fn capture<T: Send + 'static>(
    daemon: &Arc<Daemon>,
    id: &str,
    store: bool,
    f: impl FnOnce(&oci::Store, CapturedLayer) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let source = daemon.copy_source(id).await?;
    let mut stream = source
        .client
        .capture_layer(None)
        .await
        .map_err(runtime_error)?;
    let (tx, rx) = mpsc::channel(4);
    let oci_store = daemon.store.clone();
    let work = tokio::task::spawn_blocking(move || {
        // Held until the image names the new blobs, so GC cannot take them.
        let _lease = oci_store.lease().map_err(|e| oci_error(e.kind(), &e))?;
        let reader = ChanReader::new(rx);
        let content = store.then(|| oci_store.content());
        let layer = ingest_layer(content, reader, CaptureLimits::default())
            .map_err(|e| oci_error(e.kind(), spec::error_chain(&e)))?;
        f(&oci_store, layer)
    });
    while let Some(chunk) = stream.next().await {
        let msg = chunk
            .map(|c| c.data)
            .map_err(|s| format!("capturing the layer: {}", s.message()));
        let failed = msg.is_err();
        if tx.send(msg).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    drop(source);
    work.await
        .map_err(|e| ApiError::internal(format!("capture worker failed: {e}")))?
}

/// The image (manifest and raw config) a container was created from.
fn base_image(
    store: &oci::Store,
    manifest_digest: &str,
) -> Result<(oci::ImageManifest, Value), ApiError> {
    let digest: oci::Digest = manifest_digest
        .parse()
        .map_err(|_| ApiError::internal(format!("bad image digest {manifest_digest:?}")))?;
    let err = |e: oci::StoreError| oci_error(e.kind(), &e);
    let bytes = store.content().read(&digest).map_err(err)?;
    let oci::Manifest::Image(m) =
        oci::manifest::parse_manifest(&bytes, None).map_err(|e| oci_error(e.kind(), &e))?
    else {
        return Err(ApiError::internal("the container's image is an index"));
    };
    let config = store.content().read(&m.config.digest).map_err(err)?;
    let config: Value = serde_json::from_slice(&config)
        .map_err(|e| ApiError::internal(format!("reading the image config: {e}")))?;
    Ok((m, config))
}

pub(super) async fn diff(
    daemon: &Arc<Daemon>,
    req: Request<v1::DiffContainerRequest>,
) -> Res<v1::DiffContainerResponse> {
    let id = daemon.lookup(&req.into_inner().id)?;
    let record = daemon.record(&id)?;
    let listed = capture(daemon, &id, false, move |store, layer| {
        let (m, _) = base_image(store, &record.image_digest)?;
        let layers = m
            .layers
            .iter()
            .map(|d| oci::open_layer(store.content(), d))
            .collect::<Vec<_>>();
        let lower = image_paths(layers).map_err(|e| oci_error(e.kind(), &e))?;
        Ok(changes(&layer.entries, |p| lower.contains(p)))
    })
    .await?;
    ok(v1::DiffContainerResponse {
        changes: listed
            .into_iter()
            .map(|(k, path)| v1::ContainerChange {
                kind: k.letter().to_string(),
                path,
            })
            .collect(),
    })
}

pub(super) async fn commit(
    daemon: &Arc<Daemon>,
    req: Request<v1::CommitContainerRequest>,
) -> Res<v1::CommitContainerResponse> {
    let r = req.into_inner();
    let id = daemon.lookup(&r.id)?;
    let record = daemon.record(&id)?;
    let name = if r.reference.is_empty() {
        None
    } else {
        Some(oci::ImageRef::parse(&r.reference).map_err(|e| {
            ApiError::invalid_argument(format!("invalid reference {:?}: {e}", r.reference))
        })?)
    };
    // Bad changes are refused before the VM work.
    let edits = crate::commit_config::parse_changes(&r.changes)?;
    let options = record
        .options()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let frozen = if !r.no_pause && record.phase == Phase::Running && !record.paused {
        let client = daemon.connect(&id).await?;
        client.freeze(true).await.map_err(runtime_error)?;
        // The events Docker's commit logs around its pause.
        daemon.container_event(&record, "pause", &[]);
        tracing::info!(%id, "frozen for commit");
        Some((client, record.clone()))
    } else {
        None
    };
    let captured = capture(daemon, &id, true, move |store, layer| {
        let (base, mut config) = base_image(store, &record.image_digest)?;
        let now = spec::format_time(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0),
            false,
        );
        crate::commit_config::apply_container(&mut config, &options);
        crate::commit_config::apply_changes(&mut config, &edits)?;
        let created_by = record.args.join(" ");
        crate::commit_config::finish(
            &mut config,
            &layer.diff_id.to_string(),
            &now,
            &created_by,
            &r.author,
            &r.message,
        );
        let err = |e: oci::StoreError| oci_error(e.kind(), &e);
        let (blob, size) = layer
            .blob
            .clone()
            .ok_or_else(|| ApiError::internal("the layer was not stored"))?;
        let docker = base.media_type == oci::media_type::DOCKER_MANIFEST;
        let (manifest_type, config_type, layer_type) = if docker {
            (
                oci::media_type::DOCKER_MANIFEST,
                oci::media_type::DOCKER_CONFIG,
                oci::media_type::DOCKER_LAYER_GZIP,
            )
        } else {
            (
                oci::media_type::OCI_MANIFEST,
                oci::media_type::OCI_CONFIG,
                oci::media_type::OCI_LAYER_GZIP,
            )
        };
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| ApiError::internal(format!("writing the image config: {e}")))?;
        let config_desc = oci::Descriptor::of(config_type, &config_bytes);
        store
            .content()
            .write_blob(&config_bytes, Some(&config_desc.digest))
            .map_err(err)?;
        let mut layers: Vec<Value> = base
            .layers
            .iter()
            .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
            .collect();
        layers.push(json!({
            "mediaType": layer_type,
            "digest": blob.to_string(),
            "size": size,
        }));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config_desc,
            "layers": layers,
        });
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ApiError::internal(format!("writing the manifest: {e}")))?;
        let manifest_desc = oci::Descriptor::of(manifest_type, &manifest_bytes);
        store
            .content()
            .write_blob(&manifest_bytes, Some(&manifest_desc.digest))
            .map_err(err)?;
        match &name {
            Some(n) => store.put_image(n, &manifest_desc).map_err(err)?,
            None => store.put_untagged(&manifest_desc).map_err(err)?,
        }
        Ok((
            config_desc.digest.to_string(),
            manifest_desc.digest.to_string(),
        ))
    })
    .await;
    if let Some((client, record)) = frozen {
        // Thawed whatever the capture did; a failed thaw is the commit's error.
        client.freeze(false).await.map_err(|e| {
            tracing::warn!(%id, "thawing after commit failed: {e}");
            runtime_error(e)
        })?;
        daemon.container_event(&record, "unpause", &[]);
    }
    let (image_id, manifest_digest) = captured?;
    ok(v1::CommitContainerResponse {
        image_id,
        manifest_digest,
    })
}
