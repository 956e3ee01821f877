//! `/images/...`: pull (`create` with `fromImage`), list, inspect, history, tag, delete,
//! push, save (`get`), load and prune, over the daemon's image service. Pull, push and load
//! answer Docker's JSON-message streams, errors inside the stream.

use std::collections::{BTreeMap, HashMap};

use api::v1;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use bollard_stubs::models as m;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Ctx;
use super::error::{DResult, DockerError};
use super::filters::Filters;
use super::ids::{familiar, time_of_ms};
use super::stream::{Params, json, streamed, tar_body};

/// `fromImage` and `tag` as one reference (`tag` may be a digest).
pub fn pull_reference(image: &str, tag: Option<&str>) -> String {
    match tag.filter(|t| !t.is_empty()) {
        None => image.to_owned(),
        Some(t) if t.contains(':') => format!("{image}@{t}"),
        Some(t) => format!("{image}:{t}"),
    }
}

fn short(digest: &str) -> String {
    digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

fn image_error(name: &str, s: tonic::Status) -> DockerError {
    if s.code() == tonic::Code::NotFound {
        DockerError::not_found(format!("No such image: {name}"))
    } else {
        s.into()
    }
}

fn progress_json(p: &v1::BlobProgress, pushing: bool) -> serde_json::Value {
    use v1::blob_progress::Phase;
    let status = match p.phase() {
        Phase::Waiting => "Waiting",
        Phase::Transferring if pushing => "Pushing",
        Phase::Transferring => "Downloading",
        Phase::Verifying => "Verifying Checksum",
        Phase::Unpacking => "Extracting",
        Phase::Done if pushing => "Pushed",
        Phase::Done => "Pull complete",
        Phase::Exists if pushing => "Layer already exists",
        Phase::Exists => "Already exists",
    };
    let mut v = json!({ "status": status, "id": short(&p.digest) });
    if p.phase() == Phase::Transferring {
        v["progressDetail"] = json!({ "current": p.current, "total": p.total });
    }
    v
}

/// Docker's `X-Registry-Auth`: base64url of a JSON `AuthConfig`. Its `username` and
/// `password` (or `auth`, base64 of `user:password`) are used for this request instead of
/// the stored login; an empty object (the docker CLI sends `e30=` when it has no login)
/// means the stored login. A header that does not decode is a 400, never ignored.
pub fn registry_auth(headers: &HeaderMap) -> DResult<Option<v1::RequestCredentials>> {
    use base64::Engine as _;
    let Some(value) = headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let bad =
        |why: &str| DockerError::bad_request(format!("invalid X-Registry-Auth header: {why}"));
    let text = value.to_str().map_err(|_| bad("not ASCII"))?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    let bytes = engines
        .iter()
        .find_map(|e| e.decode(text).ok())
        .ok_or_else(|| bad("not base64"))?;
    let config: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("not a JSON object"))?;
    let field = |k: &str| {
        config
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (mut username, mut password) = (field("username"), field("password"));
    let auth = field("auth");
    if username.is_empty() && password.is_empty() && !auth.is_empty() {
        let pair = base64::engine::general_purpose::STANDARD
            .decode(&auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("its auth is not base64 of user:password"))?;
        let (u, p) = pair
            .split_once(':')
            .ok_or_else(|| bad("its auth is not base64 of user:password"))?;
        (username, password) = (u.to_owned(), p.to_owned());
    }
    if username.is_empty() && password.is_empty() {
        if !field("identitytoken").is_empty() || !field("registrytoken").is_empty() {
            return Err(bad(
                "identity and registry tokens are not supported: send a username and password",
            ));
        }
        return Ok(None);
    }
    Ok(Some(v1::RequestCredentials { username, password }))
}

/// `POST /images/create`: pull `fromImage`; importing (`fromSrc`) is not supported.
pub async fn create(State(ctx): State<Ctx>, headers: HeaderMap, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let credentials = registry_auth(&headers)?;
    if q.get("fromSrc").is_some() {
        return Err(DockerError::not_implemented(
            "importing a root filesystem (fromSrc) is not supported by this daemon",
        ));
    }
    let image = q
        .get("fromImage")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| DockerError::bad_request("fromImage is required"))?;
    let reference = pull_reference(image, q.get("tag"));
    let mut stream = ctx
        .client()
        .await?
        .images()
        .pull(v1::PullImageRequest {
            reference: reference.clone(),
            platform: q.get("platform").unwrap_or_default().to_owned(),
            credentials,
            ..Default::default()
        })
        .await
        .map_err(|s| image_error(&reference, s))?
        .into_inner();
    let (tx, resp) = streamed("application/json");
    tokio::spawn(async move {
        use v1::pull_image_response::Event;
        let tag = reference
            .rsplit_once(':')
            .map(|(_, t)| t)
            .filter(|t| !t.contains('/'));
        if let Some(t) = tag {
            tx.json(&json!({ "status": format!("Pulling from {}", familiar(reference.trim_end_matches(&format!(":{t}")))), "id": t }))
                .await;
        }
        loop {
            match stream.message().await {
                Ok(Some(v1::PullImageResponse { event: Some(e) })) => {
                    let v = match e {
                        Event::Progress(p) => progress_json(&p, false),
                        Event::Status(s) => json!({ "status": s }),
                        Event::Image(i) => {
                            tx.json(&json!({ "status": format!("Digest: {}", i.digest) }))
                                .await;
                            json!({ "status": format!("Status: Downloaded newer image for {}", familiar(&i.reference)) })
                        }
                    };
                    if !tx.json(&v).await {
                        break;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(s) => {
                    tx.error(s.message()).await;
                    break;
                }
            }
        }
    });
    Ok(resp)
}

async fn all_images(ctx: &Ctx) -> DResult<Vec<v1::ImageInfo>> {
    Ok(ctx
        .client()
        .await?
        .images()
        .list(v1::ListImagesRequest { all: true })
        .await?
        .into_inner()
        .images)
}

/// The variant a container of this host runs (else the first).
fn host_variant(info: &v1::ImageInfo) -> Option<&v1::ImageVariant> {
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    info.variants
        .iter()
        .find(|v| v.platform.contains(arch))
        .or(info.variants.first())
}

fn repo_digest(i: &v1::ImageInfo) -> Option<String> {
    (!i.name.is_empty()).then(|| format!("{}@{}", familiar(&i.name), i.digest))
}

/// `GET /images/json`: one entry per image (digest), with all its tags.
pub async fn list(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let f = Filters::parse(q.get("filters"))?;
    f.only(&["reference", "dangling", "label", "before", "since"])?;
    refuse_time_filters(&f)?;
    let mut by_digest: BTreeMap<String, Vec<v1::ImageInfo>> = BTreeMap::new();
    for i in all_images(&ctx).await? {
        by_digest.entry(i.digest.clone()).or_default().push(i);
    }
    let mut out = vec![];
    for (digest, infos) in by_digest {
        let tags: Vec<String> = infos
            .iter()
            .filter(|i| !i.reference.is_empty())
            .map(|i| familiar(&i.reference))
            .collect();
        let variant = host_variant(&infos[0]).cloned().unwrap_or_default();
        let config: serde_json::Value =
            serde_json::from_slice(&variant.config_json).unwrap_or_default();
        let labels: HashMap<String, String> =
            serde_json::from_value(config["config"]["Labels"].clone()).unwrap_or_default();
        let dangling = tags.is_empty();
        let keep = f.any("dangling", |d| super::stream::bool_value(d) == dangling)
            && f.labels_match(&labels)
            && f.any("reference", |r| {
                tags.iter().any(|t| reference_matches(t, r))
            });
        if !keep {
            continue;
        }
        out.push(m::ImageSummary {
            id: digest.clone(),
            parent_id: String::new(),
            repo_tags: tags,
            repo_digests: infos.iter().filter_map(repo_digest).take(1).collect(),
            created: variant.created_ms / 1000,
            size: variant.size as i64,
            shared_size: -1,
            labels,
            containers: -1,
            manifests: None,
            descriptor: None,
        });
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.created));
    Ok(json(StatusCode::OK, &out))
}

fn refuse_time_filters(f: &Filters) -> DResult<()> {
    if !f.get("before").is_empty() || !f.get("since").is_empty() {
        return Err(DockerError::bad_request(
            "the before and since image filters are not supported",
        ));
    }
    Ok(())
}

/// `reference` filter: the name, or name:tag, with `*` globs in the last path part.
fn reference_matches(tag: &str, pattern: &str) -> bool {
    let (name, t) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let (pname, ptag) = match pattern.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (pattern, None),
    };
    glob(pname, name) && ptag.is_none_or(|p| glob(p, t))
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((pre, rest)) => {
            text.starts_with(pre)
                && (0..=text.len() - pre.len()).any(|i| {
                    text.is_char_boundary(pre.len() + i) && glob(rest, &text[pre.len() + i..])
                })
        }
    }
}

