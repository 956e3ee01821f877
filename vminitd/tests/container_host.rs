//! Container processes on this machine, no VM: the agent's process table drives the real
//! setup helper (the built vminitd binary) against a busybox rootfs, with the host's side of
//! stdio played by Unix sockets. Needs root, /bin/busybox and a cgroup v2 hierarchy; each
//! test says why it skips when one is missing, and fails instead under `cargo xtask test`
//! (crates/test-support).
//!
//! What runs here is exactly what runs in the guest (namespaces, pivot_root, default mounts,
//! masked paths, capabilities, seccomp, users, the tiny init); only the transport differs.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use vminitd::process::{Config, CreateRequest, Dialer, Manager};
use vminitd::reaper::Reaper;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "id", "hostname", "stty", "sleep", "ls", "wc", "grep", "head", "touch",
    "true",
];

use test_support::cgroup2_root;

/// Why this machine cannot run these tests, if it cannot.
fn skip_reason() -> Option<String> {
    test_support::missing_root("namespaces, mounts, cgroups")
        .or_else(|| test_support::missing_file("/bin/busybox", "the test rootfs"))
        .or_else(test_support::missing_cgroup2)
}

macro_rules! skip_unless_able {
    () => {
        if let Some(why) = skip_reason() {
            test_support::skip(&why);
            return;
        }
    };
}

struct Host {
    _dir: tempfile::TempDir,
    rootfs: PathBuf,
    socks: PathBuf,
    cgroup_root: PathBuf,
    mgr: Manager,
}

impl Host {
    fn new(name: &str) -> Host {
        // SAFETY: integer-argument prctl: container processes come back to this process when
        // their setup helper exits, as they come back to vminitd (PID 1) in the VM.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "var/www"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\naudio:x:29:www-data\nwww-data:x:33:\n",
        )
        .unwrap();
        std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        // The test build of vminitd is dynamically linked (the guest's is static): give the
        // rootfs its loader and libraries so `--init` can run it inside the container.
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_vminitd"));
        let ldd = std::process::Command::new("ldd")
            .arg(&exe)
            .output()
            .unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dest = rootfs.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, &dest).unwrap();
        }
        let socks = dir.path().join("socks");
        std::fs::create_dir(&socks).unwrap();
        let cgroup_root = cgroup2_root()
            .unwrap()
            .join(format!("vminitd-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&cgroup_root).unwrap();
        let mgr = Manager::new(
            Reaper::start().unwrap(),
            Config {
                self_exe: exe.clone(),
                init_binary: exe,
                cgroup_root: cgroup_root.clone(),
                dialer: Dialer::UnixDir(socks.clone()),
            },
        );
        Host {
            _dir: dir,
            rootfs,
            socks,
            cgroup_root,
            mgr,
        }
    }

    fn listen(&self, port: u32) -> UnixListener {
        let path = self.socks.join(format!("{port}.sock"));
        let _ = std::fs::remove_file(&path);
        UnixListener::bind(path).unwrap()
    }

    /// A Docker-like default spec running `args`.
    fn spec(&self, args: &[&str], extra: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let caps = serde_json::json!([
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE"
        ]);
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024}]
            },
            "root": {"path": self.rootfs, "readonly": false},
            "hostname": "testhost",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}
            ],
            "linux": {}
        });
        extra(&mut v);
        serde_json::to_vec(&v).unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.cgroup_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path().is_dir() {
                let _ = vminitd::cgroup::destroy(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.cgroup_root);
    }
}

fn collect(l: UnixListener) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    })
}

fn req(id: &str, cid: &str, spec: Vec<u8>) -> CreateRequest {
    CreateRequest {
        id: id.into(),
        container_id: cid.into(),
        spec_json: spec,
        ..Default::default()
    }
}

const T: Duration = Duration::from_secs(30);

/// Runs `args` as a container with stdout and stderr attached; returns (code, stdout, stderr).
async fn run(
    h: &Host,
    id: &str,
    spec: Vec<u8>,
    tweak: impl FnOnce(&mut CreateRequest),
) -> (i32, String, String) {
    let out = collect(h.listen(1001));
    let err = collect(h.listen(1002));
    let mut r = req(id, id, spec);
    r.stdout_port = 1001;
    r.stderr_port = 1002;
    tweak(&mut r);
    h.mgr.create(r).await.unwrap();
    h.mgr.start(id).await.unwrap();
    let (code, _) = tokio::time::timeout(T, h.mgr.wait(id))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out.await.unwrap()).to_string();
    let err = String::from_utf8_lossy(&err.await.unwrap()).to_string();
    h.mgr.delete(id).await.unwrap();
    (code, out, err)
}

