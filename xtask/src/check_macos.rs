//! `cargo xtask check-macos`: type-checks the macOS code on this Linux machine, where nothing
//! for `*-apple-darwin` can be built (no Apple SDK, no darwin std).
//!
//! The macOS parts are compiled for the host target with `--cfg check_macos`, which every
//! platform gate treats as macOS (`cfg(any(target_os = "macos", check_macos))`), so the
//! Virtualization.framework backend (crates/vmm-vz) and the macOS side of the runtime, the
//! daemon and the CLI are type-checked against the real objc2 bindings. Two things make the
//! bindings build off Apple platforms (measured in ../shared/reference/apple-silicon.md):
//! - objc2 and block2 get their `gnustep-2-1` feature: vmm-vz asks for it only under
//!   `cfg(check_macos)`, so no product build has it;
//! - objc2-virtualization's one `#[link(name = "Virtualization", kind = "framework")]` is
//!   error E0455 off Apple targets: a copy of the crate from cargo's registry, patched to
//!   `cfg_attr(target_vendor = "apple", ...)`, is cached outside the repository and passed
//!   with `--config patch.crates-io...`. No copy of the crate is committed.
//!
//! `cargo check` never links, so no GNUstep or Apple library is needed. After the real check
//! passes, a scratch copy of vmm-vz with a wrong argument type (`setCPUCount("two")`) must
//! fail it with E0308: proof that the check really reaches the framework calls.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::paths::{cache_dir, repo_root, target_dir};
use crate::run::{output, step};

/// The crates whose macOS code is checked: the backend and every host crate with a macOS
/// gate (runtime: backend choice; apiserver: platform module; cli: launchd; api: app root).
const PACKAGES: &[&str] = &["vmm-vz", "runtime", "apiserver", "cli", "api", "oci"];
/// The cfg every platform gate treats as macOS.
const CFG: &str = "check_macos";
/// The crate whose link line is patched.
const BINDINGS: &str = "objc2-virtualization";
/// The line in its `src/generated/mod.rs` that only Apple targets accept.
const LINK_LINE: &str = r#"#[link(name = "Virtualization", kind = "framework")]"#;
/// What it becomes in the cached copy.
const PATCHED_LINK_LINE: &str =
    r#"#[cfg_attr(target_vendor = "apple", link(name = "Virtualization", kind = "framework"))]"#;
/// Bump when the patch changes, so cached copies of the old recipe are not reused.
const RECIPE: &str = "1";
/// The call the self-test breaks, and how.
const GOOD_CALL: &str = "config.setCPUCount(plan.cpus as usize);";
const BAD_CALL: &str = r#"config.setCPUCount("two");"#;

