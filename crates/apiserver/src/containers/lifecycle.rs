//! A container's life: create, start (the runtime's config, its process, its network),
//! the monitor that records its exit and applies `--rm` and restart policies, stop, kill,
//! delete and wait.
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
use runtime_api::client::RuntimeClient;

use super::{BOOT_TIMEOUT, CONNECT_TIMEOUT, runtime_error, state_enum};
use crate::daemon::{Daemon, Entry, blocking, mark_stopped};
use crate::errors::one_line;
use crate::record::{ContainerRecord, Phase};

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

/// `-P`: publishes every exposed port (the image's and `--expose`'s) that no `-p` publishes
/// yet on a free host port, chosen now and recorded in the container's ports so `port` and
/// inspect show it and every start binds the same one. Without `-P` the exposed ports are
/// only checked.
fn publish_exposed(config: &mut v1::ContainerConfig, image: &[String]) -> Result<(), ApiError> {
    let mut exposed = Vec::new();
    let mut add = |first: u16, last: u16, proto| {
        for port in first..=last {
            if !exposed.contains(&(port, proto)) {
                exposed.push((port, proto));
            }
        }
    };
    for text in &config.expose {
        let (first, last, proto) =
            spec::parse_expose(text).map_err(|e| ApiError::invalid_argument(e.to_string()))?;
        add(first, last, proto);
    }
    if !config.publish_all {
        return Ok(());
    }
    // The image's own list is not the user's to fix: a protocol we cannot publish (sctp)
    // is skipped, as Docker's -P skips what it cannot bind.
    for text in image {
        if let Ok((first, last, proto)) = spec::parse_expose(text) {
            add(first, last, proto);
        }
    }
    let wire = |p: spec::Protocol| match p {
        spec::Protocol::Tcp => v1::Protocol::Tcp as i32,
        spec::Protocol::Udp => v1::Protocol::Udp as i32,
    };
    for (port, proto) in exposed {
        let published = config.ports.iter().any(|m| {
            m.protocol == wire(proto)
                && (m.container_port..m.container_port + m.count.max(1)).contains(&u32::from(port))
        });
        if published {
            continue;
        }
        let host_port = free_port(proto).map_err(|e| {
            ApiError::unavailable(format!("finding a free host port for {port}/{proto}: {e}"))
        })?;
        config.ports.push(v1::PortMapping {
            host_ip: String::new(),
            host_port: u32::from(host_port),
            container_port: u32::from(port),
            count: 1,
            protocol: wire(proto),
        });
    }
    Ok(())
}

/// A host port free right now, from the kernel's ephemeral range (as Docker's `-P`).
fn free_port(proto: spec::Protocol) -> std::io::Result<u16> {
    let any = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    match proto {
        spec::Protocol::Tcp => std::net::TcpListener::bind(any)?.local_addr(),
        spec::Protocol::Udp => std::net::UdpSocket::bind(any)?.local_addr(),
    }
    .map(|a| a.port())
}

