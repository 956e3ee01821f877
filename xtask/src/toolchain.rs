//! A Rust toolchain for a guest architecture the host's rustup cannot serve: a Debian sid
//! chroot made by `mmdebstrap`, holding sid's `rustc`/`cargo` (native to the host), the
//! target's `libstd-rust-dev:<arch>` and the GNU cross linker and C library.
//!
//! Why sid in a chroot: rustup cannot fetch other targets on this project's machines, but
//! Debian's archive serves sid, whose rustc ships the std of every Debian architecture; sid's
//! rustc needs a newer glibc than the host's, hence a chroot rather than packages on the host.
//!
//! Cache layout, under `<cache>/toolchains/`:
//! ```text
//! sid-<versions>/          the chroot; <versions> hashes the installed versions of the
//!                          toolchain packages (`packages.txt` beside `root/` lists them)
//!   root/                  the chroot's file system
//!   packages.txt           `dpkg-query` of the toolchain packages: written last, so its
//!                          presence marks a complete chroot
//! <arch>-<recipe> -> sid-<versions>
//!                          which chroot the current recipe (package list, mirror, this
//!                          file's version) made
//! ```
//! A chroot is made once and reused; sid moves daily, and a newer toolchain is taken by
//! deleting the link (or by a change of recipe). Builds run in a private mount namespace
//! (`unshare --mount`), so the bind mounts of the repository and target dir vanish with the
//! build and nothing is left mounted on the host.

use crate::arch::Arch;
use crate::paths::{self, cache_dir};
use crate::run::{output, run, step};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the chroot's making changes in a way that changes its content.
const RECIPE_VERSION: &str = "1";

/// A made chroot for cross-building Rust for `arch`.
pub struct Chroot {
    arch: Arch,
    /// The chroot's file system.
    root: PathBuf,
    /// The installed toolchain packages and their versions, one `name version` per line.
    pub packages: String,
}

/// The Debian packages of the toolchain for `arch`.
fn packages(arch: Arch) -> Vec<String> {
    let gnu = arch.gnu_prefix().trim_end_matches('-');
    vec![
        "rustc".into(),
        "cargo".into(),
        format!("libstd-rust-dev:{}", arch.debian_name()),
        format!("gcc-{gnu}"),
        format!("libc6-dev-{}-cross", arch.debian_name()),
        "ca-certificates".into(),
    ]
}

/// Make (once) or reuse the chroot for `arch`.
pub fn ensure(arch: Arch) -> Result<Chroot> {
    let mirror = host_mirror()?;
    let wanted = packages(arch);
    let recipe_key = &paths::sha256_bytes(&[
        wanted.join(",").as_bytes(),
        mirror.as_bytes(),
        RECIPE_VERSION.as_bytes(),
    ])[..16];
    let dir = cache_dir().join("toolchains");
    let link = dir.join(format!("{}-{recipe_key}", arch.kernel_name()));
    if let Ok(made) = fs::canonicalize(&link)
        && let Ok(packages) = fs::read_to_string(made.join("packages.txt"))
    {
        return Ok(Chroot {
            arch,
            root: made.join("root"),
            packages,
        });
    }
    if !crate::run::have("mmdebstrap") {
        bail!("mmdebstrap is missing: run `cargo xtask deps`");
    }
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("making-{recipe_key}"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    step(&format!(
        "making a Debian sid chroot with rustc and {} std from {mirror} (about 3 minutes, once)",
        arch.debian_name()
    ));
    let host = Arch::host().debian_name();
    run(Command::new("mmdebstrap")
        .args(["--variant=apt", "--quiet"])
        // The mirror's sid Release file can count as expired; apt has still verified it.
        .arg("--aptopt=Acquire::Check-Valid-Until \"false\"")
        .arg(format!("--architectures={host},{}", arch.debian_name()))
        .arg(format!("--include={}", wanted.join(",")))
        .arg("sid")
        .arg(tmp.join("root"))
        .arg(format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} sid main"
        )))?;
    let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let packages = output(
        Command::new("chroot")
            .arg(tmp.join("root"))
            .args([
                "dpkg-query",
                "-W",
                "-f=${Package}:${Architecture} ${Version}\\n",
            ])
            .args(&names),
    )
    .context("cannot list the chroot's toolchain packages")?;
    fs::write(tmp.join("packages.txt"), &packages)?;
    let made = dir.join(format!(
        "sid-{}",
        &paths::sha256_bytes(&[packages.as_bytes()])[..16]
    ));
    if made.join("packages.txt").exists() {
        // The same versions were made before under another recipe: keep that one.
        fs::remove_dir_all(&tmp)?;
    } else {
        let _ = fs::remove_dir_all(&made);
        fs::rename(&tmp, &made)?;
    }
    paths::symlink_force(&made, &link)?;
    remove_unreferenced(&dir)?;
    Ok(Chroot {
        arch,
        root: made.join("root"),
        packages,
    })
}

