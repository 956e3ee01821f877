//! The builder VM, from the daemon's side: spawning `container-runtime --builder DIR`,
//! the build's [`build::StepRunner`] over its API, and `builder start|status|stop|delete`.
//!
//! A build uses the builder `builder start` keeps running (arch permitting), else it boots
//! one of its own at its first RUN that misses the cache, and stops it when it ends: an
//! all-cached rebuild boots nothing. The daemon holds each builder runtime's stdin; closing
//! it (the build ended, `builder stop`, or the daemon died) powers the VM off.
//!
//! Layout under `<app root>/builder/`:
//! ```text
//! vm/             the kept builder's directory (runtime_api::builder::BuilderDir)
//! vms/<random>/   a build's own builder, removed after the build
//! cache-mounts/   one directory per `RUN --mount=type=cache` id (hashed), shared into
//!                 every builder VM with virtio-fs, kept across builds until `builder delete`;
//!                 `<name>.p<random>/` a `sharing=private` step's own, removed after it
//! cache-locks/    one lock file per cache id, flocked by `sharing=locked|private` steps
//! ```
//! Two builds that use one cache id at once share its directory, as BuildKit's default
//! `sharing=shared` does: the host file system (through virtiofsd) serialises their file
//! operations, so neither can corrupt it, and neither sees a half-written directory entry.
//! `locked`, `private` and `from=` are [`crate::cache_mount`]'s.

use crate::chan_reader::ChanReader;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::ApiError;
use runtime_api::builder::{BuilderClient, pb};
use tokio::sync::mpsc;

use crate::builder_vm::{
    BuilderProcess, DEFAULT_CPUS, DEFAULT_MEMORY, builder_root, cache_mounts_dir, spawn,
};
use crate::daemon::Daemon;
use crate::errors::one_line;

/// How long a status call to the kept builder may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn kept_dir(daemon: &Daemon) -> PathBuf {
    builder_root(&daemon.app_root).join("vm")
}

/// The guest architecture that runs steps for `platform`.
fn arch_for(platform: &spec::Platform) -> Result<vmm::Arch, String> {
    match platform.architecture.as_str() {
        "amd64" => Ok(vmm::Arch::X86_64),
        "arm64" => Ok(vmm::Arch::Aarch64),
        other => Err(format!("RUN for {other} images: there is no {other} guest")),
    }
}

/// Bytes under `dir` (files only, links not followed).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// The builder a build uses: the kept one, or its own (booted at the first RUN). One per
/// build, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Lease {
    Kept(BuilderClient),
    Own(BuilderProcess),
}

impl Lease {
    fn client(&self) -> BuilderClient {
        match self {
            Lease::Kept(c) => c.clone(),
            Lease::Own(p) => p.client.clone(),
        }
    }
}

/// The builder for steps of `arch`: the kept one when it runs that architecture, else a
/// new one of the build's own.
async fn acquire(daemon: Arc<Daemon>, arch: vmm::Arch) -> Result<Lease, ApiError> {
    {
        let kept = daemon.builder.lock().await;
        if let Some(k) = kept.as_ref()
            && k.arch == arch
        {
            return Ok(Lease::Kept(k.client.clone()));
        }
    }
    let vms = builder_root(&daemon.app_root).join("vms");
    statefs::create_private_dir(&builder_root(&daemon.app_root))
        .and_then(|()| statefs::create_private_dir(&vms))
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", vms.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("b")
        .tempdir_in(&vms)
        .map_err(|e| ApiError::internal(format!("creating a builder directory: {e}")))?
        .keep();
    spawn(
        &daemon.app_root,
        &daemon.runtime_binary,
        dir,
        true,
        arch,
        DEFAULT_CPUS,
        DEFAULT_MEMORY,
    )
    .await
    .map(Lease::Own)
}

/// A builder being acquired in the background, for steps of its architecture.
type Booting = (vmm::Arch, tokio::task::JoinHandle<Result<Lease, ApiError>>);

/// A build's [`build::StepRunner`]: RUN steps in a builder VM.
pub(crate) struct DaemonSteps {
    pub daemon: Arc<Daemon>,
    pub handle: tokio::runtime::Handle,
    /// `--secret` values by id.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--ssh` agent sockets by id.
    pub ssh: BTreeMap<String, String>,
    lease: Mutex<Option<Lease>>,
    /// The builder [`build::StepRunner::will_run`] started acquiring, until a step takes it.
    booting: Mutex<Option<Booting>>,
    /// Layer keys the builder holds (so each is sent once).
    held: Mutex<HashSet<String>>,
    context_layer: Mutex<Option<build::layer::Layer>>,
}

