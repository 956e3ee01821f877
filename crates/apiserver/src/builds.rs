//! `container build`: the `Builds` service over crates/build.
//!
//! The client streams a header and the context (a tar it filtered through
//! `.dockerignore`); the daemon unpacks the context as it arrives into a private work
//! directory under `<app root>/builder/work/`, hashing each file on the way in
//! ([`crate::build_context`]), runs the build in a blocking task with base images pulled
//! through the same path `run` uses, names the result and streams progress back. The cache
//! lives in `<app root>/builder/cache/` (crates/build's layout) and survives restarts;
//! `PruneCache` empties it. Contexts the CLI names by key are kept between builds in
//! `<app root>/builder/contexts/<key>/` ([`crate::build_context::KeptContext`]), so a
//! rebuild writes only the files that changed; `PruneCache` removes them too. A failed build names nothing and leaves no work directory.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::ApiError;
use api::v1;
use api::v1::builds_server::Builds;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::daemon::{Daemon, blocking};
use crate::errors::{oci_error, one_line};

type Res<T> = Result<Response<T>, Status>;

/// Where the builder keeps its state under the app root.
const BUILDER_DIR: &str = "builder";
/// Contexts kept between builds, under the builder's directory.
const CONTEXTS_DIR: &str = "contexts";

impl Daemon {
    /// The build cache.
    pub(crate) fn build_cache(&self) -> Result<build::Cache, ApiError> {
        build::Cache::open(self.app_root.join(BUILDER_DIR).join("cache"))
            .map_err(|e| oci_error(e.kind(), e))
    }
}

/// Base images for a build, pulled as `run` pulls them.
struct DaemonImages {
    daemon: Arc<Daemon>,
    handle: tokio::runtime::Handle,
    pull: bool,
    /// References already pulled by this build (`--pull` pulls each once).
    pulled: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl build::BaseImages for DaemonImages {
    fn get(&self, reference: &str, platform: &spec::Platform) -> build::Result<oci::ResolvedImage> {
        let first = self
            .pulled
            .lock()
            .map(|mut p| p.insert(reference.to_string()))
            .unwrap_or(true);
        let policy = if self.pull && first {
            v1::PullPolicy::Always
        } else {
            v1::PullPolicy::Missing
        };
        let pull = v1::ImagePull {
            policy: policy as i32,
            ..Default::default()
        };
        self.handle
            .block_on(
                self.daemon
                    .image_for_container(reference, Some(platform.clone()), &pull),
            )
            .map(|(_, image)| image)
            .map_err(|e| build::BuildError::Image {
                kind: match e.kind {
                    api::ErrorKind::NotFound => oci::ErrorKind::NotFound,
                    api::ErrorKind::InvalidArgument => oci::ErrorKind::InvalidArgument,
                    api::ErrorKind::Unavailable => oci::ErrorKind::Unavailable,
                    api::ErrorKind::FailedPrecondition => oci::ErrorKind::FailedPrecondition,
                    _ => oci::ErrorKind::Internal,
                },
                message: format!("base image {reference}: {}", e.message),
            })
    }

    fn fetch(&self, url: &str, dest: &std::path::Path) -> build::Result<()> {
        self.handle
            .block_on(self.fetch_async(url, dest))
            .map_err(|message| build::BuildError::Image {
                kind: oci::ErrorKind::Unavailable,
                message: one_line(&message),
            })
    }
}

/// How long an `ADD <url>` download may take.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl DaemonImages {
    async fn fetch_async(&self, url: &str, dest: &std::path::Path) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        // reqwest is built without a bundled TLS provider (as in crates/oci): install ring
        // once per process; an error only means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let mut resp = client.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the server answered {}", resp.status()));
        }
        let mut f = tokio::fs::File::create(dest)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            f.write_all(&chunk).await.map_err(|e| e.to_string())?;
        }
        f.flush().await.map_err(|e| e.to_string())
    }
}

fn event_message(e: build::Event) -> v1::BuildResponse {
    use v1::build_response::Event as E;
    let event = match e {
        build::Event::Step {
            number,
            stage,
            index,
            count,
            instruction,
        } => E::Step(v1::BuildStep {
            number,
            stage,
            index,
            count,
            instruction,
        }),
        build::Event::Done {
            number,
            cached,
            duration,
        } => E::Done(v1::BuildStepDone {
            number,
            cached,
            duration_ms: duration.as_millis() as u64,
        }),
        build::Event::Log { number, text } => E::Log(v1::BuildLog { number, text }),
        build::Event::Warning(w) => E::Warning(w),
        build::Event::Planned { steps } => E::Planned(v1::BuildPlanned { steps }),
    };
    v1::BuildResponse { event: Some(event) }
}

