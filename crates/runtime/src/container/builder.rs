//! The builder VM: one VM that runs the RUN steps of builds (`container-runtime --builder`).
//!
//! Guest layout (the scratch disk, serial "scratch", mounted at [`SCRATCH`]):
//! ```text
//! /scratch/layers/<n>/      a layer the daemon added, unpacked in overlay form
//! /scratch/steps/<n>/upper  a step's changes; kept as a lower layer once its diff id is known
//! /scratch/steps/<n>/work   overlayfs's work dir
//! /scratch/steps/<n>/root   the overlay the step's process pivots into
//! /scratch/steps/<n>/stubs  mount points the step's mounts need and its lowers lack (the
//!                           topmost lower), so nothing but the step's changes is in upper
//! /scratch/steps/<n>/bind<i>/{upper,work,root}   a bind mount's own overlay (writes dropped)
//! /scratch/empty/           the lower of a step with no layers (FROM scratch)
//! /scratch/etc/             hosts, resolv.conf and hostname, bind-mounted into every step
//! /run/buildsecrets/<n>/    a tmpfs per step holding its secrets, unmounted after the step
//! /run/buildssh/<n>-<i>.sock   an ssh agent relay
//! /run/buildcache/          the host's cache-mount directory (virtio-fs tag "buildcache")
//! ```
//! Directories on one scratch disk stand for "a fresh disk per step": each step's upper is a
//! new directory that nothing else writes, and one disk needs one boot-time attachment
//! instead of a hot-plug per step.

use std::collections::HashMap;

use runtime_api::builder::{BuilderConfig, BuilderDir, pb as bpb};

use super::boot::{boot_vm, connect_agent, console_tail, guest_mount, vm_runtime_dir};
use super::oci::{DOCKER_DEFAULT_CAPS, default_mounts};
use super::prepare::{EtcFiles, PrepareError, Steps, etc_steps, network_steps};
use super::*;

/// Where the scratch disk is mounted in the guest.
pub const SCRATCH: &str = "/scratch";
const SECRETS: &str = "/run/buildsecrets";
const SSH_SOCKETS: &str = "/run/buildssh";
const CACHE_MOUNTS: &str = "/run/buildcache";
/// The virtio-fs tag of the cache-mount share.
const CACHE_TAG: &str = "buildcache";
/// PATH for a step whose environment has none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The first host vsock port of the ssh agent relays.
const SSH_PORTS: u32 = 0x4000_0000;

/// The mount points of a step's `mounts` (spec mounts, in the order vminitd mounts them)
/// that must exist in its root: a destination below an earlier mount's is made inside that
/// mount (a /dev tmpfs, a bind source), never in the root, so it needs none.
fn mount_points(
    mounts: &[Value],
    file_targets: &std::collections::HashSet<String>,
) -> Vec<pb::StepMountPoint> {
    let destinations: Vec<&str> = mounts
        .iter()
        .filter_map(|m| m["destination"].as_str())
        .collect();
    destinations
        .iter()
        .enumerate()
        .filter(|(i, d)| {
            !destinations[..*i]
                .iter()
                .any(|earlier| *earlier != "/" && below(d, earlier))
        })
        .map(|(_, d)| pb::StepMountPoint {
            path: d.to_string(),
            file: file_targets.contains(*d),
        })
        .collect()
}

/// Whether the clean absolute path `path` lies strictly below `dir`.
fn below(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir.trim_end_matches('/'))
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

/// A finished step, until it is captured and kept (or forgotten).
#[derive(Debug, Clone)]
struct StepDirs {
    upper: String,
    exclude: Vec<String>,
}

/// The builder VM, its agent and what it holds.
pub struct BuilderVm {
    pub vm: Arc<dyn VirtualMachine>,
    pub agent: AgentClient,
    pub config: BuilderConfig,
    /// Layer key -> its guest directory.
    layers: Mutex<HashMap<String, String>>,
    /// One AddLayer unpacks at a time, so two builds adding the same base do not race.
    adding: tokio::sync::Mutex<()>,
    steps: Mutex<HashMap<u32, StepDirs>>,
    next_step: AtomicU32,
    next_layer: AtomicU32,
    next_port: AtomicU32,
    _vm_tmp_dir: Option<tempfile::TempDir>,
}

