//! Images and registry logins over crates/oci: the `Images` and `Registry` services.
//!
//! Docker Hub names are pulled from the mirror in `registry.mirror` (or
//! `$CONTAINER_REGISTRY_MIRROR`) when one is set, keeping their names, so `busybox` resolves
//! offline against a local registry.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use api::ApiError;
use api::v1;
use api::v1::images_server::Images;
use api::v1::registry_server::Registry;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::daemon::{Daemon, blocking};
use crate::errors::oci_error;

type Res<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> Res<T> {
    Ok(Response::new(v))
}

fn scheme(s: i32) -> oci::Scheme {
    match v1::RegistryScheme::try_from(s) {
        Ok(v1::RegistryScheme::Http) => oci::Scheme::Http,
        Ok(v1::RegistryScheme::Https) => oci::Scheme::Https,
        _ => oci::Scheme::Auto,
    }
}

fn parse_platform(text: &str) -> Result<Option<oci::Platform>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<oci::Platform>()
        .map(Some)
        .map_err(|e| ApiError::invalid_argument(e.to_string()))
}

/// Told when a pulled manifest's rootfs snapshot starts and finishes being built.
pub(crate) type UnpackNotice = Box<dyn Fn(&oci::Digest, v1::blob_progress::Phase) + Send + Sync>;

/// Sends pull/push progress to a client stream.
struct StreamProgress<T> {
    tx: mpsc::Sender<Result<T, Status>>,
    wrap: fn(v1::BlobProgress) -> T,
}

impl<T: Send + 'static> oci::Progress for StreamProgress<T> {
    fn event(&self, event: oci::ProgressEvent) {
        use oci::ProgressEvent as E;
        use v1::blob_progress::Phase as P;
        let p = |digest: &oci::Digest, phase: P, current: u64, total: u64| v1::BlobProgress {
            digest: digest.to_string(),
            phase: phase as i32,
            current,
            total,
        };
        let msg = match &event {
            E::BlobStarted {
                digest,
                size,
                resumed_from,
                ..
            } => p(digest, P::Transferring, *resumed_from, *size),
            E::BlobProgress { digest, done, size } => p(digest, P::Transferring, *done, *size),
            E::BlobDone { digest, size } => p(digest, P::Done, *size, *size),
            E::BlobSkipped { digest, size } => p(digest, P::Exists, *size, *size),
            E::BlobRetrying { digest, .. } => p(digest, P::Waiting, 0, 0),
            E::Resolved { .. } | E::ManifestDone { .. } => return,
        };
        // Progress is advisory: a slow client loses intermediate events, never the result.
        let _ = self.tx.try_send(Ok((self.wrap)(msg)));
    }
}

/// Runs a registry transfer as a task of the daemon's runtime, so it finishes (and its
/// blobs land in the store) even when the client that asked goes away midway.
async fn transfer<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
{
    tokio::spawn(f)
        .await
        .map_err(|e| ApiError::internal(format!("a registry transfer failed: {e}")))?
}

/// A stored image: one with a name, or one loaded without (known by its digest).
#[derive(Debug, Clone)]
pub(crate) struct StoredImage {
    pub name: Option<oci::ImageRef>,
    pub target: oci::Descriptor,
}

impl StoredImage {
    /// The name to show: the reference, or the digest of an image without a name.
    pub(crate) fn display(&self) -> String {
        match &self.name {
            Some(n) => n.familiar(),
            None => self.target.digest.to_string(),
        }
    }
}

impl From<oci::ImageRecord> for StoredImage {
    fn from(r: oci::ImageRecord) -> StoredImage {
        StoredImage {
            name: Some(r.name),
            target: r.target,
        }
    }
}

/// `--pull never` of an image the store lacks.
fn not_found_locally(image: &str) -> ApiError {
    ApiError::not_found(format!(
        "image {image} not found locally (pull policy never)"
    ))
}

