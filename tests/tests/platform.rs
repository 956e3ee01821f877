//! End to end: images of another architecture. On this x86_64 host an arm64 image runs in
//! the arm64 guest under `qemu-system-aarch64`, chosen by the image's platform: from an index
//! with `--platform` (the CLI, and the Docker API's `platform` through the real `docker`
//! CLI), and without it when the image has only that platform. The images are the offline
//! `test/busybox-multi` (linux/amd64 + linux/arm64/v8) and `test/busybox-arm64` of `cargo
//! xtask images`, in the local registry.

use std::process::Command;

use container_tests::daemon::{Daemon, check_ok, share_dir};

/// The arm64 guest the daemon boots for arm64 images, or None (skip) outside `cargo xtask
/// test` (under it a missing guest fails).
fn arm64_guest_present(d: &Daemon) -> bool {
    let dir = share_dir(&d.bin).join("arm64");
    for name in ["vmlinux", "initramfs.cpio"] {
        if !dir.join(name).is_file() {
            test_support::skip(&format!(
                "{} is missing (cargo xtask guest --arch arm64 publishes it)",
                dir.join(name).display()
            ));
            return false;
        }
    }
    true
}

/// The lines of `image ls -v` for `name`, as (os, arch) pairs.
fn platforms_listed(d: &Daemon, name: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = d
        .ok(&["image", "ls", "-v"])
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(name))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[3].to_owned(), cols[4].to_owned())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn arm64_images_run_in_the_arm64_guest_by_their_platform() {
    let Some(d) = Daemon::start("plat") else {
        return;
    };
    if !arm64_guest_present(&d) {
        return;
    }
    let multi = format!("{}/test/busybox-multi", d.mirror);
    let arm64 = format!("{}/test/busybox-arm64", d.mirror);

    // --platform picks the arm64 manifest of the index, and the daemon the arm64 guest.
    let out = d.ok(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &multi,
        "uname",
        "-m",
    ]);
    assert_eq!(out, "aarch64\n");
    // Without it, the host's platform of the same index runs in the x86_64 guest.
    let out = d.ok(&["run", "--rm", &multi, "uname", "-m"]);
    assert_eq!(out, "x86_64\n");
    // Both platforms of the index are listed, each with its own manifest.
    assert_eq!(
        platforms_listed(&d, &multi),
        [
            ("linux".to_owned(), "amd64".to_owned()),
            ("linux".to_owned(), "arm64".to_owned())
        ]
    );

    // An image that has only arm64 runs in the arm64 guest without --platform; its exit
    // code and both streams come back as from a native one.
    let out = d.run(&[
        "run",
        "--rm",
        &arm64,
        "sh",
        "-c",
        "uname -m; echo err >&2; exit 7",
    ]);
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref(),
            String::from_utf8_lossy(&out.stderr).lines().last()
        ),
        (Some(7), "aarch64\n", Some("err"))
    );
    // A created container keeps the image's platform, so its start boots the same guest.
    d.ok(&["create", "--name", "a64", &arm64, "uname", "-m"]);
    assert_eq!(d.ok(&["start", "-a", "a64"]), "aarch64\n");
    assert_eq!(d.ok(&["logs", "a64"]), "aarch64\n");
    d.ok(&["rm", "a64"]);

    // --rosetta is Apple silicon's: refused in one line, nothing created.
    let err = d.fails(&["create", "--rosetta", &arm64], 125);
    assert!(
        err.starts_with("container: --rosetta needs Rosetta, which only Apple silicon Macs have"),
        "{err}"
    );
    assert_eq!(d.ok(&["ls", "-a", "-q"]), "");
}

/// The Docker API's `platform` (create and pull) takes the same path: `docker run
/// --platform linux/arm64` pulls the arm64 manifest and boots the arm64 guest.
#[test]
fn the_docker_api_platform_parameter_picks_the_guest_too() {
    let Some(d) = Daemon::start("dplat") else {
        return;
    };
    if !arm64_guest_present(&d) {
        return;
    }
    let multi = format!("{}/test/busybox-multi", d.mirror);
    let docker = |args: &[&str]| {
        let out = Command::new("docker")
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", d.root.join("docker.sock").display()),
            )
            .output()
            .expect("docker runs (cargo xtask deps installs docker.io's CLI)");
        check_ok(args, out)
    };
    docker(&["pull", "--platform", "linux/arm64", &multi]);
    let out = docker(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        &multi,
        "uname",
        "-m",
    ]);
    assert_eq!(out, "aarch64\n");
}
