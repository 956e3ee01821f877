//! End to end: `RUN` in the builder VM, with the real binaries and real VMs. A RUN that
//! deletes a base file leaves a whiteout that survives a push and a pull; a multi-stage
//! build whose first stage makes an artifact with busybox tools runs, and its rebuild is
//! all CACHED without booting a VM; a failing RUN shows its output and exit code and tags
//! nothing; `--secret` is readable in its RUN and in no layer, config or history;
//! `--network=none` sees only lo; a cache mount keeps its files across builds; `builder
//! start|status|stop|delete` by what they print.

use std::path::Path;
use std::time::Instant;

use container_tests::daemon::Daemon;
use container_tests::write_files as write;
use serde_json::Value;

/// Builds and returns stderr (the progress), requiring success.
fn build(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["build", "--progress", "plain"];
    all.extend_from_slice(args);
    let out = d.run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build {args:?} failed: {stderr}");
    stderr
}

/// Tags `local` as `pushed`, pushes it, deletes both names and pulls it back; the pulled
/// rootfs passes `e2fsck -fn`.
fn push_delete_and_pull(d: &Daemon, local: &str, pushed: &str) {
    d.ok(&["image", "tag", local, pushed]);
    d.ok(&["image", "push", pushed]);
    d.ok(&["image", "delete", pushed, local]);
    d.ok(&["image", "pull", pushed]);
    d.fsck_snapshot(pushed);
}

/// How many builder VMs the daemon has booted so far (its log names each).
fn builders_booted(d: &Daemon) -> usize {
    std::fs::read_to_string(d.root.join("apiserver.log"))
        .unwrap_or_default()
        .matches("builder runtime spawned")
        .count()
}

/// gunzip through the system's gzip (a base image's layer may be stored uncompressed).
fn gunzip(gz: &[u8]) -> Vec<u8> {
    use std::io::Write;
    if !gz.starts_with(&[0x1f, 0x8b]) {
        return gz.to_vec();
    }
    use std::process::{Command, Stdio};
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = child.stdin.take().unwrap();
    let data = gz.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out.stdout
}

/// An `image save` archive: (manifest, config, each layer's uncompressed tar).
fn saved(d: &Daemon, image: &str) -> (Value, Value, Vec<Vec<u8>>) {
    let out = d
        .root
        .join(format!("{}.tar", image.replace([':', '/'], "_")));
    d.ok(&["image", "save", "-o", out.to_str().unwrap(), image]);
    let mut blobs = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(&out).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        blobs.insert(p, data);
    }
    let index: Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let blob = |d: &str| blobs[&format!("blobs/sha256/{}", &d[7..])].clone();
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| gunzip(&blob(l["digest"].as_str().unwrap())))
        .collect();
    (manifest, config, layers)
}

