//! A daemon of its own for a benchmark (`cargo xtask bench daemon|docker|build`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::paths::cache_dir;
use crate::run::{run, step};

/// A daemon of its own on a temporary app root (user-mode networking: a benchmark must not
/// add bridges to this host) with the offline busybox image loaded and `containers`
/// containers created; stopped and removed on drop.
pub(crate) struct BenchDaemon {
    bin: PathBuf,
    pub(crate) root: PathBuf,
}

impl BenchDaemon {
    pub(crate) fn start(name: &str, bin: &Path, containers: u32) -> Result<BenchDaemon> {
        let images = crate::images::build()?;
        let root = cache_dir().join("bench").join(name);
        let _ = std::fs::remove_dir_all(&root);
        let d = BenchDaemon {
            bin: bin.to_path_buf(),
            root,
        };
        // No warm pool here: these benches time the cold path and what the Docker layer adds
        // to it. With a pool of one, whichever of two interleaved runs came second would find
        // the pool still refilling and boot cold; `bench pool` times the pool on its own.
        run(d
            .container()
            .env("CONTAINER_POOL_SIZE", "0")
            .args(["system", "start"]))?;
        run(d
            .container()
            .args(["image", "load", "-i"])
            .arg(images.join("busybox.docker.tar")))?;
        step(&format!("creating {containers} containers"));
        for _ in 0..containers {
            run(d.container().args(["create", "busybox", "true"]))?;
        }
        Ok(d)
    }

    /// `container …` against this daemon, output discarded.
    pub(crate) fn container(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("container"));
        cmd.env("CONTAINER_APP_ROOT", &self.root)
            .env("CONTAINER_NETWORK_MODE", "user")
            .stdout(std::process::Stdio::null());
        cmd
    }

    /// The docker CLI against this daemon's Docker socket, output discarded.
    pub(crate) fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env(
            "DOCKER_HOST",
            format!("unix://{}", self.root.join("docker.sock").display()),
        )
        .env("DOCKER_CONFIG", self.root.join("docker-config"))
        .env_remove("DOCKER_CONTEXT")
        .stdout(std::process::Stdio::null());
        cmd
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = run(self.container().args(["system", "stop"]));
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