/// Whether `text` is an image ID rather than a name: `sha256:` and hex digits, or 12 or
/// more hex digits (Docker's short IDs). A 64-hex name is refused by Docker for this reason.
pub(crate) fn is_image_id(text: &str) -> bool {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    hex.len() >= 12 && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Daemon {
    /// Parses a reference as the user wrote it; names without a registry belong to the
    /// `registry.domain` property's registry (Docker Hub by default).
    pub(crate) fn parse_reference(&self, text: &str) -> Result<oci::ImageRef, ApiError> {
        let domain = self.properties.registry_domain();
        oci::ImageRef::parse_with_default_registry(text, &domain)
            .map_err(|e| oci_error(e.kind(), e))
    }

    /// A registry client with the configured mirror and insecure registries.
    pub(crate) fn registry_client(
        &self,
        scheme: oci::Scheme,
        concurrency: u32,
    ) -> Result<oci::RegistryClient, ApiError> {
        self.registry_client_with(scheme, concurrency, None)
    }

    /// A registry client as [`Self::registry_client`], whose credentials come from
    /// `credentials` instead of the stored logins when given (one request's own).
    pub(crate) fn registry_client_with(
        &self,
        scheme: oci::Scheme,
        concurrency: u32,
        credentials: Option<Arc<dyn oci::CredentialStore>>,
    ) -> Result<oci::RegistryClient, ApiError> {
        let mut config = oci::RegistryConfig {
            scheme,
            ..Default::default()
        };
        if concurrency > 0 {
            config.max_concurrent_downloads = concurrency as usize;
            config.max_concurrent_uploads = concurrency as usize;
        }
        if let Some(mirror) = self.properties.registry_mirror() {
            config.mirrors.insert("docker.io".into(), mirror);
        }
        config.insecure_registries = self.properties.insecure_registries();
        let credentials = credentials.unwrap_or_else(|| Arc::clone(&self.credentials));
        oci::RegistryClient::new(config, credentials).map_err(|e| oci_error(e.kind(), e))
    }

    /// Resolves a stored image to one platform's manifest and config.
    pub(crate) async fn resolve_image(
        &self,
        reference: &oci::ImageRef,
        platform: Option<oci::Platform>,
    ) -> Result<oci::ResolvedImage, ApiError> {
        let store = Arc::clone(&self.store);
        let reference = reference.clone();
        blocking(move || {
            store
                .resolve(&reference, platform.as_ref())
                .map_err(|e| oci_error(e.kind(), e))
        })
        .await
    }

    /// Pulls an image and unpacks the platform's rootfs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn pull(
        &self,
        reference: &oci::ImageRef,
        platform: Option<oci::Platform>,
        all_platforms: bool,
        scheme: oci::Scheme,
        concurrency: u32,
        progress: Arc<dyn oci::Progress>,
        on_unpack: Option<UnpackNotice>,
        credentials: Option<Arc<dyn oci::CredentialStore>>,
    ) -> Result<oci::PullResult, ApiError> {
        let client = self.registry_client_with(scheme, concurrency, credentials)?;
        let options = oci::PullOptions {
            platform: platform.clone(),
            all_platforms,
        };
        let store = Arc::clone(&self.store);
        let r = reference.clone();
        let result = transfer(async move {
            client
                .pull(&store, &r, &options, progress.as_ref())
                .await
                .map_err(|e| oci_error(e.kind(), e))
        })
        .await?;
        let resolved = self.resolve_image(&result.name, platform).await?;
        let manifest = &resolved.manifest_descriptor.digest;
        if let Some(f) = &on_unpack {
            f(manifest, v1::blob_progress::Phase::Unpacking);
        }
        self.unpack(manifest).await?;
        if let Some(f) = &on_unpack {
            f(manifest, v1::blob_progress::Phase::Done);
        }
        tracing::info!(image = %result.name, digest = %result.target.digest, "image pulled");
        self.image_event("pull", result.name.to_string(), &result.name.to_string());
        Ok(result)
    }

    /// The image a new container runs, pulled first as `pull` says: `always` pulls even
    /// when the store has it, `missing` only when it does not, `never` fails NOT_FOUND.
    /// An image ID (digest) is never pulled. Returns the normalised reference (or digest)
    /// and the platform's image.
    pub(crate) async fn image_for_container(
        &self,
        text: &str,
        platform: Option<oci::Platform>,
        pull: &v1::ImagePull,
    ) -> Result<(String, oci::ResolvedImage), ApiError> {
        let policy = v1::PullPolicy::try_from(pull.policy).unwrap_or(v1::PullPolicy::Missing);
        if is_image_id(text) {
            match self.find_image(text) {
                Ok(found) => {
                    let store = Arc::clone(&self.store);
                    let target = found.target.clone();
                    let p = platform.clone();
                    let resolved = blocking(move || {
                        store
                            .resolve_descriptor(&target, p.as_ref())
                            .map_err(|e| oci_error(e.kind(), e))
                    })
                    .await?;
                    let name = found
                        .name
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| found.target.digest.to_string());
                    return Ok((name, resolved));
                }
                Err(e) if e.kind == api::ErrorKind::NotFound && text.starts_with("sha256:") => {
                    return Err(not_found_locally(text));
                }
                Err(e) if e.kind == api::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let reference = self.parse_reference(text)?;
        let fetch = || async {
            self.pull(
                &reference,
                platform.clone(),
                false,
                scheme(pull.scheme),
                pull.max_concurrent_downloads,
                Arc::new(oci::NoProgress),
                None,
                None,
            )
            .await
        };
        if policy == v1::PullPolicy::Always {
            fetch().await?;
        }
        let resolved = match self.resolve_image(&reference, platform.clone()).await {
            Ok(r) => r,
            Err(e) if e.kind == api::ErrorKind::NotFound && policy == v1::PullPolicy::Never => {
                // A store that has the name but not this platform says which it has.
                if self.store.image(&reference).is_ok() {
                    return Err(e);
                }
                return Err(not_found_locally(&reference.familiar()));
            }
            Err(e) if e.kind == api::ErrorKind::NotFound && policy == v1::PullPolicy::Missing => {
                fetch().await?;
                self.resolve_image(&reference, platform.clone()).await?
            }
            Err(e) => return Err(e),
        };
        Ok((reference.to_string(), resolved))
    }

    /// Builds (once) the rootfs snapshot of a manifest; returns its path.
    pub(crate) async fn unpack(
        &self,
        manifest: &oci::Digest,
    ) -> Result<std::path::PathBuf, ApiError> {
        let store = Arc::clone(&self.store);
        let manifest = manifest.clone();
        blocking(move || {
            oci::ensure_rootfs(&store, &manifest, &ext4::Options::default())
                .map(|s| s.path)
                .map_err(|e| oci_error(e.kind(), e))
        })
        .await
    }

    /// The wire description of a stored image.
    pub(crate) fn image_info(&self, rec: &StoredImage, with_config: bool) -> v1::ImageInfo {
        let store = &self.store;
        let mut variants = Vec::new();
        let mut manifests: Vec<oci::Descriptor> = Vec::new();
        match store.manifest(&rec.target) {
            Ok(oci::Manifest::Index(idx)) => {
                manifests.extend(
                    idx.manifests
                        .iter()
                        .filter(|m| store.content().contains(&m.digest))
                        .cloned(),
                );
            }
            Ok(oci::Manifest::Image(_)) => manifests.push(rec.target.clone()),
            Err(_) => {}
        }
        for m in manifests {
            let Ok(r) = store.resolve_descriptor(&m, None) else {
                continue;
            };
            let platform = r.config.platform();
            let config_json = if with_config {
                store
                    .content()
                    .read(&r.manifest.config.digest)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            variants.push(v1::ImageVariant {
                platform: platform.to_string(),
                manifest_digest: m.digest.to_string(),
                size: r.size(),
                created_ms: r
                    .config
                    .created
                    .as_deref()
                    .map(crate::fsutil::rfc3339_to_ms)
                    .unwrap_or(0),
                config_json,
                unpacked: oci::rootfs_path(store, &m.digest).is_file(),
            });
        }
        let name = rec.name.as_ref();
        v1::ImageInfo {
            reference: name.map(ToString::to_string).unwrap_or_default(),
            name: name.map(oci::ImageRef::name).unwrap_or_default(),
            tag: name
                .and_then(oci::ImageRef::tag)
                .unwrap_or_default()
                .to_owned(),
            digest: rec.target.digest.to_string(),
            media_type: rec.target.media_type.clone(),
            variants,
        }
    }

    /// Digests (index and manifests) that containers use.
    pub(crate) fn digests_in_use(&self) -> BTreeSet<String> {
        self.records()
            .into_iter()
            .flat_map(|r| [r.image_target, r.image_digest])
            .collect()
    }

    /// Every stored image: the named ones by name, then those without a name by digest.
    pub(crate) fn stored_images(&self) -> Result<Vec<StoredImage>, ApiError> {
        let mut all: Vec<StoredImage> = self
            .store
            .images()
            .map_err(|e| oci_error(e.kind(), e))?
            .into_iter()
            .map(StoredImage::from)
            .collect();
        all.extend(
            self.store
                .untagged()
                .map_err(|e| oci_error(e.kind(), e))?
                .into_iter()
                .map(|target| StoredImage { name: None, target }),
        );
        Ok(all)
    }

    /// Finds a stored image by reference, or by digest / digest prefix (which also finds
    /// images without a name).
    pub(crate) fn find_image(&self, text: &str) -> Result<StoredImage, ApiError> {
        if is_image_id(text) {
            let hex = text
                .strip_prefix("sha256:")
                .unwrap_or(text)
                .to_ascii_lowercase();
            let images = self.stored_images()?;
            if let Some(hit) = images
                .into_iter()
                .find(|r| r.target.digest.hex().starts_with(&hex))
            {
                return Ok(hit);
            }
            if text.starts_with("sha256:") {
                return Err(ApiError::not_found(format!("image not found: {text}")));
            }
        }
        let reference = self.parse_reference(text)?;
        self.store
            .image(&reference)
            .map(StoredImage::from)
            .map_err(|e| oci_error(e.kind(), e))
    }

    /// Deletes one reference (and, through GC, content nobody names any more).
    async fn delete_image(
        &self,
        text: &str,
        force: bool,
    ) -> Result<v1::DeleteImageResponse, ApiError> {
        let rec = self.find_image(text)?;
        let target = rec.target.digest.to_string();
        let still_named = self
            .store
            .images()
            .map_err(|e| oci_error(e.kind(), e))?
            .iter()
            .any(|r| Some(&r.name) != rec.name.as_ref() && r.target.digest == rec.target.digest);
        if !force && !still_named {
            let users: Vec<String> = self
                .records()
                .into_iter()
                .filter(|r| r.image_target == target)
                .map(|r| r.name)
                .collect();
            if !users.is_empty() {
                return Err(ApiError::failed_precondition(format!(
                    "image {} is used by container {}: remove the container first or use --force",
                    rec.display(),
                    users.join(", ")
                )));
            }
        }
        let store = Arc::clone(&self.store);
        let in_use = self.digests_in_use();
        let shown = rec.display();
        let digest = target.clone();
        let response = blocking(move || {
            let untagged = match &rec.name {
                Some(name) => {
                    store
                        .remove_image(name)
                        .map_err(|e| oci_error(e.kind(), e))?;
                    vec![name.to_string()]
                }
                None => {
                    store
                        .remove_untagged(&rec.target.digest)
                        .map_err(|e| oci_error(e.kind(), e))?;
                    Vec::new()
                }
            };
            let report = if still_named || in_use.contains(&target) {
                oci::GcReport::default()
            } else {
                gc_keeping(&store, &in_use)?
            };
            Ok(v1::DeleteImageResponse {
                untagged,
                deleted: if still_named { vec![] } else { vec![target] },
                reclaimed_bytes: report.reclaimed_bytes,
            })
        })
        .await?;
        for name in &response.untagged {
            self.image_event("untag", digest.clone(), name);
        }
        for digest in &response.deleted {
            self.image_event("delete", digest.clone(), &shown);
        }
        Ok(response)
    }
}

/// Garbage-collects the store unless a container's image is no longer named (deleted with
/// `--force`): crates/oci keeps only what names reach, and that container still needs its
/// layers and snapshot to start.
fn gc_keeping(store: &oci::Store, in_use: &BTreeSet<String>) -> Result<oci::GcReport, ApiError> {
    let mut targets: Vec<oci::Descriptor> = store
        .images()
        .map_err(|e| oci_error(e.kind(), e))?
        .into_iter()
        .map(|r| r.target)
        .collect();
    targets.extend(store.untagged().map_err(|e| oci_error(e.kind(), e))?);
    let named: BTreeSet<String> = targets
        .iter()
        .flat_map(|t| {
            let mut reach = BTreeSet::new();
            let _ = store.reachable(t, &mut reach);
            reach.into_iter().map(|d| d.to_string())
        })
        .collect();
    if let Some(orphan) = in_use.iter().find(|d| !named.contains(*d)) {
        tracing::info!(%orphan, "skipping garbage collection: a container uses an untagged image");
        return Ok(oci::GcReport::default());
    }
    store.gc().map_err(|e| oci_error(e.kind(), e))
}

/// The Images service.
/// The credentials a request carries for its image's registry, used instead of the stored
/// logins (an empty user name and password means none were given).
fn request_credentials(
    reference: &oci::ImageRef,
    given: Option<&v1::RequestCredentials>,
) -> Option<Arc<dyn oci::CredentialStore>> {
    let given = given.filter(|c| !c.username.is_empty() || !c.password.is_empty())?;
    Some(Arc::new(oci::RequestCredentials::new(
        reference.registry(),
        oci::Credential {
            username: given.username.clone(),
            secret: given.password.clone(),
        },
    )))
}

#[derive(Debug, Clone)]
pub struct ImagesService(pub Arc<Daemon>);

#[tonic::async_trait]
impl Images for ImagesService {
    async fn pull(
        &self,
        req: Request<v1::PullImageRequest>,
    ) -> Res<BoxStream<v1::PullImageResponse>> {
        let r = req.into_inner();
        let reference = self.0.parse_reference(&r.reference)?;
        let platform = parse_platform(&r.platform)?;
        let credentials = request_credentials(&reference, r.credentials.as_ref());
        let (tx, rx) = mpsc::channel(256);
        let daemon = Arc::clone(&self.0);
        tokio::spawn(async move {
            use v1::pull_image_response::Event;
            let status = |s: String| {
                Ok(v1::PullImageResponse {
                    event: Some(Event::Status(s)),
                })
            };
            let _ = tx.send(status(format!("pulling {reference}"))).await;
            let progress = Arc::new(StreamProgress {
                tx: tx.clone(),
                wrap: |p| v1::PullImageResponse {
                    event: Some(Event::Progress(p)),
                },
            });
            let unpack_tx = tx.clone();
            let result = daemon
                .pull(
                    &reference,
                    platform,
                    r.all_platforms,
                    scheme(r.scheme),
                    r.max_concurrent_downloads,
                    progress,
                    Some(Box::new(move |digest, phase| {
                        let _ = unpack_tx.try_send(Ok(v1::PullImageResponse {
                            event: Some(Event::Progress(v1::BlobProgress {
                                digest: digest.to_string(),
                                phase: phase as i32,
                                current: 0,
                                total: 0,
                            })),
                        }));
                    })),
                    credentials,
                )
                .await;
            match result {
                Ok(result) => {
                    let store = Arc::clone(&daemon.store);
                    let name = result.name.clone();
                    let d = Arc::clone(&daemon);
                    let info = blocking(move || {
                        let rec = store.image(&name).map_err(|e| oci_error(e.kind(), e))?;
                        Ok(d.image_info(&rec.into(), false))
                    })
                    .await;
                    let msg = info.map(|i| v1::PullImageResponse {
                        event: Some(Event::Image(i)),
                    });
                    let _ = tx.send(msg.map_err(Status::from)).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                }
            }
        });
        ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn push(
        &self,
        req: Request<v1::PushImageRequest>,
    ) -> Res<BoxStream<v1::PushImageResponse>> {
        let r = req.into_inner();
        let reference = self.0.parse_reference(&r.reference)?;
        let platform = parse_platform(&r.platform)?;
        let client = self.0.registry_client_with(
            scheme(r.scheme),
            r.max_concurrent_uploads,
            request_credentials(&reference, r.credentials.as_ref()),
        )?;
        let (tx, rx) = mpsc::channel(256);
        let daemon = Arc::clone(&self.0);
        tokio::spawn(async move {
            use v1::push_image_response::Event;
            let progress = StreamProgress {
                tx: tx.clone(),
                wrap: |p| v1::PushImageResponse {
                    event: Some(Event::Progress(p)),
                },
            };
            let _ = tx
                .send(Ok(v1::PushImageResponse {
                    event: Some(Event::Status(format!("pushing {reference}"))),
                }))
                .await;
            let store = Arc::clone(&daemon.store);
            let shown = reference.to_string();
            let result = transfer(async move {
                client
                    .push(
                        &store,
                        &reference,
                        None,
                        &oci::PushOptions { platform },
                        &progress,
                    )
                    .await
                    .map_err(|e| oci_error(e.kind(), e))
            })
            .await;
            if result.is_ok() {
                daemon.image_event("push", shown.clone(), &shown);
            }
            let msg = result.map(|d| v1::PushImageResponse {
                event: Some(Event::Digest(d.to_string())),
            });
            let _ = tx.send(msg.map_err(Status::from)).await;
        });
        ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn list(&self, _: Request<v1::ListImagesRequest>) -> Res<v1::ListImagesResponse> {
        let daemon = Arc::clone(&self.0);
        let images = blocking(move || {
            // Named images come sorted by name, then the unnamed ones by digest.
            let recs = daemon.stored_images()?;
            Ok(recs.iter().map(|r| daemon.image_info(r, false)).collect())
        })
        .await?;
        ok(v1::ListImagesResponse { images })
    }

    async fn inspect(
        &self,
        req: Request<v1::InspectImageRequest>,
    ) -> Res<v1::InspectImageResponse> {
        let reference = req.into_inner().reference;
        let daemon = Arc::clone(&self.0);
        let image = blocking(move || {
            let rec = daemon.find_image(&reference)?;
            Ok(daemon.image_info(&rec, true))
        })
        .await?;
        ok(v1::InspectImageResponse { image: Some(image) })
    }

    async fn tag(&self, req: Request<v1::TagImageRequest>) -> Res<v1::TagImageResponse> {
        let r = req.into_inner();
        let source = self.0.find_image(&r.source)?;
        let target = self.0.parse_reference(&r.target)?;
        if target.digest().is_some() {
            return Err(ApiError::invalid_argument(format!(
                "cannot tag with a digest reference {}",
                r.target
            ))
            .into());
        }
        let store = Arc::clone(&self.0.store);
        let t = target.clone();
        let source_digest = source.target.digest.to_string();
        blocking(move || {
            store
                .put_image(&t, &source.target)
                .map_err(|e| oci_error(e.kind(), e))
        })
        .await?;
        self.0
            .image_event("tag", source_digest, &target.to_string());
        ok(v1::TagImageResponse {
            reference: target.to_string(),
        })
    }

    async fn delete(&self, req: Request<v1::DeleteImageRequest>) -> Res<v1::DeleteImageResponse> {
        let r = req.into_inner();
        ok(self.0.delete_image(&r.reference, r.force).await?)
    }

    async fn prune(&self, req: Request<v1::PruneImagesRequest>) -> Res<v1::PruneResponse> {
        let all = req.into_inner().all;
        let daemon = Arc::clone(&self.0);
        let in_use = self.0.digests_in_use();
        let resp = blocking(move || {
            let mut deleted = Vec::new();
            // Images without a name are Docker's dangling images: pruned unless in use.
            for target in daemon
                .store
                .untagged()
                .map_err(|e| oci_error(e.kind(), e))?
            {
                if in_use.contains(&target.digest.to_string()) {
                    continue;
                }
                daemon
                    .store
                    .remove_untagged(&target.digest)
                    .map_err(|e| oci_error(e.kind(), e))?;
            }
            if all {
                for rec in daemon.store.images().map_err(|e| oci_error(e.kind(), e))? {
                    if in_use.contains(&rec.target.digest.to_string()) {
                        continue;
                    }
                    daemon
                        .store
                        .remove_image(&rec.name)
                        .map_err(|e| oci_error(e.kind(), e))?;
                    deleted.push(rec.name.to_string());
                }
            }
            let report = gc_keeping(&daemon.store, &in_use)?;
            deleted.extend(report.removed.iter().map(|d| d.to_string()));
            Ok(v1::PruneResponse {
                deleted,
                reclaimed_bytes: report.reclaimed_bytes,
            })
        })
        .await?;
        ok(resp)
    }

    async fn save(
        &self,
        req: Request<v1::SaveImagesRequest>,
    ) -> Res<BoxStream<wire::v1::DataChunk>> {
        let r = req.into_inner();
        if r.references.is_empty() {
            return Err(ApiError::invalid_argument("save: no image given").into());
        }
        let platform = parse_platform(&r.platform)?;
        let mut names: Vec<oci::ImageRef> = Vec::new();
        for t in &r.references {
            match self.0.find_image(t)?.name {
                Some(name) => names.push(name),
                None => {
                    return Err(ApiError::failed_precondition(format!(
                        "image {t} has no name: give it one with `container image tag {t} NAME` to save it"
                    ))
                    .into());
                }
            }
        }
        let (tx, rx) = mpsc::channel::<Result<wire::v1::DataChunk, Status>>(8);
        let store = Arc::clone(&self.0.store);
        tokio::task::spawn_blocking(move || {
            let mut w = wire::ChunkWriter::new(tx.clone(), 1 << 20);
            let result = oci::save(&store, &names, platform.as_ref(), &mut w)
                .map_err(|e| oci_error(e.kind(), e))
                .and_then(|()| w.flush().map_err(|e| ApiError::unavailable(e.to_string())));
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        ok(Box::pin(ReceiverStream::new(rx)))
    }

    async fn load(
        &self,
        req: Request<Streaming<v1::LoadImagesRequest>>,
    ) -> Res<v1::LoadImagesResponse> {
        let mut input = req.into_inner();
        use v1::load_images_request::Part;
        let Some(Part::Header(_header)) = input.message().await?.and_then(|m| m.part) else {
            return Err(
                ApiError::invalid_argument("load: the first message must be the header").into(),
            );
        };
        // Spool to a temp file in the app root so a huge archive never sits in memory.
        let spool = tempfile::Builder::new()
            .prefix(".load-")
            .tempfile_in(&self.0.app_root)
            .map_err(|e| ApiError::internal(format!("load: {e}")))?;
        let mut file = tokio::fs::File::from_std(
            spool
                .reopen()
                .map_err(|e| ApiError::internal(e.to_string()))?,
        );
        use tokio::io::AsyncWriteExt;
        while let Some(m) = input.message().await? {
            if let Some(Part::Data(d)) = m.part {
                file.write_all(&d)
                    .await
                    .map_err(|e| ApiError::internal(format!("load: {e}")))?;
            }
        }
        file.flush()
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let daemon = Arc::clone(&self.0);
        let references = blocking(move || {
            let f =
                std::fs::File::open(spool.path()).map_err(|e| ApiError::internal(e.to_string()))?;
            let loaded = oci::load(&daemon.store, std::io::BufReader::new(f))
                .map_err(|e| oci_error(e.kind(), e))?;
            let targets: Vec<_> = loaded
                .names
                .iter()
                .filter_map(|n| daemon.store.image(n).ok().map(|r| r.target))
                .chain(loaded.untagged.iter().map(|u| u.target.clone()))
                .collect();
            for target in targets {
                // Only the host platform's rootfs is built now; others on first use.
                if let Ok(r) = daemon.store.resolve_descriptor(&target, None)
                    && let Err(e) = oci::ensure_rootfs(
                        &daemon.store,
                        &r.manifest_descriptor.digest,
                        &ext4::Options::default(),
                    )
                {
                    // An image that cannot run is not left named by a failed load.
                    for name in &loaded.names {
                        if daemon.store.image(name).is_ok_and(|i| i.target == target) {
                            let _ = daemon.store.remove_image(name);
                        }
                    }
                    // With its cause: which layer and entry the writer refused.
                    return Err(oci_error(e.kind(), spec::error_chain(&e)));
                }
            }
            Ok(v1::LoadImagesResponse {
                references: loaded.names.iter().map(|n| n.to_string()).collect(),
                untagged: loaded
                    .untagged
                    .iter()
                    .map(|u| v1::UntaggedImage {
                        digest: u.target.digest.to_string(),
                        archive_tag: u.tag.clone().unwrap_or_default(),
                    })
                    .collect(),
            })
        })
        .await?;
        for name in &references.references {
            self.0.image_event("load", name.clone(), name);
        }
        for u in &references.untagged {
            self.0.image_event("load", u.digest.clone(), &u.digest);
        }
        ok(references)
    }
}

/// The Registry service.
#[derive(Debug, Clone)]
pub struct RegistryService(pub Arc<Daemon>);

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn login(&self, req: Request<v1::LoginRequest>) -> Res<v1::LoginResponse> {
        let r = req.into_inner();
        if r.server.is_empty() || r.username.is_empty() {
            return Err(
                ApiError::invalid_argument("login: a server and a user name are required").into(),
            );
        }
        let client = self.0.registry_client(scheme(r.scheme), 0)?;
        let credential = oci::Credential {
            username: r.username,
            secret: r.password,
        };
        client.login(&r.server, &credential).await.map_err(|e| {
            // A refused login is the caller's wrong input, as the contract says.
            let kind = match e.kind() {
                oci::ErrorKind::FailedPrecondition => oci::ErrorKind::InvalidArgument,
                k => k,
            };
            oci_error(kind, e)
        })?;
        ok(v1::LoginResponse {})
    }

    async fn logout(&self, req: Request<v1::LogoutRequest>) -> Res<v1::LogoutResponse> {
        let server = req.into_inner().server;
        let client = self.0.registry_client(oci::Scheme::Auto, 0)?;
        let had = client
            .logout(&server)
            .await
            .map_err(|e| oci_error(e.kind(), e))?;
        if !had {
            return Err(ApiError::not_found(format!("not logged in to {server}")).into());
        }
        ok(v1::LogoutResponse {})
    }

    async fn list(&self, _: Request<v1::ListRegistriesRequest>) -> Res<v1::ListRegistriesResponse> {
        let creds = Arc::clone(&self.0.credentials);
        let logins = blocking(move || creds.list().map_err(|e| oci_error(e.kind(), e))).await?;
        ok(v1::ListRegistriesResponse {
            logins: logins
                .into_iter()
                .map(|(hostname, username)| v1::RegistryLogin { hostname, username })
                .collect(),
        })
    }
}
