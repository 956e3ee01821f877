//! vminitd's container processes in a real VM (QEMU): a busybox rootfs on a virtio disk found
//! by its serial, stdio over host vsock ports the guest dials, terminals, signals, users and
//! the default sandbox (capabilities, seccomp, masked paths, hostname). Every test runs on
//! both guests, x86_64 and arm64 (`<test>::x86_64`, `<test>::aarch64`; the foreign one
//! under TCG), each with Debian's busybox-static of its architecture. Skips (saying why)
//! without guest artifacts or the foreign busybox unless CONTAINER_REQUIRE_VM=1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agent::v1::{
    CreateProcessRequest, KillProcessRequest, MountRequest, ProcessRef, ResizeProcessRequest,
    StdioPorts,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use vmm::{Arch, DiskConfig, VirtualMachine, VmExit};
use vmm_qemu::testing::{self, TestVm, TestVmOptions};

const ROOTFS: &str = "/run/container/rootfs";
const T: Duration = Duration::from_secs(60);
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "id", "hostname", "stty", "sleep", "grep", "wc", "stat", "true", "unshare",
];

/// Debian's busybox-static for `arch`: the host's own `/bin/busybox`, or the other
/// architecture's from the test images (`$CONTAINER_TEST_IMAGES/bin/busybox-<arch>`, made by
/// `cargo xtask images`, else the image cache's `current`). `None` when the test must skip.
fn busybox_for(arch: Arch, test: &str) -> Option<PathBuf> {
    if arch == Arch::host() {
        return Some(PathBuf::from("/bin/busybox"));
    }
    let name = match arch {
        Arch::X86_64 => "busybox-amd64",
        Arch::Aarch64 => "busybox-arm64",
    };
    let images = std::env::var_os("CONTAINER_TEST_IMAGES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/container-dev/images/current"))
        })?;
    let path = images.join("bin").join(name);
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "{} is missing (`cargo xtask images` makes it)",
        path.display()
    );
    if std::env::var("CONTAINER_REQUIRE_VM").as_deref() == Ok("1") {
        panic!("{test}: {why}, and CONTAINER_REQUIRE_VM=1 forbids skipping");
    }
    eprintln!("skipping {test}: {why}");
    None
}

/// An ext4 image of a small busybox rootfs (`busybox`, of the guest's architecture) with a
/// passwd and group file.
fn busybox_rootfs(dir: &Path, busybox: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
    let image = dir.join("rootfs.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .arg(&image)
        .arg("32M")
        .status()
        .unwrap();
    assert!(status.success(), "mkfs.ext4 failed");
    image
}

/// Boots a VM of `arch` with the busybox rootfs mounted at ROOTFS; `None` when the test
/// must skip.
async fn boot(arch: Arch, test: &str) -> Option<TestVm> {
    let artifacts = testing::guest_artifacts_or_skip_for(arch, test)?;
    let busybox = busybox_for(arch, test)?;
    let dir = testing::new_temp_dir();
    let image = busybox_rootfs(dir.path(), &busybox);
    let options = TestVmOptions {
        disks: vec![DiskConfig {
            id: "rootfs".into(),
            path: image,
            read_only: false,
        }],
        ..TestVmOptions::default()
    };
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    t.agent
        .mount(MountRequest {
            source: "block-serial:rootfs".into(),
            target: ROOTFS.into(),
            fstype: "ext4".into(),
            options: vec![],
            create_target: true,
        })
        .await
        .unwrap();
    Some(t)
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A spec the way Docker writes one by default: its 14 capabilities, its mounts, no
/// no_new_privs, no explicit masked paths (vminitd applies Docker's list), hostname as given.
fn docker_spec(args: &[&str], hostname: &str) -> Vec<u8> {
    let args: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let caps = r#"["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]"#;
    format!(
        r#"{{"ociVersion":"1.0.2",
        "process":{{"user":{{"uid":0,"gid":0}},"args":[{args}],"env":["PATH=/bin","TERM=xterm"],"cwd":"/",
          "capabilities":{{"bounding":{caps},"effective":{caps},"permitted":{caps}}},
          "rlimits":[{{"type":"RLIMIT_NOFILE","hard":1048576,"soft":1048576}}]}},
        "root":{{"path":"{ROOTFS}"}},
        "hostname":{hostname},
        "mounts":[
          {{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]}},
          {{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}},
          {{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]}},
          {{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}},
          {{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nosuid","noexec","nodev"]}},
          {{"destination":"/dev/mqueue","type":"mqueue","source":"mqueue","options":["nosuid","noexec","nodev"]}},
          {{"destination":"/dev/shm","type":"tmpfs","source":"shm","options":["nosuid","noexec","nodev","mode=1777","size=67108864"]}}],
        "linux":{{"resources":{{"pids":{{"limit":100}}}}}}}}"#,
        args = args.join(","),
        hostname = quote(hostname),
    )
    .into_bytes()
}

