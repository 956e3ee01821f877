//! End to end: `container build` with the real binaries. A multi-stage Dockerfile whose
//! final `FROM scratch` stage copies busybox and a context file from the first stage; the
//! image config and history checked against what Docker produces; the image run in a VM;
//! the cache (every step CACHED on a rebuild, one changed file reruns its step and the
//! later ones only, `--no-cache`, `builder prune`); `.dockerignore` exceptions; and the
//! errors a user meets.

use std::path::Path;
use std::time::Instant;

use container_tests::daemon::Daemon;
use container_tests::write_files as write;
use serde_json::{Value, json};

const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS build
WORKDIR /work
COPY app/ ./app/
COPY <<EOF /work/app/generated.txt
made by a heredoc
EOF

FROM scratch
ARG VERSION=1.0
LABEL org.example.version=$VERSION maintainer="me"
ENV GREETING="hello world" APP_HOME=/app
COPY --from=build /bin/busybox /bin/busybox
COPY --from=build --chown=1000:1000 --chmod=640 /work/app/ /app/
WORKDIR $APP_HOME
USER 1000:1000
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD ["/bin/busybox", "true"]
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/app/message.txt"]
"#;

/// Builds and returns (stdout, stderr), requiring success.
fn build(d: &Daemon, args: &[&str]) -> (String, String) {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    let out = d.run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build {args:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// The step lines of a build's progress: ("[stage k/n] INSTRUCTION", "CACHED" or "DONE").
fn steps(stderr: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut numbers = std::collections::BTreeMap::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((n, text)) = rest.split_once(' ') else {
            continue;
        };
        if text.starts_with('[') {
            numbers.insert(n.to_string(), out.len());
            out.push((text.to_string(), String::new()));
        } else if let Some(&i) = numbers.get(n) {
            if text == "CACHED" {
                out[i].1 = "CACHED".into();
            } else if text.starts_with("DONE ") {
                out[i].1 = "DONE".into();
            }
        }
    }
    out
}

fn config(d: &Daemon, image: &str) -> Value {
    let v: Value = serde_json::from_str(&d.ok(&["image", "inspect", image])).unwrap();
    v[0]["variants"][0]["config"].clone()
}

#[test]
fn multi_stage_build_runs_and_caches() {
    let Some(d) = Daemon::start("build") else {
        return;
    };
    let ctx = d.root.join("ctx");
    write(
        &ctx,
        &[
            ("Dockerfile", DOCKERFILE),
            ("app/message.txt", "hello from the build\n"),
            ("app/other.txt", "other\n"),
        ],
    );
    let ctx_s = ctx.to_str().unwrap();
    let (_, stderr) = build(&d, &["-t", "built:1", "--label", "extra=yes", ctx_s]);
    let got = steps(&stderr);
    let expected = [
        "[build 1/3] FROM busybox",
        "[build 2/3] COPY app/ ./app/",
        "[build 3/3] COPY <<EOF /work/app/generated.txt",
        "[stage-1 1/3] FROM scratch",
        "[stage-1 2/3] COPY --from=build /bin/busybox /bin/busybox",
        "[stage-1 3/3] COPY --from=build --chown=1000:1000 --chmod=640 /work/app/ /app/",
    ];
    assert_eq!(
        got.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        expected,
        "{stderr}"
    );
    assert!(got.iter().all(|(_, r)| r == "DONE"), "{stderr}");
    assert!(
        stderr.contains("naming to docker.io/library/built:1 done"),
        "{stderr}"
    );

    // The image runs: busybox from the first stage, the file copied from the context.
    assert_eq!(d.ok(&["run", "--rm", "built:1"]), "hello from the build\n");
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--user",
            "0",
            "built:1",
            "cat",
            "/app/generated.txt"
        ]),
        "made by a heredoc\n"
    );
    // --chown and --chmod as written; WORKDIR applies.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--user",
            "0",
            "built:1",
            "stat",
            "-c",
            "%u:%g %a %n",
            "/app/message.txt"
        ]),
        "1000:1000 640 /app/message.txt\n"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--user",
            "0",
            "--entrypoint",
            "/bin/busybox",
            "built:1",
            "pwd"
        ]),
        "/app\n"
    );

    // The config Docker writes for this Dockerfile.
    let c = config(&d, "built:1");
    let cfg = &c["config"];
    assert_eq!(
        cfg["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "GREETING=hello world",
            "APP_HOME=/app"
        ])
    );
    assert_eq!(cfg["Entrypoint"], json!(["/bin/busybox"]));
    assert_eq!(cfg["Cmd"], json!(["cat", "/app/message.txt"]));
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
    assert_eq!(cfg["Volumes"], json!({"/data": {}}));
    assert_eq!(cfg["StopSignal"], "SIGTERM");
    assert_eq!(
        cfg["Labels"],
        json!({"org.example.version": "1.0", "maintainer": "me", "extra": "yes"})
    );
    assert_eq!(
        cfg["Healthcheck"],
        json!({
            "Test": ["CMD", "/bin/busybox", "true"],
            "Interval": 5_000_000_000u64,
            "Timeout": 2_000_000_000u64,
            "Retries": 3
        })
    );
    assert_eq!(c["os"], "linux");
    assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    let history: Vec<(String, bool)> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap().to_string(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    // BuildKit's created_by forms: words expanded, exec forms as Go prints them.
    let by = |s: &str, empty: bool| (s.to_string(), empty);
    assert_eq!(
        history,
        [
            by("LABEL org.example.version=1.0 maintainer=me", true),
            by("ENV GREETING=hello world APP_HOME=/app", true),
            by(
                "COPY --from=build /bin/busybox /bin/busybox # buildkit",
                false
            ),
            by(
                "COPY --from=build --chown=1000:1000 --chmod=640 /work/app/ /app/ # buildkit",
                false
            ),
            by("WORKDIR /app", true),
            by("USER 1000:1000", true),
            by("EXPOSE map[53/udp:{} 8080/tcp:{}]", true),
            by("VOLUME [/data]", true),
            by("STOPSIGNAL SIGTERM", true),
            by(
                "HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD [\"/bin/busybox\", \"true\"]",
                true
            ),
            by("ENTRYPOINT [\"/bin/busybox\"]", true),
            by("CMD [\"cat\" \"/app/message.txt\"]", true),
        ]
    );
    let image_id = |name: &str| {
        let v: Value = serde_json::from_str(&d.ok(&["image", "inspect", name])).unwrap();
        v[0]["digest"].as_str().unwrap().to_string()
    };
    let first_id = image_id("built:1");

    // The built image's rootfs snapshot is a sound ext4, and the image pushes to the local
    // registry, where skopeo reads it back.
    let manifest = d.fsck_snapshot("built:1");
    let pushed = format!("{}/build-{}/built:1", d.mirror, std::process::id());
    d.ok(&["image", "tag", "built:1", &pushed]);
    d.ok(&["image", "push", &pushed]);
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{pushed}"))
        .output()
        .expect("skopeo must be installed");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remote: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(remote["Layers"].as_array().unwrap().len(), 2, "{remote}");
    assert_eq!(remote["Labels"]["extra"], "yes", "{remote}");
    assert_eq!(remote["Digest"], manifest, "{remote}");

    // A rebuild without change: every layer step CACHED.
    let started = Instant::now();
    let (_, stderr) = build(&d, &["-t", "built:1", "--label", "extra=yes", ctx_s]);
    let cached_secs = started.elapsed().as_secs_f64();
    eprintln!("cached rebuild: {cached_secs:.2}s");
    let got = steps(&stderr);
    assert_eq!(got.len(), 6, "{stderr}");
    for (s, r) in &got {
        if !s.contains("FROM") {
            assert_eq!(r, "CACHED", "{s}: {stderr}");
        }
    }
    // Every step cached: the same image, as Docker gives.
    assert_eq!(image_id("built:1"), first_id);
    // One changed file reruns its COPY and the later steps only.
    write(&ctx, &[("app/message.txt", "changed\n")]);
    let (_, stderr) = build(&d, &["-t", "built:2", ctx_s]);
    let got: Vec<String> = steps(&stderr)
        .into_iter()
        .filter(|(s, _)| !s.contains("FROM"))
        .map(|(_, r)| r)
        .collect();
    // The changed COPY and the rest of its stage rerun; the other stage's first COPY,
    // whose parent and content did not change, is cached.
    assert_eq!(got, ["DONE", "DONE", "CACHED", "DONE"], "{stderr}");
    assert_eq!(
        d.ok(&["run", "--rm", "--user", "0", "built:2"]),
        "changed\n"
    );
    // --no-cache reruns everything; builder prune empties the cache.
    let (_, stderr) = build(&d, &["--no-cache", "-q", ctx_s]);
    assert!(steps(&stderr).is_empty(), "-q prints no progress: {stderr}");
    let (stdout, _) = build(&d, &["--no-cache", ctx_s]);
    assert_eq!(stdout, "");
    let pruned = d.ok(&["builder", "prune"]);
    assert!(
        pruned.starts_with("Deleted build cache entries: "),
        "{pruned}"
    );
    assert!(
        !pruned.starts_with("Deleted build cache entries: 0\n"),
        "{pruned}"
    );
    let (_, stderr) = build(&d, &["-t", "built:3", ctx_s]);
    assert!(
        steps(&stderr).iter().all(|(_, r)| r == "DONE"),
        "after prune nothing is cached: {stderr}"
    );
}

