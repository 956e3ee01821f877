//! End to end: how `run`/`create` get their image (`--pull`, `--scheme`, `registry.domain`)
//! and images an archive does not name, with the real `container` binary against a real
//! daemon. The daemon's Docker Hub mirror is the local registry, which has busybox:1.36;
//! each daemon starts with only busybox:latest loaded.

use std::path::Path;
use std::process::Command;

use container_tests::TestEnv;
use container_tests::daemon::Daemon;

#[test]
fn run_and_create_pull_as_the_policy_says() {
    let Some(d) = Daemon::start("pullpol") else {
        return;
    };
    // never, image absent: one line, 125, nothing pulled and nothing created.
    let err = d.fails(
        &["run", "--rm", "--pull", "never", "busybox:1.36", "true"],
        125,
    );
    assert_eq!(
        err,
        "container: image busybox:1.36 not found locally (pull policy never)"
    );
    assert!(!d.ok(&["image", "ls"]).contains("1.36"));
    assert_eq!(d.ok(&["ls", "-a", "-q"]), "");

    // --scheme reaches the daemon's pull: HTTPS cannot talk to the plain-HTTP registry.
    let err = d.fails(
        &["create", "--scheme", "https", "--name", "s", "busybox:1.36"],
        125,
    );
    assert!(
        err.starts_with(&format!("container: cannot reach registry {}", d.mirror)),
        "{err}"
    );
    assert!(!d.ok(&["image", "ls"]).contains("1.36"));

    // missing (the default): pulled first with progress on stderr, then run.
    let out = d.run(&[
        "run",
        "--rm",
        "--max-concurrent-downloads",
        "1",
        "busybox:1.36",
        "echo",
        "ran",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n", "{stderr}");
    assert!(
        stderr.starts_with("pulling ") && stderr.lines().next().unwrap().contains("busybox:1.36"),
        "{stderr}"
    );
    assert!(d.ok(&["image", "ls"]).contains("1.36"));
    // Present: no pull, nothing on stderr.
    let out = d.run(&["run", "--rm", "busybox:1.36", "echo", "again"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "again\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // always: pulled again although present.
    let out = d.run(&[
        "run",
        "--rm",
        "--pull",
        "always",
        "busybox:1.36",
        "echo",
        "x",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("pulling "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // never, image present: created without a registry.
    let id = d.ok(&[
        "create",
        "--pull",
        "never",
        "--name",
        "p",
        "busybox:1.36",
        "true",
    ]);
    assert_eq!(d.ok(&["ls", "-a", "-q"]).trim(), &id.trim()[..12]);
}

/// A tar of the files under `dir`.
fn tar_dir(dir: &Path, out: &Path) {
    let status = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .expect("tar runs");
    assert!(status.success());
}

#[test]
fn a_layout_with_a_bare_tag_loads_untagged_and_runs_by_digest() {
    let Some(env) = TestEnv::get() else {
        return;
    };
    let Some(d) = Daemon::start("untag") else {
        return;
    };
    // skopeo copy oci: writes only org.opencontainers.image.ref.name = "latest".
    let work = d.root.join("layout");
    let out = Command::new("skopeo")
        .arg("copy")
        .arg(format!(
            "oci:{}:latest",
            env.images.join("oci/busybox").display()
        ))
        .arg(format!("oci:{}:latest", work.display()))
        .output()
        .expect("skopeo must be installed");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = d.root.join("layout.tar");
    tar_dir(&work, &archive);
    let loaded = d.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
    let lines: Vec<&str> = loaded.lines().collect();
    assert_eq!(lines.len(), 1, "{loaded}");
    let digest = lines[0]
        .strip_prefix("Loaded image ID: ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{loaded}"))
        .to_owned();
    assert!(
        lines[0].contains("untagged: the archive tags it \"latest\" but names no repository"),
        "{loaded}"
    );
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let short = &digest[7..19];
    // Listed by digest, with Docker's <none>.
    let ls = d.ok(&["image", "ls"]);
    assert!(
        ls.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols == ["<none>", "<none>", short]
        }),
        "{ls}"
    );
    assert!(d.ok(&["image", "ls", "-q"]).lines().any(|l| l == digest));
    // Inspect by digest and by short digest.
    for handle in [digest.as_str(), short] {
        let json: serde_json::Value =
            serde_json::from_str(&d.ok(&["image", "inspect", handle])).unwrap();
        assert_eq!(json[0]["digest"], digest.as_str(), "{handle}");
        assert_eq!(json[0]["reference"], "", "{handle}");
    }
    // Run by digest (never pulled: the daemon has no name to pull).
    assert_eq!(
        d.ok(&["run", "--rm", &digest, "echo", "by digest"]),
        "by digest\n"
    );
    assert_eq!(d.ok(&["run", "--rm", short, "echo", "short"]), "short\n");
    // Naming it makes it an ordinary image; deleting the name removes it.
    d.ok(&["image", "tag", &digest, "loaded:1"]);
    let ls = d.ok(&["image", "ls"]);
    assert!(!ls.contains("<none>"), "{ls}");
    d.ok(&["image", "rm", "loaded:1"]);
    assert!(!d.ok(&["image", "ls"]).contains(short));
    // Without a name it is dangling, which `image prune` removes.
    d.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
    assert!(d.ok(&["image", "ls"]).contains(short));
    d.ok(&["image", "prune"]);
    let ls = d.ok(&["image", "ls"]);
    assert!(!ls.contains(short), "{ls}");
    assert!(ls.contains("busybox"), "{ls}");
}

#[test]
fn registry_domain_names_the_registry_of_unqualified_names() {
    let Some(d) = Daemon::start("regdom") else {
        return;
    };
    d.ok(&["system", "property", "set", "registry.domain", &d.mirror]);
    // Only docker.io adds library/: the name must carry it here.
    let pulled = d.ok(&["image", "pull", "library/busybox:1.36"]);
    assert_eq!(
        pulled.trim(),
        format!("{}/library/busybox:1.36", d.mirror),
        "{pulled}"
    );
    assert_eq!(
        d.ok(&["run", "--rm", "library/busybox:1.36", "echo", "ok"]),
        "ok\n"
    );
    d.ok(&["image", "tag", "library/busybox:1.36", "mine:1"]);
    let ls = d.ok(&["image", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with(&format!("{}/mine ", d.mirror))),
        "{ls}"
    );
    // `busybox` alone is that registry's `busybox`, which it does not have.
    let err = d.fails(&["create", "busybox"], 125);
    assert!(err.contains(&format!("{}/busybox", d.mirror)), "{err}");
    // A value of the wrong type is refused, naming the property and the value.
    let err = d.fails(
        &["system", "property", "set", "build.rosetta", "maybe"],
        125,
    );
    assert!(
        err.contains("build.rosetta") && err.contains("maybe"),
        "{err}"
    );
}