async fn read_all(mut s: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("stream not closed in time")
        .unwrap();
    out
}

fn create(id: &str, spec: Vec<u8>, stdio: StdioPorts) -> CreateProcessRequest {
    CreateProcessRequest {
        id: id.into(),
        container_id: id.into(),
        oci_spec: spec,
        stdio: Some(stdio),
        ..Default::default()
    }
}

fn pref(id: &str) -> ProcessRef {
    ProcessRef { id: id.into() }
}

/// Runs a container with stdout and stderr attached; returns (exit code, stdout, stderr).
async fn run(t: &TestVm, req: CreateProcessRequest) -> (i32, String, String) {
    let id = req.id.clone();
    let (out_port, err_port) = (0x1000_0001, 0x1000_0002);
    let mut out_l = t.vm.listen(out_port).await.unwrap();
    let mut err_l = t.vm.listen(err_port).await.unwrap();
    let mut req = req;
    req.stdio = Some(StdioPorts {
        stdin_port: 0,
        stdout_port: out_port,
        stderr_port: err_port,
    });
    t.agent.create_process(req).await.unwrap();
    let out = out_l.accept().await.unwrap();
    let err = err_l.accept().await.unwrap();
    t.agent.start_process(pref(&id)).await.unwrap();
    let (out, err) = tokio::join!(read_all(out), read_all(err));
    let waited = t.agent.wait_process(pref(&id)).await.unwrap();
    t.agent.delete_process(pref(&id)).await.unwrap();
    (
        waited.exit_code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

async fn finish(t: TestVm) {
    let stopped = t.shutdown().await;
    assert_eq!(stopped.exit, VmExit::PoweredOff, "console: {}", t.console());
}

async fn streams_stay_separate_exit_codes_return_and_stdin_is_byte_exact(arch: Arch) {
    let Some(t) = boot(arch, "streams_stay_separate").await else {
        return;
    };
    let spec = docker_spec(&["sh", "-c", "echo hello; echo oops >&2; exit 3"], "c");
    let (code, out, err) = run(&t, create("hello", spec, StdioPorts::default())).await;
    assert_eq!((code, out.as_str(), err.as_str()), (3, "hello\n", "oops\n"));

    // cat echoes 1 MiB of stdin, byte for byte.
    let input: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 31 % 253) as u8).collect();
    let (in_port, out_port) = (0x1000_0010, 0x1000_0011);
    let mut in_l = t.vm.listen(in_port).await.unwrap();
    let mut out_l = t.vm.listen(out_port).await.unwrap();
    let stdio = StdioPorts {
        stdin_port: in_port,
        stdout_port: out_port,
        stderr_port: 0,
    };
    t.agent
        .create_process(create("cat", docker_spec(&["cat"], "c"), stdio))
        .await
        .unwrap();
    let mut stdin = in_l.accept().await.unwrap();
    let stdout = out_l.accept().await.unwrap();
    t.agent.start_process(pref("cat")).await.unwrap();
    let started = std::time::Instant::now();
    let data = input.clone();
    let feed = tokio::spawn(async move {
        stdin.write_all(&data).await.unwrap();
        stdin.shutdown().await.unwrap();
        stdin
    });
    let echoed = read_all(stdout).await;
    eprintln!("1 MiB through cat and back in {:?}", started.elapsed());
    drop(feed.await.unwrap());
    let waited = t.agent.wait_process(pref("cat")).await.unwrap();
    assert_eq!(waited.exit_code, 0);
    assert_eq!(echoed.len(), input.len());
    assert!(echoed == input, "echoed bytes differ from what was sent");
    t.agent.delete_process(pref("cat")).await.unwrap();
    finish(t).await;
}

