//! End to end, `container build` extras that need no RUN: `-o type=tar` and
//! `-o type=local` (the final stage's file system: layers applied, whiteouts honoured,
//! checked entry by entry against the multilayer test image), and ONBUILD triggers of a
//! base image built by us.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use container_tests::daemon::Daemon;
use container_tests::write_files as write;
use serde_json::Value;

fn load_multilayer(d: &Daemon) {
    let images = std::env::var("CONTAINER_TEST_IMAGES").expect("test images");
    let archive = Path::new(&images).join("multilayer.docker.tar");
    d.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
}

/// What the multilayer image plus `COPY hello.txt /` holds: name → kind and content or
/// link target (`d` directory, `f` file, `l` symlink, `h` hard link, `c` char device,
/// `p` fifo).
fn expected() -> BTreeMap<String, String> {
    [
        ("bin", "d"),
        ("bin/suid", "f #!/bin/sh\necho setuid\n"),
        ("data", "d"),
        ("data/a", "f a from base\n"),
        ("dev", "d"),
        ("dev/zero", "c"),
        ("dir-to-file", "f now a file\n"),
        ("etc", "d"),
        ("etc/config", "f version 2\n"),
        ("etc/keep", "f kept from the base layer\n"),
        ("file-to-dir", "d"),
        ("file-to-dir/new", "f inside what used to be a file\n"),
        ("gone.txt", "f back again\n"),
        ("hard1", "h link-target.txt"),
        ("hello.txt", "f hello from the context\n"),
        ("link-target.txt", "f one inode, two names\n"),
        (
            "long",
            "l data/sub/../../a/long/target/path/that/does/not/fit/in/the/sixty/byte/inode/area/of/ext4",
        ),
        ("newfile", "f added by the middle layer\n"),
        ("newfile-link", "h newfile"),
        ("opaque", "d"),
        ("opaque/z", "f the only entry left in the opaque directory\n"),
        ("owned", "f owned by 1000:1000\n"),
        ("pipe", "p"),
        ("short", "l etc/config"),
        ("xattr.txt", "f replaced, with a changed attribute\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn tar_listing(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut a = tar::Archive::new(bytes);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        use tar::EntryType as T;
        let link = || {
            e.link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        let v = match e.header().entry_type() {
            T::Directory => "d".to_string(),
            T::Symlink => format!("l {}", link()),
            T::Link => format!("h {}", link()),
            T::Char => "c".to_string(),
            T::Fifo => "p".to_string(),
            _ => {
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                format!("f {}", String::from_utf8_lossy(&b))
            }
        };
        assert!(out.insert(name.clone(), v).is_none(), "{name} twice");
    }
    out
}

fn dir_listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let p = root.join(&rel);
            let ft = e.file_type().unwrap();
            let v = if ft.is_dir() {
                walk(root, &rel, out);
                "d".to_string()
            } else if ft.is_symlink() {
                format!("l {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_char_device() {
                "c".into()
            } else if ft.is_fifo() {
                "p".into()
            } else {
                format!("f {}", String::from_utf8_lossy(&std::fs::read(&p).unwrap()))
            };
            out.insert(rel.to_string_lossy().into_owned(), v);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

#[test]
fn outputs_tar_and_local_hold_the_final_file_system() {
    let Some(d) = Daemon::start("bout") else {
        return;
    };
    load_multilayer(&d);
    let ctx = d.root.join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM busybox AS unused\nCOPY hello.txt /nope\n\nFROM multilayer\nCOPY hello.txt /hello.txt\n",
            ),
            ("hello.txt", "hello from the context\n"),
        ],
    );
    let ctx_s = ctx.to_str().unwrap();
    let tar_path = d.root.join("fs.tar");
    let dest = format!("type=tar,dest={}", tar_path.display());
    d.ok(&["build", "-q", "-o", &dest, ctx_s]);
    let bytes = std::fs::read(&tar_path).unwrap();
    assert_eq!(tar_listing(&bytes), expected());
    // Owners and modes come through.
    let mut a = tar::Archive::new(&bytes[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let h = e.header();
        match name.as_str() {
            "owned" => assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap()),
                (1000, 1000, 0o640)
            ),
            "bin/suid" => assert_eq!(h.mode().unwrap() & 0o7777, 0o4755),
            _ => {}
        }
    }
    // dest=- writes the same tar to stdout.
    let out = d.run(&["build", "-q", "-o", "type=tar,dest=-", ctx_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tar_listing(&out.stdout), expected());

    // type=local unpacks it (devices and fifos are left out of a host directory).
    let local = d.root.join("local-out");
    let dest = format!("type=local,dest={}", local.display());
    let out = d.run(&["build", "-q", "-o", &dest, ctx_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = expected();
    want.remove("dev/zero");
    want.remove("pipe");
    // Hard links are files on disk.
    want.insert("hard1".into(), "f one inode, two names\n".into());
    want.insert(
        "newfile-link".into(),
        "f added by the middle layer\n".into(),
    );
    assert_eq!(dir_listing(&local), want);
    let mode = std::fs::metadata(local.join("bin/suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // A directory that is not empty is refused, and nothing is left beside it.
    let out = d.run(&["build", "-q", "-o", &dest, ctx_s]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not empty"), "{err}");
    let leftovers: Vec<String> = std::fs::read_dir(&d.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn config(d: &Daemon, image: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&["image", "inspect", image])).unwrap();
    v[0]["variants"][0]["config"]["config"].clone()
}

#[test]
fn onbuild_triggers_run_after_from_and_are_cleared() {
    let Some(d) = Daemon::start("onb") else {
        return;
    };
    let base = d.root.join("base");
    write(
        &base,
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD COPY trigger.txt /from-trigger.txt\nONBUILD LABEL triggered=yes\n",
        )],
    );
    d.ok(&["build", "-q", "-t", "onbase:1", base.to_str().unwrap()]);
    assert_eq!(
        config(&d, "onbase:1")["OnBuild"],
        serde_json::json!(["COPY trigger.txt /from-trigger.txt", "LABEL triggered=yes"])
    );
    let child = d.root.join("child");
    write(
        &child,
        &[
            ("Dockerfile", "FROM onbase:1\nCOPY own.txt /own.txt\n"),
            ("trigger.txt", "copied by the trigger\n"),
            ("own.txt", "copied by the child\n"),
        ],
    );
    let out = d.run(&["build", "-t", "onchild:1", child.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("#1 Executing 2 build triggers"), "{stderr}");
    assert!(
        stderr.contains("#2 [stage-0 2/3] COPY trigger.txt /from-trigger.txt"),
        "{stderr}"
    );
    assert!(
        stderr.contains("#3 [stage-0 3/3] COPY own.txt /own.txt"),
        "{stderr}"
    );
    let c = config(&d, "onchild:1");
    assert!(c.get("OnBuild").is_none_or(Value::is_null), "{c}");
    assert_eq!(c["Labels"]["triggered"], "yes");
    let tar_path = d.root.join("child.tar");
    let dest = format!("type=tar,dest={}", tar_path.display());
    d.ok(&["build", "-q", "-o", &dest, child.to_str().unwrap()]);
    let listing = tar_listing(&std::fs::read(&tar_path).unwrap());
    assert_eq!(listing["from-trigger.txt"], "f copied by the trigger\n");
    assert_eq!(listing["own.txt"], "f copied by the child\n");
    // A grandchild does not run the triggers again.
    let grand = d.root.join("grand");
    write(&grand, &[("Dockerfile", "FROM onchild:1\nLABEL g=1\n")]);
    let out = d.run(&["build", "-t", "ongrand:1", grand.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("build trigger"), "{stderr}");
}
