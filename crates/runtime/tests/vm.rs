//! The real `container-runtime` binary running busybox containers in real VMs (QEMU, TCG
//! here): output in stdio.log, exit codes in state.json, stdin through attach, exec, stop,
//! a killed client, and nothing left running afterwards.
//!
//! Needs the guest artifacts (see vmm_qemu::testing) and the busybox test image
//! (`$CONTAINER_TEST_IMAGES/oci/busybox`, made by `cargo xtask images`). Without them the
//! tests say why and skip, unless CONTAINER_REQUIRE_VM=1, where they fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runtime_api::client::{Output, RuntimeClient, StdioEvent, StdioInput};
use runtime_api::config::{Dns, RuntimeConfig, WritableLayer};
use runtime_api::pb::ExecStart;
use runtime_api::state::{State, Status};
use runtime_api::stdio_log::{Stream, read_entries};
use vmm_qemu::testing;

/// Set by this file when it re-runs itself as a separate client process.
const CLIENT_SOCKET_ENV: &str = "RUNTIME_TEST_CLIENT_SOCKET";

/// The busybox image's layers (gzip tars), or `None` after saying why the test skips.
fn busybox_layers(test: &str) -> Option<Vec<PathBuf>> {
    let images = match std::env::var_os("CONTAINER_TEST_IMAGES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let why = "CONTAINER_TEST_IMAGES is unset (run `cargo xtask images` and export it)";
            test_support::skip(&format!("{test}: {why}"));
            return None;
        }
    };
    let layout = images.join("oci/busybox");
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    Some(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| blob(l["digest"].as_str().unwrap()))
            .collect(),
    )
}

/// One test's container: its bundle dir (holding the images too) and config.
struct Fixture {
    dir: tempfile::TempDir,
    config: RuntimeConfig,
}

impl Fixture {
    /// A busybox container running `args`; `None` when the test must skip.
    fn new(test: &str, args: &[&str]) -> Option<Fixture> {
        let artifacts = testing::guest_artifacts_or_skip(test)?;
        let layers = busybox_layers(test)?;
        let dir = tempfile::Builder::new()
            .prefix("rt")
            .tempdir_in("/tmp")
            .unwrap();
        let rootfs = dir.path().join("busybox.ext4");
        let mut builder = ext4::Ext4Builder::new(&rootfs, ext4::Options::default()).unwrap();
        for layer in layers {
            let gz = std::fs::File::open(layer).unwrap();
            builder
                .apply_layer(flate2::read::GzDecoder::new(gz))
                .unwrap();
        }
        builder.finish().unwrap();
        let spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/"
            }
        }))
        .unwrap();
        let config = RuntimeConfig {
            id: "c1".into(),
            hostname: "box-under-test".into(),
            rootfs,
            writable_layer: WritableLayer {
                path: dir.path().join("rw.ext4"),
                size_bytes: 64 << 20,
                // As the daemon does: the layer is cloned from a template.
                template_dir: Some(dir.path().join("templates")),
            },
            spec,
            user: None,
            init: false,
            terminal: false,
            stdin_open: false,
            cpus: 1,
            memory_bytes: 256 << 20,
            kernel: artifacts.kernel,
            initramfs: artifacts.initrd,
            arch: artifacts.arch,
            rosetta: false,
            kernel_args: vec![],
            read_only: false,
            tmpfs: vec![],
            shm_size_bytes: None,
            stop_signal: None,
            stop_timeout_secs: 10,
            dns: Dns::default(),
            extra_hosts: vec![],
            networks: vec![],
            published_ports: vec![],
            volumes: vec![],
            labels: Default::default(),
            published_sockets: vec![],
            discard_on_exit: false,
        };
        Some(Fixture { dir, config })
    }

    fn bundle(&self) -> runtime_api::Bundle {
        runtime_api::Bundle::new(self.dir.path())
    }

    /// Writes config.json and spawns the runtime in its own session, as the daemon does.
    fn spawn(&self) -> Runtime {
        self.config.save(&self.bundle().config()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_container-runtime"));
        cmd.arg("--bundle")
            .arg(self.dir.path())
            .arg("--linger-secs")
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        Runtime {
            child: cmd.spawn().unwrap(),
            bundle: self.bundle(),
        }
    }

    fn state(&self) -> State {
        State::load(&self.bundle().state()).unwrap()
    }

    fn stdio(&self, stream: Stream) -> String {
        read_entries(&self.bundle().stdio_log())
            .unwrap()
            .into_iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.log)
            .collect()
    }
}