/// The entry names of a layer tar.
fn names(layer: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(layer);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            p.trim_start_matches("./").trim_end_matches('/').to_string()
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

const MULTI_STAGE: &str = r#"FROM busybox AS build
RUN rm /usr/bin/wc && mkdir -p /out && echo artifact > /out/a.txt
RUN cd /out && sha256sum a.txt > a.sum && ls /bin | grep -c . > /out/tools
FROM scratch
COPY --from=build /bin/busybox /bin/busybox
COPY --from=build /out/ /out/
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/out/a.txt", "/out/a.sum"]
"#;

#[test]
fn run_steps_whiteouts_multi_stage_and_cache() {
    let Some(d) = Daemon::start("brun") else {
        return;
    };
    let ctx = d.root.join("ctx");
    write(&ctx, &[("Dockerfile", MULTI_STAGE)]);
    let ctx_s = ctx.to_str().unwrap();
    let booted = builders_booted(&d);
    let stderr = build(&d, &["-t", "art:1", ctx_s]);
    assert_eq!(builders_booted(&d), booted + 1, "one builder VM per build");
    assert!(stderr.contains("RUN rm /usr/bin/wc"), "{stderr}");
    // The artifact stage runs: busybox tools made the files the final stage copied.
    let out = d.ok(&["run", "--rm", "art:1"]);
    let sum_line = out.lines().nth(1).unwrap_or_default().to_string();
    assert!(out.starts_with("artifact\n"), "{out}");
    assert!(
        sum_line.ends_with("  a.txt") && sum_line.len() == 64 + 7,
        "{out}"
    );

    // The whiteout: the build stage as an image of its own.
    let (_, config, layers) = {
        build(&d, &["-t", "wh:1", "--target", "build", ctx_s]);
        saved(&d, "wh:1")
    };
    let run_layer = &layers[layers.len() - 2];
    let entries = names(run_layer);
    assert!(
        entries.contains(&"usr/bin/.wh.wc".to_string()),
        "{entries:?}"
    );
    assert!(entries.contains(&"out/a.txt".to_string()), "{entries:?}");
    assert!(
        !entries
            .iter()
            .any(|e| e.starts_with("proc") || e.starts_with("etc/hosts")),
        "mount stubs stay out of the layer: {entries:?}"
    );
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert!(
        history.contains(
            &"RUN /bin/sh -c rm /usr/bin/wc && mkdir -p /out && echo artifact > /out/a.txt # buildkit"
        ),
        "{history:?}"
    );
    // Pushed and pulled back, the image runs without the file and its rootfs is sound.
    let pushed = format!("{}/brun-{}/wh:1", d.mirror, std::process::id());
    push_delete_and_pull(&d, "wh:1", &pushed);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            &pushed,
            "sh",
            "-c",
            "test -e /usr/bin/wc && echo present || echo gone; cat /out/a.txt"
        ]),
        "gone\nartifact\n"
    );

    // A rebuild takes every step from the cache and boots nothing.
    let booted = builders_booted(&d);
    let started = Instant::now();
    let stderr = build(&d, &["-t", "art:1", ctx_s]);
    let took = started.elapsed();
    let run_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("] RUN ")).collect();
    assert_eq!(run_lines.len(), 2, "{stderr}");
    assert_eq!(stderr.matches("CACHED").count(), 4, "{stderr}");
    assert_eq!(builders_booted(&d), booted, "a cached rebuild boots no VM");
    eprintln!("cached rebuild: {took:?}");
}

#[test]
fn failing_run_secrets_network_and_cache_mounts() {
    let Some(d) = Daemon::start("brun2") else {
        return;
    };
    let ctx = d.root.join("ctx");
    let ctx_s = ctx.to_str().unwrap();

    // A failing RUN: its output and exit code, exit 1, nothing tagged.
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo visible-output && echo to-stderr >&2 && exit 3\n",
        )],
    );
    let out = d.run(&["build", "--progress", "plain", "-t", "bad:1", ctx_s]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("visible-output"), "{stderr}");
    assert!(stderr.contains("to-stderr"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "container: Dockerfile:2: RUN echo visible-output && echo to-stderr >&2 && exit 3: exit code 3"
        ),
        "{stderr}"
    );
    assert!(!d.ok(&["image", "ls"]).contains("bad"), "nothing tagged");

    // A secret, a network-less step and a cache mount in one build.
    let secret = format!("s3cret-value-{}", std::process::id());
    let secret_file = d.root.join("tok.txt");
    std::fs::write(&secret_file, &secret).unwrap();
    let dockerfile = r#"FROM busybox
RUN --mount=type=secret,id=tok,required=true sha256sum /run/secrets/tok | cut -d' ' -f1 > /tokhash
RUN --network=none ls /sys/class/net > /nets
RUN --mount=type=cache,target=/cache echo run >> /cache/runs && wc -l < /cache/runs > /count
"#;
    write(&ctx, &[("Dockerfile", dockerfile)]);
    let secret_arg = format!("id=tok,src={}", secret_file.display());
    build(&d, &["-t", "sec:1", "--secret", &secret_arg, ctx_s]);
    let want = {
        let out = std::process::Command::new("sha256sum")
            .arg(&secret_file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        d.ok(&["run", "--rm", "sec:1", "cat", "/tokhash", "/nets", "/count"]),
        format!("{want}\nlo\n1\n")
    );
    let (manifest, config, layers) = saved(&d, "sec:1");
    for (i, l) in layers.iter().enumerate() {
        assert!(
            !contains(l, secret.as_bytes()),
            "layer {i} holds the secret"
        );
        assert!(
            !names(l).iter().any(|n| n.starts_with("run/secrets")),
            "layer {i} holds the secret's mount point: {:?}",
            names(l)
        );
    }
    assert!(!config.to_string().contains(&secret));
    assert!(!manifest.to_string().contains(&secret));

    // The cache mount kept its file: a rebuild without the cache appends a second line.
    build(
        &d,
        &["-t", "sec:2", "--no-cache", "--secret", &secret_arg, ctx_s],
    );
    assert_eq!(d.ok(&["run", "--rm", "sec:2", "cat", "/count"]), "2\n");

    // A required secret that was not given fails the step, naming it.
    let err = d.fails(&["build", "--no-cache", "-t", "sec:3", ctx_s], 1);
    assert!(err.contains("Dockerfile:2: "), "{err}");
    assert!(err.contains("secret tok"), "{err}");
}