#[test]
fn dockerignore_exceptions_decide_the_context() {
    let Some(d) = Daemon::start("bignore") else {
        return;
    };
    let ctx = d.root.join("ctx");
    write(
        &ctx,
        &[
            ("Containerfile", "FROM scratch\nCOPY . /ctx/\nCMD [\"x\"]\n"),
            (
                ".dockerignore",
                "*.log\nsecret\nlogs\n!logs/keep.log\n**/*.tmp\n",
            ),
            ("a.txt", "a"),
            ("b.log", "b"),
            ("secret", "s"),
            ("logs/keep.log", "k"),
            ("logs/drop.log", "d"),
            ("src/main.rs", "m"),
            ("src/deep/x.tmp", "t"),
        ],
    );
    build(&d, &["-t", "ign", ctx.to_str().unwrap()]);
    // What reached the context is what COPY . took: export the image and list /ctx.
    let out = d.root.join("ign.tar");
    d.ok(&["image", "save", "-o", out.to_str().unwrap(), "ign"]);
    let listing = layer_files(&out);
    assert_eq!(
        listing,
        [
            "ctx",
            "ctx/.dockerignore 644 *.log\nsecret\nlogs\n!logs/keep.log\n**/*.tmp\n",
            "ctx/Containerfile 644 FROM scratch\nCOPY . /ctx/\nCMD [\"x\"]\n",
            "ctx/a.txt 644 a",
            "ctx/logs",
            "ctx/logs/keep.log 644 k",
            "ctx/src",
            "ctx/src/deep",
            "ctx/src/main.rs 644 m",
        ]
    );
}

