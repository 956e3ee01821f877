//! `container-runtime`: the helper that owns one container's VM. The daemon writes
//! `<bundle>/config.json` and spawns one runtime per container, detached, so the container
//! outlives a daemon crash. The runtime creates the writable layer, boots the VM with the
//! image and writable disks, joins them with overlayfs in the guest, writes /etc/hostname,
//! /etc/hosts and /etc/resolv.conf, creates the init process with its stdio over vsock,
//! serves its gRPC API on `runtime.sock` (the daemon attaches, then calls `Start`), logs the
//! output to `stdio.log`, relays Unix sockets between host and container (`relay`), keeps
//! `state.json` current, and on the init process's exit
//! records the code, shuts the VM down cleanly, keeps answering `State`/`Wait` briefly and
//! exits. SIGTERM to the runtime stops the container the same way.
//!
//! It must not know about images, registries, networks' allocation or other containers
//! (the daemon decides all of that and writes it into the config), and it talks to the
//! hypervisor only through the `vmm` traits and to the guest only through the agent client.
//!
//! The same binary serves two other modes: `--maintenance` (a stopped container's files,
//! [`maintenance`]) and `--builder DIR` (one builder VM running the RUN steps of builds,
//! [`builder`]).
//!
//! What the daemon sees of a runtime (config, bundle layout, state, proto, client) lives in
//! `runtime-api`; this crate is the side of that contract that owns a VM, and only the
//! `container-runtime` binary uses it. See `runtime_api::bundle` for the on-disk layout and
//! the `container` module for the guest layout.

pub mod builder;
mod container;
mod error;
mod guest_layout;
mod held;
pub mod maintenance;
pub mod pool;
mod relay;
pub mod run;
mod server;