/// A chroot costs about a gigabyte: drop those no recipe link points at, and dangling links.
fn remove_unreferenced(dir: &Path) -> Result<()> {
    let entries: Vec<_> = fs::read_dir(dir)?.flatten().collect();
    let mut used = std::collections::HashSet::new();
    for entry in &entries {
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            match fs::canonicalize(entry.path()) {
                Ok(target) => {
                    used.insert(target);
                }
                Err(_) => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    for entry in &entries {
        let path = entry.path();
        let name = entry.file_name();
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && name.to_string_lossy().starts_with("sid-")
            && !used.contains(&path)
        {
            step(&format!("removing the unused chroot {}", path.display()));
            let _ = fs::remove_dir_all(&path);
        }
    }
    Ok(())
}

impl Chroot {
    /// `cargo build` in the chroot (see [`Chroot::cargo`]); returns the path of the built
    /// `package` binary on the host.
    pub fn cargo_build(
        &self,
        repo: &Path,
        target: &Path,
        profile: &str,
        package: &str,
        rustflags: &str,
    ) -> Result<PathBuf> {
        let rust_target = self.arch.rust_target();
        self.cargo(
            repo,
            target,
            rustflags,
            &[
                "build",
                "--quiet",
                "--locked",
                "--profile",
                profile,
                "-p",
                package,
                "--target",
                rust_target,
            ],
        )?;
        Ok(target.join(rust_target).join(profile).join(package))
    }

    /// Runs `cargo ARGS` in the chroot, the repository mounted read-only at `/work/src` and
    /// `target` at `/work/target`, with the target's linker set and `qemu-<arch>-static` as
    /// the runner of its binaries (so `cargo test --target` runs them emulated).
    pub fn cargo(&self, repo: &Path, target: &Path, rustflags: &str, args: &[&str]) -> Result<()> {
        fs::create_dir_all(target)?;
        for dir in ["work/src", "work/target", "proc", "dev", "usr/local/bin"] {
            fs::create_dir_all(self.root.join(dir))?;
        }
        // The host's CA bundle (registry TLS may go through the machine's own CA) and its
        // resolver, fresh for every build.
        let ca = std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        fs::copy(&ca, self.root.join("etc/ssl/certs/host-ca.crt"))
            .with_context(|| format!("cannot copy the CA bundle {}", ca.display()))?;
        let resolv = self.root.join("etc/resolv.conf");
        let _ = fs::remove_file(&resolv);
        fs::copy("/etc/resolv.conf", &resolv).context("cannot copy /etc/resolv.conf")?;
        let rust_target = self.arch.rust_target();
        let target_var = rust_target.to_uppercase().replace('-', "_");
        let mut env = vec![
            format!(
                "CARGO_TARGET_{target_var}_LINKER={}gcc",
                self.arch.gnu_prefix()
            ),
            format!("RUSTFLAGS={rustflags}"),
        ];
        // The host's static user-mode emulator, copied in: binfmt_misc may not be set up.
        let emulator = format!("qemu-{}-static", self.arch.qemu_user_name());
        let host_emulator = Path::new("/usr/bin").join(&emulator);
        if host_emulator.exists() {
            fs::copy(
                &host_emulator,
                self.root.join("usr/local/bin").join(&emulator),
            )?;
            env.push(format!(
                "CARGO_TARGET_{target_var}_RUNNER=/usr/local/bin/{emulator}"
            ));
        }
        let script = r#"set -eu
root=$1; repo=$2; target=$3; shift 3
mount --bind "$repo" "$root/work/src"
mount -o remount,bind,ro "$root/work/src"
mount --bind "$target" "$root/work/target"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
exec chroot "$root" "$@"
"#;
        run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(script)
            .arg("sh")
            .arg(&self.root)
            .arg(repo)
            .arg(target)
            .args([
                "env",
                "-i",
                "HOME=/root",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            ])
            .arg("SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt")
            .arg("CARGO_HTTP_CAINFO=/etc/ssl/certs/host-ca.crt")
            .arg("CARGO_TARGET_DIR=/work/target")
            .arg("CARGO_TERM_COLOR=never")
            .args(&env)
            .args(["sh", "-c", "cd /work/src && exec \"$@\"", "sh", "cargo"])
            .args(args))
    }
}

/// The URI of the host's Debian archive, as apt reads it: the first `deb` source of
/// `/etc/apt/sources.list.d/*.sources` (deb822) or `/etc/apt/sources.list` that is not the
/// security archive (which has no sid).
pub fn host_mirror() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sources"))
            .collect();
        files.sort();
        for file in files {
            texts.push((true, fs::read_to_string(&file).unwrap_or_default()));
        }
    }
    texts.push((
        false,
        fs::read_to_string("/etc/apt/sources.list").unwrap_or_default(),
    ));
    for (deb822, text) in &texts {
        let found = if *deb822 {
            mirror_in_deb822(text)
        } else {
            mirror_in_one_line(text)
        };
        if let Some(uri) = found {
            return Ok(uri);
        }
    }
    bail!(
        "no Debian archive found in the host's apt sources (/etc/apt/sources.list.d, /etc/apt/sources.list)"
    )
}

fn mirror_in_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|e| e != "no");
        let suites = field("Suites").unwrap_or_default();
        let security = suites.split_whitespace().any(|s| s.ends_with("-security"));
        if is_deb
            && enabled
            && !security
            && let Some(uri) =
                field("URIs").and_then(|u| u.split_whitespace().next().map(String::from))
        {
            return Some(uri);
        }
    }
    None
}

fn mirror_in_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options: `[signed-by=... arch=...]`, possibly several words.
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        let suite = words.next()?;
        (!suite.ends_with("-security")).then(|| uri.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_read_from_deb822_skipping_security() {
        let text = "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
                    Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_in_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in_deb822("Types: deb-src\nURIs: http://src.example/debian\nSuites: sid\n"),
            None
        );
    }

    #[test]
    fn the_mirror_is_read_from_one_line_sources() {
        let text = "# deb http://old.example/debian bookworm main\n\
                    deb [signed-by=/k.gpg arch=amd64] http://security.example/ bookworm-security main\n\
                    deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in_one_line(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }
}