/// A step's mounts as the builder takes them.
struct StepMounts {
    mounts: Vec<pb::StepMount>,
    /// Variables the mounts add (`SSH_AUTH_SOCK`).
    env: Vec<String>,
    /// Cache-mount locks and private directories, released when the step is done.
    _holds: Vec<crate::cache_mount::Hold>,
}

fn step_err(kind: oci::ErrorKind, message: impl Into<String>) -> build::BuildError {
    build::BuildError::Image {
        kind,
        message: message.into(),
    }
}

fn api_kind(e: &ApiError) -> oci::ErrorKind {
    match e.kind {
        api::ErrorKind::NotFound => oci::ErrorKind::NotFound,
        api::ErrorKind::InvalidArgument => oci::ErrorKind::InvalidArgument,
        api::ErrorKind::Unavailable => oci::ErrorKind::Unavailable,
        api::ErrorKind::FailedPrecondition => oci::ErrorKind::FailedPrecondition,
        _ => oci::ErrorKind::Internal,
    }
}

fn status_err(what: &str, s: tonic::Status) -> build::BuildError {
    let kind = match s.code() {
        tonic::Code::NotFound => oci::ErrorKind::NotFound,
        tonic::Code::InvalidArgument => oci::ErrorKind::InvalidArgument,
        tonic::Code::FailedPrecondition => oci::ErrorKind::FailedPrecondition,
        tonic::Code::Unavailable => oci::ErrorKind::Unavailable,
        _ => oci::ErrorKind::Internal,
    };
    step_err(kind, format!("{what}: {}", one_line(s.message())))
}

impl DaemonSteps {
    pub(crate) fn new(
        daemon: Arc<Daemon>,
        handle: tokio::runtime::Handle,
        secrets: BTreeMap<String, Vec<u8>>,
        ssh: BTreeMap<String, String>,
    ) -> Self {
        DaemonSteps {
            daemon,
            handle,
            secrets,
            ssh,
            lease: Mutex::new(None),
            booting: Mutex::new(None),
            held: Mutex::new(HashSet::new()),
            context_layer: Mutex::new(None),
        }
    }

    /// Whether this build booted a builder (an all-cached build boots none).
    pub(crate) fn booted(&self) -> bool {
        self.lease
            .lock()
            .map(|l| matches!(*l, Some(Lease::Own(_))))
            .unwrap_or(false)
    }

    /// Stops the build's own builder (the kept one stays), also one that was booted for the
    /// build and never used (it failed before its first RUN).
    pub(crate) async fn finish(&self) {
        let lease = self.lease.lock().ok().and_then(|mut l| l.take());
        let booting = self.booting.lock().ok().and_then(|mut b| b.take());
        let unused = match booting {
            Some((_, task)) => task.await.ok().and_then(Result::ok),
            None => None,
        };
        for l in [lease, unused].into_iter().flatten() {
            if let Lease::Own(p) = l {
                p.stop().await;
            }
        }
    }

