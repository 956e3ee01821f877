//! `container-runtime`: the helper that owns one container's VM. The daemon writes
//! `<bundle>/config.json` and spawns one runtime per container, detached, so the container
//! outlives a daemon crash. The runtime creates the writable layer, boots the VM with the
//! image and writable disks, joins them with overlayfs in the guest, writes /etc/hostname,
//! /etc/hosts and /etc/resolv.conf, creates the init process with its stdio over vsock,
//! serves its gRPC API on `runtime.sock` (the daemon attaches, then calls `Start`), logs the
//! output to `stdio.log`, relays Unix sockets between host and container ([`relay`]), keeps `state.json` current, and on the init process's exit
//! records the code, shuts the VM down cleanly, keeps answering `State`/`Wait` briefly and
//! exits. SIGTERM to the runtime stops the container the same way.
//!
//! It must not know about images, registries, networks' allocation or other containers
//! (the daemon decides all of that and writes it into the config), and it talks to the
//! hypervisor only through the `vmm` traits and to the guest only through the agent client.
//!
//! See [`bundle`] for the on-disk layout and [`container`] for the guest layout.

pub mod bundle;
pub mod client;
pub mod config;
pub mod container;
pub mod fsutil;
pub mod maintenance;
pub mod relay;
pub mod run;
pub mod server;
pub mod state;
pub mod stdio_log;

/// The API version of `runtime.proto`. Clients refuse a runtime reporting another.
pub const RUNTIME_API_VERSION: u32 = 2;

/// Generated messages, client (`runtime_client`) and server (`runtime_server`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("container.runtime.v1");
}

pub use bundle::Bundle;
pub use client::RuntimeClient;
pub use config::RuntimeConfig;
pub use state::{State, Status};
