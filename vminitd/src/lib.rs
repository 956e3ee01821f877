//! vminitd: PID 1 of every container VM.
//!
//! Its one job: turn the host's calls on the guest agent protocol (`agent::v1`, gRPC over
//! vsock port 1024) into guest-side effects — mounts, network configuration, and container
//! processes launched from OCI runtime specs in their own namespaces, cgroups and seccomp
//! sandbox, with their stdio spliced to host vsock ports. It must not know about images,
//! registries or the host's state: what to run arrives fully resolved in each request.
//!
//! It is written here rather than reused because it is the product's guest half; it ships
//! as one static binary (glibc crt-static), so it never calls NSS: users and groups come from
//! the container's own /etc/passwd and /etc/group (`user`).
//!
//! The same binary has three modes (see main.rs): the agent (`/init`), the setup helper
//! that builds one container process (`setup`), and the `--init` tiny init (`tinyinit`).

#[macro_use]
pub mod log;
pub mod archive;
pub mod binfmt;
pub mod boot;
pub mod caps;
pub mod cgroup;
pub mod fsops;
pub mod layer;
pub mod memory;
pub mod mountopt;
pub mod net;
pub mod overlay_layer;
pub mod prepare;
pub mod process;
pub mod reaper;
pub mod relay;
pub mod rootpath;
pub mod seccomp;
pub mod server;
pub mod setup;
pub mod spec;
pub mod step_root;
pub mod tinyinit;
pub mod user;
