//! Containers: their life (create, start, stop, kill, delete), their runtimes, and the
//! `Containers` service.
//!
//! Start writes the runtime's `config.json`, spawns `container-runtime --bundle DIR` in its
//! own session (so it survives the daemon), waits for its socket, and starts the init
//! process. A monitor task per running container waits on the runtime and records the exit;
//! `--rm` containers are removed then (or at the next daemon start if the daemon was down).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::ApiError;
use api::v1;
use api::v1::containers_server::Containers;
use runtime::client::{RuntimeClient, StdinEvent, StdioEvent};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::daemon::{Daemon, Entry, blocking, mark_stopped, runtime_alive};
use crate::errors::one_line;
use crate::record::{ContainerRecord, Phase};

/// How long a runtime may take to boot its VM and serve its socket.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one connection attempt to a runtime's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// gRPC metadata key of a failed Start: the container's exit code when its program could
/// not be run (126 cannot execute, 127 not found), so the CLI can exit with it.
pub const EXIT_CODE_METADATA: &str = "container-exit-code";
/// Chunk size of streamed files.
const CHUNK: usize = 256 << 10;

fn runtime_error(e: runtime::client::ClientError) -> ApiError {
    let code = e.code();
    let msg = one_line(&e.to_string());
    match code {
        Some(tonic::Code::NotFound) => ApiError::not_found(msg),
        Some(tonic::Code::InvalidArgument) => ApiError::invalid_argument(msg),
        Some(tonic::Code::FailedPrecondition) => ApiError::failed_precondition(msg),
        Some(tonic::Code::Internal) => ApiError::internal(msg),
        _ => ApiError::unavailable(msg),
    }
}

fn state_enum(phase: Phase) -> v1::ContainerState {
    match phase {
        Phase::Created => v1::ContainerState::Created,
        Phase::Running => v1::ContainerState::Running,
        Phase::Stopped => v1::ContainerState::Stopped,
    }
}

