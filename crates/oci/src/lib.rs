//! OCI images on the host: the content store, the image index, image references,
//! manifests and platform selection, the registry client (pull, push, tag, login),
//! registry credentials, and `image save`/`image load` archives.
//!
//! It must not: draw progress (it reports events through [`Progress`]; the CLI draws),
//! know about containers or VMs, or keep large data in memory (layers are streamed to
//! and from disk while hashing).
//!
//! # Storage layout
//! Owned by [`Store`], rooted at the directory passed to [`Store::open`] (the daemon
//! passes `<app root>`):
//! ```text
//! <root>/
//! ├── images.json                  image index: name → descriptor, plus images loaded
//! │                                without a name, by digest (atomic writes)
//! ├── images.lock                  flock serialising image index updates
//! ├── gc.lock                      flock: pulls/loads share it, GC takes it exclusively
//! ├── content/
//! │   ├── blobs/sha256/<hex>       verified blobs; a blob appears only by rename after
//! │   │                            its size and digest were checked
//! │   └── ingest/                  blobs being written, each flocked by its writer:
//! │       ├── sha256-<hex>.partial resumable download (continued with an HTTP Range);
//! │       │                        kept across restarts for a week, removed by GC
//! │       └── tmp-*                other writes; removed on open if left by a crash
//! └── snapshots/<manifest hex>/
//!     ├── .lock                    flock held while the snapshot is built
//!     └── rootfs.ext4              the manifest's root filesystem, built once under a
//!                                  temp name (rootfs.ext4.tmp-*) and renamed into place
//! ```
//!
//! # Using it
//! - Names: [`ImageRef::parse`] (`busybox` → `docker.io/library/busybox:latest`),
//!   [`Platform`] (`linux/arm64`, default [`Platform::host`]).
//! - Store: [`Store::open`], [`Store::images`], [`Store::image`], [`Store::tag`],
//!   [`Store::remove_image`], [`Store::resolve`] (→ manifest + [`ImageConfig`]),
//!   [`Store::gc`]. Store, archive and snapshot calls are blocking: run them in
//!   `spawn_blocking`.
//! - Registry: [`RegistryClient::new`] with a [`RegistryConfig`] (scheme, concurrency,
//!   timeouts, pull mirrors) and a [`CredentialStore`]; then `pull`, `push`, `tag`,
//!   `login`, `logout`. Progress goes to a [`Progress`] implementation.
//! - Archives: [`save`] (OCI layout tar) and [`load`] (OCI layout or `docker save`).
//! - Layers and rootfs: [`open_layer`] (decompressed tar stream), [`ensure_rootfs`].
//! - Every error type has `kind()` → [`ErrorKind`] for the API boundary.
//!
//! A failed pull may leave verified blobs that no image names; they are never visible as
//! an image and the next [`Store::gc`] removes them. Bad input (unknown media type, missing
//! platform, corrupt or truncated archive) is refused before anything is written.
//!
//! The registry client is built on `oci-client`'s lower-level calls (manifest and blob
//! requests, auth, chunked upload) and streams every blob straight into the content store.
//! Credential files and Docker's `config.json` are read by our own small code because
//! the store must be testable against an explicit path.

pub mod archive;
pub mod capture;
pub mod credentials;
pub mod digest;
// Not under `check_macos`: security-framework compiles its API only for Apple targets, so
// this module cannot be type-checked on Linux (docs/macos.md).
#[cfg(target_os = "macos")]
pub mod keychain;
pub mod layer;
pub mod manifest;
/// PAX records, parsed by their length: shared with the ext4 writer and vminitd.
pub use spec::pax;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;

pub use archive::{ArchiveError, Loaded, UntaggedImage, load, save};
pub use credentials::{
    Credential, CredentialChain, CredentialError, CredentialStore, DockerConfigStore,
    FileCredentialStore, RequestCredentials,
};
pub use digest::{Digest, DigestError};

/// The store `registry login` writes to on this platform: the macOS Keychain, or on Linux
/// `<app root>/credentials.json` (0600). The one place this crate picks a platform's part.
pub fn platform_credential_store(
    app_root: &std::path::Path,
) -> std::sync::Arc<dyn CredentialStore> {
    #[cfg(target_os = "macos")]
    {
        let _ = app_root;
        std::sync::Arc::new(keychain::KeychainCredentialStore::new())
    }
    #[cfg(not(target_os = "macos"))]
    {
        std::sync::Arc::new(FileCredentialStore::new(app_root.join("credentials.json")))
    }
}
pub use layer::{LayerError, open_layer};
pub use manifest::{
    Compression, Descriptor, ImageConfig, ImageHealthcheck, ImageIndex, ImageManifest, Manifest,
    ManifestError, media_type,
};
pub use platform::{Platform, PlatformError};
pub use progress::{NoProgress, Progress, ProgressEvent};
pub use reference::{ImageRef, ReferenceError};
pub use registry::{
    PullOptions, PullResult, PushOptions, RegistryClient, RegistryConfig, RegistryError, Scheme,
};
pub use snapshot::{Snapshot, SnapshotError, ensure_rootfs, rootfs_path};
pub use store::{GcReport, ImageRecord, ResolvedImage, Store, StoreError};

/// The small set of error kinds every error of this crate maps to (containerd's errdefs);
/// the daemon turns them into API status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such image, blob, tag or login.
    NotFound,
    /// Something of that name already exists.
    AlreadyExists,
    /// The input is wrong: bad reference, corrupt archive, unknown media type.
    InvalidArgument,
    /// The request is fine but the state forbids it (missing platform, wrong password).
    FailedPrecondition,
    /// The registry or a credential helper did not answer; retrying may help.
    Unavailable,
    /// Local I/O failures and bugs.
    Internal,
}

#[cfg(all(test, not(target_os = "macos")))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn off_macos_logins_go_to_the_app_roots_credentials_file() {
        let root = tempfile::tempdir().unwrap();
        let store = platform_credential_store(root.path());
        let login = Credential {
            username: "alice".into(),
            secret: "s3cret".into(),
        };
        store.store("https://index.docker.io/v1/", &login).unwrap();
        let file = root.path().join("credentials.json");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("\"alice\"")
        );
        assert_eq!(store.get("docker.io").unwrap(), Some(login));
    }
}
