//! Docker's error shape: `{"message": "..."}` with the status code carrying the meaning
//! (404 not found, 409 conflict, 400 bad parameter, 304 nothing to do, 501 unsupported).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answered to a Docker client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DockerError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The one-line message the client prints.
    pub message: String,
}

impl DockerError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> DockerError {
        DockerError {
            status,
            message: message.into(),
        }
    }

    /// 400: a malformed request or a field we refuse.
    pub fn bad_request(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::CONFLICT, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 501: an endpoint or option this daemon does not implement.
    pub fn not_implemented(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::NOT_IMPLEMENTED, message)
    }

    /// A field whose meaning we cannot honour: 400 naming it, never a silent ignore.
    pub fn unsupported_field(field: &str, why: &str) -> DockerError {
        DockerError::bad_request(format!("{field} is not supported: {why}"))
    }
}

impl From<tonic::Status> for DockerError {
    fn from(s: tonic::Status) -> DockerError {
        use tonic::Code;
        let status = match s.code() {
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            // A running container that must be stopped first, a volume in use: Docker's
            // conflicts.
            Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        DockerError::new(status, s.message().to_owned())
    }
}

impl IntoResponse for DockerError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::NOT_MODIFIED {
            // 304 carries no body.
            return self.status.into_response();
        }
        (
            self.status,
            axum::Json(serde_json::json!({ "message": self.message })),
        )
            .into_response()
    }
}

/// A handler's result.
pub type DResult<T> = Result<T, DockerError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_become_dockers_statuses() {
        let e = DockerError::from(tonic::Status::not_found("no such container: x"));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.message, "no such container: x");
        let e = DockerError::from(tonic::Status::already_exists("name web is in use"));
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e = DockerError::from(tonic::Status::invalid_argument("bad"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
