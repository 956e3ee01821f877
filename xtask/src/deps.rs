//! `cargo xtask deps`: every host dependency, installed idempotently.
//!
//! On Debian: apt packages (only the missing ones, so a warm machine does no apt work) and the
//! vhost-user helpers that Debian does not package, `cargo install`ed into `<cache>/tools`.
//! On macOS: checks the prerequisites and says what is missing.

use crate::paths::tools_bin;
use crate::run::{output, run, step};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// Debian packages and why each is needed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "the Linux VMM backend"),
    ("qemu-system-arm", "qemu-system-aarch64: arm64 guests"),
    (
        "gcc-aarch64-linux-gnu",
        "cross-building the arm64 guest kernel",
    ),
    (
        "mmdebstrap",
        "the Debian sid chroot whose rustc builds the arm64 vminitd",
    ),
    (
        "qemu-user-static",
        "running arm64 test binaries of the sid chroot on this host",
    ),
    (crate::kernel::SOURCE_PACKAGE, "guest kernel source"),
    ("bc", "kernel build"),
    ("bison", "kernel build"),
    ("flex", "kernel build"),
    ("libelf-dev", "kernel build"),
    ("build-essential", "kernel build"),
    ("cpio", "kernel build"),
    ("xz-utils", "kernel source tarball"),
    ("e2fsprogs", "e2fsck/debugfs: the ext4 test oracle"),
    (
        "docker-registry",
        "the real distribution v2 registry for tests",
    ),
    ("apache2-utils", "htpasswd for the auth registry"),
    ("busybox-static", "the busybox test image"),
    ("skopeo", "docker-archive fixtures for load tests"),
    ("umoci", "OCI layout inspection in tests"),
    ("libseccomp-dev", "building virtiofsd"),
    ("libcap-ng-dev", "building virtiofsd"),
    ("iproute2", "network namespaces in network tests"),
    ("nftables", "NAT rules for container networks"),
    ("curl", "registry health checks"),
    ("tmux", "driving interactive terminal sessions in tests"),
    (
        "python3-pytest",
        "the docker-py suite of the Docker API tests",
    ),
    (
        "docker-compose",
        "compose v1 (python, 1.29 on bookworm) for the compose tests; v2 lives in <cache>/tools/bin",
    ),
];

/// Helpers built from crates.io: (crate, version, binary).
const CARGO_TOOLS: &[(&str, &str, &str)] = &[
    ("vhost-device-vsock", "0.3.0", "vhost-device-vsock"),
    ("virtiofsd", "1.14.0", "virtiofsd"),
];

pub fn install() -> Result<()> {
    if cfg!(target_os = "macos") {
        return check_macos();
    }
    install_apt()?;
    install_cargo_tools()?;
    install_compose()?;
    install_nextest()
}

/// Compose v2 for the compose tests: Debian's `docker-compose` package of this suite, in
/// whatever version the suite carries now (a point release may replace any exact version).
const COMPOSE_PACKAGE: &str = "docker-compose";
/// The Debian suite that has compose v2 (this host's release has only v1).
const COMPOSE_SUITE: &str = "trixie";

/// Installs `docker-compose` (a Go binary, needing only libc) into `<cache>/tools/bin`:
/// fetched with `apt-get download` through a private apt state under the cache (its own
/// sources list, lists and archives), whose source takes the archive URI from the host's own
/// apt sources, then unpacked with `dpkg -x`. The host's apt configuration is never touched.
/// Idempotent: a compose v2 already there is kept.
fn install_compose() -> Result<()> {
    let package = COMPOSE_PACKAGE;
    let bin = tools_bin().join(package);
    if let Ok(v) = output(Command::new(&bin).arg("version").arg("--short"))
        && v.trim().trim_start_matches('v').starts_with("2.")
    {
        return Ok(());
    }
    step(&format!(
        "fetching {package} from Debian {COMPOSE_SUITE} (once)"
    ));
    let deb = apt_download("apt-compose", COMPOSE_SUITE, &[], package)?;
    let work = deb
        .parent()
        .map(std::path::Path::to_path_buf)
        .context("a downloaded package has no directory")?;
    let root = work.join("root");
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    let plugin = root.join("usr/libexec/docker/cli-plugins").join(package);
    if !plugin.is_file() {
        bail!("{} has no {}", deb.display(), plugin.display());
    }
    std::fs::create_dir_all(tools_bin())?;
    let tmp = bin.with_extension("tmp");
    std::fs::copy(&plugin, &tmp)?;
    std::fs::rename(&tmp, &bin)?;
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

/// Downloads one package (`name[:arch][=version]`) of `suite` with `apt-get download`
/// through a private apt state `<cache>/<state>/` (its own sources list, lists and
/// archives; `archs` are added to `APT::Architectures` there only), whose source takes the
/// archive URI from the host's own apt sources. The host's apt configuration and dpkg's
/// architectures are never touched. Returns the `.deb`, alone in `<cache>/<state>/pkg/`.
pub fn apt_download(state: &str, suite: &str, archs: &[&str], spec: &str) -> Result<PathBuf> {
    let state = crate::paths::cache_dir().join(state);
    let lists = state.join("lists");
    let cache = state.join("cache");
    let work = state.join("pkg");
    for d in [
        lists.join("partial"),
        cache.join("archives").join("partial"),
        work.clone(),
    ] {
        std::fs::create_dir_all(&d)?;
    }
    let uri = host_archive_uri()?;
    let sources = state.join("sources.list");
    std::fs::write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {suite} main\n"
        ),
    )?;
    let apt = |cmd: &str| {
        let mut c = Command::new(cmd);
        for (k, v) in [
            ("Dir::Etc::SourceList", sources.display().to_string()),
            (
                "Dir::Etc::SourceParts",
                state.join("none").display().to_string(),
            ),
            ("Dir::State::Lists", lists.display().to_string()),
            ("Dir::Cache", cache.display().to_string()),
            ("APT::Sandbox::User", "root".to_owned()),
        ] {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        if !archs.is_empty() {
            // The list must name the host's own too, or apt stops knowing it.
            c.arg("-o")
                .arg(format!("APT::Architectures::={}", host_debian_arch()?));
        }
        for a in archs {
            c.arg("-o").arg(format!("APT::Architectures::={a}"));
        }
        Ok::<_, anyhow::Error>(c)
    };
    run(apt("apt-get")?.args(["update", "-qq"]))?;
    for old in std::fs::read_dir(&work)?.flatten() {
        let p = old.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    run(apt("apt-get")?
        .current_dir(&work)
        .args(["download", "-qq", spec]))?;
    std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| anyhow::anyhow!("apt-get download left no .deb for {spec}"))
}