pub fn run() -> Result<()> {
    let started = Instant::now();
    let bindings = patched_bindings()?;
    step(&format!(
        "cargo check --cfg {CFG} -p {} (macOS code on linux)",
        PACKAGES.join(" -p ")
    ));
    let root = repo_root();
    let result = check(&root, PACKAGES, &[], &bindings)?;
    if !result.ok {
        eprintln!("{}", result.stderr);
        bail!("the macOS code does not type-check (see above)");
    }
    // The backend's own tests too: tests/vm.rs runs only on a Mac.
    let result = check(&root, &["vmm-vz"], &["--all-targets"], &bindings)?;
    if !result.ok {
        eprintln!("{}", result.stderr);
        bail!("vmm-vz's tests do not type-check for macOS (see above)");
    }
    eprintln!(
        "macOS code type-checks ({:.1}s)",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    step("check-macos self-test: a wrong argument type to a VZ method must fail the check");
    prove_it_fails(&root, &bindings)?;
    eprintln!(
        "a wrong argument type fails with E0308 ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The outcome of one `cargo check`.
struct Checked {
    ok: bool,
    stderr: String,
}

/// `cargo check` of `packages` in the workspace at `workspace`, as macOS would compile them.
/// Cargo records a path patch in the lock file, so the workspace's lock file is put back as
/// it was afterwards.
fn check(workspace: &Path, packages: &[&str], extra: &[&str], bindings: &Path) -> Result<Checked> {
    let lock = workspace.join("Cargo.lock");
    let saved = std::fs::read(&lock).ok();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace)
        .args(["check", "--quiet"])
        .args(extra)
        .arg("--config")
        .arg(format!(
            "patch.crates-io.{BINDINGS}.path={}",
            toml_string(&bindings.display().to_string())
        ))
        .env("RUSTFLAGS", format!("--cfg {CFG} -D warnings"))
        // Its own target dir: every crate is compiled with other flags than the normal build.
        .env("CARGO_TARGET_DIR", target_dir().join("check-macos"));
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().context("cannot run cargo check");
    if let Some(saved) = saved
        && std::fs::read(&lock).ok().as_deref() != Some(saved.as_slice())
    {
        std::fs::write(&lock, saved).with_context(|| format!("restoring {}", lock.display()))?;
    }
    let out = out?;
    Ok(Checked {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Rewrites the one framework link line of the bindings' `mod.rs`; refuses when there is not
/// exactly one, as a newer release may have changed what needs patching.
fn patch_link_line(text: &str) -> Result<String> {
    let found = text.matches(LINK_LINE).count();
    if found != 1 {
        bail!(
            "{BINDINGS}'s src/generated/mod.rs has {found} lines {LINK_LINE}, not 1: update xtask/src/check_macos.rs for this release"
        );
    }
    Ok(text.replace(LINK_LINE, PATCHED_LINK_LINE))
}

/// The registry source of the bindings the lock file names, from `cargo metadata`.
fn registry_bindings() -> Result<(PathBuf, String)> {
    let json = output(Command::new(env!("CARGO")).current_dir(repo_root()).args([
        "metadata",
        "--format-version",
        "1",
        "--locked",
    ]))?;
    let meta: serde_json::Value = serde_json::from_str(&json).context("parsing cargo metadata")?;
    let packages = meta["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    for p in packages {
        let from_registry = p["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("registry+"));
        if p["name"] == BINDINGS && from_registry {
            let manifest = p["manifest_path"].as_str().context("no manifest_path")?;
            let version = p["version"].as_str().context("no version")?.to_owned();
            let dir = Path::new(manifest)
                .parent()
                .context("manifest_path has no parent")?
                .to_owned();
            return Ok((dir, version));
        }
    }
    bail!("the lock file names no {BINDINGS} from crates.io (is crates/vmm-vz a member?)")
}

/// The patched copy, made once per version and recipe under the developer cache.
fn patched_bindings() -> Result<PathBuf> {
    let (source, version) = registry_bindings()?;
    let dest = cache_dir()
        .join("check-macos")
        .join(format!("{BINDINGS}-{version}-r{RECIPE}"));
    if dest.join(".patched").is_file() {
        return Ok(dest);
    }
    let parent = dest.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".{BINDINGS}-{version}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    crate::run::run(Command::new("cp").arg("-R").arg(&source).arg(&tmp))?;
    let module = tmp.join("src/generated/mod.rs");
    let text = std::fs::read_to_string(&module)
        .with_context(|| format!("reading {}", module.display()))?;
    std::fs::write(&module, patch_link_line(&text)?)?;
    std::fs::write(tmp.join(".patched"), format!("{source:?}\n"))?;
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("moving the patched copy to {}", dest.display()))?;
    Ok(dest)
}

/// A scratch workspace holding only a copy of vmm-vz (its dependencies are the real ones, by
/// absolute path) with one framework call given a wrong argument type: the check must fail
/// there with E0308, or it checks nothing.
fn prove_it_fails(root: &Path, bindings: &Path) -> Result<()> {
    let scratch = target_dir().join("check-macos").join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    std::fs::write(
        scratch.join("Cargo.toml"),
        scratch_manifest(&manifest, root)?,
    )?;
    std::fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock"))?;
    crate::run::run(
        Command::new("cp")
            .arg("-R")
            .arg(root.join("crates/vmm-vz"))
            .arg(scratch.join("vmm-vz")),
    )?;
    let vz = scratch.join("vmm-vz/src/vz.rs");
    let text = std::fs::read_to_string(&vz)?;
    std::fs::write(&vz, break_call(&text)?)?;
    let result = check(&scratch, &["vmm-vz"], &[], bindings)?;
    let caught = !result.ok
        && result.stderr.contains("error[E0308]")
        && result.stderr.contains("setCPUCount");
    if !caught {
        eprintln!("{}", result.stderr);
        bail!(
            "the macOS check let setCPUCount(\"two\") through (exit ok: {}): it does not reach the framework calls",
            result.ok
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// The one call the self-test breaks; refuses when the anchor is gone or ambiguous.
fn break_call(text: &str) -> Result<String> {
    let found = text.matches(GOOD_CALL).count();
    if found != 1 {
        bail!(
            "crates/vmm-vz/src/vz.rs has {found} copies of `{GOOD_CALL}`, not 1: update the self-test in xtask/src/check_macos.rs"
        );
    }
    Ok(text.replace(GOOD_CALL, BAD_CALL))
}

/// The root manifest turned into a one-member workspace at another place: members replaced,
/// relative paths made absolute.
fn scratch_manifest(manifest: &str, root: &Path) -> Result<String> {
    let start = manifest
        .find("members = [")
        .context("the root Cargo.toml has no members list")?;
    let end = start
        + manifest[start..]
            .find(']')
            .context("the members list is not closed")?;
    let mut out = String::new();
    out.push_str(&manifest[..start]);
    out.push_str(r#"members = ["vmm-vz"]"#);
    out.push_str(&manifest[end + 1..]);
    let root = root.display().to_string();
    Ok(out.replace("path = \"", &format!("path = \"{root}/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_line_becomes_apple_only() {
        let text = "//! x\n#[link(name = \"Virtualization\", kind = \"framework\")]\nunsafe extern \"C\" {}\n";
        assert_eq!(
            patch_link_line(text).unwrap(),
            "//! x\n#[cfg_attr(target_vendor = \"apple\", link(name = \"Virtualization\", kind = \"framework\"))]\nunsafe extern \"C\" {}\n"
        );
    }

    #[test]
    fn a_release_without_exactly_one_link_line_is_refused() {
        let err = patch_link_line("nothing here").unwrap_err().to_string();
        assert!(err.contains("has 0 lines"), "{err}");
        let twice = format!("{LINK_LINE}\n{LINK_LINE}\n");
        let err = patch_link_line(&twice).unwrap_err().to_string();
        assert!(err.contains("has 2 lines"), "{err}");
    }

    #[test]
    fn the_self_test_breaks_exactly_one_call() {
        let text = "a\n        config.setCPUCount(plan.cpus as usize);\nb\n";
        assert_eq!(
            break_call(text).unwrap(),
            "a\n        config.setCPUCount(\"two\");\nb\n"
        );
        assert!(break_call("a\nb\n").is_err());
    }

    #[test]
    fn the_scratch_workspace_has_one_member_and_absolute_paths() {
        let manifest = "[workspace]\nmembers = [\n    \"crates/vmm\",\n    \"xtask\",\n]\n\n[workspace.dependencies]\nvmm = { path = \"crates/vmm\" }\n";
        assert_eq!(
            scratch_manifest(manifest, Path::new("/repo")).unwrap(),
            "[workspace]\nmembers = [\"vmm-vz\"]\n\n[workspace.dependencies]\nvmm = { path = \"/repo/crates/vmm\" }\n"
        );
    }

    #[test]
    fn the_real_sources_still_have_what_the_check_patches() {
        let vz = repo_root().join("crates/vmm-vz/src/vz.rs");
        let text = std::fs::read_to_string(&vz).unwrap();
        assert!(break_call(&text).is_ok(), "{}", vz.display());
    }
}