async fn inspect_image(ctx: &Ctx, name: &str) -> DResult<v1::ImageInfo> {
    ctx.client()
        .await?
        .images()
        .inspect(v1::InspectImageRequest {
            reference: name.to_owned(),
        })
        .await
        .map_err(|s| image_error(name, s))?
        .into_inner()
        .image
        .ok_or_else(|| DockerError::internal("the daemon answered inspect without an image"))
}

/// Docker's inspect of an image, from its OCI config.
fn inspect_of(info: &v1::ImageInfo, tags: Vec<String>) -> serde_json::Value {
    let variant = host_variant(info).cloned().unwrap_or_default();
    let config: serde_json::Value =
        serde_json::from_slice(&variant.config_json).unwrap_or_default();
    let (os, arch) = variant
        .platform
        .split_once('/')
        .map(|(o, a)| (o.to_owned(), a.split('/').next().unwrap_or(a).to_owned()))
        .unwrap_or(("linux".into(), String::new()));
    let mut c = config["config"].clone();
    if !c.is_object() {
        c = json!({});
    }
    json!({
        "Id": info.digest,
        "RepoTags": tags,
        "RepoDigests": repo_digest(info).into_iter().collect::<Vec<_>>(),
        "Parent": "",
        "Comment": config["comment"].as_str().unwrap_or(""),
        "Created": time_of_ms(variant.created_ms),
        "DockerVersion": "",
        "Author": config["author"].as_str().unwrap_or(""),
        "Config": c,
        "Architecture": arch,
        "Os": os,
        "Size": variant.size,
        "GraphDriver": { "Name": "ext4", "Data": null },
        "RootFS": {
            "Type": "layers",
            "Layers": config["rootfs"]["diff_ids"].clone(),
        },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
    })
}

