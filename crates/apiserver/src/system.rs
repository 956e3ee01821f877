//! The `System` service: version, status, disk usage, the daemon's log, properties, the
//! default kernel, shutdown.

use std::sync::Arc;
use std::time::Duration;

use api::ApiError;
use api::v1;
use api::v1::system_server::System;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::daemon::{Daemon, blocking};
use crate::record::Phase;

/// The daemon's log file under the app root.
pub const LOG_NAME: &str = "apiserver.log";

type Res<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> Res<T> {
    Ok(Response::new(v))
}

/// This build's version.
pub fn version() -> v1::VersionResponse {
    v1::VersionResponse {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: option_env!("CONTAINER_GIT_COMMIT")
            .unwrap_or("unknown")
            .into(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .into(),
        api_version: api::API_VERSION,
        app_name: crate::APP_NAME.into(),
    }
}

/// The System service.
#[derive(Debug, Clone)]
pub struct SystemService(pub Arc<Daemon>);

impl Daemon {
    fn disk_usage(&self) -> v1::DiskUsageResponse {
        let root = &self.app_root;
        let in_use = self.digests_in_use();
        let images = self.store.images().unwrap_or_default();
        let content = crate::fsutil::disk_usage(&root.join("content"))
            + crate::fsutil::disk_usage(&root.join("snapshots"));
        // What deleting every unused image would give back: blobs only unused images reach.
        let mut used_blobs = std::collections::BTreeSet::new();
        let mut unused_blobs = std::collections::BTreeSet::new();
        let mut active = 0;
        for rec in &images {
            let used = in_use.contains(&rec.target.digest.to_string());
            active += u32::from(used);
            let mut reach = std::collections::BTreeSet::new();
            let _ = self.store.reachable(&rec.target, &mut reach);
            if used {
                used_blobs.extend(reach);
            } else {
                unused_blobs.extend(reach);
            }
        }
        let reclaimable_images: u64 = unused_blobs
            .difference(&used_blobs)
            .map(|d| {
                let snap = oci::rootfs_path(&self.store, d);
                self.store.content().size(d).unwrap_or(0) + crate::fsutil::disk_usage(&snap)
            })
            .sum();
        let records = self.records();
        let mut containers = v1::UsageSummary {
            total: records.len() as u32,
            ..Default::default()
        };
        for r in &records {
            let size = crate::fsutil::disk_usage(&self.dirs.dir(&r.id));
            containers.size_bytes += size;
            if r.phase == Phase::Running {
                containers.active += 1;
            } else {
                containers.reclaimable_bytes += size;
            }
        }
        v1::DiskUsageResponse {
            images: Some(v1::UsageSummary {
                total: images.len() as u32,
                active,
                size_bytes: content,
                reclaimable_bytes: reclaimable_images.min(content),
            }),
            containers: Some(containers),
            volumes: Some(self.volume_usage(&records)),
            pool: Some(self.pool_wire()),
            pool_guests: self
                .pool
                .guests()
                .into_iter()
                .map(|g| v1::PooledGuest {
                    slot: g.slot,
                    ready: g.ready,
                    pid: g.pid,
                    cpus: g.cpus,
                    memory_mib: g.memory_mib,
                    resident_bytes: g.resident_bytes,
                    age_seconds: g.age.as_secs(),
                })
                .collect(),
        }
    }

    /// The warm pool as `system status` and `system df` show it.
    fn pool_wire(&self) -> v1::WarmPool {
        let p = self.pool.status();
        v1::WarmPool {
            size: p.size,
            ready: p.ready,
            booting: p.booting,
            memory_mib: p.memory_mib,
            resident_bytes: p.resident_bytes,
        }
    }
}

impl Daemon {
    fn volume_usage(&self, records: &[crate::record::ContainerRecord]) -> v1::UsageSummary {
        let vdir = crate::volumes::dir(&self.app_root);
        let used: std::collections::BTreeSet<String> = records
            .iter()
            .filter_map(|r| r.options().ok())
            .flat_map(|o| o.mounts)
            .filter_map(|m| match m.kind {
                Some(v1::mount::Kind::Volume(v)) => Some(v.name),
                _ => None,
            })
            .collect();
        let mut summary = v1::UsageSummary::default();
        for name in crate::volumes::list(&vdir) {
            let size = crate::fsutil::disk_usage(&vdir.join(&name));
            summary.total += 1;
            summary.size_bytes += size;
            if used.contains(&name) {
                summary.active += 1;
            } else {
                summary.reclaimable_bytes += size;
            }
        }
        summary
    }
}

/// Milliseconds of a log line's leading RFC 3339 timestamp (0 when it has none).
fn line_time(line: &str) -> i64 {
    line.split_whitespace()
        .next()
        .map(crate::fsutil::rfc3339_to_ms)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl System for SystemService {
    async fn version(&self, _: Request<v1::VersionRequest>) -> Res<v1::VersionResponse> {
        ok(version())
    }

    async fn status(&self, _: Request<v1::StatusRequest>) -> Res<v1::StatusResponse> {
        let install_root = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.display().to_string()))
            .unwrap_or_default();
        let running = self
            .0
            .records()
            .iter()
            .filter(|r| r.phase == Phase::Running)
            .count() as u32;
        ok(v1::StatusResponse {
            status: "running".into(),
            app_root: self.0.app_root.display().to_string(),
            install_root,
            log_root: self.0.app_root.display().to_string(),
            version: Some(version()),
            vmm: if cfg!(target_os = "macos") {
                "vz"
            } else {
                "qemu"
            }
            .into(),
            containers_running: running,
            pool: Some(self.0.pool_wire()),
            docker_socket: self
                .0
                .docker_socket()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            kernel: Some(crate::kernel::describe(&crate::kernel::GuestDirs::new(
                &self.0.app_root,
            ))),
        })
    }

    async fn disk_usage(&self, _: Request<v1::DiskUsageRequest>) -> Res<v1::DiskUsageResponse> {
        let d = Arc::clone(&self.0);
        ok(blocking(move || Ok(d.disk_usage())).await?)
    }

    async fn events(&self, req: Request<v1::EventsRequest>) -> Res<BoxStream<v1::Event>> {
        let r = req.into_inner();
        let filter = crate::events::EventFilter::new(
            r.filters.iter().map(|f| (f.key.as_str(), f.value.as_str())),
        )
        .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
        let (history, mut live) = self.0.events.subscribe(r.since_nanos, r.until_nanos);
        let until = r.until_nanos;
        let mut shutdown = self.0.shutdown.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            for e in history.iter().filter(|e| filter.matches(e)) {
                if tx.send(Ok(e.to_wire())).await.is_err() {
                    return;
                }
            }
            // A past `until` ends the stream after the replay; a future one when it comes.
            let deadline = until.map(|u| {
                let left = u.saturating_sub(crate::events::now_nanos()).max(0);
                tokio::time::Instant::now() + Duration::from_nanos(left as u64)
            });
            loop {
                let next = tokio::select! {
                    e = live.recv() => e,
                    _ = async {
                        match deadline {
                            Some(d) => tokio::time::sleep_until(d).await,
                            None => std::future::pending().await,
                        }
                    } => return,
                    _ = shutdown.wait_for(|v| *v) => return,
                    _ = tx.closed() => return,
                };
                match next {
                    Ok(e) => {
                        if until.is_some_and(|u| e.time_nano > u) {
                            return;
                        }
                        if filter.matches(&e) && tx.send(Ok(e.to_wire())).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "an event subscriber fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn logs(&self, req: Request<v1::SystemLogsRequest>) -> Res<BoxStream<v1::SystemLogLine>> {
        let r = req.into_inner();
        let path = self.0.app_root.join(LOG_NAME);
        let since = if r.last_seconds == 0 {
            0
        } else {
            crate::fsutil::now_ms() - i64::from(r.last_seconds) * 1000
        };
        let (tx, rx) = mpsc::channel(64);
        let daemon = Arc::clone(&self.0);
        tokio::spawn(async move {
            // Each pass reads only what was appended since the last one.
            let mut log = crate::tail::LogTail::new(&path);
            loop {
                while let Some(line) = log.next_line().await {
                    let line = String::from_utf8_lossy(&line);
                    let t = line_time(&line);
                    if t < since {
                        continue;
                    }
                    let msg = v1::SystemLogLine {
                        line: line.into_owned(),
                        timestamp_ms: t,
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
                if !r.follow || *daemon.shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn property_list(
        &self,
        _: Request<v1::PropertyListRequest>,
    ) -> Res<v1::PropertyListResponse> {
        ok(v1::PropertyListResponse {
            properties: self.0.properties.list(),
        })
    }

    async fn property_get(&self, req: Request<v1::PropertyGetRequest>) -> Res<v1::Property> {
        ok(self
            .0
            .properties
            .get(&req.into_inner().key)
            .map_err(ApiError::from)?)
    }

    async fn property_set(&self, req: Request<v1::PropertySetRequest>) -> Res<v1::Property> {
        let r = req.into_inner();
        let property = self
            .0
            .properties
            .set(&r.key, &r.value)
            .map_err(ApiError::from)?;
        if r.key == "container.pool.size" {
            self.0.pool.set_size(self.0.properties.pool_size());
        }
        ok(property)
    }

    async fn property_clear(&self, req: Request<v1::PropertyClearRequest>) -> Res<v1::Property> {
        let key = req.into_inner().key;
        let property = self.0.properties.clear(&key).map_err(ApiError::from)?;
        if key == "container.pool.size" {
            self.0.pool.set_size(self.0.properties.pool_size());
        }
        ok(property)
    }

    async fn kernel_set(&self, req: Request<v1::KernelSetRequest>) -> Res<v1::KernelSetResponse> {
        let r = req.into_inner();
        if !r.tar.is_empty() || r.recommended {
            return Err(ApiError::failed_precondition(
                "installing a kernel from a tar archive or the recommended download is not supported by this daemon yet: use --binary",
            )
            .into());
        }
        if r.binary.is_empty() {
            return Err(ApiError::invalid_argument("kernel set: give --binary PATH").into());
        }
        let root = self.0.app_root.clone();
        let path = blocking(move || {
            crate::kernel::install(&root, std::path::Path::new(&r.binary), &r.arch, r.force)
                .map_err(ApiError::from)
        })
        .await?;
        ok(v1::KernelSetResponse {
            path: path.display().to_string(),
        })
    }

    async fn shutdown(&self, _: Request<v1::ShutdownRequest>) -> Res<v1::ShutdownResponse> {
        tracing::info!("shutdown requested: stopping running containers");
        let stopped = self.0.stop_all().await;
        let drained = self.0.pool.drain().await;
        tracing::info!(
            stopped,
            drained,
            "containers stopped, pool drained; shutting down"
        );
        self.0.shutdown();
        ok(v1::ShutdownResponse {})
    }
}