/// The Builds service.
pub struct BuildsService(pub Arc<Daemon>);

#[tonic::async_trait]
impl Builds for BuildsService {
    async fn build(
        &self,
        req: Request<Streaming<v1::BuildRequest>>,
    ) -> Res<BoxStream<v1::BuildResponse>> {
        use v1::build_request::Part;
        let mut input = req.into_inner();
        let Some(Part::Header(header)) = input.message().await?.and_then(|m| m.part) else {
            return Err(
                ApiError::invalid_argument("build: the first message must be the header").into(),
            );
        };
        let daemon = Arc::clone(&self.0);
        let platform = if header.platform.is_empty() {
            spec::Platform::host()
        } else {
            header
                .platform
                .parse::<spec::Platform>()
                .map_err(|e| ApiError::invalid_argument(e.to_string()))?
        };
        let tags = header
            .tags
            .iter()
            .map(|t| daemon.parse_reference(t))
            .collect::<Result<Vec<_>, _>>()?;
        let builder_dir = daemon.app_root.join(BUILDER_DIR);
        let work_root = builder_dir.join("work");
        for d in [&builder_dir, &work_root] {
            statefs::create_private_dir(d)
                .map_err(|e| ApiError::internal(format!("creating {}: {e}", d.display())))?;
        }
        let work = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&work_root)
            .map_err(|e| ApiError::internal(format!("creating a build directory: {e}")))?;
        let context = work.path().join("context");
        let roots = work.path().join("roots");
        // The context is unpacked as it arrives, each file hashed on the way in (the
        // digests its COPY steps are keyed with), in a blocking task fed chunk by chunk.
        for d in [&context, &roots] {
            std::fs::create_dir_all(d)
                .map_err(|e| ApiError::internal(format!("creating {}: {e}", d.display())))?;
        }
        use crate::build_context::Destination;
        let destination = match header.context_key.as_str() {
            "" => Destination::Fresh(context.clone()),
            // Another build of the same directory holding it, this one starts afresh.
            key => Destination::Kept {
                contexts: builder_dir.join(CONTEXTS_DIR),
                key: key.to_string(),
                fresh: context.clone(),
            },
        };
        let (chunks, unpacker) = crate::build_context::unpack_in_background(destination);
        let forwarded: Result<(), Status> = async {
            while let Some(m) = input.message().await? {
                if let Some(Part::Context(d)) = m.part
                    && chunks.send(d).await.is_err()
                {
                    break; // the unpack ended (the tar's end, or an error it reports)
                }
            }
            Ok(())
        }
        .await;
        drop(chunks);
        let unpacked = unpacker
            .await
            .map_err(|e| ApiError::internal(format!("unpacking the context failed: {e}")))?;
        forwarded?;
        let unpacked = unpacked.map_err(ApiError::from)?;
        let context = unpacked.dir.clone();
        let context_digests = std::sync::Arc::new(unpacked.digests);
        let kept_context = unpacked.kept;
        let contexts = builder_dir.join(CONTEXTS_DIR);
        let _ = tokio::task::spawn_blocking(move || {
            crate::build_context::evict(&contexts, false);
        })
        .await;
        let (tx, rx) = mpsc::channel::<Result<v1::BuildResponse, Status>>(64);
        let handle = tokio::runtime::Handle::current();
        // RUN steps: a builder VM booted at the first step that misses the cache.
        let steps = Arc::new(crate::builder::DaemonSteps::new(
            Arc::clone(&daemon),
            handle.clone(),
            header.secrets.clone().into_iter().collect(),
            header.ssh.clone().into_iter().collect(),
        ));
        let steps_in = Arc::clone(&steps);
        tokio::spawn(async move {
            let events_tx = tx.clone();
            let d = Arc::clone(&daemon);
            let names = tags.clone();
            let result = blocking(move || {
                // Held until the build ends, so no other build changes the context.
                let _kept = kept_context;
                // A Docker client names its Dockerfile by its path in the context.
                let (dockerfile, dockerfile_name) =
                    if header.dockerfile.is_empty() && !header.context_dockerfile.is_empty() {
                        crate::build_context::read_dockerfile(&context, &header.context_dockerfile)?
                    } else {
                        (
                            header.dockerfile.clone(),
                            if header.dockerfile_name.is_empty() {
                                "Dockerfile".into()
                            } else {
                                header.dockerfile_name.clone()
                            },
                        )
                    };
                let cache = d.build_cache()?;
                // Keeps GC from removing new layers before the image is named.
                let _lease = d.store.lease().map_err(|e| oci_error(e.kind(), e))?;
                let images = DaemonImages {
                    daemon: Arc::clone(&d),
                    handle,
                    pull: header.pull,
                    pulled: Default::default(),
                };
                let mut events = |e: build::Event| {
                    let _ = events_tx.blocking_send(Ok(event_message(e)));
                };
                let options = build::BuildOptions {
                    dockerfile,
                    dockerfile_name,
                    context,
                    build_args: header.build_args.clone().into_iter().collect(),
                    target: Some(header.target.clone()).filter(|t| !t.is_empty()),
                    labels: header
                        .labels
                        .clone()
                        .into_iter()
                        .collect::<BTreeMap<_, _>>(),
                    no_cache: header.no_cache,
                    platform,
                    context_digests,
                };
                let built = build::Build {
                    store: &d.store,
                    cache: &cache,
                    images: &images,
                    runner: &*steps_in,
                    work: roots,
                    events: &mut events,
                }
                .run(&options)
                .map_err(|e| oci_error(e.kind(), e))?;
                if names.is_empty() {
                    d.store
                        .put_untagged(&built.manifest)
                        .map_err(|e| oci_error(e.kind(), e))?;
                }
                for t in &names {
                    d.store
                        .put_image(t, &built.manifest)
                        .map_err(|e| oci_error(e.kind(), e))?;
                }
                Ok(built)
            })
            .await;
            // The build's own builder VM and the work directory go whatever happened.
            if steps.booted() {
                tracing::info!("stopping the build's builder vm");
            }
            steps.finish().await;
            let _ = tokio::task::spawn_blocking(move || drop(work)).await;
            let built = match result {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            // Unpacked now so the first `run` does not wait for it.
            if let Err(e) = daemon.unpack(&built.manifest.digest).await {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
            let references: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
            for r in &references {
                daemon.image_event("build", r.clone(), r);
            }
            let _ = tx
                .send(Ok(v1::BuildResponse {
                    event: Some(v1::build_response::Event::Result(v1::BuildResult {
                        digest: built.manifest.digest.to_string(),
                        references,
                    })),
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn start_builder(&self, req: Request<v1::StartBuilderRequest>) -> Res<v1::BuilderStatus> {
        let r = req.into_inner();
        let status = crate::builder::start(&self.0, r.cpus, r.memory_bytes).await?;
        Ok(Response::new(status))
    }

    async fn builder_status(
        &self,
        _req: Request<v1::BuilderStatusRequest>,
    ) -> Res<v1::BuilderStatus> {
        Ok(Response::new(crate::builder::status(&self.0).await))
    }

    async fn stop_builder(
        &self,
        _req: Request<v1::BuilderStatusRequest>,
    ) -> Res<v1::BuilderStatus> {
        Ok(Response::new(crate::builder::stop(&self.0).await))
    }

    async fn delete_builder(
        &self,
        _req: Request<v1::BuilderStatusRequest>,
    ) -> Res<v1::BuilderStatus> {
        Ok(Response::new(crate::builder::delete(&self.0).await?))
    }

    async fn prune_cache(
        &self,
        _req: Request<v1::PruneBuildCacheRequest>,
    ) -> Res<v1::PruneResponse> {
        let daemon = Arc::clone(&self.0);
        let resp = blocking(move || {
            let cache = daemon.build_cache()?;
            let (deleted, reclaimed_bytes) = cache.prune().map_err(|e| oci_error(e.kind(), e))?;
            crate::build_context::evict(
                &daemon.app_root.join(BUILDER_DIR).join(CONTEXTS_DIR),
                true,
            );
            Ok(v1::PruneResponse {
                deleted,
                reclaimed_bytes,
            })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn export_filesystem(
        &self,
        req: Request<v1::ExportFilesystemRequest>,
    ) -> Res<BoxStream<wire::v1::DataChunk>> {
        let r = req.into_inner();
        let platform = if r.platform.is_empty() {
            None
        } else {
            Some(
                r.platform
                    .parse::<spec::Platform>()
                    .map_err(|e| ApiError::invalid_argument(e.to_string()))?,
            )
        };
        let image = self.0.find_image(&r.image)?;
        let resolved = self
            .0
            .store
            .resolve_descriptor(&image.target, platform.as_ref())
            .map_err(|e| oci_error(e.kind(), e))?;
        let (tx, rx) = mpsc::channel::<Result<wire::v1::DataChunk, Status>>(8);
        let store = Arc::clone(&self.0.store);
        tokio::task::spawn_blocking(move || {
            let mut w = wire::ChunkWriter::new(tx.clone(), 1 << 20);
            let result =
                build::export::write_filesystem(store.content(), &resolved.manifest.layers, &mut w)
                    .map_err(|e| oci_error(e.kind(), e));
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
