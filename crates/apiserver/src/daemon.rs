//! The daemon's state: the image store, the container records and their runtimes, the
//! properties and credentials, and the reconciliation done when it opens an app root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::ApiError;
use tokio::sync::watch;

use crate::properties::Properties;
use crate::record::{ContainerDirs, ContainerRecord, Phase};

/// The longest bundle path the runtime accepts (its socket must fit in sun_path).
pub const MAX_BUNDLE_PATH: usize = 94;

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The app root.
    pub app_root: PathBuf,
    /// The `container-runtime` program; found beside the daemon's executable (or on PATH)
    /// when `None`.
    pub runtime_binary: Option<PathBuf>,
}

/// Why the daemon could not open its app root.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A directory or file of the app root is unusable.
    #[error("{0}")]
    State(String),
}

/// One known container.
pub(crate) struct Entry {
    pub(crate) record: ContainerRecord,
    /// Serialises lifecycle operations (start, stop, delete) of this container.
    pub(crate) op: Arc<tokio::sync::Mutex<()>>,
}

/// The daemon. Shared by every service through an `Arc`.
pub struct Daemon {
    pub(crate) app_root: PathBuf,
    pub(crate) store: Arc<oci::Store>,
    pub(crate) properties: Properties,
    pub(crate) dirs: ContainerDirs,
    pub(crate) containers: Mutex<BTreeMap<String, Entry>>,
    pub(crate) credentials: Arc<dyn oci::CredentialStore>,
    pub(crate) runtime_binary: PathBuf,
    /// Containers being started, with the volumes they claim (name, read-only), until
    /// their runtime shows a VM ([`crate::volume_service::Claim`]).
    pub(crate) starting: Mutex<std::collections::HashMap<String, Vec<(String, bool)>>>,
    /// Serialises creating and deleting volumes against containers that reference them.
    pub(crate) volume_lock: tokio::sync::Mutex<()>,
    /// Bumped at every container change; waiters and log followers watch it.
    pub(crate) changes: watch::Sender<u64>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Set while `system stop` stops every container: no restart policy acts then, and the
    /// stops do not count as the user's (Docker restarts `unless-stopped` ones at the next
    /// start).
    pub(crate) draining: std::sync::atomic::AtomicBool,
    pub(crate) networks: crate::networks::Networks,
    /// The event stream (`container events`, Docker's `/events`).
    pub(crate) events: crate::events::EventBus,
    /// Pre-booted guests for container starts (crate::pool).
    pub(crate) pool: Arc<crate::pool::Pool>,
    /// The builder VM `builder start` keeps running for builds (crate::builder).
    pub(crate) builder: tokio::sync::Mutex<Option<crate::builder_vm::BuilderProcess>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("app_root", &self.app_root)
            .finish_non_exhaustive()
    }
}

/// Runs blocking work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a worker task failed: {e}")))?
}

/// Finds `container-runtime`: `$CONTAINER_RUNTIME_BINARY`, beside our executable (or one
/// level up, for test binaries in `deps/`), else PATH.
fn find_runtime_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CONTAINER_RUNTIME_BINARY").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("container-runtime");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("container-runtime")
}

/// Where a live runtime's container is, asked over its socket (None when it does not
/// answer within `timeout`: still booting, or on its way out).
pub(crate) async fn live_status(
    bundle: &runtime_api::Bundle,
    timeout: Duration,
) -> Option<runtime_api::pb::StateResponse> {
    let client = runtime_api::RuntimeClient::connect(&bundle.socket(), timeout)
        .await
        .ok()?;
    tokio::time::timeout(timeout, client.state())
        .await
        .ok()?
        .ok()
}