    fn client(&self, platform: &spec::Platform) -> build::Result<BuilderClient> {
        let mut lease = self
            .lease
            .lock()
            .map_err(|_| step_err(oci::ErrorKind::Internal, "the builder lock is poisoned"))?;
        if let Some(l) = lease.as_ref() {
            return Ok(l.client());
        }
        let arch = arch_for(platform).map_err(|m| step_err(oci::ErrorKind::InvalidArgument, m))?;
        let booting = self
            .booting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|(a, _)| *a == arch);
        let new = match booting {
            Some((_, task)) => self.handle.block_on(task).unwrap_or_else(|e| {
                Err(ApiError::internal(format!("booting the builder vm: {e}")))
            }),
            None => self
                .handle
                .block_on(acquire(Arc::clone(&self.daemon), arch)),
        };
        let new = new.map_err(|e| step_err(api_kind(&e), e.message.clone()))?;
        if let Lease::Kept(c) = &new {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.extend(c.status.layers.iter().cloned());
        }
        let client = new.client();
        *lease = Some(new);
        Ok(client)
    }

    /// Sends `layer` to the builder unless it holds it.
    fn ensure_layer(
        &self,
        client: &BuilderClient,
        layer: &build::layer::Layer,
    ) -> build::Result<()> {
        if self
            .held
            .lock()
            .map(|h| h.contains(&layer.diff_id))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let mut reader = oci::open_layer(self.daemon.store.content(), &layer.descriptor)?;
        let (tx, rx) = mpsc::channel::<pb::AddLayerRequest>(4);
        let mut raw = client.raw.clone();
        let call = self.handle.spawn(async move {
            raw.add_layer(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        use pb::add_layer_request::Part;
        let send = |part: Part| {
            tx.blocking_send(pb::AddLayerRequest { part: Some(part) })
                .is_ok()
        };
        if send(Part::Header(pb::AddLayerHeader {
            key: layer.diff_id.clone(),
        })) {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).map_err(|e| {
                    step_err(
                        oci::ErrorKind::Internal,
                        format!("reading layer {}: {e}", layer.diff_id),
                    )
                })?;
                if n == 0 || !send(Part::Data(buf[..n].to_vec())) {
                    break;
                }
            }
        }
        drop(tx);
        self.handle
            .block_on(call)
            .map_err(|e| step_err(oci::ErrorKind::Internal, e.to_string()))?
            .map_err(|s| {
                status_err(
                    &format!("unpacking layer {} in the builder", layer.diff_id),
                    s,
                )
            })?;
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(layer.diff_id.clone());
        Ok(())
    }

    fn context(&self, context: &Path) -> build::Result<build::layer::Layer> {
        let mut cached = self.context_layer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = cached.as_ref() {
            return Ok(l.clone());
        }
        let layer = build::run::context_layer(self.daemon.store.content(), context)?;
        *cached = Some(layer.clone());
        Ok(layer)
    }

    /// `VAR=value` for each `RUN --mount=type=secret,env=VAR` whose secret was given. The
    /// value goes to the step's process only: the history and the cache key never see it.
    fn secret_env(&self, step: &build::RunStep) -> build::Result<Vec<String>> {
        let mut out = Vec::new();
        for s in &step.secret_env {
            let Some(data) = self.secrets.get(&s.id) else {
                if s.required {
                    return Err(step_err(
                        oci::ErrorKind::InvalidArgument,
                        format!(
                            "secret {} is required but was not given with --secret",
                            s.id
                        ),
                    ));
                }
                continue;
            };
            let value = std::str::from_utf8(data)
                .ok()
                .filter(|v| !v.contains('\0'))
                .ok_or_else(|| {
                    step_err(
                        oci::ErrorKind::InvalidArgument,
                        format!(
                            "secret {} cannot be the variable {}: it is not text without NUL bytes",
                            s.id, s.var
                        ),
                    )
                })?;
            out.push(format!("{}={value}", s.var));
        }
        Ok(out)
    }

    /// The step's mounts for the builder, secrets and agents filled in; env to add; and the
    /// cache-mount locks and private directories to hold until the step ends.
    fn mounts(
        &self,
        client: &BuilderClient,
        step: &build::RunStep,
        output: &mut dyn FnMut(&[u8]),
    ) -> build::Result<StepMounts> {
        use build::step::{BindFrom, StepMountKind};
        use pb::step_mount::Kind;
        let mut out = Vec::new();
        let mut env = Vec::new();
        let mut holds = Vec::new();
        for m in &step.mounts {
            let kind = match &m.kind {
                StepMountKind::Secret { id, required } => match self.secrets.get(id) {
                    Some(data) => Kind::Secret(pb::SecretMount {
                        data: data.clone(),
                        mode: m.mode.unwrap_or(0o400),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    }),
                    None if *required => {
                        return Err(step_err(
                            oci::ErrorKind::InvalidArgument,
                            format!("secret {id} is required but was not given with --secret"),
                        ));
                    }
                    None => continue,
                },
                StepMountKind::Ssh { id, required } => match self.ssh.get(id) {
                    Some(path) => {
                        if env.is_empty() {
                            env.push(format!("SSH_AUTH_SOCK={}", m.target));
                        }
                        Kind::Ssh(pb::SshMount {
                            host_socket: path.clone(),
                            mode: m.mode.unwrap_or(0o600),
                            uid: m.uid.unwrap_or(0),
                            gid: m.gid.unwrap_or(0),
                        })
                    }
                    None if *required => {
                        return Err(step_err(
                            oci::ErrorKind::InvalidArgument,
                            format!("ssh agent {id} is required but was not given with --ssh"),
                        ));
                    }
                    None => continue,
                },
                StepMountKind::Cache {
                    id,
                    readonly,
                    sharing,
                    seed,
                } => {
                    let prepared = crate::cache_mount::prepare(
                        &self.daemon.app_root,
                        self.daemon.store.content(),
                        id,
                        *sharing,
                        seed.as_ref(),
                        &mut || {
                            output(
                                format!("waiting for the cache mount {id} (sharing=locked)\n")
                                    .as_bytes(),
                            )
                        },
                    )
                    .map_err(|m| step_err(oci::ErrorKind::Internal, m))?;
                    holds.extend(prepared.hold);
                    Kind::Cache(pb::CacheMount {
                        name: prepared.name,
                        readonly: *readonly,
                        mode: m.mode.unwrap_or(0o755),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    })
                }
                StepMountKind::Tmpfs { size } => Kind::Tmpfs(pb::TmpfsMount {
                    size: size.unwrap_or(0),
                }),
                StepMountKind::Bind { from, source, rw } => {
                    let layers = match from {
                        BindFrom::Layers(l) => l.clone(),
                        BindFrom::Context => vec![self.context(&step.context)?],
                    };
                    for l in &layers {
                        self.ensure_layer(client, l)?;
                    }
                    Kind::Bind(pb::BindMount {
                        layers: layers.iter().map(|l| l.diff_id.clone()).collect(),
                        source: source.clone(),
                        rw: *rw,
                    })
                }
            };
            out.push(pb::StepMount {
                target: m.target.clone(),
                kind: Some(kind),
            });
        }
        Ok(StepMounts {
            mounts: out,
            env,
            _holds: holds,
        })
    }
}

