//! The registry client: pull into the content store, push from it, tag remotely, and check
//! logins. Built on oci-client's lower-level calls; every blob is streamed to or from disk.
//!
//! Every request has a timeout: connect and per-read timeouts on the HTTP client (so a
//! large layer may take as long as it keeps moving), plus a whole-request timeout on
//! manifest, auth, HEAD and tag calls.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_client::RegistryOperation;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use reqwest::header::HeaderValue;
use tokio::sync::{mpsc, oneshot};

use crate::credentials::{Credential, CredentialError, CredentialStore, normalise_registry};
use crate::digest::Digest;
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, ManifestError, media_type};
use crate::platform::Platform;
use crate::progress::{Progress, ProgressEvent};
use crate::reference::ImageRef;
use crate::store::{Store, StoreError};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry options: {0}")]
    InvalidOptions(String),
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("invalid scheme {0:?}: expected http, https or auto")]
    BadScheme(String),
    #[error(
        "registry {registry} requires authentication; log in with `container registry login {registry}`"
    )]
    AuthRequired { registry: String },
    #[error("authentication to registry {registry} failed: wrong username or password")]
    AuthFailed { registry: String },
    #[error("{reference} not found in registry {registry}")]
    NotFound { registry: String, reference: String },
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("registry {registry} did not answer within {after:?} ({what})")]
    Timeout {
        registry: String,
        what: &'static str,
        after: Duration,
    },
    #[error("registry {registry} refused the request: {detail}")]
    Registry { registry: String, detail: String },
    #[error("{what} from registry {registry} has digest {actual}, expected {expected}")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "image {name} has no local content for platforms {missing}; push one platform with --platform"
    )]
    IncompleteIndex { name: String, missing: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("internal error: background task failed: {0}")]
    Task(String),
}

impl RegistryError {
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            RegistryError::InvalidOptions(_) | RegistryError::BadScheme(_) => K::InvalidArgument,
            RegistryError::Reference(e) => e.kind(),
            RegistryError::AuthRequired { .. } | RegistryError::AuthFailed { .. } => {
                K::FailedPrecondition
            }
            RegistryError::NotFound { .. } => K::NotFound,
            RegistryError::Unreachable { .. } | RegistryError::Timeout { .. } => K::Unavailable,
            RegistryError::Registry { .. } => K::Unavailable,
            RegistryError::DigestMismatch { .. } => K::InvalidArgument,
            RegistryError::IncompleteIndex { .. } => K::FailedPrecondition,
            RegistryError::Store(e) => e.kind(),
            RegistryError::Manifest(e) => e.kind(),
            RegistryError::Credentials(e) => e.kind(),
            RegistryError::Task(_) => K::Internal,
        }
    }
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// How to talk to a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    Http,
    Https,
    /// Docker's rule: plain HTTP for loopback only (`127.0.0.0/8`, `::1`, `localhost`) and
    /// for hosts the user listed as insecure; HTTPS for everything else, private addresses
    /// included (a LAN is no reason to send credentials and layers in the clear).
    #[default]
    Auto,
}

impl Scheme {
    /// `"http"` or `"https"` for `registry` (a `host[:port]`). `insecure` lists the hosts
    /// (`host` for every port, or `host:port`) that `auto` reaches over plain HTTP.
    pub fn for_registry(self, registry: &str, insecure: &[String]) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Auto => {
                if is_loopback_host(registry) || is_listed(registry, insecure) {
                    "http"
                } else {
                    "https"
                }
            }
        }
    }
}

/// `host[:port]` split into the host (brackets of an IPv6 literal removed) and the port.
fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    }
}

fn is_loopback_host(registry: &str) -> bool {
    let (host, _) = split_host_port(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Whether `registry` matches an entry of the insecure list: `host:port` exactly, or a bare
/// `host` on any port.
fn is_listed(registry: &str, insecure: &[String]) -> bool {
    let (host, port) = split_host_port(registry);
    insecure.iter().any(|entry| {
        let (h, p) = split_host_port(entry.trim());
        h.eq_ignore_ascii_case(host) && (p.is_none() || p == port)
    })
}

impl FromStr for Scheme {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Scheme> {
        match s {
            "http" => Ok(Scheme::Http),
            "https" => Ok(Scheme::Https),
            "auto" => Ok(Scheme::Auto),
            _ => Err(RegistryError::BadScheme(s.to_owned())),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Auto => "auto",
        })
    }
}

/// Client settings. `Default` matches the CLI defaults.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub scheme: Scheme,
    /// Layers downloaded at once (`--max-concurrent-downloads`, default 3, at least 1).
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
    /// Upload each blob in one PUT instead of 4 MiB PATCH chunks.
    pub monolithic_push: bool,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of any response.
    pub read_timeout: Duration,
    /// Longest a manifest, auth, HEAD or tag request may take in total.
    pub request_timeout: Duration,
    /// Extra attempts for an interrupted blob download (each resumes where the last stopped).
    pub download_retries: u32,
    /// Pull mirrors: registry → mirror host (`docker.io` → `127.0.0.1:5000`). Pulls of that
    /// registry's images go to the mirror only (no fallback); names stay unchanged.
    pub mirrors: std::collections::BTreeMap<String, String>,
    /// Extra CA certificates (PEM) trusted for HTTPS registries, on top of the system's.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Registries `Scheme::Auto` reaches over plain HTTP although they are not loopback:
    /// `host` (any port) or `host:port` (the `registry.insecure` property).
    pub insecure_registries: Vec<String>,
}