/// dpkg's name for the host's architecture.
fn host_debian_arch() -> Result<String> {
    Ok(output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned())
}

/// Debian's `busybox-static` for `arch` (a Debian architecture name), the same version as
/// the host's: the host's own `/bin/busybox` for the host's architecture, else the binary of
/// `busybox-static:<arch>` fetched once with [`apt_download`] and unpacked with `dpkg -x`
/// into `<cache>/tools/busybox-<arch>-<version>/busybox`.
pub fn busybox_static(arch: &str) -> Result<PathBuf> {
    let host = PathBuf::from("/bin/busybox");
    if arch == host_debian_arch()? {
        return Ok(host);
    }
    let version =
        output(Command::new("dpkg-query").args(["-W", "-f=${Version}", "busybox-static"]))
            .context("busybox-static is not installed: run `cargo xtask deps`")?;
    let version = version.trim();
    let dir = crate::paths::cache_dir().join("tools").join(format!(
        "busybox-{arch}-{}",
        version.replace([':', '+', '~'], "_")
    ));
    let binary = dir.join("busybox");
    if binary.is_file() {
        return Ok(binary);
    }
    step(&format!(
        "fetching busybox-static:{arch} {version} from Debian (once)"
    ));
    let suite =
        output(Command::new("sh").args(["-c", ". /etc/os-release && echo $VERSION_CODENAME"]))?;
    let deb = apt_download(
        "apt-busybox",
        suite.trim(),
        &[arch],
        &format!("busybox-static:{arch}={version}"),
    )?;
    let root = deb.with_extension("root");
    let _ = std::fs::remove_dir_all(&root);
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    let unpacked = root.join("bin/busybox");
    if !unpacked.is_file() {
        bail!("{} has no bin/busybox", deb.display());
    }
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join("busybox.tmp");
    std::fs::copy(&unpacked, &tmp)?;
    std::fs::rename(&tmp, &binary)?;
    std::fs::remove_dir_all(&root)?;
    Ok(binary)
}

/// The Debian archive URI of the host's own apt sources (deb822 `.sources` or one-line
/// `sources.list`), skipping the security archive.
fn host_archive_uri() -> Result<String> {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            let uri = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().next()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().find(|w| w.contains("://"))
            } else {
                None
            };
            if let Some(uri) = uri.filter(|u| u.contains("debian") && !u.contains("security")) {
                return Ok(uri.trim_end_matches('/').to_owned());
            }
        }
    }
    bail!("no Debian archive URI in the host's apt sources (/etc/apt/sources.list*)")
}

/// The test runner: preinstalled on this project's machines, installed here otherwise.
fn install_nextest() -> Result<()> {
    let found = Command::new(env!("CARGO"))
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        step("cargo install cargo-nextest (once)");
        run(Command::new(env!("CARGO")).args(["install", "--locked", "--quiet", "cargo-nextest"]))?;
    }
    Ok(())
}

fn install_apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !apt_installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!("installing apt packages: {}", missing.join(" ")));
    if !crate::run::have("apt-get") {
        bail!(
            "apt-get not found: install these packages by hand: {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

fn apt_installed(name: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", name]))
        .map(|s| s.contains("install ok installed"))
        .unwrap_or(false)
}

fn install_cargo_tools() -> Result<()> {
    let root = tools_bin()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(tools_bin);
    // cargo records what it installed under --root; trust that record and the binary.
    let record = std::fs::read_to_string(root.join(".crates.toml")).unwrap_or_default();
    for (krate, version, bin) in CARGO_TOOLS {
        let installed = record.contains(&format!("\"{krate} {version} "));
        if installed && tools_bin().join(bin).exists() {
            continue;
        }
        step(&format!(
            "cargo install {krate} {version} (a few minutes, once)"
        ));
        run(Command::new(env!("CARGO"))
            .args([
                "install",
                "--locked",
                "--quiet",
                krate,
                "--version",
                version,
                "--root",
            ])
            .arg(&root))?;
    }
    Ok(())
}

fn check_macos() -> Result<()> {
    let mut missing = Vec::new();
    for (tool, why) in [
        (
            "e2fsck",
            "e2fsprogs (brew install e2fsprogs), the ext4 test oracle",
        ),
        (
            "skopeo",
            "skopeo (brew install skopeo), docker-archive fixtures",
        ),
        (
            "codesign",
            "Xcode command line tools, to sign the virtualization entitlement",
        ),
    ] {
        if !crate::run::have(tool) {
            missing.push(format!("{tool}: {why}"));
        }
    }
    if missing.is_empty() {
        println!("all macOS prerequisites found");
        Ok(())
    } else {
        bail!("missing prerequisites:\n  {}", missing.join("\n  "))
    }
}
