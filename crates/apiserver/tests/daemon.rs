//! The real `container-apiserver` binary as a child process on a temp app root, driven
//! through crates/api's client.
//!
//! Image tests need the test registry and images (`cargo xtask registry start` exports
//! CONTAINER_TEST_REGISTRY and CONTAINER_TEST_IMAGES); VM tests also need the guest kernel
//! and initramfs (target/guest/) and `container-runtime` built beside the daemon
//! (`cargo build -p runtime`). Each skips saying why when something is missing, unless
//! CONTAINER_REQUIRE_VM=1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api::v1;
use tokio_stream::StreamExt;

const DAEMON: &str = env!("CARGO_BIN_EXE_container-apiserver");

fn skip_or_panic(test: &str, why: &str) {
    test_support::skip(&format!("{test}: {why}"));
}

fn env_path(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The test registry and the busybox archive, or None after saying why.
fn images_env(test: &str) -> Option<(String, PathBuf)> {
    match (
        env_path("CONTAINER_TEST_REGISTRY"),
        env_path("CONTAINER_TEST_IMAGES"),
    ) {
        (Some(r), Some(i)) => Some((r, PathBuf::from(i))),
        _ => {
            skip_or_panic(
                test,
                "CONTAINER_TEST_REGISTRY / CONTAINER_TEST_IMAGES are unset (run `cargo xtask registry start` and export its env)",
            );
            None
        }
    }
}

/// Whether a VM can be run: runtime binary beside the daemon, and guest files.
fn vm_ready(test: &str) -> bool {
    let runtime = Path::new(DAEMON).with_file_name("container-runtime");
    if !runtime.is_file() {
        skip_or_panic(
            test,
            &format!("{} is missing (cargo build -p runtime)", runtime.display()),
        );
        return false;
    }
    // The daemon boots what its installation's share directory holds, as an installed one.
    let share = Path::new(DAEMON)
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("share/container"));
    let has = |file: &str| share.as_ref().is_some_and(|s| s.join(file).is_file());
    if !has("vmlinux") || !has("initramfs.cpio") {
        skip_or_panic(
            test,
            "no guest kernel/initramfs in target/share/container (cargo xtask guest)",
        );
        return false;
    }
    true
}

/// A daemon child on its own app root.
struct Daemon {
    root: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn start(root: &Path) -> Daemon {
        // User-mode networking: no test may add bridges to the host's network namespace.
        let child = Command::new(DAEMON)
            .arg("--app-root")
            .arg(root)
            .env("CONTAINER_NETWORK_MODE", "user")
            .env("CONTAINER_POOL_SIZE", "0")
            .env_remove("CONTAINER_REGISTRY_MIRROR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning the daemon");
        Daemon {
            root: root.to_path_buf(),
            child: Some(child),
        }
    }