impl RegistryConfig {
    /// `"http"` or `"https"`: the scheme this configuration uses for `registry`.
    pub fn scheme_for(&self, registry: &str) -> &'static str {
        self.scheme
            .for_registry(registry, &self.insecure_registries)
    }
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            scheme: Scheme::Auto,
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 3,
            monolithic_push: false,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            download_retries: 3,
            mirrors: Default::default(),
            extra_root_certificates: Vec::new(),
            insecure_registries: Vec::new(),
        }
    }
}

/// What to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pull from a multi-platform image; `None` means the host's.
    pub platform: Option<Platform>,
    /// Pull every platform of an index (ignores `platform`).
    pub all_platforms: bool,
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// The name the image is stored under.
    pub name: ImageRef,
    /// The manifest or index the name points at.
    pub target: Descriptor,
    /// The single-platform manifests pulled.
    pub manifests: Vec<Descriptor>,
}

/// What to push.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Push only this platform's manifest of a multi-platform image.
    pub platform: Option<Platform>,
}

/// A registry client bound to a credential store.
#[derive(Clone)]
pub struct RegistryClient {
    config: RegistryConfig,
    credentials: Arc<dyn CredentialStore>,
}

/// One registry conversation: an oci-client with its token cache and our auth.
struct Session {
    client: oci_client::Client,
    auth: RegistryAuth,
    registry: String,
    has_credentials: bool,
    config: RegistryConfig,
}

/// Bytes read from disk per upload chunk; oci-client PATCHes at most 4 MiB at a time.
const UPLOAD_CHUNK: usize = 4 << 20;

impl RegistryClient {
    pub fn new(
        config: RegistryConfig,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<RegistryClient> {
        if config.max_concurrent_downloads == 0 {
            return Err(RegistryError::InvalidOptions(
                "max concurrent downloads must be at least 1".into(),
            ));
        }
        if config.max_concurrent_uploads == 0 {
            return Err(RegistryError::InvalidOptions(
                "max concurrent uploads must be at least 1".into(),
            ));
        }
        for (registry, mirror) in &config.mirrors {
            let probe = ImageRef::parse(&format!("{mirror}/x"))
                .ok()
                .filter(|r| r.registry() == mirror);
            if probe.is_none() {
                return Err(RegistryError::InvalidOptions(format!(
                    "mirror {mirror:?} for {registry} is not a registry host[:port]"
                )));
            }
        }
        for pem in &config.extra_root_certificates {
            if reqwest::Certificate::from_pem(pem).is_err() {
                return Err(RegistryError::InvalidOptions(
                    "an extra root certificate is not valid PEM".into(),
                ));
            }
        }
        // reqwest is built without a bundled TLS provider; install ring once per process.
        // An error only means a provider is already installed, which is what we need.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(RegistryClient {
            config,
            credentials,
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    async fn session(&self, reference: &ImageRef, op: RegistryOperation) -> Result<Session> {
        let registry = reference.registry().to_owned();
        let creds = self.credentials.clone();
        let key = registry.clone();
        // Credential helpers are external programs: keep them off the async threads.
        let credential = tokio::task::spawn_blocking(move || creds.get(&key))
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))??;
        let has_credentials = credential.is_some();
        let auth = match credential {
            Some(c) => RegistryAuth::Basic(c.username, c.secret),
            None => RegistryAuth::Anonymous,
        };
        let protocol = match self.config.scheme_for(&registry) {
            "http" => ClientProtocol::Http,
            _ => ClientProtocol::Https,
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            use_monolithic_push: self.config.monolithic_push,
            platform_resolver: None,
            max_concurrent_download: self.config.max_concurrent_downloads,
            max_concurrent_upload: self.config.max_concurrent_uploads,
            read_timeout: Some(self.config.read_timeout),
            connect_timeout: Some(self.config.connect_timeout),
            extra_root_certificates: self
                .config
                .extra_root_certificates
                .iter()
                .map(|pem| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            ..ClientConfig::default()
        });
        let session = Session {
            client,
            auth,
            registry,
            has_credentials,
            config: self.config.clone(),
        };
        let oref = reference.to_oci();
        session
            .timed(
                "authentication",
                session.client.auth(&oref, &session.auth, op),
            )
            .await?;
        Ok(session)
    }

