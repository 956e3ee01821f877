//! End to end, Docker's classic builder API (`POST /build`) against a real daemon: the real
//! `docker` CLI with `DOCKER_BUILDKIT=0` (a multi-stage COPY-only Dockerfile, its image run
//! in a VM, the cache on a rebuild, `docker builder prune`, a Dockerfile with a syntax error
//! and one with a missing COPY source), and `docker compose build` with compose v2 and v1.
//! docker-py's `images.build` is in tests/docker-py.

use container_tests::daemon::Daemon;
use container_tests::docker::find_compose;
use container_tests::write_files as write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const DOCKERFILE: &str = "FROM busybox AS build
COPY msg.txt /work/msg.txt
COPY extra/ /work/extra/

FROM busybox
LABEL stage=final
COPY --from=build /work/ /srv/
CMD [\"cat\", \"/srv/msg.txt\", \"/srv/extra/more.txt\"]
";

/// A daemon and the docker CLI pointed at its Docker socket, classic builder forced.
struct Docker {
    d: Daemon,
    config: PathBuf,
}

impl Docker {
    fn start(test: &str) -> Option<Docker> {
        if !on_path("docker") {
            test_support::skip("the docker CLI is not on the PATH");
            return None;
        }
        let d = Daemon::start(test)?;
        let config = d.root.join("docker-config");
        std::fs::create_dir_all(&config).expect("docker config dir");
        Some(Docker { d, config })
    }

    fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.d.root.join("docker.sock").display()),
            )
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(Path::new("docker"), args)
            .output()
            .expect("docker runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}

/// The build's own lines: what follows the CLI's "Sending build context" line, without
/// the legacy builder's deprecation notice (on stderr anyway).
fn build_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("Sending build context"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn docker_build_classic_runs_caches_and_fails_clearly() {
    let Some(dk) = Docker::start("dbuild") else {
        return;
    };
    let ctx = dk.d.root.join("ctx");
    write(
        &ctx,
        &[
            ("Dockerfile", DOCKERFILE),
            ("msg.txt", "hello from docker build\n"),
            ("extra/more.txt", "more\n"),
            ("ignored.log", "not sent\n"),
            (".dockerignore", "*.log\n"),
        ],
    );
    let ctx_s = ctx.to_str().unwrap();
    let out = dk.ok(&["build", "-t", "dbuild:1", ctx_s]);
    let lines = build_lines(&out);
    let short = lines
        .iter()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap_or_else(|| panic!("no id in {out}"))
        .to_string();
    assert_eq!(short.len(), 12, "{out}");
    assert_eq!(
        lines,
        [
            "Step 1/5 : FROM busybox AS build",
            "Step 2/5 : COPY msg.txt /work/msg.txt",
            "Step 3/5 : COPY extra/ /work/extra/",
            "Step 4/5 : FROM busybox",
            "Step 5/5 : COPY --from=build /work/ /srv/",
            &format!(" ---> {short}"),
            &format!("Successfully built {short}"),
            "Successfully tagged dbuild:1",
        ],
        "{out}"
    );
    // The ID the build printed is the image's.
    let id = dk.ok(&["image", "inspect", "--format", "{{.Id}}", "dbuild:1"]);
    assert!(
        id.trim()
            .strip_prefix("sha256:")
            .unwrap()
            .starts_with(&short),
        "{id} vs {short}"
    );
    assert_eq!(
        dk.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.Labels.stage}}",
            "dbuild:1"
        ])
        .trim(),
        "final"
    );
    // The image runs in a VM with what the build copied.
    assert_eq!(
        dk.ok(&["run", "--rm", "dbuild:1"]),
        "hello from docker build\nmore\n"
    );
    // .dockerignore was applied by the client: the log never reached the build.
    let ls = dk.ok(&["run", "--rm", "dbuild:1", "ls", "/srv"]);
    assert_eq!(ls, "extra\nmsg.txt\n");

    // A rebuild takes every COPY from the cache.
    let again = build_lines(&dk.ok(&["build", "-t", "dbuild:1", ctx_s]));
    let cached: Vec<&String> = again.iter().filter(|l| *l == " ---> Using cache").collect();
    assert_eq!(cached.len(), 3, "{again:?}");
    assert!(
        again.contains(&format!("Successfully built {short}")),
        "{again:?}"
    );

    // `docker builder prune` empties the cache: the next build copies again.
    let pruned = dk.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let fresh = build_lines(&dk.ok(&["build", "-t", "dbuild:1", ctx_s]));
    assert!(!fresh.iter().any(|l| l == " ---> Using cache"), "{fresh:?}");

    // A Dockerfile under another name, given with -f.
    write(
        &ctx,
        &[(
            "sub/Alt.dockerfile",
            "FROM busybox\nCOPY msg.txt /alt.txt\n",
        )],
    );
    let alt = dk.ok(&[
        "build",
        "-q",
        "-f",
        &format!("{ctx_s}/sub/Alt.dockerfile"),
        "-t",
        "dbuild:alt",
        ctx_s,
    ]);
    assert!(alt.trim().starts_with("sha256:"), "{alt}");
    assert_eq!(
        dk.ok(&["run", "--rm", "dbuild:alt", "cat", "/alt.txt"]),
        "hello from docker build\n"
    );

    // A syntax error: refused before any output, as Docker does, naming the line.
    write(&ctx, &[("Dockerfile", "FROM busybox\nFROB /x\n")]);
    let out = dk.run(&["build", "-t", "dbuild:bad", ctx_s]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(
        err.to_ascii_lowercase()
            .contains("unknown instruction: frob"),
        "{err}"
    );
    // A missing COPY source: the error arrives in the stream, the build exits 1.
    write(&ctx, &[("Dockerfile", "FROM busybox\nCOPY nope.txt /\n")]);
    let out = dk.run(&["build", "-t", "dbuild:bad", ctx_s]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("Step 2/2 : COPY nope.txt /"), "{stdout}");
    assert!(err.contains("COPY source \"nope.txt\" not found"), "{err}");
    // Nothing was tagged by the failed builds.
    let tags = dk.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "dbuild"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, ["dbuild:1", "dbuild:alt"]);
}