    async fn client(&self) -> api::Client {
        let socket = api::socket_path(&self.root);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match api::Client::connect(&socket, Duration::from_secs(2)).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("daemon never answered: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// SIGTERM and wait.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child; no memory involved.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// SIGKILL: a crash.
    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills every runtime left under an app root (a failed test must not leak VMs).
fn kill_runtimes(root: &Path) {
    let Ok(dirs) = std::fs::read_dir(root.join("containers")) else {
        return;
    };
    for d in dirs.flatten() {
        if let Ok(s) = runtime_api::State::load(&d.path().join("state.json")) {
            let cmd = std::fs::read(format!("/proc/{}/cmdline", s.runtime_pid)).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains("container-runtime") {
                // SAFETY: kill(2) on a runtime this test started; no memory involved.
                unsafe { libc::kill(s.runtime_pid as i32, libc::SIGKILL) };
            }
        }
    }
}

struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Root {
        // Short paths: runtime sockets live at <root>/containers/<64 hex>/runtime.sock.
        Root(
            tempfile::Builder::new()
                .prefix("as")
                .tempdir_in("/tmp")
                .unwrap(),
        )
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// An app root long enough that `containers/<id>/runtime.sock` would not fit in a Unix
/// socket address, as under a user's `~/.local/share` or macOS's Application Support.
struct LongRoot {
    /// Owns (and on drop removes) the temp dir the long root lives in.
    _base: Root,
    long: PathBuf,
}

impl LongRoot {
    fn new() -> LongRoot {
        let root = Root::new();
        let long = root
            .path()
            .join("a-long-directory-name-like-a-home-data-dir");
        std::fs::create_dir(&long).unwrap();
        LongRoot { _base: root, long }
    }
    fn path(&self) -> &Path {
        &self.long
    }
}

impl Drop for LongRoot {
    fn drop(&mut self) {
        kill_runtimes(&self.long);
        // Short bundle aliases the daemon made for this root.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        let aliases = std::env::temp_dir().join(format!("container-{uid}"));
        for e in std::fs::read_dir(aliases).into_iter().flatten().flatten() {
            if std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(&self.long)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        kill_runtimes(self.0.path());
    }
}

async fn load_busybox(client: &api::Client, images: &Path) -> Vec<String> {
    let data = std::fs::read(images.join("busybox.docker.tar")).unwrap();
    let mut msgs = vec![v1::LoadImagesRequest {
        part: Some(v1::load_images_request::Part::Header(v1::LoadHeader {
            force: false,
        })),
    }];
    for c in data.chunks(1 << 20) {
        msgs.push(v1::LoadImagesRequest {
            part: Some(v1::load_images_request::Part::Data(c.to_vec())),
        });
    }
    client
        .images()
        .load(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner()
        .references
}

fn config(name: &str, image: &str, args: &[&str]) -> v1::ContainerConfig {
    v1::ContainerConfig {
        id: name.into(),
        image: image.into(),
        process: Some(v1::ProcessConfig {
            command: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        resources: Some(v1::Resources {
            cpus_millis: 1000,
            memory_bytes: 256 << 20,
            shm_size_bytes: 0,
        }),
        ..Default::default()
    }
}

async fn create(client: &api::Client, c: v1::ContainerConfig) -> Result<String, tonic::Status> {
    client
        .containers()
        .create(v1::CreateContainerRequest {
            config: Some(c),
            pull: None,
        })
        .await
        .map(|r| r.into_inner().id)
}

async fn inspect(client: &api::Client, id: &str) -> v1::ContainerInfo {
    client
        .containers()
        .inspect(v1::InspectContainerRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap()
}

async fn list(client: &api::Client, all: bool) -> Vec<v1::ContainerInfo> {
    client
        .containers()
        .list(v1::ListContainersRequest {
            all,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .containers
}

async fn logs(client: &api::Client, id: &str) -> String {
    let mut s = client
        .containers()
        .logs(v1::LogsRequest {
            id: id.into(),
            follow: false,
            tail: None,
            boot: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend(c.unwrap().data);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn one_daemon_per_root_and_socket_is_private() {
    let root = Root::new();
    let d = Daemon::start(root.path());
    let client = d.client().await;
    let v = client.daemon_version();
    assert_eq!(v.app_name, "container-apiserver");
    assert_eq!(v.api_version, api::API_VERSION);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(api::socket_path(root.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pid: u32 = std::fs::read_to_string(root.path().join("apiserver.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(Some(pid), d.child.as_ref().map(|c| c.id()));

    let second = Command::new(DAEMON)
        .arg("--app-root")
        .arg(root.path())
        .env("CONTAINER_NETWORK_MODE", "user")
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!(
            "another container-apiserver (pid {pid}) is already serving"
        )),
        "{err}"
    );
    // The first daemon is unharmed.
    client
        .system()
        .version(v1::VersionRequest {})
        .await
        .unwrap();

    // Properties: typed, persisted, errors carry the right kind.
    let sys = client.system();
    let p = sys
        .clone()
        .property_set(v1::PropertySetRequest {
            key: "container.cpus".into(),
            value: "2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(p.is_set && p.value == "2");
    let e = sys
        .clone()
        .property_set(v1::PropertySetRequest {
            key: "container.memory".into(),
            value: "lots".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = sys
        .clone()
        .property_get(v1::PropertyGetRequest { key: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let status = sys
        .clone()
        .status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.app_root, root.path().display().to_string());
    // Not a container: NotFound, one line.
    let e = client
        .containers()
        .inspect(v1::InspectContainerRequest { id: "ghost".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(e.message(), "container ghost not found");

    // The daemon's own log.
    let mut lines = client
        .system()
        .logs(v1::SystemLogsRequest {
            follow: false,
            last_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    while let Some(l) = lines.next().await {
        let l = l.unwrap();
        assert!(l.timestamp_ms > 0, "{l:?}");
        text.push_str(&l.line);
        text.push('\n');
    }
    assert!(text.contains("serving"), "{text}");

    // Shutdown over the API removes the socket; the pid file lock is released.
    sys.clone().shutdown(v1::ShutdownRequest {}).await.unwrap();
    let mut d = d;
    let status = d.child.take().unwrap().wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!api::socket_path(root.path()).exists());
    let d2 = Daemon::start(root.path());
    let c2 = d2.client().await;
    let p = c2
        .system()
        .property_get(v1::PropertyGetRequest {
            key: "container.cpus".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.value, "2", "properties survive a restart");
}

#[tokio::test]
async fn containers_survive_restart_and_reconcile_marks_dead_runtimes() {
    let Some((_, images)) =
        images_env("containers_survive_restart_and_reconcile_marks_dead_runtimes")
    else {
        return;
    };
    let root = Root::new();
    let mut d = Daemon::start(root.path());
    let client = d.client().await;
    let refs = load_busybox(&client, &images).await;
    assert!(!refs.is_empty(), "load named no image");
    let image = refs[0].clone();

    let web = create(&client, config("web", &image, &["echo", "hi"]))
        .await
        .unwrap();
    assert_eq!(web.len(), 64);
    assert!(web.bytes().all(|b| b.is_ascii_hexdigit()));
    let e = create(&client, config("web", &image, &["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    assert!(
        e.message()
            .contains("the container name web is already in use"),
        "{}",
        e.message()
    );
    let anon = create(&client, config("", &image, &[])).await.unwrap();
    let info = inspect(&client, &anon).await;
    assert!(info.name.contains('_'), "random name {:?}", info.name);
    assert_eq!(info.args, ["sh"], "busybox's CMD applies");
    // By name, and by unique ID prefix.
    assert_eq!(inspect(&client, "web").await.id, web);
    assert_eq!(inspect(&client, &web[..8]).await.name, "web");
    let bad = create(&client, config("bad name!", &image, &[]))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let missing = create(&client, config("m", "127.0.0.1:1/nope:1", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        tonic::Code::Unavailable,
        "{}",
        missing.message()
    );

    // An anonymous volume gets a name, a file system, and goes with its container.
    let mut c = config("withvol", &image, &[]);
    c.mounts = vec![v1::Mount {
        target: "/data".into(),
        readonly: false,
        kind: Some(v1::mount::Kind::Volume(v1::VolumeMount {
            name: String::new(),
        })),
    }];
    create(&client, c).await.unwrap();
    let mounts = inspect(&client, "withvol").await.config.unwrap().mounts;
    let Some(v1::mount::Kind::Volume(v)) = &mounts[0].kind else {
        panic!("{mounts:?}");
    };
    assert_eq!(v.name.len(), 64);
    let vol = root
        .path()
        .join("volumes")
        .join(&v.name)
        .join("volume.ext4");
    assert!(vol.is_file());
    client
        .containers()
        .delete(v1::DeleteContainerRequest {
            id: "withvol".into(),
            force: false,
            remove_volumes: true,
        })
        .await
        .unwrap();
    assert!(!vol.exists());
    let e = create(&client, {
        let mut c = config("badbind", &image, &[]);
        c.mounts = vec![v1::Mount {
            target: "/x".into(),
            readonly: false,
            kind: Some(v1::mount::Kind::Bind(v1::BindMount {
                source: "/nonexistent/dir".into(),
            })),
        }];
        c
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "bind mount source /nonexistent/dir does not exist"
    );
    let e = create(&client, {
        let mut c = config("tiny", &image, &[]);
        c.resources.as_mut().unwrap().memory_bytes = 100 << 20;
        c
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().starts_with("invalid memory:"),
        "{}",
        e.message()
    );

    assert!(list(&client, false).await.is_empty(), "nothing runs");
    let all = list(&client, true).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, anon, "newest first");
    assert_eq!(all[1].state(), v1::ContainerState::Created);

    // Image in use: delete refused, force allowed later.
    let e = client
        .images()
        .delete(v1::DeleteImageRequest {
            reference: image.clone(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{}", e.message());
    // Forced: the name goes, the content stays for the containers that use it, even
    // through a prune.
    let forced = client
        .images()
        .delete(v1::DeleteImageRequest {
            reference: image.clone(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forced.untagged.len(), 1);
    client
        .images()
        .prune(v1::PruneImagesRequest { all: true })
        .await
        .unwrap();
    let digest = inspect(&client, "web").await.image_digest;
    let snapshot = root
        .path()
        .join("snapshots")
        .join(digest.trim_start_matches("sha256:"))
        .join("rootfs.ext4");
    assert!(snapshot.is_file(), "{} was collected", snapshot.display());

    // Crash the daemon, then fake what a crash of web's runtime would leave: the record says
    // running, the runtime's last state says exit 3 and its pid is long gone. Also leave a
    // half-created container behind.
    d.crash();
    let dir = root.path().join("containers").join(&web);
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("container.json")).unwrap()).unwrap();
    rec["phase"] = "running".into();
    rec["started_ms"] = 1.into();
    std::fs::write(
        dir.join("container.json"),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
    let mut state = runtime_api::State::new(&web);
    state.status = runtime_api::Status::Running;
    state.runtime_pid = u32::MAX - 1;
    state.exit_code = Some(3);
    state.finished_at = Some("2026-01-01T00:00:00Z".into());
    state.save(&dir.join("state.json")).unwrap();
    let half = root
        .path()
        .join("containers")
        .join(format!(".new-{}", "0".repeat(64)));
    std::fs::create_dir(&half).unwrap();

    let d = Daemon::start(root.path());
    let client = d.client().await;
    assert!(!half.exists(), "half-created container cleaned");
    let info = inspect(&client, "web").await;
    assert_eq!(info.state(), v1::ContainerState::Stopped);
    assert_eq!(info.exit_code, 3);
    assert_eq!(info.finished_ms, 1_767_225_600_000);
    assert_eq!(list(&client, true).await.len(), 2);

    // Delete removes every file.
    client
        .containers()
        .delete(v1::DeleteContainerRequest {
            id: "web".into(),
            force: false,
            remove_volumes: false,
        })
        .await
        .unwrap();
    assert!(!dir.exists());
    let pruned = client
        .containers()
        .prune(v1::PruneContainersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.deleted, [anon]);
    assert!(list(&client, true).await.is_empty());
    let only: Vec<_> = std::fs::read_dir(root.path().join("containers"))
        .unwrap()
        .collect();
    assert!(only.is_empty());
}

#[tokio::test]
async fn pull_through_the_mirror_with_progress_tag_save_and_delete() {
    let Some((registry, _)) =
        images_env("pull_through_the_mirror_with_progress_tag_save_and_delete")
    else {
        return;
    };
    let root = Root::new();
    let d = Daemon::start(root.path());
    let client = d.client().await;
    client
        .system()
        .property_set(v1::PropertySetRequest {
            key: "registry.mirror".into(),
            value: registry.clone(),
        })
        .await
        .unwrap();
    let mut stream = client
        .images()
        .pull(v1::PullImageRequest {
            reference: "busybox".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (mut progress, mut last, mut unpacked) = (0, None, false);
    while let Some(m) = stream.next().await {
        match m.unwrap().event {
            Some(v1::pull_image_response::Event::Progress(p)) => {
                progress += 1;
                unpacked |= p.phase == v1::blob_progress::Phase::Unpacking as i32;
            }
            Some(v1::pull_image_response::Event::Image(i)) => last = Some(i),
            _ => {}
        }
    }
    assert!(progress > 0, "no progress events");
    assert!(unpacked, "no unpacking event");
    let image = last.expect("no image at the end of the pull");
    assert_eq!(image.reference, "docker.io/library/busybox:latest");
    assert_eq!(image.variants.len(), 1);
    assert!(image.variants[0].unpacked, "rootfs snapshot built");

    let tagged = client
        .images()
        .tag(v1::TagImageRequest {
            source: "busybox".into(),
            target: "mine:1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.reference, "docker.io/library/mine:1");
    let listed = client
        .images()
        .list(v1::ListImagesRequest { all: false })
        .await
        .unwrap()
        .into_inner()
        .images;
    let names: Vec<&str> = listed.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(
        names,
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/mine:1"
        ]
    );
    let inspected = client
        .images()
        .inspect(v1::InspectImageRequest {
            reference: "mine:1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&inspected.variants[0].config_json).unwrap();
    assert_eq!(config["config"]["Cmd"][0], "sh");

    // Save streams an archive a second daemon can load.
    let mut saved = Vec::new();
    let mut s = client
        .images()
        .save(v1::SaveImagesRequest {
            references: vec!["mine:1".into()],
            platform: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(c) = s.next().await {
        saved.extend(c.unwrap().data);
    }
    let root2 = Root::new();
    let d2 = Daemon::start(root2.path());
    let c2 = d2.client().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("busybox.docker.tar"), &saved).unwrap();
    let loaded = load_busybox(&c2, dir.path()).await;
    assert_eq!(loaded, ["docker.io/library/mine:1"]);

    // Untag one name keeps the content; deleting the last removes it.
    let del = client
        .images()
        .delete(v1::DeleteImageRequest {
            reference: "mine:1".into(),
            force: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.untagged, ["docker.io/library/mine:1"]);
    assert!(del.deleted.is_empty());
    let del = client
        .images()
        .delete(v1::DeleteImageRequest {
            reference: "busybox".into(),
            force: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(del.deleted.len(), 1);
    assert!(del.reclaimed_bytes > 0);
    let e = client
        .images()
        .inspect(v1::InspectImageRequest {
            reference: "busybox".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    // Logins against the registry that wants a password.
    if let (Some(auth), Some(user), Some(password)) = (
        env_path("CONTAINER_TEST_AUTH_REGISTRY"),
        env_path("CONTAINER_TEST_AUTH_USER"),
        env_path("CONTAINER_TEST_AUTH_PASSWORD"),
    ) {
        let reg = client.registry();
        let e = reg
            .clone()
            .login(v1::LoginRequest {
                server: auth.clone(),
                username: user.clone(),
                password: "wrong".into(),
                scheme: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
        reg.clone()
            .login(v1::LoginRequest {
                server: auth.clone(),
                username: user.clone(),
                password,
                scheme: 0,
            })
            .await
            .unwrap();
        let logins = reg
            .clone()
            .list(v1::ListRegistriesRequest {})
            .await
            .unwrap()
            .into_inner()
            .logins;
        assert_eq!(logins.len(), 1);
        assert_eq!(
            (logins[0].hostname.as_str(), logins[0].username.as_str()),
            (auth.as_str(), user.as_str())
        );
        let creds = std::fs::read_to_string(root.path().join("credentials.json")).unwrap();
        assert!(creds.contains(&user));
        reg.clone()
            .logout(v1::LogoutRequest {
                server: auth.clone(),
            })
            .await
            .unwrap();
        let e = reg
            .clone()
            .logout(v1::LogoutRequest {
                server: auth.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    }

    // Without the mirror, a pull of an unknown local registry's image is unavailable.
    let mut s = client
        .images()
        .pull(v1::PullImageRequest {
            reference: format!("{registry}/library/nope:1"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut err = None;
    while let Some(m) = s.next().await {
        if let Err(e) = m {
            err = Some(e);
        }
    }
    assert_eq!(
        err.expect("pull of a missing image failed").code(),
        tonic::Code::NotFound
    );
}

/// Collects an attach or exec stream: (stdout, stderr, exit code).
async fn drain(mut s: tonic::Streaming<v1::StdioResponse>) -> (String, String, Option<i32>) {
    use v1::stdio_response::Response as R;
    use wire::v1::stdio_output::Output;
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(m) = s.next().await {
        let Some(R::Output(frame)) = m.unwrap().response else {
            continue;
        };
        match frame.output {
            Some(Output::Stdout(d)) => out.extend(d),
            Some(Output::Stderr(d)) => err.extend(d),
            Some(Output::ExitCode(c)) => code = Some(c),
            None => {}
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        code,
    )
}

fn attach_open(id: &str) -> v1::StdioRequest {
    v1::StdioRequest {
        request: Some(v1::stdio_request::Request::Attach(v1::AttachOpen {
            id: id.into(),
            stdin: false,
            start: true,
            size: None,
        })),
    }
}

#[tokio::test]
async fn run_echo_then_survive_a_daemon_crash_with_a_detached_container() {
    let test = "run_echo_then_survive_a_daemon_crash_with_a_detached_container";
    let Some((_, images)) = images_env(test) else {
        return;
    };
    if !vm_ready(test) {
        return;
    }
    let root = LongRoot::new();
    assert!(
        root.path()
            .join("containers")
            .join("0".repeat(64))
            .as_os_str()
            .len()
            > 94
    );
    let mut d = Daemon::start(root.path());
    let client = d.client().await;
    let image = load_busybox(&client, &images).await[0].clone();

    // `run busybox echo hi`: attach with start, output streamed, exit code last, --rm.
    let mut c = config("hello", &image, &["echo", "hi"]);
    c.auto_remove = false;
    let id = create(&client, c).await.unwrap();
    let t = Instant::now();
    let s = client
        .containers()
        .attach(tokio_stream::iter(vec![attach_open(&id)]))
        .await
        .unwrap()
        .into_inner();
    let (out, err, code) = drain(s).await;
    eprintln!("run echo hi: {:?}", t.elapsed());
    assert_eq!((out.as_str(), code), ("hi\n", Some(0)), "stderr: {err}");
    let exit = client
        .containers()
        .wait(v1::WaitContainerRequest {
            id: id.clone(),
            condition: v1::WaitCondition::NotRunning as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exit.exit_code, 0);
    assert_eq!(logs(&client, &id).await, "hi\n");
    let info = inspect(&client, &id).await;
    assert_eq!(info.state(), v1::ContainerState::Stopped);
    assert_eq!(info.exit_code, 0);
    client
        .containers()
        .delete(v1::DeleteContainerRequest {
            id: id.clone(),
            force: false,
            remove_volumes: false,
        })
        .await
        .unwrap();

    // `run --rm busybox no-such-program`: 127 with the reason on stderr, then removed.
    let mut c = config("", &image, &["no-such-program"]);
    c.auto_remove = true;
    let id = create(&client, c).await.unwrap();
    let s = client
        .containers()
        .attach(tokio_stream::iter(vec![attach_open(&id)]))
        .await
        .unwrap()
        .into_inner();
    let (out, err, code) = drain(s).await;
    assert_eq!((out.as_str(), code), ("", Some(127)), "stderr: {err}");
    assert!(err.contains("no-such-program"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while list(&client, true).await.iter().any(|c| c.id == id) {
        assert!(Instant::now() < deadline, "--rm container not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!root.path().join("containers").join(&id).exists());

    // A detached container keeps running through a daemon crash.
    let mut c = config(
        "sleeper",
        &image,
        &[
            "sh",
            "-c",
            "echo data > /v/f && sync && echo one; sleep 600",
        ],
    );
    c.mounts = vec![v1::Mount {
        target: "/v".into(),
        readonly: false,
        kind: Some(v1::mount::Kind::Volume(v1::VolumeMount {
            name: "vol1".into(),
        })),
    }];
    let id = create(&client, c).await.unwrap();
    client
        .containers()
        .start(v1::StartContainerRequest {
            id: "sleeper".into(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while logs(&client, &id).await != "one\n" {
        assert!(
            Instant::now() < deadline,
            "no output from the detached container"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // exec through the runtime.
    let s = client
        .containers()
        .exec(tokio_stream::iter(vec![v1::StdioRequest {
            request: Some(v1::stdio_request::Request::Exec(v1::ExecOpen {
                id: "sleeper".into(),
                args: vec!["cat".into(), "/etc/hostname".into()],
                ..Default::default()
            })),
        }]))
        .await
        .unwrap()
        .into_inner();
    let (out, _, code) = drain(s).await;
    assert_eq!((out.trim(), code), (&id[..12], Some(0)));

    d.crash();
    let d = Daemon::start(root.path());
    let client = d.client().await;
    let running = list(&client, false).await;
    assert_eq!(running.len(), 1, "re-adopted as running");
    assert_eq!(running[0].id, id);
    assert_eq!(logs(&client, "sleeper").await, "one\n", "logs stay whole");

    // Files in and out of the re-adopted container, its stats, and a log follower that ends
    // when the container stops.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(6);
    h.set_mode(0o640);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "hello.txt", &b"hello\n"[..])
        .unwrap();
    let archive = tar.into_inner().unwrap();
    client
        .containers()
        .copy_in(tokio_stream::iter(vec![
            v1::CopyInRequest {
                part: Some(v1::copy_in_request::Part::Header(v1::CopyInHeader {
                    id: "sleeper".into(),
                    path: "/tmp".into(),
                })),
            },
            v1::CopyInRequest {
                part: Some(v1::copy_in_request::Part::Data(archive)),
            },
        ]))
        .await
        .unwrap();
    let stat = client
        .containers()
        .stat_path(v1::StatPathRequest {
            id: "sleeper".into(),
            path: "/tmp/hello.txt".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stat
        .unwrap();
    assert_eq!((stat.name.as_str(), stat.size), ("hello.txt", 6));
    assert_eq!(stat.mode & 0o777, 0o640);
    let mut out = client
        .containers()
        .copy_out(v1::CopyOutRequest {
            id: "sleeper".into(),
            path: "/tmp/hello.txt".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut data = Vec::new();
    while let Some(m) = out.next().await {
        if let Some(v1::copy_out_response::Part::Data(d)) = m.unwrap().part {
            data.extend(d);
        }
    }
    let mut a = tar::Archive::new(data.as_slice());
    let mut e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path().unwrap().to_str(), Some("hello.txt"));
    let mut text = String::new();
    std::io::Read::read_to_string(&mut e, &mut text).unwrap();
    assert_eq!(text, "hello\n");
    let e = client
        .containers()
        .stat_path(v1::StatPathRequest {
            id: "sleeper".into(),
            path: "/nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{}", e.message());
    let stats = client
        .containers()
        .stats(v1::StatsRequest {
            ids: vec!["sleeper".into()],
            stream: false,
            interval_ms: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap()
        .stats;
    assert_eq!(stats.len(), 1);
    let usage = stats[0].usage.as_ref().expect("a sample has its counters");
    assert!(
        usage.memory_usage_bytes > 0 && usage.pids >= 1 && usage.memory_limit_bytes == 256 << 20,
        "{:?}",
        stats[0]
    );
    let mut follow = client
        .containers()
        .logs(v1::LogsRequest {
            id: "sleeper".into(),
            follow: true,
            tail: Some(1),
            boot: false,
        })
        .await
        .unwrap()
        .into_inner();
    let first = follow.next().await.unwrap().unwrap();
    assert_eq!(first.data, b"one\n");
    let follower = tokio::spawn(async move {
        let mut rest = 0;
        while let Some(c) = follow.next().await {
            c.unwrap();
            rest += 1;
        }
        rest
    });
    let e = client
        .containers()
        .delete(v1::DeleteContainerRequest {
            id: "sleeper".into(),
            force: false,
            remove_volumes: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let stopped = client
        .containers()
        .stop(v1::StopContainerRequest {
            id: "sleeper".into(),
            signal: 0,
            timeout_seconds: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    let rest = tokio::time::timeout(Duration::from_secs(10), follower)
        .await
        .expect("the log follower did not end with the container")
        .unwrap();
    assert_eq!(rest, 0);
    // sh ignores SIGTERM as PID 1, so the stop ends in SIGKILL.
    assert!(
        stopped.exit_code == 137 || stopped.exit_code == 143,
        "{}",
        stopped.exit_code
    );
    let info = inspect(&client, "sleeper").await;
    assert_eq!(info.state(), v1::ContainerState::Stopped);
    assert_eq!(info.exit_code, stopped.exit_code);
    client
        .containers()
        .delete(v1::DeleteContainerRequest {
            id: "sleeper".into(),
            force: false,
            remove_volumes: false,
        })
        .await
        .unwrap();
    assert!(!root.path().join("containers").join(&id).exists());

    // The named volume outlived its container: a new one reads what the first wrote.
    let mut c = config("reader", &image, &["cat", "/v/f"]);
    c.mounts = vec![v1::Mount {
        target: "/v".into(),
        readonly: true,
        kind: Some(v1::mount::Kind::Volume(v1::VolumeMount {
            name: "vol1".into(),
        })),
    }];
    let id = create(&client, c).await.unwrap();
    let s = client
        .containers()
        .attach(tokio_stream::iter(vec![attach_open(&id)]))
        .await
        .unwrap()
        .into_inner();
    let (out, err, code) = drain(s).await;
    assert_eq!((out.as_str(), code), ("data\n", Some(0)), "stderr: {err}");
    client
        .containers()
        .wait(v1::WaitContainerRequest {
            id: id.clone(),
            condition: v1::WaitCondition::NotRunning as i32,
        })
        .await
        .unwrap();
    let df = client
        .system()
        .disk_usage(v1::DiskUsageRequest {})
        .await
        .unwrap()
        .into_inner();
    let volumes = df.volumes.unwrap();
    assert_eq!((volumes.total, volumes.active), (1, 1));
    assert!(volumes.size_bytes > 0);
    let containers = df.containers.unwrap();
    assert_eq!((containers.total, containers.active), (1, 0));
    assert_eq!(containers.reclaimable_bytes, containers.size_bytes);
    client
        .containers()
        .delete(v1::DeleteContainerRequest {
            id: "reader".into(),
            force: false,
            remove_volumes: true,
        })
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_dir(root.path().join("containers"))
            .unwrap()
            .count(),
        0
    );
    // A named volume is not anonymous: it stays.
    assert!(root.path().join("volumes/vol1/volume.ext4").is_file());
}

#[tokio::test]
async fn on_failure_restarts_up_to_its_limit() {
    let test = "on_failure_restarts_up_to_its_limit";
    let Some((_, images)) = images_env(test) else {
        return;
    };
    if !vm_ready(test) {
        return;
    }
    let root = Root::new();
    let d = Daemon::start(root.path());
    let client = d.client().await;
    let image = load_busybox(&client, &images).await[0].clone();
    let mut c = config("flaky", &image, &["sh", "-c", "echo run; exit 3"]);
    c.restart_policy = Some(v1::RestartPolicy {
        kind: v1::restart_policy::Kind::OnFailure as i32,
        max_retries: 1,
    });
    let id = create(&client, c).await.unwrap();
    client
        .containers()
        .start(v1::StartContainerRequest { id: id.clone() })
        .await
        .unwrap();
    // One run plus one restart, then it stays stopped with the last exit code.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let info = inspect(&client, &id).await;
        let text = logs(&client, &id).await;
        if text == "run\nrun\n" && info.state() == v1::ContainerState::Stopped {
            assert_eq!(info.exit_code, 3);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "state {:?}, logs {text:?}",
            info.state()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(logs(&client, &id).await, "run\nrun\n", "no third run");
    assert_eq!(
        inspect(&client, &id).await.state(),
        v1::ContainerState::Stopped
    );
}

async fn create_pulling(
    client: &api::Client,
    c: v1::ContainerConfig,
    policy: v1::PullPolicy,
    scheme: v1::RegistryScheme,
) -> Result<String, tonic::Status> {
    client
        .containers()
        .create(v1::CreateContainerRequest {
            config: Some(c),
            pull: Some(v1::ImagePull {
                policy: policy as i32,
                scheme: scheme as i32,
                max_concurrent_downloads: 1,
            }),
        })
        .await
        .map(|r| r.into_inner().id)
}

async fn image_digest(client: &api::Client, reference: &str) -> Option<String> {
    client
        .images()
        .inspect(v1::InspectImageRequest {
            reference: reference.into(),
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().image)
        .map(|i| i.digest)
}

async fn set_property(client: &api::Client, key: &str, value: &str) {
    client
        .system()
        .property_set(v1::PropertySetRequest {
            key: key.into(),
            value: value.into(),
        })
        .await
        .unwrap();
}

async fn pull_image(client: &api::Client, reference: &str) {
    let mut s = client
        .images()
        .pull(v1::PullImageRequest {
            reference: reference.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(m) = s.next().await {
        m.unwrap();
    }
}

// The daemon itself honours the pull policy of a create (for every client, not only our
// CLI), with the caller's scheme; registry.domain names the registry of unqualified names.
#[tokio::test]
async fn create_pulls_as_its_policy_says_with_the_callers_scheme() {
    let test = "create_pulls_as_its_policy_says_with_the_callers_scheme";
    let Some((registry, _)) = images_env(test) else {
        return;
    };
    use v1::PullPolicy::{Always, Missing, Never};
    use v1::RegistryScheme::{Auto, Https};
    let root = Root::new();
    let d = Daemon::start(root.path());
    let client = d.client().await;
    set_property(&client, "registry.mirror", &registry).await;

    // never, image absent: NOT_FOUND, one line, nothing pulled.
    let err = create_pulling(&client, config("a", "busybox:1.36", &["true"]), Never, Auto)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        err.message(),
        "image busybox:1.36 not found locally (pull policy never)"
    );
    assert_eq!(image_digest(&client, "busybox:1.36").await, None);

    // missing, with the caller's scheme: https cannot talk to the plain-HTTP registry.
    let err = create_pulling(
        &client,
        config("a", "busybox:1.36", &["true"]),
        Missing,
        Https,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message()
            .starts_with(&format!("cannot reach registry {registry}")),
        "{}",
        err.message()
    );
    assert_eq!(image_digest(&client, "busybox:1.36").await, None);

    // missing, auto: pulled, then created.
    create_pulling(
        &client,
        config("a", "busybox:1.36", &["true"]),
        Missing,
        Auto,
    )
    .await
    .unwrap();
    let upstream = image_digest(&client, "busybox:1.36").await.expect("pulled");
    assert_eq!(inspect(&client, "a").await.image_digest, upstream);

    // Point the local tag at another image: missing keeps it, always pulls the tag back.
    pull_image(&client, "test/multilayer").await;
    let other = image_digest(&client, "test/multilayer").await.unwrap();
    assert_ne!(other, upstream);
    client
        .images()
        .tag(v1::TagImageRequest {
            source: "test/multilayer".into(),
            target: "busybox:1.36".into(),
        })
        .await
        .unwrap();
    create_pulling(
        &client,
        config("b", "busybox:1.36", &["true"]),
        Missing,
        Auto,
    )
    .await
    .unwrap();
    assert_eq!(inspect(&client, "b").await.image_digest, other);
    create_pulling(&client, config("c", "busybox:1.36", &["true"]), Never, Auto)
        .await
        .unwrap();
    assert_eq!(inspect(&client, "c").await.image_digest, other);
    create_pulling(
        &client,
        config("d", "busybox:1.36", &["true"]),
        Always,
        Auto,
    )
    .await
    .unwrap();
    assert_eq!(inspect(&client, "d").await.image_digest, upstream);
    assert_eq!(
        image_digest(&client, "busybox:1.36").await.as_deref(),
        Some(upstream.as_str())
    );

    // An image ID is used as is and never pulled.
    create_pulling(&client, config("e", &other, &["true"]), Always, Auto)
        .await
        .unwrap();
    assert_eq!(inspect(&client, "e").await.image_digest, other);
    let missing = format!("sha256:{}", "0".repeat(64));
    let err = create_pulling(&client, config("f", &missing, &["true"]), Missing, Auto)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // registry.domain: unqualified names belong to that registry, without library/.
    set_property(&client, "registry.domain", &registry).await;
    create_pulling(
        &client,
        config("g", "library/busybox:1.36", &["true"]),
        Missing,
        Auto,
    )
    .await
    .unwrap();
    let g = inspect(&client, "g").await;
    assert_eq!(g.image_digest, upstream);
    let listed: Vec<String> = client
        .images()
        .list(v1::ListImagesRequest { all: false })
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert!(
        listed.contains(&format!("{registry}/library/busybox:1.36")),
        "{listed:?}"
    );
    let tagged = client
        .images()
        .tag(v1::TagImageRequest {
            source: "library/busybox:1.36".into(),
            target: "mine:2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.reference, format!("{registry}/mine:2"));
    // `busybox` alone is now `<registry>/busybox`, which that registry does not have.
    let err = create_pulling(&client, config("h", "busybox", &["true"]), Missing, Auto)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(
        err.message().contains(&format!("{registry}/busybox")),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_runtime_killed_with_sigkill_reads_dead_and_its_container_stops() {
    let test = "a_runtime_killed_with_sigkill_reads_dead_and_its_container_stops";
    let Some((_, images)) = images_env(test) else {
        return;
    };
    if !vm_ready(test) {
        return;
    }
    let root = Root::new();
    let d = Daemon::start(root.path());
    let client = d.client().await;
    let image = load_busybox(&client, &images).await[0].clone();
    let id = create(&client, config("victim", &image, &["sleep", "600"]))
        .await
        .unwrap();
    client
        .containers()
        .start(v1::StartContainerRequest {
            id: "victim".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        inspect(&client, &id).await.state(),
        v1::ContainerState::Running
    );
    let bundle = runtime_api::Bundle::new(root.path().join("containers").join(&id));
    assert!(
        bundle.runtime_alive(),
        "a running container's runtime holds its lock"
    );
    let state = runtime_api::State::load(&bundle.state()).unwrap();
    assert!(!state.vm_pids.is_empty(), "{state:?}");

    // SAFETY: kill(2) on the runtime of the container this test started; no memory involved.
    unsafe { libc::kill(state.runtime_pid as i32, libc::SIGKILL) };

    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let info = inspect(&client, &id).await;
        if info.state() == v1::ContainerState::Stopped {
            break info;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon still shows the container {:?} after its runtime was killed",
            info.state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!bundle.runtime_alive(), "the lock died with the runtime");
    assert_eq!(info.exit_code, 255);
    assert!(
        info.error
            .contains("runtime exited without recording an exit code"),
        "{}",
        info.error
    );
    // The VM's processes go with their runtime (PR_SET_PDEATHSIG), so nothing holds the lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while state
        .vm_pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "VM processes outlived the runtime"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The container starts again from its stopped state.
    client
        .containers()
        .start(v1::StartContainerRequest {
            id: "victim".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        inspect(&client, &id).await.state(),
        v1::ContainerState::Running
    );
    client
        .containers()
        .delete(v1::DeleteContainerRequest {
            id: id.clone(),
            force: true,
            remove_volumes: true,
        })
        .await
        .unwrap();
    assert!(!bundle.dir().exists());
}