#[test]
fn add_unpacks_local_tars_and_checks_downloads() {
    let Some(d) = Daemon::start("badd") else {
        return;
    };
    // A URL served from 127.0.0.1 by the test itself.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = "downloaded\n";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let sum = std::process::Command::new("sh")
        .args(["-c", "printf 'downloaded\\n' | sha256sum"])
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let ctx = d.root.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // A local tar that ADD unpacks.
    let mut t = tar::Builder::new(std::fs::File::create(ctx.join("files.tar")).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o640);
    h.set_entry_type(tar::EntryType::Regular);
    t.append_data(&mut h, "pkg/a.txt", &b"A"[..]).unwrap();
    t.finish().unwrap();
    drop(t);
    let url = format!("http://127.0.0.1:{port}/dl/hello.txt?x=1");
    write(
        &ctx,
        &[(
            "Dockerfile",
            &format!(
                "FROM scratch\nADD files.tar /opt/\nADD --checksum=sha256:{sum} {url} /web/\nCMD [\"x\"]\n"
            ),
        )],
    );
    build(&d, &["-t", "added", ctx.to_str().unwrap()]);
    let out = d.root.join("added.tar");
    d.ok(&["image", "save", "-o", out.to_str().unwrap(), "added"]);
    assert_eq!(
        layer_files(&out),
        [
            "opt",
            "opt/pkg/a.txt 640 A",
            "web",
            "web/hello.txt 600 downloaded\n"
        ]
    );
    // A wrong checksum fails the build and names both digests.
    let bad = "0".repeat(64);
    write(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD --checksum=sha256:{bad} {url} /web/\n"),
        )],
    );
    let err = d.fails(&["build", "-t", "bad", ctx.to_str().unwrap()], 1);
    assert_eq!(
        err,
        format!(
            "container: Dockerfile:2: digest mismatch for {url}: expected sha256:{bad}, got sha256:{sum}"
        )
    );
}