/// `GET /images/{name}/json` and `GET /images/{name}/history`, `GET /images/{name}/get`.
pub async fn by_name_get(
    State(ctx): State<Ctx>,
    Path(rest): Path<String>,
    uri: Uri,
) -> DResult<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        let info = inspect_image(&ctx, name).await?;
        let tags: Vec<String> = all_images(&ctx)
            .await?
            .iter()
            .filter(|i| i.digest == info.digest && !i.reference.is_empty())
            .map(|i| familiar(&i.reference))
            .collect();
        return Ok(json(StatusCode::OK, &inspect_of(&info, tags)));
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let info = inspect_image(&ctx, name).await?;
        let variant = host_variant(&info).cloned().unwrap_or_default();
        let config: serde_json::Value =
            serde_json::from_slice(&variant.config_json).unwrap_or_default();
        let mut out: Vec<serde_json::Value> = config["history"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|h| {
                let created = h["created"]
                    .as_str()
                    .map(crate::fsutil::rfc3339_to_ms)
                    .unwrap_or(0)
                    / 1000;
                json!({
                    "Id": "<missing>",
                    "Created": created,
                    "CreatedBy": h["created_by"].as_str().unwrap_or(""),
                    "Tags": null,
                    "Size": 0,
                    "Comment": h["comment"].as_str().unwrap_or(""),
                })
            })
            .collect();
        out.reverse();
        if let Some(first) = out.first_mut() {
            first["Id"] = json!(info.digest);
        }
        return Ok(json(StatusCode::OK, &out));
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save_names(&ctx, vec![name.to_owned()]).await;
    }
    let _ = uri;
    Err(DockerError::not_found(format!(
        "page not found: GET /images/{rest}"
    )))
}

