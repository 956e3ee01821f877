//! How the daemon's errors become the API's: crates/oci's kinds onto [`ApiError`] kinds, and
//! messages onto one line. Every service uses these; they depend on nothing of the daemon.

use api::ApiError;

/// Maps an error of crates/oci onto the API's kinds.
pub(crate) fn oci_error(kind: oci::ErrorKind, message: impl std::fmt::Display) -> ApiError {
    use api::ErrorKind as K;
    let kind = match kind {
        oci::ErrorKind::NotFound => K::NotFound,
        oci::ErrorKind::AlreadyExists => K::AlreadyExists,
        oci::ErrorKind::InvalidArgument => K::InvalidArgument,
        oci::ErrorKind::FailedPrecondition => K::FailedPrecondition,
        oci::ErrorKind::Unavailable => K::Unavailable,
        oci::ErrorKind::Internal => K::Internal,
    };
    ApiError::new(kind, one_line(&message.to_string()))
}

/// Collapses a message onto one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
