//! `POST /containers/{id}/pause`, `/unpause` and `/rename`: the daemon's Pause, Unpause and
//! Rename rpcs in Docker's shape (204; 409 for a container that is not running, already
//! paused, or a name in use; 400 for a bad name).

use api::v1;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;

use super::Ctx;
use super::containers::{container_error, info_of};
use super::error::{DResult, DockerError};
use super::stream::{Params, no_content};

/// `POST /containers/{id}/pause`.
pub async fn pause(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let info = info_of(&ctx, &id).await?;
    ctx.client()
        .await?
        .containers()
        .pause(v1::PauseContainerRequest { id: info.id })
        .await
        .map_err(|s| container_error(&id, s))?;
    Ok(no_content())
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let info = info_of(&ctx, &id).await?;
    ctx.client()
        .await?
        .containers()
        .unpause(v1::UnpauseContainerRequest { id: info.id })
        .await
        .map_err(|s| container_error(&id, s))?;
    Ok(no_content())
}

/// `POST /containers/{id}/rename?name=NEW`.
pub async fn rename(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let name = q
        .get("name")
        .map(|n| n.strip_prefix('/').unwrap_or(n).to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| DockerError::bad_request("rename: the query parameter name is required"))?;
    let info = info_of(&ctx, &id).await?;
    ctx.client()
        .await?
        .containers()
        .rename(v1::RenameContainerRequest { id: info.id, name })
        .await
        .map_err(|s| container_error(&id, s))?;
    Ok(no_content())
}