#[test]
fn compose_v2_build() {
    compose_build(2);
}

#[test]
fn compose_v1_build() {
    compose_build(1);
}

/// `docker-compose build` of a service with `build:` (a context, a Dockerfile by another
/// name, build args), then `up` runs the built image.
fn compose_build(major: u32) {
    let Some(compose) = find_compose(major) else {
        return;
    };
    let Some(dk) = Docker::start(&format!("cb{major}")) else {
        return;
    };
    let dir = dk.d.root.join("proj");
    write(
        &dir,
        &[
            (
                "compose.yaml",
                "services:\n  app:\n    build:\n      context: ./app\n      dockerfile: App.dockerfile\n      args:\n        GREETING: built-by-compose\n    image: cbuild/app:1\n",
            ),
            (
                "app/App.dockerfile",
                "FROM busybox\nARG GREETING=none\nLABEL greeting=$GREETING\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n",
            ),
            ("app/hello.txt", "hello from compose\n"),
        ],
    );
    let compose_cmd = |args: &[&str]| {
        let mut c = dk.cmd(&compose, args);
        c.current_dir(&dir)
            .env_remove("COMPOSE_FILE")
            .env("COMPOSE_PROJECT_NAME", "cbuild");
        let out = c.output().expect("compose runs");
        assert!(
            out.status.success(),
            "compose {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    compose_cmd(&["build"]);
    assert_eq!(
        dk.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.Labels.greeting}}",
            "cbuild/app:1"
        ])
        .trim(),
        "built-by-compose"
    );
    assert_eq!(
        dk.ok(&["run", "--rm", "cbuild/app:1"]),
        "hello from compose\n"
    );
}