/// A spawned runtime process; killed if the test fails half-way.
struct Runtime {
    child: Child,
    bundle: runtime_api::Bundle,
}

impl Runtime {
    /// Connects once the socket answers (the VM boots first).
    async fn client(&mut self) -> RuntimeClient {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(c) =
                RuntimeClient::connect(&self.bundle.socket(), Duration::from_secs(2)).await
            {
                return c;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the runtime exited ({status}) before serving: state {:?}; log:\n{}\nboot:\n{}",
                    std::fs::read_to_string(self.bundle.state()).unwrap_or_default(),
                    std::fs::read_to_string(self.bundle.runtime_log()).unwrap_or_default(),
                    testing::console_tail(&self.bundle.boot_log()),
                );
            }
            assert!(
                Instant::now() < deadline,
                "the runtime never served its socket"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the runtime to exit on its own and checks it left nothing behind.
    async fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the runtime did not exit after its container ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(status.success(), "runtime exited with {status}: {stderr}");
        assert!(!self.bundle.socket().exists(), "runtime.sock left behind");
        assert_eq!(
            leftovers(self.bundle.dir()),
            Vec::<String>::new(),
            "processes left behind"
        );
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.kill();
            let _ = self.child.wait();
            for pid in leftover_pids(self.bundle.dir()) {
                // SAFETY: killing a process that runs this test's VM (found by its bundle path).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Processes whose command line mentions `dir` (the runtime, QEMU and its helpers all do).
fn leftover_pids(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    // Give the reaping a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !leftover_pids(dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    leftover_pids(dir)
        .into_iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_hi_lands_in_stdio_log_with_exit_code_zero() {
    let Some(f) = Fixture::new(
        "echo_hi_lands_in_stdio_log_with_exit_code_zero",
        &["echo", "hi"],
    ) else {
        return;
    };
    let mut rt = f.spawn();
    let client = rt.client().await;
    let state = client.state().await.unwrap();
    assert_eq!(state.status, runtime_api::pb::Status::Created as i32);
    let created = f.state();
    assert_eq!(created.status, Status::Created);
    assert_eq!(
        created.vm_pids.len(),
        2,
        "qemu and vhost-device-vsock: {created:?}"
    );
    for pid in &created.vm_pids {
        assert!(Path::new(&format!("/proc/{pid}")).exists());
    }
    assert!(
        f.config.writable_layer.path.is_file(),
        "the writable layer was not created"
    );

    let mut attach = client.attach().await.unwrap();
    client.start().await.unwrap();
    let mut out = Vec::new();
    let mut code = None;
    while let Some(e) = attach.next().await.unwrap() {
        match e {
            StdioEvent::Output(Output::Stdout(d)) => out.extend(d),
            StdioEvent::Output(Output::ExitCode(c)) => code = Some(c),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "hi\n");
    assert_eq!(code, Some(0));
    let waited = client.wait().await.unwrap();
    assert_eq!(waited.exit_code, 0);
    assert_eq!(waited.error, "");
    rt.finish().await;

    assert_eq!(f.stdio(Stream::Stdout), "hi\n");
    let state = f.state();
    assert_eq!(state.status, Status::Stopped);
    assert_eq!(state.exit_code, Some(0));
    assert!(state.init_pid.is_some());
    assert!(state.vm_pids.is_empty(), "{state:?}");
    assert!(state.started_at.is_some() && state.finished_at.is_some());
    assert!(
        f.bundle().boot_log().metadata().unwrap().len() > 0,
        "boot.log is empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_and_stderr_are_recorded() {
    let Some(mut f) = Fixture::new(
        "exit_code_and_stderr_are_recorded",
        &[
            "sh",
            "-c",
            "touch /new-file 2>/dev/null || echo oops >&2; echo ok > /scratch/f && cat /scratch/f; exit 7",
        ],
    ) else {
        return;
    };
    // A read-only root with a tmpfs to write to.
    f.config.read_only = true;
    f.config.tmpfs = vec![runtime_api::config::TmpfsMount {
        destination: "/scratch".into(),
        options: vec!["size=1m".into()],
    }];
    let mut rt = f.spawn();
    let client = rt.client().await;
    client.start().await.unwrap();
    assert_eq!(client.wait().await.unwrap().exit_code, 7);
    rt.finish().await;
    assert_eq!(f.state().exit_code, Some(7));
    assert_eq!(f.stdio(Stream::Stderr), "oops\n");
    assert_eq!(f.stdio(Stream::Stdout), "ok\n");
    let line = std::fs::read_to_string(f.bundle().stdio_log()).unwrap();
    let entry: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(entry["stream"], "stderr");
    // RFC 3339 with nanoseconds.
    let time = entry["time"].as_str().unwrap();
    assert_eq!(time.len(), 30, "{time}");
    assert!(time.ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_stdin_exec_and_a_killed_client() {
    let Some(mut f) = Fixture::new("attach_stdin_exec_and_a_killed_client", &["cat"]) else {
        return;
    };
    f.config.stdin_open = true;
    // A volume, and a NIC on QEMU's user-mode network restricted to the VM (no traffic
    // leaves it): its address lands in /etc/hosts, its gateway in /etc/resolv.conf.
    let volume = f.dir.path().join("vol.ext4");
    ext4::format_empty(&volume, 32 << 20, &ext4::Options::default()).unwrap();
    let shared = f.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("from-host"), "host bytes\n").unwrap();
    f.config.volumes = vec![
        runtime_api::config::VolumeMount {
            path: volume,
            destination: "/data".into(),
            read_only: false,
            kind: runtime_api::config::VolumeKind::Block,
        },
        runtime_api::config::VolumeMount {
            path: shared.clone(),
            destination: "/host".into(),
            read_only: false,
            kind: runtime_api::config::VolumeKind::Directory,
        },
    ];
    f.config.networks = vec![runtime_api::config::NetworkAttachment {
        mac: "02:42:ac:11:00:02".into(),
        attachment: vmm::NicAttachment::User {
            forwards: vec![],
            isolated: true,
        },
        address: Some("10.0.2.15/24".into()),
        gateway: Some("10.0.2.2".into()),
        mtu: None,
    }];
    f.config.dns.search = vec!["example.test".into()];
    let mut rt = f.spawn();
    let client = rt.client().await;
    let mut attach = client.attach().await.unwrap();
    client.start().await.unwrap();

    // Another client, in its own process, attaches and is killed with SIGKILL.
    let mut other = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "separate_client_process", "--nocapture"])
        .env(CLIENT_SOCKET_ENV, f.bundle().socket())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // libtest prints its own lines first; wait for the marker.
    let mut seen = Vec::new();
    let mut stdout = other.stdout.take().unwrap();
    while !seen.ends_with(b"attached") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stdout.read(&mut byte).unwrap(),
            1,
            "the client process ended: {seen:?}"
        );
        seen.push(byte[0]);
    }
    other.kill().unwrap();
    other.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client.state().await.unwrap().status,
        runtime_api::pb::Status::Running as i32,
        "killing a client stopped the container"
    );

    // Stdin round-trips through cat.
    attach
        .input
        .send(StdioInput::stdin(b"ping\n"))
        .await
        .unwrap();
    let mut echoed = Vec::new();
    while echoed != b"ping\n" {
        match tokio::time::timeout(Duration::from_secs(20), attach.next()).await {
            Ok(Ok(Some(StdioEvent::Output(Output::Stdout(d))))) => echoed.extend(d),
            other => panic!("waiting for the echo: {other:?} after {echoed:?}"),
        }
    }

    // exec sees the container's hostname.
    let exec = client
        .exec(ExecStart {
            args: vec!["cat".into(), "/etc/hostname".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let (out, err, code) = exec.collect().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        "box-under-test\n",
        "stderr: {}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(code, Some(0));
    // The network and DNS files as Docker writes them.
    let exec = client
        .exec(ExecStart {
            args: vec![
                "sh".into(),
                "-c".into(),
                "cat /etc/hosts /etc/resolv.conf; ip -o -4 addr show eth0; grep CapBnd /proc/self/status".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let (out, err, code) = exec.collect().await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, Some(0), "{out}{}", String::from_utf8_lossy(&err));
    assert!(out.starts_with("127.0.0.1\tlocalhost\n"), "{out}");
    assert!(
        out.contains("ff02::2\tip6-allrouters\n10.0.2.15\tbox-under-test\n"),
        "{out}"
    );
    assert!(out.contains("nameserver 10.0.2.2\n"), "{out}");
    assert!(out.contains("search example.test\n"), "{out}");
    assert!(out.contains("inet 10.0.2.15/24"), "{out}");
    // Docker's 14 default capabilities, not all of them.
    assert!(out.contains("CapBnd:\t00000000a80425fb"), "{out}");

    // A host directory is shared both ways.
    let exec = client
        .exec(ExecStart {
            args: vec![
                "sh".into(),
                "-c".into(),
                "cat /host/from-host; echo guest bytes > /host/from-guest".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exec.collect().await.unwrap().0, b"host bytes\n");
    assert_eq!(
        std::fs::read_to_string(shared.join("from-guest")).unwrap(),
        "guest bytes\n"
    );

    // The user is resolved in the container's /etc/passwd.
    let exec = client
        .exec(ExecStart {
            args: vec!["id".into(), "-un".into()],
            user: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exec.collect().await.unwrap().0, b"nobody\n");
    // A missing program is Docker's 127.
    let missing = client
        .exec(ExecStart {
            args: vec!["no-such-program".into()],
            ..Default::default()
        })
        .await;
    match missing {
        Err(e) => assert!(e.to_string().contains("no-such-program"), "{e}"),
        Ok(s) => assert_eq!(s.collect().await.unwrap().2, Some(127)),
    }

    // A terminal exec: stdin is a tty and output comes merged on stdout.
    let tty = client
        .exec(ExecStart {
            args: vec![
                "sh".into(),
                "-c".into(),
                "test -t 0 && echo is-a-tty; echo to-stderr >&2".into(),
            ],
            terminal: true,
            size: Some(wire::v1::TerminalSize { rows: 24, cols: 80 }),
            ..Default::default()
        })
        .await
        .unwrap();
    let (out, err, code) = tty.collect().await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("is-a-tty") && out.contains("to-stderr"),
        "{out:?}"
    );
    assert!(err.is_empty());
    assert_eq!(code, Some(0));

    // Files go in and out as tar streams.
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    archive
        .append_data(&mut header, "copied-in.txt", &b"hello\n"[..])
        .unwrap();
    let bytes = archive.into_inner().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(bytes.clone()).await.unwrap();
    drop(tx);
    client.copy_in("/tmp", rx).await.unwrap();
    let exec = client
        .exec(ExecStart {
            args: vec!["cat".into(), "/tmp/copied-in.txt".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exec.collect().await.unwrap().0, b"hello\n");
    let mut chunks = client.copy_out("/etc/hostname").await.unwrap();
    let mut tarball = Vec::new();
    while let Some(c) = chunks.message().await.unwrap() {
        tarball.extend(c.data);
    }
    let mut archive = tar::Archive::new(&tarball[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some("hostname"));
    let mut content = String::new();
    entry.read_to_string(&mut content).unwrap();
    assert_eq!(content, "box-under-test\n");
    // Into a volume too.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(bytes.clone()).await.unwrap();
    drop(tx);
    client.copy_in("/data", rx).await.unwrap();
    let exec = client
        .exec(ExecStart {
            args: vec![
                "sh".into(),
                "-c".into(),
                "cat /data/copied-in.txt; grep ' /data ' /proc/mounts | cut -d' ' -f3".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exec.collect().await.unwrap().0, b"hello\next4\n");
    let err = client.copy_out("relative/path").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");

    let stats = client.stats().await.unwrap();
    assert_eq!(stats.memory_limit_bytes, 256 << 20);
    assert!(stats.memory_usage_bytes > 0 && stats.pids >= 1, "{stats:?}");

    // Closing stdin ends cat with 0.
    attach.input.send(StdioInput::close_stdin()).await.unwrap();
    let mut code = None;
    while let Some(e) = attach.next().await.unwrap() {
        if let StdioEvent::Output(Output::ExitCode(c)) = e {
            code = Some(c);
        }
    }
    assert_eq!(code, Some(0));
    rt.finish().await;
    assert_eq!(f.stdio(Stream::Stdout), "ping\n");
    assert_eq!(f.state().exit_code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_a_sleeping_container_within_its_timeout() {
    let Some(f) = Fixture::new(
        "stop_ends_a_sleeping_container_within_its_timeout",
        &["sleep", "1000"],
    ) else {
        return;
    };
    let mut rt = f.spawn();
    let client = rt.client().await;
    client.start().await.unwrap();
    assert_eq!(f.state().status, Status::Running);
    let timeout = Duration::from_secs(3);
    let begun = Instant::now();
    let code = client.stop(None, Some(timeout)).await.unwrap();
    let took = begun.elapsed();
    assert!(code == 137 || code == 143, "exit code {code}");
    assert!(
        took < timeout + Duration::from_secs(5),
        "stop took {took:?}"
    );
    assert_eq!(client.wait().await.unwrap().exit_code, code);
    rt.finish().await;
    let state = f.state();
    assert_eq!(state.status, Status::Stopped);
    assert_eq!(state.exit_code, Some(code));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_runtime_stops_its_container() {
    let Some(mut f) = Fixture::new(
        "sigterm_to_the_runtime_stops_its_container",
        &["sleep", "1000"],
    ) else {
        return;
    };
    f.config.stop_timeout_secs = 1;
    let mut rt = f.spawn();
    let client = rt.client().await;
    client.start().await.unwrap();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(rt.child.id() as i32, libc::SIGTERM) };
    let waited = client.wait().await.unwrap();
    assert!(
        waited.exit_code == 137 || waited.exit_code == 143,
        "{waited:?}"
    );
    rt.finish().await;
    assert_eq!(f.state().status, Status::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_is_recorded_as_127() {
    let Some(f) = Fixture::new(
        "a_missing_program_is_recorded_as_127",
        &["/no/such/program"],
    ) else {
        return;
    };
    let mut rt = f.spawn();
    let client = rt.client().await;
    let err = client.start().await.unwrap_err();
    assert!(err.to_string().contains("/no/such/program"), "{err}");
    let waited = client.wait().await.unwrap();
    assert_eq!(waited.exit_code, 127);
    rt.finish().await;
    let state = f.state();
    assert_eq!(state.exit_code, Some(127));
    let error = state.error.unwrap();
    assert!(
        error.contains("/no/such/program") && !error.contains('\n'),
        "{error}"
    );
}

/// Not a test of its own: `attach_stdin_exec_and_a_killed_client` runs this binary again
/// with the socket in the environment, to have a client in a separate process it can
/// SIGKILL. Run directly, it checks that a missing runtime is reported clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_client_process() {
    match std::env::var_os(CLIENT_SOCKET_ENV) {
        Some(socket) => {
            let client = RuntimeClient::connect(Path::new(&socket), Duration::from_secs(10))
                .await
                .unwrap();
            let mut attach = client.attach().await.unwrap();
            use std::io::Write;
            std::io::stdout().write_all(b"attached").unwrap();
            std::io::stdout().flush().unwrap();
            while attach.next().await.unwrap().is_some() {}
        }
        None => {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("runtime.sock");
            let err = RuntimeClient::connect(&socket, Duration::from_secs(2))
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "cannot reach the container runtime at {}",
                    socket.display()
                )),
                "{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_recorded_and_boots_nothing() {
    let dir = tempfile::Builder::new()
        .prefix("rt")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        br#"{"id":"c1","colour":"blue"}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_container-runtime"))
        .arg("--bundle")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let state = State::load(&dir.path().join("state.json")).unwrap();
    assert_eq!(state.status, Status::Stopped);
    assert_eq!(state.exit_code, Some(125));
    let error = state.error.unwrap();
    assert!(
        error.contains("config.json") && error.contains("unknown field `colour`"),
        "{error}"
    );
    assert!(!dir.path().join("runtime.sock").exists());
}

#[test]
fn a_bundle_too_long_for_its_socket_is_refused_before_booting() {
    let base = tempfile::Builder::new()
        .prefix("rt")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = base.path().join("d".repeat(100));
    std::fs::create_dir(&dir).unwrap();
    for f in ["rootfs.ext4", "vmlinux", "initramfs.cpio"] {
        std::fs::write(dir.join(f), b"not booted").unwrap();
    }
    let config = serde_json::json!({
        "id": "c1", "hostname": "c1",
        "rootfs": dir.join("rootfs.ext4"),
        "writable_layer": {"path": dir.join("rw.ext4"), "size_bytes": 64u64 << 20},
        "spec": {"ociVersion": "1.0.2",
                 "process": {"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"}},
        "cpus": 1, "memory_bytes": 256u64 << 20,
        "kernel": dir.join("vmlinux"), "initramfs": dir.join("initramfs.cpio")
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_container-runtime"))
        .arg("--bundle")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let state = State::load(&dir.join("state.json")).unwrap();
    assert_eq!(state.exit_code, Some(125));
    assert!(
        state
            .error
            .unwrap()
            .contains("too long for its runtime.sock")
    );
    assert!(
        !dir.join("rw.ext4").exists(),
        "the writable layer was created anyway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_share_one_read_only_image() {
    let test = "two_containers_share_one_read_only_image";
    let Some(first) = Fixture::new(test, &["sh", "-c", "echo one > /mine; cat /mine"]) else {
        return;
    };
    // The second container boots from the first one's image file, at the same time.
    let Some(mut second) = Fixture::new(test, &["sh", "-c", "cat /mine 2>/dev/null; echo two"])
    else {
        return;
    };
    second.config.id = "c2".into();
    second.config.rootfs = first.config.rootfs.clone();
    let image_before = std::fs::read(&first.config.rootfs).unwrap();
    let mut a = first.spawn();
    let mut b = second.spawn();
    let (ca, cb) = tokio::join!(a.client(), b.client());
    ca.start().await.unwrap();
    cb.start().await.unwrap();
    let (wa, wb) = tokio::join!(ca.wait(), cb.wait());
    assert_eq!((wa.unwrap().exit_code, wb.unwrap().exit_code), (0, 0));
    a.finish().await;
    b.finish().await;
    // Each wrote only its own layer; the shared image is untouched.
    assert_eq!(first.stdio(Stream::Stdout), "one\n");
    assert_eq!(second.stdio(Stream::Stdout), "two\n");
    assert!(
        std::fs::read(&first.config.rootfs).unwrap() == image_before,
        "the image changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_terminal_takes_input_and_resizes() {
    let Some(mut f) = Fixture::new("an_interactive_terminal_takes_input_and_resizes", &["sh"])
    else {
        return;
    };
    f.config.terminal = true;
    f.config.stdin_open = true;
    let mut rt = f.spawn();
    let client = rt.client().await;
    let mut attach = client.attach().await.unwrap();
    client.start().await.unwrap();
    attach
        .input
        .send(StdioInput::resize(30, 100))
        .await
        .unwrap();
    // Let the resize land before the shell reads the command.
    tokio::time::sleep(Duration::from_millis(300)).await;
    attach
        .input
        .send(StdioInput::stdin(b"stty size; exit 3\n"))
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut code = None;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), attach.next()).await {
            Ok(Ok(Some(StdioEvent::Output(Output::Stdout(d))))) => out.extend(d),
            Ok(Ok(Some(StdioEvent::Output(Output::ExitCode(c))))) => code = Some(c),
            Ok(Ok(None)) => break,
            other => panic!("{other:?} after {:?}", String::from_utf8_lossy(&out)),
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert_eq!(code, Some(3), "{out}");
    // A terminal echoes input and ends lines with CR LF.
    assert!(out.contains("30 100\r\n"), "{out:?}");
    rt.finish().await;
    assert!(f.stdio(Stream::Stdout).contains("30 100"));
    assert_eq!(f.stdio(Stream::Stderr), "");
}