impl build::StepRunner for DaemonSteps {
    fn will_run(&self, platform: &spec::Platform) {
        let Ok(arch) = arch_for(platform) else {
            return; // the first RUN reports it
        };
        let leased = self.lease.lock().map(|l| l.is_some()).unwrap_or(true);
        let mut booting = self.booting.lock().unwrap_or_else(|e| e.into_inner());
        if leased || booting.is_some() {
            return;
        }
        tracing::info!("the build runs RUN steps: starting its builder now");
        let task = self.handle.spawn(acquire(Arc::clone(&self.daemon), arch));
        *booting = Some((arch, task));
    }

    fn run(
        &self,
        step: &build::RunStep,
        output: &mut dyn FnMut(&[u8]),
    ) -> build::Result<build::StepOutcome> {
        let client = self.client(&step.platform)?;
        for l in &step.layers {
            self.ensure_layer(&client, l)?;
        }
        // Held until this function returns: the step and its capture are done then.
        let StepMounts {
            mounts,
            env: mount_env,
            _holds,
        } = self.mounts(&client, step, output)?;
        let mut env = step.env.clone();
        env.extend(mount_env);
        env.extend(self.secret_env(step)?);
        let request = pb::RunStepRequest {
            layers: step.layers.iter().map(|l| l.diff_id.clone()).collect(),
            args: step.args.clone(),
            env,
            cwd: step.cwd.clone(),
            user: step.user.clone(),
            no_network: step.no_network,
            mounts,
            hostname: String::new(),
        };
        let mut raw = client.raw.clone();
        let mut events = self
            .handle
            .block_on(raw.run_step(request))
            .map_err(|s| status_err("running the step", s))?
            .into_inner();
        let mut exit = None;
        while let Some(event) = self
            .handle
            .block_on(events.message())
            .map_err(|s| status_err("running the step", s))?
        {
            use pb::run_step_event::Event;
            match event.event {
                Some(Event::Stdout(d)) | Some(Event::Stderr(d)) => output(&d),
                Some(Event::Exit(e)) => exit = Some(e),
                None => {}
            }
        }
        let Some(exit) = exit else {
            return Err(step_err(
                oci::ErrorKind::Unavailable,
                "the builder ended the step without its exit code",
            ));
        };
        if exit.exit_code != 0 {
            return Ok(build::StepOutcome {
                exit_code: exit.exit_code,
                layer: None,
            });
        }
        let mut stream = self
            .handle
            .block_on(raw.capture_step(pb::CaptureStepRequest {
                step_id: exit.step_id,
                source_date_epoch: step.source_date_epoch,
            }))
            .map_err(|s| status_err("capturing the step's layer", s))?
            .into_inner();
        let (tx, rx) = mpsc::channel(4);
        let pump = self.handle.spawn(async move {
            loop {
                let msg = match stream.message().await {
                    Ok(Some(c)) => Ok(c.data),
                    Ok(None) => break,
                    Err(s) => Err(format!("capturing the layer: {}", s.message())),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    break;
                }
            }
        });
        let reader = ChanReader::new(rx);
        // The guest's tar is checked before anything is stored.
        let captured = oci::capture::ingest_layer(
            Some(self.daemon.store.content()),
            reader,
            oci::capture::CaptureLimits::default(),
        );
        pump.abort();
        let captured = captured.map_err(|e| step_err(e.kind(), spec::error_chain(&e)))?;
        let Some((digest, size)) = captured.blob else {
            return Err(step_err(
                oci::ErrorKind::Internal,
                "the step's layer was not stored",
            ));
        };
        let diff_id = captured.diff_id.to_string();
        self.handle
            .block_on(raw.keep_step(pb::KeepStepRequest {
                step_id: exit.step_id,
                key: diff_id.clone(),
            }))
            .map_err(|s| status_err("keeping the step's layer", s))?;
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(diff_id.clone());
        Ok(build::StepOutcome {
            exit_code: 0,
            layer: Some(build::layer::Layer {
                descriptor: oci::Descriptor {
                    media_type: oci::media_type::OCI_LAYER_GZIP.to_string(),
                    digest,
                    size,
                    platform: None,
                    annotations: Default::default(),
                    urls: Vec::new(),
                },
                diff_id,
            }),
        })
    }
}