    /// Pulls `reference` into `store`: manifest (or index and the chosen platforms'
    /// manifests), configs and layers, then names the image. Nothing is named unless
    /// everything arrived and verified; unknown media types and missing platforms are
    /// refused before any layer is downloaded.
    pub async fn pull(
        &self,
        store: &Arc<Store>,
        reference: &ImageRef,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<PullResult> {
        // With a mirror configured for this registry, fetch from the mirror but keep the
        // image's own name (as dockerd's --registry-mirror does).
        let source = match self.config.mirrors.get(reference.registry()) {
            Some(mirror) => reference.with_registry(mirror)?,
            None => reference.clone(),
        };
        let session = self.session(&source, RegistryOperation::Pull).await?;
        let lease = blocking(store, |s| s.lease()).await?;
        let oref = source.to_oci();
        let (top_bytes, top_digest) = session.fetch_manifest(&oref, reference).await?;
        if let Some(want) = reference.digest()
            && *want != top_digest
        {
            return Err(RegistryError::DigestMismatch {
                registry: session.registry.clone(),
                what: format!("manifest of {reference}"),
                expected: want.clone(),
                actual: top_digest,
            });
        }
        let top = manifest::parse_manifest(&top_bytes, None)?;
        let target = Descriptor {
            media_type: top.media_type().to_owned(),
            digest: top_digest.clone(),
            size: top_bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
            urls: Vec::new(),
        };
        progress.event(ProgressEvent::Resolved {
            reference: reference.to_string(),
            digest: top_digest.clone(),
        });

        // Every single-platform manifest to pull, with its bytes.
        let mut manifests: Vec<(Descriptor, Bytes, ImageManifest)> = Vec::new();
        let wanted = options.platform.clone().unwrap_or_else(Platform::host);
        match top {
            Manifest::Image(m) => manifests.push((target.clone(), top_bytes.clone(), m)),
            Manifest::Index(idx) => {
                let chosen: Vec<Descriptor> = if options.all_platforms {
                    idx.image_entries().cloned().collect()
                } else {
                    vec![idx.select(&wanted)?.clone()]
                };
                for d in chosen {
                    let child = oref.clone_with_digest(d.digest.to_string());
                    let (bytes, digest) = session.fetch_manifest(&child, reference).await?;
                    if digest != d.digest {
                        return Err(RegistryError::DigestMismatch {
                            registry: session.registry.clone(),
                            what: format!(
                                "manifest for {}",
                                d.platform().map(|p| p.to_string()).unwrap_or_default()
                            ),
                            expected: d.digest.clone(),
                            actual: digest,
                        });
                    }
                    match manifest::parse_manifest(&bytes, Some(&d.media_type))? {
                        Manifest::Image(m) => manifests.push((d, bytes, m)),
                        Manifest::Index(_) => {
                            return Err(ManifestError::UnsupportedMediaType {
                                what: "index entry (nested index)",
                                media_type: d.media_type,
                            }
                            .into());
                        }
                    }
                }
            }
        }

        // A single-platform image asked for by platform: read its (small) config into memory
        // and check the platform before anything is written to the store.
        if let (Some(want), [(d, _, m)]) = (&options.platform, manifests.as_slice())
            && *d == target
        {
            let present = store.content().contains(&m.config.digest);
            let cfg = if present {
                let digest = m.config.digest.clone();
                blocking(store, move |s| s.content().read(&digest)).await?
            } else {
                if m.config.size > crate::store::MAX_METADATA_SIZE {
                    return Err(StoreError::TooLarge {
                        digest: m.config.digest.clone(),
                        size: m.config.size,
                    }
                    .into());
                }
                let mut cfg = Vec::with_capacity(m.config.size as usize);
                let digest = m.config.digest.to_string();
                session
                    .timed(
                        "config",
                        session.client.pull_blob(&oref, digest.as_str(), &mut cfg),
                    )
                    .await?;
                cfg
            };
            let have = manifest::parse_config(&cfg)?.platform();
            if !want.matches(&have) {
                return Err(ManifestError::PlatformNotFound {
                    wanted: want.clone(),
                    available: have.to_string(),
                }
                .into());
            }
            if !present {
                let expected = m.config.digest.clone();
                blocking(store, move |s| {
                    s.content().write_blob(&cfg, Some(&expected))
                })
                .await?;
            }
        }
        let configs: Vec<Descriptor> = manifests.iter().map(|(_, _, m)| m.config.clone()).collect();
        session
            .fetch_blobs(store, &oref, &configs, progress)
            .await?;
        let mut layers: Vec<Descriptor> = Vec::new();
        for (_, _, m) in &manifests {
            for l in &m.layers {
                if !layers.iter().any(|x| x.digest == l.digest) {
                    layers.push(l.clone());
                }
            }
        }
        session.fetch_blobs(store, &oref, &layers, progress).await?;

        // Manifests last, children before the index, then the name.
        let mut blobs: Vec<(Bytes, Digest)> = manifests
            .iter()
            .map(|(d, b, _)| (b.clone(), d.digest.clone()))
            .collect();
        if target.is_index() {
            blobs.push((top_bytes, top_digest.clone()));
        }
        let name = reference.clone();
        let record_target = target.clone();
        blocking(store, move |s| {
            for (bytes, digest) in &blobs {
                s.content().write_blob(bytes, Some(digest))?;
            }
            s.put_image(&name, &record_target)
        })
        .await?;
        drop(lease);
        progress.event(ProgressEvent::ManifestDone { digest: top_digest });
        Ok(PullResult {
            name: reference.clone(),
            target,
            manifests: manifests.into_iter().map(|(d, _, _)| d).collect(),
        })
    }

    /// Pushes the local image `local` to `remote` (default: the same name). Blobs the
    /// registry already has are skipped (HEAD). Returns the digest of what the tag points at.
    pub async fn push(
        &self,
        store: &Arc<Store>,
        local: &ImageRef,
        remote: Option<&ImageRef>,
        options: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let remote = remote.unwrap_or(local).clone();
        // Keeps GC from deleting blobs while they are being read.
        let _lease = blocking(store, |s| s.lease()).await?;
        let (top, top_bytes, manifests) = {
            let local = local.clone();
            let platform = options.platform.clone();
            let s = store.clone();
            tokio::task::spawn_blocking(move || plan_push(&s, &local, platform.as_ref()))
                .await
                .map_err(|e| RegistryError::Task(e.to_string()))??
        };
        let session = self.session(&remote, RegistryOperation::Push).await?;
        let oref = remote.to_oci();
        let mut blobs: Vec<Descriptor> = Vec::new();
        for (_, _, m) in &manifests {
            for d in std::iter::once(&m.config).chain(&m.layers) {
                if !blobs.iter().any(|b| b.digest == d.digest) {
                    blobs.push(d.clone());
                }
            }
        }
        // Made before they enter the stream, so the push future stays `Send` (see fetch_blobs).
        let pushes: Vec<_> = blobs
            .iter()
            .map(|d| session.push_blob(store, &oref, d, progress))
            .collect();
        futures::stream::iter(pushes)
            .buffer_unordered(self.config.max_concurrent_uploads)
            .try_collect::<Vec<()>>()
            .await?;
        let top_is_index = top.is_index();
        for (d, bytes, _) in &manifests {
            let by_digest = oref.clone_with_digest(d.digest.to_string());
            // A single-platform push also goes by tag below; by digest only for index children.
            if top_is_index {
                session
                    .put_manifest(&by_digest, bytes.clone(), &d.media_type)
                    .await?;
            }
        }
        session
            .put_manifest(&oref, top_bytes, &top.media_type)
            .await?;
        progress.event(ProgressEvent::ManifestDone {
            digest: top.digest.clone(),
        });
        Ok(top.digest)
    }

    /// Points the remote tag `target` at what `source` points at, without moving blobs
    /// (both must be in the same repository or the registry must already have the blobs).
    pub async fn tag(&self, source: &ImageRef, target: &ImageRef) -> Result<Digest> {
        let session = self.session(target, RegistryOperation::Push).await?;
        let (bytes, digest) = session.fetch_manifest(&source.to_oci(), source).await?;
        let m = manifest::parse_manifest(&bytes, None)?;
        session
            .put_manifest(&target.to_oci(), bytes, m.media_type())
            .await?;
        Ok(digest)
    }

    /// Checks `credential` against `registry` (Basic or the bearer-token flow) and, if it
    /// works, saves it in the credential store.
    pub async fn login(&self, registry: &str, credential: &Credential) -> Result<()> {
        let registry = normalise_registry(registry);
        self.check_login(&registry, credential).await?;
        let creds = self.credentials.clone();
        let credential = credential.clone();
        tokio::task::spawn_blocking(move || creds.store(&registry, &credential))
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))??;
        Ok(())
    }

    /// Forgets the credentials for `registry`; returns whether there were any.
    pub async fn logout(&self, registry: &str) -> Result<bool> {
        let registry = normalise_registry(registry);
        let creds = self.credentials.clone();
        Ok(tokio::task::spawn_blocking(move || creds.erase(&registry))
            .await
            .map_err(|e| RegistryError::Task(e.to_string()))??)
    }

    async fn check_login(&self, registry: &str, credential: &Credential) -> Result<()> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.request_timeout);
        for pem in &self.config.extra_root_certificates {
            builder =
                builder.add_root_certificate(reqwest::Certificate::from_pem(pem).map_err(|e| {
                    RegistryError::InvalidOptions(format!("bad root certificate: {e}"))
                })?);
        }
        let http = builder.build().map_err(|e| RegistryError::Unreachable {
            registry: registry.to_owned(),
            detail: e.to_string(),
        })?;
        let host = if registry == "docker.io" {
            "index.docker.io"
        } else {
            registry
        };
        let url = format!("{}://{host}/v2/", self.config.scheme_for(registry));
        let send = |rb: reqwest::RequestBuilder| async {
            rb.send()
                .await
                .map_err(|e| http_error(registry, e, self.config.request_timeout))
        };
        let first = send(http.get(&url)).await?;
        if first.status().is_success() {
            return Ok(());
        }
        let failed = || RegistryError::AuthFailed {
            registry: registry.to_owned(),
        };
        if first.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Registry {
                registry: registry.to_owned(),
                detail: format!("GET /v2/ answered {}", first.status()),
            });
        }
        let challenge = first
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let response = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let params = parse_challenge(&challenge);
            let realm = params.get("realm").ok_or_else(|| RegistryError::Registry {
                registry: registry.to_owned(),
                detail: "bearer challenge without realm".into(),
            })?;
            let mut query = vec![("account", credential.username.as_str())];
            if let Some(s) = params.get("service") {
                query.push(("service", s));
            }
            send(
                http.get(realm)
                    .query(&query)
                    .basic_auth(&credential.username, Some(&credential.secret)),
            )
            .await?
        } else {
            send(
                http.get(&url)
                    .basic_auth(&credential.username, Some(&credential.secret)),
            )
            .await?
        };
        match response.status() {
            s if s.is_success() => Ok(()),
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => Err(failed()),
            s => Err(RegistryError::Registry {
                registry: registry.to_owned(),
                detail: format!("login answered {s}"),
            }),
        }
    }
}

