//! `container-apiserver`: the daemon behind the `container` CLI.
//!
//! One job: own the host-side state (images, containers, volumes, registry credentials,
//! properties, kernels) and serve the gRPC contract of crates/api on `<app root>/apiserver.sock`. It
//! spawns one `container-runtime` per running container and talks to it over the runtime's
//! socket; it never boots a VM or speaks to a guest itself, and it never draws anything (the
//! CLI does).
//!
//! # Storage layout
//! The app root comes from `$CONTAINER_APP_ROOT` or crates/api's rules ([`api::app_root`]).
//! ```text
//! <app root>/
//! ├── apiserver.sock            the API (mode 0600), present while the daemon serves
//! ├── apiserver.lock            flocked by the daemon serving this root, for its lifetime
//! ├── apiserver.pid             the serving daemon's pid
//! ├── apiserver.log             the daemon's own log (`system logs`)
//! ├── properties.json           properties the user set (atomic writes); defaults apply
//! │                             to every key not in it
//! ├── credentials.json          registry logins (mode 0600, crates/oci's file store; the Keychain on macOS)
//! ├── images.json, content/,    the image store (crates/oci: index, verified blobs,
//! │   snapshots/<hex>/          resumable ingests, one rootfs.ext4 per manifest)
//! ├── kernels/                  kernels installed by `system kernel set` (vmlinux-<arch>,
//! │                             with its build info vmlinux-<arch>.info.json when it had one)
//! ├── volumes/<name>/volume.ext4  a volume's file system (sparse ext4), attached as a disk;
//! │   volumes/<name>/volume.json  its metadata (see [`volumes`] for the whole tree)
//! ├── templates/empty-<size>-<label>-<version>.ext4  a formatted empty writable layer of
//! │                             each size, written by the runtimes (crates/ext4's
//! │                             `template`); each new container's rw.ext4 is cloned from it
//! └── containers/
//!     ├── .new-<id>/            a container being created; renamed to <id>/ when whole,
//!     │                         removed on start if a crash left it
//!     ├── .gone-<id>/           a container being deleted; removed on start
//!     └── <id>/                 one container, <id> is 64 hex digits
//!         ├── container.json    our record (atomic): id, name, image reference and digest,
//!         │                     created time, the user's options, labels, last state,
//!         │                     healthcheck and health (kept across restarts), all
//!         │                     in the daemon's own strict types ([`record`], [`options`];
//!         │                     a previous version's record is migrated when loaded)
//!         ├── config.json       the runtime's strict config, rewritten at every start
//!         ├── state.json        the runtime's state (its pid, status, exit code)
//!         ├── stdio.log         the init process's output (JSON lines)
//!         ├── boot.log          the VM's console
//!         ├── runtime.log       the runtime's own log
//!         ├── runtime.sock      the runtime's API while it serves
//!         └── rw.ext4           the writable layer
//! $TMPDIR/container-<uid>/<id prefix>  a symlink to containers/<id>/ handed to the runtime
//!                               when the real path is too long for its socket (> 94 bytes)
//! ```
//! The whole tree is its owner's alone: directories 0700, files and sockets 0600, set where
//! each is made (see [`fsutil::create_private_dir`]) and backed by umask 077 in the daemon
//! and its runtimes for what their helpers create.
//! Every file the daemon writes is written atomically (temp file, fsync, rename, fsync the
//! directory). On start the daemon reconciles instead of trusting memory: a container whose
//! runtime still lives is re-adopted as running, one whose runtime died is marked stopped
//! with the exit code its runtime last recorded, and half-created or half-deleted
//! container directories are removed (crates/oci cleans its own ingests).
//!
//! # Containers
//! IDs are 64 hex digits; names are unique (`--name`, else Docker-style `adjective_name`);
//! every call accepts an ID, a unique ID prefix or a name. The process is the image's
//! config merged with the user's options exactly as Docker merges them, and the OCI spec
//! carries Docker's defaults (see [`runspec`]). The daemon records an exit as soon as an
//! attached client sees it, else when the runtime finishes; `--rm` and restart policies act
//! then (or at the next daemon start, if the daemon was down when the container ended).
//!
//! # Entry points
//! [`Daemon::open`] reconciles an app root, [`serve`] runs the gRPC services on its socket
//! until [`Daemon::shutdown`] or a signal. `main.rs` only parses flags and wires logging.

pub mod build_context;
pub mod builder;
pub mod builder_vm;
pub mod builds;
pub mod cache_mount;
pub mod chan_reader;
pub mod commit_config;
pub mod containers;
pub mod daemon;
pub mod docker;
pub mod errors;
pub mod events;
pub mod fsutil;
pub mod guest;
pub mod health;
pub mod images;
pub mod kernel;
pub mod list_filters;
pub mod names;
pub mod network_service;
pub mod networks;
pub mod options;
pub mod platform;
pub mod pool;
pub mod properties;
pub mod record;
pub mod runspec;
pub mod server;
pub mod system;
pub mod tail;
pub mod volume_service;
pub mod volumes;

pub use daemon::{Daemon, DaemonOptions};
pub use server::{ServeError, serve};

/// The daemon's program name, as `system version` reports it.
pub const APP_NAME: &str = "container-apiserver";
