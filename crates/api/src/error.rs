//! The error kinds that cross the API, and their gRPC status codes.
//!
//! The daemon maps every internal error onto one of six kinds (containerd's errdefs); only
//! the kind and a one-line message travel. Clients decide by kind, never by message text.

use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The container, image, volume, property or login does not exist.
    NotFound,
    /// A container, tag or volume of that name already exists.
    AlreadyExists,
    /// The request itself is wrong (bad flag value, bad reference).
    InvalidArgument,
    /// The request is fine but the state forbids it (container running, image in use).
    FailedPrecondition,
    /// Something the daemon needs is not answering (registry, VM, the daemon itself).
    Unavailable,
    /// A bug or an unexpected failure in the daemon.
    Internal,
}

impl ErrorKind {
    /// The gRPC status code this kind travels as.
    pub fn code(self) -> tonic::Code {
        match self {
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::AlreadyExists => tonic::Code::AlreadyExists,
            ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// The kind of a received status code. Codes outside the six map to the nearest kind:
    /// a deadline or cancellation is `Unavailable`, a range error `InvalidArgument`, and
    /// anything else `Internal`.
    pub fn from_code(code: tonic::Code) -> ErrorKind {
        use tonic::Code;
        match code {
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::FailedPrecondition | Code::Aborted | Code::ResourceExhausted => {
                ErrorKind::FailedPrecondition
            }
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }

    /// A short lower-case name: `not found`, `already exists`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::FailedPrecondition => "failed precondition",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it crosses the API: a kind and a one-line message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// What to tell the user (lower case, no trailing period).
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// `NotFound`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, message)
    }

    /// `AlreadyExists`.
    pub fn already_exists(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::AlreadyExists, message)
    }

    /// `InvalidArgument`.
    pub fn invalid_argument(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidArgument, message)
    }

    /// `FailedPrecondition`.
    pub fn failed_precondition(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::FailedPrecondition, message)
    }

    /// `Unavailable`.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unavailable, message)
    }

    /// `Internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Internal, message)
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        tonic::Status::new(e.kind.code(), e.message)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        let message = if status.message().is_empty() {
            format!(
                "{} ({})",
                ErrorKind::from_code(status.code()),
                status.code()
            )
        } else {
            status.message().to_owned()
        };
        ApiError {
            kind: ErrorKind::from_code(status.code()),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [ErrorKind; 6] = [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InvalidArgument,
        ErrorKind::FailedPrecondition,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    #[test]
    fn every_kind_survives_a_status_round_trip() {
        for kind in KINDS {
            let status: tonic::Status = ApiError::new(kind, "container web not found").into();
            let back = ApiError::from(status);
            assert_eq!(back.kind, kind);
            assert_eq!(back.to_string(), "container web not found");
        }
    }

    #[test]
    fn foreign_codes_map_to_the_nearest_kind() {
        assert_eq!(
            ErrorKind::from_code(tonic::Code::DeadlineExceeded),
            ErrorKind::Unavailable
        );
        assert_eq!(
            ErrorKind::from_code(tonic::Code::Unknown),
            ErrorKind::Internal
        );
        assert_eq!(
            ErrorKind::from_code(tonic::Code::OutOfRange),
            ErrorKind::InvalidArgument
        );
        let e = ApiError::from(tonic::Status::new(tonic::Code::Unimplemented, ""));
        assert_eq!(
            e.to_string(),
            "internal (Operation is not implemented or not supported)"
        );
    }
}