fn invalid(m: impl Into<String>) -> ContainerError {
    ContainerError::InvalidArgument(m.into())
}

/// A cache-mount name the guest may use as one path component.
fn check_name(name: &str) -> Result<(), ContainerError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(format!("invalid cache mount name {name:?}")));
    }
    Ok(())
}

/// An absolute path in a step's root, without `..`: `/a/./b/` -> `/a/b`.
fn clean_target(path: &str) -> Result<String, ContainerError> {
    if !path.starts_with('/') {
        return Err(invalid(format!("{path:?} is not an absolute path")));
    }
    let mut parts = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(invalid(format!("{path:?} leaves the root"))),
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

impl BuilderVm {
    /// Formats the scratch disk, boots the VM and prepares the guest layout. On failure the
    /// VM is killed.
    pub async fn boot(dir: &BuilderDir, config: BuilderConfig) -> Result<Self, ContainerError> {
        let scratch = dir.scratch();
        let size = config.scratch_size_bytes;
        let scratch_path = scratch.clone();
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_file(&scratch_path);
            let options = ext4::Options {
                label: "builder-scratch".into(),
                ..ext4::Options::default()
            };
            ext4::format_empty(&scratch_path, size, &options)
        })
        .await
        .map_err(|e| ContainerError::Io {
            op: "formatting the scratch disk".into(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| ContainerError::WritableLayer {
            path: scratch.clone(),
            source,
        })?;
        std::fs::create_dir_all(&config.cache_dir)
            .map_err(io_err(format!("creating {}", config.cache_dir.display())))?;
        let bundle = dir.bundle();
        let (runtime_dir, tmp_dir) = vm_runtime_dir(&bundle)?;
        let vm_config = VmConfig {
            arch: config.arch,
            kernel: config.kernel.clone(),
            initrd: Some(config.initramfs.clone()),
            cmdline: config.kernel_args.clone(),
            cpus: config.cpus.max(1),
            memory_mib: config.vm_memory_mib(),
            disks: vec![DiskConfig {
                id: "scratch".into(),
                path: scratch,
                read_only: false,
            }],
            nics: config
                .networks
                .iter()
                .map(|n| NicConfig {
                    mac: n.mac.clone(),
                    attachment: n.attachment.clone(),
                })
                .collect(),
            shares: vec![ShareConfig {
                tag: CACHE_TAG.into(),
                host_path: config.cache_dir.clone(),
                read_only: false,
            }],
            console_log: Some(bundle.boot_log()),
            runtime_dir,
            rosetta: false,
        };
        let (vm, _) = boot_vm(vm_config).await?;
        match Self::set_up(&vm, &config).await {
            Ok(agent) => Ok(BuilderVm {
                vm,
                agent,
                config,
                layers: Mutex::new(HashMap::new()),
                adding: tokio::sync::Mutex::new(()),
                steps: Mutex::new(HashMap::new()),
                next_step: AtomicU32::new(1),
                next_layer: AtomicU32::new(1),
                next_port: AtomicU32::new(SSH_PORTS),
                _vm_tmp_dir: tmp_dir,
            }),
            Err(e) => {
                vm.kill().await;
                tracing::error!(
                    "builder vm: {e}; console tail:\n{}",
                    console_tail(&bundle.boot_log())
                );
                Err(e)
            }
        }
    }

    /// Prepares the guest in one batch: the clock, the scratch disk, the cache share, the
    /// secrets' tmpfs, the NICs, the layout's directories and the /etc files every step
    /// gets.
    async fn set_up(
        vm: &Arc<dyn VirtualMachine>,
        config: &BuilderConfig,
    ) -> Result<AgentClient, ContainerError> {
        let agent = connect_agent(vm.as_ref()).await?;
        let mut steps = Steps::default();
        steps.set_clock();
        steps.mount(
            "block-serial:scratch".into(),
            SCRATCH.into(),
            "ext4",
            vec![],
        );
        steps.mount(CACHE_TAG.into(), CACHE_MOUNTS.into(), "virtiofs", vec![]);
        steps.mount(
            "tmpfs".into(),
            SECRETS.into(),
            "tmpfs",
            vec!["mode=700".into()],
        );
        network_steps(&mut steps, &config.networks);
        for d in ["layers", "steps", "empty", "etc"] {
            steps.mkdir(format!("{SCRATCH}/{d}"));
        }
        steps.mkdir(SSH_SOCKETS.into());
        let etc = EtcFiles {
            dir: format!("{SCRATCH}/etc"),
            hostname: "buildkitsandbox",
            networks: &config.networks,
            extra_hosts: &[],
            dns: &config.dns,
        };
        etc_steps(&mut steps, &etc, true);
        steps
            .send(&agent)
            .await
            .map_err(PrepareError::into_container_error)?;
        Ok(agent)
    }

    /// The layer keys the builder holds.
    pub fn layer_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .layers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    pub fn steps_run(&self) -> u32 {
        self.next_step.load(Ordering::Relaxed).saturating_sub(1)
    }

    fn layer_dir(&self, key: &str) -> Option<String> {
        self.layers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Unpacks the layer `key` from `data` (uncompressed tar chunks) unless it is held.
    /// Returns false when it was held already (the data is not read).
    pub async fn add_layer(
        &self,
        key: &str,
        data: impl tokio_stream::Stream<Item = Vec<u8>> + Send + 'static,
    ) -> Result<bool, ContainerError> {
        let _one = self.adding.lock().await;
        if self.layer_dir(key).is_some() {
            return Ok(false);
        }
        let n = self.next_layer.fetch_add(1, Ordering::Relaxed);
        let dir = format!("{SCRATCH}/layers/{n}");
        mkdir(&self.agent, &dir, 0o755, 0, 0).await?;
        use agent::v1::copy_in_request::Part;
        use tokio_stream::StreamExt;
        let header = pb::CopyInRequest {
            part: Some(Part::Header(pb::CopyInHeader {
                destination: dir.clone(),
                root: String::new(),
                overlay_layer: true,
            })),
        };
        let parts = tokio_stream::once(header).chain(data.map(|d| pb::CopyInRequest {
            part: Some(Part::Data(d)),
        }));
        self.agent
            .copy_in(parts)
            .await
            .map_err(agent_err(format!("unpacking layer {key}")))?;
        self.layers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), dir);
        Ok(true)
    }

    /// The guest directories of `keys`, top first, as overlayfs's lowerdir wants them.
    fn lowers(&self, keys: &[String]) -> Result<Vec<String>, ContainerError> {
        let mut dirs = Vec::new();
        for k in keys.iter().rev() {
            dirs.push(self.layer_dir(k).ok_or_else(|| {
                ContainerError::FailedPrecondition(format!("the builder does not hold layer {k}"))
            })?);
        }
        if dirs.is_empty() {
            dirs.push(format!("{SCRATCH}/empty"));
        }
        Ok(dirs)
    }

    /// Mounts an overlay of `layers` with a fresh upper under `dir`; returns (root, upper).
    async fn overlay(
        &self,
        dir: &str,
        layers: &[String],
    ) -> Result<(String, String), ContainerError> {
        let lowers = self.lowers(layers)?.join(":");
        let (upper, work, root) = (
            format!("{dir}/upper"),
            format!("{dir}/work"),
            format!("{dir}/root"),
        );
        // Each is a round trip to the guest: they go out together.
        tokio::try_join!(
            mkdir(&self.agent, &upper, 0o755, 0, 0),
            mkdir(&self.agent, &work, 0o755, 0, 0),
            mkdir(&self.agent, &root, 0o755, 0, 0),
        )?;
        guest_mount(
            &self.agent,
            "overlay".into(),
            root.clone(),
            "overlay",
            vec![format!("lowerdir={lowers},upperdir={upper},workdir={work}")],
        )
        .await?;
        Ok((root, upper))
    }

    /// Runs one step; sends its output and finally its exit to `events`.
    pub async fn run_step(
        self: &Arc<Self>,
        request: bpb::RunStepRequest,
        events: mpsc::Sender<Result<bpb::RunStepEvent, tonic::Status>>,
    ) -> Result<(), ContainerError> {
        if request.args.is_empty() {
            return Err(invalid("the step has no command"));
        }
        let started = std::time::Instant::now();
        let id = self.next_step.fetch_add(1, Ordering::Relaxed);
        let dir = format!("{SCRATCH}/steps/{id}");
        let (root, upper) = (format!("{dir}/root"), format!("{dir}/upper"));
        let lowers = self.lowers(&request.layers)?;
        let cwd = if request.cwd.is_empty() {
            "/".to_string()
        } else {
            clean_target(&request.cwd)?
        };
        let mut mounts = default_mounts(64 << 20);
        let mut etc = vec!["hosts", "hostname"];
        if !request.no_network {
            etc.push("resolv.conf");
        }
        for f in etc {
            mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind",
                "source": format!("{SCRATCH}/etc/{f}"), "options": ["rbind", "rprivate", "ro"]}));
        }
        let mut env = request.env.clone();
        // Mount targets that are files (the rest are directories), for the stubs below.
        let mut file_targets: std::collections::HashSet<String> =
            ["hosts", "hostname", "resolv.conf"]
                .iter()
                .map(|f| format!("/etc/{f}"))
                .collect();
        let mut secrets_dir = None;
        let mut relays = Vec::new();
        let mut bind_roots = Vec::new();
        for (i, m) in request.mounts.iter().enumerate() {
            let target = clean_target(&m.target)?;
            use bpb::step_mount::Kind;
            match &m.kind {
                Some(Kind::Secret(s)) => {
                    let sdir = format!("{SECRETS}/{id}");
                    if secrets_dir.is_none() {
                        guest_mount(
                            &self.agent,
                            "tmpfs".into(),
                            sdir.clone(),
                            "tmpfs",
                            vec!["mode=755".into(), "size=16m".into()],
                        )
                        .await?;
                        secrets_dir = Some(sdir.clone());
                    }
                    let file = format!("{sdir}/{i}");
                    self.agent
                        .write_file(pb::WriteFileRequest {
                            path: file.clone(),
                            data: s.data.clone(),
                            mode: if s.mode == 0 { 0o400 } else { s.mode },
                            append: false,
                            create_parents: false,
                        })
                        .await
                        .map_err(agent_err("writing a secret"))?;
                    file_targets.insert(target.clone());
                    mounts.push(json!({"destination": target, "type": "bind",
                        "source": file, "options": ["rbind", "rprivate", "ro"]}));
                }
                Some(Kind::Cache(c)) => {
                    check_name(&c.name)?;
                    let source = format!("{CACHE_MOUNTS}/{}", c.name);
                    let mode = if c.mode == 0 { 0o755 } else { c.mode };
                    mkdir(&self.agent, &source, mode, c.uid, c.gid).await?;
                    let mut options = vec!["rbind", "rprivate"];
                    if c.readonly {
                        options.push("ro");
                    }
                    mounts.push(json!({"destination": target, "type": "bind",
                        "source": source, "options": options}));
                }
                Some(Kind::Bind(b)) => {
                    let (broot, _) = self.overlay(&format!("{dir}/bind{i}"), &b.layers).await?;
                    bind_roots.push(broot.clone());
                    let source = clean_target(if b.source.is_empty() { "/" } else { &b.source })?;
                    // The source is bound by its guest path: no component may be a
                    // symbolic link, which would resolve in the builder VM's own tree.
                    let mut at = String::new();
                    let mut is_file = false;
                    for part in source.split('/').filter(|p| !p.is_empty()) {
                        at.push('/');
                        at.push_str(part);
                        let st = self
                            .agent
                            .stat(pb::StatRequest {
                                path: format!("{broot}{at}"),
                            })
                            .await
                            .map_err(agent_err("looking up a bind mount's source"))?;
                        if !st.exists {
                            return Err(ContainerError::NotFound(format!(
                                "bind mount source {source} not found"
                            )));
                        }
                        if st.mode & 0o170000 == 0o120000 {
                            return Err(invalid(format!(
                                "bind mount source {source}: {at} is a symbolic link"
                            )));
                        }
                        is_file = st.mode & 0o170000 != 0o040000;
                    }
                    if is_file {
                        file_targets.insert(target.clone());
                    }
                    let mut options = vec!["rbind", "rprivate"];
                    if !b.rw {
                        options.push("ro");
                    }
                    mounts.push(json!({"destination": target, "type": "bind",
                        "source": format!("{broot}{source}"), "options": options}));
                }
                Some(Kind::Tmpfs(t)) => {
                    let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                    if t.size > 0 {
                        options.push(format!("size={}", t.size));
                    }
                    mounts.push(json!({"destination": target, "type": "tmpfs",
                        "source": "tmpfs", "options": options}));
                }
                Some(Kind::Ssh(s)) => {
                    let port = self.next_port.fetch_add(1, Ordering::Relaxed);
                    let mut listener = self.vm.listen(port).await?;
                    let sock = format!("{SSH_SOCKETS}/{id}-{i}.sock");
                    self.agent
                        .serve_socket(pb::ServeSocketRequest {
                            path: sock.clone(),
                            port,
                        })
                        .await
                        .map_err(agent_err("relaying the ssh agent"))?;
                    let host = std::path::PathBuf::from(&s.host_socket);
                    relays.push(tokio::spawn(async move {
                        while let Ok(stream) = listener.accept().await {
                            let host = host.clone();
                            tokio::spawn(async move {
                                match tokio::net::UnixStream::connect(&host).await {
                                    Ok(h) => {
                                        let _ = agent::relay::splice(h, stream).await;
                                    }
                                    Err(e) => tracing::warn!(
                                        "connecting to the ssh agent {}: {e}",
                                        host.display()
                                    ),
                                }
                            });
                        }
                    }));
                    file_targets.insert(target.clone());
                    mounts.push(json!({"destination": target, "type": "bind",
                        "source": sock, "options": ["rbind", "rprivate"]}));
                }
                None => return Err(invalid("a mount of no kind")),
            }
        }
        let prepared = started.elapsed();
        // The step's root is mounted in the same batch as its process is created: the guest
        // looks up the mount points and makes the ones the layers lack in a stub lower.
        let root_step = pb::StepRootRequest {
            dir: dir.clone(),
            lowers,
            mount_points: mount_points(&mounts, &file_targets),
        };
        let exclude = Vec::new();
        // A missing working directory is made by vminitd inside the step's root, after
        // pivot_root, so a symbolic link in the image cannot point it elsewhere.
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        let mut namespaces = vec![
            json!({"type": "pid"}),
            json!({"type": "mount"}),
            json!({"type": "ipc"}),
            json!({"type": "uts"}),
            json!({"type": "cgroup"}),
        ];
        if request.no_network {
            namespaces.push(json!({"type": "network"}));
        }
        let hostname = if request.hostname.is_empty() {
            "buildkitsandbox".to_string()
        } else {
            request.hostname.clone()
        };
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {
                "args": request.args,
                "env": env,
                "cwd": cwd,
                "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": DOCKER_DEFAULT_CAPS,
                                 "effective": DOCKER_DEFAULT_CAPS,
                                 "permitted": DOCKER_DEFAULT_CAPS},
            },
            "root": {"path": root, "readonly": false},
            "hostname": hostname,
            "mounts": mounts,
            "linux": {"namespaces": namespaces},
        });
        let process_id = format!("step-{id}");
        let result = self
            .run_process(&process_id, root_step, &spec, &request.user, &events)
            .await;
        let ran = started.elapsed();
        for r in relays {
            r.abort();
        }
        // The step's mounts go with its container; its overlays and secrets go now.
        if let Some(s) = secrets_dir {
            let _ = self
                .agent
                .umount(pb::UmountRequest {
                    target: s,
                    lazy: true,
                })
                .await;
        }
        for r in bind_roots.into_iter().chain(std::iter::once(root)) {
            let _ = self
                .agent
                .umount(pb::UmountRequest {
                    target: r,
                    lazy: false,
                })
                .await;
        }
        let code = result?;
        tracing::info!(
            step = id,
            exit = code,
            ?prepared,
            ?ran,
            total = ?started.elapsed(),
            "step finished"
        );
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, StepDirs { upper, exclude });
        let _ = events
            .send(Ok(bpb::RunStepEvent {
                event: Some(bpb::run_step_event::Event::Exit(bpb::StepExit {
                    exit_code: code,
                    step_id: id,
                })),
            }))
            .await;
        Ok(())
    }

    /// Mounts the step's root and creates its process in one batch, then starts and waits
    /// for it, forwarding its output.
    async fn run_process(
        &self,
        id: &str,
        root: pb::StepRootRequest,
        spec: &Value,
        user: &str,
        events: &mpsc::Sender<Result<bpb::RunStepEvent, tonic::Status>>,
    ) -> Result<i32, ContainerError> {
        let out_port = self.next_port.fetch_add(2, Ordering::Relaxed);
        let err_port = out_port + 1;
        let out_listener = self.vm.listen(out_port).await?;
        let err_listener = self.vm.listen(err_port).await?;
        let create = pb::CreateProcessRequest {
            id: id.to_string(),
            container_id: id.to_string(),
            oci_spec: serde_json::to_vec(spec).map_err(|e| invalid(format!("spec: {e}")))?,
            stdio: Some(pb::StdioPorts {
                stdin_port: 0,
                stdout_port: out_port,
                stderr_port: err_port,
            }),
            terminal: false,
            user: user.to_string(),
            init: false,
        };
        let mut steps = super::prepare::Steps::default();
        steps.push(
            "mounting the step's root",
            "MountStepRoot",
            pb::prepare_step::Step::StepRoot(root),
        );
        steps.push(
            "creating the step's process",
            "CreateProcess",
            pb::prepare_step::Step::CreateProcess(create),
        );
        let t0 = std::time::Instant::now();
        let prepare = steps.send(&self.agent);
        let accept = async {
            tokio::try_join!(
                super::stdio::accept(Some(out_listener), "stdout"),
                super::stdio::accept(Some(err_listener), "stderr"),
            )
        };
        tokio::pin!(prepare, accept);
        // The guest dials the stdio ports only once the root is mounted and the process is
        // being created: a failed batch ends the wait for them.
        let mut stdio = None;
        let prepared = loop {
            tokio::select! {
                prepared = &mut prepare => break prepared,
                accepted = &mut accept, if stdio.is_none() => stdio = Some(accepted),
            }
        };
        prepared.map_err(super::prepare::PrepareError::into_container_error)?;
        let (out, err) = match stdio {
            Some(accepted) => accepted?,
            None => accept.await?,
        };
        let started = self
            .agent
            .start_process(pb::ProcessRef { id: id.to_string() })
            .await
            .map_err(agent_err("starting the step's process"));
        if let Err(e) = started {
            let _ = self
                .agent
                .delete_process(pb::ProcessRef { id: id.to_string() })
                .await;
            return Err(e);
        }
        let t_started = t0.elapsed();
        let mut pumps = Vec::new();
        for (stream, stderr) in [(out, false), (err, true)] {
            if let Some(mut s) = stream {
                let events = events.clone();
                pumps.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                use bpb::run_step_event::Event;
                                let data = buf[..n].to_vec();
                                let event = if stderr {
                                    Event::Stderr(data)
                                } else {
                                    Event::Stdout(data)
                                };
                                // A client that went away still gets the step drained.
                                let _ = events
                                    .send(Ok(bpb::RunStepEvent { event: Some(event) }))
                                    .await;
                            }
                        }
                    }
                }));
            }
        }
        let code = self
            .agent
            .wait_process(pb::ProcessRef { id: id.to_string() })
            .await
            .map(|w| w.exit_code);
        let t_exited = t0.elapsed();
        for p in pumps {
            let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        }
        let _ = self
            .agent
            .delete_process(pb::ProcessRef { id: id.to_string() })
            .await;
        tracing::info!(process = id, started = ?t_started, exited = ?t_exited, deleted = ?t0.elapsed(), "step process");
        code.map_err(agent_err("waiting for the step's process"))
    }

    /// Streams a finished step's upper as a layer tar.
    pub async fn capture(
        &self,
        step_id: u32,
        source_date_epoch: Option<i64>,
    ) -> Result<tonic::Streaming<wire::v1::DataChunk>, ContainerError> {
        let step = self
            .steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&step_id)
            .cloned()
            .ok_or_else(|| ContainerError::NotFound(format!("no finished step {step_id}")))?;
        self.agent
            .capture_layer(pb::CaptureLayerRequest {
                upper_dir: step.upper,
                source_date_epoch,
                exclude: step.exclude,
            })
            .await
            .map_err(agent_err("capturing the step's layer"))
    }

    /// Keeps a finished step's upper as the layer `key`.
    pub fn keep(&self, step_id: u32, key: &str) -> Result<(), ContainerError> {
        let step = self
            .steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&step_id)
            .ok_or_else(|| ContainerError::NotFound(format!("no finished step {step_id}")))?;
        self.layers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_insert(step.upper);
        Ok(())
    }

    /// Syncs and powers the VM off (killed when it does not stop in time).
    pub async fn shutdown(&self) {
        let agent = self.agent.clone();
        let graceful = Box::pin(async move {
            let _ = agent
                .shutdown(pb::ShutdownRequest { grace_seconds: 1 })
                .await;
        });
        let stopped = self.vm.stop(graceful, SHUTDOWN_TIMEOUT).await;
        tracing::info!(exit = %stopped.exit, forced = stopped.forced, "builder vm stopped");
    }
}

