//! `/volumes/...`: create, list, inspect, delete and prune over the daemon's volumes (each
//! an ext4 file system attached to the VMs that mount it; Docker's `local` driver).

use std::collections::HashMap;

use api::v1;
use api::v1::volumes_client::VolumesClient;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use super::Ctx;
use super::error::{DResult, DockerError};
use super::filters::Filters;
use super::ids::time_of_ms;
use super::stream::{Params, json, json_body, no_content};

async fn client(ctx: &Ctx) -> DResult<VolumesClient<tonic::transport::Channel>> {
    Ok(VolumesClient::new(ctx.client().await?.channel()))
}

fn labels(v: &v1::VolumeInfo) -> HashMap<String, String> {
    v.labels
        .iter()
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect()
}

fn to_docker(v: &v1::VolumeInfo) -> serde_json::Value {
    let options: HashMap<String, String> = v
        .options
        .iter()
        .map(|o| {
            let (k, val) = o.split_once('=').unwrap_or((o.as_str(), ""));
            (k.to_owned(), val.to_owned())
        })
        .collect();
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": v.source,
        "CreatedAt": time_of_ms(v.created_ms),
        "Labels": labels(v),
        "Scope": "local",
        "Options": options,
        "UsageData": { "Size": v.disk_usage_bytes, "RefCount": v.containers.len() },
    })
}

fn volume_error(name: &str, s: tonic::Status) -> DockerError {
    if s.code() == tonic::Code::NotFound {
        DockerError::not_found(format!("get {name}: no such volume"))
    } else {
        s.into()
    }
}

/// `GET /volumes`.
pub async fn list(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    // The daemon filters (crate::list_filters), as for `container volume ls`.
    let filters = crate::list_filters::pairs(&Filters::parse(q.get("filters"))?.0);
    let vols = client(&ctx)
        .await?
        .list(v1::ListVolumesRequest { filters })
        .await?
        .into_inner()
        .volumes;
    let out: Vec<serde_json::Value> = vols.iter().map(to_docker).collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "Volumes": out, "Warnings": [] }),
    ))
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(ctx): State<Ctx>, Path(name): Path<String>) -> DResult<Response> {
    let v = client(&ctx)
        .await?
        .inspect(v1::InspectVolumeRequest { name: name.clone() })
        .await
        .map_err(|s| volume_error(&name, s))?
        .into_inner()
        .volume
        .unwrap_or_default();
    Ok(json(StatusCode::OK, &to_docker(&v)))
}

/// `POST /volumes/create`: an existing volume of that name is answered as Docker does.
pub async fn create(State(ctx): State<Ctx>, body: Bytes) -> DResult<Response> {
    let req: serde_json::Value = json_body(&body)?;
    if let Some(d) = req["Driver"]
        .as_str()
        .filter(|d| !d.is_empty() && *d != "local")
    {
        return Err(DockerError::unsupported_field(
            "Driver",
            &format!("volume driver {d} (only local)"),
        ));
    }
    let mut size_bytes = 0;
    if let Some(opts) = req["DriverOpts"].as_object() {
        for (k, v) in opts {
            let v = v.as_str().unwrap_or_default();
            match k.as_str() {
                "size" => {
                    size_bytes = v
                        .parse::<spec::ByteSize>()
                        .map_err(|e| DockerError::bad_request(format!("DriverOpts.size: {e}")))?
                        .bytes();
                }
                other => {
                    return Err(DockerError::unsupported_field(
                        &format!("DriverOpts.{other}"),
                        "only size",
                    ));
                }
            }
        }
    }
    let mut labels: Vec<v1::Label> = req["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| v1::Label {
                    key: k.clone(),
                    value: v.as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    labels.sort_by(|a, b| a.key.cmp(&b.key));
    let name = req["Name"].as_str().unwrap_or_default().to_owned();
    let mut c = client(&ctx).await?;
    if !name.is_empty()
        && let Ok(existing) = c
            .inspect(v1::InspectVolumeRequest { name: name.clone() })
            .await
    {
        let v = existing.into_inner().volume.unwrap_or_default();
        return Ok(json(StatusCode::CREATED, &to_docker(&v)));
    }
    let v = c
        .create(v1::CreateVolumeRequest {
            name,
            size_bytes,
            labels,
            options: vec![],
        })
        .await?
        .into_inner()
        .volume
        .unwrap_or_default();
    Ok(json(StatusCode::CREATED, &to_docker(&v)))
}

/// `DELETE /volumes/{name}`.
pub async fn delete(State(ctx): State<Ctx>, Path(name): Path<String>) -> DResult<Response> {
    client(&ctx)
        .await?
        .delete(v1::DeleteVolumeRequest { name: name.clone() })
        .await
        .map_err(|s| volume_error(&name, s))?;
    Ok(no_content())
}

/// `POST /volumes/prune`.
pub async fn prune(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    Filters::parse(q.get("filters"))?.only(&["all"])?;
    let r = client(&ctx)
        .await?
        .prune(v1::PruneVolumesRequest {})
        .await?
        .into_inner();
    Ok(json(
        StatusCode::OK,
        &json!({ "VolumesDeleted": r.deleted, "SpaceReclaimed": r.reclaimed_bytes }),
    ))
}
