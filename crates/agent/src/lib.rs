//! The guest agent protocol: the gRPC API that `vminitd` (PID 1 of every container VM) serves
//! on vsock port 1024 and the host's runtime calls.
//!
//! This crate holds only the contract: the proto in `proto/agent.proto` and the client and
//! server code generated from it. It must not open sockets, talk to a VMM or know about
//! images; transports are the callers' business.

/// The protocol version this build speaks. The host calls `Version` first and refuses a guest
/// reporting anything else. Bump it on any change a peer cannot safely ignore.
pub const PROTOCOL_VERSION: u32 = 6;

/// The vsock port vminitd listens on.
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// Generated messages, client (`agent_client`) and server (`agent_server`).
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("container.agent.v1");
}

/// The host's typed, version-checked client over any stream connector (feature `client`).
#[cfg(feature = "client")]
pub mod client;

/// The framing of socket relay streams (feature `relay`).
#[cfg(feature = "relay")]
pub mod relay;
