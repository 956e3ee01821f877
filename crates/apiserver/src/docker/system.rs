//! `/_ping`, `/version`, `/info`, `/system/df`, `/events`, `/plugins` and `/build`.

use api::v1;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use serde_json::json;

use super::error::{DResult, DockerError};
use super::stream::{Params, json};
use super::{API_VERSION, Ctx, MIN_API_VERSION};

fn arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `HEAD|GET /_ping`: `OK` and the headers clients negotiate with.
pub async fn ping() -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("Api-Version", API_VERSION)
        .header("Ostype", "linux")
        .header("Docker-Experimental", "false")
        .header("Builder-Version", "1")
        .header("Swarm", "inactive")
        .header(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate")
        .header(header::PRAGMA, "no-cache")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from("OK"))
        .unwrap_or_default()
}

/// `GET /version`.
pub async fn version(State(ctx): State<Ctx>) -> DResult<Response> {
    let v = ctx.client().await?.daemon_version().clone();
    let os = if cfg!(target_os = "macos") {
        "darwin"
    } else {
        "linux"
    };
    Ok(json(
        StatusCode::OK,
        &json!({
            "Platform": { "Name": "container" },
            "Components": [{
                "Name": "Engine",
                "Version": v.version,
                "Details": {
                    "ApiVersion": API_VERSION,
                    "MinAPIVersion": MIN_API_VERSION,
                    "GitCommit": v.commit,
                    "Os": os,
                    "Arch": arch(),
                    "KernelVersion": kernel_version(),
                },
            }],
            "Version": v.version,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": v.commit,
            "GoVersion": "",
            "Os": os,
            "Arch": arch(),
            "KernelVersion": kernel_version(),
            "Experimental": false,
            "BuildTime": "",
        }),
    ))
}

/// `GET /info`.
pub async fn info(State(ctx): State<Ctx>) -> DResult<Response> {
    let client = ctx.client().await?;
    let status = client
        .system()
        .status(v1::StatusRequest {})
        .await?
        .into_inner();
    let containers = client
        .containers()
        .list(v1::ListContainersRequest { all: true })
        .await?
        .into_inner()
        .containers;
    let images = client
        .images()
        .list(v1::ListImagesRequest { all: true })
        .await?
        .into_inner()
        .images;
    let count = |s: v1::ContainerState| containers.iter().filter(|c| c.state() == s).count();
    let running = count(v1::ContainerState::Running);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let version = status.version.clone().unwrap_or_default();
    let mut out = json!({
            "ID": "",
            "Containers": containers.len(),
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": containers.len() - running,
            "Images": images.len(),
            "Driver": "ext4",
            "DriverStatus": [],
            "Plugins": { "Volume": ["local"], "Network": ["bridge"], "Authorization": null, "Log": ["json-file"] },
            "MemoryLimit": true,
            "SwapLimit": false,
            "CpuCfsPeriod": false,
            "CpuCfsQuota": false,
            "CPUShares": false,
            "CPUSet": false,
            "PidsLimit": false,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": super::ids::time_of_ms(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0)
            ),
    });
    let more = json!({
            "LoggingDriver": "json-file",
            "CgroupDriver": "none",
            "CgroupVersion": "2",
            "NEventsListener": 0,
            "KernelVersion": kernel_version(),
            "OperatingSystem": format!("container ({} VMs)", status.vmm),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": if cfg!(target_arch = "aarch64") { "aarch64" } else { "x86_64" },
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "IndexConfigs": {},
                "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                "Mirrors": [],
            },
            "NCPU": cpus,
            "MemTotal": 0,
            "DockerRootDir": status.app_root,
            "Name": hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": version.version,
            "Runtimes": { "container": { "path": "container-runtime" } },
            "DefaultRuntime": "container",
            "Swarm": { "LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": "", "Error": "", "RemoteManagers": null },
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": "",
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": [],
    });
    if let (Some(o), serde_json::Value::Object(m)) = (out.as_object_mut(), more) {
        o.extend(m);
    }
    Ok(json(StatusCode::OK, &out))
}

/// `GET /system/df`: the sizes the daemon knows.
pub async fn df(State(ctx): State<Ctx>) -> DResult<Response> {
    let client = ctx.client().await?;
    let usage = client
        .system()
        .disk_usage(v1::DiskUsageRequest {})
        .await?
        .into_inner();
    let images = client
        .images()
        .list(v1::ListImagesRequest { all: true })
        .await?
        .into_inner()
        .images;
    let containers = client
        .containers()
        .list(v1::ListContainersRequest { all: true })
        .await?
        .into_inner()
        .containers;
    let image_rows: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            let v = i.variants.first().cloned().unwrap_or_default();
            json!({
                "Id": i.digest,
                "ParentId": "",
                "RepoTags": [super::ids::familiar(&i.reference)],
                "RepoDigests": [],
                "Created": v.created_ms / 1000,
                "Size": v.size,
                "SharedSize": -1,
                "Labels": {},
                "Containers": -1,
            })
        })
        .collect();
    let container_rows: Vec<serde_json::Value> = containers
        .iter()
        .map(|c| {
            json!({
                "Id": c.id,
                "Names": [format!("/{}", c.name)],
                "Image": c.config.as_ref().map(|x| x.image.clone()).unwrap_or_default(),
                "ImageID": c.image_digest,
                "Command": c.args.join(" "),
                "Created": c.created_ms / 1000,
                "State": if c.state() == v1::ContainerState::Running { "running" } else { "exited" },
                "Status": "",
                "SizeRw": 0,
                "SizeRootFs": 0,
                "Labels": {},
                "Mounts": [],
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "LayersSize": usage.images.as_ref().map(usage_bytes).unwrap_or(0),
            "Images": image_rows,
            "Containers": container_rows,
            "Volumes": [],
            "BuildCache": [],
        }),
    ))
}

fn usage_bytes(u: &v1::UsageSummary) -> u64 {
    u.size_bytes
}

/// `GET /events`: the daemon has no event stream yet; the stream stays open (or ends at
/// `until`) so `compose up` and `docker events` work, carrying no events.
pub async fn events(uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let until = q
        .get("until")
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<f64>()
                .map_err(|_| DockerError::bad_request(format!("invalid until {u:?}")))
        })
        .transpose()?;
    let (tx, resp) = super::stream::streamed("application/json");
    tokio::spawn(async move {
        match until {
            Some(t) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                let wait = (t - now).max(0.0);
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs_f64(wait)) => {}
                    () = tx.closed() => {}
                }
            }
            None => tx.closed().await,
        }
        drop(tx);
    });
    Ok(resp)
}

/// `GET /plugins`: none (the moby test harness needs the empty list).
pub async fn plugins() -> Response {
    json(StatusCode::OK, &json!([]))
}

/// `POST /build`: not yet.
pub async fn build() -> DockerError {
    DockerError::not_implemented(
        "building images through the Docker API is not supported yet by this daemon",
    )
}
