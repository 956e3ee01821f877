//! The `Volumes` service, and the claims containers hold on volumes while they start and run.
//!
//! The volumes themselves (files, metadata, crash leftovers) are [`crate::volumes`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use api::ApiError;
use api::v1;
use api::v1::volumes_server::Volumes;
use tonic::{Request, Response, Status};

use crate::daemon::{Daemon, blocking};
use crate::record::Phase;
use crate::volumes::{
    NewVolume, VolumeError, VolumeMeta, check_name, create, dir, exists, image_path, list, load,
    remove, uses,
};

/// Removes a container's claim on its volumes when its start is over.
pub(crate) struct Claim {
    daemon: Arc<Daemon>,
    id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.daemon
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Daemon {
    /// Whether a container's VM may hold its disks: it runs, or its runtime still has a VM
    /// (a stopped container's VM shuts down after its exit is recorded).
    fn holds_disks(&self, r: &crate::record::ContainerRecord) -> bool {
        if r.phase == Phase::Running {
            return true;
        }
        let bundle = self.bundle(&r.id);
        // Liveness from the lock; whether that runtime still has a VM from its record (it
        // empties vm_pids once the VM is down).
        bundle.runtime_alive()
            && runtime_api::State::load(&bundle.state()).is_ok_and(|s| !s.vm_pids.is_empty())
    }

    /// Claims the volumes container `id` is about to attach, or says which container holds
    /// one: a volume attached read-write excludes every other user; read-only users share.
    /// The claim lasts until the returned guard drops; by then the runtime's state shows the
    /// VM.
    pub(crate) fn claim_volumes(self: &Arc<Self>, id: &str) -> Result<Claim, ApiError> {
        let record = self.record(id)?;
        let mine = uses(&record.options().unwrap_or_default());
        let mut starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if !mine.is_empty() {
            for other in self.records() {
                if other.id == id {
                    continue;
                }
                let starts = starting.get(&other.id);
                let theirs: Vec<(String, bool)> = match starts {
                    Some(uses) => uses.clone(),
                    None => uses(&other.options().unwrap_or_default()),
                };
                // The other runtime's state is read only when a volume is shared.
                let holds = || starts.is_some() || self.holds_disks(&other);
                for (name, ro) in &mine {
                    let shared = theirs
                        .iter()
                        .any(|(n, their_ro)| n == name && !(*ro && *their_ro));
                    if shared && holds() {
                        return Err(ApiError::failed_precondition(format!(
                            "volume {name} is in use by container {}: a volume is a disk that only one running container may attach read-write (read-only users may share it)",
                            other.name
                        )));
                    }
                }
            }
        }
        starting.insert(id.to_owned(), mine);
        Ok(Claim {
            daemon: Arc::clone(self),
            id: id.to_owned(),
        })
    }

    /// The containers (records) whose configuration mounts volume `name`.
    fn volume_users(&self, name: &str) -> Vec<crate::record::ContainerRecord> {
        self.records()
            .into_iter()
            .filter(|r| {
                r.options()
                    .is_ok_and(|o| uses(&o).iter().any(|(n, _)| n == name))
            })
            .collect()
    }

    fn volume_info(&self, meta: VolumeMeta) -> v1::VolumeInfo {
        let vdir = dir(&self.app_root);
        let mut users: Vec<String> = self
            .volume_users(&meta.name)
            .into_iter()
            .map(|r| r.id)
            .collect();
        users.sort();
        v1::VolumeInfo {
            source: image_path(&vdir, &meta.name).display().to_string(),
            disk_usage_bytes: crate::fsutil::disk_usage(&vdir.join(&meta.name)),
            name: meta.name,
            driver: "local".into(),
            format: "ext4".into(),
            created_ms: meta.created_ms,
            labels: meta
                .labels
                .into_iter()
                .map(|(key, value)| v1::Label { key, value })
                .collect(),
            size_bytes: meta.size_bytes,
            anonymous: meta.anonymous,
            containers: users,
            options: meta.options,
        }
    }

    /// Creates the volumes a new container's mounts name (anonymous ones, and named ones
    /// that do not exist yet). Returns a warning per named volume it created.
    pub(crate) async fn ensure_volumes(
        &self,
        named: Vec<String>,
        anonymous: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        let vdir = dir(&self.app_root);
        let size = self.properties.default_volume_size();
        blocking(move || {
            let mut warnings = Vec::new();
            let mut created = Vec::new();
            for (name, anonymous) in named
                .into_iter()
                .map(|n| (n, false))
                .chain(anonymous.into_iter().map(|n| (n, true)))
            {
                if exists(&vdir, &name) {
                    continue;
                }
                let new = NewVolume {
                    size_bytes: size,
                    anonymous,
                    ..Default::default()
                };
                match create(&vdir, &name, &new) {
                    Ok(_) => {
                        created.push(name.clone());
                        if !anonymous {
                            warnings.push(format!(
                                "volume {name} did not exist and was created ({})",
                                spec::human_bytes(size)
                            ));
                        }
                    }
                    Err(VolumeError::Exists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok((warnings, created))
        })
        .await
        .map(|(warnings, created)| {
            for name in created {
                self.volume_event("create", &name);
            }
            warnings
        })
    }

    /// Deletes a volume no container references; returns the bytes given back.
    async fn delete_volume(&self, name: &str) -> Result<u64, ApiError> {
        let _guard = self.volume_lock.lock().await;
        let vdir = dir(&self.app_root);
        load(&vdir, name)?;
        if let Some(r) = self.volume_users(name).first() {
            return Err(ApiError::failed_precondition(format!(
                "volume {name} is in use by container {}: delete the container first",
                r.name
            )));
        }
        let size = crate::fsutil::disk_usage(&vdir.join(name));
        let gone = name.to_owned();
        blocking(move || remove(&vdir, &gone).map_err(ApiError::from)).await?;
        self.volume_event("destroy", name);
        Ok(size)
    }
}

/// The Volumes service.
#[derive(Debug, Clone)]
pub struct VolumesService(pub Arc<Daemon>);

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Volumes for VolumesService {
    async fn create(&self, req: Request<v1::CreateVolumeRequest>) -> Res<v1::CreateVolumeResponse> {
        let r = req.into_inner();
        check_name(&r.name).map_err(ApiError::from)?;
        let mut labels = BTreeMap::new();
        for l in r.labels {
            labels.insert(l.key, l.value);
        }
        let new = NewVolume {
            size_bytes: if r.size_bytes == 0 {
                self.0.properties.default_volume_size()
            } else {
                r.size_bytes
            },
            labels,
            options: r.options,
            anonymous: false,
        };
        let _guard = self.0.volume_lock.lock().await;
        let vdir = dir(&self.0.app_root);
        let name = r.name.clone();
        let meta = blocking(move || create(&vdir, &name, &new).map_err(ApiError::from)).await?;
        tracing::info!(volume = %r.name, size = meta.size_bytes, "volume created");
        self.0.volume_event("create", &r.name);
        Ok(Response::new(v1::CreateVolumeResponse {
            volume: Some(self.0.volume_info(meta)),
        }))
    }

    async fn list(&self, req: Request<v1::ListVolumesRequest>) -> Res<v1::ListVolumesResponse> {
        let filters = crate::list_filters::VolumeFilters::parse(&req.into_inner().filters)
            .map_err(crate::list_filters::invalid)?;
        let vdir = dir(&self.0.app_root);
        let mut volumes = Vec::new();
        for name in list(&vdir) {
            match load(&vdir, &name) {
                Ok(meta) => volumes.push(self.0.volume_info(meta)),
                Err(e) => tracing::warn!("skipping an unreadable volume: {e}"),
            }
        }
        volumes.retain(|v| filters.matches(v));
        Ok(Response::new(v1::ListVolumesResponse { volumes }))
    }

    async fn inspect(
        &self,
        req: Request<v1::InspectVolumeRequest>,
    ) -> Res<v1::InspectVolumeResponse> {
        let name = req.into_inner().name;
        let meta = load(&dir(&self.0.app_root), &name).map_err(ApiError::from)?;
        Ok(Response::new(v1::InspectVolumeResponse {
            volume: Some(self.0.volume_info(meta)),
        }))
    }

    async fn delete(&self, req: Request<v1::DeleteVolumeRequest>) -> Res<v1::DeleteVolumeResponse> {
        let name = req.into_inner().name;
        let reclaimed_bytes = self.0.delete_volume(&name).await?;
        tracing::info!(volume = %name, "volume deleted");
        Ok(Response::new(v1::DeleteVolumeResponse {
            name,
            reclaimed_bytes,
        }))
    }

    async fn prune(&self, _: Request<v1::PruneVolumesRequest>) -> Res<v1::PruneResponse> {
        let vdir = dir(&self.0.app_root);
        let used: HashMap<String, ()> = self
            .0
            .records()
            .iter()
            .filter_map(|r| r.options().ok())
            .flat_map(|o| uses(&o))
            .map(|(n, _)| (n, ()))
            .collect();
        let mut deleted = Vec::new();
        let mut reclaimed_bytes = 0;
        for name in list(&vdir) {
            if used.contains_key(&name) {
                continue;
            }
            // delete_volume checks again under the lock: a container created meanwhile wins.
            if let Ok(size) = self.0.delete_volume(&name).await {
                reclaimed_bytes += size;
                deleted.push(name);
            }
        }
        Ok(Response::new(v1::PruneResponse {
            deleted,
            reclaimed_bytes,
        }))
    }
}