/// The kept builder's status.
pub(crate) async fn status(daemon: &Arc<Daemon>) -> api::v1::BuilderStatus {
    let cache = cache_mounts_dir(&daemon.app_root);
    let cache_bytes = tokio::task::spawn_blocking(move || dir_bytes(&cache))
        .await
        .unwrap_or(0);
    let kept = daemon.builder.lock().await;
    let Some(k) = kept.as_ref() else {
        return api::v1::BuilderStatus {
            cache_bytes,
            ..Default::default()
        };
    };
    let mut raw = k.client.raw.clone();
    let live = tokio::time::timeout(CONNECT_TIMEOUT, raw.status(pb::StatusRequest {}))
        .await
        .ok()
        .and_then(Result::ok)
        .map(tonic::Response::into_inner);
    api::v1::BuilderStatus {
        running: live.is_some(),
        cpus: k.cpus,
        memory_bytes: k.memory,
        cache_bytes,
        pid: k.pid(),
        layers: live.as_ref().map_or(0, |s| s.layers.len() as u32),
        steps: live.as_ref().map_or(0, |s| s.steps),
    }
}

/// `builder start`.
pub(crate) async fn start(
    daemon: &Arc<Daemon>,
    cpus: u32,
    memory: u64,
) -> Result<api::v1::BuilderStatus, ApiError> {
    {
        let mut kept = daemon.builder.lock().await;
        if let Some(k) = kept.as_mut() {
            let alive = k
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if alive {
                return Err(ApiError::already_exists("the builder is already running"));
            }
            *kept = None;
        }
        let cpus = if cpus == 0 { DEFAULT_CPUS } else { cpus };
        let memory = if memory == 0 { DEFAULT_MEMORY } else { memory };
        let process = spawn(
            &daemon.app_root,
            &daemon.runtime_binary,
            kept_dir(daemon),
            false,
            vmm::Arch::host(),
            cpus,
            memory,
        )
        .await?;
        *kept = Some(process);
    }
    Ok(status(daemon).await)
}

/// `builder stop`.
pub(crate) async fn stop(daemon: &Arc<Daemon>) -> api::v1::BuilderStatus {
    let kept = daemon.builder.lock().await.take();
    if let Some(k) = kept {
        k.stop().await;
    }
    status(daemon).await
}

/// `builder delete`: stop, then remove the kept builder's directory and the cache mounts.
pub(crate) async fn delete(daemon: &Arc<Daemon>) -> Result<api::v1::BuilderStatus, ApiError> {
    let _ = stop(daemon).await;
    for dir in [
        kept_dir(daemon),
        cache_mounts_dir(&daemon.app_root),
        crate::cache_mount::locks_dir(&daemon.app_root),
    ] {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("removing {}: {e}", dir.display())))?;
    }
    Ok(status(daemon).await)
}
