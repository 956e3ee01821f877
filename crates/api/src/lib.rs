//! The daemon's API contract: what `container` (and any other client) says to
//! `container-apiserver`.
//!
//! One job: hold the contract. The protos under `proto/container/api/v1/` and the client and
//! server code generated from them ([`v1`]), the error kinds that cross the wire
//! ([`error`]), where the daemon's socket is ([`paths`]) and how it is bound ([`server`]),
//! a client that dials it ([`client`]) and conversions from the CLI's parsed flags
//! ([`convert`]).
//!
//! It must not implement any service, keep state, or know about VMs and images beyond their
//! descriptions on the wire.

pub mod client;
pub mod convert;
pub mod error;
pub mod paths;
pub mod server;

pub use client::{Client, ConnectError, DEFAULT_CONNECT_TIMEOUT};
pub use error::{ApiError, ErrorKind};
pub use paths::{APP_ROOT_ENV, SOCKET_NAME, app_root, default_socket_path, socket_path};

/// The API version this build speaks. A client refuses a daemon reporting anything else.
/// Bump it on any change a peer cannot safely ignore.
pub const API_VERSION: u32 = 4;

/// Generated messages, clients (`containers_client`, ...) and servers (`containers_server`,
/// ...). Every rpc and field is documented in the protos.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("container.api.v1");
}