impl Daemon {
    /// The wire description of a container.
    pub(crate) fn info(&self, r: &ContainerRecord) -> v1::ContainerInfo {
        let config = r.options().unwrap_or_default();
        let res = config.resources.unwrap_or_default();
        let networks =
            if r.phase != Phase::Running || config.networks.iter().any(|n| n.name == "none") {
                vec![]
            } else if self.networks.mode() == crate::networks::Mode::Bridge {
                self.networks.shown(&r.id)
            } else {
                vec![v1::NetworkAttachment {
                    network: "default".into(),
                    hostname: if config.hostname.is_empty() {
                        r.id[..12].to_owned()
                    } else {
                        config.hostname.clone()
                    },
                    ipv4_address: crate::networks::USER_NET_ADDRESS.into(),
                    ipv4_gateway: crate::networks::USER_NET_GATEWAY.into(),
                    ..Default::default()
                }]
            };
        v1::ContainerInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            state: state_enum(r.phase) as i32,
            image_digest: r.image_digest.clone(),
            platform: r.platform.clone(),
            exit_code: r.exit_code.unwrap_or(-1),
            created_ms: r.created_ms,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            networks,
            resources: Some(v1::Resources {
                cpus_millis: if res.cpus_millis == 0 {
                    self.properties.default_cpus() * 1000
                } else {
                    res.cpus_millis
                },
                memory_bytes: if res.memory_bytes == 0 {
                    self.properties.default_memory()
                } else {
                    res.memory_bytes
                },
                shm_size_bytes: if res.shm_size_bytes == 0 {
                    64 << 20
                } else {
                    res.shm_size_bytes
                },
            }),
            args: r.args.clone(),
            error: r.error.clone(),
            config: Some(config),
        }
    }

    /// Creates a container (pulling its image when missing); returns its ID and warnings.
    pub async fn create_container(
        self: &Arc<Self>,
        config: v1::ContainerConfig,
        pull: v1::ImagePull,
    ) -> Result<(String, Vec<String>), ApiError> {
        if !config.id.is_empty() {
            spec::validate_container_name(&config.id)
                .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
        }
        if config.image.is_empty() {
            return Err(ApiError::invalid_argument("no image given"));
        }
        let platform = if config.platform.is_empty() {
            None
        } else {
            Some(
                config
                    .platform
                    .parse::<oci::Platform>()
                    .map_err(|e| oci_err(e.kind(), e))?,
            )
        };
        let (image_ref, resolved) = self
            .image_for_container(&config.image, platform.clone(), &pull)
            .await?;
        let mut warnings = Vec::new();
        let image_platform = resolved.config.platform();
        if !oci::Platform::host().matches(&image_platform) {
            warnings.push(format!(
                "the image's platform ({image_platform}) does not match the host's ({})",
                oci::Platform::host()
            ));
        }
        let id = crate::names::new_id().map_err(|e| ApiError::internal(e.to_string()))?;
        let mut config = config;
        // Docker gives every VOLUME of the image that the user did not mount an anonymous
        // volume, so data written there outlives the container's writable layer.
        for path in &resolved.config.volumes {
            let target = if path.len() > 1 {
                path.trim_end_matches('/')
            } else {
                path.as_str()
            };
            if target.starts_with('/') && !config.mounts.iter().any(|m| m.target == target) {
                config.mounts.push(v1::Mount {
                    target: target.to_owned(),
                    readonly: false,
                    kind: Some(v1::mount::Kind::Volume(v1::VolumeMount {
                        name: String::new(),
                    })),
                });
            }
        }
        for n in &config.networks {
            if n.name != "none" && !self.networks.exists(&n.name).await {
                return Err(ApiError::not_found(format!("network {} not found", n.name)));
            }
        }
        let mut anonymous_volumes = Vec::new();
        for m in &mut config.mounts {
            if let Some(v1::mount::Kind::Bind(b)) = &mut m.kind {
                b.source = check_bind_source(&b.source)?;
            }
            if let Some(v1::mount::Kind::Volume(v)) = &mut m.kind {
                if v.name.is_empty() {
                    v.name =
                        crate::names::new_id().map_err(|e| ApiError::internal(e.to_string()))?;
                    anonymous_volumes.push(v.name.clone());
                }
                spec::validate_volume_name(&v.name).map_err(|e| {
                    ApiError::invalid_argument(format!("invalid volume name {:?}: {e}", v.name))
                })?;
            }
        }
        // Check the whole configuration now, so `create` fails rather than `start`.
        let probe = crate::runspec::Host {
            bundle: self.dirs.dir(&id),
            rootfs: PathBuf::new(),
            kernel: PathBuf::new(),
            initramfs: PathBuf::new(),
            default_cpus: self.properties.default_cpus(),
            default_memory: self.properties.default_memory(),
            volumes: crate::volumes::dir(&self.app_root),
            network: match self.networks.mode() {
                crate::networks::Mode::Bridge => crate::runspec::NetworkPlan::Bridge(vec![]),
                crate::networks::Mode::User => crate::runspec::NetworkPlan::User,
            },
        };
        let rc = crate::runspec::runtime_config(&id, &config, &resolved.config, &probe).map_err(
            |e| match e {
                crate::runspec::RunSpecError::Unsupported(_) => {
                    ApiError::failed_precondition(e.to_string())
                }
                _ => ApiError::invalid_argument(e.to_string()),
            },
        )?;
        let named: Vec<String> = crate::volumes::uses(&config)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !anonymous_volumes.contains(n))
            .collect();
        // Held until the record exists, so a volume delete cannot slip in between.
        let _volumes = self.volume_lock.lock().await;
        warnings.extend(
            self.ensure_volumes(named, anonymous_volumes.clone())
                .await?,
        );
        let args = rc
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        let mut map = self.containers.lock().unwrap_or_else(|p| p.into_inner());
        let name = if config.id.is_empty() {
            crate::names::random_name(|n| map.values().any(|e| e.record.name == n))
                .map_err(|e| ApiError::internal(e.to_string()))?
        } else {
            if let Some(other) = map.values().find(|e| e.record.name == config.id) {
                return Err(ApiError::already_exists(format!(
                    "the container name {} is already in use by container {}: remove it or choose another name",
                    config.id,
                    &other.record.id[..12]
                )));
            }
            config.id.clone()
        };
        let record = ContainerRecord {
            id: id.clone(),
            name,
            image: config.image.clone(),
            image_ref,
            image_target: resolved.target.digest.to_string(),
            image_digest: resolved.manifest_descriptor.digest.to_string(),
            platform: image_platform.to_string(),
            created_ms: crate::fsutil::now_ms(),
            options_pb: ContainerRecord::encode_options(&config),
            labels: config
                .labels
                .iter()
                .map(|l| (l.key.clone(), l.value.clone()))
                .collect(),
            args,
            phase: Phase::Created,
            exit_code: None,
            started_ms: 0,
            finished_ms: 0,
            error: String::new(),
            stopped_by_user: false,
            restart_count: 0,
            anonymous_volumes,
        };
        self.dirs
            .create(&record)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let image = record.image_ref.clone();
        map.insert(
            id.clone(),
            Entry {
                record,
                op: Arc::new(tokio::sync::Mutex::new(())),
            },
        );
        drop(map);
        self.notify();
        tracing::info!(%id, %image, "container created");
        Ok((id, warnings))
    }

    /// Connects to a running container's runtime.
    pub(crate) async fn connect(&self, id: &str) -> Result<RuntimeClient, ApiError> {
        let r = self.record(id)?;
        if r.phase != Phase::Running {
            return Err(ApiError::failed_precondition(format!(
                "container {} is not running",
                r.name
            )));
        }
        let bundle = self.bundle(id);
        RuntimeClient::connect(&bundle.socket(), CONNECT_TIMEOUT)
            .await
            .map_err(runtime_error)
    }

    /// The runtime config of container `id` with the network `network`.
    async fn runtime_config(
        self: &Arc<Self>,
        id: &str,
        network: crate::runspec::NetworkPlan,
    ) -> Result<runtime::config::RuntimeConfig, ApiError> {
        let record = self.record(id)?;
        let options = record
            .options()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let dir = self.dirs.dir(id);
        let store = Arc::clone(&self.store);
        let digest = oci::Digest::from_hex(
            record
                .image_digest
                .strip_prefix("sha256:")
                .unwrap_or(&record.image_digest),
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let config_digest = digest.clone();
        let image_config = blocking(move || {
            let desc = oci::Descriptor {
                media_type: oci::media_type::OCI_MANIFEST.to_owned(),
                size: store
                    .content()
                    .size(&config_digest)
                    .map_err(|e| oci_err(e.kind(), e))?,
                digest: config_digest,
                platform: None,
                annotations: Default::default(),
                urls: Vec::new(),
            };
            let resolved = store
                .resolve_descriptor(&desc, None)
                .map_err(|e| oci_err(e.kind(), e))?;
            Ok(resolved.config)
        })
        .await
        .map_err(|e| {
            ApiError::failed_precondition(format!(
                "the image {} of container {} is no longer in the store: {}",
                record.image, record.name, e.message
            ))
        })?;
        let rootfs = self.unpack(&digest).await?;
        let (kernel, initramfs) = crate::kernel::guest_files(&self.app_root)?;
        let host = crate::runspec::Host {
            bundle: dir.clone(),
            rootfs,
            kernel,
            initramfs,
            default_cpus: self.properties.default_cpus(),
            default_memory: self.properties.default_memory(),
            volumes: crate::volumes::dir(&self.app_root),
            network,
        };
        crate::runspec::runtime_config(id, &options, &image_config, &host)
            .map_err(|e| ApiError::invalid_argument(e.to_string()))
            .and_then(|rc| {
                rc.validate()
                    .map_err(|e| ApiError::invalid_argument(one_line(&e.to_string())))?;
                Ok(rc)
            })
    }

    /// Where copy-out and export read a container's files: its runtime while it runs, else
    /// a maintenance runtime (`container-runtime --maintenance`) booted for this read with
    /// the container's disks mounted read-only. The container's op lock is held until the
    /// maintenance VM is down, so a start cannot share its writable layer.
    pub(crate) async fn copy_source(self: &Arc<Self>, id: &str) -> Result<CopySource, ApiError> {
        if self.record(id)?.phase == Phase::Running {
            return Ok(CopySource {
                client: self.connect(id).await?,
                _maintenance: None,
            });
        }
        let guard = self.op_lock(id)?.lock_owned().await;
        let record = self.record(id)?;
        if record.phase == Phase::Running {
            drop(guard);
            return Ok(CopySource {
                client: self.connect(id).await?,
                _maintenance: None,
            });
        }
        let rc = self
            .runtime_config(id, crate::runspec::NetworkPlan::User)
            .await?;
        let bundle = self.bundle(id);
        // The last run's runtime may still be powering its VM off, holding the layer.
        self.reap_runtime(id, Duration::from_secs(30)).await;
        let _ = std::fs::remove_file(bundle.maintenance_socket());
        rc.save(&bundle.maintenance_config())
            .map_err(|e| ApiError::internal(format!("writing the runtime config: {e}")))?;
        let mut child = tokio::process::Command::new(&self.runtime_binary)
            .arg("--bundle")
            .arg(bundle.dir())
            .arg("--maintenance")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ApiError::failed_precondition(format!(
                    "cannot run the container runtime {}: {e}",
                    self.runtime_binary.display()
                ))
            })?;
        tracing::info!(%id, pid = child.id(), "maintenance runtime spawned");
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let client = loop {
            if bundle.maintenance_socket().exists()
                && let Ok(client) =
                    RuntimeClient::connect(&bundle.maintenance_socket(), CONNECT_TIMEOUT).await
            {
                break client;
            }
            let failed = match child.try_wait() {
                Ok(Some(_)) => Some("the maintenance runtime exited".to_string()),
                Ok(None) if Instant::now() >= deadline => Some(format!(
                    "the maintenance vm did not boot within {}s",
                    BOOT_TIMEOUT.as_secs()
                )),
                Ok(None) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failed {
                let log = std::fs::read_to_string(bundle.runtime_log()).unwrap_or_default();
                let reason = log
                    .lines()
                    .rev()
                    .find(|l| l.contains("ERROR"))
                    .map(str::to_owned)
                    .unwrap_or(why);
                let _ = child.start_kill();
                return Err(ApiError::unavailable(format!(
                    "cannot read the files of the stopped container {}: {}",
                    record.name,
                    one_line(&reason)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(CopySource {
            client,
            _maintenance: Some(Maintenance {
                child: Some(child),
                guard: Some(guard),
            }),
        })
    }

    /// Spawns the container's runtime and waits until it serves (VM booted, init process
    /// created). The caller holds the container's op lock.
    async fn spawn_runtime(self: &Arc<Self>, id: &str) -> Result<RuntimeClient, ApiError> {
        // Refuse a volume another container holds before booting anything.
        let _claim = self.claim_volumes(id)?;
        let record = self.record(id)?;
        let options = record
            .options()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let bundle = self.bundle(id);
        let network = self.plan_network(id, &record.name, &options).await?;
        let rc = match self.runtime_config(id, network).await {
            Ok(rc) => rc,
            Err(e) => {
                self.networks.detach(id).await;
                return Err(e);
            }
        };
        // A previous run's runtime may still be shutting its VM down: never let two
        // runtimes share a bundle.
        self.reap_runtime(id, Duration::from_secs(30)).await;
        for stale in [bundle.state(), bundle.socket()] {
            let _ = std::fs::remove_file(stale);
        }
        rc.save(&bundle.config())
            .map_err(|e| ApiError::internal(format!("writing the runtime config: {e}")))?;

        let mut cmd = tokio::process::Command::new(&self.runtime_binary);
        cmd.arg("--bundle")
            .arg(bundle.dir())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(false);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it makes
        // the runtime its own session leader so it outlives the daemon and its terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            ApiError::failed_precondition(format!(
                "cannot run the container runtime {}: {e}",
                self.runtime_binary.display()
            ))
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(%id, pid, "container runtime spawned");
        let (exited_tx, mut exited_rx) = tokio::sync::watch::channel(false);
        // Reap the child when it exits; if the daemon dies first, init adopts it.
        tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = exited_tx.send(true);
        });

        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if bundle.socket().exists()
                && let Ok(client) = RuntimeClient::connect(&bundle.socket(), CONNECT_TIMEOUT).await
            {
                return Ok(client);
            }
            let state = runtime::State::load(&bundle.state()).ok();
            let failed = state
                .as_ref()
                .is_some_and(|s| s.status == runtime::Status::Stopped);
            if failed || *exited_rx.borrow() {
                let reason = state
                    .as_ref()
                    .and_then(|s| s.error.clone())
                    .unwrap_or_else(|| {
                        let log = std::fs::read_to_string(bundle.runtime_log()).unwrap_or_default();
                        log.lines()
                            .rev()
                            .find(|l| l.contains("ERROR"))
                            .map(str::to_owned)
                            .unwrap_or_else(|| "the container runtime exited".into())
                    });
                self.update(id, |r| {
                    mark_stopped(r, state.as_ref());
                    r.error = one_line(&reason);
                })?;
                return Err(ApiError::failed_precondition(format!(
                    "container {} failed to start: {}",
                    record.name,
                    one_line(&reason)
                )));
            }
            if Instant::now() >= deadline {
                // SAFETY: kill(2) on the runtime we spawned; no memory is involved.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                return Err(ApiError::unavailable(format!(
                    "container {} did not boot within {}s",
                    record.name,
                    BOOT_TIMEOUT.as_secs()
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = exited_rx.changed() => {}
            }
        }
    }

    /// Gives a container that is about to start its interfaces: TAP devices and addresses on
    /// its networks in bridge mode, nothing to prepare in user mode.
    async fn plan_network(
        &self,
        id: &str,
        name: &str,
        options: &v1::ContainerConfig,
    ) -> Result<crate::runspec::NetworkPlan, ApiError> {
        if self.networks.mode() == crate::networks::Mode::User
            || options.networks.iter().any(|n| n.name == "none")
        {
            return Ok(crate::runspec::NetworkPlan::User);
        }
        let requests = if options.networks.is_empty() {
            vec![v1::NetworkRequest {
                name: crate::networks::DEFAULT_NETWORK.into(),
                ..Default::default()
            }]
        } else {
            options.networks.clone()
        };
        // A previous run that ended while nobody watched may still hold its addresses.
        self.networks.detach(id).await;
        let attachments = self.networks.attach(id, name, &requests).await?;
        Ok(crate::runspec::NetworkPlan::Bridge(attachments))
    }

    /// Starts the init process of a booted runtime and records the container running, or
    /// records why it could not start. Returns the Docker exit code on a start failure.
    async fn start_init(
        self: &Arc<Self>,
        id: &str,
        client: &RuntimeClient,
    ) -> Result<(), (ApiError, i32)> {
        match client.start().await {
            Ok(_) => {
                let now = crate::fsutil::now_ms();
                self.update(id, |r| {
                    r.phase = Phase::Running;
                    r.started_ms = now;
                    r.finished_ms = 0;
                    r.exit_code = None;
                    r.error.clear();
                    r.stopped_by_user = false;
                })
                .map_err(|e| (e, 125))?;
                let me = Arc::clone(self);
                let id = id.to_owned();
                tokio::spawn(async move { me.monitor(id).await });
                Ok(())
            }
            Err(e) => {
                let bundle = self.bundle(id);
                let state = runtime::State::load(&bundle.state()).ok();
                let code = state.as_ref().and_then(|s| s.exit_code).unwrap_or(125);
                let message = state
                    .as_ref()
                    .and_then(|s| s.error.clone())
                    .unwrap_or_else(|| one_line(&e.to_string()));
                let _ = client.stop(Some(9), Some(Duration::ZERO)).await;
                let _ = self.update(id, |r| {
                    r.phase = Phase::Stopped;
                    r.exit_code = Some(code);
                    r.finished_ms = crate::fsutil::now_ms();
                    r.error = message.clone();
                });
                self.after_exit(id).await;
                Err((ApiError::failed_precondition(message), code))
            }
        }
    }

    /// Starts a container (nothing to do when it runs).
    pub async fn start_container(self: &Arc<Self>, key: &str) -> Result<(), ApiError> {
        let id = self.lookup(key)?;
        let lock = self.op_lock(&id)?;
        let _guard = lock.lock().await;
        if self.record(&id)?.phase == Phase::Running {
            return Ok(());
        }
        let client = match self.spawn_runtime(&id).await {
            Ok(c) => c,
            Err(e) => {
                self.networks.detach(&id).await;
                if self.record(&id).is_ok_and(|r| r.phase == Phase::Stopped) {
                    self.after_exit(&id).await;
                }
                return Err(e);
            }
        };
        self.start_init(&id, &client).await.map_err(|(e, _)| e)
    }

    /// Watches a running container's runtime until it finishes, then records the exit.
    pub(crate) async fn monitor(self: Arc<Self>, id: String) {
        let started = self.record(&id).map(|r| r.started_ms).unwrap_or(0);
        let bundle = self.bundle(&id);
        let client = RuntimeClient::connect(&bundle.socket(), CONNECT_TIMEOUT).await;
        if let Ok(client) = &client {
            let _ = client.wait().await;
        }
        // Either Wait answered or the runtime is unreachable: wait for its state to settle.
        let deadline = Instant::now() + Duration::from_secs(30);
        let state = loop {
            let state = runtime::State::load(&bundle.state()).ok();
            let settled = state
                .as_ref()
                .is_some_and(|s| s.status == runtime::Status::Stopped && s.exit_code.is_some());
            let alive = state.as_ref().is_some_and(|s| runtime_alive(s.runtime_pid));
            if settled || !alive || Instant::now() >= deadline {
                break state;
            }
            if client.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else {
                // Re-adopted runtime not answering yet: poll slowly.
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(c) = RuntimeClient::connect(&bundle.socket(), CONNECT_TIMEOUT).await {
                    let _ = c.wait().await;
                }
            }
        };
        // This run's end may already be recorded (an attached client saw the exit code);
        // either way this monitor, the only one of this run, does what follows an exit.
        let mut ours = false;
        let _ = self.update(&id, |r| {
            if r.started_ms == started {
                ours = true;
                if r.phase == Phase::Running {
                    mark_stopped(r, state.as_ref());
                }
            }
        });
        if ours {
            tracing::info!(%id, code = ?state.and_then(|s| s.exit_code), "container stopped");
            self.after_exit(&id).await;
        }
    }

    /// Records the end of the run that started at `started` as soon as an attached client
    /// has seen its exit code, before the VM has finished shutting down.
    pub(crate) fn record_exit(&self, id: &str, started: i64, code: i32) {
        let _ = self.update(id, |r| {
            if r.phase == Phase::Running && r.started_ms == started {
                r.phase = Phase::Stopped;
                r.exit_code = Some(code);
                r.finished_ms = crate::fsutil::now_ms();
            }
        });
    }
    /// What happens after a container's process ended: `--rm` removal, or a restart its
    /// policy asks for (with a doubling delay, as Docker's).
    pub(crate) async fn after_exit(self: &Arc<Self>, id: &str) {
        self.networks.detach(id).await;
        let Ok(r) = self.record(id) else { return };
        let Ok(options) = r.options() else { return };
        if options.auto_remove {
            self.reap_runtime(id, Duration::from_secs(10)).await;
            if let Err(e) = self.remove_container(id, true) {
                tracing::warn!(%id, "auto-removing: {}", e.message);
            } else {
                tracing::info!(%id, "container auto-removed");
            }
            return;
        }
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return; // the daemon is stopping: policies act at its next start
        }
        let policy = options.restart_policy.unwrap_or_default();
        use v1::restart_policy::Kind;
        let code = r.exit_code.unwrap_or(0);
        let restart = !r.stopped_by_user
            && match Kind::try_from(policy.kind).unwrap_or(Kind::No) {
                Kind::Always | Kind::UnlessStopped => true,
                Kind::OnFailure => {
                    code != 0 && (policy.max_retries == 0 || r.restart_count < policy.max_retries)
                }
                Kind::No => false,
            };
        if !restart {
            return;
        }
        let Ok(r) = self.update(id, |r| r.restart_count += 1) else {
            return;
        };
        let delay = Duration::from_millis(100 << r.restart_count.min(7));
        tracing::info!(%id, count = r.restart_count, ?delay, "restarting by policy");
        let me = Arc::clone(self);
        let id = id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.reap_runtime(&id, Duration::from_secs(10)).await;
            let still = me
                .record(&id)
                .is_ok_and(|r| r.phase == Phase::Stopped && !r.stopped_by_user);
            if still && let Err(e) = me.start_boxed(id.clone()).await {
                tracing::warn!(%id, "restart failed: {}", e.message);
            }
        });
    }

    /// [`Daemon::start_container`] as a boxed future: a restart starts from inside the
    /// previous run's end, and the explicit `Send` type breaks that cycle for the compiler.
    pub(crate) fn start_boxed(
        self: &Arc<Self>,
        id: String,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ApiError>> + Send>> {
        let me = Arc::clone(self);
        Box::pin(async move { me.start_container(&id).await })
    }

    /// Stops a container at the user's request; returns its exit code.
    pub async fn stop_container(
        self: &Arc<Self>,
        key: &str,
        signal: i32,
        timeout: Option<u32>,
    ) -> Result<i32, ApiError> {
        self.stop_container_as(key, signal, timeout, true).await
    }

    /// Stops a container; `by_user` records it as the user's stop (which keeps
    /// `unless-stopped` from restarting it at the next daemon start).
    async fn stop_container_as(
        self: &Arc<Self>,
        key: &str,
        signal: i32,
        timeout: Option<u32>,
        by_user: bool,
    ) -> Result<i32, ApiError> {
        let id = self.lookup(key)?;
        let lock = self.op_lock(&id)?;
        let _guard = lock.lock().await;
        let r = self.record(&id)?;
        if r.phase != Phase::Running {
            return Ok(r.exit_code.unwrap_or(0));
        }
        let signal = u32::try_from(signal)
            .map_err(|_| ApiError::invalid_argument(format!("{signal} is not a signal")))?;
        if by_user {
            let _ = self.update(&id, |r| r.stopped_by_user = true);
        }
        match self.connect(&id).await {
            Ok(client) => {
                let code = client
                    .stop(
                        (signal != 0).then_some(signal),
                        timeout.map(|t| Duration::from_secs(u64::from(t))),
                    )
                    .await
                    .map_err(runtime_error)?;
                self.wait_stopped(&id, r.started_ms).await;
                Ok(code)
            }
            Err(_) => {
                // The runtime is gone: record what it left.
                let state = runtime::State::load(&self.bundle(&id).state()).ok();
                let r = self.update(&id, |r| {
                    mark_stopped(r, state.as_ref());
                    r.stopped_by_user |= by_user;
                })?;
                Ok(r.exit_code.unwrap_or(0))
            }
        }
    }

    /// Stops every running container, all at once, each with its own stop signal and
    /// timeout (what `system stop` does before the daemon exits; Apple's tool stops them
    /// too). Returns how many were stopped; failures are logged, not fatal: the daemon is
    /// going away either way.
    pub async fn stop_all(self: &Arc<Self>) -> usize {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let running: Vec<String> = self
            .records()
            .into_iter()
            .filter(|r| r.phase == Phase::Running)
            .map(|r| r.id)
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for id in running {
            let me = Arc::clone(self);
            tasks.spawn(async move {
                let result = me.stop_container_as(&id, 0, None, false).await;
                (id, result)
            });
        }
        let mut stopped = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(_))) => stopped += 1,
                Ok((id, Err(e))) => tracing::warn!(container = %id, "stopping: {}", e.message),
                Err(e) => tracing::warn!("a stop task failed: {e}"),
            }
        }
        stopped
    }

    /// Waits until the monitor has recorded the end of the run that started at `started`.
    async fn wait_stopped(&self, id: &str, started: i64) {
        let mut rx = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match self.record(id) {
                Ok(r) if r.phase == Phase::Running && r.started_ms == started => {}
                _ => return,
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Sends a signal (0: SIGKILL) to a running container's init process.
    pub async fn kill_container(&self, key: &str, signal: i32) -> Result<(), ApiError> {
        let id = self.lookup(key)?;
        let signal = u32::try_from(signal)
            .ok()
            .filter(|s| *s <= 64)
            .ok_or_else(|| ApiError::invalid_argument(format!("{signal} is not a signal")))?;
        let client = self.connect(&id).await?;
        client.kill(signal, false, "").await.map_err(runtime_error)
    }

    /// Deletes a container; returns its ID.
    pub async fn delete_container(
        self: &Arc<Self>,
        key: &str,
        force: bool,
        remove_volumes: bool,
    ) -> Result<String, ApiError> {
        let id = self.lookup(key)?;
        let lock = self.op_lock(&id)?;
        let _guard = lock.lock().await;
        let r = self.record(&id)?;
        if r.phase == Phase::Running {
            if !force {
                return Err(ApiError::failed_precondition(format!(
                    "container {} is running: stop it first or use --force",
                    r.name
                )));
            }
            if let Ok(client) = self.connect(&id).await {
                let _ = client.stop(Some(9), Some(Duration::ZERO)).await;
            }
            self.wait_stopped(&id, r.started_ms).await;
        }
        self.reap_runtime(&id, Duration::from_secs(10)).await;
        if self.record(&id).is_err() {
            return Ok(id); // --rm got there first
        }
        self.remove_container(&id, remove_volumes)?;
        tracing::info!(%id, "container deleted");
        Ok(id)
    }

    /// Waits for a condition; returns the exit code.
    pub async fn wait_container(
        &self,
        key: &str,
        condition: v1::WaitCondition,
    ) -> Result<i32, ApiError> {
        let id = self.lookup(key)?;
        let mut rx = self.changes.subscribe();
        let first = self.record(&id)?;
        let mut last_code = first.exit_code.unwrap_or(0);
        loop {
            match self.record(&id) {
                Err(_) => return Ok(last_code),
                Ok(r) => {
                    last_code = r.exit_code.unwrap_or(last_code);
                    let done = match condition {
                        v1::WaitCondition::NotRunning => r.phase != Phase::Running,
                        v1::WaitCondition::NextExit => {
                            r.phase == Phase::Stopped && r.finished_ms != first.finished_ms
                        }
                        v1::WaitCondition::Removed => false,
                    };
                    if done {
                        return Ok(last_code);
                    }
                }
            }
            if rx.changed().await.is_err() {
                return Err(ApiError::unavailable("the daemon is shutting down"));
            }
        }
    }
}

/// Checks a bind mount's host path: it must exist and be a directory, a regular file or a
/// Unix socket. Returns it with symlinks resolved, so the VM shares what the path names now.
fn check_bind_source(source: &str) -> Result<String, ApiError> {
    use std::os::unix::fs::FileTypeExt;
    let path = std::path::Path::new(source);
    if !path.is_absolute() {
        return Err(ApiError::invalid_argument(format!(
            "bind mount source {source:?} is not an absolute path"
        )));
    }
    let real = std::fs::canonicalize(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::invalid_argument(format!("bind mount source {source} does not exist"))
        } else {
            ApiError::invalid_argument(format!("bind mount source {source}: {e}"))
        }
    })?;
    let md = std::fs::metadata(&real)
        .map_err(|e| ApiError::invalid_argument(format!("bind mount source {source}: {e}")))?;
    let t = md.file_type();
    if !(t.is_dir() || t.is_file() || t.is_socket()) {
        return Err(ApiError::invalid_argument(format!(
            "bind mount source {source} is not a directory, a regular file or a Unix socket"
        )));
    }
    real.into_os_string().into_string().map_err(|_| {
        ApiError::invalid_argument(format!("bind mount source {source} is not valid UTF-8"))
    })
}