#[test]
fn builder_verbs() {
    let Some(d) = Daemon::start("bverb") else {
        return;
    };
    let status = d.ok(&["builder", "status"]);
    assert!(status.starts_with("builder: stopped\n"), "{status}");
    let started = d.ok(&["builder", "start", "--cpus", "1", "--memory", "1G"]);
    assert!(started.starts_with("builder: running (pid "), "{started}");
    assert!(started.contains("\ncpus: 1\n"), "{started}");
    assert!(started.contains("\nmemory: 1.0 GiB\n"), "{started}");
    let err = d.fails(&["builder", "start"], 125);
    assert!(err.contains("already running"), "{err}");

    // A build uses the running builder instead of booting its own.
    let ctx = d.root.join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=cache,target=/c echo kept > /c/f && cp /c/f /f\n",
        )],
    );
    let booted = builders_booted(&d);
    build(&d, &["-t", "v:1", ctx.to_str().unwrap()]);
    assert_eq!(builders_booted(&d), booted, "the kept builder ran the step");
    let status = d.ok(&["builder", "status"]);
    assert!(status.contains("\nsteps: 1\n"), "{status}");
    assert!(status.contains("\ncache mounts: 5 bytes\n"), "{status}");
    assert_eq!(d.ok(&["run", "--rm", "v:1", "cat", "/f"]), "kept\n");

    let stopped = d.ok(&["builder", "stop"]);
    assert!(stopped.starts_with("builder: stopped\n"), "{stopped}");
    assert!(stopped.contains("cache mounts: 5 bytes"), "{stopped}");
    let deleted = d.ok(&["builder", "delete"]);
    assert_eq!(deleted, "builder: stopped\ncache mounts: 0 bytes\n");
}

#[test]
fn bind_and_tmpfs_mounts() {
    let Some(d) = Daemon::start("bmnt") else {
        return;
    };
    let ctx = d.root.join("ctx");
    let dockerfile = r#"FROM busybox AS src
RUN mkdir /data && echo from-stage > /data/x
FROM busybox
RUN --mount=type=bind,source=ctxfile.txt,target=/m/ctx.txt cat /m/ctx.txt > /got-ctx
RUN --mount=type=bind,from=src,source=/data,target=/m/st cat /m/st/x > /got-stage
RUN --mount=type=bind,target=/m/rw,rw echo scribble > /m/rw/new && test -e /m/rw/ctxfile.txt && echo ok > /got-rw
RUN --mount=type=tmpfs,target=/t echo t > /t/f && grep -c ' /t tmpfs ' /proc/mounts > /got-tmpfs
"#;
    write(
        &ctx,
        &[("Dockerfile", dockerfile), ("ctxfile.txt", "ctx-content\n")],
    );
    build(&d, &["-t", "mnt:1", ctx.to_str().unwrap()]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "mnt:1",
            "cat",
            "/got-ctx",
            "/got-stage",
            "/got-rw",
            "/got-tmpfs"
        ]),
        "ctx-content\nfrom-stage\nok\n1\n"
    );
    // The mount points and what was written through them stay out of the layers.
    let (_, _, layers) = saved(&d, "mnt:1");
    for l in &layers[1..] {
        let entries = names(l);
        assert!(
            !entries
                .iter()
                .any(|e| e == "m" || e.starts_with("m/") || e == "t" || e.starts_with("t/")),
            "{entries:?}"
        );
    }
}

/// The image's digest (its manifest's) as `image inspect` reports it.
fn image_digest(d: &Daemon, image: &str) -> String {
    let inspect: Value = serde_json::from_str(&d.ok(&["image", "inspect", image])).unwrap();
    inspect[0]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest in {inspect}"))
        .to_string()
}

/// An entry of a layer tar: its name, mtime and PAX records.
type EntryDetails = (String, u64, Vec<(String, Vec<u8>)>);