async fn mkdir(
    agent: &AgentClient,
    path: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), ContainerError> {
    agent
        .mkdir(pb::MkdirRequest {
            path: path.to_string(),
            mode,
            parents: true,
            uid,
            gid,
        })
        .await
        .map(|_| ())
        .map_err(agent_err(format!("creating {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_below_an_earlier_mount_need_no_stub() {
        let mounts = vec![
            json!({"destination": "/dev", "type": "tmpfs"}),
            json!({"destination": "/dev/pts", "type": "devpts"}),
            json!({"destination": "/devices", "type": "tmpfs"}),
            json!({"destination": "/etc/hosts", "type": "bind"}),
            json!({"destination": "/cache", "type": "bind"}),
            json!({"destination": "/cache/sub", "type": "tmpfs"}),
        ];
        let files: std::collections::HashSet<String> = ["/etc/hosts".to_string()].into();
        let points: Vec<(String, bool)> = mount_points(&mounts, &files)
            .into_iter()
            .map(|p| (p.path, p.file))
            .collect();
        assert_eq!(
            points,
            [
                ("/dev".to_string(), false),
                ("/devices".to_string(), false),
                ("/etc/hosts".to_string(), true),
                ("/cache".to_string(), false),
            ]
        );
    }

    #[test]
    fn targets_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_target("/a/./b/").unwrap(), "/a/b");
        assert_eq!(clean_target("/").unwrap(), "/");
        assert!(clean_target("/a/../../etc").is_err());
        assert!(clean_target("rel").is_err());
        assert!(check_name("go-build.1").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("..").is_err());
    }
}