fn parse_challenge(h: &str) -> std::collections::HashMap<String, String> {
    let rest = h.split_once(' ').map_or("", |(_, r)| r);
    let mut out = std::collections::HashMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            out.insert(
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            );
        }
    }
    out
}

fn http_error(registry: &str, e: reqwest::Error, after: Duration) -> RegistryError {
    if e.is_timeout() {
        RegistryError::Timeout {
            registry: registry.to_owned(),
            what: "request",
            after,
        }
    } else {
        RegistryError::Unreachable {
            registry: registry.to_owned(),
            detail: spec::error_chain(&e),
        }
    }
}

/// Runs a store operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))?
        .map_err(RegistryError::from)
}

type PushPlan = (Descriptor, Bytes, Vec<(Descriptor, Bytes, ImageManifest)>);

/// Decides what a push sends: the whole index if every platform is present, one platform
/// if asked, a plain manifest as is.
fn plan_push(store: &Store, local: &ImageRef, platform: Option<&Platform>) -> Result<PushPlan> {
    let rec = store.image(local)?;
    let read =
        |d: &Descriptor| -> Result<Bytes> { Ok(Bytes::from(store.content().read(&d.digest)?)) };
    match store.manifest(&rec.target)? {
        Manifest::Image(m) => {
            if let Some(p) = platform {
                store.resolve_descriptor(&rec.target, Some(p))?;
            }
            let bytes = read(&rec.target)?;
            Ok((
                rec.target.clone(),
                bytes.clone(),
                vec![(rec.target, bytes, m)],
            ))
        }
        Manifest::Index(idx) => {
            if let Some(p) = platform {
                let r = store.resolve_descriptor(&rec.target, Some(p))?;
                let bytes = read(&r.manifest_descriptor)?;
                let d = r.manifest_descriptor;
                return Ok((d.clone(), bytes.clone(), vec![(d, bytes, r.manifest)]));
            }
            let missing: Vec<Platform> = idx
                .manifests
                .iter()
                .filter(|d| !store.content().contains(&d.digest))
                .filter_map(Descriptor::platform)
                .collect();
            if !missing.is_empty() {
                return Err(RegistryError::IncompleteIndex {
                    name: local.to_string(),
                    missing: crate::platform::list(&missing),
                });
            }
            let mut children = Vec::new();
            for d in &idx.manifests {
                if let Manifest::Image(m) = store.manifest(d)? {
                    children.push((d.clone(), read(d)?, m));
                }
            }
            Ok((rec.target.clone(), read(&rec.target)?, children))
        }
    }
}

