//! What the daemon needs from a container runtime, and nothing that owns a VM: the config
//! the daemon writes ([`config`]), the bundle layout both sides share ([`bundle`]), the
//! runtime's state record ([`state`]), the stdio log format ([`stdio_log`]), the liveness
//! lock ([`Bundle::runtime_alive`]), the gRPC proto (`pb`) and its typed client ([`client`]).
//!
//! `container-runtime` (crates/runtime) implements this contract; `container-apiserver`
//! depends on this crate only, so the daemon links no VMM backend and no guest agent. This
//! crate must not boot VMs, talk to the guest, or know about images or other containers.

pub mod builder;
pub mod bundle;
pub mod client;
pub mod config;
pub mod fsutil;
pub mod pool;
pub mod state;
pub mod stdio_log;

/// The API version of `runtime.proto`. Clients refuse a runtime reporting another.
pub const RUNTIME_API_VERSION: u32 = 5;

/// Generated messages, client (`runtime_client`) and server (`runtime_server`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("container.runtime.v1");
}

pub use bundle::{Bundle, LockError, RuntimeLock};
pub use client::RuntimeClient;
pub use config::RuntimeConfig;
pub use state::{State, Status};
