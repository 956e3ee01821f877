//! End to end: `RUN` in the builder VM, with the real binaries and real VMs. A RUN that
//! deletes a base file leaves a whiteout that survives a push and a pull; a multi-stage
//! build whose first stage makes an artifact with busybox tools runs, and its rebuild is
//! all CACHED without booting a VM; a failing RUN shows its output and exit code and tags
//! nothing; `--secret` is readable in its RUN and in no layer, config or history;
//! `--network=none` sees only lo; a cache mount keeps its files across builds; `builder
//! start|status|stop|delete` by what they print.

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
    d.ok(&["image", "tag", "wh:1", &pushed]);
    d.ok(&["image", "push", &pushed]);
    d.ok(&["image", "delete", &pushed, "wh:1"]);
    d.ok(&["image", "pull", &pushed]);
    d.fsck_snapshot(&pushed);
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
