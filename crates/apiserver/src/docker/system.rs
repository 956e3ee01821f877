//! `/_ping`, `/version`, `/info`, `/system/df`, `/events` and `/plugins`
//! (`/build` is in [`super::build`]).

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
        .list(v1::ListContainersRequest {
            all: true,
            ..Default::default()
        })
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
        .list(v1::ListContainersRequest {
            all: true,
            ..Default::default()
        })
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

/// `GET /events`: the daemon's event bus through its own `System.Events` rpc, one Docker
/// `events.Message` per line. `since`/`until` take Docker's time forms (Unix seconds with an
/// optional fraction, as the docker CLI and docker-py send them, RFC 3339, or a duration
/// before now); `filters` the map or list form. The stream ends when the client goes away
/// or `until` passes.
pub async fn events(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let now = crate::events::now_nanos();
    let time = |key: &str| -> DResult<Option<i64>> {
        q.get(key)
            .filter(|t| !t.is_empty())
            .map(|t| {
                spec::parse_time(t, now)
                    .map_err(|e| DockerError::bad_request(format!("invalid {key}: {e}")))
            })
            .transpose()
    };
    let since_nanos = time("since")?;
    let until_nanos = time("until")?;
    let filters = super::filters::Filters::parse(q.get("filters"))?;
    let filters: Vec<v1::EventFilter> = filters
        .0
        .iter()
        .flat_map(|(k, vs)| {
            vs.iter().map(move |v| v1::EventFilter {
                key: k.clone(),
                value: v.clone(),
            })
        })
        .collect();
    let client = ctx.client().await?;
    let mut stream = client
        .system()
        .events(v1::EventsRequest {
            since_nanos,
            until_nanos,
            filters,
        })
        .await?
        .into_inner();
    let (tx, resp) = super::stream::streamed("application/json");
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                m = stream.message() => m,
                () = tx.closed() => return,
            };
            match next {
                Ok(Some(e)) => {
                    if !tx.json(&event_message(&e)).await {
                        return;
                    }
                }
                Ok(None) => return,
                Err(s) => {
                    tx.error(s.message()).await;
                    return;
                }
            }
        }
    });
    Ok(resp)
}

/// Docker's `events.Message` of one event: `Type`, `Action`, `Actor`, `scope`, `time`,
/// `timeNano`, and for containers the legacy `status`, `id` and `from`.
pub fn event_message(e: &v1::Event) -> serde_json::Value {
    let attributes: std::collections::BTreeMap<&str, &str> = e
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut m = json!({
        "Type": e.r#type,
        "Action": e.action,
        "Actor": {"ID": e.actor_id, "Attributes": attributes},
        "scope": if e.scope.is_empty() { "local" } else { e.scope.as_str() },
        "time": e.time,
        "timeNano": e.time_nano,
    });
    if e.r#type == "container"
        && let Some(obj) = m.as_object_mut()
    {
        obj.insert("status".into(), json!(e.action));
        obj.insert("id".into(), json!(e.actor_id));
        if let Some(image) = e.attributes.get("image") {
            obj.insert("from".into(), json!(image));
        }
    }
    m
}

/// `GET /plugins`: none (the moby test harness needs the empty list).
pub async fn plugins() -> Response {
    json(StatusCode::OK, &json!([]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_event_carries_dockers_fields_and_the_legacy_ones() {
        let e = v1::Event {
            r#type: "container".into(),
            action: "die".into(),
            actor_id: "ab".repeat(32),
            attributes: [("name", "web"), ("image", "busybox"), ("exitCode", "3")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            scope: "local".into(),
            time: 1_700_000_000,
            time_nano: 1_700_000_000_123_456_789,
        };
        let m = event_message(&e);
        assert_eq!(m["Type"], "container");
        assert_eq!(m["Action"], "die");
        assert_eq!(m["Actor"]["ID"], "ab".repeat(32));
        assert_eq!(m["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(m["scope"], "local");
        assert_eq!(m["time"], 1_700_000_000i64);
        assert_eq!(m["timeNano"], 1_700_000_000_123_456_789i64);
        assert_eq!(m["status"], "die");
        assert_eq!(m["id"], "ab".repeat(32));
        assert_eq!(m["from"], "busybox");
        let v = event_message(&v1::Event {
            r#type: "volume".into(),
            action: "create".into(),
            actor_id: "data".into(),
            ..e
        });
        assert_eq!(v["Actor"]["ID"], "data");
        assert!(
            v.get("status").is_none() && v.get("from").is_none(),
            "legacy fields are for containers only: {v}"
        );
    }
}
