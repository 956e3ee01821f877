//! The one error type of running a container, shared by every module that talks to its VM
//! or guest.

use agent::client::ClientError;
use runtime_api::config::ConfigError;
use runtime_api::state::EXIT_RUNTIME_FAILED;
use vmm::VmError;

/// Errors of running a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The writable layer could not be created.
    #[error("cannot create the writable layer {path}")]
    WritableLayer {
        /// The layer's path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: ext4::Error,
    },
    /// The VM failed to boot or a VMM call failed.
    #[error("vm: {0}")]
    Vm(#[from] VmError),
    /// A guest agent call failed.
    #[error("{step}: {source}")]
    Agent {
        /// What the runtime was doing.
        step: String,
        /// The agent's error.
        source: ClientError,
    },
    /// The init process or an exec could not be started; `code` is Docker's exit code for it.
    #[error("{message}")]
    Start {
        /// The guest's one-line reason.
        message: String,
        /// 126 (cannot execute), 127 (not found) or 125.
        code: i32,
    },
    /// A host I/O operation failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The container is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No such exec.
    #[error("{0}")]
    NotFound(String),
}

impl ContainerError {
    /// The exit code state.json records for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Start { code, .. } => *code,
            _ => EXIT_RUNTIME_FAILED,
        }
    }
}