async fn a_terminal_sees_its_size_follow_resizes(arch: Arch) {
    let Some(t) = boot(arch, "a_terminal_sees_its_size_follow_resizes").await else {
        return;
    };
    let (in_port, out_port) = (0x1000_0020, 0x1000_0021);
    let mut in_l = t.vm.listen(in_port).await.unwrap();
    let mut out_l = t.vm.listen(out_port).await.unwrap();
    let spec = docker_spec(&["sh", "-c", "read a; stty size; read b; stty size"], "c");
    let mut req = create(
        "tty",
        spec,
        StdioPorts {
            stdin_port: in_port,
            stdout_port: out_port,
            stderr_port: 0,
        },
    );
    req.terminal = true;
    t.agent.create_process(req).await.unwrap();
    let mut input = in_l.accept().await.unwrap();
    let mut output = out_l.accept().await.unwrap();
    t.agent.start_process(pref("tty")).await.unwrap();
    let mut seen = String::new();
    for (rows, cols) in [(40u32, 100u32), (50, 132)] {
        t.agent
            .resize_process(ResizeProcessRequest {
                id: "tty".into(),
                size: Some(wire::v1::TerminalSize { rows, cols }),
            })
            .await
            .unwrap();
        input.write_all(b"\n").await.unwrap();
        let want = format!("{rows} {cols}");
        let mut buf = [0u8; 256];
        while !seen.contains(&want) {
            let n = tokio::time::timeout(T, output.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "terminal closed before {want:?}; saw {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    let waited = t.agent.wait_process(pref("tty")).await.unwrap();
    assert_eq!(waited.exit_code, 0, "terminal output: {seen:?}");
    t.agent.delete_process(pref("tty")).await.unwrap();
    finish(t).await;
}

async fn sigterm_reaches_the_process_and_sigkill_reports_137(arch: Arch) {
    let Some(t) = boot(arch, "sigterm_reaches_the_process").await else {
        return;
    };
    let out_port = 0x1000_0030;
    let mut out_l = t.vm.listen(out_port).await.unwrap();
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.1; done";
    let stdio = StdioPorts {
        stdin_port: 0,
        stdout_port: out_port,
        stderr_port: 0,
    };
    t.agent
        .create_process(create(
            "term",
            docker_spec(&["sh", "-c", script], "c"),
            stdio,
        ))
        .await
        .unwrap();
    let mut out = out_l.accept().await.unwrap();
    t.agent.start_process(pref("term")).await.unwrap();
    let mut ready = [0u8; 6];
    tokio::time::timeout(T, out.read_exact(&mut ready))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&ready, b"ready\n");
    t.agent
        .kill_process(KillProcessRequest {
            id: "term".into(),
            signal: 15,
            all: false,
        })
        .await
        .unwrap();
    let rest = read_all(out).await;
    let waited = t.agent.wait_process(pref("term")).await.unwrap();
    assert_eq!(
        (waited.exit_code, String::from_utf8_lossy(&rest).as_ref()),
        (42, "got-term\n")
    );
    t.agent.delete_process(pref("term")).await.unwrap();

    t.agent
        .create_process(create(
            "sleeper",
            docker_spec(&["sleep", "1000"], "c"),
            StdioPorts::default(),
        ))
        .await
        .unwrap();
    t.agent.start_process(pref("sleeper")).await.unwrap();
    t.agent
        .kill_process(KillProcessRequest {
            id: "sleeper".into(),
            signal: 9,
            all: false,
        })
        .await
        .unwrap();
    let waited = t.agent.wait_process(pref("sleeper")).await.unwrap();
    assert_eq!(waited.exit_code, 137);
    t.agent.delete_process(pref("sleeper")).await.unwrap();
    finish(t).await;
}

async fn user_capabilities_seccomp_masked_paths_and_hostname(arch: Arch) {
    let Some(t) = boot(arch, "user_capabilities_seccomp_masked_paths_and_hostname").await else {
        return;
    };
    let mut req = create(
        "id",
        docker_spec(&["sh", "-c", "id -u; id -g; id -G; echo $HOME"], "c"),
        StdioPorts::default(),
    );
    req.user = "app".into();
    let (code, out, err) = run(&t, req).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1000\n1000\n1000 50\n/home/app\n");
    let mut req = create(
        "id2",
        docker_spec(&["sh", "-c", "id -u; id -g"], "c"),
        StdioPorts::default(),
    );
    req.user = "4321:8765".into();
    assert_eq!(run(&t, req).await.1, "4321\n8765\n");

    let script = "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status";
    let (code, out, err) = run(
        &t,
        create(
            "status",
            docker_spec(&["sh", "-c", script], "c"),
            StdioPorts::default(),
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nSeccomp:\t2\n"
    );
    // The setup helper runs without address randomization (so TCG reuses the code it
    // translated for the last helper); the container's programs get it back: the default
    // persona, and a stack that is somewhere else each time.
    let script = "cat /proc/self/personality; grep -m1 stack /proc/self/maps | cut -d- -f1";
    let mut stacks = Vec::new();
    for id in ["aslr1", "aslr2"] {
        let spec = docker_spec(&["sh", "-c", script], "c");
        let (code, out, err) = run(&t, create(id, spec, StdioPorts::default())).await;
        assert_eq!(code, 0, "{err}");
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("00000000"), "{out}");
        stacks.push(lines.next().map(str::to_owned));
    }
    assert!(stacks[0].is_some() && stacks[0] != stacks[1], "{stacks:?}");
    // The filter refuses what Docker's profile refuses: a new user namespace needs no
    // capability in the kernel (both guests have CONFIG_USER_NS), so only the filter's EPERM
    // for a caller without CAP_SYS_ADMIN stops it, on either architecture's syscall table.
    let (code, out, err) = run(
        &t,
        create(
            "userns",
            docker_spec(&["unshare", "-U", "true"], "c"),
            StdioPorts::default(),
        ),
    )
    .await;
    assert_eq!(
        (code, out.as_str(), err.trim_end()),
        (
            1,
            "",
            "unshare: unshare(0x10000000): Operation not permitted"
        )
    );

    // The guest kernel has no /proc/kcore at all (CONFIG_PROC_KCORE is off); /proc/keys and
    // /proc/timer_list are on Docker's masked list too and do exist.
    let script = "test -e /proc/kcore && wc -c < /proc/kcore; stat -c %t,%T /proc/keys /proc/timer_list; cat /proc/keys /proc/timer_list | wc -c";
    let (code, out, err) = run(
        &t,
        create(
            "masked",
            docker_spec(&["sh", "-c", script], "c"),
            StdioPorts::default(),
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1,3\n1,3\n0\n");

    let (code, out, _) = run(
        &t,
        create(
            "named",
            docker_spec(&["hostname"], "web-7.example"),
            StdioPorts::default(),
        ),
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "web-7.example\n"));
    finish(t).await;
}

async fn exec_init_stats_files_time_and_network(arch: Arch) {
    use agent::v1::{
        AddressAddRequest, ConfigureDnsRequest, ConfigureHostsRequest, CopyOutRequest, Empty,
        HostsEntry, LinkSetRequest, RouteAddRequest, SetTimeRequest, StatRequest, StatsRequest,
        WriteFileRequest,
    };
    let Some(t) = boot(arch, "exec_init_stats_files_time_and_network").await else {
        return;
    };
    // A long-running container with limits, and an exec inside it.
    let spec = String::from_utf8(docker_spec(&["sleep", "1000"], "box-1"))
        .unwrap()
        .replace(
            r#""resources":{"pids":{"limit":100}}"#,
            r#""resources":{"pids":{"limit":100},"memory":{"limit":67108864}}"#,
        );
    t.agent
        .create_process(create("box", spec.into_bytes(), StdioPorts::default()))
        .await
        .unwrap();
    t.agent.start_process(pref("box")).await.unwrap();
    let mut exec = create(
        "box-exec",
        docker_spec(
            &["sh", "-c", "hostname; cat /proc/1/cmdline; echo; echo $$"],
            "ignored",
        ),
        StdioPorts::default(),
    );
    exec.container_id = "box".into();
    let (code, out, err) = run(&t, exec).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["box-1", "sleep\u{0}1000\u{0}"]);
    assert_ne!(lines[2], "1", "the exec is not the container's init");

    let stats = t
        .agent
        .stats(StatsRequest {
            container_id: "box".into(),
        })
        .await
        .unwrap();
    assert_eq!(stats.memory_limit_bytes, 64 << 20);
    assert_eq!(stats.pids, 1, "{stats:?}");
    assert!(stats.memory_usage_bytes > 0, "{stats:?}");
    assert_eq!(stats.online_cpus, 1);
    assert!(stats.guest_memory_bytes > 128 << 20, "{stats:?}");
    t.agent
        .kill_process(KillProcessRequest {
            id: "box".into(),
            signal: 9,
            all: true,
        })
        .await
        .unwrap();
    assert_eq!(
        t.agent.wait_process(pref("box")).await.unwrap().exit_code,
        137
    );
    t.agent.delete_process(pref("box")).await.unwrap();
    let cgroup = t
        .agent
        .stat(StatRequest {
            path: "/sys/fs/cgroup/box".into(),
        })
        .await
        .unwrap();
    assert!(!cgroup.exists, "deleting the container removes its cgroup");

    // --init: the program runs under vminitd's tiny init, which is the container's pid 1.
    let mut req = create(
        "with-init",
        docker_spec(&["sh", "-c", "echo $$; cat /proc/1/cmdline"], "c"),
        StdioPorts::default(),
    );
    req.init = true;
    let (code, out, err) = run(&t, req).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "2\n/dev/vminitd-init\u{0}--\u{0}sh\u{0}-c\u{0}echo $$; cat /proc/1/cmdline\u{0}"
    );

    // Files: an atomic write, stat, and the directory as a tar archive.
    t.agent
        .write_file(WriteFileRequest {
            path: "/run/files/dir/a.txt".into(),
            data: b"alpha\n".to_vec(),
            mode: 0o640,
            append: false,
            create_parents: true,
        })
        .await
        .unwrap();
    let st = t
        .agent
        .stat(StatRequest {
            path: "/run/files/dir/a.txt".into(),
        })
        .await
        .unwrap();
    assert_eq!((st.exists, st.size, st.mode & 0o7777), (true, 6, 0o640));
    let mut chunks = t
        .agent
        .copy_out(CopyOutRequest {
            path: "/run/files/dir".into(),
            root: "/".into(),
            export: false,
        })
        .await
        .unwrap();
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        tar_bytes.extend_from_slice(&chunk.data);
    }
    let host = t.dir.path().join("copy");
    std::fs::create_dir_all(&host).unwrap();
    assert!(
        tar_extract(&host, &tar_bytes),
        "host tar could not read the archive"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("dir/a.txt")).unwrap(),
        "alpha\n"
    );
    // Network configuration stays inside the guest (lo only; nothing is sent anywhere).
    let links = t.agent.list_links(Empty {}).await.unwrap().links;
    let lo = links.iter().find(|l| l.name == "lo").expect("lo is listed");
    assert!(lo.up, "vminitd brings lo up at boot");
    t.agent
        .link_set(LinkSetRequest {
            name: "lo".into(),
            mac: String::new(),
            up: true,
            mtu: 32768,
            rename_to: String::new(),
            set_mac: String::new(),
        })
        .await
        .unwrap();
    let links = t.agent.list_links(Empty {}).await.unwrap().links;
    let lo = links.iter().find(|l| l.name == "lo").unwrap();
    assert_eq!((lo.up, lo.mtu), (true, 32768));
    let missing = t
        .agent
        .link_set(LinkSetRequest {
            name: String::new(),
            mac: "02:00:00:00:00:99".into(),
            up: true,
            mtu: 0,
            rename_to: String::new(),
            set_mac: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        format!("{:?}", missing.code()),
        "Some(NotFound)",
        "{missing}"
    );
    t.agent
        .address_add(AddressAddRequest {
            link: "lo".into(),
            link_mac: String::new(),
            cidr: "10.254.0.1/24".into(),
        })
        .await
        .unwrap();
    let again = t
        .agent
        .address_add(AddressAddRequest {
            link: "lo".into(),
            link_mac: String::new(),
            cidr: "10.254.0.1/24".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        format!("{:?}", again.code()),
        "Some(AlreadyExists)",
        "{again}"
    );
    t.agent
        .route_add(RouteAddRequest {
            link: "lo".into(),
            link_mac: String::new(),
            destination: "10.253.0.0/16".into(),
            gateway: String::new(),
        })
        .await
        .unwrap();
    t.agent
        .configure_dns(ConfigureDnsRequest {
            path: format!("{ROOTFS}/etc/resolv.conf"),
            nameservers: vec!["10.254.0.53".into()],
            search: vec!["example.test".into()],
            options: vec!["ndots:1".into()],
        })
        .await
        .unwrap();
    t.agent
        .configure_hosts(ConfigureHostsRequest {
            path: format!("{ROOTFS}/etc/hosts"),
            entries: vec![HostsEntry {
                ip: "10.254.0.1".into(),
                names: vec!["box-1".into()],
            }],
        })
        .await
        .unwrap();

    // The wall clock the host sets is what containers see.
    t.agent
        .set_time(SetTimeRequest {
            unix_nanos: 1_893_456_000_000_000_000, // 2030-01-01T00:00:00Z
        })
        .await
        .unwrap();
    let script =
        "cat /etc/resolv.conf /etc/hosts; grep -c 10.254.0.1 /proc/net/fib_trie; date -u +%Y";
    let (code, out, err) = run(
        &t,
        create(
            "net",
            docker_spec(&["sh", "-c", script], "c"),
            StdioPorts::default(),
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(
            "nameserver 10.254.0.53\nsearch example.test\noptions ndots:1\n127.0.0.1\tlocalhost\n"
        ),
        "{out}"
    );
    assert!(out.contains("10.254.0.1\tbox-1\n"), "{out}");
    assert!(out.ends_with("2030\n"), "{out}");
    finish(t).await;
}

/// Unpacks `archive` into `dir` with the host's tar.
fn tar_extract(dir: &Path, archive: &[u8]) -> bool {
    use std::io::Write;
    let mut child = Command::new("tar")
        .arg("-x")
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(archive).unwrap();
    child.wait().unwrap().success()
}

async fn shutdown_stops_running_containers_and_powers_off(arch: Arch) {
    use agent::v1::ShutdownRequest;
    let Some(t) = boot(arch, "shutdown_stops_running_containers_and_powers_off").await else {
        return;
    };
    // `sleep` as a container's pid 1 ignores SIGTERM: only the SIGKILL after the grace period
    // ends it.
    t.agent
        .create_process(create(
            "stubborn",
            docker_spec(&["sleep", "1000"], "c"),
            StdioPorts::default(),
        ))
        .await
        .unwrap();
    t.agent.start_process(pref("stubborn")).await.unwrap();
    let start = std::time::Instant::now();
    t.agent
        .shutdown(ShutdownRequest { grace_seconds: 1 })
        .await
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), t.vm.wait())
        .await
        .expect("the vm did not power off");
    assert_eq!(exit, VmExit::PoweredOff, "console: {}", t.console());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "shutdown took {took:?}"
    );
}