/// `POST /images/{name}/tag` and `POST /images/{name}/push`.
pub async fn by_name_post(
    State(ctx): State<Ctx>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = q
            .get("repo")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| DockerError::bad_request("repo is required"))?;
        let target = pull_reference(repo, q.get("tag"));
        ctx.client()
            .await?
            .images()
            .tag(v1::TagImageRequest {
                source: name.to_owned(),
                target,
            })
            .await
            .map_err(|s| image_error(name, s))?;
        return Ok(axum::response::IntoResponse::into_response(
            StatusCode::CREATED,
        ));
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let name = name.to_owned();
        let reference = pull_reference(&name, q.get("tag"));
        let mut stream = ctx
            .client()
            .await?
            .images()
            .push(v1::PushImageRequest {
                reference: reference.clone(),
                credentials: registry_auth(&headers)?,
                ..Default::default()
            })
            .await
            .map_err(|s| image_error(&reference, s))?
            .into_inner();
        let (tx, resp) = streamed("application/json");
        tokio::spawn(async move {
            use v1::push_image_response::Event;
            let tag = q.get("tag").unwrap_or("latest").to_owned();
            tx.json(&json!({ "status": format!("The push refers to repository [{name}]") }))
                .await;
            loop {
                match stream.message().await {
                    Ok(Some(v1::PushImageResponse { event: Some(e) })) => {
                        let v = match e {
                            Event::Progress(p) => progress_json(&p, true),
                            Event::Status(s) => json!({ "status": s }),
                            Event::Digest(d) => {
                                tx.json(&json!({ "status": format!("{tag}: digest: {d}") }))
                                    .await;
                                json!({ "progressDetail": {}, "aux": { "Tag": tag, "Digest": d, "Size": 0 } })
                            }
                        };
                        if !tx.json(&v).await {
                            break;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(s) => {
                        tx.error(s.message()).await;
                        break;
                    }
                }
            }
        });
        return Ok(resp);
    }
    Err(DockerError::not_found(format!(
        "page not found: POST /images/{rest}"
    )))
}

/// `DELETE /images/{name}`.
pub async fn delete(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let r = ctx
        .client()
        .await?
        .images()
        .delete(v1::DeleteImageRequest {
            reference: name.clone(),
            force: q.flag("force"),
        })
        .await
        .map_err(|s| image_error(&name, s))?
        .into_inner();
    let mut out: Vec<m::ImageDeleteResponseItem> = r
        .untagged
        .iter()
        .map(|u| m::ImageDeleteResponseItem {
            untagged: Some(familiar(u)),
            deleted: None,
        })
        .collect();
    out.extend(r.deleted.iter().map(|d| m::ImageDeleteResponseItem {
        untagged: None,
        deleted: Some(d.clone()),
    }));
    Ok(json(StatusCode::OK, &out))
}

/// `POST /images/prune`.
pub async fn prune(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let f = Filters::parse(q.get("filters"))?;
    f.only(&["dangling"])?;
    // Docker prunes only dangling images unless dangling=false.
    let all = f
        .get("dangling")
        .iter()
        .any(|d| !super::stream::bool_value(d));
    let r = ctx
        .client()
        .await?
        .images()
        .prune(v1::PruneImagesRequest { all })
        .await?
        .into_inner();
    let deleted: Vec<m::ImageDeleteResponseItem> = r
        .deleted
        .iter()
        .map(|d| m::ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(d.clone()),
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({ "ImagesDeleted": deleted, "SpaceReclaimed": r.reclaimed_bytes }),
    ))
}

