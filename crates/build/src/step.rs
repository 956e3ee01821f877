//! What a RUN step needs from the builder VM: [`StepRunner`], which the daemon implements
//! (this crate never boots a VM), and the [`RunStep`] it is handed. [`crate::run`] makes
//! the steps; [`crate::exec`] holds the runner.

use crate::layer::Layer;
use crate::{BuildError, ErrorKind, Result};

/// One layer of a step's root, bottom first.
pub type StepLayer = Layer;

/// Where a bind mount's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindFrom {
    /// A layer stack (a stage or an image), bottom first.
    Layers(Vec<StepLayer>),
    /// The build context (a layer of it is made when the step runs).
    Context,
}

pub use dockerfile::mount::CacheSharing;

/// The initial contents of a cache mount (`from=` a stage or image, `source=` a directory
/// of it): copied into the cache directory when the directory is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSeed {
    /// The stage's or image's layers, bottom first.
    pub layers: Vec<StepLayer>,
    /// The absolute path in them whose contents seed the cache.
    pub source: String,
}

/// A `RUN --mount`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMountKind {
    /// A secret the daemon has by id (from `--secret`).
    Secret {
        id: String,
        required: bool,
    },
    /// A cache directory, persistent per id across builds.
    Cache {
        id: String,
        readonly: bool,
        /// Who else may use it while the step runs: anyone (`shared`), nobody (`locked`:
        /// the step waits), or a concurrent user gets a fresh directory (`private`).
        sharing: CacheSharing,
        /// `from=`: what a new cache directory starts with.
        seed: Option<CacheSeed>,
    },
    Bind {
        from: BindFrom,
        source: String,
        rw: bool,
    },
    Tmpfs {
        size: Option<u64>,
    },
    /// An SSH agent the daemon has by id (from `--ssh`).
    Ssh {
        id: String,
        required: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepMount {
    /// Absolute path in the step's root.
    pub target: String,
    pub kind: StepMountKind,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// `RUN --mount=type=secret,id=ID,env=VAR`: the secret as the variable VAR of that step
/// only (never in the image's Env, its history or the cache key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    pub id: String,
    pub var: String,
    pub required: bool,
}

/// One RUN step, ready for the builder VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// The stage's layers so far, bottom first.
    pub layers: Vec<StepLayer>,
    pub args: Vec<String>,
    /// KEY=VALUE.
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    /// `--network=none`.
    pub no_network: bool,
    pub mounts: Vec<StepMount>,
    /// Secrets the step sees as environment variables.
    pub secret_env: Vec<SecretEnv>,
    /// The platform whose VM runs it.
    pub platform: spec::Platform,
    /// The build context, for bind mounts from it.
    pub context: std::path::PathBuf,
    /// SOURCE_DATE_EPOCH: no file of the step's layer may be dated later.
    pub source_date_epoch: Option<i64>,
}

/// What a step left: its exit code and, when it succeeded, its layer in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub exit_code: i32,
    pub layer: Option<Layer>,
}

/// Runs RUN steps in a builder VM: the daemon's side. Blocking; `output` receives the
/// step's stdout and stderr as they come.
pub trait StepRunner {
    fn run(&self, step: &RunStep, output: &mut dyn FnMut(&[u8])) -> Result<StepOutcome>;

    /// Told at the start of a build that will run RUN steps for `platform` whatever the
    /// cache holds (`--no-cache`): a runner may start its builder now, while the steps
    /// before the first RUN (the base image, COPY) are carried out.
    fn will_run(&self, _platform: &spec::Platform) {}
}

/// A runner for builds that have no builder: every RUN fails with this error.
pub struct NoRunner;

impl StepRunner for NoRunner {
    fn run(&self, _: &RunStep, _: &mut dyn FnMut(&[u8])) -> Result<StepOutcome> {
        Err(BuildError::Image {
            kind: ErrorKind::FailedPrecondition,
            message: "RUN needs a builder VM, which this build has none of".into(),
        })
    }
}
