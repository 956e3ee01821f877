//! OCI images (work in progress).
