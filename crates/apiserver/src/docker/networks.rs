//! `/networks/...`: create, list, inspect, delete, prune over the daemon's networks.
//! Docker's network IDs are derived from the name (a SHA-256), so every name has one stable
//! ID and both resolve. Our `default` network is shown under Docker's name `bridge`.

use std::collections::HashMap;

use api::v1;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use bollard_stubs::models as m;
use serde_json::json;

use super::Ctx;
use super::error::{DResult, DockerError};
use super::filters::Filters;
use super::ids::{network_id, time_of_ms};
use super::stream::{Params, json, json_body, no_content};

/// The name Docker clients see.
fn shown_name(name: &str) -> &str {
    if name == "default" { "bridge" } else { name }
}

fn to_docker(n: &v1::Network) -> serde_json::Value {
    let containers: HashMap<String, serde_json::Value> = n
        .endpoints
        .iter()
        .map(|e| {
            (
                e.container_id.clone(),
                json!({
                    "Name": e.hostname,
                    "EndpointID": "",
                    "MacAddress": e.mac_address,
                    "IPv4Address": e.ipv4_address,
                    "IPv6Address": "",
                }),
            )
        })
        .collect();
    let mut ipam = vec![];
    if !n.subnet.is_empty() {
        ipam.push(json!({ "Subnet": n.subnet, "Gateway": n.gateway }));
    }
    if !n.subnet_v6.is_empty() {
        ipam.push(json!({ "Subnet": n.subnet_v6 }));
    }
    json!({
        "Name": shown_name(&n.name),
        "Id": network_id(&n.name),
        "Created": time_of_ms(n.created_ms),
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv4": true,
        "EnableIPv6": !n.subnet_v6.is_empty(),
        "IPAM": { "Driver": "default", "Options": {}, "Config": ipam },
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": {},
        "Labels": n.labels,
    })
}

async fn all(ctx: &Ctx) -> DResult<Vec<v1::Network>> {
    Ok(ctx
        .client()
        .await?
        .networks()
        .list(v1::NetworkListRequest {})
        .await?
        .into_inner()
        .networks)
}

/// The network a client names: by name (`bridge` is our `default`), full ID or ID prefix.
async fn resolve(ctx: &Ctx, key: &str) -> DResult<v1::Network> {
    let nets = all(ctx).await?;
    let want = if key == "bridge" { "default" } else { key };
    if let Some(n) = nets.iter().find(|n| n.name == want) {
        return Ok(n.clone());
    }
    let by_id: Vec<&v1::Network> = nets
        .iter()
        .filter(|n| !key.is_empty() && network_id(&n.name).starts_with(key))
        .collect();
    match by_id.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(DockerError::not_found(format!("network {key} not found"))),
        _ => Err(DockerError::bad_request(format!(
            "network {key} is ambiguous ({} matches found based on ID prefix)",
            by_id.len()
        ))),
    }
}

/// `GET /networks`.
pub async fn list(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let f = Filters::parse(q.get("filters"))?;
    f.only(&["name", "id", "label", "driver", "type", "scope", "dangling"])?;
    let out: Vec<serde_json::Value> = all(&ctx)
        .await?
        .iter()
        .filter(|n| {
            f.any("name", |x| shown_name(&n.name).contains(x))
                && f.any("id", |x| network_id(&n.name).starts_with(x))
                && f.labels_match(&n.labels)
                && f.any("driver", |d| d == "bridge")
                && f.any("scope", |s| s == "local")
                && f.any("type", |t| {
                    t == if n.builtin { "builtin" } else { "custom" }
                })
        })
        .map(to_docker)
        .collect();
    Ok(json(StatusCode::OK, &out))
}

/// `GET /networks/{id}`.
pub async fn inspect(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let n = resolve(&ctx, &id).await?;
    Ok(json(StatusCode::OK, &to_docker(&n)))
}

