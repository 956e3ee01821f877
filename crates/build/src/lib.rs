//! The build executor of `container build`.
//!
//! One job: run the build plan `crates/dockerfile` makes from a Dockerfile into an image in
//! the content store. [`Build::run`] walks the stages the target needs; `FROM` starts from a
//! base image (the caller's [`BaseImages`] pulls it) or `scratch`; `COPY` and `ADD` become
//! real OCI layers written on the host ([`layer`], [`copy`]); the metadata instructions edit
//! the image config and its history as Docker does ([`config`]); each step that makes a
//! layer is looked up in, and recorded into, the build cache ([`cache`]). The result is an
//! OCI manifest and config in the store; the caller names it.
//!
//! It must not: speak gRPC, draw progress (it reports [`Event`]s), boot VMs or know the
//! daemon's state beyond the image store and the cache directory it is handed. `RUN`
//! steps go to the caller's [`StepRunner`] (the daemon's builder VM), only when they miss
//! the cache ([`run`]).
//!
//! Everything here is blocking file I/O: the daemon runs it in `spawn_blocking`.

pub mod cache;
pub mod config;
pub mod copy;
pub mod exec;
pub mod export;
pub mod layer;
pub mod run;
pub mod step;

pub use cache::Cache;
pub use exec::{BaseImages, Build, BuildOptions, Built, Event};
pub use step::{RunStep, StepOutcome, StepRunner};

/// The small set of error kinds (shared with crates/oci) a build error maps to.
pub use oci::ErrorKind;

/// Why a build failed. Every message is one line; errors about an instruction name the
/// Dockerfile and line as Docker's do.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Dockerfile(#[from] dockerfile::Error),
    /// An instruction could not be carried out.
    #[error("{file}:{line}: {message}")]
    Step {
        file: String,
        line: usize,
        kind: ErrorKind,
        message: String,
    },
    /// A base image (or `COPY --from` image) could not be had.
    #[error("{message}")]
    Image { kind: ErrorKind, message: String },
    #[error(transparent)]
    Store(#[from] oci::StoreError),
    #[error(transparent)]
    Layer(#[from] oci::LayerError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BuildError::Dockerfile(_) => ErrorKind::InvalidArgument,
            BuildError::Step { kind, .. } | BuildError::Image { kind, .. } => *kind,
            BuildError::Store(e) => e.kind(),
            BuildError::Layer(e) => e.kind(),
            BuildError::Io { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
        let what = what.into();
        move |source| BuildError::Io { what, source }
    }
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;