async fn save_names(ctx: &Ctx, names: Vec<String>) -> DResult<Response> {
    if names.is_empty() {
        return Err(DockerError::bad_request("names is required"));
    }
    let stream = ctx
        .client()
        .await?
        .images()
        .save(v1::SaveImagesRequest {
            references: names.clone(),
            platform: String::new(),
        })
        .await
        .map_err(|s| image_error(&names.join(", "), s))?
        .into_inner();
    Ok(tar_body(stream))
}

/// `GET /images/get?names=...`: a `docker save` archive.
pub async fn save(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let names = q.all("names").into_iter().map(str::to_owned).collect();
    save_names(&ctx, names).await
}

/// `POST /images/load`: the tar body loaded; a JSON-message stream of what was loaded.
pub async fn load(State(ctx): State<Ctx>, req: Request) -> DResult<Response> {
    let (tx, rx) = mpsc::channel(8);
    let _ = tx
        .send(v1::LoadImagesRequest {
            part: Some(v1::load_images_request::Part::Header(v1::LoadHeader {
                force: false,
            })),
        })
        .await;
    let mut body = req.into_body().into_data_stream();
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = body.next().await {
            let msg = v1::LoadImagesRequest {
                part: Some(v1::load_images_request::Part::Data(chunk.to_vec())),
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    let result = ctx
        .client()
        .await?
        .images()
        .load(ReceiverStream::new(rx))
        .await;
    let (out, resp) = streamed("application/json");
    match result {
        Ok(r) => {
            let r = r.into_inner();
            for name in &r.references {
                out.json(&json!({ "stream": format!("Loaded image: {}\n", familiar(name)) }))
                    .await;
            }
            for u in &r.untagged {
                out.json(&json!({ "stream": format!("Loaded image ID: {}\n", u.digest) }))
                    .await;
            }
        }
        Err(s) => {
            out.error(s.message()).await;
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header_decodes_docker_shapes() {
        use base64::Engine as _;
        let header = |json: &str| {
            let mut h = HeaderMap::new();
            let v = base64::engine::general_purpose::URL_SAFE.encode(json);
            h.insert("x-registry-auth", v.parse().unwrap());
            h
        };
        assert_eq!(registry_auth(&HeaderMap::new()).unwrap(), None);
        assert_eq!(registry_auth(&header("{}")).unwrap(), None);
        let c = registry_auth(&header(
            r#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5001"}"#,
        ))
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p?>"));
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3cret");
        let c = registry_auth(&header(&format!(r#"{{"auth":"{auth}"}}"#)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("bob", "s3cret")
        );
        let mut h = HeaderMap::new();
        h.insert("x-registry-auth", "%%%".parse().unwrap());
        assert_eq!(
            registry_auth(&h).unwrap_err().message,
            "invalid X-Registry-Auth header: not base64"
        );
        assert!(registry_auth(&header(r#"{"identitytoken":"t"}"#)).is_err());
    }

    #[test]
    fn pull_references_join_tags_and_digests() {
        assert_eq!(
            pull_reference("docker.io/library/busybox", Some("latest")),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(pull_reference("a", Some("sha256:ab")), "a@sha256:ab");
        assert_eq!(pull_reference("a:1", None), "a:1");
    }

    #[test]
    fn reference_filters_glob_names_and_tags() {
        assert!(reference_matches("busybox:latest", "busybox"));
        assert!(reference_matches("busybox:latest", "busy*"));
        assert!(reference_matches(
            "127.0.0.1:5000/busybox:1",
            "127.0.0.1:5000/busybox:1"
        ));
        assert!(!reference_matches("busybox:latest", "busybox:1"));
        assert!(!reference_matches("alpine:latest", "busybox"));
    }
}
