//! `POST /commit` (`docker commit`) and `GET /containers/{id}/changes` (`docker diff`),
//! translated to the Containers service's Commit and Diff.

use api::v1;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use super::Ctx;
use super::containers::container_error;
use super::error::{DResult, DockerError};
use super::stream::{Params, json};

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`. The body (a
/// container config to merge) is not supported beyond `changes`; `pause` is true when
/// absent, as in moby since API 1.13.
pub async fn commit(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let container = q
        .get("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| DockerError::bad_request("a container is required"))?;
    let container = container.strip_prefix('/').unwrap_or(container).to_string();
    let reference = match (q.get("repo").unwrap_or(""), q.get("tag").unwrap_or("")) {
        ("", "") => String::new(),
        ("", _) => return Err(DockerError::bad_request("a tag needs a repository")),
        (repo, "") => repo.to_string(),
        (repo, tag) => format!("{repo}:{tag}"),
    };
    // The docker CLI sends each --change as its own `changes` value; a value may also hold
    // several instructions on lines of their own.
    let changes: Vec<String> = q
        .all("changes")
        .into_iter()
        .flat_map(|c| c.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|c| !c.trim().is_empty())
        .collect();
    let r = ctx
        .client()
        .await?
        .containers()
        .commit(v1::CommitContainerRequest {
            id: container.clone(),
            reference,
            changes,
            message: q.get("comment").unwrap_or("").to_string(),
            author: q.get("author").unwrap_or("").to_string(),
            no_pause: !q.flag_or("pause", true),
        })
        .await
        .map_err(|s| container_error(&container, s))?
        .into_inner();
    Ok(json(StatusCode::CREATED, &json!({ "Id": r.image_id })))
}

/// `GET /containers/{id}/changes`: Docker's kinds are 0 modified, 1 added, 2 deleted.
pub async fn changes(State(ctx): State<Ctx>, Path(id): Path<String>) -> DResult<Response> {
    let key = id.strip_prefix('/').unwrap_or(&id).to_string();
    let r = ctx
        .client()
        .await?
        .containers()
        .diff(v1::DiffContainerRequest { id: key })
        .await
        .map_err(|s| container_error(&id, s))?
        .into_inner();
    let list: Vec<_> = r
        .changes
        .iter()
        .map(|c| {
            let kind = match c.kind.as_str() {
                "A" => 1,
                "D" => 2,
                _ => 0,
            };
            json!({ "Path": c.path, "Kind": kind })
        })
        .collect();
    Ok(json(StatusCode::OK, &list))
}