/// The details of every entry of a layer tar.
fn entry_details(layer: &[u8]) -> Vec<EntryDetails> {
    let mut a = tar::Archive::new(layer);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes())
                .trim_end_matches('/')
                .to_string();
            let mtime = e.header().mtime().unwrap();
            let mut pax = Vec::new();
            if let Some(x) = e.pax_extensions().unwrap() {
                for r in x {
                    let r = r.unwrap();
                    pax.push((r.key().unwrap().to_string(), r.value_bytes().to_vec()));
                }
            }
            (name, mtime, pax)
        })
        .collect()
}

const EPOCH: u64 = 1_700_000_000;

#[test]
fn source_date_epoch_and_secret_env() {
    let Some(d) = Daemon::start("bsde") else {
        return;
    };
    let ctx = d.root.join("ctx");
    let ctx_s = ctx.to_str().unwrap();
    let dockerfile = r#"FROM busybox
COPY a.txt /data/a.txt
RUN echo built > /built && mkdir -p /made/sub && touch /made/sub/f
RUN --mount=type=secret,id=tok,env=TOK,required=true printf %s "$TOK" | sha256sum | cut -d' ' -f1 > /tokhash && test ! -e /run/secrets/tok
ENV STAGE=final
"#;
    write(
        &ctx,
        &[("Dockerfile", dockerfile), ("a.txt", "from the context\n")],
    );
    let secret = format!("env-secret-{}", std::process::id());
    let secret_file = d.root.join("tok.txt");
    std::fs::write(&secret_file, &secret).unwrap();
    let secret_arg = format!("id=tok,src={}", secret_file.display());
    let epoch_arg = format!("SOURCE_DATE_EPOCH={EPOCH}");

    // The build arg, then the CLI's own environment variable: the same image, to the byte.
    let stderr = build(
        &d,
        &[
            "-t",
            "sde:1",
            "--no-cache",
            "--build-arg",
            &epoch_arg,
            "--secret",
            &secret_arg,
            ctx_s,
        ],
    );
    assert!(!stderr.contains("were not consumed"), "{stderr}");
    let mut again = d.cmd(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "sde:2",
        "--no-cache",
        "--secret",
        &secret_arg,
        ctx_s,
    ]);
    let out = again
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(image_digest(&d, "sde:1"), image_digest(&d, "sde:2"));

    // created and every history entry are the epoch; every file the build wrote is no later.
    let (manifest, config, layers) = saved(&d, "sde:1");
    let when = "2023-11-14T22:13:20Z";
    assert_eq!(config["created"], when, "{config}");
    let history = config["history"].as_array().unwrap();
    assert!(history.len() >= 5, "{history:?}");
    for h in history {
        assert_eq!(h["created"], when, "{history:?}");
    }
    assert_eq!(layers.len(), 4, "base, COPY and two RUN layers");
    for (i, l) in layers.iter().enumerate().skip(1) {
        let entries = entry_details(l);
        assert!(!entries.is_empty(), "layer {i} is empty");
        for (name, mtime, _) in &entries {
            assert!(*mtime <= EPOCH, "layer {i}: {name} is dated {mtime}");
        }
    }
    let names_of = |i: usize| names(&layers[i]);
    assert!(names_of(1).contains(&"data/a.txt".to_string()));
    assert!(names_of(2).contains(&"made/sub/f".to_string()));

    // The env secret reached its RUN and nothing else.
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(secret.as_bytes()))
    };
    assert_eq!(
        d.ok(&["run", "--rm", "sde:1", "cat", "/tokhash"]),
        format!("{want}\n")
    );
    for (i, l) in layers.iter().enumerate() {
        assert!(
            !contains(l, secret.as_bytes()),
            "layer {i} holds the secret"
        );
    }
    assert!(!config.to_string().contains(&secret), "{config}");
    assert!(!config.to_string().contains("TOK="), "{config}");
    assert!(!manifest.to_string().contains(&secret));
    for entry in std::fs::read_dir(d.root.join("builder/cache")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&secret), "a cache entry holds the secret");
    }

    // Without the epoch the image is dated now: another image.
    build(&d, &["-t", "sde:3", "--secret", &secret_arg, ctx_s]);
    assert_ne!(image_digest(&d, "sde:1"), image_digest(&d, "sde:3"));
    let (_, config, _) = saved(&d, "sde:3");
    assert_ne!(config["created"], when);

    // A bad epoch is one clear error.
    let err = d.fails(
        &["build", "--build-arg", "SOURCE_DATE_EPOCH=yesterday", ctx_s],
        1,
    );
    assert!(
        err.contains("invalid SOURCE_DATE_EPOCH \"yesterday\""),
        "{err}"
    );
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// `security.capability` granting cap_net_bind_service, effective (VFS_CAP_REVISION_2).
const CAPABILITY: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// An OCI layout archive of busybox plus a layer holding `/opt/tool` with `xattrs` (PAX
/// records), named `reference`.
fn xattr_base_archive(d: &Daemon, reference: &str, xattrs: &[(&str, &[u8])]) -> std::path::PathBuf {
    let images = std::path::PathBuf::from(std::env::var("CONTAINER_TEST_IMAGES").unwrap());
    let layout = images.join("oci/busybox");
    let blob =
        |digest: &str| std::fs::read(layout.join("blobs/sha256").join(&digest[7..])).unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();

    let mut layer = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_mtime(1_767_225_600);
    layer
        .append_data(&mut dir, "opt/", std::io::empty())
        .unwrap();
    let records: Vec<(String, &[u8])> = xattrs
        .iter()
        .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
        .collect();
    layer
        .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
        .unwrap();
    let body = b"#!/bin/sh\necho tool\n";
    let mut file = tar::Header::new_ustar();
    file.set_entry_type(tar::EntryType::Regular);
    file.set_mode(0o755);
    file.set_uid(0);
    file.set_gid(0);
    file.set_mtime(1_767_225_600);
    file.set_size(body.len() as u64);
    layer.append_data(&mut file, "opt/tool", &body[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let layer_digest = format!("sha256:{}", sha256_hex(&layer));

    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(Value::String(layer_digest.clone()));
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = format!("sha256:{}", sha256_hex(&config_bytes));
    manifest["config"]["digest"] = Value::String(config_digest.clone());
    manifest["config"]["size"] = config_bytes.len().into();
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }));
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest_bytes));
    let new_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": reference},
        }],
    });

    let path = d.root.join(format!("{}.tar", reference.replace(':', "_")));
    let mut out = tar::Builder::new(std::fs::File::create(&path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        out.append_data(&mut h, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &serde_json::to_vec(&new_index).unwrap());
    for l in manifest["layers"].as_array().unwrap() {
        let digest = l["digest"].as_str().unwrap();
        let data = if digest == layer_digest {
            layer.clone()
        } else {
            blob(digest)
        };
        add(&format!("blobs/sha256/{}", &digest[7..]), &data);
    }
    add(
        &format!("blobs/sha256/{}", &config_digest[7..]),
        &config_bytes,
    );
    add(
        &format!("blobs/sha256/{}", &manifest_digest[7..]),
        &manifest_bytes,
    );
    out.finish().unwrap();
    path
}

#[test]
fn xattrs_survive_a_run_step() {
    let Some(d) = Daemon::start("bxattr") else {
        return;
    };
    let archive = xattr_base_archive(
        &d,
        "xattrbase:1",
        &[
            ("security.capability", &CAPABILITY[..]),
            ("user.origin", &b"from the base"[..]),
        ],
    );
    d.ok(&["image", "load", "-i", archive.to_str().unwrap()]);
    let ctx = d.root.join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            // chmod copies the file up without writing it: a write would drop its capability,
            // as the kernel does for any write to a file carrying one.
            "FROM xattrbase:1\nRUN chmod 0750 /opt/tool\n",
        )],
    );
    build(&d, &["-t", "xattr:1", ctx.to_str().unwrap()]);
    let (_, _, layers) = saved(&d, "xattr:1");
    let run_layer = layers.last().unwrap();
    let entries = entry_details(run_layer);
    let tool = entries
        .iter()
        .find(|(n, _, _)| n == "opt/tool")
        .unwrap_or_else(|| panic!("the RUN layer lacks opt/tool: {entries:?}"));
    let pax: std::collections::BTreeMap<&str, &[u8]> = tool
        .2
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    assert_eq!(
        pax.get("SCHILY.xattr.user.origin").copied(),
        Some(&b"from the base"[..]),
        "{pax:?}"
    );
    assert_eq!(
        pax.get("SCHILY.xattr.security.capability").copied(),
        Some(&CAPABILITY[..]),
        "{pax:?}"
    );
    assert!(!pax.keys().any(|k| k.contains("overlay")), "{pax:?}");

    // The same layer pushed to the registry and pulled back: the file as the RUN left it.
    let pushed = format!("{}/bxattr-{}/xattr:1", d.mirror, std::process::id());
    push_delete_and_pull(&d, "xattr:1", &pushed);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            &pushed,
            "sh",
            "-c",
            "stat -c %a /opt/tool; /opt/tool"
        ]),
        "750\ntool\n"
    );

    // overlayfs's own attributes are refused in an image layer: at load, by the ext4 writer
    // (the rootfs is an overlayfs lower when it runs), before any build could use it. The
    // builder's own unpacker refuses them too (vminitd's overlay_layer unit tests).
    let archive = xattr_base_archive(
        &d,
        "badbase:1",
        &[("trusted.overlay.redirect", &b"/etc"[..])],
    );
    let out = d.run(&["image", "load", "-i", archive.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("\"trusted.overlay.redirect\" belongs to overlayfs"),
        "{stderr}"
    );
    let images = d.ok(&["image", "ls"]);
    assert!(!images.contains("badbase"), "{images}");
}