#[tokio::test]
async fn separate_streams_and_exit_code() {
    skip_unless_able!();
    let h = Host::new("streams");
    let script = "echo hello; echo oops >&2; pwd >&2; echo ${#BIG15} >&2; exit 3";
    let spec = h.spec(&["sh", "-c", script], |v| {
        v["process"]["cwd"] = serde_json::json!("/work/dir");
        // A 1.6 MB environment still fits the launch plan (one string may not exceed the
        // kernel's 128 KiB, so it is sixteen).
        let env = v["process"]["env"].as_array_mut().unwrap();
        for i in 0..16 {
            env.push(serde_json::json!(format!("BIG{i}={}", "x".repeat(100_000))));
        }
    });
    let (code, out, err) = run(&h, "streams", spec, |_| {}).await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (3, "hello\n", "oops\n/work/dir\n100000\n")
    );
}

#[tokio::test]
async fn stdin_megabyte_is_echoed_byte_exact() {
    skip_unless_able!();
    let h = Host::new("stdin");
    let input: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let inl = h.listen(1000);
    let out = collect(h.listen(1001));
    let data = input.clone();
    let feeder = tokio::spawn(async move {
        let (mut s, _) = inl.accept().await.unwrap();
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let mut r = req("stdin", "stdin", h.spec(&["cat"], |_| {}));
    r.stdin_port = 1000;
    r.stdout_port = 1001;
    h.mgr.create(r).await.unwrap();
    h.mgr.start("stdin").await.unwrap();
    feeder.await.unwrap();
    let (code, _) = tokio::time::timeout(T, h.mgr.wait("stdin"))
        .await
        .unwrap()
        .unwrap();
    let got = out.await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(got.len(), input.len());
    assert!(got == input, "echoed bytes differ");
    h.mgr.delete("stdin").await.unwrap();
}

#[tokio::test]
async fn terminal_follows_resize() {
    skip_unless_able!();
    let h = Host::new("tty");
    let inl = h.listen(1000);
    let outl = h.listen(1001);
    let mut r = req(
        "tty",
        "tty",
        h.spec(
            &["sh", "-c", "read a; stty size; read b; stty size"],
            |_| {},
        ),
    );
    r.stdin_port = 1000;
    r.stdout_port = 1001;
    r.terminal = true;
    let mgr = h.mgr.clone();
    let create = tokio::spawn(async move { mgr.create(r).await });
    let (mut input, _) = inl.accept().await.unwrap();
    let (mut output, _) = outl.accept().await.unwrap();
    create.await.unwrap().unwrap();
    h.mgr.start("tty").await.unwrap();
    let mut seen = String::new();
    async fn until(o: &mut UnixStream, seen: &mut String, want: &str) {
        let mut buf = [0u8; 256];
        while !seen.contains(want) {
            let n = tokio::time::timeout(T, o.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "terminal closed before {want:?}; saw {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    h.mgr.resize("tty", 40, 100).unwrap();
    input.write_all(b"\n").await.unwrap();
    until(&mut output, &mut seen, "40 100").await;
    h.mgr.resize("tty", 50, 120).unwrap();
    input.write_all(b"\n").await.unwrap();
    until(&mut output, &mut seen, "50 120").await;
    let (code, _) = tokio::time::timeout(T, h.mgr.wait("tty"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 0);
    h.mgr.delete("tty").await.unwrap();
}

#[tokio::test]
async fn sigterm_reaches_the_process_and_sigkill_reports_137() {
    skip_unless_able!();
    let h = Host::new("signals");
    let outl = h.listen(1001);
    let spec = h.spec(
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done",
        ],
        |_| {},
    );
    let mut r = req("term", "term", spec);
    r.stdout_port = 1001;
    let mgr = h.mgr.clone();
    let create = tokio::spawn(async move { mgr.create(r).await });
    let (mut out, _) = outl.accept().await.unwrap();
    create.await.unwrap().unwrap();
    h.mgr.start("term").await.unwrap();
    let mut buf = [0u8; 6];
    tokio::time::timeout(T, out.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ready\n");
    h.mgr.kill("term", 15, false).unwrap();
    let (code, _) = tokio::time::timeout(T, h.mgr.wait("term"))
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.unwrap();
    assert_eq!((code, rest.as_str()), (42, "got-term\n"));
    h.mgr.delete("term").await.unwrap();

    h.mgr
        .create(req("killed", "killed", h.spec(&["sleep", "100"], |_| {})))
        .await
        .unwrap();
    h.mgr.start("killed").await.unwrap();
    h.mgr.kill("killed", 9, false).unwrap();
    let (code, _) = tokio::time::timeout(T, h.mgr.wait("killed"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 137);
    h.mgr.delete("killed").await.unwrap();
}

#[tokio::test]
async fn user_is_resolved_in_the_container() {
    skip_unless_able!();
    let h = Host::new("user");
    let spec = h.spec(&["sh", "-c", "id -u; id -g; id -G; echo $HOME"], |_| {});
    let (code, out, err) = run(&h, "user", spec, |r| r.user = "www-data".into()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "33\n33\n33 29\n/var/www\n");
    let spec = h.spec(&["sh", "-c", "id -u; id -g"], |_| {});
    let (_, out, _) = run(&h, "user2", spec, |r| r.user = "1234:5678".into()).await;
    assert_eq!(out, "1234\n5678\n");
    let mut r = req("nouser", "nouser", h.spec(&["true"], |_| {}));
    r.user = "alice".into();
    let e = h.mgr.create(r).await.unwrap_err();
    assert!(e.to_string().contains("unable to find user alice"), "{e}");
}

#[tokio::test]
async fn default_capabilities_and_seccomp() {
    skip_unless_able!();
    let h = Host::new("status");
    let spec = h.spec(
        &[
            "sh",
            "-c",
            "grep -E '^(CapEff|CapBnd|CapPrm|Seccomp|NoNewPrivs):' /proc/self/status",
        ],
        |_| {},
    );
    let (code, out, err) = run(&h, "status", spec, |_| {}).await;
    assert_eq!(code, 0, "{err}");
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("CapEff:"), "00000000a80425fb");
    assert_eq!(field("CapBnd:"), "00000000a80425fb");
    assert_eq!(field("CapPrm:"), "00000000a80425fb");
    assert_eq!(field("Seccomp:"), "2");
    assert_eq!(field("NoNewPrivs:"), "0");
}

#[tokio::test]
async fn masked_and_readonly_paths_hostname_and_readonly_root() {
    skip_unless_able!();
    let h = Host::new("paths");
    // /proc/kcore is masked too, but neither this machine's kernel nor the guest's has one.
    let script = "cat /proc/timer_list /proc/keys | wc -c; echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable; hostname; touch /rootfile 2>/dev/null && echo root-writable; touch /tmp/x 2>/dev/null || echo tmp-readonly; ls /sys/firmware | wc -l; stat -c %A:%g:%t,%T /dev/extra/null2";
    let spec = h.spec(&["sh", "-c", script], |v| {
        v["root"]["readonly"] = serde_json::json!(true);
        v["hostname"] = serde_json::json!("web-1");
        v["linux"]["devices"] = serde_json::json!([{"path": "/dev/extra/null2", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 0, "gid": 33}]);
    });
    let (code, out, err) = run(&h, "paths", spec, |_| {}).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "0\nweb-1\ntmp-readonly\n0\ncrw-r-----:33:1,3\n");
    assert!(!h.rootfs.join("rootfile").exists());
}

#[tokio::test]
async fn exec_joins_the_container_and_init_wraps_the_program() {
    skip_unless_able!();
    let h = Host::new("exec");
    let spec = h.spec(&["sleep", "100"], |_| {});
    h.mgr.create(req("c1", "c1", spec.clone())).await.unwrap();
    h.mgr.start("c1").await.unwrap();
    let out = collect(h.listen(1011));
    let mut e = req(
        "e1",
        "c1",
        h.spec(
            &["sh", "-c", "hostname; cat /proc/1/cmdline; echo; echo $$"],
            |_| {},
        ),
    );
    e.stdout_port = 1011;
    h.mgr.create(e).await.unwrap();
    h.mgr.start("e1").await.unwrap();
    let (code, _) = tokio::time::timeout(T, h.mgr.wait("e1"))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out.await.unwrap()).to_string();
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "testhost");
    assert_eq!(lines[1], "sleep\u{0}100\u{0}");
    assert_ne!(lines[2], "1", "the exec is not the container's pid 1");
    h.mgr.delete("e1").await.unwrap();
    h.mgr.kill("c1", 9, true).unwrap();
    assert_eq!(
        tokio::time::timeout(T, h.mgr.wait("c1"))
            .await
            .unwrap()
            .unwrap()
            .0,
        137
    );
    let late = h
        .mgr
        .create(req("e2", "c1", h.spec(&["true"], |_| {})))
        .await
        .unwrap_err();
    assert_eq!(late.to_string(), "container c1 is not running");
    h.mgr.delete("c1").await.unwrap();

    let spec = h.spec(&["sh", "-c", "echo $$; cat /proc/1/cmdline"], |_| {});
    let (code, out, err) = run(&h, "withinit", spec, |r| r.init = true).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "2\n/dev/vminitd-init\u{0}--\u{0}sh\u{0}-c\u{0}echo $$; cat /proc/1/cmdline\u{0}"
    );
}

#[tokio::test]
async fn missing_program_fails_start_with_127() {
    skip_unless_able!();
    let h = Host::new("missing");
    h.mgr
        .create(req("nope", "nope", h.spec(&["no-such-program"], |_| {})))
        .await
        .unwrap();
    let e = h.mgr.start("nope").await.unwrap_err();
    assert!(e.to_string().contains("executable file not found"), "{e}");
    assert_eq!(
        tokio::time::timeout(T, h.mgr.wait("nope"))
            .await
            .unwrap()
            .unwrap()
            .0,
        127
    );
    h.mgr.delete("nope").await.unwrap();
    let spec = h.spec(&["true"], |v| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]}));
    });
    let e = h
        .mgr
        .create(req("badmount", "badmount", spec))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "container setup failed: bind source /no/such/dir: No such file or directory (os error 2)"
    );
}