impl Session {
    fn map_err(&self, e: OciDistributionError, reference: &str) -> RegistryError {
        let registry = self.registry.clone();
        let auth = |registry| {
            if self.has_credentials {
                RegistryError::AuthFailed { registry }
            } else {
                RegistryError::AuthRequired { registry }
            }
        };
        match e {
            OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. } => auth(registry),
            OciDistributionError::ServerError { code: 401, .. } => auth(registry),
            OciDistributionError::ServerError { code: 404, .. }
            | OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound {
                registry,
                reference: reference.to_owned(),
            },
            OciDistributionError::RegistryError { envelope, .. } => {
                let not_found = envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                    )
                });
                let denied = envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied));
                if not_found {
                    RegistryError::NotFound {
                        registry,
                        reference: reference.to_owned(),
                    }
                } else if denied {
                    auth(registry)
                } else {
                    let detail = envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    RegistryError::Registry { registry, detail }
                }
            }
            OciDistributionError::RequestError(e) => match e.status() {
                Some(reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN) => {
                    auth(registry)
                }
                Some(reqwest::StatusCode::NOT_FOUND) => RegistryError::NotFound {
                    registry,
                    reference: reference.to_owned(),
                },
                Some(status) => RegistryError::Registry {
                    registry,
                    detail: format!("{reference}: {status}"),
                },
                None => http_error(&registry, e, self.config.read_timeout),
            },
            other => RegistryError::Registry {
                registry,
                detail: spec::error_chain(&other),
            },
        }
    }

    async fn timed<T>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.config.request_timeout, fut).await {
            Ok(r) => r.map_err(|e| self.map_err(e, what)),
            Err(_) => Err(RegistryError::Timeout {
                registry: self.registry.clone(),
                what,
                after: self.config.request_timeout,
            }),
        }
    }

    /// Fetches a manifest's exact bytes and their digest (computed here, not trusted).
    async fn fetch_manifest(
        &self,
        oref: &oci_client::Reference,
        shown: &ImageRef,
    ) -> Result<(Bytes, Digest)> {
        let fut = self
            .client
            .pull_manifest_raw(oref, &self.auth, media_type::MANIFESTS);
        let (bytes, _) = match tokio::time::timeout(self.config.request_timeout, fut).await {
            Ok(r) => r.map_err(|e| self.map_err(e, &shown.to_string()))?,
            Err(_) => {
                return Err(RegistryError::Timeout {
                    registry: self.registry.clone(),
                    what: "manifest",
                    after: self.config.request_timeout,
                });
            }
        };
        if bytes.len() as u64 > crate::store::MAX_METADATA_SIZE {
            return Err(RegistryError::Registry {
                registry: self.registry.clone(),
                detail: format!("manifest of {shown} is {} bytes, too large", bytes.len()),
            });
        }
        let digest = Digest::of(&bytes);
        Ok((bytes, digest))
    }

    async fn put_manifest(
        &self,
        oref: &oci_client::Reference,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<()> {
        let ct = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Manifest(ManifestError::UnsupportedMediaType {
                what: "manifest",
                media_type: media_type.to_owned(),
            })
        })?;
        self.timed(
            "manifest upload",
            self.client.push_manifest_raw(oref, bytes, ct),
        )
        .await?;
        Ok(())
    }

    /// Downloads the blobs the store lacks, `max_concurrent_downloads` at a time.
    async fn fetch_blobs(
        &self,
        store: &Arc<Store>,
        oref: &oci_client::Reference,
        blobs: &[Descriptor],
        progress: &dyn Progress,
    ) -> Result<()> {
        // The futures are made before they enter the stream (they start only when polled):
        // a closure inside the stream's type makes the whole pull future lose `Send`, which
        // is a rustc limitation with closures returning futures that borrow their argument.
        let fetches: Vec<_> = blobs
            .iter()
            .map(|d| self.fetch_blob(store, oref, d, progress))
            .collect();
        futures::stream::iter(fetches)
            .buffer_unordered(self.config.max_concurrent_downloads)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn fetch_blob(
        &self,
        store: &Arc<Store>,
        oref: &oci_client::Reference,
        desc: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<()> {
        if store.content().contains(&desc.digest) {
            progress.event(ProgressEvent::BlobSkipped {
                digest: desc.digest.clone(),
                size: desc.size,
            });
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            match self.try_fetch_blob(store, oref, desc, progress).await {
                Ok(()) => return Ok(()),
                Err((e, retryable)) if retryable && attempt < self.config.download_retries => {
                    attempt += 1;
                    progress.event(ProgressEvent::BlobRetrying {
                        digest: desc.digest.clone(),
                        attempt,
                        error: e.to_string(),
                    });
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One download attempt, resuming a partial ingest with a Range request. The error
    /// says whether another attempt could help.
    async fn try_fetch_blob(
        &self,
        store: &Arc<Store>,
        oref: &oci_client::Reference,
        desc: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<(), (RegistryError, bool)> {
        enum Msg {
            Reset,
            Data(Bytes),
            Finish,
        }
        let (tx, mut rx) = mpsc::channel::<Msg>(16);
        let (offset_tx, offset_rx) = oneshot::channel::<u64>();
        let s = store.clone();
        let (digest, size) = (desc.digest.clone(), desc.size);
        // Hashing and file writes happen on a blocking thread fed by the network side.
        let writer = tokio::task::spawn_blocking(move || -> Result<bool, StoreError> {
            let mut ingest = s.content().begin_resumable(&digest, size)?;
            let _ = offset_tx.send(ingest.offset());
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Msg::Reset => ingest.reset()?,
                    Msg::Data(b) => ingest.write(&b)?,
                    Msg::Finish => {
                        ingest.commit()?;
                        return Ok(true);
                    }
                }
            }
            Ok(false) // interrupted: the partial file stays for the next attempt
        });
        let finish_writer = |writer: tokio::task::JoinHandle<Result<bool, StoreError>>,
                             resumed: bool| async move {
            match writer.await {
                Ok(Ok(true)) => Ok(()),
                Ok(Ok(false)) => Err((RegistryError::Task("download ended early".into()), true)),
                // A resumed prefix may be what was corrupt; the failed commit deleted it.
                Ok(Err(e)) => Err((e.into(), resumed)),
                Err(e) => Err((RegistryError::Task(e.to_string()), false)),
            }
        };
        let Ok(offset) = offset_rx.await else {
            return finish_writer(writer, false).await;
        };
        let resumed = offset > 0;
        if offset < size {
            let response = match tokio::time::timeout(
                self.config.request_timeout,
                self.client.pull_blob_stream_partial(
                    oref,
                    desc.digest.to_string().as_str(),
                    offset,
                    None,
                ),
            )
            .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    let retry = matches!(e, OciDistributionError::RequestError(_))
                        || matches!(e, OciDistributionError::ServerError { code, .. } if code >= 500);
                    drop(tx);
                    let _ = writer.await;
                    return Err((self.map_err(e, &desc.digest.to_string()), retry));
                }
                Err(_) => {
                    drop(tx);
                    let _ = writer.await;
                    return Err((
                        RegistryError::Timeout {
                            registry: self.registry.clone(),
                            what: "blob download",
                            after: self.config.request_timeout,
                        },
                        true,
                    ));
                }
            };
            let (mut stream, mut done) = match response {
                BlobResponse::Partial(s) => (s.stream, offset),
                BlobResponse::Full(s) => {
                    if offset > 0 && tx.send(Msg::Reset).await.is_err() {
                        return finish_writer(writer, resumed).await;
                    }
                    (s.stream, 0)
                }
            };
            progress.event(ProgressEvent::BlobStarted {
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
                size,
                resumed_from: done,
            });
            loop {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        done += chunk.len() as u64;
                        if tx.send(Msg::Data(chunk)).await.is_err() {
                            return finish_writer(writer, resumed).await;
                        }
                        progress.event(ProgressEvent::BlobProgress {
                            digest: desc.digest.clone(),
                            done,
                            size,
                        });
                    }
                    Some(Err(e)) => {
                        drop(tx);
                        let _ = writer.await;
                        return Err((
                            RegistryError::Unreachable {
                                registry: self.registry.clone(),
                                detail: format!(
                                    "download of {} interrupted: {}",
                                    desc.digest,
                                    spec::error_chain(&e)
                                ),
                            },
                            true,
                        ));
                    }
                    None => break,
                }
            }
        }
        if tx.send(Msg::Finish).await.is_err() {
            return finish_writer(writer, resumed).await;
        }
        finish_writer(writer, resumed).await?;
        progress.event(ProgressEvent::BlobDone {
            digest: desc.digest.clone(),
            size,
        });
        Ok(())
    }

    async fn push_blob(
        &self,
        store: &Arc<Store>,
        oref: &oci_client::Reference,
        desc: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<()> {
        let digest = desc.digest.to_string();
        if self
            .timed("blob check", self.client.blob_exists(oref, &digest))
            .await?
        {
            progress.event(ProgressEvent::BlobSkipped {
                digest: desc.digest.clone(),
                size: desc.size,
            });
            return Ok(());
        }
        progress.event(ProgressEvent::BlobStarted {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            size: desc.size,
            resumed_from: 0,
        });
        let path = store.content().path(&desc.digest);
        if !store.content().contains(&desc.digest) {
            return Err(StoreError::BlobNotFound(desc.digest.clone()).into());
        }
        let stream = file_stream(path);
        self.client
            .push_blob_stream(oref, stream, &digest, Some(desc.size))
            .await
            .map_err(|e| self.map_err(e, &digest))?;
        progress.event(ProgressEvent::BlobDone {
            digest: desc.digest.clone(),
            size: desc.size,
        });
        Ok(())
    }
}

/// Reads a file in upload-sized chunks on a blocking thread.
fn file_stream(
    path: PathBuf,
) -> impl futures::Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Result<Bytes, OciDistributionError>>(2);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.into()));
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_scheme_uses_http_only_for_loopback_and_listed_hosts() {
        for (host, scheme) in [
            ("127.0.0.1:5000", "http"),
            ("127.0.0.2:5000", "http"),
            ("127.255.255.254", "http"),
            ("localhost:5000", "http"),
            ("localhost", "http"),
            ("LOCALHOST:80", "http"),
            ("[::1]:5000", "http"),
            ("[::ffff:127.0.0.1]:5000", "http"),
            // Private ranges are not loopback: Docker's rule sends them HTTPS.
            ("10.1.2.3", "https"),
            ("10.0.2.2:5000", "https"),
            ("172.16.0.1:443", "https"),
            ("192.168.64.1:5000", "https"),
            ("169.254.1.1", "https"),
            ("[fd00::1]", "https"),
            ("[fe80::1]:5000", "https"),
            ("registry.local:5000", "https"),
            ("app.localhost", "https"),
            ("myreg", "https"),
            ("8.8.8.8:5000", "https"),
            ("docker.io", "https"),
            ("ghcr.io", "https"),
        ] {
            assert_eq!(Scheme::Auto.for_registry(host, &[]), scheme, "{host}");
        }
        assert_eq!(Scheme::Http.for_registry("docker.io", &[]), "http");
        assert_eq!(Scheme::Https.for_registry("127.0.0.1", &[]), "https");
        assert_eq!(
            "ftp".parse::<Scheme>().unwrap_err().to_string(),
            "invalid scheme \"ftp\": expected http, https or auto"
        );
    }

    #[test]
    fn insecure_list_names_hosts_or_host_ports() {
        let insecure = vec![
            "10.0.0.5".to_owned(),
            "myreg:5000".to_owned(),
            "[fd00::7]".to_owned(),
        ];
        for (host, scheme) in [
            ("10.0.0.5", "http"),
            ("10.0.0.5:5000", "http"),
            ("10.0.0.6:5000", "https"),
            ("myreg:5000", "http"),
            ("MyReg:5000", "http"),
            ("myreg:5001", "https"),
            ("myreg", "https"),
            ("[fd00::7]:5000", "http"),
            ("[fd00::8]:5000", "https"),
        ] {
            assert_eq!(Scheme::Auto.for_registry(host, &insecure), scheme, "{host}");
        }
        // An explicit scheme wins over the list.
        assert_eq!(Scheme::Https.for_registry("10.0.0.5", &insecure), "https");
        let config = RegistryConfig {
            insecure_registries: insecure,
            ..RegistryConfig::default()
        };
        assert_eq!(config.scheme_for("myreg:5000"), "http");
        assert_eq!(config.scheme_for("192.168.1.1:5000"), "https");
    }

    #[test]
    fn zero_downloads_is_refused() {
        let creds = Arc::new(crate::credentials::CredentialChain::new(vec![]));
        let err = RegistryClient::new(
            RegistryConfig {
                max_concurrent_downloads: 0,
                ..RegistryConfig::default()
            },
            creds,
        )
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "invalid registry options: max concurrent downloads must be at least 1"
        );
    }

    #[test]
    fn bearer_challenge_is_parsed() {
        let p = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#,
        );
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
    }
}