/// How many containers `system stop` stops at once. A stop mostly waits (the grace period,
/// then the VM's shutdown); the bound keeps hundreds of VMs from shutting down at the same
/// moment on a small host.
const STOP_ALL_PARALLEL: usize = 50;

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
            health: r
                .healthcheck
                .as_ref()
                .and(r.health.as_ref())
                .map(crate::health::HealthState::to_wire),
            healthcheck: r
                .healthcheck
                .as_ref()
                .map(crate::health::HealthConfig::to_wire),
            paused: r.paused && r.phase == Phase::Running,
        }
    }

    /// The guest for an image of `platform` (`--rosetta` as given), by this host and the
    /// `build.rosetta` property.
    fn choose_guest(
        &self,
        platform: &oci::Platform,
        rosetta: bool,
    ) -> Result<crate::guest::GuestChoice, ApiError> {
        let host = crate::guest::HostGuests::this_host(self.properties.build_rosetta());
        crate::guest::choose(platform, rosetta, &host).map_err(|e| match e {
            crate::kernel::KernelError::Invalid(_) => ApiError::failed_precondition(e.to_string()),
            e => e.into(),
        })
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
                    .map_err(|e| ApiError::invalid_argument(e.to_string()))?,
            )
        };
        let (image_ref, resolved) = self
            .image_for_container(&config.image, platform.clone(), &pull)
            .await?;
        let mut warnings = Vec::new();
        let image_platform = resolved.config.platform();
        // An image of another architecture runs in a guest of its own architecture; refuse
        // now what no guest can run, rather than at start.
        self.choose_guest(&image_platform, config.rosetta)?;
        let healthcheck = crate::health::resolve(
            resolved.config.healthcheck.as_ref(),
            config.healthcheck.as_ref(),
        )
        .map_err(|e| ApiError::invalid_argument(e.to_string()))?;
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
        publish_exposed(&mut config, &resolved.config.exposed_ports)?;
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
            arch: vmm::Arch::host(),
            rosetta: false,
            default_cpus: self.properties.default_cpus(),
            default_memory: self.properties.default_memory(),
            volumes: crate::volumes::dir(&self.app_root),
            layer_templates: self.app_root.join("templates"),
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
            options: crate::options::ContainerOptions::from(&config),
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
            healthcheck,
            health: None,
            paused: false,
        };
        self.dirs
            .create(&record)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let image = record.image_ref.clone();
        self.container_event(&record, "create", &[]);
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

    /// Releases what a container holds on its networks, with a `disconnect` event for each.
    pub(crate) async fn disconnect(&self, id: &str) {
        for network in self.networks.detach(id).await {
            self.network_event("disconnect", &network, &[("container", id)]);
        }
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
    pub(crate) async fn runtime_config(
        self: &Arc<Self>,
        id: &str,
        network: crate::runspec::NetworkPlan,
    ) -> Result<runtime_api::config::RuntimeConfig, ApiError> {
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
        let guest = self.choose_guest(&image_config.platform(), options.rosetta)?;
        let (kernel, initramfs) = crate::kernel::guest_files(&self.app_root, guest.arch)?;
        let host = crate::runspec::Host {
            bundle: dir.clone(),
            rootfs,
            kernel,
            initramfs,
            arch: guest.arch,
            rosetta: guest.rosetta,
            default_cpus: self.properties.default_cpus(),
            default_memory: self.properties.default_memory(),
            volumes: crate::volumes::dir(&self.app_root),
            layer_templates: self.app_root.join("templates"),
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

    /// Spawns the container's runtime and waits until it serves (VM booted, init process
    /// created). The caller holds the container's op lock.
    pub(crate) async fn spawn_runtime(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<RuntimeClient, ApiError> {
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
                self.disconnect(id).await;
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

        // A pre-booted guest of the right shape skips the boot; anything else boots cold.
        let (pid, mut exited_rx) = match self.pool.claim(&rc, &bundle).await {
            Some(claimed) => claimed,
            None => self.spawn_cold_runtime(id, &bundle)?,
        };
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if bundle.socket().exists()
                && let Ok(client) = RuntimeClient::connect(&bundle.socket(), CONNECT_TIMEOUT).await
            {
                return Ok(client);
            }
            let state = runtime_api::State::load(&bundle.state()).ok();
            let failed = state
                .as_ref()
                .is_some_and(|s| s.status == runtime_api::Status::Stopped);
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

    /// Spawns `container-runtime --bundle DIR` for container `id`; returns its pid and a
    /// watch that turns true when it exits.
    fn spawn_cold_runtime(
        &self,
        id: &str,
        bundle: &runtime_api::Bundle,
    ) -> Result<(u32, tokio::sync::watch::Receiver<bool>), ApiError> {
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
        let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
        // Reap the child when it exits; if the daemon dies first, init adopts it.
        tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = exited_tx.send(true);
        });
        Ok((pid, exited_rx))
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
        self.disconnect(id).await;
        let attachments = self.networks.attach(id, name, &requests).await?;
        for a in &attachments {
            self.network_event("connect", &a.network, &[("container", id)]);
        }
        Ok(crate::runspec::NetworkPlan::Bridge(attachments))
    }

    /// Starts the init process of a booted runtime and records the container running, or
    /// records why it could not start. Returns the Docker exit code on a start failure.
    pub(crate) async fn start_init(
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
                    // Each run starts its health afresh, as Docker's.
                    r.health = r
                        .healthcheck
                        .as_ref()
                        .map(|_| crate::health::HealthState::starting());
                })
                .map_err(|e| (e, 125))?;
                self.watch_health(id);
                let me = Arc::clone(self);
                let id = id.to_owned();
                tokio::spawn(async move { me.monitor(id).await });
                Ok(())
            }
            Err(e) => {
                let bundle = self.bundle(id);
                let state = runtime_api::State::load(&bundle.state()).ok();
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
                self.disconnect(&id).await;
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
        // The end comes from the runtime's Wait answer over its socket; when the runtime
        // dies without answering (its lock is released), from the last record in its bundle.
        let mut waited = match RuntimeClient::connect(&bundle.socket(), CONNECT_TIMEOUT).await {
            Ok(client) => client.wait().await.ok(),
            Err(_) => None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let state = loop {
            if let Some(w) = &waited {
                break Some(runtime_api::State {
                    status: runtime_api::Status::Stopped,
                    exit_code: Some(w.exit_code),
                    finished_at: Some(w.finished_at.clone()).filter(|t| !t.is_empty()),
                    error: Some(w.error.clone()).filter(|e| !e.is_empty()),
                    ..runtime_api::State::new(&id)
                });
            }
            if !bundle.runtime_alive() || Instant::now() >= deadline {
                break runtime_api::State::load(&bundle.state()).ok();
            }
            // Re-adopted runtime not answering yet, or a dropped connection: poll slowly.
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(c) = RuntimeClient::connect(&bundle.socket(), CONNECT_TIMEOUT).await {
                waited = c.wait().await.ok();
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
        self.disconnect(id).await;
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
                // Docker's order: kill (the stop signal), die, stop.
                let shown = Some(signal)
                    .filter(|s| *s != 0)
                    .or_else(|| {
                        let o = r.options().ok()?;
                        u32::try_from(o.stop_signal).ok().filter(|s| *s != 0)
                    })
                    .unwrap_or(libc::SIGTERM as u32);
                self.container_event(&r, "kill", &[("signal", shown.to_string())]);
                let code = client
                    .stop(
                        (signal != 0).then_some(signal),
                        timeout.map(|t| Duration::from_secs(u64::from(t))),
                    )
                    .await
                    .map_err(runtime_error)?;
                self.wait_stopped(&id, r.started_ms).await;
                if let Ok(now) = self.record(&id) {
                    self.container_event(&now, "stop", &[]);
                }
                Ok(code)
            }
            Err(_) => {
                // The runtime is gone: record what it left.
                let state = runtime_api::State::load(&self.bundle(&id).state()).ok();
                let r = self.update(&id, |r| {
                    mark_stopped(r, state.as_ref());
                    r.stopped_by_user |= by_user;
                })?;
                Ok(r.exit_code.unwrap_or(0))
            }
        }
    }

    /// Stops every running container, [`STOP_ALL_PARALLEL`] at a time, each with its own
    /// stop signal and timeout (what `system stop` does before the daemon exits; Apple's
    /// tool stops them too), and waits until each one's runtime (and so its VM) is gone.
    /// Returns how many were stopped; failures are logged, not fatal: the daemon is going
    /// away either way.
    pub async fn stop_all(self: &Arc<Self>) -> usize {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let running: Vec<String> = self
            .records()
            .into_iter()
            .filter(|r| r.phase == Phase::Running)
            .map(|r| r.id)
            .collect();
        let permits = Arc::new(tokio::sync::Semaphore::new(STOP_ALL_PARALLEL));
        let mut tasks = tokio::task::JoinSet::new();
        for id in running {
            let me = Arc::clone(self);
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = me.stop_container_as(&id, 0, None, false).await;
                // Its end is recorded; the runtime only lingers for late callers. One whose
                // stop failed is left as it is: it may still run its container.
                if result.is_ok() {
                    me.reap_runtime(&id, Duration::from_secs(30)).await;
                }
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
        client
            .kill(signal, false, "")
            .await
            .map_err(runtime_error)?;
        // The runtime thaws a paused container before it signals it.
        let _ = self.update(&id, |r| r.paused = false);
        if let Ok(r) = self.record(&id) {
            let shown = if signal == 0 { 9 } else { signal };
            self.container_event(&r, "kill", &[("signal", shown.to_string())]);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(container_port: u32, host_port: u32) -> v1::PortMapping {
        v1::PortMapping {
            host_ip: String::new(),
            host_port,
            container_port,
            count: 1,
            protocol: v1::Protocol::Tcp as i32,
        }
    }

    #[test]
    fn publish_all_gives_each_unpublished_exposed_port_a_free_host_port() {
        let mut c = v1::ContainerConfig {
            publish_all: true,
            expose: vec!["8080".into(), "53/udp".into()],
            ports: vec![tcp(80, 8000)],
            ..Default::default()
        };
        publish_exposed(
            &mut c,
            &["80/tcp".into(), "443/tcp".into(), "132/sctp".into()],
        )
        .unwrap();
        let mut got: Vec<(u32, i32)> = c
            .ports
            .iter()
            .map(|p| (p.container_port, p.protocol))
            .collect();
        got.sort();
        let udp = v1::Protocol::Udp as i32;
        let tcp_ = v1::Protocol::Tcp as i32;
        assert_eq!(got, [(53, udp), (80, tcp_), (443, tcp_), (8080, tcp_)]);
        // -p 80 kept its host port; the rest got real, distinct ones.
        assert_eq!(c.ports[0].host_port, 8000);
        assert!(c.ports[1..].iter().all(|p| p.host_port != 0));
    }

    #[test]
    fn exposed_ports_are_checked_but_not_published_without_publish_all() {
        let mut c = v1::ContainerConfig {
            expose: vec!["8080".into()],
            ..Default::default()
        };
        publish_exposed(&mut c, &[]).unwrap();
        assert!(c.ports.is_empty());
        c.expose = vec!["80/sctp".into()];
        let e = publish_exposed(&mut c, &[]).unwrap_err();
        assert!(
            e.message.contains("invalid exposed port \"80/sctp\""),
            "{}",
            e.message
        );
    }
}