fn oci_err(kind: oci::ErrorKind, e: impl std::fmt::Display) -> ApiError {
    crate::errors::oci_error(kind, e)
}

/// The Containers service.
#[derive(Debug, Clone)]
pub struct ContainersService(pub Arc<Daemon>);

type Res<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> Res<T> {
    Ok(Response::new(v))
}

fn boxed<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> BoxStream<T> {
    Box::pin(ReceiverStream::new(rx))
}

/// Parses one stdio.log line into a chunk.
fn log_chunk(line: &[u8]) -> Option<v1::LogChunk> {
    let e: runtime::stdio_log::Entry = serde_json::from_slice(line).ok()?;
    Some(v1::LogChunk {
        stream: match e.stream {
            runtime::stdio_log::Stream::Stdout => v1::OutputStream::Stdout as i32,
            runtime::stdio_log::Stream::Stderr => v1::OutputStream::Stderr as i32,
        },
        data: e.bytes(),
        timestamp_ms: crate::fsutil::rfc3339_to_ms(&e.time),
    })
}

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn create(
        &self,
        req: Request<v1::CreateContainerRequest>,
    ) -> Res<v1::CreateContainerResponse> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| ApiError::invalid_argument("no container configuration given"))?;
        let pull = req.pull.unwrap_or_default();
        let (id, warnings) = self.0.create_container(config, pull).await?;
        ok(v1::CreateContainerResponse { id, warnings })
    }

    async fn start(
        &self,
        req: Request<v1::StartContainerRequest>,
    ) -> Res<v1::StartContainerResponse> {
        let key = req.into_inner().id;
        let id = self.0.lookup(&key)?;
        self.0.update(&id, |r| r.restart_count = 0)?;
        if let Err(e) = self.0.start_container(&id).await {
            let mut status = Status::from(e);
            // The program could not run: say so as Docker's 126/127 beside the error.
            if let Some(code) = self
                .0
                .record(&id)
                .ok()
                .filter(|r| r.phase == Phase::Stopped)
                .and_then(|r| r.exit_code)
                .filter(|c| matches!(c, 126 | 127))
            {
                status
                    .metadata_mut()
                    .insert(EXIT_CODE_METADATA, code.into());
            }
            return Err(status);
        }
        ok(v1::StartContainerResponse {})
    }

    async fn stop(&self, req: Request<v1::StopContainerRequest>) -> Res<v1::StopContainerResponse> {
        let r = req.into_inner();
        let exit_code = self
            .0
            .stop_container(&r.id, r.signal, r.timeout_seconds)
            .await?;
        ok(v1::StopContainerResponse { exit_code })
    }

    async fn kill(&self, req: Request<v1::KillContainerRequest>) -> Res<v1::KillContainerResponse> {
        let r = req.into_inner();
        self.0.kill_container(&r.id, r.signal).await?;
        ok(v1::KillContainerResponse {})
    }

    async fn delete(
        &self,
        req: Request<v1::DeleteContainerRequest>,
    ) -> Res<v1::DeleteContainerResponse> {
        let r = req.into_inner();
        let id = self
            .0
            .delete_container(&r.id, r.force, r.remove_volumes)
            .await?;
        ok(v1::DeleteContainerResponse { id })
    }

    async fn list(
        &self,
        req: Request<v1::ListContainersRequest>,
    ) -> Res<v1::ListContainersResponse> {
        let all = req.into_inner().all;
        let containers = self
            .0
            .records()
            .iter()
            .filter(|r| all || r.phase == Phase::Running)
            .map(|r| self.0.info(r))
            .collect();
        ok(v1::ListContainersResponse { containers })
    }

    async fn inspect(
        &self,
        req: Request<v1::InspectContainerRequest>,
    ) -> Res<v1::InspectContainerResponse> {
        let id = self.0.lookup(&req.into_inner().id)?;
        let r = self.0.record(&id)?;
        ok(v1::InspectContainerResponse {
            container: Some(self.0.info(&r)),
        })
    }

    async fn logs(&self, req: Request<v1::LogsRequest>) -> Res<BoxStream<v1::LogChunk>> {
        let r = req.into_inner();
        let id = self.0.lookup(&r.id)?;
        let bundle = self.0.bundle(&id);
        let (tx, rx) = mpsc::channel(16);
        let daemon = Arc::clone(&self.0);
        if r.boot {
            let path = bundle.boot_log();
            tokio::spawn(async move {
                let data = tokio::fs::read(&path).await.unwrap_or_default();
                let data = match r.tail {
                    Some(n) => tail_bytes(&data, n as usize).to_vec(),
                    None => data,
                };
                for c in data.chunks(CHUNK) {
                    let chunk = v1::LogChunk {
                        stream: v1::OutputStream::Boot as i32,
                        data: c.to_vec(),
                        timestamp_ms: 0,
                    };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
            });
            return ok(boxed(rx));
        }
        let path = bundle.stdio_log();
        tokio::spawn(async move {
            let mut changes = daemon.changes.subscribe();
            let data = tokio::fs::read(&path).await.unwrap_or_default();
            // Only whole lines: a torn last line is picked up when following.
            let whole = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            let mut chunks: Vec<v1::LogChunk> = data[..whole]
                .split(|b| *b == b'\n')
                .filter_map(log_chunk)
                .collect();
            if let Some(n) = r.tail {
                let skip = chunks.len().saturating_sub(n as usize);
                chunks.drain(..skip);
            }
            for c in chunks {
                if tx.send(Ok(c)).await.is_err() {
                    return;
                }
            }
            if !r.follow {
                return;
            }
            let mut offset = whole as u64;
            loop {
                let running = daemon.record(&id).is_ok_and(|r| r.phase == Phase::Running);
                let data = tokio::fs::read(&path).await.unwrap_or_default();
                if (data.len() as u64) < offset {
                    offset = 0; // a restart began a new log
                }
                let new = &data[offset as usize..];
                let whole = new.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                for c in new[..whole].split(|b| *b == b'\n').filter_map(log_chunk) {
                    if tx.send(Ok(c)).await.is_err() {
                        return;
                    }
                }
                offset += whole as u64;
                if !running {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = changes.changed() => {}
                    _ = tx.closed() => return,
                }
            }
        });
        ok(boxed(rx))
    }

    async fn attach(
        &self,
        req: Request<Streaming<v1::StdioRequest>>,
    ) -> Res<BoxStream<v1::StdioResponse>> {
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .and_then(|m| m.request)
            .ok_or_else(|| {
                ApiError::invalid_argument("attach: the stream ended before `attach`")
            })?;
        let v1::stdio_request::Request::Attach(open) = first else {
            return Err(
                ApiError::invalid_argument("attach: the first message must be `attach`").into(),
            );
        };
        let daemon = Arc::clone(&self.0);
        let id = daemon.lookup(&open.id)?;
        let (tx, rx) = mpsc::channel(64);
        let record = daemon.record(&id)?;
        let (client, session) = if open.start && record.phase != Phase::Running {
            let lock = daemon.op_lock(&id)?;
            let _guard = lock.lock().await;
            let client = match daemon.spawn_runtime(&id).await {
                Ok(c) => c,
                Err(e) => {
                    daemon.networks.detach(&id).await;
                    // A program that cannot run is the container's exit (126/127), reported
                    // like any other exit; anything else is the daemon's error.
                    let code = daemon
                        .record(&id)
                        .ok()
                        .filter(|r| r.phase == Phase::Stopped)
                        .and_then(|r| r.exit_code)
                        .filter(|c| matches!(c, 126 | 127));
                    let Some(code) = code else {
                        return Err(e.into());
                    };
                    send_failure(&tx, &e.message, code).await;
                    drop(_guard);
                    daemon.after_exit(&id).await;
                    return ok(boxed(rx));
                }
            };
            let session = client.attach().await.map_err(runtime_error)?;
            if let Some(size) = &open.size {
                let _ = session
                    .input
                    .send(StdinEvent::Resize(size.height, size.width))
                    .await;
            }
            if let Err((e, code)) = daemon.start_init(&id, &client).await {
                send_failure(&tx, &e.message, code).await;
                return ok(boxed(rx));
            }
            (client, session)
        } else {
            let client = daemon.connect(&id).await?;
            let session = client.attach().await.map_err(runtime_error)?;
            (client, session)
        };
        let _ = tx
            .send(Ok(v1::StdioResponse {
                response: Some(v1::stdio_response::Response::Started(v1::Started {
                    exec_id: String::new(),
                })),
            }))
            .await;
        let started = daemon.record(&id)?.started_ms;
        pump_stdio(
            client,
            String::new(),
            open.stdin,
            input,
            Session::Attach(session),
            tx,
            Some((daemon, id, started)),
        );
        ok(boxed(rx))
    }

    async fn exec(
        &self,
        req: Request<Streaming<v1::StdioRequest>>,
    ) -> Res<BoxStream<v1::StdioResponse>> {
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .and_then(|m| m.request)
            .ok_or_else(|| ApiError::invalid_argument("exec: the stream ended before `exec`"))?;
        let v1::stdio_request::Request::Exec(open) = first else {
            return Err(
                ApiError::invalid_argument("exec: the first message must be `exec`").into(),
            );
        };
        if open.args.is_empty() {
            return Err(ApiError::invalid_argument("exec: no command given").into());
        }
        let id = self.0.lookup(&open.id)?;
        let client = self.0.connect(&id).await?;
        let size = open.size.unwrap_or_default();
        let mut session = client
            .exec(runtime::client::ExecSpec {
                args: open.args.clone(),
                env: open.env.clone(),
                cwd: open.working_dir.clone(),
                user: open.user.clone(),
                terminal: open.tty,
                stdin: open.stdin && !open.detach,
                rows: size.height,
                cols: size.width,
            })
            .await
            .map_err(runtime_error)?;
        let (tx, rx) = mpsc::channel(64);
        // The first event is `started` or a failure to start (exit code, reason on stderr).
        let exec_id = match session.next().await {
            Ok(Some(StdioEvent::Started { exec_id, .. })) => exec_id,
            Ok(other) => {
                let code = match other {
                    Some(StdioEvent::Exit(c)) => c,
                    _ => 126,
                };
                let _ = tx
                    .send(Ok(v1::StdioResponse {
                        response: Some(v1::stdio_response::Response::Exit(v1::Exit { code })),
                    }))
                    .await;
                return ok(boxed(rx));
            }
            Err(e) => {
                let code = match e.code() {
                    Some(tonic::Code::NotFound) => 127,
                    Some(tonic::Code::FailedPrecondition) | Some(tonic::Code::InvalidArgument) => {
                        126
                    }
                    _ => return Err(runtime_error(e).into()),
                };
                let message = match &e {
                    runtime::client::ClientError::Rpc { status, .. } => status.message().to_owned(),
                    other => other.to_string(),
                };
                let _ = tx
                    .send(Ok(v1::StdioResponse {
                        response: Some(v1::stdio_response::Response::Stderr(
                            format!("container: {}\n", one_line(&message)).into_bytes(),
                        )),
                    }))
                    .await;
                let _ = tx
                    .send(Ok(v1::StdioResponse {
                        response: Some(v1::stdio_response::Response::Exit(v1::Exit { code })),
                    }))
                    .await;
                return ok(boxed(rx));
            }
        };
        let _ = tx
            .send(Ok(v1::StdioResponse {
                response: Some(v1::stdio_response::Response::Started(v1::Started {
                    exec_id: exec_id.clone(),
                })),
            }))
            .await;
        if open.detach {
            // Keep draining so the exec runs to its end without a reader.
            tokio::spawn(async move { while let Ok(Some(_)) = session.next().await {} });
            return ok(boxed(rx));
        }
        pump_stdio(
            client,
            exec_id,
            open.stdin,
            input,
            Session::Exec(session),
            tx,
            None,
        );
        ok(boxed(rx))
    }

    async fn resize(&self, req: Request<v1::ResizeRequest>) -> Res<v1::ResizeResponse> {
        let r = req.into_inner();
        let id = self.0.lookup(&r.id)?;
        let client = self.0.connect(&id).await?;
        let size = r.size.unwrap_or_default();
        client
            .resize(&r.exec_id, size.height, size.width)
            .await
            .map_err(runtime_error)?;
        ok(v1::ResizeResponse {})
    }

    async fn stats(&self, req: Request<v1::StatsRequest>) -> Res<BoxStream<v1::StatsResponse>> {
        let r = req.into_inner();
        let ids: Vec<String> = if r.ids.is_empty() {
            self.0
                .records()
                .into_iter()
                .filter(|c| c.phase == Phase::Running)
                .map(|c| c.id)
                .collect()
        } else {
            r.ids
                .iter()
                .map(|k| self.0.lookup(k))
                .collect::<Result<_, _>>()?
        };
        for id in &ids {
            let rec = self.0.record(id)?;
            if rec.phase != Phase::Running {
                return Err(ApiError::failed_precondition(format!(
                    "container {} is not running",
                    rec.name
                ))
                .into());
            }
        }
        let daemon = Arc::clone(&self.0);
        let interval = Duration::from_millis(if r.interval_ms == 0 {
            2000
        } else {
            u64::from(r.interval_ms)
        });
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let mut stats = Vec::new();
                for id in &ids {
                    let Ok(client) = daemon.connect(id).await else {
                        continue;
                    };
                    match client.stats().await {
                        Ok(s) => stats.push(v1::ContainerStats {
                            id: id.clone(),
                            cpu_usage_usec: s.cpu_usage_usec,
                            memory_usage_bytes: s.memory_usage_bytes,
                            memory_limit_bytes: s.memory_limit_bytes,
                            network_rx_bytes: s.networks.iter().map(|n| n.rx_bytes).sum(),
                            network_tx_bytes: s.networks.iter().map(|n| n.tx_bytes).sum(),
                            block_read_bytes: s.block_read_bytes,
                            block_write_bytes: s.block_write_bytes,
                            num_processes: s.pids,
                            timestamp_ms: crate::fsutil::now_ms(),
                        }),
                        Err(e) => tracing::debug!(%id, "stats: {e}"),
                    }
                }
                if tx.send(Ok(v1::StatsResponse { stats })).await.is_err() || !r.stream {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        ok(boxed(rx))
    }

    async fn export(
        &self,
        req: Request<v1::ExportContainerRequest>,
    ) -> Res<BoxStream<v1::DataChunk>> {
        let id = self.0.lookup(&req.into_inner().id)?;
        let source = self.0.copy_source(&id).await?;
        let mut stream = source.client.export().await.map_err(runtime_error)?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            // A stopped container's maintenance VM lives as long as the stream.
            let _source = source;
            loop {
                match stream.message().await {
                    Ok(Some(c)) => {
                        if tx.send(Ok(v1::DataChunk { data: c.data })).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                }
            }
        });
        ok(boxed(rx))
    }

    async fn copy_in(&self, req: Request<Streaming<v1::CopyInRequest>>) -> Res<v1::CopyInResponse> {
        let mut input = req.into_inner();
        let Some(v1::copy_in_request::Part::Header(h)) =
            input.message().await?.and_then(|m| m.part)
        else {
            return Err(
                ApiError::invalid_argument("copy: the first message must be the header").into(),
            );
        };
        if !h.path.starts_with('/') {
            return Err(ApiError::invalid_argument(format!(
                "copy: {:?} is not an absolute path",
                h.path
            ))
            .into());
        }
        let id = self.0.lookup(&h.id)?;
        let client = self.0.connect(&id).await?;
        let (tx, rx) = mpsc::channel(8);
        let feeder = tokio::spawn(async move {
            while let Ok(Some(m)) = input.message().await {
                if let Some(v1::copy_in_request::Part::Data(d)) = m.part
                    && tx.send(d).await.is_err()
                {
                    return;
                }
            }
        });
        let result = client.copy_in(&h.path, rx).await;
        feeder.abort();
        result.map_err(runtime_error)?;
        ok(v1::CopyInResponse {})
    }

    async fn copy_out(
        &self,
        req: Request<v1::CopyOutRequest>,
    ) -> Res<BoxStream<v1::CopyOutResponse>> {
        let r = req.into_inner();
        let id = self.0.lookup(&r.id)?;
        let source = self.0.copy_source(&id).await?;
        let (stat, mut head, mut stream) = stat_and_stream(&source.client, &r.path).await?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let _source = source;
            use v1::copy_out_response::Part;
            if tx
                .send(Ok(v1::CopyOutResponse {
                    part: Some(Part::Stat(stat)),
                }))
                .await
                .is_err()
            {
                return;
            }
            if !head.is_empty() {
                let data = std::mem::take(&mut head);
                if tx
                    .send(Ok(v1::CopyOutResponse {
                        part: Some(Part::Data(data)),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            loop {
                match stream.message().await {
                    Ok(Some(c)) => {
                        if tx
                            .send(Ok(v1::CopyOutResponse {
                                part: Some(Part::Data(c.data)),
                            }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(s) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                }
            }
        });
        ok(boxed(rx))
    }

    async fn stat_path(&self, req: Request<v1::StatPathRequest>) -> Res<v1::StatPathResponse> {
        let r = req.into_inner();
        let id = self.0.lookup(&r.id)?;
        let source = self.0.copy_source(&id).await?;
        let (stat, _, _) = stat_and_stream(&source.client, &r.path).await?;
        ok(v1::StatPathResponse { stat: Some(stat) })
    }

    async fn prune(&self, _: Request<v1::PruneContainersRequest>) -> Res<v1::PruneResponse> {
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for r in self.0.records() {
            if r.phase == Phase::Running {
                continue;
            }
            let size = crate::fsutil::disk_usage(&self.0.dirs.dir(&r.id));
            if self.0.delete_container(&r.id, false, false).await.is_ok() {
                deleted.push(r.id);
                reclaimed += size;
            }
        }
        ok(v1::PruneResponse {
            deleted,
            reclaimed_bytes: reclaimed,
        })
    }

    async fn wait(&self, req: Request<v1::WaitContainerRequest>) -> Res<v1::WaitContainerResponse> {
        let r = req.into_inner();
        let condition =
            v1::WaitCondition::try_from(r.condition).unwrap_or(v1::WaitCondition::NotRunning);
        let exit_code = self.0.wait_container(&r.id, condition).await?;
        ok(v1::WaitContainerResponse { exit_code })
    }
}

/// A runtime to copy a container's files from; see [`Daemon::copy_source`].
pub(crate) struct CopySource {
    pub client: RuntimeClient,
    _maintenance: Option<Maintenance>,
}

/// A maintenance runtime and the op lock it holds; dropping it closes the runtime's stdin
/// (its signal to power the VM off), and the lock is released once the runtime has exited.
struct Maintenance {
    child: Option<tokio::process::Child>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        let (Some(mut child), guard) = (self.child.take(), self.guard.take()) else {
            return;
        };
        drop(child.stdin.take());
        let finish = async move {
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                tracing::warn!("the maintenance runtime did not exit in 30s; killing it");
                let _ = child.kill().await;
            }
            drop(guard);
        };
        // Without a runtime (the daemon is exiting) kill_on_drop ends the child.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(finish);
        }
    }
}

/// Tells an attached client that its process could not run: the reason on stderr, then
/// the exit code.
async fn send_failure(
    tx: &mpsc::Sender<Result<v1::StdioResponse, Status>>,
    message: &str,
    code: i32,
) {
    use v1::stdio_response::Response as R;
    let line = format!("container: {}\n", one_line(message));
    let _ = tx
        .send(Ok(v1::StdioResponse {
            response: Some(R::Stderr(line.into_bytes())),
        }))
        .await;
    let _ = tx
        .send(Ok(v1::StdioResponse {
            response: Some(R::Exit(v1::Exit { code })),
        }))
        .await;
}

/// The last `n` lines of `data`.
fn tail_bytes(data: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

/// Copies `path` out of the container far enough to read its first tar header; returns
/// the stat, the bytes read so far and the rest of the stream.
async fn stat_and_stream(
    client: &RuntimeClient,
    path: &str,
) -> Result<(v1::PathStat, Vec<u8>, Streaming<runtime::pb::DataChunk>), ApiError> {
    if !path.starts_with('/') {
        return Err(ApiError::invalid_argument(format!(
            "{path:?} is not an absolute path"
        )));
    }
    let mut stream = client.copy_out(path).await.map_err(runtime_error)?;
    let mut head = Vec::new();
    // GNU long names put a pseudo-entry first; read until a real header is complete.
    loop {
        if let Some(stat) = parse_first_entry(&head, path) {
            return Ok((stat, head, stream));
        }
        // Checked after parsing: one chunk from the guest is 256 KiB, header and all.
        if head.len() > 1 << 20 {
            return Err(ApiError::internal(format!(
                "copy of {path}: no tar header found"
            )));
        }
        match stream.message().await {
            Ok(Some(c)) => head.extend(c.data),
            Ok(None) => {
                return Err(ApiError::internal(format!(
                    "copy of {path}: the archive is empty"
                )));
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Err(ApiError::not_found(format!(
                    "{path}: no such file or directory"
                )));
            }
            Err(s) => return Err(ApiError::from(s)),
        }
    }
}

/// The stat of the first entry of a tar archive, once enough bytes are there.
fn parse_first_entry(data: &[u8], path: &str) -> Option<v1::PathStat> {
    // Headers are read block by block: the tar crate's reader wants the whole first entry
    // (2 MB for busybox) before it yields it.
    let mut off = 0;
    let mut long_link: Option<Vec<u8>> = None;
    let h = loop {
        let block = data.get(off..off + 512)?;
        if block.iter().all(|b| *b == 0) {
            return None; // the end of an archive holds no entry
        }
        let h = tar::Header::from_byte_slice(block);
        let size = h.entry_size().ok()? as usize;
        let padded = size.div_ceil(512) * 512;
        match h.entry_type() {
            tar::EntryType::GNULongName
            | tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader => {}
            tar::EntryType::GNULongLink => {
                let body = data.get(off + 512..off + 512 + size)?;
                long_link = Some(body.split(|b| *b == 0).next().unwrap_or_default().to_vec());
            }
            _ => break h,
        }
        off += 512 + padded;
    };
    let link_target = long_link
        .or_else(|| h.link_name_bytes().map(|l| l.into_owned()))
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    let kind = match h.entry_type() {
        tar::EntryType::Directory => libc::S_IFDIR,
        tar::EntryType::Symlink => libc::S_IFLNK,
        tar::EntryType::Char => libc::S_IFCHR,
        tar::EntryType::Block => libc::S_IFBLK,
        tar::EntryType::Fifo => libc::S_IFIFO,
        _ => libc::S_IFREG,
    };
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("/")
        .to_owned();
    Some(v1::PathStat {
        name,
        size: h.size().unwrap_or(0),
        mode: h.mode().unwrap_or(0) | kind,
        mtime_ms: h.mtime().unwrap_or(0) as i64 * 1000,
        link_target,
    })
}

enum Session {
    Attach(runtime::client::StdioSession),
    Exec(runtime::client::ExecSession),
}

impl Session {
    fn input(&self) -> mpsc::Sender<StdinEvent> {
        match self {
            Session::Attach(s) => s.input.clone(),
            Session::Exec(s) => s.input.clone(),
        }
    }

    async fn next(&mut self) -> Result<Option<StdioEvent>, runtime::client::ClientError> {
        match self {
            Session::Attach(s) => s.next().await,
            Session::Exec(s) => s.next().await,
        }
    }
}

/// Moves a client's stdin, resizes and signals to the runtime, and the runtime's output and
/// exit code back to the client. With `settle` (the init process of a container: daemon,
/// ID, start time), the exit is recorded before it is passed on, so a client that lists
/// containers right after `run` sees it exited, as with Docker.
#[allow(clippy::too_many_arguments)]
fn pump_stdio(
    client: RuntimeClient,
    exec_id: String,
    forward_stdin: bool,
    mut input: Streaming<v1::StdioRequest>,
    mut session: Session,
    tx: mpsc::Sender<Result<v1::StdioResponse, Status>>,
    settle: Option<(Arc<Daemon>, String, i64)>,
) {
    let up = session.input();
    let up_client = client.clone();
    let up_exec = exec_id.clone();
    let upstream = tokio::spawn(async move {
        use v1::stdio_request::Request as R;
        while let Ok(Some(m)) = input.message().await {
            match m.request {
                Some(R::Stdin(d)) if forward_stdin => {
                    let sent = up.send(StdinEvent::Data(d)).await;
                    if sent.is_err() {
                        return;
                    }
                }
                Some(R::CloseStdin(_)) if forward_stdin => {
                    let _ = up.send(StdinEvent::Close).await;
                }
                Some(R::Resize(s)) => {
                    let _ = up.send(StdinEvent::Resize(s.height, s.width)).await;
                }
                Some(R::Signal(sig)) => {
                    if let Ok(sig) = u32::try_from(sig) {
                        let _ = up_client.kill(sig, false, &up_exec).await;
                    }
                }
                _ => {}
            }
        }
    });
    tokio::spawn(async move {
        use v1::stdio_response::Response as R;
        loop {
            let msg = match session.next().await {
                Ok(Some(StdioEvent::Stdout(d))) => R::Stdout(d),
                Ok(Some(StdioEvent::Stderr(d))) => R::Stderr(d),
                Ok(Some(StdioEvent::Exit(code))) => {
                    if let Some((daemon, id, started)) = &settle {
                        daemon.record_exit(id, *started, code);
                    }
                    let _ = tx
                        .send(Ok(v1::StdioResponse {
                            response: Some(R::Exit(v1::Exit { code })),
                        }))
                        .await;
                    break;
                }
                Ok(Some(StdioEvent::Started { .. })) => continue,
                Ok(None) => {
                    // The stream ended without an exit code: ask the runtime for it.
                    let code = client.wait().await.map(|w| w.exit_code).unwrap_or(255);
                    let _ = tx
                        .send(Ok(v1::StdioResponse {
                            response: Some(R::Exit(v1::Exit { code })),
                        }))
                        .await;
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Err(runtime_error(e).into())).await;
                    break;
                }
            };
            if tx
                .send(Ok(v1::StdioResponse {
                    response: Some(msg),
                }))
                .await
                .is_err()
            {
                break;
            }
        }
        upstream.abort();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_bytes(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_bytes(b"a\nb\nc", 1), b"c");
        assert_eq!(tail_bytes(b"a\n", 5), b"a\n");
        assert_eq!(tail_bytes(b"a\n", 0), b"");
    }

    #[test]
    fn first_tar_entry_gives_the_stat() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_mtime(5);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "hosts", &b"abc"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(parse_first_entry(&data[..100], "/etc/hosts").is_none());
        let s = parse_first_entry(&data, "/etc/hosts").unwrap();
        assert_eq!(s.name, "hosts");
        assert_eq!(s.size, 3);
        assert_eq!(s.mode, 0o644 | libc::S_IFREG);
        assert_eq!(s.mtime_ms, 5000);
    }
}