/// Stops a runtime whose container was booted for a start that never came (the daemon died
/// in between): once its socket answers (it may still be booting), if the container is
/// still only created, stop it; the runtime then shuts its VM down and exits.
async fn stop_interrupted_start(bundle: runtime_api::Bundle, id: String) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while bundle.runtime_alive() && Instant::now() < deadline {
        if let Ok(client) =
            runtime_api::RuntimeClient::connect(&bundle.socket(), Duration::from_secs(5)).await
        {
            match client.state().await {
                Ok(s) if s.status == runtime_api::pb::Status::Created as i32 => {
                    tracing::info!(%id, "stopping a runtime whose start was interrupted");
                    let _ = client
                        .stop(Some(libc::SIGKILL as u32), Some(Duration::ZERO))
                        .await;
                }
                // Started meanwhile, or finished: not an interrupted start any more.
                _ => {}
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Daemon {
    /// Opens (creating) an app root and reconciles what it finds: dead runtimes' containers
    /// are marked stopped, live ones re-adopted, leftovers of interrupted creates and deletes
    /// removed.
    pub async fn open(options: DaemonOptions) -> Result<Arc<Daemon>, OpenError> {
        let root = options.app_root.clone();
        crate::fsutil::secure_app_root(&root)
            .map_err(|e| OpenError::State(format!("creating {}: {e}", root.display())))?;
        let store_root = root.clone();
        let store = tokio::task::spawn_blocking(move || oci::Store::open(store_root))
            .await
            .map_err(|e| OpenError::State(e.to_string()))?
            .map_err(|e| OpenError::State(format!("opening the image store: {e}")))?;
        let properties = Properties::open(&root).map_err(|e| OpenError::State(e.to_string()))?;
        let dirs = ContainerDirs::open(&root).map_err(|e| OpenError::State(e.to_string()))?;
        let cleaned = dirs.clean().map_err(|e| OpenError::State(e.to_string()))?;
        if cleaned > 0 {
            tracing::info!(cleaned, "removed half-created or half-deleted containers");
        }
        let networks = open_networks(&root, &properties, &dirs).await?;
        let cleaned = crate::volumes::clean(&crate::volumes::dir(&root));
        if cleaned > 0 {
            tracing::info!(cleaned, "removed half-created or half-deleted volumes");
        }
        let mut stores: Vec<Arc<dyn oci::CredentialStore>> =
            vec![oci::platform_credential_store(&root)];
        if let Some(docker) = oci::DockerConfigStore::from_env() {
            stores.push(Arc::new(docker));
        }
        let runtime_binary = options.runtime_binary.unwrap_or_else(find_runtime_binary);
        let pool = crate::pool::Pool::new(&root, runtime_binary.clone(), properties.pool_size());
        let daemon = Arc::new(Daemon {
            app_root: root,
            store: Arc::new(store),
            properties,
            dirs,
            containers: Mutex::new(BTreeMap::new()),
            credentials: Arc::new(oci::CredentialChain::new(stores)),
            runtime_binary,
            starting: Mutex::new(Default::default()),
            volume_lock: tokio::sync::Mutex::new(()),
            changes: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            draining: std::sync::atomic::AtomicBool::new(false),
            networks,
            events: crate::events::EventBus::default(),
            pool,
            builder: tokio::sync::Mutex::new(None),
        });
        prune_bundle_aliases();
        daemon.reconcile().await?;
        daemon.pool.start();
        Ok(daemon)
    }

    async fn reconcile(self: &Arc<Self>) -> Result<(), OpenError> {
        let (records, errors) = self
            .dirs
            .load_all()
            .map_err(|e| OpenError::State(e.to_string()))?;
        for e in errors {
            tracing::warn!("skipping an unreadable container: {e}");
        }
        let mut adopt = Vec::new();
        let mut remove = Vec::new();
        let mut restart = Vec::new();
        for mut record in records {
            let bundle = self.bundle(&record.id);
            // Liveness is the runtime's lock; a live runtime is asked over its socket, a dead
            // one's final record is read from its bundle.
            let alive = bundle.runtime_alive();
            let live = if alive {
                live_status(&bundle, Duration::from_secs(2)).await
            } else {
                None
            };
            let last = if alive {
                None
            } else {
                runtime_api::State::load(&bundle.state()).ok()
            };
            let live_created =
                live.as_ref().map(|s| s.status) == Some(runtime_api::pb::Status::Created as i32);
            let live_running =
                live.as_ref().map(|s| s.status) == Some(runtime_api::pb::Status::Running as i32);
            let last_running = last
                .as_ref()
                .is_some_and(|s| s.status != runtime_api::Status::Stopped);
            if alive && record.phase != Phase::Running && !live_running {
                // The daemon died between booting the VM and starting the process (or the
                // runtime still boots for that start): nobody asked for that VM any more.
                if live_created || live.is_none() {
                    let (bundle, id) = (bundle.clone(), record.id.clone());
                    tokio::spawn(stop_interrupted_start(bundle, id));
                }
            } else if alive {
                // It runs (or just finished and lingers): the monitor records its end.
                record.phase = Phase::Running;
                adopt.push(record.id.clone());
            } else if record.phase == Phase::Running || last_running {
                mark_stopped(&mut record, last.as_ref());
                tracing::info!(id = %record.id, code = ?record.exit_code, "runtime gone: container marked stopped");
                if let Err(e) = record.save(bundle.dir()) {
                    tracing::warn!("saving {}: {e}", record.id);
                }
                if record.options().is_ok_and(|o| o.auto_remove) {
                    remove.push(record.id.clone());
                }
            }
            // Docker's `always` restarts at daemon start even after a user's stop;
            // `unless-stopped` only when the user did not stop it.
            if record.phase == Phase::Stopped {
                use api::v1::restart_policy::Kind;
                let kind = record
                    .options()
                    .ok()
                    .and_then(|o| o.restart_policy)
                    .map(|p| Kind::try_from(p.kind).unwrap_or(Kind::No));
                if kind == Some(Kind::Always)
                    || (kind == Some(Kind::UnlessStopped) && !record.stopped_by_user)
                {
                    restart.push(record.id.clone());
                }
            }
            let op = Arc::new(tokio::sync::Mutex::new(()));
            self.containers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(record.id.clone(), Entry { record, op });
        }
        for id in remove {
            if let Err(e) = self.remove_container(&id, true) {
                tracing::warn!("auto-removing {id}: {e}");
            }
        }
        for id in restart {
            tracing::info!(%id, "starting by restart policy");
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let _ = me.update(&id, |r| r.stopped_by_user = false);
                if let Err(e) = me.start_boxed(id.clone()).await {
                    tracing::warn!(%id, "restart failed: {}", e.message);
                }
            });
        }
        for id in adopt {
            tracing::info!(%id, "re-adopting a running container");
            // Health goes on from where the record left it.
            self.watch_health(&id);
            let me = Arc::clone(self);
            tokio::spawn(async move { me.monitor(id).await });
        }
        Ok(())
    }

    /// The name of a container (running or stopped) that asks for network `network`.
    pub(crate) fn network_user(&self, network: &str) -> Option<String> {
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|e| {
                e.record
                    .options()
                    .is_ok_and(|o| o.networks.iter().any(|n| n.name == network))
            })
            .map(|e| e.record.name.clone())
    }

    /// The app root.
    pub fn app_root(&self) -> &Path {
        &self.app_root
    }

    /// Asks the server to stop; containers are left as they are (`stop_all` stops them first).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves when [`Daemon::shutdown`] has been called.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Publishes an event.
    pub(crate) fn emit(
        &self,
        kind: crate::events::EventType,
        action: impl Into<String>,
        actor: impl Into<String>,
        attributes: impl IntoIterator<Item = (String, String)>,
    ) {
        self.events.publish(crate::events::Event::now(
            kind,
            action,
            actor,
            attributes.into_iter().collect(),
        ));
    }

    /// Publishes a container event with Docker's attributes: the container's labels, its
    /// `name` and `image` (as the user wrote it), then `extra`.
    pub(crate) fn container_event(
        &self,
        record: &ContainerRecord,
        action: &str,
        extra: &[(&str, String)],
    ) {
        let mut attributes = record.labels.clone();
        attributes.insert("name".into(), record.name.clone());
        attributes.insert("image".into(), record.image.clone());
        for (k, v) in extra {
            attributes.insert((*k).to_owned(), v.clone());
        }
        self.emit(
            crate::events::EventType::Container,
            action,
            record.id.clone(),
            attributes,
        );
    }

    /// Publishes a volume event (Docker's attributes: the driver).
    pub(crate) fn volume_event(&self, action: &str, name: &str) {
        self.emit(
            crate::events::EventType::Volume,
            action,
            name.to_owned(),
            [("driver".to_owned(), "local".to_owned())],
        );
    }

    /// Publishes an image event: `actor` is the reference (pull, push, load) or the image's
    /// digest (tag, untag, delete), `name` the reference it is about.
    pub(crate) fn image_event(&self, action: &str, actor: String, name: &str) {
        self.emit(
            crate::events::EventType::Image,
            action,
            actor,
            [("name".to_owned(), name.to_owned())],
        );
    }

    /// Publishes a network event: Docker's attributes `name` and `type`, then `extra`
    /// (`container` for connect and disconnect). Networks are named by their names.
    pub(crate) fn network_event(&self, action: &str, name: &str, extra: &[(&str, &str)]) {
        let mut attributes = vec![
            ("name".to_owned(), name.to_owned()),
            ("type".to_owned(), "bridge".to_owned()),
        ];
        attributes.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.emit(
            crate::events::EventType::Network,
            action,
            name.to_owned(),
            attributes,
        );
    }

    pub(crate) fn notify(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Finds a container by full ID, name, or unique ID prefix; returns its ID.
    pub(crate) fn lookup(&self, key: &str) -> Result<String, ApiError> {
        if key.is_empty() {
            return Err(ApiError::invalid_argument("no container given"));
        }
        let map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(key) {
            return Ok(key.to_owned());
        }
        if let Some(e) = map.values().find(|e| e.record.name == key) {
            return Ok(e.record.id.clone());
        }
        let matches: Vec<&String> = map.keys().filter(|id| id.starts_with(key)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ApiError::not_found(format!("container {key} not found"))),
            _ => Err(ApiError::invalid_argument(format!(
                "container ID prefix {key} is ambiguous: give more of it or the name"
            ))),
        }
    }

    /// A copy of a container's record.
    pub(crate) fn record(&self, id: &str) -> Result<ContainerRecord, ApiError> {
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|e| e.record.clone())
            .ok_or_else(|| ApiError::not_found(format!("container {id} not found")))
    }

    /// The lifecycle lock of a container.
    pub(crate) fn op_lock(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<()>>, ApiError> {
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|e| Arc::clone(&e.op))
            .ok_or_else(|| ApiError::not_found(format!("container {id} not found")))
    }

    /// Changes a container's record and persists it.
    pub(crate) fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, ApiError> {
        let mut map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("container {id} not found")))?;
        let mut next = entry.record.clone();
        f(&mut next);
        // Only a running container can be paused; every stop or start thaws it.
        if next.phase != Phase::Running || next.started_ms != entry.record.started_ms {
            next.paused = false;
        }
        if next != entry.record {
            next.save(&self.dirs.dir(id))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            // Every start and every end of a run passes here, whoever saw it first.
            let was = entry.record.phase;
            if was != Phase::Running && next.phase == Phase::Running {
                self.container_event(&next, "start", &[]);
            } else if was == Phase::Running && next.phase == Phase::Stopped {
                let code = next.exit_code.unwrap_or(255).to_string();
                self.container_event(&next, "die", &[("exitCode", code)]);
            }
            entry.record = next;
        }
        let out = entry.record.clone();
        drop(map);
        self.notify();
        Ok(out)
    }

    /// Every container record, newest first.
    pub(crate) fn records(&self) -> Vec<ContainerRecord> {
        let mut v: Vec<ContainerRecord> = self
            .containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|e| e.record.clone())
            .collect();
        v.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        v
    }

    /// Removes a stopped container's record and directory, and with `volumes` its anonymous
    /// volumes that no other container uses.
    pub(crate) fn remove_container(&self, id: &str, volumes: bool) -> Result<(), ApiError> {
        let mut map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        let bundle = self.bundle(id);
        self.dirs
            .delete(id)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if bundle.dir() != self.dirs.dir(id) {
            let _ = std::fs::remove_file(bundle.dir());
        }
        let removed = map.remove(id);
        if let Some(entry) = &removed {
            self.container_event(&entry.record, "destroy", &[]);
        }
        if volumes && let Some(entry) = removed {
            let vdir = crate::volumes::dir(&self.app_root);
            for name in &entry.record.anonymous_volumes {
                let used = map.values().any(|e| {
                    e.record.options().is_ok_and(|o| {
                        o.mounts.iter().any(|m| {
                            matches!(&m.kind, Some(api::v1::mount::Kind::Volume(v)) if &v.name == name)
                        })
                    })
                });
                if !used {
                    match crate::volumes::remove(&vdir, name) {
                        Ok(()) => self.volume_event("destroy", name),
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
            }
        }
        drop(map);
        self.notify();
        Ok(())
    }

    /// A container's bundle as the runtime sees it: `containers/<id>/`, or, when that path is
    /// too long for the runtime's Unix socket (sun_path holds 107 bytes), a short symlink to
    /// it under `$TMPDIR/container-<uid>/` (re-created whenever it is needed).
    pub(crate) fn bundle(&self, id: &str) -> runtime_api::Bundle {
        let real = self.dirs.dir(id);
        if real.as_os_str().len() <= MAX_BUNDLE_PATH {
            return runtime_api::Bundle::new(real);
        }
        let base = bundle_alias_dir();
        let link = base.join(&id[..16.min(id.len())]);
        let ensure = || -> std::io::Result<()> {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&base)?;
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))?;
            if std::fs::read_link(&link).ok().as_deref() != Some(real.as_path()) {
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&real, &link)?;
            }
            Ok(())
        };
        match ensure() {
            Ok(()) => runtime_api::Bundle::new(link),
            Err(e) => {
                tracing::warn!(%id, "cannot make a short bundle path: {e}");
                runtime_api::Bundle::new(real)
            }
        }
    }

    /// Waits (up to `timeout`) for a container's runtime to be gone (its lock released). A
    /// finished runtime only lingers to answer late State/Wait calls; the daemon has recorded
    /// the end already, so it asks the runtime over its socket to go now. One that outlives
    /// `timeout` is killed by the pid it reports over that socket while it still holds its lock.
    pub(crate) async fn reap_runtime(&self, id: &str, timeout: Duration) {
        let bundle = self.bundle(id);
        if !bundle.runtime_alive() {
            return;
        }
        let deadline = Instant::now() + timeout;
        let client = runtime_api::RuntimeClient::connect(&bundle.socket(), Duration::from_secs(2))
            .await
            .ok();
        if let Some(client) = &client
            && client
                .state()
                .await
                .is_ok_and(|s| s.status == runtime_api::pb::Status::Stopped as i32)
        {
            let _ = client.stop(None, Some(Duration::ZERO)).await;
        }
        while bundle.runtime_alive() {
            if Instant::now() >= deadline {
                let pid = match &client {
                    Some(c) => c.state().await.ok().map(|s| s.runtime_pid),
                    None => None,
                };
                match pid.filter(|p| *p > 0) {
                    Some(pid) if bundle.runtime_alive() => {
                        tracing::warn!(%id, pid, "container runtime did not exit: killing it");
                        // SAFETY: kill(2) on the pid the runtime itself reported over its
                        // socket while it held its bundle's lock; no memory is involved.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                    _ => tracing::warn!(%id, "container runtime did not exit within {timeout:?}"),
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Opens the networks in the mode `$CONTAINER_NETWORK_MODE` or the `network.mode` property
/// asks for, releasing what containers whose runtime is gone held.
async fn open_networks(
    root: &Path,
    properties: &Properties,
    dirs: &ContainerDirs,
) -> Result<crate::networks::Networks, OpenError> {
    let setting = std::env::var("CONTAINER_NETWORK_MODE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| properties.value("network.mode"));
    let mode = crate::networks::Mode::choose(&setting).map_err(OpenError::State)?;
    let subnet = properties
        .default_subnet()
        .map_err(|e| OpenError::State(e.to_string()))?;
    let domain = Some(properties.value("dns.domain")).filter(|d| !d.is_empty());
    // A live runtime keeps what it holds; reconcile settles the rest.
    let running = |id: &str| runtime_api::Bundle::new(dirs.dir(id)).runtime_alive();
    let networks = crate::networks::Networks::open(root, mode, subnet, domain, running)
        .await
        .map_err(OpenError::State)?;
    tracing::info!(mode = mode.as_str(), "networks ready");
    Ok(networks)
}

/// Where short bundle aliases live: `$TMPDIR/container-<uid>/`.
pub(crate) fn bundle_alias_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("container-{uid}"))
}

/// Removes bundle aliases whose container directory is gone (a deleted app root, a crash
/// between a delete and the alias's removal).
fn prune_bundle_aliases() {
    let Ok(entries) = std::fs::read_dir(bundle_alias_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let is_link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && !p.exists() {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Marks a record stopped from the runtime's last state (or as failed when it has none).
pub(crate) fn mark_stopped(record: &mut ContainerRecord, state: Option<&runtime_api::State>) {
    record.phase = Phase::Stopped;
    match state {
        Some(s) if s.exit_code.is_some() => {
            record.exit_code = s.exit_code;
            record.finished_ms = s
                .finished_at
                .as_deref()
                .map(crate::fsutil::rfc3339_to_ms)
                .filter(|t| *t > 0)
                .unwrap_or_else(crate::fsutil::now_ms);
            if let Some(e) = &s.error {
                record.error = e.clone();
            }
        }
        _ => {
            record.exit_code = Some(255);
            record.finished_ms = crate::fsutil::now_ms();
            record.error = "the container's runtime exited without recording an exit code".into();
        }
    }
}
