//! The CLI's errors and the exit codes they map to (Docker's).

use std::path::PathBuf;

/// The daemon or a flag failed: Docker's 125.
pub const EXIT_FAILURE: i32 = 125;
/// The command could not be executed: Docker's 126.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// The command was not found: Docker's 127.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Everything that can end a command early.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon's socket does not answer.
    #[error("cannot reach the container daemon at {}: is it running? (container system start)", socket.display())]
    DaemonDown {
        /// The socket dialled.
        socket: PathBuf,
    },
    /// The daemon answered but could not be used (wrong version, no app root).
    #[error("{0}")]
    Daemon(String),
    /// A flag or argument is wrong.
    #[error("{0}")]
    Usage(String),
    /// The daemon refused or failed a request.
    #[error("{0}")]
    Api(#[from] api::ApiError),
    /// Local I/O failed (a file named on the command line, the terminal).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Some of several items failed; each was already reported.
    #[error("{0}")]
    Partial(String),
}

impl CliError {
    /// A usage error from anything printable.
    pub fn usage(e: impl std::fmt::Display) -> CliError {
        CliError::Usage(e.to_string())
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> CliError {
        CliError::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        EXIT_FAILURE
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> CliError {
        CliError::Api(api::ApiError::from(status))
    }
}

impl From<api::ConnectError> for CliError {
    fn from(e: api::ConnectError) -> CliError {
        match e {
            api::ConnectError::Unreachable { socket, .. }
            | api::ConnectError::Timeout { socket, .. } => CliError::DaemonDown { socket },
            other => CliError::Daemon(other.to_string()),
        }
    }
}

/// The result of a command: the exit code to leave with.
pub type CliResult = Result<i32, CliError>;
