//! A real daemon for one end-to-end test: its own short app root under /tmp, the workspace's
//! debug builds of `container`, `container-apiserver` and `container-runtime`, busybox
//! loaded from the image cache and the local registry as Docker Hub mirror. Dropping it
//! removes every container, stops the daemon and deletes the app root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::TestEnv;

/// A started daemon.
pub struct Daemon {
    /// The app root.
    pub root: PathBuf,
    /// Where the binaries are (`target/debug`).
    pub bin: PathBuf,
    /// The local registry, the daemon's Docker Hub mirror: no test reaches the internet.
    pub mirror: String,
    /// `$CONTAINER_POOL_SIZE` of the daemon: 0 (no warm pool) unless a test asks, so no
    /// other test pays for pooled guests booting beside it.
    pub pool_size: u32,
}

/// `target/debug`: the test executable lives in `target/debug/deps`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// Where the daemon in `bin` looks for its guest: `<bin>/../share/container`.
pub fn share_dir(bin: &Path) -> PathBuf {
    bin.parent().unwrap_or(bin).join("share").join("container")
}

impl Daemon {
    /// A started daemon with busybox loaded, or None (skip) outside `cargo xtask test`.
    /// `test` names the app root: keep it short, the runtime's socket path must fit in
    /// sockaddr_un.
    pub fn start(test: &str) -> Option<Daemon> {
        Daemon::start_in(test, None)
    }

    /// [`Daemon::start`], with the daemon (and so its runtimes and VMs) inside network
    /// namespace `netns` in bridge mode when one is given. The CLI stays outside: it only
    /// needs the daemon's socket.
    pub fn start_in(test: &str, netns: Option<&str>) -> Option<Daemon> {
        Daemon::start_with(test, netns, 0)
    }

    /// [`Daemon::start`] with a warm pool of `pool_size` guests.
    pub fn start_with_pool(test: &str, pool_size: u32) -> Option<Daemon> {
        Daemon::start_with(test, None, pool_size)
    }

    fn start_with(test: &str, netns: Option<&str>, pool_size: u32) -> Option<Daemon> {
        let env = TestEnv::get()?;
        let bin = bin_dir();
        for name in ["container", "container-apiserver", "container-runtime"] {
            assert!(
                bin.join(name).exists(),
                "{} not built",
                bin.join(name).display()
            );
        }
        // The daemon boots the guest its installation's share directory holds.
        let share = share_dir(&bin);
        for name in ["vmlinux", "initramfs.cpio"] {
            if !share.join(name).is_file() {
                test_support::skip(&format!(
                    "{} is missing (cargo xtask guest publishes it)",
                    share.join(name).display()
                ));
                return None;
            }
        }
        let root = PathBuf::from(format!("/tmp/ce2e-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let daemon = Daemon {
            root,
            bin,
            mirror: env.registry.clone(),
            pool_size,
        };
        match netns {
            None => {
                daemon.ok(&["system", "start"]);
            }
            Some(ns) => {
                let mut start = Command::new("ip");
                start
                    .args(["netns", "exec", ns])
                    .arg(daemon.bin.join("container"))
                    .args(["system", "start"])
                    .env("CONTAINER_APP_ROOT", &daemon.root)
                    .env("CONTAINER_NETWORK_MODE", "bridge")
                    .env("CONTAINER_POOL_SIZE", daemon.pool_size.to_string())
                    .env("CONTAINER_REGISTRY_MIRROR", &daemon.mirror)
                    .stdin(Stdio::null());
                check_ok(
                    &["system", "start"],
                    start.output().expect("ip netns exec runs"),
                );
            }
        }
        let archive = env.images.join("busybox.docker.tar");
        daemon.ok(&["image", "load", "-i", archive.to_str().expect("utf-8 path")]);
        Some(daemon)
    }

    /// A `container` command against this daemon.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin.join("container"));
        // User-mode networking: these daemons run in the host's network namespace, where no
        // test may create bridges (tests/tests/network.rs covers bridge mode in namespaces).
        cmd.args(args)
            .env("CONTAINER_APP_ROOT", &self.root)
            .env("CONTAINER_NETWORK_MODE", "user")
            .env("CONTAINER_POOL_SIZE", self.pool_size.to_string())
            .env("CONTAINER_REGISTRY_MIRROR", &self.mirror);
        cmd
    }

    /// Runs a command with stdin closed.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("container runs")
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check_ok(args, self.run(args))
    }

    /// Runs and requires failure with `code`; returns the error, which must be one line
    /// (progress lines such as "pulling ..." may come before it, as with Docker).
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        check_fails(args, self.run(args), code)
    }

    /// Requires that `image`'s rootfs snapshot passes `e2fsck -fn`; returns the digest of
    /// the manifest it was made from.
    pub fn fsck_snapshot(&self, image: &str) -> String {
        let inspect: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", image])).expect("inspect json");
        let manifest = inspect[0]["variants"][0]["manifestDigest"]
            .as_str()
            .expect("a manifest digest");
        let rootfs = self
            .root
            .join("snapshots")
            .join(manifest.trim_start_matches("sha256:"))
            .join("rootfs.ext4");
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(&rootfs)
            .output()
            .expect("e2fsck runs");
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        manifest.to_owned()
    }

    /// The daemon's process id.
    pub fn apiserver_pid(&self) -> i32 {
        std::fs::read_to_string(self.root.join("apiserver.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }
}

/// Requires success; returns stdout.
pub fn check_ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "container {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Requires failure with `code` and exactly one error line, last; returns it.
pub fn check_fails(args: &[&str], out: Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "container {args:?}: {stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("container: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr:?}");
    assert_eq!(stderr.lines().last(), Some(errors[0]), "{stderr:?}");
    errors[0].to_owned()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force"]);
        let _ = self.run(&["network", "rm", "--all"]);
        let _ = self.run(&["system", "stop"]);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