/// `POST /networks/create`.
pub async fn create(State(ctx): State<Ctx>, body: Bytes) -> DResult<Response> {
    let req: m::NetworkCreateRequest = json_body(&body)?;
    if req.name.is_empty() {
        return Err(DockerError::bad_request("network Name is required"));
    }
    if let Some(d) = req
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "bridge")
    {
        return Err(DockerError::unsupported_field(
            "Driver",
            &format!("network driver {d} (only bridge)"),
        ));
    }
    // `Attachable` only matters for swarm's overlay networks: any container can join a
    // local bridge network, so Docker accepts it there and so do we (compose v1 sets it on
    // every project network).
    if req.ingress == Some(true) || req.config_only == Some(true) {
        return Err(DockerError::unsupported_field(
            "Ingress/ConfigOnly",
            "swarm networks do not exist here",
        ));
    }
    if req.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(DockerError::unsupported_field("Options", "driver options"));
    }
    let configs = req
        .ipam
        .as_ref()
        .and_then(|i| i.config.clone())
        .unwrap_or_default();
    let mut subnet = String::new();
    let mut subnet_v6 = String::new();
    for c in &configs {
        if c.ip_range.as_deref().is_some_and(|r| !r.is_empty())
            || c.auxiliary_addresses
                .as_ref()
                .is_some_and(|a| !a.is_empty())
        {
            return Err(DockerError::unsupported_field(
                "IPAM.Config.IPRange/AuxiliaryAddresses",
                "only Subnet",
            ));
        }
        let s = c.subnet.clone().unwrap_or_default();
        if s.contains(':') {
            subnet_v6 = s;
        } else {
            subnet = s;
        }
    }
    let net = ctx
        .client()
        .await?
        .networks()
        .create(v1::NetworkCreateRequest {
            name: req.name.clone(),
            subnet,
            subnet_v6,
            internal: req.internal.unwrap_or(false),
            labels: req.labels.clone().unwrap_or_default(),
        })
        .await
        .map_err(DockerError::from)?
        .into_inner();
    Ok(json(
        StatusCode::CREATED,
        &json!({ "Id": network_id(&net.name), "Warning": "" }),
    ))
}

/// `DELETE /networks/{id}`.
pub async fn delete(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let n = resolve(&ctx, &id).await?;
    if n.builtin {
        return Err(DockerError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is a pre-defined network and cannot be removed",
                shown_name(&n.name)
            ),
        ));
    }
    ctx.client()
        .await?
        .networks()
        .delete(v1::NetworkDeleteRequest {
            names: vec![n.name.clone()],
            all: false,
        })
        .await?;
    Ok(no_content())
}

/// `POST /networks/prune`.
pub async fn prune(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    Filters::parse(q.get("filters"))?.only(&[])?;
    let r = ctx
        .client()
        .await?
        .networks()
        .prune(v1::NetworkPruneRequest {})
        .await?
        .into_inner();
    Ok(json(
        StatusCode::OK,
        &json!({ "NetworksDeleted": r.deleted }),
    ))
}

/// `POST /networks/{id}/connect`: containers join their networks when created, so this
/// succeeds only for a network the container already has (compose v1 connects each
/// container to the network it was created on).
pub async fn connect(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> DResult<Response> {
    let req: serde_json::Value = json_body(&body)?;
    let container = req["Container"]
        .as_str()
        .ok_or_else(|| DockerError::bad_request("Container is required"))?;
    let n = resolve(&ctx, &id).await?;
    let info = super::containers::info_of(&ctx, container).await?;
    let nets = info.config.map(|c| c.networks).unwrap_or_default();
    let has = nets.iter().any(|x| x.name == n.name) || (nets.is_empty() && n.name == "default");
    if has {
        return Ok(axum::response::IntoResponse::into_response(StatusCode::OK));
    }
    Err(DockerError::not_implemented(format!(
        "connecting container {container} to network {}: a container joins its networks when it is created (--network)",
        shown_name(&n.name)
    )))
}

/// `POST /networks/{id}/disconnect`: a container that is not running leaves the network
/// (it joins the rest at its next start); a running one gets a 409 saying to stop it first,
/// as its VM keeps its network devices (crates/apiserver/src/containers/networking.rs).
/// `Force` changes nothing: nothing is left to force.
pub async fn disconnect(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    body: Bytes,
) -> DResult<Response> {
    let req: serde_json::Value = json_body(&body)?;
    let container = req["Container"]
        .as_str()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| DockerError::bad_request("Container is required"))?;
    let n = resolve(&ctx, &id).await?;
    let key = container.strip_prefix('/').unwrap_or(container);
    ctx.client()
        .await?
        .containers()
        .disconnect_network(v1::DisconnectNetworkRequest {
            id: key.to_owned(),
            network: n.name.clone(),
        })
        .await
        .map_err(|s| super::containers::container_error(key, s))?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}