/// Starts `container build` for each context at once and waits for all; returns stderr.
fn build_concurrently(d: &Daemon, builds: &[(&str, &Path)]) -> Vec<String> {
    let children: Vec<_> = builds
        .iter()
        .map(|(tag, ctx)| {
            d.cmd(&[
                "build",
                "--progress",
                "plain",
                "--no-cache",
                "-t",
                tag,
                ctx.to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            stderr
        })
        .collect()
}

#[test]
fn cache_mount_sharing_and_from() {
    let Some(d) = Daemon::start("bshare") else {
        return;
    };
    // One kept builder runs both builds' steps, so they overlap without a boot each.
    d.ok(&["builder", "start"]);
    let mut contexts = Vec::new();
    for mark in ["a", "b"] {
        // private: each concurrent user writes its mark into the directory it got and,
        // after a pause, lists it. locked: read, pause, write back with the mark appended:
        // without the lock one append overwrites the other.
        let dockerfile = format!(
            r#"FROM busybox
RUN --mount=type=cache,id=pv,sharing=private,target=/p touch /p/{mark} && sleep 6 && ls /p > /seen-private
RUN --mount=type=cache,id=lk,sharing=locked,target=/c old="$(cat /c/log 2>/dev/null)"; sleep 4; {{ test -n "$old" && echo "$old"; echo {mark}; }} > /c/log
"#
        );
        let ctx = d.root.join(format!("ctx-{mark}"));
        write(&ctx, &[("Dockerfile", &dockerfile)]);
        contexts.push(ctx);
    }
    let progress = build_concurrently(&d, &[("share:a", &contexts[0]), ("share:b", &contexts[1])]);
    // The second locked step waited for the first, and said so.
    let waited = progress
        .iter()
        .filter(|p| p.contains("waiting for the cache mount lk (sharing=locked)"))
        .count();
    assert_eq!(waited, 1, "{progress:?}");
    // Each private user saw only its own mark: the second got a fresh directory.
    for mark in ["a", "b"] {
        assert_eq!(
            d.ok(&[
                "run",
                "--rm",
                &format!("share:{mark}"),
                "cat",
                "/seen-private"
            ]),
            format!("{mark}\n")
        );
    }
    // Both locked appends survived.
    let ctx = d.root.join("ctx-check");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM busybox AS seed\nRUN mkdir -p /seed/dir && echo seeded > /seed/dir/s\n\
             FROM busybox\n\
             RUN --mount=type=cache,id=lk,target=/c sort /c/log > /log\n\
             RUN --mount=type=cache,id=fr,from=seed,source=/seed/dir,target=/c cat /c/s > /seeded && echo more > /c/t\n\
             RUN --mount=type=cache,id=fr,target=/c ls /c > /after\n",
        )],
    );
    build(
        &d,
        &["--no-cache", "-t", "share:check", ctx.to_str().unwrap()],
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "share:check",
            "cat",
            "/log",
            "/seeded",
            "/after"
        ]),
        "a\nb\nseeded\ns\nt\n"
    );
    // The private directory of the second user is gone; the shared one holds the first mark.
    let mounts = std::fs::read_dir(d.root.join("builder/cache-mounts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert_eq!(mounts.len(), 3, "pv, lk and fr only: {mounts:?}");
    d.ok(&["builder", "delete"]);
}