#[tokio::test]
async fn close_stdin_ends_the_input_while_the_host_stream_stays_open() {
    skip_unless_able!();
    let h = Host::new("closestdin");
    let inl = h.listen(1000);
    let outl = h.listen(1001);
    let mut r = req("cs", "cs", h.spec(&["sh", "-c", "cat; echo done"], |_| {}));
    r.stdin_port = 1000;
    r.stdout_port = 1001;
    let mgr = h.mgr.clone();
    let create = tokio::spawn(async move { mgr.create(r).await });
    let (mut input, _) = inl.accept().await.unwrap();
    let (mut output, _) = outl.accept().await.unwrap();
    create.await.unwrap().unwrap();
    h.mgr.start("cs").await.unwrap();
    input.write_all(b"abc\n").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(T, output.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"abc\n");
    h.mgr.close_stdin("cs").unwrap();
    let mut rest = String::new();
    tokio::time::timeout(T, output.read_to_string(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, "done\n");
    assert_eq!(
        tokio::time::timeout(T, h.mgr.wait("cs"))
            .await
            .unwrap()
            .unwrap()
            .0,
        0
    );
    drop(input);
    h.mgr.delete("cs").await.unwrap();
}

#[tokio::test]
async fn the_tiny_init_forwards_signals_and_reaps_orphans() {
    skip_unless_able!();
    let h = Host::new("tinyinit");
    let outl = h.listen(1001);
    // The backgrounded sleep is orphaned to pid 1 (the tiny init) when its shell exits.
    let script = "sh -c 'sleep 0.2 &'; trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done";
    let mut r = req("ti", "ti", h.spec(&["sh", "-c", script], |_| {}));
    r.stdout_port = 1001;
    r.init = true;
    let mgr = h.mgr.clone();
    let create = tokio::spawn(async move { mgr.create(r).await });
    let (mut out, _) = outl.accept().await.unwrap();
    create.await.unwrap().unwrap();
    let init = h.mgr.start("ti").await.unwrap();
    let mut buf = [0u8; 6];
    tokio::time::timeout(T, out.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ready\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The tiny init's children, zombies included (a reaped child is no longer listed).
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap();
    let zombies = children
        .split_whitespace()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter(|stat| stat.contains(") Z "))
        .count();
    assert_eq!(
        children.split_whitespace().count(),
        1,
        "only the shell: {children}"
    );
    assert_eq!(zombies, 0, "the orphaned sleep was reaped");
    h.mgr.kill("ti", 15, false).unwrap();
    let (code, _) = tokio::time::timeout(T, h.mgr.wait("ti"))
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.unwrap();
    assert_eq!((code, rest.as_str()), (42, "got-term\n"));
    h.mgr.delete("ti").await.unwrap();
}

#[tokio::test]
async fn no_new_privileges_for_a_non_root_user_keeps_seccomp() {
    skip_unless_able!();
    let h = Host::new("nnp");
    let script = "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status";
    let spec = h.spec(&["sh", "-c", script], |v| {
        v["process"]["noNewPrivileges"] = serde_json::json!(true);
    });
    let (code, out, err) = run(&h, "nnp", spec, |r| r.user = "www-data".into()).await;
    assert_eq!(code, 0, "{err}");
    // The kernel clears a non-root user's effective set at exec, as under Docker.
    assert_eq!(
        out,
        "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n"
    );
}