/// The entries of the layers in an OCI-layout image archive.
fn layer_files(archive: &Path) -> Vec<String> {
    let mut blobs = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        blobs.insert(p, data);
    }
    let index: Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let blob = |d: &str| &blobs[&format!("blobs/sha256/{}", &d[7..])];
    let manifest: Value =
        serde_json::from_slice(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut names = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let gz = blob(layer["digest"].as_str().unwrap());
        let mut tar = tar::Archive::new(flate2_reader(gz));
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let p = p.trim_start_matches("./").trim_end_matches('/').to_string();
            let mode = e.header().mode().unwrap();
            let mut body = String::new();
            std::io::Read::read_to_string(&mut e, &mut body).unwrap();
            names.push(if body.is_empty() {
                p
            } else {
                format!("{p} {mode:o} {body}")
            });
        }
    }
    names.sort();
    names
}

/// gunzip through the system's gzip (the tests crate has no decompressor of its own).
fn flate2_reader(gz: &[u8]) -> std::io::Cursor<Vec<u8>> {
    use std::io::Write;
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
    std::io::Cursor::new(out.stdout)
}

#[test]
fn build_errors_are_one_line_and_tag_nothing() {
    let Some(d) = Daemon::start("berr") else {
        return;
    };
    let ctx = d.root.join("ctx");
    write(&ctx, &[("present.txt", "p")]);
    let ctx_s = ctx.to_str().unwrap();
    let case = |dockerfile: &str| -> String {
        write(&ctx, &[("Dockerfile", dockerfile)]);
        d.fails(&["build", "-t", "bad:1", ctx_s], 1)
    };
    assert_eq!(
        case("FROM scratch\nCOPY present.txt /\nFORM busybox\n"),
        "container: Dockerfile:3: unknown instruction: FORM (did you mean FROM?)"
    );
    let err = case("FROM scratch\nENV x=${y\n");
    assert!(
        err.starts_with("container: Dockerfile:2: failed to process ")
            && err.ends_with("missing '}' in variable substitution"),
        "{err}"
    );
    assert_eq!(
        case("FROM scratch\nCOPY present.txt /\nCOPY missing.txt /\n"),
        "container: Dockerfile:3: COPY source \"missing.txt\" not found"
    );
    // An unknown stage in --from is taken as an image, which the registry does not have.
    let err = case("FROM scratch AS a\nCOPY --from=nosuchstage /x /x\n");
    assert!(
        err.starts_with("container: Dockerfile:2: base image nosuchstage: "),
        "{err}"
    );
    assert!(err.contains("not found"), "{err}");
    let err =
        case("FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=a /y /y\n");
    assert!(
        err.contains("circular dependency detected on stage: "),
        "{err}"
    );
    let err = d.fails(&["build", "--target", "nope", ctx_s], 1);
    assert_eq!(err, "container: target stage \"nope\" could not be found");
    let err = case("FROM busybox\nRUN false\n");
    assert!(err.starts_with("container: Dockerfile:2: "), "{err}");
    assert!(!d.ok(&["image", "ls"]).contains("bad"), "nothing tagged");
}