/// The Rosetta mechanism, with the translator this host has: an interpreter on a virtio-fs
/// share, registered by vminitd as the binfmt_misc handler of the other architecture's ELF
/// files (flag F), runs that architecture's programs in every container, although the
/// containers' root filesystems do not hold it. Rosetta on Apple silicon is this with
/// Apple's translator for x86_64; here Debian's `qemu-<other>-static` stands in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binfmt_handler_on_a_share_runs_the_other_architectures_programs() {
    let test = "a_binfmt_handler_on_a_share";
    let other = match Arch::host() {
        Arch::X86_64 => Arch::Aarch64,
        Arch::Aarch64 => Arch::X86_64,
    };
    let Some(artifacts) = testing::guest_artifacts_or_skip(test) else {
        return;
    };
    let Some(busybox) = busybox_for(other, test) else {
        return;
    };
    let translator = PathBuf::from(format!("/usr/bin/qemu-{}-static", other.name()));
    assert!(
        translator.is_file(),
        "{} is missing (qemu-user-static, from `cargo xtask deps`)",
        translator.display()
    );
    let dir = testing::new_temp_dir();
    let image = busybox_rootfs(dir.path(), &busybox);
    let share = dir.path().join("translator");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::copy(&translator, share.join("rosetta")).unwrap();
    let options = TestVmOptions {
        disks: vec![DiskConfig {
            id: "rootfs".into(),
            path: image,
            read_only: false,
        }],
        shares: vec![vmm::ShareConfig {
            tag: vmm::ROSETTA_SHARE_TAG.into(),
            host_path: share,
            read_only: true,
        }],
        ..TestVmOptions::default()
    };
    let t = TestVm::boot_in(dir, &artifacts, options).await;
    for (source, target, fstype) in [
        ("block-serial:rootfs", ROOTFS, "ext4"),
        (vmm::ROSETTA_SHARE_TAG, "/run/rosetta", "virtiofs"),
    ] {
        t.agent
            .mount(MountRequest {
                source: source.into(),
                target: target.into(),
                fstype: fstype.into(),
                options: vec![],
                create_target: true,
            })
            .await
            .unwrap();
    }
    // Before registration the kernel cannot run the other architecture's busybox.
    t.agent
        .create_process(create(
            "before",
            docker_spec(&["true"], "c"),
            StdioPorts::default(),
        ))
        .await
        .unwrap();
    let refused = t.agent.start_process(pref("before")).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .to_lowercase()
            .contains("exec format error"),
        "{refused}"
    );
    let _ = t.agent.delete_process(pref("before")).await;
    // The guest's own architecture, bad names and missing interpreters are refused.
    for (name, arch, interpreter, code) in [
        (
            "rosetta",
            Arch::host().name(),
            "/run/rosetta/rosetta",
            "InvalidArgument",
        ),
        (
            "bad/name",
            other.name(),
            "/run/rosetta/rosetta",
            "InvalidArgument",
        ),
        ("rosetta", other.name(), "/run/rosetta/missing", "NotFound"),
    ] {
        let refused = t
            .agent
            .register_binfmt(agent::v1::RegisterBinfmtRequest {
                name: name.into(),
                arch: arch.into(),
                interpreter: interpreter.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            format!("{:?}", refused.code()),
            format!("Some({code})"),
            "{refused}"
        );
    }
    // Registered twice: the second replaces the first.
    for _ in 0..2 {
        t.agent
            .register_binfmt(agent::v1::RegisterBinfmtRequest {
                name: "rosetta".into(),
                arch: other.name().into(),
                interpreter: "/run/rosetta/rosetta".into(),
            })
            .await
            .unwrap();
    }
    let script =
        "uname -m; echo $((6 * 7)); test -e /run/rosetta/rosetta || echo not in the rootfs";
    let (code, out, err) = run(
        &t,
        create(
            "after",
            docker_spec(&["sh", "-c", script], "c"),
            StdioPorts::default(),
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{}\n42\nnot in the rootfs\n", other.name()));
    finish(t).await;
}

/// One field of `/proc/meminfo`-style text ("Key:   123 kB"), in KiB.
fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().trim_end_matches("kB").trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

/// Guest RAM the guest has touched, as QEMU holds it: the shared-memory pages of the guest
/// RAM memfd mapped into QEMU (KiB).
fn qemu_guest_ram_kib(t: &TestVm) -> u64 {
    let (_, pid) =
        t.vm.pids()
            .iter()
            .find(|(name, _)| name == "qemu")
            .expect("the vm has no qemu process");
    kib_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap(),
        "RssShmem",
    )
}

/// Issue 16's memory goal, seen from both sides. Inside: after boot nothing of the initramfs
/// is left, only vminitd's one running copy (the guest's shared memory holds less than one
/// and a half initramfs). Outside: 48 MiB the guest touches and frees again go back to the
/// host (free page reporting through the balloon, at vminitd's page order), instead of
/// staying in QEMU's guest RAM for the VM's life.
async fn freed_guest_memory_goes_back_to_the_host_and_no_initramfs_stays(arch: Arch) {
    let test = "freed_guest_memory_goes_back_to_the_host";
    let Some(t) = boot(arch, test).await else {
        return;
    };
    let initrd_kib = std::fs::metadata(testing::guest_artifacts_for(arch).unwrap().initrd)
        .unwrap()
        .len()
        / 1024;
    let (code, meminfo, err) = run(
        &t,
        create(
            "meminfo",
            docker_spec(&["cat", "/proc/meminfo"], "m"),
            StdioPorts::default(),
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let shmem = kib_field(&meminfo, "Shmem");
    assert!(
        shmem < initrd_kib + initrd_kib / 2,
        "the guest holds {shmem} KiB of shared memory, more than vminitd's copy of the \
         {initrd_kib} KiB initramfs: {meminfo}"
    );

    let before = qemu_guest_ram_kib(&t);
    let (code, out, err) = run(
        &t,
        create(
            "fill",
            docker_spec(
                &[
                    "sh",
                    "-c",
                    "busybox dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 2>/dev/null && \
                     grep Shmem: /proc/meminfo && rm /dev/shm/fill",
                ],
                "m",
            ),
            StdioPorts::default(),
        ),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        kib_field(&out, "Shmem") >= shmem + 40 * 1024,
        "the guest did not hold the 48 MiB file: {out}"
    );
    // The guest reports a sixteenth of each free list every 2 s: all of it within ~30 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut now = qemu_guest_ram_kib(&t);
    while now > before + 16 * 1024 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        now = qemu_guest_ram_kib(&t);
    }
    assert!(
        now <= before + 16 * 1024,
        "QEMU still holds {now} KiB of guest RAM, {before} KiB before the guest touched and \
         freed 48 MiB: the freed pages did not go back to the host"
    );
    finish(t).await;
}

/// Each test above, once per guest architecture: `<test>::x86_64` and `<test>::aarch64`.
macro_rules! on_every_arch {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn x86_64() {
                super::$name(vmm::Arch::X86_64).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn aarch64() {
                super::$name(vmm::Arch::Aarch64).await
            }
        }
    )*};
}

on_every_arch!(
    streams_stay_separate_exit_codes_return_and_stdin_is_byte_exact,
    a_terminal_sees_its_size_follow_resizes,
    sigterm_reaches_the_process_and_sigkill_reports_137,
    user_capabilities_seccomp_masked_paths_and_hostname,
    exec_init_stats_files_time_and_network,
    shutdown_stops_running_containers_and_powers_off,
    freed_guest_memory_goes_back_to_the_host_and_no_initramfs_stays,
);
